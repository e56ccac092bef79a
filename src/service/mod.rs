//! The gateway's handler: what every request on the client listeners goes through.
//!
//! ```text
//! classify ──► authenticate ──► decide ──► act ──────────► record
//! (shape,      (Authenticator)  (Decision:  (forward to     (metrics,
//!  path,                         Forward,    the cluster,    access log)
//!  route)                        Deny)       or deny)
//!    │
//!    └─ an API call: read its body, authenticate, answer it (api::handle)
//! ```
//!
//! Each phase is a module. Errors from every layer (shape checks, authentication, the
//! forwarder, the API) meet in `rescue`, the one place they become Elasticsearch's error
//! document.

mod act;
mod classify;
mod decide;
mod record;
mod rescue;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::{Body as _, Incoming};

use crate::api::params::Params;
use crate::listen::{Handler, InFlight};
use crate::message::error::ApiError;
use crate::message::response::Body;
use crate::message::ClientInfo;
use crate::observe::access_log::Entry;
use crate::observe::audit;
use crate::proxy::headers::Authorization;
use crate::state::{Live, State};
use crate::upstream_auth::Presented;
use classify::Route;
use decide::Decision;

/// The gateway's client-facing service: what its listeners serve.
#[derive(Clone)]
pub struct GatewayService {
    /// Swapped by a reload; each request loads it once and keeps what it loaded.
    live: Live,
}

impl GatewayService {
    pub fn new(live: Live) -> Self {
        GatewayService { live }
    }
}

impl Handler for GatewayService {
    // Inlined, so the request's future is built where the listener keeps it: called out of
    // line, it was built aside and then copied there twice, a kilobyte each time.
    #[inline]
    fn handle(
        &self,
        request: Request<Incoming>,
        in_flight: InFlight,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
        handle(self.live.load(), in_flight, request)
    }
}

/// Answers one request. Never fails: every error is rendered here, and every answer counted.
/// `state` is owned, so a request keeps the state it started with across a reload (and no
/// wrapper future is needed to hold it: that copied the whole request future once more).
///
/// Not an `async fn`, nor are the layers below it on the forwarding path: an `async fn` keeps
/// its arguments twice in its future (as passed, then moved into its body), an `async move`
/// block that uses them in place keeps them once. Each layer then holds one request less, and
/// the whole future, which hyper's connection moves when the request starts, is a kilobyte
/// smaller.
#[allow(
    clippy::manual_async_fn,
    reason = "its future holds its arguments once"
)]
/// `in_flight` is held until the answer is ready.
pub fn handle(
    state: State,
    in_flight: InFlight,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + 'static {
    async move {
        let state = &state;
        let client = in_flight.client();
        let started = Instant::now();
        let method = request.method().clone();
        let pretty = request
            .uri()
            .query()
            .is_some_and(|q| q.contains("pretty") && Params::parse(Some(q)).pretty());
        let mut entry = state
            .access_log
            .as_ref()
            .map(|log| log.begin(&request, client.peer));
        // A refusal is answered without reading the request's body. hyper then closes an HTTP/1
        // connection whose body it cannot drain at once, after the answer: a client that reuses it
        // meanwhile loses its next request. Said in the answer, the client opens a new one.
        let body_unread =
            request.version() < http::Version::HTTP_2 && !request.body().is_end_stream();
        let response = match dispatch(state, client, request, &mut entry).await {
            Ok(response) => response,
            Err(error) => {
                let mut response = rescue::respond(state, error, pretty);
                if body_unread {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, CLOSE.clone());
                }
                response
            }
        };
        let ended = Instant::now();
        let response = record::finish(
            state,
            &method,
            ended.saturating_duration_since(started),
            entry,
            response,
        );
        in_flight.end(ended);
        Ok(response)
    }
}

/// `Connection: close`.
static CLOSE: http::HeaderValue = http::HeaderValue::from_static("close");

/// Classify, authenticate, decide, act. (Not an `async fn`: see [`handle`].)
#[allow(
    clippy::manual_async_fn,
    reason = "its future holds its arguments once"
)]
fn dispatch<'a>(
    state: &'a State,
    client: &'a Arc<ClientInfo>,
    request: Request<Incoming>,
    entry: &'a mut Option<Entry>,
) -> impl Future<Output = Result<Response<Body>, ApiError>> + 'a {
    async move {
        let route = classify::classify(state, client, &request)?;
        if let Route::Api(endpoint) = route {
            // Boxed: the API's futures (a token created, a password checked) are kilobytes that
            // every forwarded request's future would otherwise be sized for and moved with.
            return Box::pin(act::answer(state, client, request, endpoint, entry)).await;
        }
        let (presented, admission) = if decide::passes_through(state, request.headers()) {
            // A credential of a scheme the cluster checks itself: the gateway does not.
            let presented = Presented::Fixed(Authorization::Keep);
            (presented, state.limits.admit_pass_through())
        } else {
            let seen = audit::Request::new(&request, client.peer);
            let principal = state.auth.authenticate(&seen, Some(&client.bearer)).await?;
            record::note(entry, &principal);
            match decide::decide(state, &route, &request, &principal) {
                Decision::Deny(error) => return Err(act::deny(state, &seen, &principal, error)),
                Decision::Forward(presented) => {
                    let admission = state
                        .limits
                        .admit(&principal)
                        .map_err(|refusal| record::limited(entry, refusal))?;
                    (presented, admission)
                }
            }
        };
        // Straight to the forwarder: every layer between holds its own copy of the request's
        // arguments in its future. Boxed: the forwarding future is kilobytes, and a request's
        // whole future is moved into hyper's slot for it when it starts; a refusal, which never
        // forwards, then moves and allocates none of it.
        Box::pin(act::forward(
            state, client, request, presented, admission, entry,
        ))
        .await
    }
}
