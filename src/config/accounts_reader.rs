//! `[[service_accounts]]`, and the keys elsewhere that decide what a service token's request
//! carries to the cluster: `upstream.service_credentials` and `security.pass_through`.

use http::HeaderValue;
use toml::Value;

use super::reader::{Reader, Section};
use super::{AccountConfig, AccountCredential, LimitSettings, PassThrough};
use crate::identity::AccountId;
use crate::policy::access_rules::{AccessRules, Rule};

const SECTION: &str = "service_accounts";

impl Reader<'_> {
    /// The accounts, and the limits of those that set any (kept apart: a limit changes on a
    /// reload without touching the account's credential).
    pub(super) fn accounts(&mut self) -> (Vec<AccountConfig>, Vec<(AccountId, LimitSettings)>) {
        let mut limits = Vec::new();
        let Some(value) = self.root.remove(SECTION) else {
            return (Vec::new(), limits);
        };
        let Value::Array(items) = value else {
            self.problems.push(format!(
                "{}: `{SECTION}` must be an array of tables ([[{SECTION}]])",
                self.source
            ));
            return (Vec::new(), limits);
        };
        let mut accounts: Vec<AccountConfig> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let Value::Table(table) = item else {
                self.problem(SECTION, &format!("#{i}"), "expected a table");
                continue;
            };
            let mut section = Section::new(SECTION, table);
            let key = |k: &str| format!("#{i}.{k}");
            let account = self.account_id(&mut section, &key("account"));
            let role_descriptor = section
                .table
                .remove("role_descriptor")
                .and_then(|v| serde_json::to_value(v).ok());
            let credential = self.account_credential(&mut section, i);
            let access = self.access_rules(&mut section, i);
            let limit = self.limit_settings(&mut section, &format!("#{i}."));
            // The keys are read under the entry's own number, so leftovers are too.
            for leftover in section.table.keys().cloned().collect::<Vec<_>>() {
                let what = section.unknown(&leftover);
                self.problem(SECTION, &key(&leftover), &what);
            }
            let Some(account) = account else { continue };
            if accounts.iter().any(|a| a.account == account) {
                self.problem(
                    SECTION,
                    &key("account"),
                    &format!("\"{account}\" is declared twice"),
                );
                continue;
            }
            if limit != LimitSettings::default() {
                limits.push((account.clone(), limit));
            }
            accounts.push(AccountConfig {
                account,
                role_descriptor,
                credential,
                access,
            });
        }
        (accounts, limits)
    }

    /// The entry's `account`, or a problem reported under `label`.
    fn account_id(&mut self, section: &mut Section, label: &str) -> Option<AccountId> {
        let text = self.string(section, "account", "");
        let account = AccountId::parse(&text);
        if account.is_none() {
            let what = format!("expected \"namespace/service\", found \"{text}\"");
            self.problem(SECTION, label, &what);
        }
        account
    }

    /// At most one of `upstream_credential`, `upstream_authorization`,
    /// `upstream_authorization_file` and `upstream_authorization_env`.
    fn account_credential(&mut self, section: &mut Section, i: usize) -> Option<AccountCredential> {
        let mode = self.optional_string(section, "upstream_credential");
        let secrets = self.secret_keys(section, "upstream_authorization");
        if secrets.len() + usize::from(mode.is_some()) > 1 {
            self.problem(
                SECTION,
                &format!("#{i}"),
                "set only one of upstream_credential, upstream_authorization, \
                 upstream_authorization_file and upstream_authorization_env",
            );
            return None;
        }
        if let Some(mode) = mode {
            return self.credential_mode(SECTION, &format!("#{i}.upstream_credential"), &mode);
        }
        let (key, from) = secrets.into_iter().next()?;
        self.read_secret(SECTION, &format!("#{i}."), &key, from)
            .map(AccountCredential::Configured)
    }

    /// `upstream.authorization`, `authorization_file` or `authorization_env`: at most one.
    pub(super) fn upstream_authorization(&mut self, upstream: &mut Section) -> Option<HeaderValue> {
        let mut secrets = self.secret_keys(upstream, "authorization");
        if secrets.len() > 1 {
            self.problem(
                "upstream",
                "authorization",
                "set only one of authorization, authorization_file and authorization_env",
            );
            return None;
        }
        let (key, from) = secrets.pop()?;
        self.read_secret("upstream", "", &key, from)
    }

    /// Takes `<base>`, `<base>_file` and `<base>_env` out of `section`: those set, with their keys.
    pub(super) fn secret_keys(
        &mut self,
        section: &mut Section,
        base: &str,
    ) -> Vec<(String, SecretFrom)> {
        let mut found = Vec::new();
        if let Some(text) = self.optional_string(section, base) {
            found.push((base.to_owned(), SecretFrom::Inline(text)));
        }
        let key = format!("{base}_file");
        if let Some(path) = self.optional_string(section, &key) {
            let path = self.resolve(section.name, &key, path);
            found.push((key, SecretFrom::File(path.display().to_string())));
        }
        let key = format!("{base}_env");
        if let Some(var) = self.optional_string(section, &key) {
            found.push((key, SecretFrom::Env(var)));
        }
        found
    }

    /// The credential behind one of those keys; a problem naming `[section] <label><key>` when it
    /// cannot be had. The value is a secret: no message quotes it.
    fn read_secret(
        &mut self,
        section: &str,
        label: &str,
        key: &str,
        from: SecretFrom,
    ) -> Option<HeaderValue> {
        let name = format!("{label}{key}");
        let text = self.secret_text(section, &name, from)?;
        let value = secret_header(&text);
        if value.is_none() {
            self.problem(
                section,
                &name,
                "is not a usable Authorization value (e.g. \"ApiKey <base64>\")",
            );
        }
        value
    }

    /// The text of a secret as configured, from the file or variable a `_file` or `_env` key
    /// names, trimmed; a problem naming `[section] name` when it cannot be had. No message
    /// quotes it.
    pub(super) fn secret_text(
        &mut self,
        section: &str,
        name: &str,
        from: SecretFrom,
    ) -> Option<String> {
        let text = match from {
            SecretFrom::Inline(text) => text,
            SecretFrom::File(path) => match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.problem(section, name, &format!("cannot read {path}: {e}"));
                    return None;
                }
            },
            SecretFrom::Env(var) => match self.env.get(&var) {
                Some(text) => text.clone(),
                None => {
                    let what = format!("environment variable {var} is not set");
                    self.problem(section, name, &what);
                    return None;
                }
            },
        };
        Some(text.trim().to_owned())
    }

    /// `"auto"`, `"gateway"` or `"none"`.
    pub(super) fn credential_mode(
        &mut self,
        section: &str,
        key: &str,
        text: &str,
    ) -> Option<AccountCredential> {
        match text {
            "auto" => Some(AccountCredential::Auto),
            "gateway" => Some(AccountCredential::Gateway),
            "none" => Some(AccountCredential::Nothing),
            other => {
                self.problem(
                    section,
                    key,
                    &format!("expected \"auto\", \"gateway\" or \"none\", found \"{other}\""),
                );
                None
            }
        }
    }

    /// `access = [{ methods = ["GET"], paths = ["/logs-*/_search"] }, …]`; absent: no local rules.
    fn access_rules(&mut self, section: &mut Section, i: usize) -> Option<AccessRules> {
        let value = section.take("access")?;
        let key = format!("#{i}.access");
        let Value::Array(items) = value else {
            self.problem(SECTION, &key, "expected an array of tables");
            return None;
        };
        let mut rules = Vec::new();
        for (j, item) in items.into_iter().enumerate() {
            let Value::Table(table) = item else {
                self.problem(SECTION, &format!("{key}#{j}"), "expected a table");
                continue;
            };
            let mut rule = Section::new(SECTION, table);
            let methods = self.strings(&mut rule, "methods");
            let paths = self.strings(&mut rule, "paths");
            for leftover in rule.table.keys().cloned().collect::<Vec<_>>() {
                self.problem(SECTION, &format!("{key}#{j}.{leftover}"), "unknown key");
            }
            match Rule::new(&methods, &paths) {
                Ok(rule) => rules.push(rule),
                Err(why) => self.problem(SECTION, &format!("{key}#{j}"), &why),
            }
        }
        Some(AccessRules::new(rules))
    }

    /// `security.pass_through = ["ApiKey", "Basic"]`.
    pub(super) fn pass_through(&mut self, security: &mut Section) -> PassThrough {
        let mut pass = PassThrough::default();
        for scheme in self.strings(security, "pass_through") {
            if scheme.eq_ignore_ascii_case("apikey") {
                pass.api_key = true;
            } else if scheme.eq_ignore_ascii_case("basic") {
                pass.basic = true;
            } else {
                self.problem(
                    "security",
                    "pass_through",
                    &format!("expected \"ApiKey\" or \"Basic\", found \"{scheme}\""),
                );
            }
        }
        pass
    }
}

/// Where a credential is: inline, in a file (path resolved), or in an environment variable.
pub(super) enum SecretFrom {
    Inline(String),
    File(String),
    Env(String),
}

/// A header value marked sensitive (kept out of HTTP/2 header compression tables and `Debug`).
pub(super) fn secret_header(text: &str) -> Option<HeaderValue> {
    if text.is_empty() {
        return None;
    }
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml("t", text, &Overrides::default())
    }

    #[test]
    fn accounts_are_validated() {
        let text = "[[service_accounts]]\naccount = \"acme/ingest\"\n[[service_accounts]]\naccount = \"bad\"\n";
        let error = load(text).unwrap_err();
        assert_eq!(error.problems.len(), 1);
        assert!(error.problems[0].contains("#1.account"));
    }

    #[test]
    fn credentials_and_rules_are_read() {
        let text = r#"
            [upstream]
            service_credentials = "gateway"
            [security]
            pass_through = ["apikey", "Basic"]
            [[service_accounts]]
            account = "elastic/kibana"
            upstream_authorization = "ApiKey a2liYW5h"
            [[service_accounts]]
            account = "acme/ingest"
            role_descriptor = { cluster = ["monitor"] }
            upstream_credential = "auto"
            access = [{ methods = ["POST"], paths = ["/logs-*/_bulk"] }]
        "#;
        let config = load(text).unwrap();
        assert!(matches!(
            config.upstream.service_credentials,
            AccountCredential::Gateway
        ));
        assert_eq!(
            config.security.pass_through,
            PassThrough {
                api_key: true,
                basic: true
            }
        );
        let kibana = &config.service_accounts[0];
        assert!(kibana.role_descriptor.is_none());
        match &kibana.credential {
            Some(AccountCredential::Configured(v)) => assert_eq!(v, "ApiKey a2liYW5h"),
            other => panic!("{other:?}"),
        }
        let ingest = &config.service_accounts[1];
        assert!(matches!(ingest.credential, Some(AccountCredential::Auto)));
        let rules = ingest.access.as_ref().unwrap();
        assert!(rules.allows(&http::Method::POST, "/logs-a/_bulk"));
        assert!(!rules.allows(&http::Method::GET, "/logs-a/_bulk"));
    }

    #[test]
    fn every_credential_problem_names_its_key() {
        let text = r#"
            [upstream]
            service_credentials = "sometimes"
            [security]
            pass_through = ["Bearer"]
            [[service_accounts]]
            account = "acme/a"
            upstream_credential = "auto"
            upstream_authorization = "ApiKey x"
            [[service_accounts]]
            account = "acme/b"
            upstream_authorization_file = "/nonexistent/tokengate-key"
            [[service_accounts]]
            account = "acme/c"
            upstream_authorization_env = "TOKENGATE_TEST_UNSET_VARIABLE"
            [[service_accounts]]
            account = "acme/d"
            access = [{ paths = ["no-slash"] }]
            surprise = 1
            [[service_accounts]]
            account = "acme/d"
        "#;
        let problems = load(text).unwrap_err().problems;
        let expect = [
            "[upstream] service_credentials: expected \"auto\"",
            "[security] pass_through: expected \"ApiKey\" or \"Basic\", found \"Bearer\"",
            "[service_accounts] #0: set only one of",
            "[service_accounts] #1.upstream_authorization_file: cannot read",
            "[service_accounts] #2.upstream_authorization_env: environment variable TOKENGATE_TEST_UNSET_VARIABLE is not set",
            "[service_accounts] #3.access#0: path pattern \"no-slash\" must start with /",
            "[service_accounts] #3.surprise: unknown key",
            "[service_accounts] #4.account: \"acme/d\" is declared twice",
        ];
        for fragment in expect {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "{fragment} not in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn a_credential_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "ApiKey ZmlsZQ==\n").unwrap();
        let text = format!(
            "[[service_accounts]]\naccount = \"acme/a\"\nupstream_authorization_file = \"{}\"\n",
            path.display()
        );
        let config = load(&text).unwrap();
        match &config.service_accounts[0].credential {
            Some(AccountCredential::Configured(v)) => {
                assert_eq!(v, "ApiKey ZmlsZQ==");
                assert!(v.is_sensitive());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_gateways_own_credential_comes_from_one_of_three_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("es-key"), "ApiKey ZmlsZQ==\n").unwrap();
        let env: Env = [("GW_KEY".to_owned(), "Basic ZW52".to_owned())].into();
        let read = |text: &str| {
            Config::read(
                "gw.toml",
                text,
                Some(dir.path()),
                &Overrides::default(),
                &env,
            )
        };
        let config = read("[upstream]\nauthorization_file = \"es-key\"\n").unwrap();
        let value = config.upstream.authorization.unwrap();
        assert_eq!(value, "ApiKey ZmlsZQ==");
        assert!(value.is_sensitive());
        let config = read("[upstream]\nauthorization_env = \"GW_KEY\"\n").unwrap();
        assert_eq!(config.upstream.authorization.unwrap(), "Basic ZW52");

        let problems =
            read("[upstream]\nauthorization = \"ApiKey x\"\nauthorization_env = \"GW_KEY\"\n")
                .unwrap_err()
                .problems;
        assert!(problems[0].contains("[upstream] authorization: set only one of"));
        let problems = read("[upstream]\nauthorization_file = \"missing\"\n")
            .unwrap_err()
            .problems;
        assert!(
            problems[0].contains("[upstream] authorization_file: cannot read"),
            "{problems:?}"
        );
        std::fs::write(dir.path().join("bad"), "Api\u{7f}Key secret-value").unwrap();
        let problems = read("[upstream]\nauthorization_file = \"bad\"\n")
            .unwrap_err()
            .problems;
        assert!(problems[0].contains("not a usable Authorization value"));
        assert!(!problems[0].contains("secret-value"), "{problems:?}");
    }
}
