//! Prometheus metrics. The request path pays a few atomic increments: every counter it touches
//! is resolved to its label set once, at start, and indexed by small enums; gauges are read
//! from the gateway's parts when `/metrics` is scraped.

use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// How a request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster answered (whatever its status).
    Forwarded,
    /// The gateway's own API answered successfully.
    Api,
    Unauthorized,
    Forbidden,
    Throttled,
    /// Another 4xx the gateway made (bad framing, limits, validation).
    ClientError,
    /// A 5xx the gateway made (upstream unreachable, timeout, busy, store).
    ServerError,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Forwarded,
        Outcome::Api,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Throttled,
        Outcome::ClientError,
        Outcome::ServerError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Api => "api",
            Outcome::Unauthorized => "401",
            Outcome::Forbidden => "403",
            Outcome::Throttled => "429",
            Outcome::ClientError => "4xx",
            Outcome::ServerError => "5xx",
        }
    }

    /// The outcome of an answer the gateway made itself with `status`.
    pub fn of_gateway_status(status: StatusCode) -> Outcome {
        match status.as_u16() {
            200..=299 => Outcome::Api,
            401 => Outcome::Unauthorized,
            403 => Outcome::Forbidden,
            429 => Outcome::Throttled,
            500..=599 => Outcome::ServerError,
            _ => Outcome::ClientError,
        }
    }
}

/// Methods with a label of their own; the rest count as `other`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

/// Why an authentication failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials at all.
    Missing,
    /// A bearer value that is no valid token.
    Bearer,
    /// A wrong user or password.
    Basic,
    /// A scheme the gateway cannot use, or several `Authorization` headers.
    Unusable,
    /// Refused before any check: the address failed too often.
    Throttled,
    /// Refused before any check: the password pool was full.
    PoolFull,
}

impl AuthFailure {
    const ALL: [AuthFailure; 6] = [
        AuthFailure::Missing,
        AuthFailure::Bearer,
        AuthFailure::Basic,
        AuthFailure::Unusable,
        AuthFailure::Throttled,
        AuthFailure::PoolFull,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Bearer => "bearer",
            AuthFailure::Basic => "basic",
            AuthFailure::Unusable => "unusable",
            AuthFailure::Throttled => "throttled",
            AuthFailure::PoolFull => "password_pool_full",
        }
    }
}

/// Why a request to the cluster failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Refused, reset, unreachable, TLS failed (502).
    Connect,
    /// No answer within `upstream.timeout` (504).
    Timeout,
    /// No free upstream slot in time (503).
    Busy,
}

impl UpstreamFailure {
    const ALL: [UpstreamFailure; 3] = [
        UpstreamFailure::Connect,
        UpstreamFailure::Timeout,
        UpstreamFailure::Busy,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Busy => "busy",
        }
    }
}

/// Latency buckets in seconds: 0.5 ms to 60 s, dense where a proxy's added latency lives.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];
/// Journal fsync buckets in seconds.
const FSYNC_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];
/// Records per journal batch.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric the gateway exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// `[outcome][method]`, flattened.
    requests: Vec<IntCounter>,
    duration: Histogram,
    upstream_duration: Histogram,
    auth_failures: Vec<IntCounter>,
    upstream_failures: Vec<IntCounter>,
    journal_fsync: Histogram,
    journal_batch: Histogram,
    pub(crate) log_lines_dropped: IntGaugeVec,
    // Read from the gateway's parts at scrape time.
    pub(crate) tokens: IntGaugeVec,
    pub(crate) upstream_in_flight: IntGauge,
    /// Per node, labelled `scheme://host:port`: the node set can change (sniffing, reload), so
    /// these are rebuilt at each scrape.
    pub(crate) node_up: IntGaugeVec,
    pub(crate) node_in_flight: IntGaugeVec,
    pub(crate) node_ejections: IntGaugeVec,
    pub(crate) node_idle: IntGaugeVec,
    pub(crate) upstream_retries: IntGaugeVec,
    pub(crate) client_connections: IntGauge,
    pub(crate) tls_handshakes: IntGauge,
    pub(crate) tls_failures: IntGauge,
    pub(crate) certificate_expiry: Gauge,
    pub(crate) ready: IntGauge,
    /// Only a shared store has one: how long the token set may have missed changes.
    pub(crate) store_staleness: Gauge,
}

/// A metric could not be registered: a name clash, a bug caught by the tests.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("tokengate".to_owned()), None)?;
        let requests_vec = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by outcome and method.",
            ),
            &["outcome", "method"],
        )?;
        registry.register(Box::new(requests_vec.clone()))?;
        let mut requests = Vec::with_capacity(Outcome::ALL.len() * (METHODS.len() + 1));
        for outcome in Outcome::ALL {
            for method in METHODS.iter().map(Method::as_str).chain(["other"]) {
                requests.push(requests_vec.with_label_values(&[outcome.label(), method]));
            }
        }
        let duration = histogram(
            &registry,
            "request_duration_seconds",
            "Time from a request's head to its response's head.",
            &LATENCY_BUCKETS,
        )?;
        let upstream_duration = histogram(
            &registry,
            "upstream_duration_seconds",
            "Time the cluster took to answer a forwarded request (to its response head).",
            &LATENCY_BUCKETS,
        )?;
        let auth_vec = IntCounterVec::new(
            Opts::new(
                "authentication_failures_total",
                "Failed authentications, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(auth_vec.clone()))?;
        let auth_failures = AuthFailure::ALL
            .iter()
            .map(|k| auth_vec.with_label_values(&[k.label()]))
            .collect();
        let upstream_vec = IntCounterVec::new(
            Opts::new(
                "upstream_failures_total",
                "Forwarded requests the cluster did not answer, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(upstream_vec.clone()))?;
        let upstream_failures = UpstreamFailure::ALL
            .iter()
            .map(|k| upstream_vec.with_label_values(&[k.label()]))
            .collect();
        let journal_fsync = histogram(
            &registry,
            "journal_fsync_seconds",
            "Duration of each token journal fsync.",
            &FSYNC_BUCKETS,
        )?;
        let journal_batch = histogram(
            &registry,
            "journal_batch_records",
            "Records made durable by one journal fsync.",
            &BATCH_BUCKETS,
        )?;
        let log_lines_dropped = IntGaugeVec::new(
            Opts::new(
                "log_lines_dropped",
                "Lines the access and audit logs dropped since start (writer behind or failing).",
            ),
            &["log"],
        )?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        let tokens = IntGaugeVec::new(
            Opts::new("tokens", "Service tokens in the store, by account."),
            &["account"],
        )?;
        registry.register(Box::new(tokens.clone()))?;
        let upstream_in_flight = gauge(
            &registry,
            "upstream_requests_in_flight",
            "Requests holding an upstream slot (each one upstream connection).",
        )?;
        let node_vec = |name: &str, help: &str| -> Result<IntGaugeVec, MetricsError> {
            let vec = IntGaugeVec::new(Opts::new(name, help), &["node"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let node_up = node_vec(
            "upstream_node_up",
            "1 while a node is in rotation, 0 while ejected or failing its health checks.",
        )?;
        let node_in_flight = node_vec(
            "upstream_node_requests_in_flight",
            "Requests in flight to a node (each one connection).",
        )?;
        let node_ejections = node_vec(
            "upstream_node_ejections_total",
            "Times a node was taken out of rotation (refused connections, failed health checks).",
        )?;
        let node_idle = node_vec(
            "upstream_node_idle_connections",
            "Connections to a node kept open for the next request.",
        )?;
        let upstream_retries = IntGaugeVec::new(
            Opts::new(
                "upstream_retries_total",
                "Requests tried again on another node, and retries the budget refused.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(upstream_retries.clone()))?;
        let client_connections = gauge(
            &registry,
            "client_connections",
            "Client connections open on the gateway's listeners.",
        )?;
        let tls_handshakes = gauge(
            &registry,
            "tls_handshakes_total",
            "TLS handshakes completed on the HTTPS listener.",
        )?;
        let tls_failures = gauge(
            &registry,
            "tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
        )?;
        let certificate_expiry = Gauge::with_opts(Opts::new(
            "certificate_expiry_timestamp_seconds",
            "When the HTTPS listener's certificate expires (Unix time); absent without TLS.",
        ))?;
        let ready = gauge(&registry, "ready", "1 when /readyz answers 200, else 0.")?;
        let store_staleness = Gauge::with_opts(Opts::new(
            "store_staleness_seconds",
            "Time since the token set was last known to hold every change made in etcd; absent \
             with the journal.",
        ))?;
        let build = IntGaugeVec::new(
            Opts::new("build_info", "The running build; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_duration,
            auth_failures,
            upstream_failures,
            journal_fsync,
            journal_batch,
            log_lines_dropped,
            tokens,
            upstream_in_flight,
            node_up,
            node_in_flight,
            node_ejections,
            node_idle,
            upstream_retries,
            client_connections,
            tls_handshakes,
            tls_failures,
            certificate_expiry,
            ready,
            store_staleness,
        })
    }

    /// One answered request.
    pub fn request(&self, outcome: Outcome, method: &Method, took: Duration) {
        let index = outcome_index(outcome) * (METHODS.len() + 1) + method_index(method);
        if let Some(counter) = self.requests.get(index) {
            counter.inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// The cluster's time to answer a forwarded request.
    pub fn upstream(&self, took: Duration) {
        self.upstream_duration.observe(took.as_secs_f64());
    }

    pub fn auth_failure(&self, kind: AuthFailure) {
        let i = AuthFailure::ALL.iter().position(|k| *k == kind);
        if let Some(counter) = i.and_then(|i| self.auth_failures.get(i)) {
            counter.inc();
        }
    }

    pub fn upstream_failure(&self, kind: UpstreamFailure) {
        let i = UpstreamFailure::ALL.iter().position(|k| *k == kind);
        if let Some(counter) = i.and_then(|i| self.upstream_failures.get(i)) {
            counter.inc();
        }
    }

    /// One journal fsync of `records` records.
    pub fn journal_sync(&self, took: Duration, records: usize) {
        self.journal_fsync.observe(took.as_secs_f64());
        self.journal_batch.observe(records as f64);
    }

    /// Registers the certificate expiry gauge (only a gateway with TLS has one).
    pub fn with_certificate(&self) -> Result<(), MetricsError> {
        self.registry
            .register(Box::new(self.certificate_expiry.clone()))?;
        Ok(())
    }

    /// Registers the store staleness gauge (only a store shared through etcd has one).
    pub fn with_store_staleness(&self) -> Result<(), MetricsError> {
        self.registry
            .register(Box::new(self.store_staleness.clone()))?;
        Ok(())
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics not rendered");
        }
        out
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or_default()
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    registry.register(Box::new(histogram.clone()))?;
    Ok(histogram)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let gauge = IntGauge::new(name, help)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_exposition() {
        let metrics = Metrics::new().unwrap();
        metrics.request(Outcome::Forwarded, &Method::GET, Duration::from_millis(3));
        metrics.request(
            Outcome::Unauthorized,
            &Method::from_bytes(b"PROPFIND").unwrap(),
            Duration::ZERO,
        );
        metrics.auth_failure(AuthFailure::Bearer);
        metrics.journal_sync(Duration::from_millis(2), 5);
        let text = String::from_utf8(metrics.render()).unwrap();
        for line in [
            "tokengate_requests_total{method=\"GET\",outcome=\"forwarded\"} 1",
            "tokengate_requests_total{method=\"other\",outcome=\"401\"} 1",
            "tokengate_authentication_failures_total{kind=\"bearer\"} 1",
            "tokengate_request_duration_seconds_count 2",
            "tokengate_journal_batch_records_sum 5",
            "tokengate_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
