//! The admin listener: `/livez`, `/readyz` and `/metrics` on a port of its own, without a token,
//! for load balancers, orchestrators and Prometheus, and the status page (`/`, `/status`). It
//! listens on loopback by default: what it tells (token counts per account, traffic) is for
//! operators, not for the clients of the gateway's own port; off loopback the pages ask who is
//! looking ([`admin_access`](super::admin_access)).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::limits::Limits;
use crate::listen::{Handler, InFlight, Stats};
use crate::message::response::json_value;
use crate::message::response::Body;
use crate::message::ClientInfo;
use crate::observe::metrics::Metrics;
use crate::proxy::Upstream;
use crate::state::{Live, State};
use crate::status::{self, Sources, Status};
use crate::tls::server::ServerTls;

use super::admin_access;

/// How long one upstream reachability probe result is reused: a probe per scrape or health
/// check would open a connection to the cluster each time.
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// How long a probe may take before the cluster counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the gateway should get traffic.
pub struct Readiness {
    draining: AtomicBool,
    /// Where the probe reads the cluster's address and whether it matters: both may change on
    /// a reload.
    live: Live,
    probe: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    pub fn new(live: Live) -> Self {
        Readiness {
            draining: AtomicBool::new(false),
            live,
            probe: Mutex::new(None),
        }
    }

    /// From now on `/readyz` answers 503: the gateway is shutting down.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not.
    async fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining");
        }
        let state = self.live.load();
        if let (Some(max), Some(stale)) =
            (state.config.store.max_staleness, state.store.staleness())
        {
            if stale > max {
                return Err("token store stale");
            }
        }
        if state.config.admin.ready_requires_upstream
            && !self.upstream_reachable(&state.upstream).await
        {
            return Err("upstream unreachable");
        }
        Ok(())
    }

    /// Whether some node accepts a connection: those in rotation are tried first. Ejection
    /// alone does not decide it, or a gateway taken out of its load balancer would never see
    /// the request that brings a node back.
    async fn upstream_reachable(&self, upstream: &Upstream) -> bool {
        let cached = *self.probe.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, reachable)) = cached {
            if at.elapsed() < PROBE_REUSE {
                return reachable;
            }
        }
        let mut nodes: Vec<_> = upstream.nodes().iter().cloned().collect();
        nodes.sort_by_key(|n| !n.is_up());
        let mut reachable = false;
        for node in nodes {
            let connect = tokio::net::TcpStream::connect(node.url.socket_authority());
            if matches!(
                tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                Ok(Ok(_))
            ) {
                reachable = true;
                break;
            }
        }
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), reachable));
        reachable
    }
}

/// What the admin listener serves.
#[derive(Clone)]
pub struct AdminService {
    /// Read per scrape: the accounts and the upstream client may change on a reload.
    live: Live,
    readiness: Arc<Readiness>,
    /// The gateway listeners' connection counts.
    stats: Arc<Stats>,
    /// The HTTPS listener's certificate, for its expiry.
    tls: Option<ServerTls>,
    /// The status page's document.
    status: Arc<Status>,
}

impl AdminService {
    pub fn new(readiness: Arc<Readiness>, sources: Sources) -> Self {
        AdminService {
            live: sources.live.clone(),
            readiness,
            stats: Arc::clone(&sources.connections),
            tls: sources.tls.clone(),
            status: Arc::new(Status::new(sources)),
        }
    }

    async fn answer(&self, request: &Request<Incoming>, client: &ClientInfo) -> Response<Body> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let path = request.uri().path();
        let state = self.live.load();
        if admin_access::guarded(path, &state.config.admin) {
            if let Err(refusal) = admin_access::admit(&state, request, client).await {
                return refusal;
            }
        }
        match path {
            "/" => page(
                status::html::render(&self.status.document()).into(),
                "text/html; charset=utf-8",
            ),
            "/status" => {
                let pretty = request.uri().query().is_some_and(|q| q.contains("pretty"));
                let mut response = json_value(StatusCode::OK, &self.status.document(), pretty);
                let headers = response.headers_mut();
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                response
            }
            "/status.js" => page(
                Bytes::from_static(status::assets::SCRIPT.as_bytes()),
                "text/javascript; charset=utf-8",
            ),
            "/status.css" => page(
                Bytes::from_static(status::assets::STYLE.as_bytes()),
                "text/css; charset=utf-8",
            ),
            "/livez" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness.check().await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => {
                let ready = self.readiness.check().await.is_ok();
                let state = self.live.load();
                self.refresh_gauges(&state, ready);
                let mut response = reply(StatusCode::OK, state.metrics.render().into());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /, /status, /livez, /readyz and /metrics are served here\n",
            ),
        }
    }

    /// Sets the gauges that are read, not counted.
    fn refresh_gauges(&self, state: &State, ready: bool) {
        let metrics = &state.metrics;
        for (account, _) in state.accounts.matching(None, None) {
            let count = state.store.names_of(account).len();
            metrics
                .tokens
                .with_label_values(&[account.as_str()])
                .set(gauge(count));
        }
        upstream_gauges(metrics, &state.upstream);
        account_gauges(metrics, &state.limits);
        let stats = &self.stats;
        metrics
            .client_connections
            .set(gauge(stats.open.load(Ordering::Relaxed)));
        metrics
            .tls_handshakes
            .set(gauge(stats.tls_handshakes.load(Ordering::Relaxed)));
        metrics
            .tls_failures
            .set(gauge(stats.tls_failures.load(Ordering::Relaxed)));
        metrics.ready.set(i64::from(ready));
        if let Some(stale) = state.store.staleness() {
            metrics.store_staleness.set(stale.as_secs_f64());
        }
        if let Some(expiry) = self.tls.as_ref().and_then(ServerTls::not_after) {
            metrics.certificate_expiry.set(expiry as f64);
        }
        metrics
            .log_lines_dropped
            .with_label_values(&["audit"])
            .set(gauge(state.audit.dropped()));
        if let Some(log) = &state.access_log {
            metrics
                .log_lines_dropped
                .with_label_values(&["access"])
                .set(gauge(log.dropped()));
        }
    }
}

/// The cluster side: slots in use, each node as it is now, and retries. The node gauges are
/// emptied first, since a node that left the set (sniffing, reload) must not linger.
fn upstream_gauges(metrics: &Metrics, upstream: &Upstream) {
    metrics.upstream_in_flight.set(gauge(upstream.in_flight()));
    for family in [
        &metrics.node_up,
        &metrics.node_in_flight,
        &metrics.node_ejections,
        &metrics.node_idle,
    ] {
        family.reset();
    }
    for node in upstream.nodes().iter() {
        let label = [node.label.as_str()];
        metrics
            .node_up
            .with_label_values(&label)
            .set(i64::from(node.is_up()));
        metrics
            .node_in_flight
            .with_label_values(&label)
            .set(gauge(node.outstanding()));
        metrics
            .node_ejections
            .with_label_values(&label)
            .set(gauge(node.ejections_total()));
        metrics
            .node_idle
            .with_label_values(&label)
            .set(gauge(node.pool.idle()));
    }
    let (retried, refused) = upstream.retries();
    for (outcome, n) in [("retried", retried), ("budget_exhausted", refused)] {
        metrics
            .upstream_retries
            .with_label_values(&[outcome])
            .set(gauge(n));
    }
}

/// Each account's use of its limits: counted by its limiter, copied here at scrape time.
fn account_gauges(metrics: &Metrics, limits: &Limits) {
    limits.each(|limiter| {
        let figures = limiter.figures();
        let account = [&*limiter.name];
        metrics
            .account_requests
            .with_label_values(&account)
            .set(gauge(figures.admitted));
        metrics
            .account_in_flight
            .with_label_values(&account)
            .set(i64::from(figures.in_flight));
        metrics
            .account_slot_wait
            .with_label_values(&account)
            .set(figures.waited.as_secs_f64());
        for (limit, n) in [
            ("rate", figures.refused_rate),
            ("max_in_flight", figures.refused_in_flight),
        ] {
            metrics
                .account_limited
                .with_label_values(&[&*limiter.name, limit])
                .set(gauge(n));
        }
    });
    metrics.replicas.set(i64::from(limits.replicas()));
}

/// A count as a gauge's value. No real count passes `i64::MAX`; one that did would show as the
/// maximum rather than wrap to a negative.
fn gauge(count: impl TryInto<i64>) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}

impl Handler for AdminService {
    fn handle(
        &self,
        request: Request<Incoming>,
        in_flight: InFlight,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
        let this = self.clone();
        async move { Ok(this.answer(&request, in_flight.client()).await) }
    }
}

/// A part of the status page, under its Content-Security-Policy: the page loads nothing but
/// its own script and style.
fn page(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = reply(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(status::assets::CONTENT_SECURITY_POLICY),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = reply(status, Bytes::copy_from_slice(body.as_bytes()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn reply(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
