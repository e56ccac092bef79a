//! `[admin]`: the listener for health checks and metrics.

use std::net::SocketAddr;

use super::reader::Reader;
use super::AdminConfig;

impl Reader<'_> {
    /// `listen` comes from the command line when given there (`--admin-listen`).
    pub(super) fn admin(&mut self, cli_listen: Option<&str>) -> AdminConfig {
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
        self.finish(&admin);
        AdminConfig {
            listen,
            ready_requires_upstream,
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
}
