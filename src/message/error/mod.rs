//! The gateway's error kinds and the one function that turns them into Elasticsearch's JSON.
//!
//! Status and Elasticsearch `type` sit beside each kind in [`ApiError::kind`]; internal causes are
//! logged where they happen and never sent to the client.

mod prebuilt;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONNECTION, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::message::response::{self, Body};
use prebuilt::{
    rejected_token_body, seconds_value, BAD_CREDENTIALS_BODY, THROTTLED_BODY, THROTTLED_HEADERS,
    UNAUTHORIZED_HEADERS,
};

/// The three challenges a real node sends with every 401, in its order.
const CHALLENGES: [&str; 3] = [
    "Basic realm=\"security\", charset=\"UTF-8\"",
    "Bearer realm=\"security\"",
    "ApiKey",
];

/// What a client over its failed-authentication limit is told.
/// The rate-limit fields of the IETF draft (`draft-ietf-httpapi-ratelimit-headers`).
const RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");

const TOO_MANY_FAILURES: &str =
    "too many failed authentication attempts from this address, retry later";

const BAD_CREDENTIALS: &str =
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request";

/// A rejected service token's reason around the account and token name it names.
const REJECTED_ACCOUNT: &str = "failed to authenticate service account [";
const REJECTED_NAME: &str = "] with token name [";
const REJECTED_END: &str = "]";

/// Every way a request can fail before or instead of reaching the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No credentials the gateway understands were presented.
    MissingCredentials { uri: String },
    /// Credentials were presented and did not authenticate; which check failed is never told.
    BadCredentials,
    /// A well-formed service token did not authenticate. Elasticsearch names the account and
    /// token name the value itself carries (nothing the client did not already send), whatever
    /// the cause: foreign namespace, unknown account, short or wrong secret.
    ServiceTokenRejected { account: Arc<str>, name: Arc<str> },
    /// Authenticated, but the caller lacks every privilege that grants `action`.
    Unauthorized {
        /// The Elasticsearch action name of the refused request.
        action: &'static str,
        caller: Caller,
        /// The cluster privileges that grant `action`, least to most powerful.
        privileges: &'static [&'static str],
    },
    /// 400 `action_request_validation_exception` (the reason is the full "Validation Failed: …").
    Validation(String),
    /// 400 `illegal_argument_exception`.
    IllegalArgument(String),
    /// 409 `version_conflict_engine_exception`.
    VersionConflict(String),
    /// 400 `parse_exception`, for request bodies the gateway cannot read.
    Parse(String),
    /// A path the gateway serves, with a method it does not.
    MethodNotAllowed {
        uri: String,
        method: Method,
        allowed: &'static [Method],
    },
    /// A path under the gateway's own API with no endpoint behind it.
    NoHandler { uri: String, method: Method },
    /// The upstream refused, reset or could not be reached.
    UpstreamUnavailable,
    /// The upstream did not answer within the configured deadline.
    UpstreamTimeout,
    /// The token store could not make a change durable; nothing was acknowledged.
    StoreUnavailable,
    /// A fault inside the gateway, already logged.
    Internal,
    /// A limit on what one client (or everyone) may make the gateway spend was hit; the client
    /// may retry after `retry_after` seconds. Elasticsearch answers an overloaded thread pool
    /// with this status and type, which its clients already retry with backoff.
    TooManyRequests { reason: String, retry_after: u64 },
    /// An account's own limit was hit (429): `limit` names which (`rate` or
    /// `max_in_flight`), `quota` its size as `RateLimit-Limit` states it. Elasticsearch's
    /// clients retry this status with backoff, as they do a full thread pool.
    AccountLimited {
        account: Box<str>,
        limit: &'static str,
        quota: u32,
        retry_after: u64,
    },
    /// The client's address failed to authenticate too often and must wait `retry_after`
    /// seconds (429). A flood of guesses meets this answer most, so its body is built once.
    AuthThrottled { retry_after: u64 },
    /// The request line is longer than the configured limit (414).
    UriTooLong { limit: usize },
    /// The header block is larger than the configured limit (431).
    HeadersTooLarge { limit: usize },
    /// A body larger than the gateway's own API reads (413).
    PayloadTooLarge { limit: usize },
    /// A request whose framing a proxy must not pass on (400); the connection is closed after.
    BadFraming(&'static str),
    /// Every connection to the upstream is busy and the wait queue is full or timed out (503).
    UpstreamBusy,
    /// The client stopped sending its request body (408).
    ClientTimeout,
    /// A service account's local access rules do not allow this method and path (403).
    AccessDenied {
        method: Method,
        path: String,
        account: String,
    },
    /// The account's upstream API key is being created or renewed (503, Retry-After: 1).
    CredentialPending { account: String },
}

/// Who was refused, as a 403 names them: Elasticsearch describes a user by name and effective
/// roles, and a service account by its principal alone (it has a role descriptor, not roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User { name: String, roles: Vec<String> },
    ServiceAccount { principal: String },
}

/// How a kind renders: status, Elasticsearch `type`.
struct Kind {
    status: StatusCode,
    es_type: &'static str,
}

impl ApiError {
    fn kind(&self) -> Kind {
        let (status, es_type) = match self {
            Self::MissingCredentials { .. }
            | Self::BadCredentials
            | Self::ServiceTokenRejected { .. } => (StatusCode::UNAUTHORIZED, "security_exception"),
            Self::Unauthorized { .. } => (StatusCode::FORBIDDEN, "security_exception"),
            Self::Validation(_) => (
                StatusCode::BAD_REQUEST,
                "action_request_validation_exception",
            ),
            Self::IllegalArgument(_) => (StatusCode::BAD_REQUEST, "illegal_argument_exception"),
            Self::VersionConflict(_) => (StatusCode::CONFLICT, "version_conflict_engine_exception"),
            Self::Parse(_) => (StatusCode::BAD_REQUEST, "parse_exception"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, ""),
            Self::NoHandler { .. } => (StatusCode::BAD_REQUEST, ""),
            Self::UpstreamUnavailable => {
                (StatusCode::BAD_GATEWAY, "upstream_unavailable_exception")
            }
            Self::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout_exception"),
            Self::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable_exception",
            ),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
            Self::TooManyRequests { .. }
            | Self::AuthThrottled { .. }
            | Self::AccountLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "es_rejected_execution_exception",
            ),
            Self::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "too_long_http_line_exception"),
            Self::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too_long_http_header_exception",
            ),
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "content_too_long_exception")
            }
            Self::BadFraming(_) => (StatusCode::BAD_REQUEST, "illegal_argument_exception"),
            Self::UpstreamBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "es_rejected_execution_exception",
            ),
            Self::ClientTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout_exception"),
            Self::AccessDenied { .. } => (StatusCode::FORBIDDEN, "security_exception"),
            Self::CredentialPending { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_credential_unavailable_exception",
            ),
        };
        Kind { status, es_type }
    }

    /// The client-visible reason. Never includes an internal cause. A flat table, one arm per
    /// kind, kept whole so every reason the gateway can give reads in one place.
    pub fn reason(&self) -> String {
        match self {
            Self::MissingCredentials { uri } => {
                format!("missing authentication credentials for REST request [{uri}]")
            }
            Self::BadCredentials => BAD_CREDENTIALS.to_owned(),
            Self::ServiceTokenRejected { account, name } => {
                [REJECTED_ACCOUNT, account, REJECTED_NAME, name, REJECTED_END].concat()
            }
            Self::Unauthorized {
                action,
                caller,
                privileges,
            } => {
                let who = match caller {
                    Caller::User { name, roles } => {
                        format!("user [{name}] with effective roles [{}]", roles.join(","))
                    }
                    Caller::ServiceAccount { principal } => {
                        format!("service account [{principal}]")
                    }
                };
                format!(
                    "action [{action}] is unauthorized for {who}, this action is granted by the \
                     cluster privileges [{}]",
                    privileges.join(",")
                )
            }
            Self::Validation(r)
            | Self::IllegalArgument(r)
            | Self::VersionConflict(r)
            | Self::Parse(r) => r.clone(),
            Self::MethodNotAllowed {
                uri,
                method,
                allowed,
            } => {
                let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                format!(
                    "Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{}]",
                    allowed.join(", ")
                )
            }
            Self::NoHandler { uri, method } => {
                format!("no handler found for uri [{uri}] and method [{method}]")
            }
            Self::UpstreamUnavailable => "the upstream cluster could not be reached".to_owned(),
            Self::UpstreamTimeout => "the upstream cluster did not answer in time".to_owned(),
            Self::StoreUnavailable => "the token store could not persist the change".to_owned(),
            Self::Internal => "internal error in the gateway".to_owned(),
            Self::TooManyRequests { reason, .. } => reason.clone(),
            Self::AccountLimited {
                account,
                limit: "rate",
                quota,
                retry_after,
            } => format!(
                "rejected execution: account [{account}] is over its request rate limit (a burst \
                 of {quota}); retry in {retry_after}s"
            ),
            Self::AccountLimited {
                account,
                quota,
                retry_after,
                ..
            } => format!(
                "rejected execution: account [{account}] has {quota} requests in flight, its \
                 limit [max_in_flight]; retry in {retry_after}s"
            ),
            Self::AuthThrottled { .. } => TOO_MANY_FAILURES.to_owned(),
            // Netty's wording, as a node answers.
            Self::UriTooLong { limit } => format!("An HTTP line is larger than {limit} bytes."),
            Self::HeadersTooLarge { limit } => {
                format!("HTTP header is larger than {limit} bytes.")
            }
            Self::PayloadTooLarge { limit } => {
                format!("request body is larger than the limit of [{limit}] bytes")
            }
            Self::BadFraming(what) => format!("malformed request: {what}"),
            Self::UpstreamBusy => {
                "every connection to the upstream cluster is busy; retry later".to_owned()
            }
            Self::ClientTimeout => "the request body stopped arriving".to_owned(),
            Self::AccessDenied {
                method,
                path,
                account,
            } => format!(
                "action [{method} {path}] is unauthorized for service account [{account}], \
                 no access rule of the gateway allows it"
            ),
            Self::CredentialPending { account } => format!(
                "the upstream credential of service account [{account}] is being renewed; retry later"
            ),
        }
    }

    /// Whether the connection must close after this answer.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::UriTooLong { .. }
                | Self::HeadersTooLarge { .. }
                | Self::PayloadTooLarge { .. }
                | Self::BadFraming(_)
                | Self::ClientTimeout
        )
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind().status
    }

    /// The Elasticsearch JSON document for this error.
    pub fn to_json(&self) -> Value {
        let Kind { status, es_type } = self.kind();
        let reason = self.reason();
        if let Self::MethodNotAllowed { .. } | Self::NoHandler { .. } = self {
            // Elasticsearch's REST layer answers these with its short, string-valued form.
            return json!({ "error": reason, "status": status.as_u16() });
        }
        let mut cause = json!({ "type": es_type, "reason": reason });
        if status == StatusCode::UNAUTHORIZED {
            cause["header"] = json!({ "WWW-Authenticate": CHALLENGES });
        }
        let mut error = cause.clone();
        if let Value::Object(map) = &mut error {
            // `root_cause` comes first in a node's output; rebuild in that order.
            let mut ordered = serde_json::Map::new();
            ordered.insert("root_cause".to_owned(), json!([cause]));
            ordered.append(map);
            *map = ordered;
        }
        json!({ "error": error, "status": status.as_u16() })
    }

    /// Renders this error as the response a node would send.
    pub fn into_response(self, pretty: bool) -> Response<Body> {
        let status = self.status();
        let body = match (&self, pretty) {
            // The failed-authentication answer is the hot error path (scanners, load tests):
            // its bytes are built once.
            (Self::BadCredentials, false) => BAD_CREDENTIALS_BODY.clone(),
            (Self::AuthThrottled { .. }, false) => THROTTLED_BODY.clone(),
            // A wrong secret for a known token name: the same document with another reason.
            (Self::ServiceTokenRejected { account, name }, false) => {
                rejected_token_body(account, name)
            }
            _ => Bytes::from(response::to_bytes(&self.to_json(), pretty)),
        };
        let headers = match &self {
            _ if status == StatusCode::UNAUTHORIZED => UNAUTHORIZED_HEADERS.clone(),
            Self::AuthThrottled { .. } => THROTTLED_HEADERS.clone(),
            _ => response::json_headers(),
        };
        let mut response = response::with_headers(status, body, headers);
        let headers = response.headers_mut();
        if let Self::AuthThrottled { retry_after } = &self {
            // The copy holds the field already: its value is replaced in place, where an insert
            // would grow the copied map.
            let value = seconds_value(*retry_after);
            match headers.get_mut(RETRY_AFTER) {
                Some(slot) => *slot = value,
                None => {
                    headers.insert(RETRY_AFTER, value);
                }
            }
        }
        if let Self::TooManyRequests { retry_after, .. } = &self {
            headers.insert(RETRY_AFTER, seconds_value(*retry_after));
        }
        if let Self::AccountLimited {
            quota, retry_after, ..
        } = &self
        {
            // The IETF draft's fields, as Kong and Envoy send them: the quota, none left, and
            // when there will be.
            headers.insert(RETRY_AFTER, seconds_value(*retry_after));
            headers.insert(RATELIMIT_LIMIT, HeaderValue::from(*quota));
            headers.insert(RATELIMIT_REMAINING, HeaderValue::from_static("0"));
            headers.insert(RATELIMIT_RESET, seconds_value(*retry_after));
        }
        if let Self::CredentialPending { .. } = &self {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.closes_connection() {
            // What came after this request on the connection cannot be trusted to be framed
            // as the client meant it.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::MethodNotAllowed { allowed, .. } = &self {
            let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&allowed.join(",")) {
                headers.insert(ALLOW, value);
            }
        }
        response
    }
}
