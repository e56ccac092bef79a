//! Connections to one node, kept open for the next request.
//!
//! HTTP/1.1 connections are the gateway's own ([`h1_client::Conn`]): a request's task writes
//! to and reads from its connection itself, and the response body hands the connection back
//! here when its last byte was read. A checkout is a lock and a pop; a connection the node
//! closed while it idled is found by one read that does not wait, so the request it was picked
//! for is still whole for the next one. A connection that cannot be made fails before the
//! request is handed over, so the request is still whole for another node. A node that
//! negotiates h2 gets one hyper connection that every request shares.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::slots::Slot;
use crate::h1_client::{self, Conn, DeadlinePassed, Exchanged, Home, ResponseBody};
use crate::limits::Admission;
use http::{Request, Response, Uri, Version};
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::outbound::Outbound;
use crate::message::body::{Answer, Lease};

/// Opens TCP (and TLS) connections to the nodes.
pub type Connector = HttpsConnector<HttpConnector>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection to send one request on.
pub enum Sender {
    /// Boxed once when it is made: the request's future moves a pointer, not the connection.
    Http1(Box<Conn>),
    Http2(http2::SendRequest<Outbound>),
}

/// Why a request got no response.
pub enum SendError {
    /// No connection could be made; the request comes back untouched.
    Unsent(Box<Request<Outbound>>, BoxError),
    /// The request went out, in part or whole, and the connection failed before a response.
    Sent(BoxError),
}

/// No response head within the timeout, a connection not made by then included.
#[derive(Debug)]
pub struct TimedOut;

/// What [`NodePool::send`] comes to: the outer error is the timeout's, as a timer around the
/// send would give it.
pub type Sent = Result<Result<Response<Answer>, SendError>, TimedOut>;

/// The idle connections of one node.
pub struct NodePool {
    /// Most recently used last: a checkout takes the warmest connection.
    idle: Mutex<Vec<(Box<Conn>, Instant)>>,
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
    /// (`scheme://authority/`) on an idle connection, or a new one when none is left, and
    /// returns the response once its head arrived, or [`TimedOut`] when it did not within
    /// `timeout` (a connection made, and a stale one's retry, included). (Not an `async fn`,
    /// so its future holds the request once.)
    #[allow(
        clippy::manual_async_fn,
        reason = "its future holds its arguments once"
    )]
    pub fn send<'a>(
        self: &'a Arc<Self>,
        connector: &'a Connector,
        base: &'a Uri,
        mut request: Request<Outbound>,
        repeatable: bool,
        timeout: Duration,
    ) -> impl Future<Output = Sent> + 'a {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // A request that may go again unchanged (`repeatable`: an idempotent method, no
            // body) skips the look at an idle connection's socket, a system call per request:
            // if the node closed the connection meanwhile, the request learns it from the
            // connection and goes again on the next one, looked at this time.
            let mut trusting = repeatable;
            loop {
                let (sender, pooled) = match self.checkout(!trusting) {
                    Some(sender) => (sender, true),
                    // Boxed: the connect and handshake futures are large and rare; inline, every
                    // request's future would carry (and move) their space. A connection being
                    // made is the one step with a timer of its own: an exchange uses its
                    // connection's.
                    None => {
                        let connect = Box::pin(self.connect(connector, base));
                        match tokio::time::timeout_at(deadline, connect).await {
                            Ok(Ok(sender)) => (sender, false),
                            Ok(Err(error)) => {
                                return Ok(Err(SendError::Unsent(Box::new(request), error)))
                            }
                            Err(_) => return Err(TimedOut),
                        }
                    }
                };
                let mut conn = match sender {
                    Sender::Http1(conn) => conn,
                    // Boxed: rare, and its future would otherwise widen every request's.
                    Sender::Http2(sender) => {
                        let sent = Box::pin(self.send_h2(sender, base, request));
                        return tokio::time::timeout_at(deadline, sent)
                            .await
                            .map_err(|_| TimedOut);
                    }
                };
                match conn.send(&mut request, deadline).await {
                    Ok(Exchanged { head, whole }) => {
                        let home: Arc<dyn Home> = Arc::clone(self) as Arc<dyn Home>;
                        let body = ResponseBody::new(conn, &head, whole, home);
                        let mut response = Response::new(Answer::Own(body));
                        *response.status_mut() = head.status;
                        *response.version_mut() = Version::HTTP_11;
                        *response.headers_mut() = head.headers;
                        return Ok(Ok(response));
                    }
                    Err(error) if error.is::<DeadlinePassed>() => return Err(TimedOut),
                    Err(error) if pooled && trusting && closed_unanswered(error.as_ref()) => {
                        trusting = false;
                    }
                    Err(error) => return Ok(Err(SendError::Sent(error))),
                }
            }
        }
    }

    /// Sends `request` on the node's shared h2 connection.
    async fn send_h2(
        &self,
        mut sender: http2::SendRequest<Outbound>,
        base: &Uri,
        mut request: Request<Outbound>,
    ) -> Result<Response<Answer>, SendError> {
        // h2 names scheme and authority in the request itself.
        let origin = request.uri().clone();
        *request.uri_mut() = absolute(base, &origin);
        match sender.try_send_request(request).await {
            Ok(response) => Ok(response.map(Answer::Shared)),
            Err(mut error) => match error.take_message() {
                Some(mut unsent) => {
                    *unsent.uri_mut() = origin;
                    Err(SendError::Unsent(
                        Box::new(unsent),
                        Box::new(error.into_error()),
                    ))
                }
                None => Err(SendError::Sent(Box::new(error.into_error()))),
            },
        }
    }

    /// The h2 connection, or the warmest idle one; `check`: one the node closed is skipped.
    fn checkout(&self, check: bool) -> Option<Sender> {
        {
            let shared = lock(&self.shared);
            if let Some(sender) = shared.as_ref().filter(|s| !s.is_closed()) {
                return Some(Sender::Http2(sender.clone()));
            }
        }
        loop {
            // The look at the socket is made outside the lock.
            let (mut conn, _) = lock(&self.idle).pop()?;
            if !check || !conn.is_stale() {
                return Some(Sender::Http1(conn));
            }
        }
    }

    /// Closes the connections idle longer than the idle timeout, and those the node closed.
    pub fn sweep(&self) {
        let timeout = self.idle_timeout;
        lock(&self.idle).retain_mut(|(conn, since)| since.elapsed() < timeout && !conn.is_stale());
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
        Ok(Sender::Http1(Box::new(Conn::new(
            h1_client::from_connector(io),
        ))))
    }
}

impl Home for NodePool {
    /// Back into the pool, unless the pool is full.
    fn put(&self, conn: Box<Conn>) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push((conn, Instant::now()));
        }
    }
}

/// A response's hold on its node: the slot. (Its HTTP/1.1 connection goes home with the body.)
pub struct ConnectionLease {
    /// Held, not read: dropping it frees the slot.
    pub _slot: Slot,
    /// Held, not read: dropping it ends the request for its account's limits.
    pub _admission: Option<Admission>,
}

impl Lease for ConnectionLease {
    fn release(self: Box<Self>, _complete: bool) {}
}

/// Whether a connection failed as one the node had closed before it answered: the end of the
/// stream or a reset, with no answer.
fn closed_unanswered(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    use std::io::ErrorKind;
    error.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
        )
    })
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
