//! Signals to the built binary: SIGTERM drains what is in flight and exits 0 with the journal
//! closed; SIGHUP reloads and never ends the process, with or without TLS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::process::{tokengate, GatewayProcess};
use crate::common::{FakeUpstream, TestGateway};
use tokio::sync::Notify;

const PASSWORD: &str = "signal-elastic-pw";
/// Bound on waits for the fake cluster; a hang fails the test instead of stalling it.
const WAIT: Duration = Duration::from_secs(10);

/// The binary on an ephemeral plain-HTTP port in front of `upstream`, state in `dir`.
async fn spawn(upstream: &FakeUpstream, dir: &Path) -> GatewayProcess {
    GatewayProcess::spawn(
        tokengate()
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", upstream.addr))
            .arg("--data-dir")
            .arg(dir)
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    // The cluster holds the one forwarded request until the test releases it.
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let upstream = FakeUpstream::builder()
        .hold(&arrived, &release)
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn(&upstream, dir.path()).await;
    let token = gw.create_token("before-term", PASSWORD).await;

    let addr = gw.addr;
    let in_flight = tokio::spawn({
        let token = token.clone();
        async move {
            crate::common::client()
                .get(format!("http://{addr}/_cluster/health"))
                .bearer_auth(token)
                .send()
                .await
        }
    });
    tokio::time::timeout(WAIT, arrived.notified())
        .await
        .expect("the request never reached the cluster");

    gw.signal("TERM");
    gw.wait_for("stopped accepting").await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "a new connection was accepted while draining"
    );
    assert!(
        gw.running(),
        "the gateway quit before its request was answered"
    );

    release.notify_one();
    let response = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the request in flight was not answered")
        .unwrap()
        .expect("the request in flight failed");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        crate::common::upstream::DEFAULT_BODY
    );

    let (status, rest) = gw.exit().await;
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("all connections drained")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("token store closed")),
        "{rest:?}"
    );

    // Closed cleanly: the lock is free and the journal replays with the token in it.
    let answering = FakeUpstream::start().await;
    let again = TestGateway::builder()
        .upstream(answering.addr)
        .data_dir(dir.path())
        .build()
        .await;
    assert_eq!(again.state.store.len(), 1);
    let response = again
        .with_token(reqwest::Method::GET, "/", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    again.stop().await;
}

#[tokio::test]
async fn sighup_reloads_a_plain_http_gateway_and_it_keeps_serving() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn(&upstream, dir.path()).await;
    let token = gw.create_token("before-hup", PASSWORD).await;

    for _ in 0..2 {
        gw.signal("HUP");
        gw.wait_for("sighup received").await;
        // A SIGHUP re-reads the users files even when they look unchanged.
        gw.wait_for("users reloaded").await;
    }
    assert!(gw.running(), "SIGHUP ended the gateway");
    let response = crate::common::client()
        .get(format!("http://{}/_cluster/health", gw.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after = gw.create_token("after-hup", PASSWORD).await;
    assert_ne!(after, token);
    assert!(gw.running());
}
