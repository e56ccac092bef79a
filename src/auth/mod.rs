//! Who is calling: credentials, service tokens, file-realm users, and what they may do.
//!
//! Every authentication failure renders the same 401; the reason is logged at debug only.

pub mod accounts;
pub mod credentials;
pub mod secret;
pub mod token;
pub mod users;

use http::HeaderMap;

use crate::error::ApiError;
use crate::store::TokenStore;
use accounts::Accounts;
use credentials::Credentials;
use users::{User, UserRealm};

/// The role that grants everything, as in Elasticsearch.
pub const SUPERUSER: &str = "superuser";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A valid service token. Its identity is re-read from the header by the few handlers that
    /// need it, so the forwarding path carries nothing allocated.
    ServiceToken,
    /// A file-realm user.
    User(User),
}

/// Authenticates requests and answers privilege questions.
#[derive(Clone)]
pub struct Authenticator {
    pub store: TokenStore,
    pub realm: UserRealm,
    pub accounts: Accounts,
    /// Roles besides `superuser` that grant `manage_service_account`.
    admin_roles: Vec<String>,
}

impl Authenticator {
    pub fn new(
        store: TokenStore,
        realm: UserRealm,
        accounts: Accounts,
        admin_roles: Vec<String>,
    ) -> Self {
        Authenticator {
            store,
            realm,
            accounts,
            admin_roles,
        }
    }

    /// The principal behind a request's `Authorization` header. `uri` is only used in the
    /// missing-credentials message.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &str,
    ) -> Result<Principal, ApiError> {
        match Credentials::from_headers(headers) {
            Credentials::None => Err(ApiError::MissingCredentials {
                uri: uri.to_owned(),
            }),
            Credentials::Bearer(value) => {
                if self.verify_bearer(value) {
                    Ok(Principal::ServiceToken)
                } else {
                    tracing::debug!("bearer token rejected");
                    Err(ApiError::BadCredentials)
                }
            }
            Credentials::Basic(value) => match self.realm.authenticate(value).await {
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

    /// The hot path: the store fingerprints the value as sent and looks it up. Nothing is
    /// decoded, so a malformed value costs the same as a wrong one and simply does not match.
    pub fn verify_bearer(&self, value: &[u8]) -> bool {
        self.store.verify_value(value)
    }

    /// Whether `principal` holds `manage_service_account` (and so `read_security` for listings).
    pub fn can_manage_tokens(&self, principal: &Principal) -> bool {
        match principal {
            Principal::ServiceToken => false,
            Principal::User(user) => user
                .roles
                .iter()
                .any(|r| r == SUPERUSER || self.admin_roles.iter().any(|a| a == r)),
        }
    }
}

/// The name and roles Elasticsearch would print for `principal` in a 403, read from `headers`.
pub fn describe(principal: &Principal, headers: &HeaderMap) -> (String, Vec<String>) {
    match principal {
        Principal::User(user) => (user.name.clone(), user.roles.clone()),
        Principal::ServiceToken => {
            let account = token_identity(headers).map(|(account, _)| account);
            (account.unwrap_or_default(), Vec::new())
        }
    }
}

/// `(namespace/service, token name)` of the service token in `headers`, for the few answers that
/// name it; the forwarding path never needs this.
pub fn token_identity(headers: &HeaderMap) -> Option<(String, String)> {
    let Credentials::Bearer(value) = Credentials::from_headers(headers) else {
        return None;
    };
    let mut buf = [0u8; token::MAX_DECODED_LEN];
    token::decode(value, &mut buf).map(|t| (t.account.to_owned(), t.name.to_owned()))
}
