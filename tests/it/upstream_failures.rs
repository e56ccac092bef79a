//! When the cluster cannot be reached or does not answer in time: 502 and 504, in
//! Elasticsearch's error shape.

use std::time::Duration;

use crate::common::process::{tokengate, GatewayProcess};
use crate::common::upstream::Behaviour;
use crate::common::{assert_response, es_error, FakeUpstream, TestGateway, FLEET};
use reqwest::Method;

#[tokio::test]
async fn an_upstream_where_nothing_listens_is_502() {
    let refusing = crate::common::refusing();
    let closed = refusing.addr;
    let gw = TestGateway::builder().upstream(closed).build().await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/_cluster/health", &value)
        .send()
        .await
        .unwrap();
    let expected = es_error(
        502,
        "upstream_unavailable_exception",
        "the upstream cluster could not be reached",
    );
    assert_response(response, 502, &expected).await;
    // The gateway's own API does not depend on the upstream.
    let response = gw
        .as_elastic(
            Method::GET,
            "/_security/service/elastic/fleet-server/credential",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_upstream_slower_than_the_deadline_is_504() {
    // Far beyond the deadline; the fake's delay is the behaviour under test, not a wait.
    let upstream = FakeUpstream::builder()
        .delay(Duration::from_secs(30))
        .start()
        .await;
    let (gw, value) = with_short_timeout(&upstream).await;
    let response = gw
        .with_token(Method::GET, "/_cluster/health", &value)
        .send()
        .await
        .unwrap();
    assert_response(response, 504, &timed_out()).await;
    assert_eq!(upstream.single_request().uri, "/_cluster/health");
}

/// The 504 of an upstream that did not start answering within `[upstream] timeout`.
fn timed_out() -> serde_json::Value {
    es_error(
        504,
        "upstream_timeout_exception",
        "the upstream cluster did not answer in time",
    )
}

/// A gateway in front of `upstream` with a 300 ms upstream timeout, and a token.
async fn with_short_timeout(upstream: &FakeUpstream) -> (TestGateway, String) {
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[upstream]\ntimeout = \"300ms\"\n")
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    (gw, value)
}

/// [`with_short_timeout`], and one request answered: its connection to the node is left idle
/// in the pool.
async fn one_request_answered(upstream: &FakeUpstream) -> (TestGateway, String) {
    let (gw, value) = with_short_timeout(upstream).await;
    answered(&gw, &value).await;
    (gw, value)
}

/// `GET /` answered, its body read: the connection goes back to the pool.
async fn answered(gw: &TestGateway, value: &str) {
    let response = gw.with_token(Method::GET, "/", value).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

/// The next request is held by the node: it ends in a 504 at its own deadline, on the one
/// connection every request so far went out on.
async fn times_out_on_the_pooled_connection(
    gw: &TestGateway,
    upstream: &FakeUpstream,
    value: &str,
) {
    upstream.set_behaviour(Behaviour::Hold);
    let response = gw
        .with_token(Method::GET, "/_cluster/health", value)
        .send()
        .await
        .unwrap();
    assert_response(response, 504, &timed_out()).await;
    assert_eq!(
        upstream.connections(),
        1,
        "every request went out on one connection"
    );
}

#[tokio::test]
async fn a_pooled_connection_keeps_the_deadline_for_its_next_request() {
    // The connection's one timer was last set for the first request; the second, on the same
    // connection, must still end at its own deadline.
    let upstream = FakeUpstream::start().await;
    let (gw, value) = one_request_answered(&upstream).await;
    times_out_on_the_pooled_connection(&gw, &upstream, &value).await;
}

#[tokio::test]
async fn a_deadline_that_passed_while_the_connection_idled_is_set_again() {
    // The first request's deadline passes while its connection idles in the pool (the wait
    // is the behaviour under test): the timer has fired, and each request after registers it
    // anew for itself.
    let upstream = FakeUpstream::start().await;
    let (gw, value) = one_request_answered(&upstream).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    // Answered: the deadline is the new request's, not the one that passed.
    answered(&gw, &value).await;
    times_out_on_the_pooled_connection(&gw, &upstream, &value).await;
}

#[tokio::test]
async fn an_upstream_that_resets_the_connection_is_502() {
    // Reads the request, and closes without answering.
    let upstream = FakeUpstream::start().await;
    upstream.set_behaviour(Behaviour::DropAfterRead);
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_unavailable_exception");
    assert!(
        upstream.forwarded() >= 1,
        "the request reached the upstream"
    );
}

#[tokio::test]
#[should_panic(expected = "fake upstream handler panicked")]
async fn a_panic_in_the_fake_upstream_fails_the_test() {
    let upstream = FakeUpstream::builder()
        .handler(|_| async { panic!("handler bug") })
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    // The gateway passes the fake's 500 on; dropping the fake then re-raises the panic.
    assert_eq!(response.status(), 500);
    drop(upstream);
}

#[tokio::test]
async fn a_refused_connection_is_logged_with_its_cause_and_the_upstream_address() {
    let refusing = crate::common::refusing();
    let closed = refusing.addr;
    let dir = tempfile::tempdir().unwrap();
    let password = "failure-log-pw";
    let mut child = GatewayProcess::spawn(
        tokengate()
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{closed}"))
            .arg("--data-dir")
            .arg(dir.path())
            .env("ELASTIC_PASSWORD", password),
    )
    .await;
    let value = child.create_token("t1", password).await;
    let response = crate::common::client()
        .get(format!("http://{}/_cluster/health", child.addr))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let line = child.wait_for("connection refused").await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("http://{closed}")), "{line}");
}
