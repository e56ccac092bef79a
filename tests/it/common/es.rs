//! Elasticsearch's answers as a node gives them, byte for byte: the error envelope, the 401 with
//! its challenges, the 403s, and the rejection reason a credential earns; and the checks that
//! compare the gateway's answers with them.

use serde_json::{json, Value};

/// Status and parsed JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// Asserts the status and the exact body bytes (compact JSON, in `expected`'s key order), and
/// that the gateway marked the answer as a node's.
pub async fn assert_response(response: reqwest::Response, status: u16, expected: &Value) {
    let headers = response.headers().clone();
    let got_status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(
        (got_status, text.as_str()),
        (status, expected.to_string().as_str())
    );
    assert_eq!(headers["x-elastic-product"], "Elasticsearch");
    let kind = headers["content-type"].to_str().unwrap();
    assert!(kind.starts_with("application/json"), "content type {kind}");
}

/// Elasticsearch's error envelope for `es_type`/`reason` with `status`.
pub fn es_error(status: u16, es_type: &str, reason: &str) -> Value {
    let cause = json!({"type": es_type, "reason": reason});
    json!({"error": {"root_cause": [cause], "type": es_type, "reason": reason}, "status": status})
}

/// The 401 a node sends, challenges included in `error` and its root cause.
pub fn es_unauthorized(reason: &str) -> Value {
    let header = json!({"WWW-Authenticate": CHALLENGES});
    let cause = json!({"type": "security_exception", "reason": reason, "header": header});
    json!({
        "error": {
            "root_cause": [cause],
            "type": "security_exception",
            "reason": reason,
            "header": header
        },
        "status": 401
    })
}

/// The three `WWW-Authenticate` challenges, in a node's order.
pub const CHALLENGES: [&str; 3] = [
    "Basic realm=\"security\", charset=\"UTF-8\"",
    "Bearer realm=\"security\"",
    "ApiKey",
];

pub const BAD_CREDENTIALS: &str = "unable to authenticate with provided credentials and anonymous access is not allowed for this request";

/// The body of a 403 for `action` by `user` with `roles`.
pub fn es_forbidden(action: &str, user: &str, roles: &str, privileges: &str) -> Value {
    let reason = format!(
        "action [{action}] is unauthorized for user [{user}] with effective roles [{roles}], \
         this action is granted by the cluster privileges [{privileges}]"
    );
    es_error(403, "security_exception", &reason)
}

/// The body of a 403 for `action` by the service account `account`: Elasticsearch names no
/// roles for a service account.
pub fn es_forbidden_service(action: &str, account: &str, privileges: &str) -> Value {
    let reason = format!(
        "action [{action}] is unauthorized for service account [{account}], \
         this action is granted by the cluster privileges [{privileges}]"
    );
    es_error(403, "security_exception", &reason)
}

/// The reason a node gives a 401 for the `Authorization` value `authorization`: a well-formed
/// service token is named by its account and token name, anything else gets the generic one.
pub fn es_rejection_reason(authorization: &str) -> String {
    let Some(value) = authorization.strip_prefix("Bearer ") else {
        return BAD_CREDENTIALS.to_owned();
    };
    let mut buf = [0u8; tokengate::identity::token::MAX_DECODED_LEN];
    match tokengate::identity::token::decode(value.as_bytes(), &mut buf) {
        Some(token) if tokengate::identity::is_valid_token_name(token.name) => format!(
            "failed to authenticate service account [{}] with token name [{}]",
            token.account, token.name
        ),
        _ => BAD_CREDENTIALS.to_owned(),
    }
}
