//! Who gets in: the 401 every failure shares, 403s for the authenticated but not allowed, and
//! who may reach the cluster's own security API.

use crate::common::{
    assert_response, basic, es_forbidden, es_unauthorized, FakeUpstream, TestGateway,
};
use crate::common::{es_forbidden_service, es_rejection_reason};
use crate::common::{BAD_CREDENTIALS, CHALLENGES, ELASTIC_PASSWORD, FLEET};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use reqwest::Method;

const CREATE_ACTION: &str = "cluster:admin/xpack/security/service_account/token/create";
const MANAGE: &str = "manage_service_account,manage_security,all";

#[tokio::test]
async fn no_credentials_is_401_with_challenges_in_headers_and_body() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = "/_cluster/health?level=indices";
    let response = gw.client.get(gw.url(path)).send().await.unwrap();
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(challenges, CHALLENGES);
    let reason = format!("missing authentication credentials for REST request [{path}]");
    assert_response(response, 401, &es_unauthorized(&reason)).await;
    assert!(upstream.requests().is_empty());
}

/// A value that decodes to `prefix || qualified ":" secret`, as an attacker may forge one.
fn forge(qualified: &str, secret: &str) -> String {
    let mut raw = vec![0, 1, 0, 1];
    raw.extend_from_slice(format!("{qualified}:{secret}").as_bytes());
    STANDARD_NO_PAD.encode(raw)
}

fn swap_case(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[tokio::test]
async fn every_bad_credential_gets_a_401_naming_only_what_it_carried() {
    let upstream = FakeUpstream::start().await;
    // 45 failures from one address: past the default burst, which `throttling.rs` covers.
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nfailed_auth_burst = 100\n")
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    let raw = String::from_utf8(STANDARD_NO_PAD.decode(&value).unwrap()[4..].to_vec()).unwrap();
    let secret = raw.split_once(':').unwrap().1;
    let mut padded = value.clone();
    while padded.len() % 4 != 0 {
        padded.push('=');
    }
    let mut bad = vec![
        basic("elastic", "wrong-password"),
        basic("nobody", ELASTIC_PASSWORD),
        format!("Basic {}", STANDARD.encode("no-colon")),
        "Basic %%%".to_owned(),
        "Bearer not-a-token".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {}", &value[..value.len() - 1]),
        format!("Bearer {value}A"),
        format!("Bearer {}", swap_case(&value)),
        format!("Bearer {}", forge("elastic/kibana/t1", secret)),
        format!("Bearer {}", forge("elastic/fleet-server/t2", secret)),
        format!(
            "Bearer {}",
            forge("elastic/fleet-server/t1", "x".repeat(22).as_str())
        ),
        format!("Bearer {}", "A".repeat(5000)),
        "ApiKey c29tZTprZXk=".to_owned(),
    ];
    // The secret with its last character changed: same length, one bit of difference.
    let mut tweaked = secret.to_owned();
    let last = tweaked.pop().unwrap();
    tweaked.push(if last == 'A' { 'B' } else { 'A' });
    bad.push(format!(
        "Bearer {}",
        forge("elastic/fleet-server/t1", &tweaked)
    ));
    for path in [
        "/_cluster/health",
        "/_security/_authenticate",
        "/_security/user",
    ] {
        for authorization in &bad {
            let response = gw
                .client
                .get(gw.url(path))
                .header("authorization", authorization)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{path} with {authorization}");
            assert_eq!(
                response
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .count(),
                3
            );
            let reason = es_rejection_reason(authorization);
            assert_response(response, 401, &es_unauthorized(&reason)).await;
        }
    }
    assert!(upstream.requests().is_empty());
    // Padded input is the same token, and authenticates.
    let response = gw
        .with_token(Method::GET, "/", &padded)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_failed_service_token_is_named_as_elasticsearch_names_it() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nfailed_auth_burst = 100\n")
        .build()
        .await;
    gw.create_token(FLEET, "token1").await;
    let secret = "x".repeat(22);
    for (value, reason) in [
        // Wrong secret for an existing token.
        (
            forge("elastic/fleet-server/token1", &secret),
            "failed to authenticate service account [elastic/fleet-server] with token name [token1]",
        ),
        // A token that does not exist, an account that does not exist, a foreign namespace, a
        // short secret: the same words, naming only what the value carries.
        (
            forge("elastic/fleet-server/nope", &secret),
            "failed to authenticate service account [elastic/fleet-server] with token name [nope]",
        ),
        (
            forge("elastic/ghost/t", &secret),
            "failed to authenticate service account [elastic/ghost] with token name [t]",
        ),
        (
            forge("acme/app/t9", &secret),
            "failed to authenticate service account [acme/app] with token name [t9]",
        ),
        (
            forge("elastic/kibana/k", "short"),
            "failed to authenticate service account [elastic/kibana] with token name [k]",
        ),
        // Not a service token as Elasticsearch parses one: the generic answer.
        (forge("elastic/kibana/_bad", &secret), BAD_CREDENTIALS),
        (forge("elastic/kibana", &secret), BAD_CREDENTIALS),
        ("bm90LWEtdG9rZW4".to_owned(), BAD_CREDENTIALS),
    ] {
        for path in ["/_cluster/health", "/_security/_authenticate"] {
            let response = gw.with_token(Method::GET, path, &value).send().await.unwrap();
            let challenges: Vec<_> = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(challenges, CHALLENGES, "{path}");
            assert_response(response, 401, &es_unauthorized(reason)).await;
        }
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .client
        .get(gw.url("/"))
        .header("authorization", format!("Bearer {value}"))
        .header("authorization", crate::common::basic_elastic())
        .send()
        .await
        .unwrap();
    assert_response(response, 401, &es_unauthorized(BAD_CREDENTIALS)).await;
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_user_without_the_privilege_cannot_create_tokens() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .user("bob", "bob-password", &["viewer", "monitor"])
        .build()
        .await;
    let response = gw
        .client
        .post(gw.url("/_security/service/elastic/fleet-server/credential/token/t1"))
        .header("authorization", basic("bob", "bob-password"))
        .send()
        .await
        .unwrap();
    let expected = es_forbidden(CREATE_ACTION, "bob", "viewer,monitor", MANAGE);
    assert_response(response, 403, &expected).await;
    assert!(gw.state.store.is_empty());
}

#[tokio::test]
async fn a_configured_admin_role_grants_token_management() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nadmin_roles = [\"token_admin\"]\n")
        .user("ops", "ops-password", &["token_admin"])
        .build()
        .await;
    let response = gw
        .client
        .post(gw.url("/_security/service/elastic/kibana/credential/token/k1"))
        .header("authorization", basic("ops", "ops-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(gw.state.store.contains("elastic/kibana/k1"));
}

#[tokio::test]
async fn a_service_token_cannot_create_tokens() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(
            Method::POST,
            "/_security/service/elastic/fleet-server/credential/token/t2",
            &value,
        )
        .send()
        .await
        .unwrap();
    let expected = es_forbidden_service(CREATE_ACTION, "elastic/fleet-server", MANAGE);
    assert_response(response, 403, &expected).await;
    assert_eq!(gw.state.store.len(), 1);
}

#[tokio::test]
async fn a_service_token_cannot_reach_the_clusters_security_api() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    const USER_GET: &str = "cluster:admin/xpack/security/user/get";
    const READ: &str = "read_security,manage_security,all";
    for (method, path, action, privileges) in [
        (Method::GET, "/_security/user", USER_GET, READ),
        (Method::GET, "//_security/user", USER_GET, READ),
        (Method::GET, "/%5Fsecurity/user", USER_GET, READ),
        (Method::GET, "/_xpack/security/user", USER_GET, READ),
        (
            Method::GET,
            "/_security/role/x",
            "cluster:admin/xpack/security/role/get",
            READ,
        ),
        (
            Method::DELETE,
            "/_security/user/foo",
            "cluster:admin/xpack/security/user/delete",
            "manage_security,all",
        ),
        (
            Method::POST,
            "/_security/api_key",
            "cluster:admin/xpack/security/api_key/create",
            "manage_own_api_key,manage_api_key,manage_security,all",
        ),
        (
            Method::POST,
            "/_security/nothing/here",
            "cluster:admin/xpack/security/*",
            "manage_security,all",
        ),
    ] {
        let response = gw.with_token(method, path, &value).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let expected = es_forbidden_service(action, FLEET, privileges);
        assert_response(response, 403, &expected).await;
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_user_without_the_privilege_cannot_reach_the_clusters_security_api() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .user("bob", "bob-password", &["viewer"])
        .build()
        .await;
    let response = gw
        .client
        .get(gw.url("/_security/user"))
        .header("authorization", basic("bob", "bob-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn the_superuser_reaches_the_clusters_security_api() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::GET, "/_security/user?pretty")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        crate::common::upstream::DEFAULT_BODY
    );
    let seen = upstream.single_request();
    assert_eq!(seen.uri, "/_security/user?pretty");
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn users_are_not_forwarded_when_configured_so() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nforward_users = false\n")
        .build()
        .await;
    let response = gw
        .as_elastic(Method::GET, "/_cluster/health")
        .send()
        .await
        .unwrap();
    assert_response(response, 401, &es_unauthorized(BAD_CREDENTIALS)).await;
    // The API itself still serves them.
    gw.create_token(FLEET, "t1").await;
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn the_first_start_creates_elastic_with_the_bootstrap_password() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .bootstrap()
        .build()
        .await;
    let users = std::fs::read_to_string(gw.data_dir.join("users")).unwrap();
    assert!(users.starts_with("elastic:$2"), "{users}");
    gw.create_token(FLEET, "t1").await;
    let response = gw
        .client
        .get(gw.url("/"))
        .header("authorization", basic("elastic", "not-it"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn schemes_are_matched_case_insensitively() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let basic_upper = crate::common::basic_elastic().replacen("Basic", "BASIC", 1);
    for authorization in [
        format!("bearer {value}"),
        format!("BEARER  {value} "),
        basic_upper,
    ] {
        let response = gw
            .client
            .get(gw.url("/"))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{authorization}");
    }
    assert_eq!(upstream.requests().len(), 3);
}

/// One keep-alive connection to `gw`: every request on it goes over the same socket.
async fn one_connection(
    gw: &TestGateway,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn status_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    token: &str,
) -> u16 {
    answer_on(sender, token).await.0
}

/// The status and body of a request with `token` on `sender`'s connection.
async fn answer_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    token: &str,
) -> (u16, String) {
    use http_body_util::BodyExt;
    sender.ready().await.unwrap();
    let request = http::Request::get("/_cluster/health")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A wrong secret repeated on one connection is answered from the connection's memory of it,
/// and the answer still names the account and token the value claims, every time.
#[tokio::test]
async fn a_repeated_wrong_secret_is_named_in_every_answer() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nfailed_auth_burst = 100\n")
        .build()
        .await;
    gw.create_token(FLEET, "kept").await;
    let wrong = forge("elastic/fleet-server/kept", &"x".repeat(22));
    let mut connection = one_connection(&gw).await;
    let reason =
        "failed to authenticate service account [elastic/fleet-server] with token name [kept]";
    for _ in 0..3 {
        let (status, body) = answer_on(&mut connection, &wrong).await;
        assert_eq!(status, 401);
        assert!(body.contains(reason), "{body}");
    }
    assert!(upstream.requests().is_empty());
}

/// A connection remembers its last token's verdict (it is not hashed again per request), but
/// never past a change to the token set: a token revoked, or a wrong one later created, is
/// judged anew on the same connection.
#[tokio::test]
async fn a_connection_that_reuses_its_token_sees_a_revocation_at_once() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let token = gw.create_token(FLEET, "kept").await;
    let other = gw.create_token(FLEET, "other").await;
    let mut connection = one_connection(&gw).await;
    for _ in 0..3 {
        assert_eq!(status_on(&mut connection, &token).await, 200);
    }
    let path = "/_security/service/elastic/fleet-server/credential/token/kept";
    let revoked = gw.as_elastic(Method::DELETE, path).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(status_on(&mut connection, &token).await, 401);
    assert_eq!(status_on(&mut connection, &token).await, 401);
    // Another token on the same connection, and back: each judged on its own.
    assert_eq!(status_on(&mut connection, &other).await, 200);
    assert_eq!(status_on(&mut connection, &token).await, 401);
}

/// A refusal is sent before the request's body is read; the connection then cannot carry the
/// next request, and the answer says so rather than leave a keep-alive client to find out by
/// losing that request. A refused request without a body keeps its connection.
#[tokio::test]
async fn a_refusal_of_a_request_whose_body_is_unread_closes_the_connection_saying_so() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let head = "POST /logs/_search HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer nope\r\n\
                content-type: application/json\r\ncontent-length: 20\r\n\r\n";
    let refused = crate::common::raw::exchange(gw.addr, head.as_bytes()).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.values("connection"), ["close"]);

    let mut connection = one_connection(&gw).await;
    connection.ready().await.unwrap();
    let request = http::Request::get("/logs/_search")
        .header("host", "gw")
        .header("authorization", "Bearer nope")
        .body(http_body_util::Empty::new())
        .unwrap();
    let refused = connection.send_request(request).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("connection").is_none());
    drop(refused);
    // The same connection serves the next request.
    assert_eq!(status_on(&mut connection, "nope").await, 401);
}
