//! The one place a failure of any layer becomes Elasticsearch's error document: each layer's
//! error type is mapped here to the [`ApiError`] a node would answer with, and rendered.

use http::Response;

use crate::auth::Refused;
use crate::limits::Refusal;
use crate::message::error::ApiError;
use crate::message::response::Body;
use crate::observe::metrics::UpstreamFailure;
use crate::proxy;
use crate::state::State;
use crate::upstream_auth::Withheld;

/// What a client is told while the password pool is full.
const PASSWORD_POOL_FULL: &str = "too many password verifications in progress, retry later";

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Missing { uri } => ApiError::MissingCredentials { uri },
            Refused::Bad => ApiError::BadCredentials,
            Refused::ServiceToken { account, name } => {
                ApiError::ServiceTokenRejected { account, name }
            }
            Refused::Throttled { retry_after } => ApiError::AuthThrottled { retry_after },
            Refused::PoolFull { retry_after } => ApiError::TooManyRequests {
                reason: PASSWORD_POOL_FULL.to_owned(),
                retry_after,
            },
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::AccountLimited {
            limit: refusal.exceeded.name(),
            quota: refusal.quota(),
            retry_after: refusal.retry_after(),
            account: refusal.account,
        }
    }
}

impl From<proxy::Error> for ApiError {
    fn from(error: proxy::Error) -> Self {
        match error {
            proxy::Error::Unavailable => ApiError::UpstreamUnavailable,
            proxy::Error::Timeout => ApiError::UpstreamTimeout,
            proxy::Error::Busy => ApiError::UpstreamBusy,
            proxy::Error::ClientTimeout => ApiError::ClientTimeout,
            proxy::Error::ClientBody => ApiError::BadFraming("the request body could not be read"),
            proxy::Error::Target => ApiError::Internal,
        }
    }
}

impl From<Withheld> for ApiError {
    fn from(withheld: Withheld) -> Self {
        match withheld {
            Withheld::UnknownAccount => ApiError::BadCredentials,
            Withheld::AccessDenied {
                method,
                path,
                account,
            } => ApiError::AccessDenied {
                method,
                path,
                account,
            },
            Withheld::CredentialPending { account } => ApiError::CredentialPending { account },
        }
    }
}

/// The response for `error`, counted as an upstream failure when it is one.
pub(super) fn respond(state: &State, error: ApiError, pretty: bool) -> Response<Body> {
    if let Some(failure) = upstream_failure(&error) {
        state.metrics.upstream_failure(failure);
    }
    error.into_response(pretty)
}

/// The kind of upstream failure behind an error, for the metrics.
fn upstream_failure(error: &ApiError) -> Option<UpstreamFailure> {
    match error {
        ApiError::UpstreamUnavailable => Some(UpstreamFailure::Connect),
        ApiError::UpstreamTimeout => Some(UpstreamFailure::Timeout),
        ApiError::UpstreamBusy => Some(UpstreamFailure::Busy),
        _ => None,
    }
}
