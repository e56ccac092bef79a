//! Creating service tokens: answers, generated names, the wire format, and every refusal.

use crate::common::{assert_response, es_error, json_of, FakeUpstream, TestGateway, FLEET};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::Method;
use serde_json::json;

const TOKEN_PATH: &str = "/_security/service/elastic/fleet-server/credential/token";

fn invalid_name(name: &str) -> serde_json::Value {
    let reason = format!(
        "Validation Failed: 1: invalid service token name [{name}]. service account token name must have at least 1 \
         character and at most 256 characters that are alphanumeric (A-Z, a-z, 0-9) or hyphen (-) or underscore \
         (_). It must not begin with an underscore (_).;"
    );
    es_error(400, "action_request_validation_exception", &reason)
}

/// Decodes a token value into (qualified name, secret), checking the 4-byte version prefix.
fn decode(value: &str) -> (String, String) {
    assert!(!value.ends_with('='), "issued values are unpadded: {value}");
    let raw = STANDARD_NO_PAD.decode(value).unwrap();
    assert_eq!(raw[..4], [0, 1, 0, 1]);
    let text = String::from_utf8(raw[4..].to_vec()).unwrap();
    let (qualified, secret) = text.split_once(':').unwrap();
    (qualified.to_owned(), secret.to_owned())
}

#[tokio::test]
async fn post_and_put_with_a_name_create_a_token_that_authenticates() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    for (method, name) in [(Method::POST, "token1"), (Method::PUT, "token2")] {
        let path = format!("{TOKEN_PATH}/{name}");
        let response = gw.as_elastic(method, &path).send().await.unwrap();
        let headers = response.headers().clone();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-elastic-product"], "Elasticsearch");
        let value = body["token"]["value"].as_str().unwrap().to_owned();
        assert_eq!(
            body,
            json!({"created": true, "token": {"name": name, "value": value}})
        );
        let (qualified, secret) = decode(&value);
        assert_eq!(qualified, format!("elastic/fleet-server/{name}"));
        assert_eq!(secret.len(), 22);
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 16);
        let forwarded = gw
            .with_token(Method::GET, "/_cluster/health", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(forwarded.status(), 200);
    }
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn the_wire_format_matches_elasticsearchs_example() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "token1").await;
    // The example's 43rd character also carries the top bits of the secret's first byte, so
    // only the 42 characters that depend on the name alone are fixed.
    assert!(
        value.starts_with(&"AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL3Rva2VuMTo"[..42]),
        "{value}"
    );
}

#[tokio::test]
async fn post_without_a_name_generates_one() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::POST, TOKEN_PATH)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    let name = body["token"]["name"].as_str().unwrap();
    let id = name.strip_prefix("token_").unwrap();
    assert_eq!(id.len(), 20, "{name}");
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let value = body["token"]["value"].as_str().unwrap();
    assert_eq!(decode(value).0, format!("{FLEET}/{name}"));
    let forwarded = gw.with_token(Method::GET, "/", value).send().await.unwrap();
    assert_eq!(forwarded.status(), 200);
}

#[tokio::test]
async fn invalid_names_are_refused_with_elasticsearchs_validation_message() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let long = "a".repeat(257);
    for (in_url, name) in [
        (long.as_str(), long.as_str()),
        ("_leading", "_leading"),
        ("caf%C3%A9", "café"),
        ("a%2Fb", "a/b"),
        ("sp%20ace", "sp ace"),
    ] {
        let path = format!("{TOKEN_PATH}/{in_url}");
        let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
        assert_response(response, 400, &invalid_name(name)).await;
    }
    assert!(gw.state.store.is_empty());
}

#[tokio::test]
async fn names_of_one_and_256_characters_are_accepted() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    for name in ["a".to_owned(), "b".repeat(256), "-x_Y-9".to_owned()] {
        let value = gw.create_token(FLEET, &name).await;
        assert_eq!(decode(&value).0, format!("{FLEET}/{name}"));
    }
    assert_eq!(gw.state.store.len(), 3);
}

#[tokio::test]
async fn a_literal_slash_makes_a_path_without_a_handler() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{TOKEN_PATH}/a/b");
    let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
    let expected = json!({
        "error": format!("no handler found for uri [{path}] and method [POST]"),
        "status": 400
    });
    assert_response(response, 400, &expected).await;
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_duplicate_name_is_a_version_conflict() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let first = gw.create_token(FLEET, "dup").await;
    let response = gw
        .as_elastic(Method::PUT, &format!("{TOKEN_PATH}/dup"))
        .send()
        .await
        .unwrap();
    let reason = "[service_account_token-elastic/fleet-server/dup]: version conflict, document already exists (current version [1])";
    assert_response(
        response,
        409,
        &es_error(409, "version_conflict_engine_exception", reason),
    )
    .await;
    // The first token is untouched.
    let forwarded = gw
        .with_token(Method::GET, "/", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
}

#[tokio::test]
async fn an_unknown_account_is_an_illegal_argument() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::POST, "/_security/service/x/y/credential/token/t1")
        .send()
        .await
        .unwrap();
    let expected = es_error(
        400,
        "illegal_argument_exception",
        "service account [x/y] does not exist",
    );
    assert_response(response, 400, &expected).await;
    assert!(gw.state.store.is_empty());
}

#[tokio::test]
async fn an_unknown_query_parameter_is_refused() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{TOKEN_PATH}/t1");
    let response = gw
        .as_elastic(Method::POST, &format!("{path}?foo=bar"))
        .send()
        .await
        .unwrap();
    let reason = format!("request [{path}] contains unrecognized parameter: [foo]");
    assert_response(
        response,
        400,
        &es_error(400, "illegal_argument_exception", &reason),
    )
    .await;
    assert!(gw.state.store.is_empty());
}

#[tokio::test]
async fn refresh_values_are_accepted() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    for (i, refresh) in ["wait_for", "true", "false"].iter().enumerate() {
        let path = format!("{TOKEN_PATH}/r{i}?refresh={refresh}");
        let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{refresh}: {body}");
        assert_eq!(body["token"]["name"], format!("r{i}"));
    }
}

#[tokio::test]
async fn pretty_indents_the_answer() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{TOKEN_PATH}/p1?pretty");
    let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("{\n  \"created\""), "{text}");
    assert!(text.lines().count() >= 6, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["token"]["name"], "p1");
    // Errors are indented too.
    let response = gw
        .as_elastic(Method::POST, &format!("{TOKEN_PATH}/_bad?pretty"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("{\n  \"error\" : {\n"), "{text}");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{TOKEN_PATH}/t1");
    let response = gw.as_elastic(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST,PUT,DELETE");
    let expected = json!({
        "error": format!("Incorrect HTTP method for uri [{path}] and method [GET], allowed: [POST, PUT, DELETE]"),
        "status": 405
    });
    assert_response(response, 405, &expected).await;
    assert!(upstream.requests().is_empty());
}
