//! Test clients: rustls with a chosen trust, ALPN offer, versions, suites and identity, over
//! which hyper speaks HTTP/1.1 or h2 as ALPN decided; they report what the handshake gave.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{provider, Issued};
use crate::common::DEADLINE;

/// How a test client does TLS: what it trusts, offers by ALPN, speaks, and presents.
#[derive(Clone)]
pub struct TlsClient {
    roots: Vec<CertificateDer<'static>>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    /// Cipher suites in the client's order of preference; the provider's when `None`.
    suites: Option<Vec<SupportedCipherSuite>>,
    identity: Option<Issued>,
}

/// What one handshake gave: an HTTP connection plus the negotiated parameters.
pub struct Conn {
    pub alpn: Option<String>,
    pub version: ProtocolVersion,
    pub suite: SupportedCipherSuite,
    /// The chain the server sent, leaf first.
    pub peer: Vec<CertificateDer<'static>>,
    sender: Sender,
    authority: String,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An error with its whole `source()` chain, for messages and assertions.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl TlsClient {
    /// Trusts `root`, offers h2 and http/1.1, speaks TLS 1.2 and 1.3, presents no certificate.
    pub fn trusting(root: &CertificateDer<'static>) -> TlsClient {
        TlsClient {
            roots: vec![root.clone()],
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: rustls::ALL_VERSIONS.to_vec(),
            suites: None,
            identity: None,
        }
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn only(mut self, version: &'static SupportedProtocolVersion) -> Self {
        self.versions = vec![version];
        self
    }

    /// Offers exactly `suites`, in this order of preference.
    pub fn suites(mut self, suites: &[SupportedCipherSuite]) -> Self {
        self.suites = Some(suites.to_vec());
        self
    }

    pub fn identity(mut self, certificate: &Issued) -> Self {
        self.identity = Some(certificate.clone());
        self
    }

    pub fn config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for root in &self.roots {
            roots.add(root.clone()).unwrap();
        }
        let mut provider = provider();
        if let Some(suites) = &self.suites {
            Arc::make_mut(&mut provider).cipher_suites = suites.clone();
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder.with_client_auth_cert(id.chain(), id.key()).unwrap(),
        };
        config.alpn_protocols = self.alpn.clone();
        config
    }

    /// Handshakes with `addr` as `localhost` and starts HTTP per the ALPN outcome.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Conn, String> {
        let connecting = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let connector = TlsConnector::from(Arc::new(self.config()));
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {}", describe(&e)))?;
            let session = tls.get_ref().1;
            let alpn = session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let version = session.protocol_version().unwrap();
            let suite = session.negotiated_cipher_suite().unwrap();
            let peer = session.peer_certificates().unwrap_or_default().to_vec();
            let io = TokioIo::new(tls);
            let sender = if alpn.as_deref() == Some("h2") {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| describe(&e))?;
                tokio::spawn(conn);
                Sender::H2(sender)
            } else {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| describe(&e))?;
                tokio::spawn(conn);
                Sender::H1(sender)
            };
            Ok(Conn {
                alpn,
                version,
                suite,
                peer,
                sender,
                authority: format!("localhost:{}", addr.port()),
            })
        };
        tokio::time::timeout(DEADLINE, connecting)
            .await
            .map_err(|_| "connect timed out".to_owned())?
    }

    /// One `GET path` on a new connection: the status, or why there was none.
    pub async fn get(
        &self,
        addr: SocketAddr,
        path: &str,
        authorization: &str,
    ) -> Result<u16, String> {
        let mut conn = self.connect(addr).await?;
        conn.send("GET", path, authorization).await.map(|(s, _)| s)
    }
}

impl Conn {
    /// Sends an empty-bodied request; returns status and body text.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        authorization: &str,
    ) -> Result<(u16, String), String> {
        let uri = format!("https://{}{path}", self.authority);
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", authorization);
        let exchange = async {
            let response = match &mut self.sender {
                Sender::H1(sender) => {
                    let request = request.uri(path).header("host", &self.authority);
                    sender
                        .send_request(request.body(Full::default()).unwrap())
                        .await
                }
                Sender::H2(sender) => {
                    let request = request.version(Version::HTTP_2);
                    sender
                        .send_request(request.body(Full::default()).unwrap())
                        .await
                }
            }
            .map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| describe(&e))?;
            Ok((
                status,
                String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            ))
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}
