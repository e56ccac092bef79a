//! The `/_security/service/…` family and `/_security/_authenticate`, answered by the gateway
//! itself exactly as Elasticsearch answers them.

mod accounts;
pub mod actions;
mod authenticate;
pub mod params;
mod tokens;

use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::auth::{self, Principal};
use crate::identity::{AccountId, TokenName};
use crate::message::error::ApiError;
use crate::message::response::{self, Body};
use crate::observe::audit;
use crate::state::State;
use actions::SecurityAction;
use params::Params;

/// An endpoint of the gateway's own API, with its decoded path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /_security/service[/{ns}[/{svc}]]`
    GetAccounts {
        namespace: Option<String>,
        service: Option<String>,
    },
    /// `GET /_security/service/{ns}/{svc}/credential`
    GetCredentials { account: AccountId },
    /// `POST|PUT …/credential/token[/{name}]`; the name is checked by the handler, in
    /// Elasticsearch's order.
    CreateToken {
        account: AccountId,
        name: Option<String>,
    },
    /// `DELETE …/credential/token/{name}`
    DeleteToken { account: AccountId, name: String },
    /// `POST …/credential/token/{names}/_clear_cache`
    ClearCache { account: AccountId, names: String },
    /// `GET /_security/_authenticate`
    Authenticate,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const TOKEN: &[Method] = &[Method::POST, Method::PUT, Method::DELETE];

/// Most segments any of the gateway's own endpoints has.
const MAX_SEGMENTS: usize = 8;

/// Matches the raw request `path` (segments are percent-decoded here) against the gateway's
/// endpoints. `None`: not ours, the request goes on to be forwarded.
///
/// Segments are read as Elasticsearch's `PathTrie` reads them: the path is split on every `/`
/// after the leading one, an empty segment between two slashes is a (empty) value, and only
/// trailing empty segments vanish (Java's `String.split`). So `…/token//_clear_cache` names the
/// token `""`, and `…/elastic//fleet-server/…` matches no endpoint at all.
pub fn route(method: &Method, path: &str, uri: &str) -> Option<Result<Endpoint, ApiError>> {
    let segments = segments(path);
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some((allowed, endpoint)) = endpoint(&s, method)? else {
        return Some(Err(ApiError::NoHandler {
            uri: uri.to_owned(),
            method: method.clone(),
        }));
    };
    if allowed.contains(method) {
        Some(Ok(endpoint))
    } else {
        Some(Err(ApiError::MethodNotAllowed {
            uri: uri.to_owned(),
            method: method.clone(),
            allowed,
        }))
    }
}

/// The path's segments, percent-decoded, as [`route`] reads them.
fn segments(path: &str) -> Vec<String> {
    let raw = path.strip_prefix('/').unwrap_or(path).trim_end_matches('/');
    let mut segments: Vec<String> = Vec::with_capacity(MAX_SEGMENTS);
    for segment in raw.split('/') {
        if segments.len() == MAX_SEGMENTS {
            // Longer than any endpoint: only the catch-all below can match.
            segments.push(String::new());
            break;
        }
        segments.push(percent_decode_str(segment).decode_utf8_lossy().into_owned());
    }
    segments
}

/// The endpoint table (a flat table: one arm per endpoint, kept whole so it reads as the API's
/// list): the methods an endpoint allows and the endpoint, `Some(None)` for a path under
/// `_security/service` that names none, `None` for a path that is not the gateway's.
fn endpoint(s: &[&str], method: &Method) -> Option<Option<(&'static [Method], Endpoint)>> {
    let owned = |v: &str| v.to_owned();
    let account = |ns: &str, svc: &str| AccountId::new(ns, svc);
    let found = match s {
        ["_security", "_authenticate"] => (GET, Endpoint::Authenticate),
        ["_security", "service"] => (
            GET,
            Endpoint::GetAccounts {
                namespace: None,
                service: None,
            },
        ),
        ["_security", "service", ns] => (
            GET,
            Endpoint::GetAccounts {
                namespace: Some(owned(ns)),
                service: None,
            },
        ),
        ["_security", "service", ns, svc] => (
            GET,
            Endpoint::GetAccounts {
                namespace: Some(owned(ns)),
                service: Some(owned(svc)),
            },
        ),
        ["_security", "service", ns, svc, "credential"] => (
            GET,
            Endpoint::GetCredentials {
                account: account(ns, svc),
            },
        ),
        ["_security", "service", ns, svc, "credential", "token"] => (
            POST,
            Endpoint::CreateToken {
                account: account(ns, svc),
                name: None,
            },
        ),
        ["_security", "service", ns, svc, "credential", "token", name] => {
            let account = account(ns, svc);
            let endpoint = if method == Method::DELETE {
                Endpoint::DeleteToken {
                    account,
                    name: owned(name),
                }
            } else {
                Endpoint::CreateToken {
                    account,
                    name: Some(owned(name)),
                }
            };
            (TOKEN, endpoint)
        }
        ["_security", "service", ns, svc, "credential", "token", names, "_clear_cache"] => (
            POST,
            Endpoint::ClearCache {
                account: account(ns, svc),
                names: owned(names),
            },
        ),
        ["_security", "service", ..] => return Some(None),
        _ => return None,
    };
    Some(Some(found))
}

/// One API call in progress: what every handler needs to check and answer.
pub struct Call<'a> {
    pub state: &'a State,
    pub principal: &'a Principal,
    pub params: Params,
    /// The request path, for Elasticsearch's parameter messages.
    pub path: &'a str,
    /// The request as the audit log records it (client address, path, headers).
    pub request: audit::Request<'a>,
}

impl Call<'_> {
    /// 403 unless the principal holds one of the privileges that grant `action`.
    fn require(&self, action: SecurityAction) -> Result<(), ApiError> {
        let admin_roles = &self.state.config.security.admin_roles;
        if auth::holds_any(self.principal, admin_roles, action.privileges) {
            return Ok(());
        }
        let error = ApiError::Unauthorized {
            action: action.name,
            caller: self.principal.caller(),
            privileges: action.privileges,
        };
        Err(self
            .state
            .audit
            .denied(&self.request, self.principal.subject(), error))
    }

    /// Elasticsearch's request validation for a call naming an account (and a token): every
    /// failed check, numbered, in one 400.
    fn validate(account: &AccountId, name: Option<&str>) -> Result<(), ApiError> {
        let mut failures: Vec<String> = Vec::new();
        if account.namespace().is_empty() {
            failures.push("service account namespace is required".to_owned());
        }
        if account.service().is_empty() {
            failures.push("service account service-name is required".to_owned());
        }
        if let Some(Err(invalid)) = name.map(TokenName::new) {
            failures.push(invalid.reason());
        }
        if failures.is_empty() {
            return Ok(());
        }
        let mut reason = String::from("Validation Failed: ");
        for (i, failure) in failures.iter().enumerate() {
            reason.push_str(&format!("{}: {failure};", i + 1));
        }
        Err(ApiError::Validation(reason))
    }

    /// 400 unless `account` is a service account the gateway knows.
    fn require_account(&self, account: &AccountId) -> Result<(), ApiError> {
        if self
            .state
            .accounts
            .contains(account.namespace(), account.service())
        {
            Ok(())
        } else {
            Err(ApiError::IllegalArgument(format!(
                "service account [{account}] does not exist"
            )))
        }
    }

    /// The token name a path gave, checked against Elasticsearch's rule (400 when it fails).
    fn token_name(name: &str) -> Result<TokenName, ApiError> {
        TokenName::new(name).map_err(|invalid| ApiError::Validation(invalid.to_string()))
    }

    /// A 200 (or other status) JSON answer, indented under `?pretty`.
    fn reply(&self, status: StatusCode, body: &Value) -> Response<Body> {
        response::json_value(status, body, self.params.pretty())
    }
}

/// Runs an endpoint for an authenticated principal.
pub async fn handle(
    state: &State,
    endpoint: Endpoint,
    request: &audit::Request<'_>,
    principal: &Principal,
) -> Result<Response<Body>, ApiError> {
    let call = Call {
        state,
        principal,
        params: Params::parse(request.uri.query()),
        path: request.uri.path(),
        request: *request,
    };
    match endpoint {
        Endpoint::Authenticate => authenticate::handle(&call),
        Endpoint::GetAccounts { namespace, service } => {
            accounts::get_accounts(&call, namespace.as_deref(), service.as_deref())
        }
        Endpoint::GetCredentials { account } => accounts::get_credentials(&call, &account),
        Endpoint::CreateToken { account, name } => tokens::create(&call, &account, name).await,
        Endpoint::DeleteToken { account, name } => tokens::delete(&call, &account, &name).await,
        Endpoint::ClearCache { names, .. } => tokens::clear_cache(&call, &names),
    }
}
