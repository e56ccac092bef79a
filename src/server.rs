//! The accept loop: connection limit, TLS handshake deadline, HTTP/1.1 and HTTP/2 on one port,
//! graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::proxy::headers::ClientInfo;
use crate::service;
use crate::state::State;

/// Deadline for a client to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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

/// Serves `listeners` until `shutdown` resolves, then drains open connections for up to the
/// configured grace period.
pub async fn run(listeners: Vec<Listener>, state: State, shutdown: impl Future<Output = ()>) {
    let graceful = Arc::new(GracefulShutdown::new());
    let limit = Arc::new(Semaphore::new(state.config.server.max_connections.max(1)));
    let builder = http_builder(&state);
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        let (state, limit, builder, graceful) = (
            state.clone(),
            limit.clone(),
            builder.clone(),
            graceful.clone(),
        );
        accepting.spawn(accept_loop(listener, state, limit, builder, graceful));
    }
    shutdown.await;
    accepting.abort_all();
    while accepting.join_next().await.is_some() {}
    // The accept loops held the only other references; they are gone now.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::error!("connection tracker still shared; not draining");
        return;
    };
    let open = graceful.count();
    let grace = state.config.server.shutdown_grace;
    tracing::info!(open, ?grace, "stopped accepting; draining connections");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

fn http_builder(state: &State) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.server.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

async fn accept_loop(
    listener: Listener,
    state: State,
    limit: Arc<Semaphore>,
    builder: auto::Builder<TokioExecutor>,
    graceful: Arc<GracefulShutdown>,
) {
    let local = listener.tcp.local_addr().ok();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::error!(%error, ?local, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (state, builder, watcher, tls) = (
            state.clone(),
            builder.clone(),
            graceful.watcher(),
            listener.tls.clone(),
        );
        let span = tracing::debug_span!("conn", %peer, tls = tls.is_some());
        tokio::spawn(
            async move {
                serve(stream, peer, tls, state, builder, watcher).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: State,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
) {
    match tls {
        None => {
            serve_http(
                stream,
                ClientInfo::new(peer, false),
                state,
                &builder,
                watcher,
            )
            .await
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_http(
                        stream,
                        ClientInfo::new(peer, true),
                        state,
                        &builder,
                        watcher,
                    )
                    .await
                }
                Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                Err(_) => {
                    tracing::debug!(timeout = ?TLS_HANDSHAKE_TIMEOUT, "tls handshake deadline passed")
                }
            }
        }
    }
}

async fn serve_http<IO>(
    io: IO,
    client: ClientInfo,
    state: State,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(client);
    let service = service_fn(move |request| {
        let (state, client) = (state.clone(), client.clone());
        async move { Ok::<_, Infallible>(service::handle(&state, &client, request).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
