//! `[[service_accounts]]`, and the keys elsewhere that decide what a service token's request
//! carries to the cluster: `upstream.service_credentials` and `security.pass_through`.

use http::HeaderValue;
use toml::Value;

use super::reader::{Reader, Section};
use super::{AccountConfig, AccountCredential, PassThrough};
use crate::access::{AccessRules, Rule};
use crate::identity::AccountId;

const SECTION: &str = "service_accounts";

impl Reader<'_> {
    pub(super) fn accounts(&mut self) -> Vec<AccountConfig> {
        let Some(value) = self.root.remove(SECTION) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.problems.push(format!(
                "{}: `{SECTION}` must be an array of tables ([[{SECTION}]])",
                self.source
            ));
            return Vec::new();
        };
        let mut accounts: Vec<AccountConfig> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let Value::Table(table) = item else {
                self.problem(SECTION, &format!("#{i}"), "expected a table");
                continue;
            };
            let mut section = Section {
                name: SECTION,
                table,
            };
            let key = |k: &str| format!("#{i}.{k}");
            let text = self.string(&mut section, "account", "");
            let account = AccountId::parse(&text);
            if account.is_none() {
                self.problem(
                    SECTION,
                    &key("account"),
                    &format!("expected \"namespace/service\", found \"{text}\""),
                );
            }
            let role_descriptor = section
                .table
                .remove("role_descriptor")
                .and_then(|v| serde_json::to_value(v).ok());
            let credential = self.account_credential(&mut section, i);
            let access = self.access_rules(&mut section, i);
            // The keys are read under the entry's own number, so leftovers are too.
            for leftover in section.table.keys().cloned().collect::<Vec<_>>() {
                self.problem(SECTION, &key(&leftover), "unknown key");
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
            accounts.push(AccountConfig {
                account,
                role_descriptor,
                credential,
                access,
            });
        }
        accounts
    }

    /// At most one of `upstream_credential`, `upstream_authorization`,
    /// `upstream_authorization_file` and `upstream_authorization_env`.
    fn account_credential(&mut self, section: &mut Section, i: usize) -> Option<AccountCredential> {
        let mode = self.optional_string(section, "upstream_credential");
        let inline = self.optional_string(section, "upstream_authorization");
        let file = self.optional_string(section, "upstream_authorization_file");
        let env = self.optional_string(section, "upstream_authorization_env");
        let given = [&mode, &inline, &file, &env]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given > 1 {
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
        let (key, text) = if let Some(text) = inline {
            ("upstream_authorization", text)
        } else if let Some(path) = file {
            match std::fs::read_to_string(&path) {
                Ok(text) => ("upstream_authorization_file", text),
                Err(e) => {
                    self.problem(
                        SECTION,
                        &format!("#{i}.upstream_authorization_file"),
                        &format!("cannot read {path}: {e}"),
                    );
                    return None;
                }
            }
        } else if let Some(var) = env {
            match std::env::var(&var) {
                Ok(text) => ("upstream_authorization_env", text),
                Err(_) => {
                    self.problem(
                        SECTION,
                        &format!("#{i}.upstream_authorization_env"),
                        &format!("environment variable {var} is not set"),
                    );
                    return None;
                }
            }
        } else {
            return None;
        };
        match secret_header(text.trim()) {
            Some(value) => Some(AccountCredential::Configured(value)),
            None => {
                // The value itself is a secret: never quoted.
                self.problem(
                    SECTION,
                    &format!("#{i}.{key}"),
                    "is not a usable Authorization value (e.g. \"ApiKey <base64>\")",
                );
                None
            }
        }
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
        let value = section.table.remove("access")?;
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
            let mut rule = Section {
                name: SECTION,
                table,
            };
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
}
