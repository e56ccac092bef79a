//! What the gateway knows about a client connection, computed once when it is accepted and
//! handed to every request on it: who is calling (for limits, logs and the forwarding headers)
//! and what the connection's byte scan has seen.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use http::HeaderValue;

/// What the gateway knows about the client connection, computed once per connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The connection's remote address: the unit of every per-client limit.
    pub peer: SocketAddr,
    /// The peer's IP as a header value, ready to put in `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: HeaderValue,
    /// The peer is a configured trusted proxy: its forwarding headers are kept and extended.
    pub trusted: bool,
    /// Raised by the connection's byte scan when a head carried both `Content-Length` and
    /// `Transfer-Encoding` (see the listener's `scan::ScanIo`).
    pub ambiguous_length: Arc<AtomicBool>,
    /// Raised once the TLS handshake accepted a client certificate (the verifier checked it
    /// against the listener's client CA): the admin listener lets such a client in without a
    /// password.
    pub client_certificate: Arc<AtomicBool>,
}

impl ClientInfo {
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        trusted: bool,
        ambiguous_length: Arc<AtomicBool>,
    ) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        ClientInfo {
            peer,
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            trusted,
            ambiguous_length,
            client_certificate: Arc::default(),
        }
    }
}
