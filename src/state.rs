//! The shared state every connection holds: a cheap-clone handle over one `Arc`, owning the
//! gateway's parts. Modules that answer requests borrow the parts they need from here; none of
//! them owns another's.

use std::ops::Deref;
use std::sync::Arc;

use crate::access_log::{self, AccessLog};
use crate::accounts::{Accounts, BuiltinError};
use crate::audit::{self, Audit};
use crate::config::Config;
use crate::file_tokens::FileTokens;
use crate::metrics::{Metrics, MetricsError};
use crate::proxy::Upstream;
use crate::store::{StoreError, StoreOptions, SyncObserver, TokenStore};
use crate::throttle::FailureThrottle;
use crate::tls::TlsError;
use crate::upstream_auth::api_keys::OpenKeysError;
use crate::upstream_auth::UpstreamAuth;
use crate::users::{RealmError, UserRealm};

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("token store: {0}")]
    Store(#[from] StoreError),
    #[error("users: {0}")]
    Realm(#[from] RealmError),
    #[error("upstream tls: {0}")]
    Tls(#[from] TlsError),
    #[error("upstream API keys: {0}")]
    Keys(#[from] OpenKeysError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Accounts(#[from] BuiltinError),
    #[error(transparent)]
    Audit(#[from] audit::OpenError),
    #[error(transparent)]
    AccessLog(#[from] access_log::OpenError),
}

/// Everything a request may need, behind one `Arc`.
#[derive(Clone)]
pub struct State {
    inner: Arc<Parts>,
}

/// The parts of [`State`].
pub struct Parts {
    pub config: Config,
    /// Service tokens issued through the API, durable in the journal.
    pub store: TokenStore,
    /// Service tokens of the `service_tokens` file, checked after the store.
    pub file_tokens: FileTokens,
    /// The file realm: who may manage tokens.
    pub users: UserRealm,
    /// The service accounts tokens may be issued for.
    pub accounts: Accounts,
    /// The cluster and the pooled client that reaches it.
    pub upstream: Upstream,
    /// What each account's forwarded requests carry upstream, and its local rules.
    pub upstream_auth: UpstreamAuth,
    /// Failed authentications per client address; shared with the task that sweeps it.
    pub throttle: Arc<FailureThrottle>,
    /// What `/metrics` on the admin listener shows; the journal writer reports to it too.
    pub metrics: Arc<Metrics>,
    /// Where security events go.
    pub audit: Audit,
    /// One line per request, when configured.
    pub access_log: Option<Arc<AccessLog>>,
}

impl Deref for State {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.inner
    }
}

impl State {
    /// Opens the stores under the data directory. `bootstrap_password` is the `elastic` user's
    /// password when no users file exists yet; the second value is a generated one to show once.
    pub fn open(
        config: Config,
        bootstrap_password: Option<&str>,
    ) -> Result<(State, Option<String>), OpenError> {
        let upstream = Upstream::new(&config.upstream, config.server.http.client_body_timeout)?;
        let dir = &config.server.data_dir;
        let metrics = Arc::new(Metrics::new()?);
        if config.tls.is_some() {
            metrics.with_certificate()?;
        }
        let observer = Arc::clone(&metrics);
        let options = StoreOptions {
            on_sync: Some(SyncObserver(Arc::new(move |took, records| {
                observer.journal_sync(took, records);
            }))),
            ..StoreOptions::default()
        };
        let store = TokenStore::open(dir, options)?;
        let (users, generated) =
            UserRealm::open(dir, bootstrap_password, &config.security.throttle)?;
        let accounts = Accounts::new(&config.service_accounts)?;
        let upstream_auth = UpstreamAuth::open(&config, &accounts)?;
        let file_tokens = FileTokens::open(
            dir,
            &accounts,
            users.password_pool(),
            &config.security.throttle,
        );
        let throttle = Arc::new(FailureThrottle::new(&config.security.throttle));
        // After the stores: the data directory, where the audit file usually is, exists now.
        let audit = Audit::open(&config.audit)?;
        let access_log = AccessLog::open(&config.access_log)?;
        let state = State {
            inner: Arc::new(Parts {
                config,
                store,
                file_tokens,
                users,
                accounts,
                upstream,
                upstream_auth,
                throttle,
                metrics,
                audit,
                access_log,
            }),
        };
        Ok((state, generated))
    }
}
