//! `FakeUpstream`: one node of a fake Elasticsearch cluster on a real loopback socket, plain
//! HTTP/1.1 or TLS (HTTP/1.1 and, when ALPN offers it, h2). It records every request it receives
//! and answers with a handler chosen by the test; a handler that panics is answered with a 500
//! and the panic is re-raised when the fake is dropped, so it cannot go unnoticed.
//!
//! A node can be stopped as a process that exits (listener closed, every connection dropped,
//! requests in flight unanswered) and started again on the same port; how it treats requests can
//! be switched while it runs ([`Behaviour`]), and `GET /_nodes/http` lists the nodes a test sets,
//! for sniffing. [`KeyCluster`](super::cluster::KeyCluster) is a handler on top of it.

mod reply;
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::{HeaderMap, Method, Response, Uri, Version};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use reply::{
    default_response, full, node_json, receiver_stream, streaming, FakeBody, DEFAULT_BODY,
    E2E_HEADER,
};

use super::tls::{Ca, Issued};
use super::DEADLINE;

/// What a handler returns: the response, possibly after a while.
pub type Reply = BoxFuture<'static, Response<FakeBody>>;
type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// How a node treats a request, switchable while it runs ([`FakeUpstream::set_behaviour`]).
/// `GET /_nodes/http` is always answered from the node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// The handler's answer.
    Answer,
    /// Keeps the request until the node is stopped: a request in flight when it dies.
    Hold,
    /// Reads the whole request, then closes the connection without a word.
    DropAfterRead,
    /// 500 on the health-check path `/_health`, the handler's answer elsewhere.
    FailHealth,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body, when no longer than 1 MiB; empty otherwise.
    pub body: Bytes,
    /// Bytes received, however long the body was.
    pub body_len: u64,
    /// CRC-32 of the whole body, to check long bodies arrived intact.
    pub body_crc: u32,
    /// Whether the connection it came on presented a client certificate (TLS only).
    pub client_cert: bool,
}

impl Recorded {
    /// The single value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the gateway sent it on its own account (sniffing, health checks) rather than
    /// forwarding a client's request.
    pub fn is_gateway_own(&self) -> bool {
        matches!(self.uri.path(), "/_nodes/http" | "/_health")
    }
}

/// What the node and its connections share; outlives stops and restarts.
struct Shared {
    /// Every request received, in arrival order.
    requests: Mutex<Vec<Recorded>>,
    /// Requests received so far, for tests that wait on arrivals.
    count: watch::Sender<usize>,
    /// Body bytes received so far over all requests, for tests that wait on streaming.
    received: watch::Sender<u64>,
    /// TCP connections accepted, over restarts.
    connections: AtomicUsize,
    /// Handler panics, re-raised when the fake is dropped.
    panics: Mutex<Vec<String>>,
    /// The test's answer to a request.
    handler: Handler,
    /// What requests meet now; the handler's answer unless a test switched it.
    behaviour: Mutex<Behaviour>,
    /// The `_nodes/http` answer's publish addresses.
    listed: Mutex<Vec<SocketAddr>>,
}

/// The accept loop while the node is up: told to stop, it closes the listener and every
/// connection before it ends.
struct Running {
    /// Tells the accept loop to close everything and end.
    stop: oneshot::Sender<()>,
    /// The accept loop, which owns the listener and every connection.
    task: JoinHandle<()>,
}

/// A running fake node; stops (and reports handler panics) when dropped.
pub struct FakeUpstream {
    /// Where it listens; the same over restarts.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The TLS side, for a fake built with [`FakeUpstreamBuilder::tls`].
    tls: Option<TlsAcceptor>,
    /// The accept loop, while the node is up.
    running: Option<Running>,
    /// While stopped: the port, bound but not listening, so connections to it are refused and
    /// no other test's listener can be given it before [`FakeUpstream::restart`] listens again.
    reserved: Option<TcpSocket>,
}

/// The certificate a TLS fake presents and what it asks of clients.
struct TlsOptions {
    /// The chain (leaf first) and key the fake presents.
    served: Issued,
    /// The protocols it offers by ALPN, in preference order.
    alpn: Vec<Vec<u8>>,
    /// The CA a client certificate must chain to; `None`: none asked for.
    client_ca: Option<CertificateDer<'static>>,
}

/// Configures a [`FakeUpstream`] before it starts.
pub struct FakeUpstreamBuilder {
    /// The answer; the default response unless set.
    handler: Handler,
    /// `None`: plain HTTP/1.1.
    tls: Option<TlsOptions>,
}

impl FakeUpstream {
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            handler: Arc::new(|_| async { default_response() }.boxed()),
            tls: None,
        }
    }

    /// A plain-HTTP fake with the default answer.
    pub async fn start() -> FakeUpstream {
        Self::builder().start().await
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The only request received; fails the test if there were none or several.
    pub fn single_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one upstream request");
        requests.into_iter().next().unwrap()
    }

    /// Requests received other than sniffing and health checks: the forwarded ones.
    pub fn forwarded(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| !r.is_gateway_own())
            .count()
    }

    /// TCP connections accepted so far, over restarts.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Switches how requests from now on are treated.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Makes `GET /_nodes/http` list `nodes` (as their HTTP publish addresses).
    pub fn list(&self, nodes: &[SocketAddr]) {
        *self.shared.listed.lock().unwrap() = nodes.to_vec();
    }

    /// Waits until the fake has received `n` requests in all, failing the test after
    /// [`DEADLINE`].
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.shared.count.subscribe();
        let reached = tokio::time::timeout(DEADLINE, count.wait_for(|c| *c >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "upstream received {} requests, not {n}, within {DEADLINE:?}",
            *self.shared.count.borrow()
        );
    }

    /// Waits until at least `bytes` body bytes have arrived, failing the test after `deadline`.
    pub async fn wait_for_body_bytes(&self, bytes: u64, deadline: Duration) {
        let mut received = self.shared.received.subscribe();
        let reached = tokio::time::timeout(deadline, received.wait_for(|n| *n >= bytes)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "upstream received {} body bytes, not {bytes}, within {deadline:?}",
            *self.shared.received.borrow()
        );
    }

    /// Stops as a killed process would: no more connections accepted, every open one closed,
    /// requests in flight unanswered. Returns once all of that is done (bounded).
    pub async fn stop(&mut self) {
        if let Some(Running { stop, task }) = self.running.take() {
            // Bound before the listener closes, so the port is never free.
            self.reserved = Some(reserve(self.addr));
            let _ = stop.send(());
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the fake upstream did not stop in time")
                .unwrap();
        }
    }

    /// Starts again on the same address (stopping first if it runs).
    pub async fn restart(&mut self) {
        self.stop().await;
        let reserved = self.reserved.take().expect("a stopped fake holds its port");
        self.serve(reserved.listen(BACKLOG).unwrap());
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve::accept_loop(
            listener,
            self.tls.clone(),
            Arc::clone(&self.shared),
            stopped,
        ));
        self.running = Some(Running { stop, task });
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.task.abort();
        }
        let panics = std::mem::take(&mut *self.shared.panics.lock().unwrap());
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("fake upstream handler panicked: {panics:?}");
        }
    }
}

impl FakeUpstreamBuilder {
    /// Answers with `handler`, called once the whole request body has arrived.
    pub fn handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(&Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<FakeBody>> + Send + 'static,
    {
        self.handler = Arc::new(move |request| handler(request).boxed());
        self
    }

    /// Answers 200 with the request's own body and content type.
    pub fn echo(self) -> Self {
        self.handler(|request| {
            let mut response = Response::new(full(request.body.clone()));
            if let Some(kind) = request.headers.get(http::header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, kind.clone());
            }
            async move { response }
        })
    }

    /// Holds every request: tells `arrived` when one has come in, and answers it with the
    /// default response once `release` is notified.
    pub fn hold(self, arrived: &Arc<Notify>, release: &Arc<Notify>) -> Self {
        let (arrived, release) = (arrived.clone(), release.clone());
        self.handler(move |_| {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                arrived.notify_one();
                release.notified().await;
                default_response()
            }
        })
    }

    /// Answers with the default response, but only after `delay`.
    pub fn delay(self, delay: Duration) -> Self {
        self.handler(move |_| async move {
            tokio::time::sleep(delay).await;
            default_response()
        })
    }

    /// Speaks TLS with `served`'s chain, offering h2 and http/1.1 by ALPN.
    pub fn tls(mut self, served: &Issued) -> Self {
        self.tls = Some(TlsOptions {
            served: served.clone(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            client_ca: None,
        });
        self
    }

    /// The ALPN protocols a TLS fake offers.
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        let tls = self
            .tls
            .as_mut()
            .expect("alpn is for a TLS fake: call tls first");
        tls.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Refuses TLS clients without a certificate signed by `ca`.
    pub fn require_client_cert(mut self, ca: &Ca) -> Self {
        let tls = self
            .tls
            .as_mut()
            .expect("client certificates are for a TLS fake: call tls first");
        tls.client_ca = Some(ca.cert.clone());
        self
    }

    pub async fn start(self) -> FakeUpstream {
        let listener = reserve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .listen(BACKLOG)
            .unwrap();
        let mut fake = FakeUpstream {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(Shared {
                requests: Mutex::new(Vec::new()),
                count: watch::Sender::new(0),
                received: watch::Sender::new(0),
                connections: AtomicUsize::new(0),
                panics: Mutex::new(Vec::new()),
                handler: self.handler,
                behaviour: Mutex::new(Behaviour::Answer),
                listed: Mutex::new(Vec::new()),
            }),
            tls: self.tls.map(serve::acceptor),
            running: None,
            reserved: None,
        };
        fake.serve(listener);
        fake
    }
}

/// Pending connections a fake's listener queues.
const BACKLOG: u32 = 1024;

/// A socket bound to `addr` and not listening. `SO_REUSEPORT` lets it share the port with the
/// fake's listener while that still runs (and the listener made from it share with the next
/// reservation); `SO_REUSEADDR` lets it bind over the closed connections' `TIME_WAIT`.
fn reserve(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}
