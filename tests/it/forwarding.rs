//! Forwarding: the gateway is transparent except for credentials, hop-by-hop fields and the
//! forwarding headers it adds.

use crate::common::upstream::{default_response, E2E_HEADER};
use crate::common::{raw, FakeUpstream, TestGateway, FLEET};
use http::HeaderValue;
use reqwest::Method;

/// Response headers that legitimately differ between two answers to the same request.
const VARYING: [&str; 1] = ["date"];

/// Headers of a request as the upstream saw it, without those the gateway adds on purpose.
fn comparable(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = headers.clone();
    for added in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
        headers.remove(added);
    }
    headers
}

#[tokio::test]
async fn the_same_request_direct_and_through_the_gateway_gets_the_same_answer() {
    let upstream = FakeUpstream::builder().echo().start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let direct = crate::common::client();
    let cases = [
        (Method::GET, "/logs-*/_search?q=level:error&size=3", None),
        (
            Method::POST,
            "/logs/_doc?refresh=true",
            Some(r#"{"message":"hello","n":[1,2,3]}"#),
        ),
        (Method::PUT, "/logs", Some("{}")),
        (Method::HEAD, "/logs", None),
        (Method::DELETE, "/logs/_doc/1", None),
    ];
    for (method, path, body) in &cases {
        let mut to_upstream = direct
            .request(method.clone(), format!("http://{}{path}", upstream.addr))
            .header("x-opaque-id", "same-request");
        let mut to_gateway = gw
            .with_token(method.clone(), path, &value)
            .header("x-opaque-id", "same-request");
        if let Some(body) = body {
            to_upstream = to_upstream
                .header("content-type", "application/json")
                .body(*body);
            to_gateway = to_gateway
                .header("content-type", "application/json")
                .body(*body);
        }
        let a = to_upstream.send().await.unwrap();
        let b = to_gateway.send().await.unwrap();
        assert_eq!(a.status(), b.status(), "{method} {path}");
        let (mut ha, mut hb) = (a.headers().clone(), b.headers().clone());
        for name in VARYING {
            ha.remove(name);
            hb.remove(name);
        }
        assert_eq!(ha, hb, "{method} {path}");
        assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap());
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), cases.len() * 2);
    for pair in seen.chunks(2) {
        let (direct, forwarded) = (&pair[0], &pair[1]);
        assert_eq!(forwarded.method, direct.method);
        assert_eq!(forwarded.uri, direct.uri);
        assert_eq!(forwarded.body, direct.body);
        assert_eq!(
            comparable(&forwarded.headers),
            direct.headers,
            "{}",
            direct.uri
        );
    }
}

#[tokio::test]
async fn method_path_and_query_reach_the_upstream_unchanged() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let cases = [
        (Method::GET, "/"),
        (Method::GET, "/_cat/indices?v&h=index,health&s=index:desc"),
        (
            Method::POST,
            "/my-index/_search?typed_keys=true&q=a%20b%2Bc",
        ),
        (Method::PATCH, "/x/_y"),
        (Method::OPTIONS, "/_nodes/stats"),
        (Method::GET, "/%3Clogs-%7Bnow%2Fd%7D%3E/_search"),
    ];
    for (method, path) in &cases {
        let response = gw
            .with_token(method.clone(), path, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), cases.len());
    for (request, (method, path)) in seen.iter().zip(&cases) {
        assert_eq!(&request.method, method);
        assert_eq!(request.uri.to_string(), *path);
    }
}

#[tokio::test]
async fn the_clients_credentials_never_reach_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/_cluster/health", &value)
        .header("es-security-runas-user", "elastic")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gw
        .as_elastic(Method::GET, "/_cluster/health")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "Basic users are forwarded too");
    for seen in upstream.requests() {
        assert!(
            seen.headers.get("authorization").is_none(),
            "{:?}",
            seen.headers
        );
        assert!(seen.headers.get("es-security-runas-user").is_none());
    }
}

#[tokio::test]
async fn the_configured_upstream_credential_replaces_the_clients() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[upstream]\nauthorization = \"ApiKey abc\"\nservice_credentials = \"gateway\"\n")
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    gw.with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    gw.as_elastic(Method::GET, "/").send().await.unwrap();
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    for request in seen {
        let values: Vec<_> = request.headers.get_all("authorization").iter().collect();
        assert_eq!(values, [HeaderValue::from_static("ApiKey abc")]);
    }
}

#[tokio::test]
async fn forwarding_headers_are_added() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    gw.with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    gw.with_token(Method::GET, "/", &value)
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    let seen = upstream.requests();
    let gateway = gw.addr.to_string();
    let upstream_addr = upstream.addr.to_string();
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some(gateway.as_str()));
    assert_eq!(seen[0].header("host"), Some(upstream_addr.as_str()));
    // Not from a trusted proxy: the client's claim is replaced by what the gateway saw.
    assert_eq!(seen[1].header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_trusted_proxys_forwarding_chain_is_extended() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    gw.with_token(Method::GET, "/", &value)
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "192.0.2.1")
        .send()
        .await
        .unwrap();
    let seen = upstream.single_request();
    assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.1, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-real-ip"), Some("192.0.2.1"));
}

#[tokio::test]
async fn hop_by_hop_request_fields_are_removed() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let head = format!(
        "GET /_cluster/health?wait_for_status=green HTTP/1.1\n\
         Host: gateway.example\n\
         Authorization: Bearer {value}\n\
         Connection: close, x-foo, X-Bar\n\
         x-foo: 1\n\
         x-bar: 2\n\
         Keep-Alive: timeout=5\n\
         TE: trailers\n\
         Proxy-Authorization: Basic eDp5\n\
         Proxy-Connection: keep-alive\n\
         Upgrade: websocket\n\
         X-Opaque-Id: op-1\n\
         X-Kept: yes"
    );
    let response = raw::send(gw.addr, &head).await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = upstream.single_request();
    for gone in [
        "connection",
        "x-foo",
        "x-bar",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "authorization",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-opaque-id"), Some("op-1"));
    assert_eq!(seen.header("x-kept"), Some("yes"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.example"));
    assert_eq!(seen.uri, "/_cluster/health?wait_for_status=green");
}

#[tokio::test]
async fn hop_by_hop_response_fields_are_removed() {
    let upstream = FakeUpstream::builder()
        .handler(|_| async {
            let mut response = default_response();
            let headers = response.headers_mut();
            for (name, value) in [
                ("connection", "x-up, X-Up-Too"),
                ("x-up", "1"),
                ("x-up-too", "2"),
                ("keep-alive", "timeout=5, max=100"),
                ("proxy-authenticate", "Basic realm=\"proxy\""),
                ("proxy-connection", "keep-alive"),
                ("x-opaque-id", "op-2"),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
            response
        })
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let head =
        format!("GET / HTTP/1.1\nHost: gw\nAuthorization: Bearer {value}\nConnection: close");
    let response = raw::send(gw.addr, &head).await;
    assert_eq!(response.status, 200);
    for gone in [
        "x-up",
        "x-up-too",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
    ] {
        assert!(
            response.values(gone).is_empty(),
            "{gone} reached the client: {response:?}"
        );
    }
    for connection in response.values("connection") {
        assert!(!connection.contains("x-up"), "{connection}");
    }
    assert_eq!(response.values(E2E_HEADER), ["kept"]);
    assert_eq!(response.values("x-opaque-id"), ["op-2"]);
    assert_eq!(response.values("x-elastic-product"), ["Elasticsearch"]);
    assert_eq!(
        response.body,
        crate::common::upstream::DEFAULT_BODY.as_bytes()
    );
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through() {
    let upstream = FakeUpstream::builder()
        .handler(|request| {
            let status = request.uri.path().trim_start_matches('/').parse().unwrap();
            async move {
                let mut response = default_response();
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                response
            }
        })
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    for status in [201u16, 401, 403, 404, 429, 500, 503] {
        let response = gw
            .with_token(Method::GET, &format!("/{status}"), &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()[E2E_HEADER], "kept");
        assert_eq!(
            response.text().await.unwrap(),
            crate::common::upstream::DEFAULT_BODY
        );
    }
}

#[tokio::test]
async fn h2c_clients_are_forwarded_over_http1() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let h2 = crate::common::h2c_client();
    let response = h2
        .get(gw.url("/_cluster/health?local=true"))
        .bearer_auth(&value)
        .header("x-opaque-id", "h2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[E2E_HEADER], "kept");
    assert_eq!(
        response.text().await.unwrap(),
        crate::common::upstream::DEFAULT_BODY
    );
    let seen = upstream.single_request();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/_cluster/health?local=true");
    let upstream_addr = upstream.addr.to_string();
    assert_eq!(seen.header("host"), Some(upstream_addr.as_str()));
    let gateway = gw.addr.to_string();
    assert_eq!(seen.header("x-forwarded-host"), Some(gateway.as_str()));
    assert_eq!(seen.header("x-opaque-id"), Some("h2"));
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn h2c_streams_at_once_get_their_own_bodies_back_whole() {
    let upstream = FakeUpstream::builder().echo().start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let h2 = crate::common::h2c_client();
    crate::common::h2_bodies_come_back_whole(&h2, &gw.url("/logs/_doc"), &value).await;
    assert_eq!(upstream.forwarded(), crate::common::H2_BODY_SIZES.len());
}

#[tokio::test]
async fn an_upstream_path_prefix_is_put_before_every_path() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream_url(&format!("http://{}/es/", upstream.addr))
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    for path in ["/", "/_cat/health?v"] {
        let response = gw
            .with_token(Method::GET, path, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let uris: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(uris, ["/es/", "/es/_cat/health?v"]);
}
