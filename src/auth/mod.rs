//! Who is calling, and what they may do: credentials in, a [`Principal`] out.
//!
//! Every authentication failure renders the same 401; the reason is logged at debug only. A
//! successful bearer check names its token once, here, so nothing downstream reads the
//! `Authorization` header again.
//!
//! Failures are what the per-address [`throttle`](crate::throttle) counts, and so are password
//! checks refused because the pool was full: an address over its limit gets 429 for anything it
//! presents, before any credential is checked. A bearer value the token journal does not know
//! may still be a [`file_tokens`](crate::file_tokens) one, whose slow check shares that pool.

pub mod credentials;

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

use crate::accounts::Accounts;
use crate::error::ApiError;
use crate::identity::{AccountId, TokenIdentity, TokenName, TokenSource};
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
    /// The user name and roles Elasticsearch prints for this caller in a 403.
    pub fn describe(&self) -> (String, Vec<String>) {
        match self {
            Principal::User(user) => (user.name.clone(), user.roles.clone()),
            Principal::ServiceToken(token) => (token.account.to_string(), Vec::new()),
        }
    }
}

/// What a client is told while the password pool is full.
const PASSWORD_POOL_FULL: &str = "too many password verifications in progress, retry later";

/// The principal behind a request's `Authorization` header, sent from `peer`. `uri` is only used
/// in the missing-credentials message.
pub async fn authenticate(
    state: &State,
    headers: &HeaderMap,
    uri: &str,
    peer: IpAddr,
) -> Result<Principal, ApiError> {
    let credentials = Credentials::from_headers(headers);
    if credentials == Credentials::None {
        return Err(ApiError::MissingCredentials {
            uri: uri.to_owned(),
        });
    }
    if let Some(wait) = state.throttle.refusal(peer) {
        return Err(throttled(wait));
    }
    match credentials {
        Credentials::Bearer(value) => {
            if let Some(identity) = verify_bearer(&state.store, &state.accounts, value) {
                return Ok(Principal::ServiceToken(identity));
            }
            // Only for a value the journal does not know: a file token's hash is slow.
            match state.file_tokens.verify(value).await {
                Ok(Some(identity)) => return Ok(Principal::ServiceToken(identity)),
                Ok(None) => {}
                Err(Busy) => return Err(pool_full(state, peer)),
            }
            tracing::debug!("bearer token rejected");
        }
        Credentials::Basic(value) => match state.users.authenticate(value).await {
            Ok(user) => return Ok(Principal::User(user)),
            Err(Denied::Busy) => {
                tracing::debug!("password pool full; basic credentials not checked");
                // Not a success, and keeping the pool full is what a guesser does: it counts
                // like a failure, or one address could hold the pool for everyone.
                if let Some(wait) = state.throttle.failed(peer) {
                    return Err(throttled(wait));
                }
                return Err(ApiError::TooManyRequests {
                    reason: PASSWORD_POOL_FULL.to_owned(),
                    retry_after: 1,
                });
            }
            Err(Denied::BadCredentials) => tracing::debug!("basic credentials rejected"),
        },
        Credentials::Unusable | Credentials::None => {
            tracing::debug!("unusable authorization header");
        }
    }
    Err(state
        .throttle
        .failed(peer)
        .map_or(ApiError::BadCredentials, throttled))
}

/// The answer to a file token left unchecked because the password pool was full, as for Basic
/// credentials: it counts like a failure, or one address could hold the pool for everyone.
fn pool_full(state: &State, peer: IpAddr) -> ApiError {
    tracing::debug!("password pool full; file token not checked");
    match state.throttle.failed(peer) {
        Some(wait) => throttled(wait),
        None => ApiError::TooManyRequests {
            reason: PASSWORD_POOL_FULL.to_owned(),
            retry_after: 1,
        },
    }
}

fn throttled(wait: Duration) -> ApiError {
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

/// Whether `principal` holds `manage_service_account` (and so `read_security` for listings):
/// `superuser` or one of `admin_roles`. Service tokens never do.
pub fn can_manage_tokens(principal: &Principal, admin_roles: &[String]) -> bool {
    match principal {
        Principal::ServiceToken(_) => false,
        Principal::User(user) => user
            .roles
            .iter()
            .any(|r| r == SUPERUSER || admin_roles.iter().any(|a| a == r)),
    }
}
