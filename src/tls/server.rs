//! The listener's TLS: certificate resolver with hot reload, ALPN, optional client certificates.
//!
//! The certificate sits behind a resolver so that replacing the files (or SIGHUP) switches new
//! handshakes to the new pair while open connections keep the session they have. A broken new
//! pair is refused with a log line and the old one keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::{load_certified_key, load_certs, provider, TlsError};
use crate::config::{ClientAuth, TlsConfig};

/// The HTTPS side of the gateway: an acceptor plus the handle that reloads its certificate.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<Reloading>,
}

/// Serves the current pair; swapped whole on reload.
#[derive(Debug)]
struct Reloading {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the files the current pair came from.
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Reloading {
    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let time = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (time(&self.cert_path), time(&self.key_path))
    }
}

impl ServerTls {
    /// When the certificate served now expires, in seconds since the Unix epoch (for the
    /// metrics: an alert on it beats an outage); `None` if its leaf does not parse.
    pub fn not_after(&self) -> Option<i64> {
        self.with_leaf(|leaf| leaf.validity().not_after.timestamp())
    }

    /// The certificate's subject as text (`CN=gateway.example, O=…`), for the status page.
    pub fn subject(&self) -> Option<String> {
        self.with_leaf(|leaf| leaf.subject().to_string())
    }

    /// `read` of the leaf certificate served now; `None` if it does not parse.
    fn with_leaf<T>(
        &self,
        read: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T,
    ) -> Option<T> {
        let current = self
            .resolver
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let leaf = current.cert.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(read(&parsed))
    }

    /// Loads the pair (and client CA) and builds the acceptor; any problem names its file.
    pub fn new(config: &TlsConfig) -> Result<ServerTls, TlsError> {
        let pair = load_certified_key(&config.cert, &config.key)?;
        let resolver = Arc::new(Reloading {
            cert_path: config.cert.clone(),
            key_path: config.key.clone(),
            current: RwLock::new(Arc::new(pair)),
            stamp: RwLock::new((None, None)),
        });
        *resolver.stamp.write().unwrap_or_else(|e| e.into_inner()) = resolver.stamps();
        let client_ca = config.client_ca.as_ref().map(|ca| (ca, config.client_auth));
        Self::build(resolver, client_ca)
    }

    /// The same certificate (reloaded with this one) for another listener, asking clients for
    /// a certificate signed by `client_ca` without requiring one: the admin listener, where a
    /// client without one may still log in, and probes need neither.
    pub fn with_optional_client_ca(&self, client_ca: &PathBuf) -> Result<ServerTls, TlsError> {
        Self::build(
            Arc::clone(&self.resolver),
            Some((client_ca, ClientAuth::Optional)),
        )
    }

    fn build(
        resolver: Arc<Reloading>,
        client_ca: Option<(&PathBuf, ClientAuth)>,
    ) -> Result<ServerTls, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some((path, client_auth)) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots.add(cert).map_err(|e| TlsError::File {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = match client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?)
            }
        };
        let mut server_config = builder.with_cert_resolver(resolver.clone());
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // The server's cipher-suite order decides, as Elasticsearch's listener does; every suite
        // offered is AEAD with forward secrecy, but the pick should not be the client's.
        server_config.ignore_client_order = true;
        // Resumption keeps reconnecting clients off the full handshake.
        server_config.session_storage =
            rustls::server::ServerSessionMemoryCache::new(TlsConfig::SESSION_CACHE_SIZE);
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            server_config.ticketer = ticketer;
        }
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            resolver,
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Loads the files again and, if the pair is good, serves it to new handshakes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = self.resolver.stamps();
        let pair = load_certified_key(&self.resolver.cert_path, &self.resolver.key_path);
        // Remember the attempt either way, so a broken pair is reported once, not every tick.
        *self
            .resolver
            .stamp
            .write()
            .unwrap_or_else(|e| e.into_inner()) = stamp;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(pair?);
        Ok(())
    }

    fn changed(&self) -> bool {
        *self
            .resolver
            .stamp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            != self.resolver.stamps()
    }

    /// One step of the certificate watcher: reloads when the files changed, or in any case when
    /// `forced` (SIGHUP). A broken new pair is logged and the previous one keeps serving.
    /// `None` when nothing was re-read; otherwise the outcome, for the audit log.
    pub fn refresh(&self, forced: bool) -> Option<Result<(), TlsError>> {
        if !forced && !self.changed() {
            return None;
        }
        let outcome = self.reload();
        match &outcome {
            Ok(()) => {
                tracing::info!(cert = %self.resolver.cert_path.display(), "tls certificate reloaded")
            }
            Err(error) => {
                tracing::error!(%error, "new tls certificate refused; the previous one keeps serving")
            }
        }
        Some(outcome)
    }
}
