//! The accept loop: connection limits, TLS handshake deadline, HTTP/1.1 and HTTP/2 on one port,
//! graceful drain on shutdown.
//!
//! It serves whatever [`Handler`] it is given, so every kind of listener (the gateway's own, an
//! admin port) shares one loop and one set of limits.
//!
//! The limits keep one client's idle sockets from locking everyone else out, as a front proxy
//! does: an address holds at most `max_connections_per_ip` connections; a new connection must
//! deliver its first request within `first_request_timeout`; and at `max_connections` the loop
//! keeps accepting, giving a newcomer the place of the longest-idle connection, or refusing it
//! at once when every connection is busy. Nothing waits unaccepted in the kernel's backlog.

/// `AsyncWrite` for `$wrapper<IO>`, a transport wrapper that only watches or replays what is
/// read: every write goes to its `$field` as it is. With `$after`, a write's outcome is handed
/// to it (with the wrapper) on its way back.
macro_rules! write_through {
    ($wrapper:ident, $field:ident) => {
        write_through!($wrapper, $field, |_, written| written);
    };
    ($wrapper:ident, $field:ident, $after:expr) => {
        impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<IO> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                let written = tokio::io::AsyncWrite::poll_write(
                    std::pin::Pin::new(&mut this.$field),
                    cx,
                    buf,
                );
                ($after)(&*this, written)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                let written = tokio::io::AsyncWrite::poll_write_vectored(
                    std::pin::Pin::new(&mut this.$field),
                    cx,
                    bufs,
                );
                ($after)(&*this, written)
            }

            fn is_write_vectored(&self) -> bool {
                tokio::io::AsyncWrite::is_write_vectored(&self.$field)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                )
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                )
            }
        }
    };
}

/// `AsyncRead` for `$wrapper<IO>`, a transport wrapper that acts on writes only: every read
/// comes from its `$field` as it is.
macro_rules! read_through {
    ($wrapper:ident, $field:ident) => {
        impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for $wrapper<IO> {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncRead::poll_read(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                    buf,
                )
            }
        }
    };
}

mod drive;
mod gather;
mod greeting;
mod limits;
mod one_send;
#[cfg(test)]
mod recorder;
mod registry;
pub mod scan;
mod side_wakes;
mod version;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{ServerConfig, TlsConfig};
use crate::message::response::Body;
use crate::message::ClientInfo;
use drive::drive;
use gather::Gathered;
use greeting::Greeting;
use limits::{AddressGuard, PerAddress, Refusal, Refusals};
use one_send::OneSend;
pub use registry::InFlight;
use registry::{Registered, Registry, Slot};
use scan::ScanIo;
use version::Version;

/// What a listener serves: a request in, a response out. Failures are the handler's to render,
/// so the connection never sees an error (the `Infallible` is what hyper's service takes as it
/// is).
///
/// The request's future is hyper's to keep as the handler made it, with `in_flight` held in it
/// until the answer is ready: the listener wraps nothing around it. A wrapping future held the
/// request a second time, as its own, beside the handler's future (hundreds of bytes more in
/// every request's future, and in the box hyper keeps for it on an idle connection).
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
        in_flight: InFlight,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + use<Self>;
}

/// What the accept loop counts for the metrics endpoint: a few relaxed atomic operations per
/// connection, none per request.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicU64,
    pub tls_handshakes: AtomicU64,
    /// Handshakes that failed or ran out of time.
    pub tls_failures: AtomicU64,
}

/// Keeps [`Stats::open`] right however a connection task ends.
struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    fn new(stats: &Arc<Stats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(stats))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound socket and, for HTTPS, the acceptor that terminates TLS on it.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

impl Listener {
    pub fn plain(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None }
    }
}

/// Serves `listeners` with `handler` until `shutdown` resolves, then stops accepting (the
/// sockets close, so new connections are refused) and drains open connections for up to
/// `config.shutdown_grace`. Connections are counted in `stats`.
pub async fn run<H: Handler>(
    listeners: Vec<Listener>,
    handler: H,
    config: &ServerConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits::new(config, stats);
    let builder = Arc::new(http_builder(config));
    // Each connection task holds a receiver until it ends: the drain waits for them all.
    let (tasks, _) = watch::channel(false);
    tokio::select! {
        () = shutdown => {}
        () = accept_loop(&listeners, config, &handler, &limits, &builder, &tasks) => {}
    }
    drop(listeners);
    let open = tasks.receiver_count();
    let grace = config.shutdown_grace;
    tracing::info!(open, ?grace, "stopped accepting; draining connections");
    tasks.send_replace(true);
    limits.registry.close_all();
    match tokio::time::timeout(grace, tasks.closed()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

/// hyper's connection settings for each protocol; the connection's first bytes pick one
/// ([`version`]). Shared behind an `Arc`: a clone of the builders in every connection task
/// would be over 200 bytes of it, kept for the connection's life.
struct HttpBuilders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long an HTTP/1 connection may go without a request in flight (`header_timeout`):
    /// checked by the connection's one timer when it fires, instead of by a timer hyper would
    /// arm and drop for every request head.
    header_timeout: Duration,
}

/// How far hyper's HTTP/1 read buffer may grow. A head is still refused (431) once that many
/// bytes of it are buffered without its end: `max_header_size` is set to
/// [`HttpLimits::read_buffer`](crate::config::HttpLimits::read_buffer), what the whole buffer
/// was capped at before. Past that the buffer only serves bodies: a 1 MiB `_bulk` is read in
/// ~9 pieces and written upstream in ~9 instead of ~45 of each at 24 KiB. hyper grows a
/// connection's buffer only while its reads fill it, and shrinks it after smaller ones.
const BODY_READ_BUFFER: usize = 128 * 1024;

fn http_builder(config: &ServerConfig) -> HttpBuilders {
    let head = config.http.read_buffer();
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(head)
        .max_buf_size(BODY_READ_BUFFER.max(head))
        // hyper's vectored writes, not `writev(false)`: flattening copies each body into the
        // connection's write buffer, which keeps its largest size for as long as the connection
        // lives (`Vec::clear`), so an idle keep-alive connection that once carried a search page
        // would hold up to `max_buf_size`. A 401 would be ~385 instructions cheaper flattened.
        .keep_alive(true);
    let header_list = u32::try_from(config.http.max_header_size).unwrap_or(u32::MAX);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(header_list)
        .max_concurrent_streams(ServerConfig::H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(ServerConfig::H2_KEEP_ALIVE_INTERVAL));
    HttpBuilders {
        http1,
        http2,
        header_timeout: config.header_timeout,
    }
}

/// What the accept loop enforces, shared with the connection tasks.
struct Limits {
    /// One permit per connection served, `max_connections` in all.
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    registry: Arc<Registry>,
    refusals: Refusals,
    first_request_timeout: Duration,
    stats: Arc<Stats>,
}

impl Limits {
    fn new(config: &ServerConfig, stats: Arc<Stats>) -> Self {
        let connections = &config.connections;
        Limits {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            per_address: PerAddress::new(connections.per_ip),
            registry: Registry::new(),
            refusals: Refusals::new(connections.per_ip, config.max_connections),
            first_request_timeout: connections.first_request_timeout,
            stats,
        }
    }
}

/// How an admitted connection gets its slot.
enum Admission {
    /// One was free.
    Now(OwnedSemaphorePermit),
    /// The longest-idle connection was told to close; its permit comes here when it has.
    AfterEviction(oneshot::Receiver<OwnedSemaphorePermit>),
}

/// An admitted connection on its way to its task.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    /// It came to a TLS listener.
    tls: bool,
    /// By when the first request head must have arrived.
    deadline: Instant,
    admission: Admission,
    address: AddressGuard,
    /// The peer is a trusted proxy (`server.trusted_proxies`).
    trusted: bool,
}

/// Accepts from every listener until the caller stops polling it. Never waits for a slot: a
/// connection is admitted (holding its address's share and a slot for its lifetime), admitted
/// in an evicted connection's place, or refused at once.
async fn accept_loop<H: Handler>(
    listeners: &[Listener],
    config: &ServerConfig,
    handler: &H,
    limits: &Limits,
    builder: &Arc<HttpBuilders>,
    tasks: &watch::Sender<bool>,
) {
    let mut first = 0;
    loop {
        let (index, accepted) = accept_any(listeners, first).await;
        // The next round starts at the following listener, so a busy one cannot starve another.
        first = index + 1;
        let Some(listener) = listeners.get(index) else {
            continue;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let local = listener.tcp.local_addr().ok();
                tracing::error!(%error, ?local, "accept failed");
                tokio::time::sleep(ServerConfig::ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let deadline = Instant::now() + limits.first_request_timeout;
        let tls = listener.tls.clone();
        let (stream, address, admission) = match admit(limits, stream, peer, tls.is_some()) {
            Gate::In(stream, address, admission) => (stream, address, admission),
            Gate::Refused => continue,
            Gate::Closed => return,
        };
        let _ = stream.set_nodelay(true);
        let span = tracing::debug_span!("conn", %peer, tls = tls.is_some());
        let accepted = Accepted {
            stream,
            peer,
            tls: tls.is_some(),
            deadline,
            admission,
            address,
            trusted: is_trusted(&config.trusted_proxies, peer),
        };
        let shared = Shared {
            handler: handler.clone(),
            builder: builder.clone(),
            registry: limits.registry.clone(),
            stats: limits.stats.clone(),
            drain: tasks.subscribe(),
        };
        // A task of its own kind for each transport, each sized for its own path: a TLS
        // connection does not carry the room of a plain one's inline HTTP state, nor a plain
        // one the TLS handshake's.
        match tls {
            None => tokio::spawn(serve(accepted, shared).instrument(span)),
            Some(acceptor) => tokio::spawn(serve_tls(accepted, acceptor, shared).instrument(span)),
        };
    }
}

/// What a connection task gets from its listener.
struct Shared<H> {
    handler: H,
    builder: Arc<HttpBuilders>,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    /// Held until the task ends: the drain waits for every receiver.
    drain: watch::Receiver<bool>,
}

/// What the limits say of a new connection.
enum Gate {
    /// Served, holding its address's share and its admission.
    In(TcpStream, AddressGuard, Admission),
    /// Answered and closed already.
    Refused,
    /// The listener is closing.
    Closed,
}

/// Whether a new connection may be served: its address's share, and a connection slot or the
/// place of the longest-idle connection. A refused connection is answered and closed here.
fn admit(limits: &Limits, stream: TcpStream, peer: SocketAddr, tls: bool) -> Gate {
    let Some(address) = limits.per_address.admit(peer.ip()) else {
        limits
            .refusals
            .refuse(stream, tls, Refusal::PerAddress, peer.ip());
        return Gate::Refused;
    };
    let admission = match limits.slots.clone().try_acquire_owned() {
        Ok(permit) => Admission::Now(permit),
        Err(TryAcquireError::Closed) => return Gate::Closed,
        Err(TryAcquireError::NoPermits) => match limits.registry.evict_idlest() {
            Some(succession) => Admission::AfterEviction(succession),
            None => {
                limits
                    .refusals
                    .refuse(stream, tls, Refusal::Full, peer.ip());
                return Gate::Refused;
            }
        },
    };
    Gate::In(stream, address, admission)
}

/// The next connection on any listener, looking at `first` first; with its listener's index.
async fn accept_any(
    listeners: &[Listener],
    first: usize,
) -> (usize, io::Result<(TcpStream, SocketAddr)>) {
    let count = listeners.len();
    poll_fn(|cx| {
        for offset in 0..count {
            let index = (first + offset) % count;
            if let Some(listener) = listeners.get(index) {
                if let Poll::Ready(accepted) = listener.tcp.poll_accept(cx) {
                    return Poll::Ready((index, accepted));
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// Whether `peer` is one of the configured proxies whose forwarding headers are believed.
fn is_trusted(trusted: &[ipnet::IpNet], peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    trusted.iter().any(|network| network.contains(&ip))
}

/// The connection's permit: at once, or once the connection evicted for it has ended. `None`
/// when that did not happen before the first-request deadline, or the listener is draining.
async fn admitted(
    admission: Admission,
    deadline: Instant,
    drain: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    match admission {
        Admission::Now(permit) => Some(permit),
        Admission::AfterEviction(succession) => {
            let handed = tokio::select! {
                handed = tokio::time::timeout_at(deadline, succession) => handed,
                _ = drain.wait_for(|draining| *draining) => return None,
            };
            let permit = handed.ok().and_then(Result::ok);
            if permit.is_none() {
                tracing::debug!(
                    "the evicted connection did not end before the first-request deadline"
                );
            }
            permit
        }
    }
}

/// A connection's slot, registered: where both transports start, beside the connection's stream.
struct Opened {
    slot: Arc<Slot>,
    /// Raised by the framing scan.
    ambiguous: Arc<AtomicBool>,
    /// Raised when the TLS handshake brought a client certificate.
    certified: Arc<AtomicBool>,
    /// By when the first request head must have arrived.
    deadline: Instant,
    /// Held until the task ends: then out of the registry, the permit passed on or given back,
    /// the address's share given back.
    _held: (Registered, AddressGuard, OpenConnection),
}

/// Waits for the connection's slot if it took an evicted connection's, and registers it; the
/// stream and its slot. `None` when it got none (see [`admitted`]).
async fn open(
    accepted: Accepted,
    registry: &Arc<Registry>,
    stats: &Arc<Stats>,
    drain: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, Opened)> {
    let Accepted {
        stream,
        peer,
        tls,
        deadline,
        admission,
        address,
        trusted,
    } = accepted;
    let permit = admitted(admission, deadline, drain).await?;
    let ambiguous = Arc::new(AtomicBool::new(false));
    let client = ClientInfo::new(peer, tls, trusted, ambiguous.clone());
    let certified = Arc::clone(&client.client_certificate);
    let slot = registry.slot(client);
    let _held = (
        registry.register(slot.clone(), permit),
        address,
        OpenConnection::new(stats),
    );
    let opened = Opened {
        slot,
        ambiguous,
        certified,
        deadline,
        _held,
    };
    Some((stream, opened))
}

/// Serves one plain connection: opens it, then runs HTTP until the connection ends or is
/// closed.
async fn serve<H: Handler>(accepted: Accepted, mut shared: Shared<H>) {
    let opening = open(accepted, &shared.registry, &shared.stats, &mut shared.drain);
    let Some((stream, opened)) = opening.await else {
        return;
    };
    serve_http(
        OneSend::new(stream),
        opened,
        shared.handler,
        &shared.builder,
    )
    .await;
}

/// Serves one TLS connection: opens it, completes the TLS handshake within its deadline, then
/// runs HTTP on the connection.
async fn serve_tls<H: Handler>(accepted: Accepted, acceptor: TlsAcceptor, mut shared: Shared<H>) {
    let opening = open(accepted, &shared.registry, &shared.stats, &mut shared.drain);
    let Some((stream, opened)) = opening.await else {
        return;
    };
    let stats = &shared.stats;
    let handshake = opened
        .deadline
        .min(Instant::now() + TlsConfig::HANDSHAKE_TIMEOUT);
    let stream = tokio::select! {
        result = tokio::time::timeout_at(handshake, acceptor.accept(OneSend::new(stream))) => match result {
            Ok(Ok(stream)) => {
                stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                if stream.get_ref().1.peer_certificates().is_some() {
                    opened.certified.store(true, Ordering::Relaxed);
                }
                stream
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "tls handshake failed");
                stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                tracing::debug!("tls handshake deadline passed");
                stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
        () = opened.slot.told_to_close() => return,
    };
    // Boxed once, here: on its way through the protocol sniff into hyper's connection the
    // stream is moved several times, and each move would leave a copy of rustls's state
    // (over a kilobyte) in the task, written once and resident for the connection's life.
    serve_http(Box::new(stream), opened, shared.handler, &shared.builder).await;
}

/// Runs HTTP on `io`, watched by the framing scan, until the connection ends. Before its
/// first-request deadline, a connection whose client has not spoken (see [`Greeting`]) is
/// closed when the deadline passes or it is told to close; after that, a close request is a
/// graceful shutdown: an idle HTTP/1 connection closes at once, a busy one after its response,
/// HTTP/2 sends GOAWAY and finishes its streams.
async fn serve_http<IO, H>(io: IO, opened: Opened, handler: H, builder: &HttpBuilders)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    // What is left of `opened` (the slot, its registration) is held until the connection ends.
    let io = ScanIo::new(io, opened.ambiguous);
    let (slot, deadline) = (&opened.slot, opened.deadline);
    let requests = slot.clone();
    // Not boxed: a handler keeps its request's future small (the gateway boxes the forwarding
    // part itself), so hyper moving it costs less than a box per request.
    let service = service_fn(move |request| handler.handle(request, requests.begin()));
    let mut first_request = pin!(tokio::time::sleep_until(deadline));
    // Before its first bytes, no connection has spoken: the deadline or a close ends it.
    // Matched in place, not bound: a binding would keep its storage (the stream, moved on into
    // hyper's connection) in the task for as long as the connection lives.
    let (version, io) = match tokio::select! {
        sniffed = version::sniff(Greeting::new(io, slot.clone())) => sniffed,
        () = &mut first_request => {
            tracing::debug!("no request within first_request_timeout; closed");
            return;
        }
        () = slot.told_to_close() => return,
    } {
        Ok(sniffed) => sniffed,
        Err(error) => {
            tracing::debug!(%error, "connection ended before its first bytes");
            return;
        }
    };
    match version {
        Version::Http1 => {
            let connection = pin!(builder.http1.serve_connection(TokioIo::new(io), service));
            let quiet = Some(builder.header_timeout);
            drive(connection, slot, first_request, quiet).await;
        }
        Version::Http2 => {
            // Boxed: an HTTP/2 connection's state is twice an HTTP/1 one's, and the task of
            // every HTTP/1 connection would otherwise be sized for it. Its writes are gathered
            // until the codec flushes, so the answers of every ready stream go out together.
            let io = TokioIo::new(Gathered::new(io));
            let mut connection = Box::pin(builder.http2.serve_connection(io, service));
            drive(connection.as_mut(), slot, first_request, None).await;
        }
    }
}
