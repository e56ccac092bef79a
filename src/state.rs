//! The shared state every connection holds: a cheap-clone handle over one `Arc`, owning the
//! gateway's parts. Modules that answer requests borrow the parts they need from here; none of
//! them owns another's.
//!
//! [`Live`] is the cell the listeners read it from: a reload builds a new [`State`] that shares
//! the long-lived parts (store, users, file tokens, throttle, metrics, audit) and swaps it in;
//! a request keeps the state it started with.

use std::ops::Deref;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::accounts::{Accounts, BuiltinError};
use crate::auth::throttle::FailureThrottle;
use crate::auth::{Authenticator, Realms};
use crate::config::Config;
use crate::file_tokens::FileTokens;
use crate::limits::Limits;
use crate::observe::access_log::{self, AccessLog};
use crate::observe::audit::{self, Audit};
use crate::observe::metrics::{Metrics, MetricsError};
use crate::proxy::Upstream;
use crate::store::{StoreError, StoreOptions, SyncObserver, TokenStore};
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
    /// Service tokens issued through the API, durable in the journal or in etcd.
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
    pub upstream_auth: Arc<UpstreamAuth>,
    /// Each account's rate and concurrency limits, and its lane in the nodes' queues.
    pub limits: Arc<Limits>,
    /// Authentication: the realms above, the failure throttle, where outcomes are recorded.
    pub auth: Authenticator,
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
        let store = open_store(&config, &metrics)?;
        let (users, generated) =
            UserRealm::open(dir, bootstrap_password, &config.security.throttle)?;
        let accounts = Accounts::new(&config.service_accounts)?;
        let limits = Arc::new(Limits::new(&config.limits, &accounts, store.replicas()));
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
        let auth = Authenticator::new(Realms {
            store: store.clone(),
            file_tokens: file_tokens.clone(),
            users: users.clone(),
            accounts: Arc::new(accounts.clone()),
            throttle,
            audit: audit.clone(),
            metrics: Arc::clone(&metrics),
        });
        let access_log = AccessLog::open(&config.access_log)?;
        let state = State {
            inner: Arc::new(Parts {
                config,
                store,
                file_tokens,
                users,
                accounts,
                upstream,
                upstream_auth: Arc::new(upstream_auth),
                limits,
                auth,
                metrics,
                audit,
                access_log,
            }),
        };
        Ok((state, generated))
    }

    /// A state for `config` beside this one: the parts that hold files, locks, threads or
    /// counters are shared, never reopened; the configuration is replaced, and so are the
    /// upstream client and the accounts' credentials when their settings changed. The accounts
    /// registry stays (the file tokens parse against it): new or removed accounts and changed
    /// role descriptors wait for a restart, which the caller reports.
    ///
    /// `auto` API keys: the credentials are rebuilt only when their inputs changed, and then a
    /// new key maker replaces the old one; the gateway's key task follows [`Live`] and runs only
    /// the current one, so two never compete for the keys file.
    pub fn reload(&self, config: Config) -> Result<State, OpenError> {
        let old = &self.config;
        let upstream = if upstream_changed(old, &config) {
            Upstream::new(&config.upstream, config.server.http.client_body_timeout)?
        } else {
            self.upstream.clone()
        };
        let upstream_auth = if credentials_changed(old, &config) {
            Arc::new(UpstreamAuth::open(&config, &self.accounts)?)
        } else {
            Arc::clone(&self.upstream_auth)
        };
        let limits = Arc::new(self.limits.reconfigured(&config.limits, &self.accounts));
        Ok(State {
            inner: Arc::new(Parts {
                config,
                store: self.store.clone(),
                file_tokens: self.file_tokens.clone(),
                users: self.users.clone(),
                accounts: self.accounts.clone(),
                upstream,
                upstream_auth,
                limits,
                auth: self.auth.clone(),
                metrics: Arc::clone(&self.metrics),
                audit: self.audit.clone(),
                access_log: self.access_log.clone(),
            }),
        })
    }
}

/// The token store, reporting its journal syncs (or its staleness, on etcd) to `metrics`.
fn open_store(config: &Config, metrics: &Arc<Metrics>) -> Result<TokenStore, OpenError> {
    let observer = Arc::clone(metrics);
    let options = StoreOptions {
        on_sync: Some(SyncObserver(Arc::new(move |took, records| {
            observer.journal_sync(took, records);
        }))),
        ..StoreOptions::default()
    };
    let store = TokenStore::open_configured(&config.store, &config.server.data_dir, options)?;
    if store.staleness().is_some() {
        metrics.with_store_staleness()?;
    }
    Ok(store)
}

/// Whether the pooled client must be rebuilt: its settings are fixed when it is made.
fn upstream_changed(old: &Config, new: &Config) -> bool {
    old.upstream != new.upstream
        || old.server.http.client_body_timeout != new.server.http.client_body_timeout
}

/// Whether the accounts' upstream credentials must be resolved again. `Debug` redacts the
/// credentials, so they are compared apart.
fn credentials_changed(old: &Config, new: &Config) -> bool {
    let secrets = |c: &Config| {
        let mut values = vec![c.upstream.authorization.clone()];
        for account in &c.service_accounts {
            values.push(match &account.credential {
                Some(crate::config::AccountCredential::Configured(value)) => Some(value.clone()),
                _ => None,
            });
        }
        values
    };
    upstream_changed(old, new)
        || secrets(old) != secrets(new)
        || format!("{:?}", old.service_accounts) != format!("{:?}", new.service_accounts)
        || old.server.data_dir != new.server.data_dir
}

/// The current [`State`], swappable while requests run: a request loads it once (a lock-free
/// atomic load and a reference count) and keeps what it loaded to its end.
#[derive(Clone)]
pub struct Live {
    current: Arc<ArcSwap<Parts>>,
}

impl Live {
    pub fn new(state: &State) -> Live {
        Live {
            current: Arc::new(ArcSwap::new(Arc::clone(&state.inner))),
        }
    }

    /// The state requests start with from now on.
    pub fn load(&self) -> State {
        State {
            inner: self.current.load_full(),
        }
    }

    /// Makes `state` the one new requests get; those in flight finish with theirs.
    pub fn store(&self, state: &State) {
        self.current.store(Arc::clone(&state.inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config(dir: &std::path::Path, upstream: &str) -> Config {
        let overrides = Overrides {
            upstream: vec![upstream.into()],
            data_dir: Some(dir.to_owned()),
            ..Overrides::default()
        };
        Config::from_toml("test", "", &overrides).unwrap()
    }

    #[tokio::test]
    async fn a_reload_shares_the_long_lived_parts_and_replaces_config_and_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = State::open(
            config(dir.path(), "http://127.0.0.1:9200"),
            Some("pw-1234567"),
        )
        .unwrap();
        let live = Live::new(&old);
        let new = old
            .reload(config(dir.path(), "http://127.0.0.1:9300"))
            .unwrap();
        live.store(&new);
        let current = live.load();
        assert!(Arc::ptr_eq(&current.inner, &new.inner));
        assert!(Arc::ptr_eq(old.auth.throttle(), new.auth.throttle()));
        assert!(Arc::ptr_eq(&old.metrics, &new.metrics));
        assert!(old.store.same_as(&new.store));
        assert!(old.users.same_as(&new.users));
        assert_eq!(old.upstream.describe(), "http://127.0.0.1:9200");
        assert_eq!(new.upstream.describe(), "http://127.0.0.1:9300");
        assert!(!Arc::ptr_eq(&old.upstream_auth, &new.upstream_auth));
        // Unchanged inputs keep the credentials (and any key maker) as they are.
        let again = new
            .reload(config(dir.path(), "http://127.0.0.1:9300"))
            .unwrap();
        assert!(Arc::ptr_eq(&new.upstream_auth, &again.upstream_auth));
        assert!(again.store.same_as(&old.store));
        old.store.close();
    }
}
