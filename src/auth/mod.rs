//! Who is calling, and what they may do: credentials in, a [`Principal`] out.
//!
//! Every authentication failure renders the same 401; the reason is logged at debug only. A
//! successful bearer check names its token once, here, so nothing downstream reads the
//! `Authorization` header again.

pub mod credentials;

use http::HeaderMap;

use crate::accounts::Accounts;
use crate::error::ApiError;
use crate::identity::{AccountId, TokenIdentity, TokenName, TokenSource};
use crate::state::State;
use crate::store::TokenStore;
use crate::token;
use crate::users::User;
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

/// The principal behind a request's `Authorization` header. `uri` is only used in the
/// missing-credentials message.
pub async fn authenticate(
    state: &State,
    headers: &HeaderMap,
    uri: &str,
) -> Result<Principal, ApiError> {
    match Credentials::from_headers(headers) {
        Credentials::None => Err(ApiError::MissingCredentials {
            uri: uri.to_owned(),
        }),
        Credentials::Bearer(value) => match verify_bearer(&state.store, &state.accounts, value) {
            Some(identity) => Ok(Principal::ServiceToken(identity)),
            None => {
                tracing::debug!("bearer token rejected");
                Err(ApiError::BadCredentials)
            }
        },
        Credentials::Basic(value) => match state.users.authenticate(value).await {
            Some(user) => Ok(Principal::User(user)),
            None => {
                tracing::debug!("basic credentials rejected");
                Err(ApiError::BadCredentials)
            }
        },
        Credentials::Unusable => {
            tracing::debug!("unusable authorization header");
            Err(ApiError::BadCredentials)
        }
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
