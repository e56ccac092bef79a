//! The last phase: every answer counted in the metrics, and its access-log line finished when
//! its body has gone out.

use std::time::Duration;

use http::{Method, Response};
use http_body_util::Either;

use crate::auth::Principal;
use crate::limits::Refusal;
use crate::message::error::ApiError;
use crate::message::response::Body;
use crate::observe::access_log::Entry;
use crate::observe::metrics::Outcome;
use crate::state::State;

/// Names the caller in the request's access-log entry, when there is one.
pub(super) fn note(entry: &mut Option<Entry>, principal: &Principal) {
    if let Some(entry) = entry {
        entry.principal = Some(principal.log_name());
    }
}

/// A request its account's limit refused: the limit named in its access-log entry.
pub(super) fn limited(entry: &mut Option<Entry>, refusal: Refusal) -> ApiError {
    if let Some(entry) = entry {
        entry.limit = Some(refusal.exceeded.name());
    }
    refusal.into()
}

/// Counts `response` and hands its access-log line to its body (or writes it now for an answer
/// of the gateway's own, whole already).
pub(super) fn finish(
    state: &State,
    method: &Method,
    took: Duration,
    entry: Option<Entry>,
    mut response: Response<Body>,
) -> Response<Body> {
    let outcome = match response.body() {
        Either::Left(_) => Outcome::Forwarded,
        Either::Right(_) => Outcome::of_gateway_status(response.status()),
    };
    state.metrics.request(outcome, method, took);
    if let (Some(log), Some(entry)) = (&state.access_log, entry) {
        let tail = log.tail(entry, response.status().as_u16());
        match response.body_mut() {
            Either::Left(streamed) => streamed.set_tail(tail),
            Either::Right(whole) => {
                let bytes = hyper::body::Body::size_hint(whole).exact().unwrap_or(0);
                tail.done(bytes, true);
            }
        }
    }
    response
}
