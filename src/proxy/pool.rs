//! Connections to one node, kept open for the next request: hyper's own connection handles
//! in a stack, instead of a generic pooled client.
//!
//! A checkout is a lock and a pop; a connection goes back when its response body has been read
//! whole (its lease is released); a connection that cannot be made fails before the request is
//! handed over, so the request is still whole for another node. A node that negotiates h2 gets
//! one connection that every request shares.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::slots::Slot;
use crate::limits::Admission;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::outbound::Outbound;
use crate::message::body::Lease;

/// Opens TCP (and TLS) connections to the nodes.
pub type Connector = HttpsConnector<HttpConnector>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handle to send one request on.
pub enum Sender {
    Http1(http1::SendRequest<Outbound>),
    Http2(http2::SendRequest<Outbound>),
}

/// Why a request got no response.
pub enum SendError {
    /// No connection could be made; the request comes back untouched.
    Unsent(Box<Request<Outbound>>, BoxError),
    /// The request went out, in part or whole, and the connection failed before a response.
    Sent(hyper::Error),
}

/// The idle connections of one node.
pub struct NodePool {
    /// Most recently used last: a checkout takes the warmest connection.
    idle: Mutex<Vec<(http1::SendRequest<Outbound>, Instant)>>,
    /// The node's h2 connection, when it chose h2.
    shared: Mutex<Option<http2::SendRequest<Outbound>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl NodePool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        NodePool {
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            max_idle,
            idle_timeout,
        }
    }

    /// Sends `request` (its URI in origin form: path and query) to the node at `base`
    /// (`scheme://authority/`) on an idle connection, or a new one when none is left. A pooled
    /// connection the node closed meanwhile gives the request back, and the next one is tried.
    /// (Not an `async fn`, so its future holds the request once.)
    #[allow(
        clippy::manual_async_fn,
        reason = "its future holds its arguments once"
    )]
    pub fn send<'a>(
        self: &'a Arc<Self>,
        connector: &'a Connector,
        base: &'a Uri,
        mut request: Request<Outbound>,
    ) -> impl Future<
        Output = Result<(Response<Incoming>, Option<http1::SendRequest<Outbound>>), SendError>,
    > + 'a {
        async move {
            loop {
                let (sender, pooled) = match self.checkout() {
                    Some(sender) => (sender, true),
                    // Boxed: the connect and handshake futures are large and rare; inline, every
                    // request's future would carry (and move) their space.
                    None => match Box::pin(self.connect(connector, base)).await {
                        Ok(sender) => (sender, false),
                        Err(error) => return Err(SendError::Unsent(Box::new(request), error)),
                    },
                };
                let (result, back, origin) = match sender {
                    Sender::Http1(mut sender) => {
                        if pooled && sender.ready().await.is_err() {
                            continue;
                        }
                        let result = sender.try_send_request(request).await;
                        (result, Some(sender), None)
                    }
                    Sender::Http2(mut sender) => {
                        // h2 names scheme and authority in the request itself.
                        let origin = request.uri().clone();
                        *request.uri_mut() = absolute(base, &origin);
                        (sender.try_send_request(request).await, None, Some(origin))
                    }
                };
                match result {
                    Ok(response) => return Ok((response, back)),
                    Err(mut error) => match error.take_message() {
                        Some(mut unsent) => {
                            if let Some(origin) = origin {
                                *unsent.uri_mut() = origin;
                            }
                            // Never written: a stale pooled connection; another may serve it.
                            if pooled {
                                request = unsent;
                                continue;
                            }
                            return Err(SendError::Unsent(
                                Box::new(unsent),
                                Box::new(error.into_error()),
                            ));
                        }
                        None => return Err(SendError::Sent(error.into_error())),
                    },
                }
            }
        }
    }

    fn checkout(&self) -> Option<Sender> {
        {
            let shared = lock(&self.shared);
            if let Some(sender) = shared.as_ref().filter(|s| !s.is_closed()) {
                return Some(Sender::Http2(sender.clone()));
            }
        }
        let mut idle = lock(&self.idle);
        while let Some((sender, _)) = idle.pop() {
            if !sender.is_closed() {
                return Some(Sender::Http1(sender));
            }
        }
        None
    }

    /// Back into the pool, unless the pool is full or the node closed it.
    pub fn put(&self, sender: http1::SendRequest<Outbound>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push((sender, Instant::now()));
        }
    }

    /// Closes the connections idle longer than the idle timeout, and those the node closed.
    pub fn sweep(&self) {
        let timeout = self.idle_timeout;
        lock(&self.idle).retain(|(sender, since)| !sender.is_closed() && since.elapsed() < timeout);
        let mut shared = lock(&self.shared);
        if shared.as_ref().is_some_and(http2::SendRequest::is_closed) {
            *shared = None;
        }
    }

    /// Connections kept idle now (for metrics).
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    async fn connect(&self, connector: &Connector, uri: &Uri) -> Result<Sender, BoxError> {
        let io = connector.clone().call(uri.clone()).await?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "upstream h2 connection ended");
                }
            });
            *lock(&self.shared) = Some(sender.clone());
            return Ok(Sender::Http2(sender));
        }
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(Sender::Http1(sender))
    }
}

/// A response's hold on its node: the slot, and the HTTP/1 connection it arrives on, which goes
/// back to the pool when the body was read whole (else it is dropped, and closed).
pub struct ConnectionLease {
    /// Held, not read: dropping it frees the slot.
    pub _slot: Slot,
    /// Held, not read: dropping it ends the request for its account's limits.
    pub _admission: Option<Admission>,
    pub connection: Option<(Arc<NodePool>, http1::SendRequest<Outbound>)>,
}

impl Lease for ConnectionLease {
    fn release(self: Box<Self>, complete: bool) {
        if let (true, Some((pool, sender))) = (complete, self.connection) {
            pool.put(sender);
        }
    }
}

/// `base`'s scheme and authority with `origin`'s path and query.
fn absolute(base: &Uri, origin: &Uri) -> Uri {
    let mut parts = base.clone().into_parts();
    parts.path_and_query = origin.path_and_query().cloned();
    Uri::from_parts(parts).unwrap_or_else(|_| base.clone())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
