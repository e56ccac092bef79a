//! The gateway as one value: [`Gateway::start`] opens the state, builds TLS, binds every listener
//! and spawns every background task; [`Gateway::run`] serves until told to stop, drains, stops
//! the tasks and closes the store.
//!
//! The binary and the test harness both start gateways only through here, so a new listener or
//! task is wired in one place and every caller gets it.

pub mod admin;
#[cfg(unix)]
pub mod notify;
pub mod pid;
mod reload;
mod runtime;
pub mod signals;
mod tasks;
mod upstream_nodes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use tokio::net::TcpListener;

pub use reload::ConfigSource;
pub use runtime::{init_logging, runtime, set_log_level};
pub use tasks::Tasks;

use crate::app::admin::{AdminService, Readiness};
use crate::config::{AccessLogConfig, AuthThrottle, Config, LogConfig};
use crate::listen::{self, Listener};
use crate::proxy::Upstream;
use crate::service::GatewayService;
use crate::state::{Live, OpenError, State};
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
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
}

impl Gateway {
    /// Checks what a start would load besides the configuration file itself (certificates,
    /// keys, the upstream's trust settings) without opening or binding anything.
    pub fn check(config: &Config) -> Result<(), StartError> {
        if let Some(tls) = &config.tls {
            ServerTls::new(tls).map_err(StartError::ListenerTls)?;
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
        let tls = config
            .tls
            .as_ref()
            .map(ServerTls::new)
            .transpose()
            .map_err(StartError::ListenerTls)?;
        // Replaying a journal, reading etcd and hashing a first password block: off the
        // runtime's workers, which other gateways in the process (or its tests) share.
        let bootstrap_password = bootstrap_password.map(str::to_owned);
        let (state, generated_password) =
            tokio::task::spawn_blocking(move || State::open(config, bootstrap_password.as_deref()))
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => StartError::Interrupted,
                })??;
        let live = Live::new(&state);
        let config = &state.config;

        let mut listeners = Vec::new();
        let http_addr = match config.server.listen {
            Some(addr) => Some(bind(addr, None, &mut listeners).await?),
            None => None,
        };
        let https_addr = match (&config.tls, &tls) {
            (Some(settings), Some(tls)) => {
                Some(bind(settings.listen, Some(tls), &mut listeners).await?)
            }
            _ => None,
        };
        let (admin, admin_addr) = match config.admin.listen {
            Some(addr) => {
                let mut bound = Vec::new();
                let addr = bind(addr, None, &mut bound).await?;
                (bound.pop(), Some(addr))
            }
            None => (None, None),
        };

        let mut tasks = Tasks::default();
        tasks.spawn("sighup", feed);
        let (applied, reloads) = tokio::sync::watch::channel(0u64);
        if let Some(source) = source {
            let task = reload::on_hangups(source, live.clone(), hangups.clone(), applied);
            tasks.spawn("configuration reload", task);
        }
        if let Some(keys) = state.upstream_auth.keys() {
            // Keys made before the first request spare it a 503; a cluster that is down delays
            // the start by this much at most, and the task keeps trying.
            let wait = config.upstream.connect_timeout + config.upstream.timeout;
            let wait = wait.min(API_KEYS_AT_START);
            if tokio::time::timeout(wait, keys.provision()).await.is_err() {
                tracing::warn!(?wait, "API keys not ready at start; still trying");
            }
        }
        // Always: a reload may bring `auto` credentials where there were none.
        tasks.spawn("api keys", reload::api_keys(live.clone(), reloads));
        // Always: a reload may switch health checks or sniffing on.
        tasks.spawn("upstream nodes", upstream_nodes::maintain(live.clone()));
        let (users, audit) = (state.users.clone(), state.audit.clone());
        let dir = config.server.data_dir.clone();
        tasks.spawn(
            "users watcher",
            tasks::every(
                config.security.users_reload_interval,
                hangups.clone(),
                move |forced| {
                    if let Some(outcome) = users.refresh(forced) {
                        let error = outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                        audit.users_reloaded(&dir, forced, error);
                    }
                },
            ),
        );
        let audit = state.audit.clone();
        tasks.spawn(
            "failure notices",
            tasks::every(
                LogConfig::FAILURE_NOTICE_INTERVAL,
                hangups.clone(),
                move |forced| {
                    // A SIGHUP is no window's end.
                    if !forced {
                        audit.sweep();
                    }
                },
            ),
        );
        let file_tokens = state.file_tokens.clone();
        tasks.spawn(
            "service tokens watcher",
            tasks::every(
                config.security.users_reload_interval,
                hangups.clone(),
                move |forced| file_tokens.refresh(forced),
            ),
        );
        let throttle = std::sync::Arc::clone(state.auth.throttle());
        tasks.spawn(
            "failed-authentication sweeper",
            tasks::every(AuthThrottle::SWEEP_INTERVAL, hangups.clone(), move |_| {
                throttle.sweep()
            }),
        );
        if let (Some(settings), Some(tls)) = (&config.tls, &tls) {
            let (tls, audit, cert) = (tls.clone(), state.audit.clone(), settings.cert.clone());
            tasks.spawn(
                "certificate watcher",
                tasks::every(settings.reload_interval, hangups, move |forced| {
                    if let Some(outcome) = tls.refresh(forced) {
                        let error = outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                        audit.certificate_reloaded(&cert, forced, error);
                    }
                }),
            );
        }

        // The data directory is locked by now: the file names the gateway that holds it. Before
        // the lines below, so `tokengate reload` works for whoever has seen them.
        pid::write(&config.server.data_dir);
        // Last, so that a log reader who sees it can rely on everything above.
        for (addr, https) in [(http_addr, false), (https_addr, true)] {
            if let Some(addr) = addr {
                tracing::info!(%addr, tls = https, upstream = %state.upstream.describe(), tokens = state.store.len(), "listening");
            }
        }
        if let Some(addr) = admin_addr {
            tracing::info!(%addr, "admin listener: /livez /readyz /metrics");
        }
        Ok(Gateway {
            live,
            listeners,
            http_addr,
            https_addr,
            tls,
            tasks,
            generated_password,
            admin,
            admin_addr,
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

    /// Serves until `shutdown` resolves, drains open connections within the grace period, stops
    /// the background tasks and closes the token store (its last writes are on disk when this
    /// returns).
    ///
    /// The admin listener keeps answering through the drain (`/readyz` then says 503) and stops
    /// after it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Gateway {
            live,
            listeners,
            tasks,
            admin,
            tls,
            ..
        } = self;
        // What a reload cannot change (listeners, limits per connection) is read from here.
        let state = live.load();
        let stats = Arc::new(listen::Stats::default());
        let readiness = Arc::new(Readiness::new(live.clone()));
        let admin_stop = CancellationToken::new();
        let admin_server = async {
            if let Some(listener) = admin {
                let service =
                    AdminService::new(live.clone(), readiness.clone(), stats.clone(), tls);
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
        // Joining the store's and the logs' threads blocks: not on a runtime worker.
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
        tracing::info!("token store closed; stopped");
    }
}

/// Binds `addr` and adds it to `listeners`; returns the bound address.
async fn bind(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    listeners: &mut Vec<Listener>,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = tcp.local_addr().map_err(bind_error)?;
    listeners.push(Listener {
        tcp,
        tls: tls.map(ServerTls::acceptor),
    });
    Ok(bound)
}
