//! The hyper service: route a request, authenticate it, answer it or forward it; and the ONE place
//! errors become responses.

use std::borrow::Cow;
use std::sync::Arc;

use http::Uri;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use crate::api::{self, params::Params};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::proxy::headers::ClientInfo;
use crate::response::Body;
use crate::server::Handler;
use crate::state::State;

/// Security administration reached through the upstream credential would let any token holder
/// administer the cluster's security; only token managers may pass.
const SECURITY_PREFIXES: [&str; 2] = ["_security", "_xpack/security"];
const SECURITY_ACTION: &str = "cluster:admin/xpack/security/*";
const SECURITY_PRIVILEGES: &str = "manage_security,all";

/// The gateway's client-facing service: what its listeners serve.
#[derive(Clone)]
pub struct GatewayService {
    state: State,
}

impl GatewayService {
    pub fn new(state: State) -> Self {
        GatewayService { state }
    }
}

impl Handler for GatewayService {
    fn handle(
        &self,
        request: Request<Incoming>,
        client: &Arc<ClientInfo>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        handle(&self.state, client, request)
    }
}

/// Answers one request. Never fails: every error is rendered here.
pub async fn handle(
    state: &State,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    let pretty = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("pretty") && Params::parse(Some(q)).pretty());
    match dispatch(state, client, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(pretty),
    }
}

async fn dispatch(
    state: &State,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = normalise(request.uri().path());
    let security = is_security_path(&path);
    if !security {
        // The hot path: authenticate, forward.
        let principal = authenticate(state, client, &request).await?;
        if let Principal::User(_) = principal {
            if !state.config.security.forward_users {
                return Err(ApiError::BadCredentials);
            }
        }
        return forward(state, client, request).await;
    }
    let uri = origin_form(request.uri());
    if let Some(route) = api::route(request.method(), request.uri().path(), uri) {
        let endpoint = route?;
        let (parts, _body) = request.into_parts();
        let principal = auth::authenticate(
            state,
            &parts.headers,
            origin_form(&parts.uri),
            client.peer.ip(),
        )
        .await?;
        return api::handle(state, endpoint, &parts, &principal).await;
    }
    let principal = authenticate(state, client, &request).await?;
    let is_user = matches!(principal, Principal::User(_));
    let admin_roles = &state.config.security.admin_roles;
    if is_user
        && auth::can_manage_tokens(&principal, admin_roles)
        && state.config.security.forward_users
    {
        return forward(state, client, request).await;
    }
    let (user, roles) = principal.describe();
    Err(ApiError::Unauthorized {
        action: SECURITY_ACTION,
        user,
        roles,
        privileges: SECURITY_PRIVILEGES,
    })
}

async fn authenticate(
    state: &State,
    client: &ClientInfo,
    request: &Request<Incoming>,
) -> Result<Principal, ApiError> {
    let uri = origin_form(request.uri());
    auth::authenticate(state, request.headers(), uri, client.peer.ip()).await
}

async fn forward(
    state: &State,
    client: &ClientInfo,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let response = state.upstream.forward(request, client).await?;
    Ok(response.map(Either::Left))
}

/// The request target as the client wrote it (path and query), as Elasticsearch quotes it.
fn origin_form(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// The path as the upstream will understand it: percent-decoded, without leading slashes, so
/// `//_security` or `/%5Fsecurity` cannot slip past the security check.
fn normalise(path: &str) -> Cow<'_, str> {
    let decoded: Cow<str> = if path.contains('%') {
        Cow::Owned(percent_decode_str(path).decode_utf8_lossy().into_owned())
    } else {
        Cow::Borrowed(path)
    };
    match decoded {
        Cow::Borrowed(p) => Cow::Borrowed(p.trim_start_matches('/')),
        Cow::Owned(p) => Cow::Owned(p.trim_start_matches('/').to_owned()),
    }
}

fn is_security_path(path: &str) -> bool {
    SECURITY_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_paths_are_recognised_however_spelled() {
        for path in [
            "/_security",
            "/_security/user",
            "//_security/role",
            "/%5Fsecurity/user",
            "/_xpack/security/user",
        ] {
            assert!(is_security_path(&normalise(path)), "{path}");
        }
        for path in ["/", "/_securityx", "/_cluster/health", "/index/_security"] {
            assert!(!is_security_path(&normalise(path)), "{path}");
        }
    }
}
