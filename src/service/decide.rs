//! The third phase: what will happen to an authenticated request, as a value. Nothing is sent
//! and nothing is recorded here; the next phase, `act`, does what the decision says.

use http::Request;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::classify::Route;
use crate::api::actions::security_action;
use crate::auth::credentials::Credentials;
use crate::auth::{self, Principal};
use crate::message::error::ApiError;
use crate::state::State;
use crate::upstream_auth::Presented;

/// What the gateway will do with a request.
pub(super) enum Decision {
    /// Send it to the cluster carrying this credential.
    Forward(Presented),
    /// Refuse it with this error (a 403 is audited as access denied).
    Deny(ApiError),
}

/// What `principal`'s request on `route` gets.
pub(super) fn decide(
    state: &State,
    route: &Route,
    request: &Request<Incoming>,
    principal: &Principal,
) -> Decision {
    let cluster = matches!(route, Route::Cluster);
    let security = &state.config.security;
    match principal {
        // The cluster's own security APIs take a token only when its account has a scoped
        // credential of its own: the cluster judges that one.
        Principal::ServiceToken(token) if cluster || state.upstream_auth.scoped(token) => {
            match state
                .upstream_auth
                .for_token(token, request.method(), request.uri().path())
            {
                Ok(presented) => Decision::Forward(presented),
                Err(withheld) => Decision::Deny(withheld.into()),
            }
        }
        Principal::User(_)
            if security.forward_users
                && (cluster || auth::can_manage_tokens(principal, &security.admin_roles)) =>
        {
            Decision::Forward(Presented::Fixed(state.upstream_auth.for_user()))
        }
        Principal::User(_) if cluster => Decision::Deny(ApiError::BadCredentials),
        // Security administration reached through the upstream credential would let any token
        // holder administer the cluster's security (see `policy::path`): refused, in the words
        // a node would use for the action behind this endpoint.
        _ => {
            let path = percent_decode_str(request.uri().path()).decode_utf8_lossy();
            let action = security_action(request.method(), &path);
            Decision::Deny(ApiError::Unauthorized {
                action: action.name,
                caller: principal.caller(),
                privileges: action.privileges,
            })
        }
    }
}

/// Whether the request carries a credential of a scheme the cluster is to check itself.
pub(super) fn passes_through(state: &State, headers: &http::HeaderMap) -> bool {
    let pass = state.config.security.pass_through;
    if !(pass.api_key || pass.basic) {
        return false;
    }
    match Credentials::from_headers(headers) {
        Credentials::ApiKey => pass.api_key,
        Credentials::Basic(_) => pass.basic,
        _ => false,
    }
}
