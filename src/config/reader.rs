//! Walks the TOML table key by key, collecting every problem instead of stopping at the first.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::{Table, Value};

use super::{Config, ConfigError, Env, LimitsConfig, Overrides, SecurityConfig};

/// Collects problems while reading one configuration source.
pub(super) struct Reader<'a> {
    pub(super) source: &'a str,
    pub(super) root: Table,
    pub(super) overrides: &'a Overrides,
    pub(super) problems: Vec<String>,
    /// The configuration file's directory: the file's relative paths mean the same wherever the
    /// gateway is started from. `None` (embedded defaults): the working directory.
    base: Option<&'a Path>,
    /// The process environment: `TOKENGATE_*` overrides and `*_env` credentials.
    pub(super) env: &'a Env,
    /// Keys set by an environment variable, as (section, key, variable), so messages name the
    /// variable and its paths stay relative to the working directory, as a command line's do.
    from_env: Vec<(String, String, String)>,
}

/// Sections a `TOKENGATE_<SECTION>__<KEY>` variable may set keys of.
const ENV_SECTIONS: [&str; 8] = [
    "server", "upstream", "tls", "security", "log", "audit", "admin", "store",
];
/// Prefix of the variables that override configuration keys.
const ENV_PREFIX: &str = "TOKENGATE_";

/// One `[section]` being read; keys are removed as they are used so leftovers are unknown keys.
pub(super) struct Section {
    pub(super) name: &'static str,
    pub(super) table: Table,
    /// The keys read from it: what a leftover key may be a misspelling of.
    asked: Vec<String>,
}

impl Section {
    pub(super) fn new(name: &'static str, table: Table) -> Self {
        Section {
            name,
            table,
            asked: Vec::new(),
        }
    }

    /// Takes `key`'s value out, remembering the key as one the section has.
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.asked.push(key.to_owned());
        self.table.remove(key)
    }

    /// The problem to report for a leftover `key`: unknown, and what it may be a misspelling of.
    pub(super) fn unknown(&self, key: &str) -> String {
        match nearest(key, self.asked.iter().map(String::as_str)) {
            Some(known) => format!("unknown key (did you mean `{known}`?)"),
            None => "unknown key".to_owned(),
        }
    }

    /// Whether `key` is set, remembering it as one the section has.
    pub(super) fn has(&mut self, key: &str) -> bool {
        self.asked.push(key.to_owned());
        self.table.contains_key(key)
    }
}

/// The sections a configuration file may have.
const SECTIONS: &[&str] = &[
    "server",
    "upstream",
    "security",
    "log",
    "audit",
    "tls",
    "admin",
    "access_log",
    "store",
    "service_accounts",
    "limits",
];

/// Of `known`, the one `typo` is most likely a misspelling of: at most a third of its letters
/// (and at least one) away.
pub(super) fn nearest<'k>(typo: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (typo.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(typo, k), k))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        source: &'a str,
        root: Table,
        base: Option<&'a Path>,
        overrides: &'a Overrides,
        env: &'a Env,
    ) -> Self {
        Reader {
            source,
            root,
            overrides,
            problems: Vec::new(),
            base,
            env,
            from_env: Vec::new(),
        }
    }

    /// Puts every `TOKENGATE_<SECTION>__<KEY>` variable's value into the table, over the file's,
    /// so it is validated exactly as a file value would be. Variables without `__`
    /// (`TOKENGATE_CONFIG`, `TOKENGATE_ADMIN_LISTEN`, `TOKENGATE_PASSWORD`) are not keys.
    fn apply_env(&mut self) {
        let env = self.env;
        let overrides = env
            .range(ENV_PREFIX.to_owned()..)
            .take_while(|(name, _)| name.starts_with(ENV_PREFIX));
        for (name, text) in overrides {
            let Some((section, key)) = name[ENV_PREFIX.len()..].split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if !ENV_SECTIONS.contains(&section.as_str()) || key.is_empty() || key.contains("__") {
                self.problems.push(format!(
                    "environment variable {name}: names no key; use TOKENGATE_<SECTION>__<KEY> \
                     with a section among {}",
                    ENV_SECTIONS.join(", ")
                ));
                continue;
            }
            let table = self
                .root
                .entry(section.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            // A section that is not a table is reported when it is read.
            if let Value::Table(table) = table {
                table.insert(key.clone(), env_value(text));
            }
            self.from_env.push((section, key, name.clone()));
        }
    }

    /// The variable that set `section.key`, if one did.
    fn env_var(&self, section: &str, key: &str) -> Option<&str> {
        self.from_env
            .iter()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, name)| name.as_str())
    }

    /// A path from the file, relative to the file's directory; one from the environment,
    /// relative to the working directory.
    pub(super) fn resolve(&self, section: &str, key: &str, path: String) -> PathBuf {
        let path = PathBuf::from(path);
        match self.base {
            Some(base) if path.is_relative() && self.env_var(section, key).is_none() => {
                base.join(path)
            }
            _ => path,
        }
    }

    pub(super) fn read(mut self) -> Result<Config, ConfigError> {
        self.apply_env();
        let mut server = self.section("server");
        let mut upstream = self.section("upstream");
        let mut security = self.section("security");
        let mut log = self.section("log");
        let mut audit = self.section("audit");

        let (server_config, listen_off) = self.server(&mut server);
        let upstream_config = self.upstream(&mut upstream);
        let tls = self.listener_tls();
        if listen_off && tls.is_none() {
            self.problem(
                "server",
                "listen",
                "is empty and no [tls] listener is configured: nothing would be served",
            );
        }

        let security_config = self.security(&mut security);
        let log_config = self.log(&mut log);
        let audit_config = self.audit(&mut audit, &server_config.data_dir);
        let (service_accounts, account_limits) = self.accounts();
        let limits = LimitsConfig {
            default: self.limits_default(),
            accounts: account_limits,
        };
        let admin = self.admin(self.overrides.admin_listen.as_deref(), tls.is_some());
        let access_log = self.access_log(&server_config.data_dir);
        let store = self.store();

        self.unknown_keys([server, upstream, security, log, audit]);
        if !self.problems.is_empty() {
            return Err(ConfigError {
                problems: self.problems,
            });
        }
        Ok(Config {
            source: self.source.to_owned(),
            server: server_config,
            upstream: upstream_config,
            tls,
            security: security_config,
            service_accounts,
            log: log_config,
            admin,
            audit: audit_config,
            access_log,
            store,
            limits,
        })
    }

    fn security(&mut self, security: &mut Section) -> SecurityConfig {
        SecurityConfig {
            admin_roles: self.strings(security, "admin_roles"),
            forward_users: self.boolean(security, "forward_users", true),
            users_reload_interval: self.duration(
                security,
                "users_reload_interval",
                SecurityConfig::DEFAULT_USERS_RELOAD_INTERVAL,
            ),
            throttle: self.auth_throttle(security),
            pass_through: self.pass_through(security),
        }
    }

    /// Reports what no reader used: keys left in the sections, then sections and top-level keys
    /// left in the file.
    fn unknown_keys(&mut self, sections: [Section; 5]) {
        for section in sections {
            self.finish(&section);
        }
        let leftovers: Vec<String> = self.root.keys().cloned().collect();
        for key in leftovers {
            let hint = nearest(&key, SECTIONS.iter().copied())
                .map(|s| format!(" (did you mean `[{s}]`?)"))
                .unwrap_or_default();
            self.problems.push(format!(
                "{}: unknown section or key `{key}`{hint}",
                self.source
            ));
        }
    }

    pub(super) fn problem(&mut self, section: &str, key: &str, what: &str) {
        let problem = match self.env_var(section, key) {
            Some(var) => format!("environment variable {var}: [{section}] {key}: {what}"),
            None => format!("{}: [{section}] {key}: {what}", self.source),
        };
        self.problems.push(problem);
    }

    pub(super) fn section(&mut self, name: &'static str) -> Section {
        let table = match self.root.remove(name) {
            None => Table::new(),
            Some(Value::Table(t)) => t,
            Some(_) => {
                self.problems.push(format!(
                    "{}: `{name}` must be a table ([{name}])",
                    self.source
                ));
                Table::new()
            }
        };
        Section::new(name, table)
    }

    pub(super) fn finish(&mut self, section: &Section) {
        for key in section.table.keys() {
            let what = section.unknown(key);
            self.problem(section.name, key, &what);
        }
    }

    pub(super) fn optional_string(&mut self, section: &mut Section, key: &str) -> Option<String> {
        match section.take(key) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.problem(
                    section.name,
                    key,
                    &format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, section: &mut Section, key: &str, default: &str) -> String {
        self.optional_string(section, key)
            .unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn strings(&mut self, section: &mut Section, key: &str) -> Vec<String> {
        match section.take(key) {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_str) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            // A variable holds no array unless written as TOML: a comma list is one too.
            Some(Value::String(list)) if self.env_var(section.name, key).is_some() => list
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(_) => {
                self.problem(section.name, key, "expected an array of strings");
                Vec::new()
            }
        }
    }

    pub(super) fn boolean(&mut self, section: &mut Section, key: &str, default: bool) -> bool {
        match section.take(key) {
            None => default,
            Some(Value::Boolean(b)) => b,
            Some(other) => {
                self.problem(
                    section.name,
                    key,
                    &format!("expected true or false, found {}", other.type_str()),
                );
                default
            }
        }
    }

    pub(super) fn count(&mut self, section: &mut Section, key: &str, default: usize) -> usize {
        match section.take(key) {
            None => default,
            Some(Value::Integer(n)) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(other) => {
                self.problem(
                    section.name,
                    key,
                    &format!("expected a non-negative integer, found {other}"),
                );
                default
            }
        }
    }

    /// A count where 0 would make the gateway useless (`max_connections = 0` serves nobody).
    pub(super) fn positive_count(
        &mut self,
        section: &mut Section,
        key: &str,
        default: usize,
    ) -> usize {
        match self.count(section, key, default) {
            0 => {
                self.problem(section.name, key, "must be at least 1, found 0");
                default
            }
            n => n,
        }
    }

    pub(super) fn duration(
        &mut self,
        section: &mut Section,
        key: &str,
        default: Duration,
    ) -> Duration {
        match section.take(key) {
            None => default,
            Some(Value::String(s)) => match humantime::parse_duration(&s) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.problem(
                        section.name,
                        key,
                        &format!("expected a duration like \"10s\" or \"500ms\", found \"{s}\""),
                    );
                    default
                }
            },
            Some(other) => {
                self.problem(
                    section.name,
                    key,
                    &format!("expected a duration string like \"10s\", found {other}"),
                );
                default
            }
        }
    }

    pub(super) fn parse<T: FromStr>(
        &mut self,
        section: &str,
        key: &str,
        value: &str,
        expected: &str,
    ) -> Option<T> {
        let parsed = value.parse::<T>().ok();
        if parsed.is_none() {
            self.problem(
                section,
                key,
                &format!("expected {expected}, found \"{value}\""),
            );
        }
        parsed
    }
}

/// A variable's text as a TOML value when it is one (`100`, `false`, `"text"`, `["a", "b"]`),
/// else as a string: addresses, URLs and durations need no quotes.
fn env_value(text: &str) -> Value {
    match format!("v = {text}").parse::<Table>() {
        Ok(mut table) if table.len() == 1 => table
            .remove("v")
            .unwrap_or_else(|| Value::String(text.to_owned())),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_variables_replace_file_values_and_the_command_line_wins() {
        let vars = env(&[
            ("TOKENGATE_UPSTREAM__URL", "http://es.internal:9200"),
            ("TOKENGATE_SERVER__LISTEN", "127.0.0.1:7000"),
            ("TOKENGATE_SERVER__MAX_CONNECTIONS", "77"),
            ("TOKENGATE_SECURITY__ADMIN_ROLES", "ops, admins"),
            ("TOKENGATE_LOG__FORMAT", "json"),
            ("TOKENGATE_CONFIG", "/not/a/key"),
            ("TOKENGATE_ADMIN_LISTEN", ""),
        ]);
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 5\n";
        let base = Path::new("/etc/tokengate");
        let config =
            Config::read("gw.toml", text, Some(base), &Overrides::default(), &vars).unwrap();
        assert_eq!(
            config.upstream.nodes.first().authority.as_str(),
            "es.internal:9200"
        );
        assert_eq!(config.server.listen.unwrap().port(), 7000);
        assert_eq!(config.server.max_connections, 77);
        assert_eq!(config.security.admin_roles, ["ops", "admins"]);
        assert_eq!(config.log.format, LogFormat::Json);

        let array = env(&[("TOKENGATE_SECURITY__ADMIN_ROLES", r#"["a", "b"]"#)]);
        let config = Config::read("t", "", None, &Overrides::default(), &array).unwrap();
        assert_eq!(config.security.admin_roles, ["a", "b"]);

        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let config = Config::read("gw.toml", text, Some(base), &overrides, &vars).unwrap();
        assert_eq!(config.server.listen.unwrap().port(), 0);
    }

    #[test]
    fn a_bad_variable_is_reported_by_its_name() {
        let vars = env(&[
            ("TOKENGATE_UPSTREAM__TIMEOUT", "soon"),
            ("TOKENGATE_SERVER__COLOUR", "red"),
            ("TOKENGATE_NOSUCH__KEY", "1"),
        ]);
        let problems = Config::read("gw.toml", "", None, &Overrides::default(), &vars)
            .unwrap_err()
            .problems;
        let expect = [
            "environment variable TOKENGATE_UPSTREAM__TIMEOUT: [upstream] timeout: expected a duration",
            "environment variable TOKENGATE_SERVER__COLOUR: [server] colour: unknown key",
            "environment variable TOKENGATE_NOSUCH__KEY: names no key",
        ];
        for fragment in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(fragment)),
                "{fragment} not in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn relative_paths_in_a_file_are_the_files_and_others_the_working_directorys() {
        let text = "[server]\ndata_dir = \"state\"\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n[upstream]\nca = \"ca.pem\"\n";
        let base = Path::new("/etc/tokengate");
        let config = Config::read(
            "gw.toml",
            text,
            Some(base),
            &Overrides::default(),
            &Env::new(),
        )
        .unwrap();
        assert_eq!(config.server.data_dir, base.join("state"));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, base.join("tls/cert.pem"));
        assert_eq!(tls.key, PathBuf::from("/abs/key.pem"));
        assert_eq!(config.upstream.tls.ca, Some(base.join("ca.pem")));
        assert_eq!(
            config.audit.output,
            Some(LogOutput::File(base.join("state/audit.json")))
        );

        let config = Config::read(
            "gw.toml",
            "",
            Some(base),
            &Overrides::default(),
            &Env::new(),
        )
        .unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("data"));
        let overrides = Overrides {
            data_dir: Some("cli-dir".into()),
            ..Overrides::default()
        };
        let config = Config::read("gw.toml", text, Some(base), &overrides, &Env::new()).unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("cli-dir"));
        let vars = env(&[("TOKENGATE_SERVER__DATA_DIR", "env-dir")]);
        let config =
            Config::read("gw.toml", text, Some(base), &Overrides::default(), &vars).unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("env-dir"));
    }

    #[test]
    fn empty_text_gives_embedded_defaults() {
        let config = Config::from_toml("t", "", &Overrides::default()).unwrap();
        assert_eq!(config.server.listen.unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.max_connections, 10_000);
        assert_eq!(
            config.upstream.nodes.first().authority.as_str(),
            "127.0.0.1:9200"
        );
        assert_eq!(config.server.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let text = r#"
            bogus = 1
            [server]
            listen = "nope"
            max_connections = 0
            [upstream]
            url = "ftp://x"
            timeout = "soon"
            color = "red"
        "#;
        let error = Config::from_toml("gw.toml", text, &Overrides::default()).unwrap_err();
        let all = error.problems.join("\n");
        for needle in [
            "[server] listen",
            "[server] max_connections",
            "[upstream] url",
            "[upstream] timeout",
            "[upstream] color",
            "`bogus`",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
        assert!(error.problems.iter().all(|p| p.starts_with("gw.toml: ")));
        assert_eq!(error.problems.len(), 6);
    }

    #[test]
    fn overrides_replace_file_values() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            admin_listen: None,
            upstream: vec!["https://es.example:9243/prefix/".into()],
            data_dir: Some("/tmp/x".into()),
        };
        let config =
            Config::from_toml("t", "[server]\nlisten = \"1.2.3.4:1\"", &overrides).unwrap();
        assert_eq!(config.server.listen.unwrap().port(), 0);
        assert_eq!(config.upstream.nodes.first().scheme, Scheme::HTTPS);
        assert_eq!(config.upstream.nodes.first().path_prefix, "/prefix");
    }

    #[test]
    fn a_misspelt_key_or_section_is_told_what_was_probably_meant() {
        let text = "[servr]\nlisten = \"127.0.0.1:1\"\n[server]\nlistn = \"127.0.0.1:1\"\n\
                    colour = \"red\"\n[upstream]\nurll = \"http://a:9200\"\n";
        let error = Config::from_toml("gw.toml", text, &Overrides::default()).unwrap_err();
        assert_eq!(
            error.problems,
            [
                "gw.toml: [server] colour: unknown key",
                "gw.toml: [server] listn: unknown key (did you mean `listen`?)",
                "gw.toml: [upstream] urll: unknown key (did you mean `url`?)",
                "gw.toml: unknown section or key `servr` (did you mean `[server]`?)",
            ]
        );
    }

    #[test]
    fn a_bad_upstream_flag_is_blamed_on_the_flag() {
        let overrides = Overrides {
            upstream: vec!["127.0.0.1:9299".into()],
            ..Overrides::default()
        };
        let error = Config::from_toml("<defaults>", "", &overrides).unwrap_err();
        assert_eq!(
            error.problems,
            [
                "--upstream \"127.0.0.1:9299\": must start with http:// or https:// \
              (did you mean \"http://127.0.0.1:9299\"?)"
            ]
        );
    }
}
