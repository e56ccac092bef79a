//! `KeyCluster`: a `FakeUpstream` that also serves Elasticsearch's API-key endpoints as a
//! secured cluster does: `POST /_security/api_key` (only with the admin credential) issues a key,
//! `DELETE /_security/api_key` invalidates keys, and any request presenting an invalidated key
//! gets 401. Every other request is answered with the fake's default 200.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::upstream::{default_response, full, FakeBody, FakeUpstream, Recorded};

/// A key the cluster issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: String,
    pub name: String,
    /// `ApiKey <encoded>`, as a request presents it.
    pub authorization: String,
    /// The create request's body.
    pub request: Value,
    /// The credential the create request came with.
    pub created_with: String,
}

#[derive(Default)]
struct Keys {
    issued: Vec<Issued>,
    invalidated: Vec<String>,
}

pub struct KeyCluster {
    pub upstream: FakeUpstream,
    keys: Arc<Mutex<Keys>>,
}

impl KeyCluster {
    /// A cluster whose API-key endpoints accept `admin` (a whole `Authorization` value).
    pub async fn start(admin: &'static str) -> KeyCluster {
        let keys = Arc::new(Mutex::new(Keys::default()));
        let shared = keys.clone();
        let upstream = FakeUpstream::builder()
            .handler(move |request| {
                let response = answer(&shared, admin, request);
                async move { response }
            })
            .start()
            .await;
        KeyCluster { upstream, keys }
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.keys.lock().unwrap().issued.clone()
    }

    /// The latest key issued for `account`.
    pub fn key_of(&self, account: &str) -> Option<Issued> {
        self.issued()
            .into_iter()
            .rev()
            .find(|k| k.request["metadata"]["tokengate"]["service_account"] == account)
    }

    pub fn invalidated(&self) -> Vec<String> {
        self.keys.lock().unwrap().invalidated.clone()
    }

    /// Invalidates a key behind the gateway's back, as an operator might.
    pub fn revoke(&self, id: &str) {
        self.keys.lock().unwrap().invalidated.push(id.to_owned());
    }

    /// The `Authorization` values of the requests that were not API-key calls, in order.
    pub fn forwarded_authorizations(&self) -> Vec<Option<String>> {
        self.upstream
            .requests()
            .iter()
            .filter(|r| r.uri.path() != "/_security/api_key")
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    }
}

fn answer(keys: &Mutex<Keys>, admin: &str, request: &Recorded) -> Response<FakeBody> {
    let presented = request.header("authorization").unwrap_or("").to_owned();
    let mut keys = keys.lock().unwrap();
    let revoked = keys
        .issued
        .iter()
        .any(|k| k.authorization == presented && keys.invalidated.contains(&k.id));
    if revoked {
        return reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": {"type": "security_exception", "reason": "api key is invalidated"}, "status": 401}),
        );
    }
    let key_call = matches!(request.method, Method::POST | Method::DELETE);
    if request.uri.path() != "/_security/api_key" || !key_call {
        return default_response();
    }
    if presented != admin {
        return reply(
            StatusCode::FORBIDDEN,
            &json!({"error": {"type": "security_exception", "reason": "not the admin"}, "status": 403}),
        );
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    match request.method {
        Method::POST => {
            let n = keys.issued.len() + 1;
            let id = format!("key-{n}");
            let secret = format!("secret-{n}");
            let encoded = STANDARD.encode(format!("{id}:{secret}"));
            let name = body["name"].as_str().unwrap_or("").to_owned();
            keys.issued.push(Issued {
                id: id.clone(),
                name: name.clone(),
                authorization: format!("ApiKey {encoded}"),
                request: body,
                created_with: presented,
            });
            reply(
                StatusCode::OK,
                &json!({"id": id, "name": name, "api_key": secret, "encoded": encoded}),
            )
        }
        Method::DELETE => {
            let ids: Vec<String> = body["ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            keys.invalidated.extend(ids.iter().cloned());
            reply(
                StatusCode::OK,
                &json!({"invalidated_api_keys": ids, "previously_invalidated_api_keys": [], "error_count": 0}),
            )
        }
        _ => unreachable!("only key calls get here"),
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<FakeBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
