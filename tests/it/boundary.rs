//! The boundary as an attacker meets it: path tricks, framing a proxy must not pass on, header
//! and body limits, stalled bodies both ways, and a bounded upstream.

use std::sync::Arc;
use std::time::Duration;

use crate::common::upstream::{default_response, streaming};
use crate::common::{raw, FakeUpstream, TestGateway, FLEET};
use bytes::Bytes;
use http::{Response, StatusCode};
use reqwest::Method;
use tokio::sync::{mpsc, Notify};

/// Bound on waits for an event in these tests; a hang fails instead of stalling.
const WAIT: Duration = Duration::from_secs(10);

/// A gateway with a token in front of `upstream`; returns both.
async fn gateway_with_token(upstream: &FakeUpstream, config: &str) -> (TestGateway, String) {
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(config)
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    (gw, token)
}

#[tokio::test]
async fn path_tricks_never_reach_the_clusters_security_api() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    for path in [
        "/x/../_security/user",
        "/./_security/user",
        "/%2e/_security/user",
        "/%2E%2E/_security/user",
        "/_security/%2e%2e/x",
        "/a%2F..%2F_security/user",
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\nHost: gw\nAuthorization: Bearer {token}\nConnection: close"
        );
        let response = raw::send(gw.addr, &head).await;
        assert_eq!(response.status, 400, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body["error"]["type"], "illegal_argument_exception",
            "{path}"
        );
    }
    for path in [
        "/_xpack//security/user",
        "//_security/user",
        "/_xpack%2Fsecurity/user",
        "/%5Fsecurity/user",
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\nHost: gw\nAuthorization: Bearer {token}\nConnection: close"
        );
        assert_eq!(raw::send(gw.addr, &head).await.status, 403, "{path}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn trace_and_connect_are_refused_and_never_forwarded() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    for head in [
        format!("TRACE / HTTP/1.1\nHost: gw\nAuthorization: Bearer {token}\nConnection: close"),
        format!(
            "CONNECT es.example:443 HTTP/1.1\nHost: es.example:443\nAuthorization: Bearer {token}\nConnection: close"
        ),
    ] {
        let response = raw::send(gw.addr, &head).await;
        assert_eq!(response.status, 405, "{head}");
        assert_eq!(
            response.values("allow"),
            ["GET,HEAD,POST,PUT,DELETE,PATCH,OPTIONS"]
        );
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn host_must_be_present_once_on_http_1_1() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    // No `Connection: close` from the client: reading to EOF proves the gateway closed.
    let two =
        format!("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer {token}\r\n\r\n");
    let response = raw::exchange(gw.addr, two.as_bytes()).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.values("connection"), ["close"]);
    let none = format!("GET / HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert_eq!(raw::exchange(gw.addr, none.as_bytes()).await.status, 400);
    assert!(upstream.requests().is_empty());
    // HTTP/1.0 never required Host.
    let old = format!("GET / HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert_eq!(raw::exchange(gw.addr, old.as_bytes()).await.status, 200);
}

#[tokio::test]
async fn long_request_lines_and_header_blocks_get_414_and_431() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    let long_path = format!("/{}", "a".repeat(5000));
    let response = gw
        .with_token(Method::GET, &long_path, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 414);
    // Within the read buffer: the gateway's own check answers.
    let response = gw
        .with_token(Method::GET, "/", &token)
        .header("x-big", "v".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    // Past it hyper answers 431 itself and may close before the client has finished writing;
    // either way nothing is forwarded and nothing past the buffer is held.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nX-Huge: {}\r\n\r\n",
        "v".repeat(300_000)
    );
    let answer = raw::exchange_bytes(gw.addr, head.as_bytes()).await;
    if !answer.is_empty() {
        assert_eq!(raw::parse_answer(&answer).status, 431);
    }
    let response = gw
        .with_token(Method::GET, "/", &token)
        .header("x-fine", "v".repeat(8_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn websocket_handshake_fields_are_stripped_and_an_upstream_101_is_a_502() {
    let upstream = FakeUpstream::builder()
        .handler(|request| {
            let switch = request.uri.path() == "/switch";
            async move {
                if switch {
                    let mut response = Response::new(crate::common::upstream::full(""));
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    response
                } else {
                    default_response()
                }
            }
        })
        .start()
        .await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    let head = format!(
        "GET / HTTP/1.1\nHost: gw\nAuthorization: Bearer {token}\nConnection: Upgrade, close\n\
         Upgrade: websocket\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\
         HTTP2-Settings: AAMAAABkAAQAAP__"
    );
    assert_eq!(raw::send(gw.addr, &head).await.status, 200);
    let seen = upstream.single_request();
    for gone in [
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "http2-settings",
    ] {
        assert!(seen.header(gone).is_none(), "{gone} was forwarded");
    }
    let response = gw
        .with_token(Method::GET, "/switch", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}

#[tokio::test]
async fn a_broken_chunked_body_is_the_clients_400() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    let request = format!(
        "POST /logs/_doc HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
         5\r\n{{\"a\":\r\nzz-not-hex\r\n\r\n"
    );
    let response = raw::exchange(gw.addr, request.as_bytes()).await;
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn the_token_api_reads_its_body_first_and_refuses_a_large_one() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("/_security/service/{FLEET}/credential/token/big");
    let response = gw
        .as_elastic(Method::POST, &path)
        .body("x".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(gw.state.store.is_empty(), "a token was created anyway");
    let response = gw
        .as_elastic(Method::POST, &path)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_body_that_stops_arriving_times_out_with_408() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) =
        gateway_with_token(&upstream, "[server]\nclient_body_timeout = \"200ms\"\n").await;
    let request = format!(
        "POST /logs/_doc HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 100\r\n\r\n{{\"only\":\"part"
    );
    // The client sends 14 of 100 bytes and then nothing: the gateway answers and closes.
    let response = raw::exchange(gw.addr, request.as_bytes()).await;
    assert_eq!(response.status, 408);
}

#[tokio::test]
async fn an_upstream_body_that_stops_arriving_is_cut() {
    let (feed, chunks) = mpsc::channel::<Bytes>(1);
    let chunks = Arc::new(std::sync::Mutex::new(Some(chunks)));
    let upstream = FakeUpstream::builder()
        .handler(move |_| {
            let chunks = chunks.lock().unwrap().take().unwrap();
            async move { Response::new(streaming(chunks)) }
        })
        .start()
        .await;
    let (gw, token) = gateway_with_token(&upstream, "[upstream]\nbody_timeout = \"200ms\"\n").await;
    let response = gw
        .with_token(Method::GET, "/_search", &token)
        .send()
        .await
        .unwrap();
    feed.send(Bytes::from_static(b"{\"hits\":")).await.unwrap();
    // The upstream keeps its side open (`feed` lives) and sends nothing more.
    let body = tokio::time::timeout(WAIT, response.bytes())
        .await
        .expect("a stalled upstream body pinned the client");
    assert!(body.is_err(), "a cut body must not look complete");
    drop(feed);
}

#[tokio::test]
async fn upstream_slots_are_bounded_and_excess_gets_503() {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let upstream = FakeUpstream::builder()
        .handler({
            let (arrived, release) = (arrived.clone(), release.clone());
            move |request| {
                let hold = request.uri.path() == "/hold";
                let (arrived, release) = (arrived.clone(), release.clone());
                async move {
                    if hold {
                        arrived.notify_one();
                        release.notified().await;
                    }
                    default_response()
                }
            }
        })
        .start()
        .await;
    let config = "[upstream]\nmax_connections = 1\nmax_pending = 0\n";
    let (gw, token) = gateway_with_token(&upstream, config).await;
    let held = tokio::spawn(gw.with_token(Method::GET, "/hold", &token).send());
    tokio::time::timeout(WAIT, arrived.notified())
        .await
        .expect("the held request never arrived");
    let busy = gw
        .with_token(Method::GET, "/other", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["type"], "es_rejected_execution_exception");
    release.notify_one();
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), 200);
    held.bytes().await.unwrap();
    // The slot came back with the end of the held response's body.
    let after = gw
        .with_token(Method::GET, "/other", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn an_h2_requests_authority_names_the_host() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    let h2 = crate::common::h2c_client();
    let response = h2
        .get(gw.url("/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen = upstream.single_request();
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    for fields in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
    ] {
        // A smuggling attempt: what one hop reads as the body, another reads as a request.
        let request = format!(
            "POST /logs/_doc HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n{fields}\r\n\r\n\
             0\r\n\r\nGET /_security/user HTTP/1.1\r\nHost: gw\r\n\r\n"
        );
        let response = raw::exchange(gw.addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{fields}");
        assert_eq!(response.values("connection"), ["close"]);
    }
    assert!(upstream.requests().is_empty());
    // An honest chunked request still passes.
    let request = format!(
        "POST /logs/_doc HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    assert_eq!(raw::exchange(gw.addr, request.as_bytes()).await.status, 200);
    assert_eq!(upstream.single_request().body_len, 2);
}

#[tokio::test]
async fn a_smuggling_head_after_a_forwarded_body_on_the_same_connection_is_refused() {
    let upstream = FakeUpstream::start().await;
    let (gw, token) = gateway_with_token(&upstream, "").await;
    // The first body is passed over by the framing scan (a POST framed by its length); the
    // head after it must still be seen.
    let body = "{\"index\":{}}\n{\"field\":\"value\"}\n";
    let request = format!(
        "POST /_bulk HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n{body}\
         POST /logs/_doc HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /_security/user HTTP/1.1\r\nHost: gw\r\n\r\n",
        body.len()
    );
    let answer = raw::exchange_bytes(gw.addr, request.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{text}");
    assert_eq!(upstream.single_request().body_len, body.len() as u64);
}
