//! The shared state every connection holds: a cheap-clone handle over one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::accounts::Accounts;
use crate::auth::users::{RealmError, UserRealm};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::proxy::Upstream;
use crate::store::{StoreError, StoreOptions, TokenStore};
use crate::tls::TlsError;

/// Why the gateway could not start after its configuration was accepted.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("token store: {0}")]
    Store(#[from] StoreError),
    #[error("users: {0}")]
    Realm(#[from] RealmError),
    #[error("upstream tls: {0}")]
    Tls(#[from] TlsError),
}

/// Everything a request may need, behind one `Arc`.
#[derive(Clone)]
pub struct State {
    inner: Arc<Shared>,
}

/// The parts of [`State`].
pub struct Shared {
    pub config: Config,
    pub auth: Authenticator,
    pub upstream: Upstream,
}

impl Deref for State {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

impl State {
    /// Opens the stores under the data directory. `bootstrap_password` is the `elastic` user's
    /// password when no users file exists yet; the second value is a generated one to show once.
    pub fn open(
        config: Config,
        bootstrap_password: Option<&str>,
    ) -> Result<(State, Option<String>), StartError> {
        let upstream = Upstream::new(&config.upstream)?;
        let dir = &config.server.data_dir;
        let store = TokenStore::open(dir, StoreOptions::default())?;
        let (realm, generated) = UserRealm::open(dir, bootstrap_password)?;
        let accounts = Accounts::new(&config.service_accounts);
        let auth = Authenticator::new(store, realm, accounts, config.security.admin_roles.clone());
        let state = State {
            inner: Arc::new(Shared {
                config,
                auth,
                upstream,
            }),
        };
        Ok((state, generated))
    }
}
