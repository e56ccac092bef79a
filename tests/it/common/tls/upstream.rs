//! A fake cluster that speaks HTTPS: a chosen certificate chain, ALPN offer and client
//! certificate policy; it records every request and answers like a node.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{provider, Ca, Issued};

/// One request as the TLS fake cluster saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: Version,
    pub path: String,
    pub headers: HeaderMap,
    /// Whether the connection it came on presented a client certificate.
    pub client_cert: bool,
}

/// A fake cluster speaking HTTPS (HTTP/1.1 and, when offered by ALPN, h2); records requests and
/// answers 200 with a node-like JSON body.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

/// Configures a [`TlsUpstream`].
pub struct TlsUpstreamBuilder {
    served: Issued,
    alpn: Vec<Vec<u8>>,
    client_ca: Option<CertificateDer<'static>>,
}

impl TlsUpstream {
    /// An upstream presenting `served`'s chain, offering h2 and http/1.1.
    pub fn serving(served: &Issued) -> TlsUpstreamBuilder {
        TlsUpstreamBuilder {
            served: served.clone(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            client_ca: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstreamBuilder {
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Refuses clients without a certificate signed by `ca`.
    pub fn require_client_cert(mut self, ca: &Ca) -> Self {
        self.client_ca = Some(ca.cert.clone());
        self
    }

    pub async fn start(self) -> TlsUpstream {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.into(), provider());
                builder.with_client_cert_verifier(verifier.build().unwrap())
            }
        };
        let mut config = builder
            .with_single_cert(self.served.chain(), self.served.key())
            .unwrap();
        config.alpn_protocols = self.alpn;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(upstream_loop(tcp, acceptor, seen.clone()));
        TlsUpstream { addr, seen, task }
    }
}

async fn upstream_loop(tcp: TcpListener, acceptor: TlsAcceptor, seen: Arc<Mutex<Vec<Seen>>>) {
    while let Ok((stream, _)) = tcp.accept().await {
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            // A refused handshake is the outcome some tests want; nothing to record.
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let client_cert = tls.get_ref().1.peer_certificates().is_some();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(Seen {
                        version: request.version(),
                        path: request.uri().path().to_owned(),
                        headers: request.headers().clone(),
                        client_cert,
                    });
                    let _ = request.into_body().collect().await;
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .header("x-elastic-product", "Elasticsearch")
                        .body(Full::new(Bytes::from_static(b"{\"tls_upstream\":true}")))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
