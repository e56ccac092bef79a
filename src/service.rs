//! The hyper service: route a request, authenticate it, answer it or forward it; and the ONE place
//! errors become responses.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use crate::access_log::Entry;
use crate::api::actions::security_action;
use crate::api::{self, params::Params};
use crate::audit;
use crate::auth::credentials::Credentials;
use crate::auth::{self, Principal};
use crate::body::{BodyError, Guarded};
use crate::config::{HttpLimits, PassThrough};
use crate::error::ApiError;
use crate::framing;
use crate::metrics::{Outcome, UpstreamFailure};
use crate::path::{self, PathError, PathKind};
use crate::proxy::headers::{Authorization, ClientInfo};
use crate::response::Body;
use crate::server::Handler;
use crate::state::{Live, State};
use crate::upstream_auth::Presented;

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
    fn handle(
        &self,
        request: Request<Incoming>,
        client: &Arc<ClientInfo>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        handle(self.live.load(), client, request)
    }
}

/// Answers one request. Never fails: every error is rendered here, and every answer counted.
/// `state` is owned, so a request keeps the state it started with across a reload (and no
/// wrapper future is needed to hold it: that copied the whole request future once more).
pub async fn handle(
    state: State,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    let state = &state;
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
    let mut response = match dispatch(state, client, request, &mut entry).await {
        Ok(response) => response,
        Err(error) => {
            if let Some(failure) = upstream_failure(&error) {
                state.metrics.upstream_failure(failure);
            }
            error.into_response(pretty)
        }
    };
    let outcome = match response.body() {
        Either::Left(_) => Outcome::Forwarded,
        Either::Right(_) => Outcome::of_gateway_status(response.status()),
    };
    state.metrics.request(outcome, &method, started.elapsed());
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

/// Names the caller in the request's access-log entry, when there is one.
fn note(entry: &mut Option<Entry>, principal: &Principal) {
    if let Some(entry) = entry {
        entry.principal = Some(principal.log_name());
    }
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

async fn dispatch(
    state: &State,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
    entry: &mut Option<Entry>,
) -> Result<Response<Body>, ApiError> {
    let http1 = request.version() < http::Version::HTTP_2;
    let ambiguous = http1.then_some(&*client.ambiguous_length);
    framing::check(&request, &state.config.server.http, ambiguous)?;
    let security = match path::classify(request.uri().path()) {
        Ok(kind) => kind == PathKind::Security,
        Err(PathError::DotSegment) => {
            return Err(ApiError::IllegalArgument(format!(
                "invalid path [{}]: dot segments are not allowed",
                request.uri().path()
            )))
        }
    };
    let pass_through = state.config.security.pass_through;
    if !security {
        // The hot path: authenticate, forward.
        if passes_through(pass_through, request.headers()) {
            return forward(
                state,
                client,
                request,
                Presented::Fixed(Authorization::Keep),
                entry,
            )
            .await;
        }
        let principal = authenticate(state, client, &request).await?;
        note(entry, &principal);
        let presented = match &principal {
            Principal::ServiceToken(token) => state
                .upstream_auth
                .for_token(token, request.method(), request.uri().path())
                .map_err(|e| denied(state, client, &request, &principal, e))?,
            Principal::User(_) if state.config.security.forward_users => {
                Presented::Fixed(state.upstream_auth.for_user())
            }
            Principal::User(_) => return Err(ApiError::BadCredentials),
        };
        return forward(state, client, request, presented, entry).await;
    }
    let uri = origin_form(request.uri());
    if let Some(route) = api::route(request.method(), request.uri().path(), uri) {
        let endpoint = route?;
        let (parts, body) = request.into_parts();
        drain_api_body(body, &state.config.server.http).await?;
        let request = audit::Request::from_parts(&parts, client.peer);
        let principal = auth::authenticate(state, &request).await?;
        note(entry, &principal);
        return api::handle(state, endpoint, &request, &principal).await;
    }
    // The cluster's own security APIs: whoever the cluster will judge by a credential of their
    // own (a pass-through one, or an account's scoped one) may go; the gateway's credential
    // goes only with a token manager.
    if passes_through(pass_through, request.headers()) {
        return forward(
            state,
            client,
            request,
            Presented::Fixed(Authorization::Keep),
            entry,
        )
        .await;
    }
    let principal = authenticate(state, client, &request).await?;
    note(entry, &principal);
    match &principal {
        Principal::ServiceToken(token) if state.upstream_auth.scoped(token) => {
            let presented = state
                .upstream_auth
                .for_token(token, request.method(), request.uri().path())
                .map_err(|e| denied(state, client, &request, &principal, e))?;
            return forward(state, client, request, presented, entry).await;
        }
        Principal::User(_)
            if state.config.security.forward_users
                && auth::can_manage_tokens(&principal, &state.config.security.admin_roles) =>
        {
            let presented = Presented::Fixed(state.upstream_auth.for_user());
            return forward(state, client, request, presented, entry).await;
        }
        _ => {}
    }
    // Security administration reached through the upstream credential would let any token
    // holder administer the cluster's security (see [`crate::path`]): refused, in the words a
    // node would use for the action behind this endpoint.
    let path = percent_decode_str(request.uri().path()).decode_utf8_lossy();
    let action = security_action(request.method(), &path);
    let error = ApiError::Unauthorized {
        action: action.name,
        caller: principal.caller(),
        privileges: action.privileges,
    };
    Err(denied(state, client, &request, &principal, error))
}

/// Records a 403 in the audit log on its way out; other errors pass untouched.
fn denied(
    state: &State,
    client: &ClientInfo,
    request: &Request<Incoming>,
    principal: &Principal,
    error: ApiError,
) -> ApiError {
    let request = audit::Request::new(request, client.peer);
    state.audit.denied(&request, principal.subject(), error)
}

/// Whether the request carries a credential of a scheme the cluster is to check itself.
fn passes_through(pass: PassThrough, headers: &http::HeaderMap) -> bool {
    if !(pass.api_key || pass.basic) {
        return false;
    }
    match Credentials::from_headers(headers) {
        Credentials::ApiKey => pass.api_key,
        Credentials::Basic(_) => pass.basic,
        _ => false,
    }
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

async fn authenticate(
    state: &State,
    client: &ClientInfo,
    request: &Request<Incoming>,
) -> Result<Principal, ApiError> {
    auth::authenticate(state, &audit::Request::new(request, client.peer)).await
}

async fn forward(
    state: &State,
    client: &ClientInfo,
    request: Request<Incoming>,
    presented: Presented,
    entry: &mut Option<Entry>,
) -> Result<Response<Body>, ApiError> {
    let (authorization, key) = presented.into_parts();
    let sent = Instant::now();
    let response = state
        .upstream
        .forward(request, client, authorization)
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

/// The request target as the client wrote it (path and query), as Elasticsearch quotes it.
fn origin_form(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}
