//! Prometheus metrics. The request path pays a few atomic increments: every counter it touches
//! is resolved to its label set once, at start, and indexed by small enums; gauges are read
//! from the gateway's parts when `/metrics` is scraped.

use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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

/// A metric's name, which the registry prefixes with `tokengate_`, and its help text: what a
/// scrape shows, kept in one list so names and texts are read and changed in one place.
type Described = (&'static str, &'static str);

const REQUESTS: Described = (
    "requests_total",
    "Requests answered, by outcome and method.",
);
const REQUEST_DURATION: Described = (
    "request_duration_seconds",
    "Time from a request's head to its response's head.",
);
const UPSTREAM_DURATION: Described = (
    "upstream_duration_seconds",
    "Time the cluster took to answer a forwarded request (to its response head).",
);
const AUTH_FAILURES: Described = (
    "authentication_failures_total",
    "Failed authentications, by kind.",
);
const UPSTREAM_FAILURES: Described = (
    "upstream_failures_total",
    "Forwarded requests the cluster did not answer, by kind.",
);
const JOURNAL_FSYNC: Described = (
    "journal_fsync_seconds",
    "Duration of each token journal fsync.",
);
const JOURNAL_BATCH: Described = (
    "journal_batch_records",
    "Records made durable by one journal fsync.",
);
const LOG_LINES_DROPPED: Described = (
    "log_lines_dropped",
    "Lines the access and audit logs dropped since start (writer behind or failing).",
);
const TOKENS: Described = ("tokens", "Service tokens in the store, by account.");
const UPSTREAM_IN_FLIGHT: Described = (
    "upstream_requests_in_flight",
    "Requests holding an upstream slot (each one upstream connection).",
);
const NODE_UP: Described = (
    "upstream_node_up",
    "1 while a node is in rotation, 0 while ejected or failing its health checks.",
);
const NODE_IN_FLIGHT: Described = (
    "upstream_node_requests_in_flight",
    "Requests in flight to a node (each one connection).",
);
const NODE_EJECTIONS: Described = (
    "upstream_node_ejections_total",
    "Times a node was taken out of rotation (refused connections, failed health checks).",
);
const NODE_IDLE: Described = (
    "upstream_node_idle_connections",
    "Connections to a node kept open for the next request.",
);
const UPSTREAM_RETRIES: Described = (
    "upstream_retries_total",
    "Requests tried again on another node, and retries the budget refused.",
);
const CLIENT_CONNECTIONS: Described = (
    "client_connections",
    "Client connections open on the gateway's listeners.",
);
const TLS_HANDSHAKES: Described = (
    "tls_handshakes_total",
    "TLS handshakes completed on the HTTPS listener.",
);
const TLS_FAILURES: Described = (
    "tls_handshake_failures_total",
    "TLS handshakes that failed or timed out.",
);
const CERTIFICATE_EXPIRY: Described = (
    "certificate_expiry_timestamp_seconds",
    "When the HTTPS listener's certificate expires (Unix time); absent without TLS.",
);
const READY: Described = ("ready", "1 when /readyz answers 200, else 0.");
const STORE_STALENESS: Described = (
    "store_staleness_seconds",
    "Time since the token set was last known to hold every change made in etcd; absent \
     with the journal.",
);
const ACCOUNT_REQUESTS: Described = (
    "account_requests_total",
    "Requests admitted to be forwarded, by account (`user:<name>` for a forwarded user).",
);
const ACCOUNT_LIMITED: Described = (
    "account_limited_total",
    "Requests an account's own limit refused with 429, by account and limit.",
);
const ACCOUNT_IN_FLIGHT: Described = (
    "account_requests_in_flight",
    "Requests of an account admitted and not yet answered in full.",
);
const ACCOUNT_SLOT_WAIT: Described = (
    "account_slot_wait_seconds_total",
    "Time an account's requests waited for an upstream slot.",
);
const REPLICAS: Described = (
    "replicas",
    "Gateways sharing the store's accounts; each enforces its part of every account limit.",
);
const BUILD_INFO: Described = ("build_info", "The running build; always 1.");

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
    pub(crate) account_requests: IntGaugeVec,
    /// Labelled `account`, `limit`.
    pub(crate) account_limited: IntGaugeVec,
    pub(crate) account_in_flight: IntGaugeVec,
    pub(crate) account_slot_wait: GaugeVec,
    pub(crate) replicas: IntGauge,
}

/// A metric could not be registered: a name clash, a bug caught by the tests.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("tokengate".to_owned()), None)?;
        let metrics = Metrics {
            requests: counters(&registry, REQUESTS, ["outcome", "method"], request_labels())?,
            duration: histogram(&registry, REQUEST_DURATION, &LATENCY_BUCKETS)?,
            upstream_duration: histogram(&registry, UPSTREAM_DURATION, &LATENCY_BUCKETS)?,
            auth_failures: counters(
                &registry,
                AUTH_FAILURES,
                ["kind"],
                AuthFailure::ALL.map(|k| [k.label()]),
            )?,
            upstream_failures: counters(
                &registry,
                UPSTREAM_FAILURES,
                ["kind"],
                UpstreamFailure::ALL.map(|k| [k.label()]),
            )?,
            journal_fsync: histogram(&registry, JOURNAL_FSYNC, &FSYNC_BUCKETS)?,
            journal_batch: histogram(&registry, JOURNAL_BATCH, &BATCH_BUCKETS)?,
            log_lines_dropped: gauge_family(&registry, LOG_LINES_DROPPED, "log")?,
            tokens: gauge_family(&registry, TOKENS, "account")?,
            upstream_in_flight: gauge(&registry, UPSTREAM_IN_FLIGHT)?,
            node_up: gauge_family(&registry, NODE_UP, "node")?,
            node_in_flight: gauge_family(&registry, NODE_IN_FLIGHT, "node")?,
            node_ejections: gauge_family(&registry, NODE_EJECTIONS, "node")?,
            node_idle: gauge_family(&registry, NODE_IDLE, "node")?,
            upstream_retries: gauge_family(&registry, UPSTREAM_RETRIES, "outcome")?,
            client_connections: gauge(&registry, CLIENT_CONNECTIONS)?,
            tls_handshakes: gauge(&registry, TLS_HANDSHAKES)?,
            tls_failures: gauge(&registry, TLS_FAILURES)?,
            certificate_expiry: unregistered_gauge(CERTIFICATE_EXPIRY)?,
            ready: gauge(&registry, READY)?,
            store_staleness: unregistered_gauge(STORE_STALENESS)?,
            account_requests: gauge_family(&registry, ACCOUNT_REQUESTS, "account")?,
            account_limited: labelled_gauges(&registry, ACCOUNT_LIMITED, &["account", "limit"])?,
            account_in_flight: gauge_family(&registry, ACCOUNT_IN_FLIGHT, "account")?,
            account_slot_wait: {
                let (name, help) = ACCOUNT_SLOT_WAIT;
                let family = GaugeVec::new(Opts::new(name, help), &["account"])?;
                registry.register(Box::new(family.clone()))?;
                family
            },
            replicas: gauge(&registry, REPLICAS)?,
            registry,
        };
        let build = gauge_family(&metrics.registry, BUILD_INFO, "version")?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Ok(metrics)
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

    /// Requests answered since the start, per outcome (label, count), summed over methods:
    /// read by the status page's sampler, never on the request path.
    pub fn requests_by_outcome(&self) -> Vec<(&'static str, u64)> {
        let per_outcome = METHODS.len() + 1;
        Outcome::ALL
            .iter()
            .enumerate()
            .map(|(i, outcome)| {
                let counters = self.requests.iter().skip(i * per_outcome).take(per_outcome);
                (outcome.label(), counters.map(IntCounter::get).sum())
            })
            .collect()
    }

    /// The request duration histogram as (upper bound in seconds, cumulative count) pairs, the
    /// last bound infinite: what a percentile over an interval is computed from.
    pub fn duration_buckets(&self) -> Vec<(f64, u64)> {
        use prometheus::core::Metric;
        let metric = self.duration.metric();
        let histogram = metric.get_histogram();
        let mut buckets: Vec<(f64, u64)> = histogram
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        buckets.push((f64::INFINITY, histogram.get_sample_count()));
        buckets
    }

    /// Forwarded requests the cluster did not answer, since the start, over every kind.
    pub fn upstream_failures_total(&self) -> u64 {
        self.upstream_failures.iter().map(IntCounter::get).sum()
    }

    /// Failed authentications since the start, over every kind.
    pub fn auth_failures_total(&self) -> u64 {
        self.auth_failures.iter().map(IntCounter::get).sum()
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

/// One counter per label set, in the order given: the request path finds its counter by
/// index, never by hashing label values.
fn counters<'v, const N: usize>(
    registry: &Registry,
    (name, help): Described,
    labels: [&str; N],
    values: impl IntoIterator<Item = [&'v str; N]>,
) -> Result<Vec<IntCounter>, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), &labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(values
        .into_iter()
        .map(|value| family.with_label_values(&value))
        .collect())
}

/// The `requests_total` label sets, `[outcome][method]` as [`Metrics::request`] indexes them.
fn request_labels() -> Vec<[&'static str; 2]> {
    let methods = METHODS.iter().map(Method::as_str).chain(["other"]);
    Outcome::ALL
        .into_iter()
        .flat_map(|outcome| methods.clone().map(move |method| [outcome.label(), method]))
        .collect()
}

fn histogram(
    registry: &Registry,
    (name, help): Described,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    registry.register(Box::new(histogram.clone()))?;
    Ok(histogram)
}

fn gauge(registry: &Registry, (name, help): Described) -> Result<IntGauge, prometheus::Error> {
    let gauge = IntGauge::new(name, help)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// A gauge per value of `label`, each made when it is first set: the values (accounts, nodes)
/// are not known when the metrics are registered.
fn gauge_family(
    registry: &Registry,
    described: Described,
    label: &str,
) -> Result<IntGaugeVec, prometheus::Error> {
    labelled_gauges(registry, described, &[label])
}

fn labelled_gauges(
    registry: &Registry,
    (name, help): Described,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let family = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// A gauge only some gateways have: registered later, by whoever knows it applies.
fn unregistered_gauge((name, help): Described) -> Result<Gauge, prometheus::Error> {
    Gauge::with_opts(Opts::new(name, help))
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
