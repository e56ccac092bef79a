//! The gateway as one value: [`Gateway::start`] opens the state, builds TLS, binds every listener
//! and spawns every background task; [`Gateway::run`] serves until told to stop, drains, stops
//! the tasks and closes the store.
//!
//! The binary and the test harness both start gateways only through here, so a new listener or
//! task is wired in one place and every caller gets it.

pub mod admin;
mod admin_access;
mod listeners;
mod memory;
#[cfg(unix)]
pub mod notify;
pub mod pid;
mod reload;
mod runtime;
pub mod signals;
mod tasks;
mod upstream_nodes;
mod watchers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use listeners::Bound;

pub use reload::ConfigSource;
pub use runtime::{init_logging, runtime, set_log_level};
pub use tasks::Tasks;

use crate::app::admin::{AdminService, Readiness};
use crate::config::{AccessLogConfig, Config};
use crate::listen::{self, Listener};
use crate::proxy::Upstream;
use crate::service::GatewayService;
use crate::state::{Live, OpenError, State};
use crate::status::{History, Reloads, Sources};
use crate::tls::server::ServerTls;
use crate::tls::TlsError;

/// Longest wait at start for the accounts' API keys (`auto` credentials).
const API_KEYS_AT_START: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tls listener: {0}")]
    ListenerTls(TlsError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the start was cancelled while the state was being opened")]
    Interrupted,
    #[error("cannot listen on {addr} ({listener}): {source}; {remedy}")]
    Bind {
        addr: SocketAddr,
        /// Which listener: `client`, `https` or `admin`.
        listener: &'static str,
        /// How to move it.
        remedy: &'static str,
        source: std::io::Error,
    },
}

impl StartError {
    /// Whether the configuration names something unusable (a certificate, a key), as opposed
    /// to a valid configuration meeting a busy port or an unreadable data directory.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            StartError::ListenerTls(_) | StartError::Open(OpenError::Tls(_))
        )
    }
}

/// A started gateway: state open, sockets bound, background tasks running.
pub struct Gateway {
    /// The current state: a reload swaps it.
    live: Live,
    listeners: Vec<Listener>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    tls: Option<ServerTls>,
    tasks: Tasks,
    generated_password: Option<String>,
    /// The admin listener, when configured.
    admin: Option<Listener>,
    admin_addr: Option<SocketAddr>,
    /// What the status page shows besides the state: start time, reloads, sampled history.
    started: (Instant, SystemTime),
    reloads: Arc<Reloads>,
    history: Arc<History>,
}

impl Gateway {
    /// Checks what a start would load besides the configuration file itself (certificates,
    /// keys, the upstream's trust settings) without opening or binding anything.
    pub fn check(config: &Config) -> Result<(), StartError> {
        if let Some(tls) = &config.tls {
            let tls = ServerTls::new(tls).map_err(StartError::ListenerTls)?;
            listeners::admin_tls(config, Some(&tls))?;
        }
        Upstream::new(&config.upstream, config.server.http.client_body_timeout)
            .map_err(OpenError::from)?;
        Ok(())
    }

    /// Opens the state under the data directory, binds the plain and HTTPS listeners (port 0
    /// picks a free port; see [`Gateway::http_addr`]) and starts the background tasks.
    /// `bootstrap_password` is the `elastic` user's password when there is no users file yet.
    /// A SIGHUP reloads certificates, users and file tokens, not `config`: nothing says where
    /// it came from ([`Gateway::start_from`] does).
    pub async fn start(
        config: Config,
        bootstrap_password: Option<&str>,
    ) -> Result<Gateway, StartError> {
        Self::start_from(None, config, bootstrap_password).await
    }

    /// As [`Gateway::start`], and every SIGHUP also reads the configuration again from
    /// `source` and applies it (see [`reload`]).
    pub async fn start_from(
        source: Option<ConfigSource>,
        config: Config,
        bootstrap_password: Option<&str>,
    ) -> Result<Gateway, StartError> {
        // First of all: from here on SIGHUP reloads instead of killing the process.
        let (hangups, feed) = signals::hangups();
        let started = (Instant::now(), SystemTime::now());
        let tls = config
            .tls
            .as_ref()
            .map(ServerTls::new)
            .transpose()
            .map_err(StartError::ListenerTls)?;
        let bound = Bound::all(&config, tls.as_ref()).await?;
        let (state, generated_password) = open_state(config, bootstrap_password).await?;
        let live = Live::new(&state);
        let mut tasks = Tasks::default();
        tasks.spawn("sighup", feed);
        let (applied, reloads) = tokio::sync::watch::channel(0u64);
        let reload_log = Arc::new(Reloads::default());
        if let Some(source) = source {
            let task = reload::on_hangups(
                source,
                live.clone(),
                hangups.clone(),
                applied,
                Arc::clone(&reload_log),
            );
            tasks.spawn("configuration reload", task);
        }
        let history = Arc::new(History::default());
        if bound.admin.is_some() {
            let (history, live) = (Arc::clone(&history), live.clone());
            tasks.spawn("status history", async move { history.sample(live).await });
        }
        provision_api_keys(&state).await;
        // Always: a reload may bring `auto` credentials where there were none.
        tasks.spawn("api keys", reload::api_keys(live.clone(), reloads));
        // Always: a reload may switch health checks or sniffing on.
        tasks.spawn("upstream nodes", upstream_nodes::maintain(live.clone()));
        tasks.spawn("memory epochs", memory::epochs());
        watchers::spawn(&mut tasks, &state, tls.as_ref(), &hangups);
        announce(&state, &bound);
        Ok(Gateway {
            live,
            listeners: bound.client,
            http_addr: bound.http_addr,
            https_addr: bound.https_addr,
            tls,
            tasks,
            generated_password,
            admin: bound.admin,
            admin_addr: bound.admin_addr,
            started,
            reloads: reload_log,
            history,
        })
    }

    /// The admin listener's address as bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The state requests start with now.
    pub fn state(&self) -> State {
        self.live.load()
    }

    /// The plain-HTTP listener's address as bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The HTTPS listener's address as bound.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The HTTPS listener's certificate holder, to reload it by hand.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The `elastic` password made up on a first start without one; returned once.
    pub fn take_generated_password(&mut self) -> Option<String> {
        self.generated_password.take()
    }

    /// What the status page reads; the connection counts are the serving listeners' own,
    /// set by [`Gateway::run`].
    fn status_sources(&self) -> Sources {
        let named = [
            ("http", self.http_addr),
            ("https", self.https_addr),
            ("admin", self.admin_addr),
        ];
        Sources {
            live: self.live.clone(),
            started: self.started.0,
            started_at: self.started.1,
            listeners: named
                .into_iter()
                .filter_map(|(name, addr)| Some((name, addr?)))
                .collect(),
            tls: self.tls.clone(),
            reloads: Arc::clone(&self.reloads),
            history: Arc::clone(&self.history),
            connections: Arc::default(),
        }
    }

    /// Serves until `shutdown` resolves, drains open connections within the grace period, stops
    /// the background tasks and closes the token store (its last writes are on disk when this
    /// returns).
    ///
    /// The admin listener keeps answering through the drain (`/readyz` then says 503) and stops
    /// after it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let sources = self.status_sources();
        let Gateway {
            live,
            listeners,
            tasks,
            admin,
            ..
        } = self;
        // What a reload cannot change (listeners, limits per connection) is read from here.
        let state = live.load();
        let stats = Arc::new(listen::Stats::default());
        let readiness = Arc::new(Readiness::new(live.clone()));
        let admin_stop = CancellationToken::new();
        let admin_server = async {
            if let Some(listener) = admin {
                let sources = Sources {
                    connections: stats.clone(),
                    ..sources
                };
                let service = AdminService::new(readiness.clone(), sources);
                let stats = Arc::new(listen::Stats::default());
                let config = &state.config.server;
                listen::run(
                    vec![listener],
                    service,
                    config,
                    stats,
                    admin_stop.cancelled(),
                )
                .await;
            }
        };
        let gateway_server = async {
            let service = GatewayService::new(live.clone());
            let draining = async {
                shutdown.await;
                readiness.drain();
            };
            listen::run(
                listeners,
                service,
                &state.config.server,
                stats.clone(),
                draining,
            )
            .await;
            admin_stop.cancel();
        };
        tokio::join!(gateway_server, admin_server);
        tasks.stop().await;
        close(state).await;
        tracing::info!("token store closed; stopped");
    }
}

/// Opens the state. Replaying a journal, reading etcd and hashing a first password block: off
/// the runtime's workers, which other gateways in the process (or its tests) share.
async fn open_state(
    config: Config,
    bootstrap_password: Option<&str>,
) -> Result<(State, Option<String>), StartError> {
    let bootstrap_password = bootstrap_password.map(str::to_owned);
    let opened =
        tokio::task::spawn_blocking(move || State::open(config, bootstrap_password.as_deref()))
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => StartError::Interrupted,
            })?;
    Ok(opened?)
}

/// Closes the token store (its last writes reach the disk or etcd) and the logs, and removes
/// the pid file. Joining their threads blocks: not on a runtime worker.
async fn close(state: State) {
    let closing = tokio::task::spawn_blocking(move || {
        state.store.close();
        pid::remove(&state.config.server.data_dir);
        state.audit.close();
        if let Some(log) = &state.access_log {
            log.close(AccessLogConfig::CLOSE_DEADLINE);
        }
    });
    if closing.await.is_err() {
        tracing::error!("closing the token store and the logs failed");
    }
}

/// Makes the accounts' `auto` API keys before the first request, which a missing key would
/// answer 503; a cluster that is down delays the start by this much at most, and the key task
/// keeps trying.
async fn provision_api_keys(state: &State) {
    let Some(keys) = state.upstream_auth.keys() else {
        return;
    };
    let upstream = &state.config.upstream;
    let wait = (upstream.connect_timeout + upstream.timeout).min(API_KEYS_AT_START);
    if tokio::time::timeout(wait, keys.provision()).await.is_err() {
        tracing::warn!(?wait, "API keys not ready at start; still trying");
    }
}

/// The pid file, then the lines that say the gateway serves: last, so that a log reader who
/// sees them can rely on everything before. The data directory is locked by now: the pid file
/// names the gateway that holds it, and `tokengate reload` works for whoever has seen the lines.
fn announce(state: &State, bound: &Bound) {
    pid::write(&state.config.server.data_dir);
    for (addr, https) in [(bound.http_addr, false), (bound.https_addr, true)] {
        if let Some(addr) = addr {
            tracing::info!(%addr, tls = https, upstream = %state.upstream.describe(), tokens = state.store.len(), "listening");
        }
    }
    if let Some(addr) = bound.admin_addr {
        let admin = &state.config.admin;
        let auth = admin.requires_auth();
        if !auth && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "admin.require_auth = false off loopback: whoever reaches this port reads the status page");
        }
        tracing::info!(%addr, auth, metrics_auth = auth && admin.metrics_require_auth, client_ca = admin.client_ca.is_some(), "admin listener: / /status /livez /readyz /metrics");
    }
}
