//! `[upstream]`: the cluster's nodes, how requests reach them, and how nodes are judged.

use std::time::Duration;

use http::uri::Scheme;
use http::Uri;

use super::reader::{Reader, Section};
use super::{
    AccountCredential, ActiveCheck, NodeHealth, NodeList, NodeUrl, RetryPolicy, Sniff,
    UpstreamConfig,
};

impl Reader<'_> {
    pub(super) fn upstream(&mut self, upstream: &mut Section) -> UpstreamConfig {
        let nodes = self.nodes(upstream);
        let authorization = self.upstream_authorization(upstream);
        UpstreamConfig {
            nodes,
            authorization,
            connect_timeout: self.duration(
                upstream,
                "connect_timeout",
                UpstreamConfig::DEFAULT_CONNECT_TIMEOUT,
            ),
            timeout: self.duration(upstream, "timeout", UpstreamConfig::DEFAULT_TIMEOUT),
            pool_idle_timeout: self.duration(
                upstream,
                "pool_idle_timeout",
                UpstreamConfig::DEFAULT_POOL_IDLE_TIMEOUT,
            ),
            pool_max_idle: self.count(
                upstream,
                "pool_max_idle",
                UpstreamConfig::DEFAULT_POOL_MAX_IDLE,
            ),
            tls: self.upstream_tls(upstream),
            max_connections: self.positive_count(
                upstream,
                "max_connections",
                UpstreamConfig::DEFAULT_MAX_CONNECTIONS,
            ),
            max_pending: self.count(upstream, "max_pending", UpstreamConfig::DEFAULT_MAX_PENDING),
            fair_queue: self.boolean(upstream, "fair_queue", true),
            body_timeout: self.duration(
                upstream,
                "body_timeout",
                UpstreamConfig::DEFAULT_BODY_TIMEOUT,
            ),
            service_credentials: {
                let text = self.string(upstream, "service_credentials", "auto");
                self.credential_mode("upstream", "service_credentials", &text)
                    .unwrap_or(AccountCredential::Auto)
            },
            health: self.node_health(upstream),
            retry: RetryPolicy {
                max_retries: self.count(upstream, "max_retries", RetryPolicy::DEFAULT_MAX_RETRIES),
                budget_percent: self.percent(
                    upstream,
                    "retry_budget_percent",
                    RetryPolicy::DEFAULT_BUDGET_PERCENT,
                ),
                min_per_second: self.small_count(
                    upstream,
                    "retry_budget_min_per_second",
                    RetryPolicy::DEFAULT_MIN_PER_SECOND,
                ),
            },
            sniff: self.sniff(upstream),
        }
    }

    /// `--upstream` (repeatable) wins; else `nodes`, else `url`; never both keys.
    fn nodes(&mut self, upstream: &mut Section) -> NodeList {
        let url = self.optional_string(upstream, "url");
        let listed = upstream.has("nodes");
        let nodes = self.strings(upstream, "nodes");
        if url.is_some() && listed {
            self.problem(
                "upstream",
                "nodes",
                "set either upstream.url (one node) or upstream.nodes (several), not both",
            );
        }
        if listed && nodes.is_empty() {
            self.problem("upstream", "nodes", "must name at least one node");
        }
        let from_flag = !self.overrides.upstream.is_empty();
        let (key, texts) = if from_flag {
            ("url", self.overrides.upstream.clone())
        } else if listed && !nodes.is_empty() {
            ("nodes", nodes)
        } else {
            let url = url.unwrap_or_else(|| UpstreamConfig::DEFAULT_URL.to_owned());
            ("url", vec![url])
        };
        let mut parsed: Vec<NodeUrl> = Vec::with_capacity(texts.len());
        for text in &texts {
            if let Some(node) = self.node_url(key, text, from_flag) {
                if parsed.contains(&node) {
                    self.problem("upstream", key, &format!("names {node} twice"));
                } else {
                    parsed.push(node);
                }
            }
        }
        let mut parsed = parsed.into_iter();
        match parsed.next() {
            Some(first) => NodeList::new(first, parsed.collect()),
            // Reported above; the reading goes on to find the other problems.
            None => NodeList::new(
                NodeUrl {
                    scheme: Scheme::HTTP,
                    authority: http::uri::Authority::from_static("127.0.0.1:9200"),
                    path_prefix: String::new(),
                },
                Vec::new(),
            ),
        }
    }

    /// Splits a node's URL into the parts every forwarded request reuses. A bad one is blamed
    /// on where it came from: the `--upstream` flag (`from_flag`), or the key in the file or
    /// environment.
    fn node_url(&mut self, key: &str, url: &str, from_flag: bool) -> Option<NodeUrl> {
        let bad = |reader: &mut Self, why: &str| {
            // A bare host:port is the usual slip: say what was probably meant.
            let hint = if url.contains("://") {
                String::new()
            } else {
                format!(" (did you mean \"http://{url}\"?)")
            };
            if from_flag {
                reader
                    .problems
                    .push(format!("--upstream \"{url}\": {why}{hint}"));
            } else {
                reader.problem("upstream", key, &format!("{why}: \"{url}\"{hint}"));
            }
            None
        };
        let Ok(uri) = url.parse::<Uri>() else {
            return bad(self, "not a URL");
        };
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return bad(self, "must start with http:// or https://"),
        };
        let Some(authority) = uri.authority().cloned() else {
            return bad(self, "has no host");
        };
        if uri.query().is_some() || authority.as_str().contains('@') {
            return bad(
                self,
                "must not carry a query or user info (use upstream.authorization)",
            );
        }
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Some(NodeUrl {
            scheme,
            authority,
            path_prefix,
        })
    }

    fn node_health(&mut self, upstream: &mut Section) -> NodeHealth {
        let eject_for = self.duration(upstream, "eject_for", NodeHealth::DEFAULT_EJECT_FOR);
        let eject_max = self.duration(upstream, "eject_max", NodeHealth::DEFAULT_EJECT_MAX);
        if eject_max < eject_for {
            self.problem(
                "upstream",
                "eject_max",
                &format!("must be at least eject_for ({eject_for:?}), found {eject_max:?}"),
            );
        }
        let interval = self.optional_duration(upstream, "health_check_interval");
        let path = self.string(upstream, "health_check_path", "/");
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            self.problem(
                "upstream",
                "health_check_path",
                &format!("expected a path starting with /, found \"{path}\""),
            );
        }
        let timeout = self.duration(
            upstream,
            "health_check_timeout",
            ActiveCheck::DEFAULT_TIMEOUT,
        );
        let unhealthy_threshold = self.positive_small(
            upstream,
            "unhealthy_threshold",
            ActiveCheck::DEFAULT_UNHEALTHY_THRESHOLD,
        );
        let healthy_threshold = self.positive_small(
            upstream,
            "healthy_threshold",
            ActiveCheck::DEFAULT_HEALTHY_THRESHOLD,
        );
        NodeHealth {
            eject_for,
            eject_max,
            check: interval.map(|interval| ActiveCheck {
                interval,
                path,
                timeout,
                unhealthy_threshold,
                healthy_threshold,
            }),
        }
    }

    fn sniff(&mut self, upstream: &mut Section) -> Option<Sniff> {
        let sniff = Sniff {
            on_start: self.boolean(upstream, "sniff_on_start", false),
            interval: self.optional_duration(upstream, "sniff_interval"),
            on_failure: self.boolean(upstream, "sniff_on_failure", false),
            timeout: self.duration(upstream, "sniff_timeout", Sniff::DEFAULT_TIMEOUT),
        };
        (sniff.on_start || sniff.interval.is_some() || sniff.on_failure).then_some(sniff)
    }

    /// A duration whose absence switches its feature off.
    fn optional_duration(&mut self, section: &mut Section, key: &str) -> Option<Duration> {
        section
            .table
            .contains_key(key)
            .then(|| self.duration(section, key, Duration::from_secs(1)))
    }

    fn small_count(&mut self, section: &mut Section, key: &str, default: u32) -> u32 {
        let n = self.count(section, key, default as usize);
        u32::try_from(n).unwrap_or_else(|_| {
            self.problem(section.name, key, &format!("must be at most {}", u32::MAX));
            default
        })
    }

    fn positive_small(&mut self, section: &mut Section, key: &str, default: u32) -> u32 {
        match self.small_count(section, key, default) {
            0 => {
                self.problem(section.name, key, "must be at least 1, found 0");
                default
            }
            n => n,
        }
    }

    fn percent(&mut self, section: &mut Section, key: &str, default: u32) -> u32 {
        match self.small_count(section, key, default) {
            n if n > 100 => {
                self.problem(section.name, key, &format!("must be 0 to 100, found {n}"));
                default
            }
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn read(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml("t", text, &Overrides::default())
    }

    fn names(config: &Config) -> Vec<String> {
        config
            .upstream
            .nodes
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn one_url_or_several_nodes_never_both() {
        let config = read("").unwrap();
        assert_eq!(config.upstream.nodes.len(), 1);
        assert_eq!(
            config.upstream.nodes.first().to_string(),
            "http://127.0.0.1:9200"
        );
        let text = "[upstream]\nnodes = [\"http://es1:9200\", \"https://es2:9243/p/\"]\n";
        let config = read(text).unwrap();
        let nodes = names(&config);
        assert_eq!(nodes, ["http://es1:9200", "https://es2:9243/p"]);
        assert!(config.upstream.nodes.any_https());

        let both = "[upstream]\nurl = \"http://a:1\"\nnodes = [\"http://b:1\"]\n";
        let problems = read(both).unwrap_err().problems;
        assert!(
            problems[0].contains("[upstream] nodes: set either"),
            "{problems:?}"
        );
        let twice = "[upstream]\nnodes = [\"http://b:1\", \"http://b:1/\", \"ftp://c\"]\n";
        let problems = read(twice).unwrap_err().problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("names http://b:1 twice")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("must start with http")),
            "{problems:?}"
        );
        let empty = read("[upstream]\nnodes = []\n").unwrap_err().problems;
        assert!(empty[0].contains("at least one node"), "{empty:?}");
    }

    #[test]
    fn repeated_upstream_options_replace_the_files_nodes() {
        let overrides = Overrides {
            upstream: vec!["http://x:1".into(), "http://y:2".into()],
            ..Overrides::default()
        };
        let text = "[upstream]\nnodes = [\"http://b:1\"]\n";
        let config = Config::from_toml("t", text, &overrides).unwrap();
        let nodes = names(&config);
        assert_eq!(nodes, ["http://x:1", "http://y:2"]);
    }

    #[test]
    fn health_retry_and_sniffing_default_to_passive_ejection_and_bounded_retries() {
        let config = read("").unwrap().upstream;
        assert_eq!(config.health.eject_for, NodeHealth::DEFAULT_EJECT_FOR);
        assert!(config.health.check.is_none());
        assert!(config.sniff.is_none());
        assert_eq!(config.retry.max_retries, 2);
        assert_eq!(config.retry.budget_percent, 20);

        let text = "[upstream]\nhealth_check_interval = \"500ms\"\nhealth_check_path = \"/_cluster/health\"\n\
                    sniff_interval = \"30s\"\nmax_retries = 0\n";
        let config = read(text).unwrap().upstream;
        let check = config.health.check.unwrap();
        assert_eq!(check.interval, Duration::from_millis(500));
        assert_eq!(check.path, "/_cluster/health");
        let sniff = config.sniff.unwrap();
        assert_eq!(sniff.interval, Some(Duration::from_secs(30)));
        assert!(!sniff.on_start);
        assert_eq!(config.retry.max_retries, 0);

        let bad =
            "[upstream]\neject_for = \"10s\"\neject_max = \"1s\"\nretry_budget_percent = 150\n\
                   health_check_path = \"health\"\nhealthy_threshold = 0\n";
        let problems = read(bad).unwrap_err().problems;
        for key in [
            "[upstream] eject_max",
            "[upstream] retry_budget_percent",
            "[upstream] health_check_path",
            "[upstream] healthy_threshold",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key}: {problems:?}"
            );
        }
    }
}
