//! The `[tls]` section and the TLS keys of `[upstream]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::reader::{Reader, Section};
use super::{ClientAuth, TlsConfig, UpstreamTls};

impl Reader<'_> {
    /// `[tls]`: present with `cert` and `key` means an HTTPS listener.
    pub(super) fn listener_tls(&mut self) -> Option<TlsConfig> {
        let mut tls = self.section("tls");
        if tls.table.is_empty() {
            return None;
        }
        let listen_text = self.string(&mut tls, "listen", TlsConfig::DEFAULT_LISTEN);
        let listen = self.parse::<SocketAddr>(
            "tls",
            "listen",
            &listen_text,
            "an address like 127.0.0.1:8443",
        );
        let cert = self.path(&mut tls, "cert");
        let key = self.path(&mut tls, "key");
        let client_ca = self.path(&mut tls, "client_ca");
        let client_auth = match self
            .string(&mut tls, "client_authentication", "required")
            .as_str()
        {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            other => {
                self.problem(
                    "tls",
                    "client_authentication",
                    &format!("expected \"required\" or \"optional\", found \"{other}\""),
                );
                ClientAuth::Required
            }
        };
        let reload_interval = self.duration(
            &mut tls,
            "reload_interval",
            TlsConfig::DEFAULT_RELOAD_INTERVAL,
        );
        self.finish(&tls);
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                listen: listen?,
                cert,
                key,
                client_ca,
                client_auth,
                reload_interval,
            }),
            (cert, key) => {
                for (name, value) in [("cert", cert.is_none()), ("key", key.is_none())] {
                    if value {
                        self.problem(
                            "tls",
                            name,
                            "is required when [tls] is present (a PEM file path)",
                        );
                    }
                }
                None
            }
        }
    }

    /// TLS keys of `[upstream]`; they only matter for an `https://` URL.
    pub(super) fn upstream_tls(&mut self, upstream: &mut Section) -> UpstreamTls {
        let ca = self.path(upstream, "ca");
        let ca_fingerprint = self
            .optional_string(upstream, "ca_fingerprint")
            .and_then(|text| {
                let pin = parse_fingerprint(&text);
                if pin.is_none() {
                    self.problem(
                        "upstream",
                        "ca_fingerprint",
                        "expected 64 hex digits (SHA-256, colons allowed)",
                    );
                }
                pin
            });
        let client_cert = self.path(upstream, "client_cert");
        let client_key = self.path(upstream, "client_key");
        if client_cert.is_some() != client_key.is_some() {
            self.problem(
                "upstream",
                "client_cert",
                "client_cert and client_key go together",
            );
        }
        UpstreamTls {
            ca,
            ca_fingerprint,
            client_cert,
            client_key,
            verify: self.boolean(upstream, "verify", true),
            http2: self.boolean(upstream, "http2", true),
        }
    }

    pub(super) fn path(&mut self, section: &mut Section, key: &str) -> Option<PathBuf> {
        self.optional_string(section, key)
            .filter(|p| !p.is_empty())
            .map(|p| self.resolve(section.name, key, p))
    }
}

/// `AB:CD:…` or `abcd…` to 32 bytes.
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    #[test]
    fn tls_section_needs_cert_and_key() {
        let error = Config::from_toml(
            "t",
            "[tls]\nlisten = \"127.0.0.1:8443\"\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(error.problems.len(), 2, "{error}");
        let config = Config::from_toml(
            "t",
            "[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.tls.unwrap().listen.port(), 8443);
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let plain = "a".repeat(64);
        let text = format!("[upstream]\nca_fingerprint = \"{plain}\"\n");
        let config = Config::from_toml("t", &text, &Overrides::default()).unwrap();
        assert_eq!(config.upstream.tls.ca_fingerprint, Some([0xaa; 32]));
        let colons = vec!["AA"; 32].join(":");
        let text = format!("[upstream]\nca_fingerprint = \"{colons}\"\n");
        assert!(Config::from_toml("t", &text, &Overrides::default()).is_ok());
        let error = Config::from_toml(
            "t",
            "[upstream]\nca_fingerprint = \"xyz\"\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.problems[0].contains("ca_fingerprint"));
    }
}
