//! The access log: a line per request once its response is sent, with who asked, what went out
//! and how long it took; never the query string unless asked for.

use crate::common::upstream::DEFAULT_BODY;
use crate::common::{FakeUpstream, TestGateway, FLEET};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn every_request_gets_a_line_with_its_principal_status_and_sizes() {
    let upstream = FakeUpstream::start().await;
    // The harness's own data directory goes with the gateway; this one outlives it.
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir.path())
        .config("[access_log]\nformat = \"json\"\npath = \"access.log\"\n")
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/logs/_search?q=secret-term", &token)
        .header("x-opaque-id", "job-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), DEFAULT_BODY);
    let refused = gw.client.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let path = gw.data_dir.join("access.log");
    gw.stop().await;

    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains("secret-term"), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let create = &lines[0];
    assert_eq!(create["http.request.method"], "POST");
    assert_eq!(create["http.response.status_code"], 200);
    assert_eq!(create["user.name"], "elastic");
    assert!(create["upstream.duration_seconds"].is_null());
    let search = &lines[1];
    assert_eq!(search["url.original"], "/logs/_search");
    assert_eq!(search["http.response.status_code"], 200);
    assert_eq!(search["user.name"], "elastic/fleet-server/t1");
    assert_eq!(search["opaque_id"], "job-42");
    assert_eq!(search["http.response.body.bytes"], DEFAULT_BODY.len());
    assert_eq!(search["completed"], true);
    assert!(search["upstream.duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(search["client.address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let denied = &lines[2];
    assert_eq!(denied["http.response.status_code"], 401);
    assert!(denied["user.name"].is_null());
    assert!(denied["http.response.body.bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_query_is_logged_only_when_asked_for() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir.path())
        .config("[access_log]\nformat = \"text\"\npath = \"access.log\"\nquery = true\n")
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    gw.with_token(Method::GET, "/logs/_search?q=term", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = gw.data_dir.join("access.log");
    gw.stop().await;
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.contains("\"GET /logs/_search?q=term\" 200 - 40"),
        "{line}"
    );
    assert!(line.contains(" elastic/fleet-server/t1 -"), "{line}");
}
