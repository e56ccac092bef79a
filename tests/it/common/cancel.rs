//! Dropping a request at each of its await points in turn.
//!
//! [`Canceller`] serves a gateway's own state on a listener of its own through the real
//! `listen::run`, with the gateway's handler wrapped so that its future is polled at most `n`
//! times: if it is still pending after the `n`-th poll it is dropped there, exactly as hyper
//! drops it when the client leaves or an HTTP/2 stream is reset, and the client is told 499.
//! [`every_await`] sends one request with `n = 1, 2, …` until it completes, and after each drop
//! checks that every counter, flag, queue place and map entry the request could hold is back
//! where it started ([`Held::of`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokengate::listen::{self, Handler, InFlight, Listener, Stats};
use tokengate::message::response::Body;
use tokengate::service::GatewayService;
use tokengate::state::{Live, State};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{eventually, DEADLINE};

/// The status the wrapper answers a dropped request with (nginx's "client closed request").
pub const DROPPED: u16 = 499;
/// Polls after which a request that has not completed fails the test: far more than any
/// request here needs, so only a request that never completes reaches it.
const MAX_POLLS: usize = 500;

/// Everything a request in flight may hold in the gateway's state. After a request is dropped
/// it must all be given back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Upstream slots taken (requests sent to a node and not finished).
    pub upstream_in_flight: usize,
    /// Places in the upstream wait queue.
    pub upstream_waiting: usize,
    /// Nodes whose one probe is taken.
    pub nodes_probing: usize,
    /// Password checks shared by pair, and file-token checks by value.
    pub user_checks: usize,
    pub file_token_checks: usize,
    /// Password pool places (running or queued).
    pub password_pool: usize,
    /// Token names claimed by a create or import under way.
    pub store_claims: usize,
    /// Requests counted in flight against their accounts' limits.
    pub account_in_flight: u64,
}

impl Held {
    pub fn of(state: &State) -> Held {
        Held {
            upstream_in_flight: state.upstream.in_flight(),
            upstream_waiting: state.upstream.waiting(),
            nodes_probing: state
                .upstream
                .nodes()
                .iter()
                .filter(|n| n.is_probing())
                .count(),
            user_checks: state.users.checks_in_flight(),
            file_token_checks: state.file_tokens.checks_in_flight(),
            password_pool: state.users.password_pool().in_use(),
            store_claims: state.store.claims_in_flight(),
            account_in_flight: {
                let mut total = 0;
                state
                    .limits
                    .each(|l| total += u64::from(l.figures().in_flight));
                total
            },
        }
    }

    /// Nothing held.
    pub fn none() -> Held {
        Held::default()
    }
}

/// The gateway's handler, its future dropped after `limit` polls.
#[derive(Clone)]
struct DropAfter {
    inner: GatewayService,
    limit: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Handler for DropAfter {
    fn handle(
        &self,
        request: Request<Incoming>,
        in_flight: InFlight,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
        PollLimit {
            inner: Some(Box::pin(self.inner.handle(request, in_flight))),
            left: self.limit.load(Ordering::SeqCst),
            dropped: Arc::clone(&self.dropped),
        }
    }
}

struct PollLimit<F> {
    inner: Option<Pin<Box<F>>>,
    left: usize,
    dropped: Arc<AtomicUsize>,
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for PollLimit<F> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(dropped_response()));
        };
        if let Poll::Ready(response) = inner.as_mut().poll(cx) {
            return Poll::Ready(response);
        }
        this.left = this.left.saturating_sub(1);
        if this.left > 0 {
            return Poll::Pending;
        }
        // Dropped where it stands, as hyper drops a request whose client has gone.
        this.inner = None;
        this.dropped.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(dropped_response()))
    }
}

fn dropped_response() -> Response<Body> {
    let status = StatusCode::from_u16(DROPPED).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    tokengate::message::response::json(status, Bytes::from_static(b"{\"dropped\":true}"))
}

/// A listener serving a gateway's state through [`DropAfter`].
pub struct Canceller {
    pub addr: SocketAddr,
    state: State,
    limit: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Canceller {
    /// Serves `state` (a running gateway's) on a fresh loopback port.
    pub async fn start(state: &State) -> Canceller {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let limit = Arc::new(AtomicUsize::new(usize::MAX));
        let dropped = Arc::new(AtomicUsize::new(0));
        let handler = DropAfter {
            inner: GatewayService::new(Live::new(state)),
            limit: Arc::clone(&limit),
            dropped: Arc::clone(&dropped),
        };
        let config = state.config.server.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let stats = Arc::new(Stats::default());
            listen::run(
                vec![Listener::plain(tcp)],
                handler,
                &config,
                stats,
                shutdown,
            )
            .await;
        });
        Canceller {
            addr,
            state: state.clone(),
            limit,
            dropped,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Sends `request` with its handler dropped after `n` polls if it has not completed by
    /// then (answered [`DROPPED`]).
    pub async fn once(&self, n: usize, request: reqwest::RequestBuilder) -> reqwest::Response {
        self.limit.store(n, Ordering::SeqCst);
        let response = request.send().await.unwrap();
        self.limit.store(usize::MAX, Ordering::SeqCst);
        response
    }

    /// Sends the request `make` builds, dropping it after `n = 1, 2, …` polls until one
    /// completes; after every drop waits (bounded) for the state to hold what it held before
    /// the first. Returns the completed response and how many times it was dropped first.
    pub async fn every_await(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> (reqwest::Response, usize) {
        let before = Held::of(&self.state);
        for n in 1..=MAX_POLLS {
            let response = self.once(n, make()).await;
            if response.status().as_u16() != DROPPED {
                return (response, n - 1);
            }
            let what = format!("what a request dropped after {n} polls held to be given back");
            eventually(&what, DEADLINE, || Held::of(&self.state) == before).await;
        }
        panic!("the request did not complete within {MAX_POLLS} polls");
    }

    /// Stops the listener (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the cancelling listener did not stop in time")
                .unwrap();
        }
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
