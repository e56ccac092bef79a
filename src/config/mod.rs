//! Typed, validated configuration: read once at start, before any port is bound.
//!
//! [`Config::load`] takes the TOML text (or none: the embedded defaults) and the command-line
//! overrides, and reports every bad key in one [`ConfigError`], each line naming file and key.

mod access_log_reader;
mod accounts_reader;
mod admin_reader;
mod boundary_reader;
mod connections_reader;
mod files_check;
mod limits_reader;
mod log_reader;
mod reader;
mod server_reader;
mod store_reader;
mod throttle_reader;
mod tls_reader;
mod upstream_reader;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::HeaderValue;
use ipnet::IpNet;

use crate::identity::AccountId;
pub use limits_reader::{Limit, LimitSettings, LimitsConfig, Rate};
use reader::Reader;

/// The whole gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from, for messages (`<defaults>` when no file was read).
    pub source: String,
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    /// The HTTPS listener; `None` when no certificate is configured.
    pub tls: Option<TlsConfig>,
    pub security: SecurityConfig,
    /// Service accounts the gateway knows besides Elasticsearch's built-in three.
    pub service_accounts: Vec<AccountConfig>,
    pub log: LogConfig,
    /// The audit log: security events, apart from the main log.
    pub audit: AuditConfig,
    pub admin: AdminConfig,
    pub access_log: AccessLogConfig,
    /// Where tokens are made durable and how replicas learn of each other's changes.
    pub store: StoreConfig,
    /// How much of the cluster each account may take.
    pub limits: LimitsConfig,
}

/// `[store]`: the token store's backend. Reading a token is the same in-memory lookup with
/// either; the backend decides what makes a change durable and who else sees it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub etcd: EtcdConfig,
    /// `/readyz` fails once the store has not heard from its backend for longer, so a load
    /// balancer stops sending to a replica that may miss revocations. `None`: never.
    pub max_staleness: Option<Duration>,
}

/// Which store keeps the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// The local journal under `data_dir`: one gateway.
    Journal,
    /// An etcd cluster shared by every replica.
    Etcd,
}

/// How to reach etcd. Used by `backend = "etcd"` and by `tokens migrate --to etcd`.
#[derive(Clone)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, tried in turn when one fails.
    pub endpoints: Vec<String>,
    /// Every key the gateway writes starts with it, so several gateway clusters can share etcd.
    pub prefix: String,
    /// CA bundle that signs the members' certificates (https endpoints).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, when the members require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd user and password, when etcd has authentication on.
    pub user: Option<String>,
    pub password: Option<String>,
    /// How long a create or delete may wait for etcd, retries included, before it answers 503.
    pub request_timeout: Duration,
    /// How long a starting gateway waits for etcd before it gives up.
    pub start_timeout: Duration,
}

impl EtcdConfig {
    pub const DEFAULT_PREFIX: &'static str = "/tokengate/";
    /// etcd commits in milliseconds; seconds of failed attempts mean it is unreachable, and a
    /// client waiting on the token API is better told so than kept waiting.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// A gateway cannot serve without its token set; long enough to ride out an etcd restart.
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
}

impl fmt::Debug for EtcdConfig {
    /// The password is left out: configurations are logged and compared as text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .field("start_timeout", &self.start_timeout)
            .finish()
    }
}

/// One line per request.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    /// `None`: no access log (`format = "off"`, the default).
    pub format: Option<AccessLogFormat>,
    pub output: Option<LogOutput>,
    /// Log the query string too (it can carry search terms and ids).
    pub query: bool,
    /// Lines waiting for the writer thread; when full, lines are dropped and counted.
    pub buffer: usize,
}

impl AccessLogConfig {
    /// A quarter of a second of a busy gateway's lines, about 200 bytes each: 2 MiB at most.
    pub const DEFAULT_BUFFER: usize = 10_000;
    pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
    /// How long a stopping gateway waits for queued lines.
    pub const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
}

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `time client "METHOD target" status bytes_in bytes_out duration upstream principal opaque_id`
    Text,
    /// One JSON object per line, ECS-style field names.
    Json,
}

/// The admin listener: health checks, metrics and the status page, no token needed.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` (`listen = ""`): no admin listener.
    pub listen: Option<SocketAddr>,
    /// `/readyz` answers 503 while the cluster does not accept connections.
    pub ready_requires_upstream: bool,
    /// Whether the status page (and `/metrics`, see `metrics_require_auth`) asks who is
    /// looking (`admin.require_auth`).
    pub require_auth: RequireAuth,
    /// When authentication is required, whether `/metrics` requires it too: a Prometheus
    /// without credentials needs `false`.
    pub metrics_require_auth: bool,
    /// CA bundle a client certificate must chain to; set, the admin listener speaks TLS with
    /// the `[tls]` certificate and lets in a client that presents one without a password.
    pub client_ca: Option<PathBuf>,
}

/// `admin.require_auth`: `true`, `false` or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireAuth {
    Always,
    Never,
    /// Required when the admin listener is not on a loopback address: on loopback only the
    /// host's own users reach it.
    OffLoopback,
}

impl AdminConfig {
    /// Loopback: what it shows is for operators, not for the gateway's clients.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9901";
    /// Roles that may read the status page and the metrics when authentication is required.
    pub const ROLES: [&'static str; 2] = ["monitor", "superuser"];

    /// Whether `/`, `/status` (and, with `metrics_require_auth`, `/metrics`) need a client
    /// certificate or a user with one of [`AdminConfig::ROLES`].
    pub fn requires_auth(&self) -> bool {
        match self.require_auth {
            RequireAuth::Always => true,
            RequireAuth::Never => false,
            RequireAuth::OffLoopback => self.listen.is_some_and(|a| !a.ip().is_loopback()),
        }
    }
}

/// The client-facing listener and the gateway's own state.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Plain-HTTP listen address; `None` (`listen = ""`) serves HTTPS only.
    pub listen: Option<SocketAddr>,
    /// Directory holding the token journal and the file-realm users.
    pub data_dir: PathBuf,
    /// Reported as `cluster_name` by the node-style APIs the gateway answers itself.
    pub cluster_name: String,
    /// Reported as the node name in file-token and cache-clear answers.
    pub node_name: String,
    /// Connections served at once. At the limit a new connection takes the place of the
    /// longest-idle one, or is refused when none is idle.
    pub max_connections: usize,
    /// What one client may hold and how soon a new connection must speak.
    pub connections: ConnectionLimits,
    /// How long an HTTP/1 connection may go without a request in flight (slowloris guard, and
    /// the keep-alive idle limit): clients' connection pools (60 s and more) must not see their
    /// connections vanish. Checked by the connection's own timer, not one per request.
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// What one request may make the gateway read, and how slowly.
    pub http: HttpLimits,
    /// Peers whose `X-Forwarded-*`/`Forwarded` headers are believed (load balancers in front).
    pub trusted_proxies: Vec<IpNet>,
}

/// Per-request limits at the client side, as Elasticsearch's `http.*` settings bound them.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Longest request line (method, target, version) in bytes; longer gets 414.
    pub max_request_line: usize,
    /// Largest header block in bytes; larger gets 431.
    pub max_header_size: usize,
    /// Largest body the gateway's own API reads; larger gets 413.
    pub max_api_body: usize,
    /// Longest silence while a client sends a request body; then the request fails.
    pub client_body_timeout: Duration,
}

impl HttpLimits {
    /// Elasticsearch's `http.max_initial_line_length`.
    pub const DEFAULT_MAX_REQUEST_LINE: usize = 4 * 1024;
    /// Elasticsearch's `http.max_header_size`.
    pub const DEFAULT_MAX_HEADER_SIZE: usize = 16 * 1024;
    /// The token API takes no body; a small one (`{}`) is tolerated, as clients send it.
    pub const DEFAULT_MAX_API_BODY: usize = 1024;
    /// As nginx's `client_body_timeout`.
    pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    /// hyper's read buffer must hold a whole request head before the gateway sees it: room for
    /// both limits plus slack, so the exact limits are applied by the gateway with its own
    /// answers, while a head past this is refused (431) without being buffered further.
    pub fn read_buffer(&self) -> usize {
        (self.max_request_line + self.max_header_size + 4096).max(8192)
    }
}

impl ServerConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_DATA_DIR: &'static str = "data";
    pub const DEFAULT_CLUSTER_NAME: &'static str = "tokengate";
    pub const DEFAULT_NODE_NAME: &'static str = "tokengate-1";
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// Long enough for clients' keep-alive pools (see `header_timeout`).
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// HTTP/2 streams one connection may have open; what a busy client pipelines, not more.
    pub const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
    /// HTTP/2 PINGs on an idle connection, so dead peers are noticed behind NAT and load balancers.
    pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
    /// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
    pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
}

/// Limits that keep one client's idle sockets from locking everyone else out.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections one client address may hold at once (`server.max_connections_per_ip`).
    pub per_ip: usize,
    /// Deadline, from accept, for a new connection's first request head: HTTPS includes the
    /// handshake, HTTP/2 needs only its connection preface and SETTINGS
    /// (`server.first_request_timeout`). Afterwards `header_timeout` bounds the idle time.
    pub first_request_timeout: Duration,
}

impl ConnectionLimits {
    /// Far above one host's client pool (Logstash's Elasticsearch output opens at most 100 per
    /// node; Beats and the language clients keep fewer), with room for a few such hosts behind one NAT
    /// address, yet a tenth of the default `max_connections`: one address cannot fill the gateway.
    pub const DEFAULT_PER_IP: usize = 1_024;
    /// A client that connects means to talk: 10 s covers a TLS handshake and the first request
    /// over a slow link, while a silent socket gives its slot back six times sooner than under
    /// the keep-alive `header_timeout`.
    pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
}

/// The cluster behind the gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The nodes as configured (`url`, `nodes` or `--upstream`): where requests go until
    /// sniffing finds others, and whom sniffing asks.
    pub nodes: NodeList,
    /// Credential the gateway presents upstream in place of the client's (`ApiKey …`, `Basic …`),
    /// from `authorization`, `authorization_file` or `authorization_env`.
    pub authorization: Option<HeaderValue>,
    /// Deadline for opening a TCP connection to the upstream (failure: 502).
    pub connect_timeout: Duration,
    /// Deadline for the upstream's response headers (failure: 504).
    pub timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per node.
    pub pool_max_idle: usize,
    /// How an `https://` upstream is trusted.
    pub tls: UpstreamTls,
    /// Requests in flight to each node at once (each holds one connection); more wait.
    pub max_connections: usize,
    /// Requests that may wait for one of those, per node; more get 503 at once.
    pub max_pending: usize,
    /// Waiting requests are served by account in turn (weighted), not in arrival order.
    pub fair_queue: bool,
    /// Longest silence while the upstream sends a response body; then the response is cut.
    pub body_timeout: Duration,
    /// What service-token requests carry upstream for accounts without a setting of their own:
    /// `Auto`, `Gateway` or `Nothing`.
    pub service_credentials: AccountCredential,
    /// When a node is taken out of rotation and brought back.
    pub health: NodeHealth,
    /// When a failed request is tried again on another node.
    pub retry: RetryPolicy,
    /// Discovering the cluster's nodes from `GET /_nodes/http`; `None`: off.
    pub sniff: Option<Sniff>,
}

/// One node's base URL, split into the parts every forwarded request reuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port requests are sent to.
    pub authority: Authority,
    /// Path prefix put before every forwarded path (empty for none; never ends in `/`).
    pub path_prefix: String,
}

impl NodeUrl {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// `host:port` with the scheme's port spelled out, for connecting and for logs.
    pub fn socket_authority(&self) -> String {
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if self.is_https() { 443 } else { 80 });
        format!("{}:{port}", self.authority.host())
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme, self.authority, self.path_prefix
        )
    }
}

/// At least one node, by construction: there is always somewhere to send a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeList {
    first: NodeUrl,
    rest: Vec<NodeUrl>,
}

impl NodeList {
    pub fn new(first: NodeUrl, rest: Vec<NodeUrl>) -> Self {
        NodeList { first, rest }
    }

    /// The first configured node: the one API-key management and sniffing ask first.
    pub fn first(&self) -> &NodeUrl {
        &self.first
    }

    pub fn iter(&self) -> impl Iterator<Item = &NodeUrl> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether any node is reached over TLS, so the trust settings are needed.
    pub fn any_https(&self) -> bool {
        self.iter().any(NodeUrl::is_https)
    }
}

/// Passive ejection and optional active checks, as Elasticsearch's clients and Envoy's outlier
/// detection do them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// How long a node that refused a connection (or did not accept one in time) is left out;
    /// each further ejection in a row doubles it.
    pub eject_for: Duration,
    /// The longest ejection.
    pub eject_max: Duration,
    /// Active checks; `None`: only passive ejection.
    pub check: Option<ActiveCheck>,
}

impl NodeHealth {
    /// Elasticsearch's clients wait 1 s before retrying a dead node, doubling to 30 s.
    pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(1);
    pub const DEFAULT_EJECT_MAX: Duration = Duration::from_secs(30);
}

/// `GET <path>` on every node every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub interval: Duration,
    pub path: String,
    pub timeout: Duration,
    /// Failed checks in a row that take a node out.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that bring it back.
    pub healthy_threshold: u32,
}

impl ActiveCheck {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
    pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
}

/// Retries on another node, only where they are safe, within a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further nodes one request may be tried on.
    pub max_retries: usize,
    /// Retries allowed as a share of requests, in percent (linkerd's and Envoy's budgets).
    pub budget_percent: u32,
    /// Retries allowed each second whatever the traffic, so a quiet gateway still retries.
    pub min_per_second: u32,
}

impl RetryPolicy {
    pub const DEFAULT_MAX_RETRIES: usize = 2;
    pub const DEFAULT_BUDGET_PERCENT: u32 = 20;
    pub const DEFAULT_MIN_PER_SECOND: u32 = 10;
}

/// When the node list is read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniff {
    /// Once, right after the start.
    pub on_start: bool,
    /// Again every `interval`.
    pub interval: Option<Duration>,
    /// Again when a node is ejected (at most once per [`Sniff::MIN_SPACING`]).
    pub on_failure: bool,
    /// Deadline for the `_nodes/http` answer.
    pub timeout: Duration,
}

impl Sniff {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Elasticsearch's clients' `min_delay_between_sniffing`.
    pub const MIN_SPACING: Duration = Duration::from_secs(10);
}

impl UpstreamConfig {
    pub const DEFAULT_URL: &'static str = "http://127.0.0.1:9200";
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    /// Under the 60 s idle timeout of common load balancers in front of a cluster (and of
    /// nginx's upstream keep-alive), so the gateway drops an idle connection before anything
    /// between closes it under a request; and an idle connection's memory (hyper's buffers and
    /// task) is given back within a minute of a burst. Shorter costs handshakes.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
    pub const DEFAULT_POOL_MAX_IDLE: usize = 256;
    /// Per node: enough for a busy node; an h2 client alone could otherwise open one upstream
    /// connection per stream.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    pub const DEFAULT_MAX_PENDING: usize = 1024;
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    /// TCP keep-alive probes on upstream connections, so a silently dropped one is noticed.
    pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
    /// A dead cluster fails every request: one log line per cause this often, the rest counted.
    pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(5);
}

/// Trust settings towards an `https://` upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA file to trust (Elasticsearch's `http_ca.crt`); the system roots when `None`.
    pub ca: Option<PathBuf>,
    /// SHA-256 of the one CA certificate to trust, as Elasticsearch's enrolment pins it.
    pub ca_fingerprint: Option<[u8; 32]>,
    /// Client certificate chain presented to the upstream.
    pub client_cert: Option<PathBuf>,
    /// Key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `false` skips certificate checks entirely (logged loudly at start).
    pub verify: bool,
    /// Offer h2 by ALPN; used when the upstream picks it.
    pub http2: bool,
}

/// The HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (RSA, ECDSA P-256/P-384 or Ed25519).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates; `None` disables mTLS.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required or only checked when sent.
    pub client_auth: ClientAuth,
    /// How often the certificate files are checked for replacement.
    pub reload_interval: Duration,
}

impl TlsConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8443";
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
    /// Deadline for a client to finish the TLS handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Sessions kept for resumption (a few hundred bytes each).
    pub const SESSION_CACHE_SIZE: usize = 4096;
}

/// Client-certificate policy, as Elasticsearch's `ssl.client_authentication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

impl fmt::Debug for UpstreamConfig {
    /// Redacts the upstream credential: configs get logged, credentials must not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("nodes", &self.nodes)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle", &self.pool_max_idle)
            .field("tls", &self.tls)
            .field("max_connections", &self.max_connections)
            .field("max_pending", &self.max_pending)
            .field("fair_queue", &self.fair_queue)
            .field("body_timeout", &self.body_timeout)
            .field("service_credentials", &self.service_credentials)
            .field("health", &self.health)
            .field("retry", &self.retry)
            .field("sniff", &self.sniff)
            .finish()
    }
}

/// Who may do what.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Roles that, besides `superuser`, grant `manage_service_account`.
    pub admin_roles: Vec<String>,
    /// Forward requests of file-realm users authenticated with Basic credentials.
    pub forward_users: bool,
    /// Seconds between checks of the users files and the `service_tokens` file for changes.
    pub users_reload_interval: Duration,
    /// What failed and pending authentications may make the gateway spend.
    pub throttle: AuthThrottle,
    /// Schemes forwarded with the client's own credential, unchecked by the gateway.
    pub pass_through: PassThrough,
}

impl SecurityConfig {
    pub const DEFAULT_USERS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
}

/// Bounds on the work anyone can cause without valid credentials: guessing is slowed per client
/// address, and password checks (bcrypt, slow by design) never take more than a fixed pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthThrottle {
    /// Failed authentications per minute one client address may make, sustained (password
    /// checks refused for a full pool count too). IPv6 clients count per /64, since one host
    /// usually holds a whole /64.
    pub failed_per_minute: NonZeroU32,
    /// Failed authentications one address may make in a row before the rate applies.
    pub failed_burst: NonZeroU32,
    /// Addresses whose failures are tracked at once; when full, failures from addresses not yet
    /// tracked share one bucket, so memory stays bounded and guessing stays throttled.
    pub max_addresses: usize,
    /// Password verifications running at once; `None` means one per core.
    pub password_workers: Option<usize>,
    /// Password verifications waiting for a worker; `None` means two per worker. A check that
    /// finds the queue full is answered 429 at once.
    pub password_queue: Option<usize>,
    /// Failed user+password pairs remembered, so a repeat costs no bcrypt.
    pub failed_password_cache: usize,
    /// How long such a failure is remembered.
    pub failed_password_ttl: Duration,
}

impl AuthThrottle {
    /// One guess a second, sustained: a person retyping a password never notices.
    pub const DEFAULT_FAILED_PER_MINUTE: NonZeroU32 = nonzero(60);
    /// Room for a misconfigured client's retries and a person's typos before 429s start.
    pub const DEFAULT_FAILED_BURST: NonZeroU32 = nonzero(20);
    /// About 50 bytes per address in each of two maps: a few MiB at most.
    pub const DEFAULT_MAX_ADDRESSES: usize = 100_000;
    /// Waiting checks per worker when `password_queue` is unset. Two keep a burst of logins
    /// (a dashboard restarting) queued instead of refused, while no queued check waits longer
    /// than about three verifications (~0.2 s at cost 10) before it runs.
    pub const QUEUE_PER_WORKER: usize = 2;
    /// A salted digest, a time and a queue slot each: about 1 MiB when full.
    pub const DEFAULT_FAILED_PASSWORD_CACHE: usize = 10_000;
    pub const DEFAULT_FAILED_PASSWORD_TTL: Duration = Duration::from_secs(60);
    /// How often addresses whose buckets are full again are forgotten. Memory is bounded by
    /// `max_addresses` whatever this is; it only decides how soon the room is reused.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

    /// Password verifications running at once, resolved.
    pub fn workers(&self) -> usize {
        self.password_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }

    /// Password verifications that may wait for a worker, resolved.
    pub fn queue(&self) -> usize {
        self.password_queue
            .unwrap_or_else(|| self.workers().saturating_mul(Self::QUEUE_PER_WORKER))
    }
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            failed_per_minute: Self::DEFAULT_FAILED_PER_MINUTE,
            failed_burst: Self::DEFAULT_FAILED_BURST,
            max_addresses: Self::DEFAULT_MAX_ADDRESSES,
            password_workers: None,
            password_queue: None,
            failed_password_cache: Self::DEFAULT_FAILED_PASSWORD_CACHE,
            failed_password_ttl: Self::DEFAULT_FAILED_PASSWORD_TTL,
        }
    }
}

/// `NonZeroU32` constants without `unwrap` (0 falls back to 1; no constant here is 0).
const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// A service account declared in the configuration, or settings for a built-in one.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub account: AccountId,
    /// Reported by `GET /_security/service`, and the privileges of the API key `auto` creates.
    /// `None` keeps a built-in account's own (and means no privileges for a new account).
    pub role_descriptor: Option<serde_json::Value>,
    /// What the account's requests carry upstream; `None`: `upstream.service_credentials`.
    pub credential: Option<AccountCredential>,
    /// Local access rules; `None`: the gateway lets every method and path through.
    pub access: Option<crate::policy::access_rules::AccessRules>,
}

/// What a service account's requests carry to the cluster in `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub enum AccountCredential {
    /// An API key the gateway creates with its own credential, limited to the account's role
    /// descriptor, so the cluster enforces what the account may do.
    Auto,
    /// The gateway's own `upstream.authorization`, as strong as that is: explicit opt-in only.
    Gateway,
    /// Nothing: for a cluster without security.
    Nothing,
    /// A credential configured for this account (inline, from a file or the environment).
    Configured(HeaderValue),
}

impl fmt::Debug for AccountCredential {
    /// Names the kind; a configured credential never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "Auto",
            Self::Gateway => "Gateway",
            Self::Nothing => "Nothing",
            Self::Configured(_) => "Configured(<redacted>)",
        })
    }
}

/// Credential schemes the gateway does not check itself but hands to the cluster untouched, on
/// requests it forwards (`security.pass_through`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassThrough {
    pub api_key: bool,
    pub basic: bool,
}

/// The main log, on standard error.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `tokengate=debug,hyper=warn`, its levels checked.
    pub level: String,
    /// Lines for a person (`text`) or for a log shipper (`json`).
    pub format: LogFormat,
}

impl LogConfig {
    pub const DEFAULT_LEVEL: &'static str = "info";
    /// The level names the filter understands, as an operator may write them.
    pub const LEVELS: [&'static str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    /// Failed authentications get a main-log line each, but one client address at most one per
    /// this window; the rest are counted into one summary line when the window ends.
    pub const FAILURE_NOTICE_INTERVAL: Duration = Duration::from_secs(10);
    /// Addresses with a line of their own per window; failures from further addresses only
    /// count in the summary, so a flood from many addresses costs a bounded table and log.
    pub const FAILURE_NOTICE_ADDRESSES: usize = 100;
}

/// The audit log: one JSON object per line, in Elasticsearch's audit field names.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where lines go; `None` when `enabled = false`.
    pub output: Option<LogOutput>,
    /// Also record every successful authentication: one line per request, so off by default.
    pub authentication_success: bool,
    /// Events waiting for the writer thread; when full, events are dropped and counted rather
    /// than a request waiting for the disk.
    pub buffer: usize,
}

impl AuditConfig {
    /// Relative to the data directory, beside the state whose changes it records.
    pub const DEFAULT_PATH: &'static str = "audit.json";
    /// A few seconds of a failed-login flood at the throttle's pace from many addresses; about
    /// 400 bytes an event, so at most a couple of MiB queued.
    pub const DEFAULT_BUFFER: usize = 4096;
    /// A full buffer is reported in the main log at most this often.
    pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
    /// How long a stopping gateway waits for queued events to reach the output.
    pub const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
}

/// Where a log's lines (audit, access) are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Appended to this file (created owner-only).
    File(PathBuf),
    Stdout,
    Stderr,
}

/// How main-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event, `field=value` pairs after the message.
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// The process environment as a map: configuration reads variables only from here, so tests
/// hand it their own instead of changing the process's.
pub type Env = std::collections::BTreeMap<String, String>;

/// Command-line values that replace keys of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--upstream`, repeatable: the nodes, replacing `upstream.url` and `upstream.nodes`.
    pub upstream: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

/// Every problem found in a configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path` (or the embedded defaults when `None`), then applies the `TOKENGATE_*`
    /// variables of `env`, then `overrides`. Relative paths in the file are taken from the file's
    /// directory, so a start from elsewhere finds the same data directory.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        match path {
            None => Self::read("<defaults>", "", None, overrides, env),
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    problems: vec![format!("{name}: cannot read: {e}")],
                })?;
                let dir = path.parent().unwrap_or(Path::new(""));
                // Absolute, so that logs and messages show where the paths really are.
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
                Self::read(&name, &text, Some(&dir), overrides, env)
            }
        }
    }

    /// Parses TOML text; `source` names it in messages. Tests build configs through this: no
    /// environment, paths as written.
    pub fn from_toml(
        source: &str,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::read(source, text, None, overrides, &Env::new())
    }

    /// Parses TOML text whose relative paths are relative to `base`, with `env` standing in for
    /// the process environment.
    pub fn read(
        source: &str,
        text: &str,
        base: Option<&Path>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            problems: vec![format!("{source}: {}", e.to_string().trim_end())],
        })?;
        Reader::new(source, table, base, overrides, env).read()
    }
}
