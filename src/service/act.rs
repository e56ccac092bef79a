//! The fourth phase: doing what was decided. Forwarding to the cluster (and reading its answer
//! for an account's key the cluster no longer takes), answering the gateway's own API, and
//! recording a refusal.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;

use super::record;
use crate::api::{self, Endpoint};
use crate::auth::Principal;
use crate::config::HttpLimits;
use crate::limits::Admission;
use crate::message::body::{BodyError, Guarded};
use crate::message::error::ApiError;
use crate::message::response::Body;
use crate::message::ClientInfo;
use crate::observe::access_log::Entry;
use crate::observe::audit;
use crate::state::State;
use crate::upstream_auth::Presented;

/// A refusal on its way out: a 403 is recorded in the audit log; other errors pass untouched.
pub(super) fn deny(
    state: &State,
    request: &audit::Request<'_>,
    principal: &Principal,
    error: ApiError,
) -> ApiError {
    state.audit.denied(request, principal.subject(), error)
}

/// Sends the request to the cluster and hands back its answer, streamed. (Not an `async fn`,
/// so its future holds the request once: see [`super::handle`].)
#[allow(
    clippy::manual_async_fn,
    reason = "its future holds its arguments once"
)]
pub(super) fn forward<'a>(
    state: &'a State,
    client: &'a ClientInfo,
    request: Request<Incoming>,
    presented: Presented,
    admission: Admission,
    entry: &'a mut Option<Entry>,
) -> impl Future<Output = Result<Response<Body>, ApiError>> + 'a {
    async move {
        let (authorization, key) = presented.into_parts();
        let sent = Instant::now();
        let response = state
            .upstream
            .forward(request, client, authorization, admission)
            .await?;
        let took = sent.elapsed();
        state.metrics.upstream(took);
        if let Some(entry) = entry {
            entry.upstream = Some(took);
        }
        if let Some((used, slot)) = key {
            if response.status() == StatusCode::UNAUTHORIZED {
                // The account's key is gone at the cluster (invalidated, expired): a new one is
                // made, and the client, told to retry, is not told its own token failed.
                state.upstream_auth.refused(&used, &slot);
                return Err(ApiError::CredentialPending {
                    account: slot.account().to_string(),
                });
            }
        }
        Ok(response.map(Either::Left))
    }
}

/// An endpoint the gateway answers itself: its body read to the end first (as a node reads a
/// request whole before acting on it), then its caller authenticated, then the answer.
pub(super) async fn answer(
    state: &State,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
    endpoint: Endpoint,
    entry: &mut Option<Entry>,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = request.into_parts();
    drain_api_body(body, &state.config.server.http).await?;
    let request = audit::Request::from_parts(&parts, client.peer);
    let principal = state
        .auth
        .authenticate(&request, Some(&client.bearer))
        .await?;
    record::note(entry, &principal);
    api::handle(state, endpoint, &request, &principal).await
}

/// Reads the body of a call to the gateway's own API to its end before acting on the call: the
/// API takes none, a small one (`{}`) is tolerated, a larger one is refused (413) rather than
/// acted on while it is still arriving, and a stalled one times out (408).
async fn drain_api_body(body: Incoming, limits: &HttpLimits) -> Result<(), ApiError> {
    if body.is_end_stream() {
        return Ok(());
    }
    let limit = limits.max_api_body;
    let guarded = Guarded::new(body, limits.client_body_timeout, None);
    match Limited::new(guarded, limit).collect().await {
        Ok(_) => Ok(()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge { limit }),
        Err(error) => match error.downcast_ref::<BodyError>() {
            Some(BodyError::Idle(_)) => Err(ApiError::ClientTimeout),
            _ => Err(ApiError::BadFraming("the request body could not be read")),
        },
    }
}
