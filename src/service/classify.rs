//! The first phase: what kind of request this is, from its shape and its path alone, before any
//! credential is read.

use http::Request;
use hyper::body::Incoming;

use crate::api::{self, Endpoint};
use crate::message::error::ApiError;
use crate::message::{shape, ClientInfo};
use crate::policy::path::{self, PathError, PathKind};
use crate::state::State;

/// Where a request is headed.
pub(super) enum Route {
    /// The cluster's own APIs, other than security administration: forwarded once its caller
    /// is known.
    Cluster,
    /// The cluster's security APIs: forwarded only for a caller the cluster will judge by a
    /// credential of its own, or a token manager.
    ClusterSecurity,
    /// An endpoint the gateway answers itself.
    Api(Endpoint),
}

/// The request's route, or why it is refused before routing (a malformed shape, a dot
/// segment, an API call that names no endpoint rightly).
pub(super) fn classify(
    state: &State,
    client: &ClientInfo,
    request: &Request<Incoming>,
) -> Result<Route, ApiError> {
    let http1 = request.version() < http::Version::HTTP_2;
    let ambiguous = http1.then_some(&*client.ambiguous_length);
    shape::check(request, &state.config.server.http, ambiguous)?;
    let security = match path::classify(request.uri().path()) {
        Ok(kind) => kind == PathKind::Security,
        Err(PathError::DotSegment) => {
            return Err(ApiError::IllegalArgument(format!(
                "invalid path [{}]: dot segments are not allowed",
                request.uri().path()
            )))
        }
    };
    if !security {
        return Ok(Route::Cluster);
    }
    match api::route(
        request.method(),
        request.uri().path(),
        shape::target(request),
    ) {
        Some(endpoint) => Ok(Route::Api(endpoint?)),
        None => Ok(Route::ClusterSecurity),
    }
}
