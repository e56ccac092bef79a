//! `[store]`: which backend keeps the tokens, and how to reach etcd.

use super::reader::{Reader, Section};
use super::{EtcdConfig, StoreBackend, StoreConfig};

const SECTION: &str = "store";

impl Reader<'_> {
    pub(super) fn store(&mut self) -> StoreConfig {
        let mut store = self.section(SECTION);
        let backend = match self.string(&mut store, "backend", "journal").as_str() {
            "journal" => StoreBackend::Journal,
            "etcd" => {
                if !cfg!(feature = "etcd") {
                    self.problem(
                        SECTION,
                        "backend",
                        "this build has no etcd support (build with `--features etcd`)",
                    );
                }
                StoreBackend::Etcd
            }
            other => {
                self.problem(
                    SECTION,
                    "backend",
                    &format!("expected \"journal\" or \"etcd\", found \"{other}\""),
                );
                StoreBackend::Journal
            }
        };
        let etcd = self.etcd(&mut store);
        if backend == StoreBackend::Etcd && etcd.endpoints.is_empty() {
            self.problem(
                SECTION,
                "endpoints",
                "is required with backend = \"etcd\" (e.g. [\"http://127.0.0.1:2379\"])",
            );
        }
        let max_staleness = store
            .table
            .contains_key("max_staleness")
            .then(|| self.duration(&mut store, "max_staleness", std::time::Duration::ZERO));
        self.finish(&store);
        StoreConfig {
            backend,
            etcd,
            max_staleness,
        }
    }

    fn etcd(&mut self, store: &mut Section) -> EtcdConfig {
        let endpoints = self.strings(store, "endpoints");
        for endpoint in &endpoints {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !scheme_ok || endpoint.parse::<http::Uri>().is_err() {
                self.problem(
                    SECTION,
                    "endpoints",
                    &format!("\"{endpoint}\" is not a URL like http://127.0.0.1:2379"),
                );
            }
        }
        let prefix = self.string(store, "prefix", EtcdConfig::DEFAULT_PREFIX);
        if prefix.is_empty() {
            self.problem(
                SECTION,
                "prefix",
                "must not be empty: the gateway's keys need a range of their own",
            );
        }
        let ca = self.path(store, "ca");
        let cert = self.path(store, "cert");
        let key = self.path(store, "key");
        if cert.is_some() != key.is_some() {
            self.problem(SECTION, "cert", "cert and key go together");
        }
        let user = self.optional_string(store, "user");
        let password = self.etcd_password(store);
        if password.is_some() && user.is_none() {
            self.problem(SECTION, "user", "is required when a password is set");
        }
        let request_timeout = self.duration(
            store,
            "request_timeout",
            EtcdConfig::DEFAULT_REQUEST_TIMEOUT,
        );
        let start_timeout =
            self.duration(store, "start_timeout", EtcdConfig::DEFAULT_START_TIMEOUT);
        EtcdConfig {
            endpoints,
            prefix,
            ca,
            cert,
            key,
            user,
            password,
            request_timeout,
            start_timeout,
        }
    }

    /// `password`, `password_file` or `password_env`: at most one. No message quotes it.
    fn etcd_password(&mut self, store: &mut Section) -> Option<String> {
        let mut found = self.secret_keys(store, "password");
        if found.len() > 1 {
            self.problem(
                SECTION,
                "password",
                "set only one of password, password_file and password_env",
            );
            return None;
        }
        let (key, from) = found.pop()?;
        self.secret_text(SECTION, &key, from)
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn read(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml("t", text, &Overrides::default())
    }

    #[test]
    fn the_journal_is_the_default_and_nothing_goes_stale() {
        let config = read("").unwrap();
        assert_eq!(config.store.backend, StoreBackend::Journal);
        assert_eq!(config.store.max_staleness, None);
        assert_eq!(config.store.etcd.prefix, EtcdConfig::DEFAULT_PREFIX);
        assert!(config.store.etcd.endpoints.is_empty());
    }

    #[test]
    fn every_bad_store_key_is_named() {
        let text = "[store]\nbackend = \"zookeeper\"\nendpoints = [\"2379\"]\nprefix = \"\"\n\
                    cert = \"c.pem\"\npassword = \"x\"\nrequest_timeout = \"soon\"\ncolour = 1\n";
        let problems = read(text).unwrap_err().problems;
        for needle in [
            "[store] backend: expected \"journal\" or \"etcd\"",
            "[store] endpoints: \"2379\" is not a URL",
            "[store] prefix: must not be empty",
            "[store] cert: cert and key go together",
            "[store] user: is required when a password is set",
            "[store] request_timeout: expected a duration",
            "colour",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} not in {problems:?}"
            );
        }
    }

    #[test]
    fn etcd_needs_endpoints() {
        let problems = read("[store]\nbackend = \"etcd\"\n").unwrap_err().problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("[store] endpoints: is required")),
            "{problems:?}"
        );
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn etcd_keys_are_read() {
        let text = "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \
                    \"http://127.0.0.1:22379\"]\nprefix = \"/gw-a/\"\nuser = \"gw\"\n\
                    password_env = \"GW_ETCD_PW\"\nrequest_timeout = \"1s\"\n\
                    max_staleness = \"30s\"\n";
        let env: Env = [("GW_ETCD_PW".to_owned(), "secret\n".to_owned())].into();
        let config = Config::read("t", text, None, &Overrides::default(), &env).unwrap();
        let store = &config.store;
        assert_eq!(store.backend, StoreBackend::Etcd);
        assert_eq!(store.etcd.endpoints.len(), 2);
        assert_eq!(store.etcd.prefix, "/gw-a/");
        assert_eq!(store.etcd.password.as_deref(), Some("secret"));
        assert_eq!(
            store.etcd.request_timeout,
            std::time::Duration::from_secs(1)
        );
        assert_eq!(
            store.max_staleness,
            Some(std::time::Duration::from_secs(30))
        );
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn etcd_is_refused_by_a_build_without_it() {
        let text = "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n";
        let problems = read(text).unwrap_err().problems;
        assert!(
            problems.iter().any(|p| p.contains("--features etcd")),
            "{problems:?}"
        );
    }
}
