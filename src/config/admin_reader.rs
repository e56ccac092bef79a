//! `[admin]`: the listener for health checks, metrics and the status page, and who may read
//! what it shows.

use std::net::SocketAddr;

use toml::Value;

use super::reader::{Reader, Section};
use super::{AdminConfig, RequireAuth};

impl Reader<'_> {
    /// `listen` comes from the command line when given there (`--admin-listen`); `tls` says
    /// whether a `[tls]` listener is configured, whose certificate `client_ca` needs.
    pub(super) fn admin(&mut self, cli_listen: Option<&str>, tls: bool) -> AdminConfig {
        let mut admin = self.section("admin");
        let file_listen = self.string(&mut admin, "listen", AdminConfig::DEFAULT_LISTEN);
        let text = cli_listen.map_or(file_listen, str::to_owned);
        let listen = match text.as_str() {
            "" => None,
            text => self.parse::<SocketAddr>(
                "admin",
                "listen",
                text,
                "an address like 127.0.0.1:9901, or \"\" for no admin listener",
            ),
        };
        let ready_requires_upstream = self.boolean(&mut admin, "ready_requires_upstream", true);
        let require_auth = self.require_auth(&mut admin);
        let metrics_require_auth = self.boolean(&mut admin, "metrics_require_auth", true);
        let client_ca = self.path(&mut admin, "client_ca");
        if client_ca.is_some() && !tls {
            self.problem(
                "admin",
                "client_ca",
                "needs a [tls] section: the admin listener then speaks TLS with its certificate",
            );
        }
        self.finish(&admin);
        AdminConfig {
            listen,
            ready_requires_upstream,
            require_auth,
            metrics_require_auth,
            client_ca,
        }
    }

    /// `require_auth`: `true`, `false` or `"auto"` (the default: required off loopback).
    fn require_auth(&mut self, admin: &mut Section) -> RequireAuth {
        match admin.take("require_auth") {
            None => RequireAuth::OffLoopback,
            Some(Value::Boolean(true)) => RequireAuth::Always,
            Some(Value::Boolean(false)) => RequireAuth::Never,
            Some(Value::String(text)) if text == "auto" => RequireAuth::OffLoopback,
            // A variable's `true` arrives as a boolean already; its `"true"` as text.
            Some(Value::String(text)) if text == "true" => RequireAuth::Always,
            Some(Value::String(text)) if text == "false" => RequireAuth::Never,
            Some(other) => {
                self.problem(
                    "admin",
                    "require_auth",
                    &format!("expected true, false or \"auto\", found {other}"),
                );
                RequireAuth::OffLoopback
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn admin_listens_on_loopback_unless_told_otherwise() {
        let config = Config::from_toml("t", "", &Overrides::default()).unwrap();
        assert_eq!(config.admin.listen.unwrap().to_string(), "127.0.0.1:9901");
        assert!(config.admin.ready_requires_upstream);
        let text = "[admin]\nlisten = \"\"\nready_requires_upstream = false\n";
        let config = Config::from_toml("t", text, &Overrides::default()).unwrap();
        assert!(config.admin.listen.is_none());
        assert!(!config.admin.ready_requires_upstream);
        let error = Config::from_toml(
            "t",
            "[admin]\nlisten = \"nowhere\"\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.problems[0].contains("[admin] listen"), "{error}");
    }

    #[test]
    fn authentication_is_required_off_loopback_unless_told_otherwise() {
        let read = |text: &str| Config::from_toml("t", text, &Overrides::default());
        let config = read("").unwrap();
        assert_eq!(config.admin.require_auth, RequireAuth::OffLoopback);
        assert!(!config.admin.requires_auth());
        assert!(config.admin.metrics_require_auth);
        let config = read("[admin]\nlisten = \"0.0.0.0:9901\"\n").unwrap();
        assert!(config.admin.requires_auth());
        let config = read("[admin]\nlisten = \"0.0.0.0:9901\"\nrequire_auth = false\n").unwrap();
        assert!(!config.admin.requires_auth());
        let config = read("[admin]\nrequire_auth = true\nmetrics_require_auth = false\n").unwrap();
        assert!(config.admin.requires_auth());
        assert!(!config.admin.metrics_require_auth);
        let error = read("[admin]\nrequire_auth = \"sometimes\"\n").unwrap_err();
        assert!(
            error.problems[0].contains("[admin] require_auth"),
            "{error}"
        );
        let error = read("[admin]\nclient_ca = \"ca.pem\"\n").unwrap_err();
        assert!(error.problems[0].contains("[admin] client_ca"), "{error}");
        assert!(error.problems[0].contains("[tls]"), "{error}");
    }
}
