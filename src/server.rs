//! The accept loop: connection limit, TLS handshake deadline, HTTP/1.1 and HTTP/2 on one port,
//! graceful drain on shutdown.
//!
//! It serves whatever [`Handler`] it is given, so every kind of listener (the gateway's own, an
//! admin port) shares one loop and one set of limits.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::Poll;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{ServerConfig, TlsConfig};
use crate::framing::ScanIo;
use crate::proxy::headers::ClientInfo;
use crate::response::Body;

/// What a listener serves: a request in, a response out. Failures are the handler's to render,
/// so the connection never sees an error.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
        client: &Arc<ClientInfo>,
    ) -> impl Future<Output = Response<Body>> + Send;
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
/// `config.shutdown_grace`.
pub async fn run<H: Handler>(
    listeners: Vec<Listener>,
    handler: H,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let builder = http_builder(config);
    tokio::select! {
        () = shutdown => {}
        () = accept_loop(&listeners, config, &handler, &limit, &builder, &graceful) => {}
    }
    drop(listeners);
    let open = graceful.count();
    let grace = config.shutdown_grace;
    tracing::info!(open, ?grace, "stopped accepting; draining connections");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

fn http_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.http.read_buffer())
        .keep_alive(true);
    let header_list = u32::try_from(config.http.max_header_size).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_list)
        .max_concurrent_streams(ServerConfig::H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(ServerConfig::H2_KEEP_ALIVE_INTERVAL));
    builder
}

/// Accepts from every listener until the caller stops polling it; each connection holds a
/// permit of `limit` for its lifetime and a watcher of `graceful` for the drain.
async fn accept_loop<H: Handler>(
    listeners: &[Listener],
    config: &ServerConfig,
    handler: &H,
    limit: &Arc<Semaphore>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
) {
    let mut first = 0;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
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
        let _ = stream.set_nodelay(true);
        let trusted = is_trusted(&config.trusted_proxies, peer);
        let (handler, builder, watcher, tls) = (
            handler.clone(),
            builder.clone(),
            graceful.watcher(),
            listener.tls.clone(),
        );
        let span = tracing::debug_span!("conn", %peer, tls = tls.is_some());
        tokio::spawn(
            async move {
                serve(stream, peer, trusted, tls, handler, builder, watcher).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
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

async fn serve<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    trusted: bool,
    tls: Option<TlsAcceptor>,
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
) {
    let ambiguous = Arc::new(AtomicBool::new(false));
    let Some(acceptor) = tls else {
        let client = ClientInfo::new(peer, false, trusted, ambiguous.clone());
        let stream = ScanIo::new(stream, ambiguous);
        return serve_http(stream, client, handler, &builder, watcher).await;
    };
    let deadline = TlsConfig::HANDSHAKE_TIMEOUT;
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let client = ClientInfo::new(peer, true, trusted, ambiguous.clone());
            let stream = ScanIo::new(stream, ambiguous);
            serve_http(stream, client, handler, &builder, watcher).await
        }
        Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
        Err(_) => tracing::debug!(timeout = ?deadline, "tls handshake deadline passed"),
    }
}

async fn serve_http<IO, H>(
    io: IO,
    client: ClientInfo,
    handler: H,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let client = Arc::new(client);
    let service = service_fn(move |request| {
        let (handler, client) = (handler.clone(), client.clone());
        async move { Ok::<_, Infallible>(handler.handle(request, &client).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
