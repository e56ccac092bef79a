//! The connection-limit keys of `[server]`.

use super::reader::{Reader, Section};
use super::ConnectionLimits;

impl Reader<'_> {
    /// `max_connections_per_ip` and `first_request_timeout`; 0 is refused for both, since
    /// either would turn every client away.
    pub(super) fn connection_limits(&mut self, server: &mut Section) -> ConnectionLimits {
        ConnectionLimits {
            per_ip: self.positive_count(
                server,
                "max_connections_per_ip",
                ConnectionLimits::DEFAULT_PER_IP,
            ),
            first_request_timeout: self.duration(
                server,
                "first_request_timeout",
                ConnectionLimits::DEFAULT_FIRST_REQUEST_TIMEOUT,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, ConnectionLimits, Overrides};

    #[test]
    fn defaults_apply_when_the_keys_are_absent() {
        let config = Config::from_toml("t", "", &Overrides::default()).unwrap();
        let limits = config.server.connections;
        assert_eq!(limits.per_ip, ConnectionLimits::DEFAULT_PER_IP);
        assert_eq!(
            limits.first_request_timeout,
            ConnectionLimits::DEFAULT_FIRST_REQUEST_TIMEOUT
        );
    }

    #[test]
    fn keys_are_read() {
        let text = "[server]\nmax_connections_per_ip = 4\nfirst_request_timeout = \"250ms\"\n";
        let config = Config::from_toml("t", text, &Overrides::default()).unwrap();
        assert_eq!(config.server.connections.per_ip, 4);
        assert_eq!(
            config.server.connections.first_request_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn zero_is_refused_naming_the_key() {
        let text = "[server]\nmax_connections_per_ip = 0\nfirst_request_timeout = \"0s\"\n";
        let error = Config::from_toml("gw.toml", text, &Overrides::default()).unwrap_err();
        assert_eq!(error.problems.len(), 2, "{error}");
        assert!(error.problems[0].starts_with("gw.toml: [server] max_connections_per_ip: "));
        assert!(error.problems[1].starts_with("gw.toml: [server] first_request_timeout: "));
    }
}
