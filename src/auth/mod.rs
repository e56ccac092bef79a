//! Who is calling, and what they may do: credentials in, a [`Principal`] out.
//!
//! Every authentication failure renders the same 401, except that a well-formed service token
//! that fails gets Elasticsearch's reason naming what the token itself says (its account and
//! token name); which check failed is logged at debug only (the audit log and a rate-limited
//! warning record who failed from where, never why). A successful bearer check names its token
//! once, here, so nothing downstream reads the `Authorization` header again.
//!
//! Failures are what the per-address [`throttle`](crate::auth::throttle) counts, and so are password
//! checks refused because the pool was full. An address over its limit still has its valid
//! credentials served (addresses are shared: NAT, load balancers, agents on one host), but gets
//! 429 for whatever fails or would need the pool. A bearer value the token journal does not know
//! may still be a [`file_tokens`](crate::file_tokens) one, whose slow check shares that pool.

pub mod credentials;
pub mod throttle;

use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use crate::accounts::Accounts;
use crate::file_tokens::FileTokens;
use crate::identity::token;
use crate::identity::{AccountId, TokenIdentity, TokenName, TokenSource};
use crate::message::error::Caller;
use crate::message::{BearerMemo, Claimed, Recalled};
use crate::observe::audit::{self, Audit};
use crate::observe::metrics::{AuthFailure, Metrics};
use crate::store::{version, TokenStore};
use crate::users::{Busy, Denied, User, UserRealm};
use credentials::Credentials;
use throttle::FailureThrottle;

/// The role that grants everything, as in Elasticsearch.
pub const SUPERUSER: &str = "superuser";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A valid service token, and whose it is.
    ServiceToken(TokenIdentity),
    /// A file-realm user.
    User(User),
}

impl Principal {
    /// This caller as Elasticsearch names it in a 403.
    pub fn caller(&self) -> Caller {
        match self {
            Principal::User(user) => Caller::User {
                name: user.name.clone(),
                roles: user.roles.clone(),
            },
            Principal::ServiceToken(token) => Caller::ServiceAccount {
                principal: token.account.to_string(),
            },
        }
    }

    /// The caller as the access log names it: `ns/svc/token` or the user name.
    pub fn log_name(&self) -> String {
        match self {
            Principal::User(user) => user.name.clone(),
            // `join`, not `format!`: one exact allocation and two copies, per logged request.
            Principal::ServiceToken(token) => {
                [token.account.as_str(), token.name.as_str()].join("/")
            }
        }
    }

    /// The caller as audit events name it.
    pub fn subject(&self) -> audit::Subject<'_> {
        match self {
            Principal::User(user) => audit::Subject::User(user),
            Principal::ServiceToken(token) => audit::Subject::Token(token),
        }
    }
}

/// Why a request was not authenticated. The service renders each as Elasticsearch does (see
/// `service::rescue`); nothing here knows the error document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No credentials at all; `uri` is the target as the client wrote it.
    Missing { uri: String },
    /// Credentials that did not authenticate.
    Bad,
    /// A well-formed service token that did not authenticate, named as it names itself.
    ServiceToken { account: Arc<str>, name: Arc<str> },
    /// The address is over its failure limit; retry after this many seconds.
    Throttled { retry_after: u64 },
    /// The password pool was full; retry after this many seconds.
    PoolFull { retry_after: u64 },
}

/// What checking one credential found.
enum Checked {
    Valid(Principal),
    /// It did not authenticate: a failure, audited and counted against the address.
    Failed(Refused),
}

/// The gateway's authentication: the realms a credential is checked against (the token store,
/// the `service_tokens` file, the file realm, the accounts that name tokens), the failure
/// throttle, and where outcomes are recorded. Owned by the state; cloning shares every part.
#[derive(Clone)]
pub struct Authenticator {
    realms: Realms,
}

/// The parts an [`Authenticator`] is made of.
#[derive(Clone)]
pub struct Realms {
    pub store: TokenStore,
    pub file_tokens: FileTokens,
    pub users: UserRealm,
    pub accounts: Arc<Accounts>,
    pub throttle: Arc<FailureThrottle>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
}

impl Authenticator {
    pub fn new(realms: Realms) -> Self {
        Authenticator { realms }
    }

    /// The failure throttle, for its sweeper and the metrics.
    pub fn throttle(&self) -> &Arc<FailureThrottle> {
        &self.realms.throttle
    }

    /// The principal behind a request's `Authorization` header. Failures (and, when asked
    /// for, successes) go to the audit log with the request they came with.
    ///
    /// Valid credentials are served whoever else fails from their address: a bearer value
    /// costs a hash and a lookup, so it is always checked, and a Basic pair already verified is
    /// recognised without the pool. Only what would need the pool (an unverified pair, a file
    /// token not checked yet) or what fails is refused with 429 while the address is over its
    /// failure limit: cheaply, counted in the metrics and in the failure notices' summary
    /// rather than one event each.
    ///
    /// `memo` is the connection's last bearer verdict: a value it holds skips the fingerprint.
    pub async fn authenticate(
        &self,
        request: &audit::Request<'_>,
        memo: Option<&BearerMemo>,
    ) -> Result<Principal, Refused> {
        let credentials = Credentials::from_headers(request.headers);
        let peer = request.peer.ip();
        let checked = match credentials {
            Credentials::None => {
                self.realms.metrics.auth_failure(AuthFailure::Missing);
                return Err(Refused::Missing {
                    uri: request.target().to_owned(),
                });
            }
            Credentials::Bearer(value) => self.bearer(value, peer, memo).await?,
            Credentials::Basic(value) => self.basic(value, peer).await?,
            Credentials::ApiKey | Credentials::Unusable => {
                if let Some(wait) = self.realms.throttle.refusal(peer) {
                    return Err(self.throttled(wait));
                }
                tracing::debug!("unusable authorization header");
                self.realms.metrics.auth_failure(AuthFailure::Unusable);
                Checked::Failed(Refused::Bad)
            }
        };
        let failure = match checked {
            Checked::Valid(principal) => {
                self.realms
                    .audit
                    .authentication_success(request, principal.subject());
                return Ok(principal);
            }
            Checked::Failed(failure) => failure,
        };
        let presented = match &failure {
            Refused::ServiceToken { account, name } => audit::Presented::Token { account, name },
            _ => credentials.presented(),
        };
        self.realms.audit.authentication_failed(request, presented);
        Err(match self.realms.throttle.failed(peer) {
            Some(wait) => retry_after(wait),
            None => failure,
        })
    }

    /// A bearer value: a stored token (always checked: a hash and a lookup, or the
    /// connection's memo of it), else, unless the address is throttled, a file token (whose
    /// check is slow). `Err` for a refusal that is not itself a failure to count.
    async fn bearer(
        &self,
        value: &[u8],
        peer: IpAddr,
        memo: Option<&BearerMemo>,
    ) -> Result<Checked, Refused> {
        // Before the check: a change made while it runs leaves the verdict stale.
        let version = version::current();
        let known = match memo.and_then(|m| m.recall(value, version)) {
            Some(Recalled::Stored(identity)) => {
                return Ok(Checked::Valid(Principal::ServiceToken(identity)))
            }
            Some(Recalled::Failed(claimed)) => Some(claimed),
            None => {
                let stored = self.realms.store.verify_value(value);
                if let Some(identity) = stored
                    .then(|| identify_stored(&self.realms.accounts, value))
                    .flatten()
                {
                    if let Some(memo) = memo {
                        memo.remember(value, version, Recalled::Stored(identity.clone()));
                    }
                    return Ok(Checked::Valid(Principal::ServiceToken(identity)));
                }
                None
            }
        };
        if let Some(wait) = self.realms.throttle.refusal(peer) {
            return match self.realms.file_tokens.verify_remembered(value) {
                Some(identity) => Ok(Checked::Valid(Principal::ServiceToken(identity))),
                None => Err(self.throttled(wait)),
            };
        }
        // A value the connection already failed with at this version fails again: neither
        // set has changed since.
        let claimed = match known {
            Some(claimed) => claimed,
            None => {
                // Only for a value the journal does not know: a file token's hash is slow (its
                // check boxes itself, and only when it runs).
                match self.realms.file_tokens.verify(value).await {
                    Ok(Some(identity)) => {
                        return Ok(Checked::Valid(Principal::ServiceToken(identity)))
                    }
                    Ok(None) => {}
                    Err(Busy) => return Err(self.pool_full(peer, "file token")),
                }
                let claimed = claimed_service_token(value);
                if let Some(memo) = memo {
                    memo.remember(value, version, Recalled::Failed(claimed.clone()));
                }
                claimed
            }
        };
        tracing::debug!("bearer token rejected");
        self.realms.metrics.auth_failure(AuthFailure::Bearer);
        Ok(Checked::Failed(
            claimed.map_or(Refused::Bad, |Claimed { account, name }| {
                Refused::ServiceToken { account, name }
            }),
        ))
    }

    /// Basic credentials: a pair verified before passes at once; any other is checked with
    /// bcrypt in the pool, unless the address is throttled.
    async fn basic(&self, value: &[u8], peer: IpAddr) -> Result<Checked, Refused> {
        if let Some(wait) = self.realms.throttle.refusal(peer) {
            return match self.realms.users.authenticate_verified(value) {
                Some(user) => Ok(Checked::Valid(Principal::User(user))),
                None => Err(self.throttled(wait)),
            };
        }
        // Boxed, as the file token check.
        match Box::pin(self.realms.users.authenticate(value)).await {
            Ok(user) => Ok(Checked::Valid(Principal::User(user))),
            Err(Denied::Busy) => Err(self.pool_full(peer, "basic credentials")),
            Err(Denied::BadCredentials) => {
                tracing::debug!("basic credentials rejected");
                self.realms.metrics.auth_failure(AuthFailure::Basic);
                Ok(Checked::Failed(Refused::Bad))
            }
        }
    }

    /// The answer to credentials that failed, or would need the pool, from an address over
    /// its failure limit.
    fn throttled(&self, wait: Duration) -> Refused {
        self.realms.metrics.auth_failure(AuthFailure::Throttled);
        self.realms.audit.throttled();
        retry_after(wait)
    }

    /// The answer to credentials (Basic, or a file token) left unchecked because the password
    /// pool was full. Not a success, and keeping the pool full is what a guesser does: it
    /// counts like a failure, or one address could hold the pool for everyone.
    fn pool_full(&self, peer: IpAddr, what: &'static str) -> Refused {
        tracing::debug!(what, "password pool full; credentials not checked");
        self.realms.metrics.auth_failure(AuthFailure::PoolFull);
        match self.realms.throttle.failed(peer) {
            Some(wait) => retry_after(wait),
            None => Refused::PoolFull { retry_after: 1 },
        }
    }
}

/// Whom a bearer value that did not authenticate claims to be, as Elasticsearch's answer names
/// it: the account and token name the value itself carries (nothing the client did not already
/// send), whatever failed (namespace, account, secret length or secret). A value that is not a
/// service token as Elasticsearch parses one (valid token name included) gets the generic answer.
fn claimed_service_token(value: &[u8]) -> Option<Claimed> {
    let mut buf = [0u8; token::MAX_DECODED_LEN];
    let decoded = token::decode(value, &mut buf)?;
    TokenName::new(decoded.name).ok()?;
    Some(Claimed {
        account: Arc::from(decoded.account),
        name: Arc::from(decoded.name),
    })
}

fn retry_after(wait: Duration) -> Refused {
    Refused::Throttled {
        retry_after: throttle::retry_after_secs(wait),
    }
}

/// The per-request check: the store fingerprints the value as sent and looks it up, so a
/// malformed value costs the same as a wrong one and simply does not match. Only a value that
/// matched is decoded, to name its token.
pub fn verify_bearer(
    store: &TokenStore,
    accounts: &Accounts,
    value: &[u8],
) -> Option<TokenIdentity> {
    if !store.verify_value(value) {
        return None;
    }
    identify_stored(accounts, value)
}

/// The identity of a value the store holds: its account from the registry (no allocation)
/// unless the configuration no longer declares it, and its token's name.
fn identify_stored(accounts: &Accounts, value: &[u8]) -> Option<TokenIdentity> {
    let mut buf = [0u8; token::MAX_DECODED_LEN];
    let Some(decoded) = token::decode(value, &mut buf) else {
        tracing::warn!("a stored token value does not decode; refused");
        return None;
    };
    let account = match accounts.get_principal(decoded.account) {
        Some(id) => id.clone(),
        None => AccountId::new(decoded.namespace, decoded.service),
    };
    let name = TokenName::new(decoded.name).ok()?;
    Some(TokenIdentity {
        account,
        name,
        source: TokenSource::Index,
    })
}

/// The privilege a configured admin role grants, as Elasticsearch names it.
const MANAGE_SERVICE_ACCOUNT: &str = "manage_service_account";

/// Whether `principal` holds one of `privileges`: `superuser` holds `all` and so every one, an
/// admin role holds `manage_service_account`. Service tokens hold none the gateway grants.
pub fn holds_any(principal: &Principal, admin_roles: &[String], privileges: &[&str]) -> bool {
    match principal {
        Principal::ServiceToken(_) => false,
        Principal::User(user) => user.roles.iter().any(|role| {
            role == SUPERUSER
                || (privileges.contains(&MANAGE_SERVICE_ACCOUNT) && admin_roles.contains(role))
        }),
    }
}

/// Whether `principal` holds `manage_service_account`: `superuser` or one of `admin_roles`.
/// Service tokens never do.
pub fn can_manage_tokens(principal: &Principal, admin_roles: &[String]) -> bool {
    match principal {
        Principal::ServiceToken(_) => false,
        Principal::User(user) => user
            .roles
            .iter()
            .any(|r| r == SUPERUSER || admin_roles.iter().any(|a| a == r)),
    }
}
