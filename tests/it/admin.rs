//! The admin listener: liveness, readiness (upstream reachable, not draining) and Prometheus
//! metrics, without a token, on a port of its own.

use crate::common::{eventually_get, within, FakeUpstream, TestGateway, DEADLINE, FLEET};
use reqwest::Method;
use std::sync::Arc;
use tokio::sync::Notify;

#[tokio::test]
async fn liveness_and_readiness_need_no_token() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    assert_eq!(gw.admin_get("/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(gw.admin_get("/readyz").await, (200, "ready\n".to_owned()));
    let (status, body) = gw.admin_get("/nope").await;
    assert_eq!(status, 404, "{body}");
    // The gateway's own port does not answer health checks without a token.
    let response = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn readiness_follows_the_cluster_unless_configured_otherwise() {
    let refusing = crate::common::refusing();
    let addr = refusing.addr;
    let gw = TestGateway::builder().upstream(addr).build().await;
    assert_eq!(
        gw.admin_get("/readyz").await,
        (503, "not ready: upstream unreachable\n".to_owned())
    );
    assert_eq!(gw.admin_get("/livez").await.0, 200);
    let gw = TestGateway::builder()
        .upstream(addr)
        .config("[admin]\nready_requires_upstream = false\n")
        .build()
        .await;
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
}

#[tokio::test]
async fn a_draining_gateway_is_not_ready_while_requests_finish() {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let upstream = FakeUpstream::builder()
        .hold(&arrived, &release)
        .start()
        .await;
    let mut gw = TestGateway::start(&upstream).await;
    let token = gw.create_token(FLEET, "t1").await;
    let held = tokio::spawn(gw.with_token(Method::GET, "/", &token).send());
    within(
        "the request to reach the upstream",
        DEADLINE,
        arrived.notified(),
    )
    .await;
    gw.begin_stop();
    let body = eventually_get("not ready while draining", DEADLINE, || async {
        match gw.admin_get("/readyz").await {
            (503, body) => Ok(body),
            (status, _) => Err(format!("readyz {status}")),
        }
    })
    .await;
    assert_eq!(body, "not ready: draining\n");
    release.notify_one();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_outcomes_failures_and_tokens() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let token = gw.create_token(FLEET, "t1").await;
    gw.create_token(FLEET, "t2").await;
    for _ in 0..3 {
        let response = gw
            .with_token(Method::GET, "/logs/_search", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let wrong = gw
        .with_token(
            Method::GET,
            "/",
            "AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL3QxOm5vcGU",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "tokengate_requests_total{method=\"GET\",outcome=\"forwarded\"} 3",
        "tokengate_requests_total{method=\"GET\",outcome=\"401\"} 1",
        "tokengate_requests_total{method=\"POST\",outcome=\"api\"} 2",
        "tokengate_authentication_failures_total{kind=\"bearer\"} 1",
        "tokengate_tokens{account=\"elastic/fleet-server\"} 2",
        "tokengate_tokens{account=\"elastic/kibana\"} 0",
        "tokengate_request_duration_seconds_count 6",
        "tokengate_upstream_duration_seconds_count 3",
        "tokengate_journal_batch_records_count",
        "tokengate_ready 1",
        "tokengate_upstream_requests_in_flight 0",
        "# TYPE tokengate_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // The metrics request's own connection is not the gateway's: one client connection (the
    // test client's pooled one) is open on the gateway's port.
    assert!(text.contains("tokengate_client_connections 1"), "{text}");
}
