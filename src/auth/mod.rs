//! Who is calling, and what they may do: credentials in, a [`Principal`] out.
//!
//! Every authentication failure renders the same 401, except that a well-formed service token
//! that fails gets Elasticsearch's reason naming what the token itself says (its account and
//! token name); which check failed is logged at debug only (the audit log and a rate-limited
//! warning record who failed from where, never why). A successful bearer check names its token
//! once, here, so nothing downstream reads the `Authorization` header again.
//!
//! Failures are what the per-address [`throttle`](crate::throttle) counts, and so are password
//! checks refused because the pool was full. An address over its limit still has its valid
//! credentials served (addresses are shared: NAT, load balancers, agents on one host), but gets
//! 429 for whatever fails or would need the pool. A bearer value the token journal does not know
//! may still be a [`file_tokens`](crate::file_tokens) one, whose slow check shares that pool.

pub mod credentials;

use std::net::IpAddr;
use std::time::Duration;

use crate::accounts::Accounts;
use crate::audit;
use crate::error::{ApiError, Caller};
use crate::identity::{AccountId, TokenIdentity, TokenName, TokenSource};
use crate::metrics::AuthFailure;
use crate::state::State;
use crate::store::TokenStore;
use crate::throttle;
use crate::token;
use crate::users::{Busy, Denied, User};
use credentials::Credentials;

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

/// What a client is told while the password pool is full.
const PASSWORD_POOL_FULL: &str = "too many password verifications in progress, retry later";

/// The principal behind a request's `Authorization` header. Failures (and, when asked for,
/// successes) go to the audit log with the request they came with.
///
/// Valid credentials are served whoever else fails from their address: a bearer value costs a
/// hash and a lookup, so it is always checked, and a Basic pair already verified is recognised
/// without the pool. Only what would need the pool (an unverified pair, a file token not checked
/// yet) or what fails is refused with 429 while the address is over its failure limit: cheaply,
/// counted in the metrics and in the failure notices' summary rather than one event each.
pub async fn authenticate(
    state: &State,
    request: &audit::Request<'_>,
) -> Result<Principal, ApiError> {
    let credentials = Credentials::from_headers(request.headers);
    let peer = request.peer.ip();
    let refusal = || state.throttle.refusal(peer);
    let mut failure = ApiError::BadCredentials;
    match credentials {
        Credentials::None => {
            state.metrics.auth_failure(AuthFailure::Missing);
            return Err(ApiError::MissingCredentials {
                uri: request.target().to_owned(),
            });
        }
        Credentials::Bearer(value) => {
            if let Some(identity) = verify_bearer(&state.store, &state.accounts, value) {
                return Ok(succeeded(state, request, Principal::ServiceToken(identity)));
            }
            if let Some(wait) = refusal() {
                return match state.file_tokens.verify_remembered(value) {
                    Some(identity) => {
                        Ok(succeeded(state, request, Principal::ServiceToken(identity)))
                    }
                    None => Err(throttled(state, wait)),
                };
            }
            // Only for a value the journal does not know: a file token's hash is slow.
            match state.file_tokens.verify(value).await {
                Ok(Some(identity)) => {
                    return Ok(succeeded(state, request, Principal::ServiceToken(identity)))
                }
                Ok(None) => {}
                Err(Busy) => return Err(pool_full(state, peer, "file token")),
            }
            tracing::debug!("bearer token rejected");
            state.metrics.auth_failure(AuthFailure::Bearer);
            if let Some(rejected) = rejected_service_token(value) {
                failure = rejected;
            }
        }
        Credentials::Basic(value) => {
            if let Some(wait) = refusal() {
                return match state.users.authenticate_verified(value) {
                    Some(user) => Ok(succeeded(state, request, Principal::User(user))),
                    None => Err(throttled(state, wait)),
                };
            }
            match state.users.authenticate(value).await {
                Ok(user) => return Ok(succeeded(state, request, Principal::User(user))),
                Err(Denied::Busy) => return Err(pool_full(state, peer, "basic credentials")),
                Err(Denied::BadCredentials) => {
                    tracing::debug!("basic credentials rejected");
                    state.metrics.auth_failure(AuthFailure::Basic);
                }
            }
        }
        Credentials::ApiKey | Credentials::Unusable => {
            if let Some(wait) = refusal() {
                return Err(throttled(state, wait));
            }
            tracing::debug!("unusable authorization header");
            state.metrics.auth_failure(AuthFailure::Unusable);
        }
    }
    let presented = match &failure {
        ApiError::ServiceTokenRejected { account, name } => {
            audit::Presented::Token { account, name }
        }
        _ => credentials.presented(),
    };
    state.audit.authentication_failed(request, presented);
    Err(match state.throttle.failed(peer) {
        Some(wait) => retry_after(wait),
        None => failure,
    })
}

/// A caller authenticated: audited when successes are, and handed back.
fn succeeded(state: &State, request: &audit::Request<'_>, principal: Principal) -> Principal {
    state
        .audit
        .authentication_success(request, principal.subject());
    principal
}

/// The answer to credentials that failed, or would need the pool, from an address over its
/// failure limit.
fn throttled(state: &State, wait: Duration) -> ApiError {
    state.metrics.auth_failure(AuthFailure::Throttled);
    state.audit.throttled();
    retry_after(wait)
}

/// Elasticsearch's answer to a bearer value that parses as a service token but did not
/// authenticate: it names the account and token name the value itself carries, and says nothing
/// of which check failed (namespace, account, secret length or secret). A value that is not a
/// service token as Elasticsearch parses one (valid token name included) gets the generic answer.
fn rejected_service_token(value: &[u8]) -> Option<ApiError> {
    let mut buf = [0u8; token::MAX_DECODED_LEN];
    let decoded = token::decode(value, &mut buf)?;
    TokenName::new(decoded.name).ok()?;
    Some(ApiError::ServiceTokenRejected {
        account: decoded.account.to_owned(),
        name: decoded.name.to_owned(),
    })
}

/// The answer to credentials (Basic, or a file token) left unchecked because the password pool
/// was full. Not a success, and keeping the pool full is what a guesser does: it counts like a
/// failure, or one address could hold the pool for everyone.
fn pool_full(state: &State, peer: IpAddr, what: &'static str) -> ApiError {
    tracing::debug!(what, "password pool full; credentials not checked");
    state.metrics.auth_failure(AuthFailure::PoolFull);
    match state.throttle.failed(peer) {
        Some(wait) => retry_after(wait),
        None => ApiError::TooManyRequests {
            reason: PASSWORD_POOL_FULL.to_owned(),
            retry_after: 1,
        },
    }
}

fn retry_after(wait: Duration) -> ApiError {
    ApiError::AuthThrottled {
        retry_after: throttle::retry_after_secs(wait),
    }
}

/// The per-request check: the store fingerprints the value as sent and looks it up, so a
/// malformed value costs the same as a wrong one and simply does not match. Only a value that
/// matched is decoded, to name its token; its account comes from the registry (no allocation)
/// unless the configuration no longer declares it.
pub fn verify_bearer(
    store: &TokenStore,
    accounts: &Accounts,
    value: &[u8],
) -> Option<TokenIdentity> {
    if !store.verify_value(value) {
        return None;
    }
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
