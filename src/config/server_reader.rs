//! `[server]`: where the gateway listens and keeps its data, what it calls itself, and the
//! limits on its connections.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::reader::{Reader, Section};
use super::ServerConfig;

impl Reader<'_> {
    /// The `[server]` section, and whether `listen` was emptied on purpose (HTTPS only), which
    /// the caller checks once it knows whether a TLS listener exists.
    pub(super) fn server(&mut self, server: &mut Section) -> (ServerConfig, bool) {
        let (listen, listen_off) = self.listen(server);
        let data_dir = self.data_dir(server);
        let config = ServerConfig {
            listen,
            data_dir,
            cluster_name: self.string(server, "cluster_name", ServerConfig::DEFAULT_CLUSTER_NAME),
            node_name: self.string(server, "node_name", ServerConfig::DEFAULT_NODE_NAME),
            max_connections: self.positive_count(
                server,
                "max_connections",
                ServerConfig::DEFAULT_MAX_CONNECTIONS,
            ),
            connections: self.connection_limits(server),
            header_timeout: self.duration(
                server,
                "header_timeout",
                ServerConfig::DEFAULT_HEADER_TIMEOUT,
            ),
            shutdown_grace: self.duration(
                server,
                "shutdown_grace",
                ServerConfig::DEFAULT_SHUTDOWN_GRACE,
            ),
            workers: match self.count(server, "workers", 0) {
                0 => None,
                n => Some(n),
            },
            http: self.http_limits(server),
            trusted_proxies: self.trusted_proxies(server),
        };
        (config, listen_off)
    }

    /// `listen`, and whether it is empty: an address that does not parse gives `None` too, but
    /// is reported as such, not as a choice of HTTPS only.
    fn listen(&mut self, server: &mut Section) -> (Option<SocketAddr>, bool) {
        // A command-line value wins over the file's, which is still consumed so it is not
        // reported as an unknown key.
        let file_listen = self.string(server, "listen", ServerConfig::DEFAULT_LISTEN);
        let listen_text = self.overrides.listen.clone().unwrap_or(file_listen);
        let listen = match listen_text.as_str() {
            "" => None,
            text => self.parse::<SocketAddr>(
                "server",
                "listen",
                text,
                "an address like 127.0.0.1:8080, or \"\" for HTTPS only",
            ),
        };
        (listen, listen_text.is_empty())
    }

    fn data_dir(&mut self, server: &mut Section) -> PathBuf {
        // The default is no file's: like the embedded defaults, it means the working directory.
        let file_dir = match self.optional_string(server, "data_dir") {
            Some(dir) => self.resolve("server", "data_dir", dir),
            None => PathBuf::from(ServerConfig::DEFAULT_DATA_DIR),
        };
        self.overrides.data_dir.clone().unwrap_or(file_dir)
    }
}
