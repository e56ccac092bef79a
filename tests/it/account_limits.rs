//! Per-account limits and the fair share of a contended node: an account over its rate or its
//! requests in flight gets Elasticsearch's 429 with `Retry-After` and the draft's `RateLimit-*`
//! fields, others are untouched; waiting requests are served by account in turn.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::common::upstream::default_response;
use crate::common::{eventually, FakeUpstream, TestGateway, FLEET};

const KIBANA: &str = "elastic/kibana";
const WAIT: Duration = Duration::from_secs(10);

async fn get(gw: &TestGateway, token: &str, tag: &str) -> reqwest::Response {
    gw.client
        .get(gw.url("/_search"))
        .bearer_auth(token)
        .header("x-opaque-id", tag)
        .send()
        .await
        .unwrap()
}

/// A fake cluster that keeps every request until the test lets one go (`release` permits add
/// up, so a release never waits for the request to have arrived).
async fn holding_upstream() -> (FakeUpstream, Arc<Semaphore>) {
    let release = Arc::new(Semaphore::new(0));
    let gate = Arc::clone(&release);
    let upstream = FakeUpstream::builder()
        .handler(move |_| {
            let gate = Arc::clone(&gate);
            async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                default_response()
            }
        })
        .start()
        .await;
    (upstream, release)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

/// The tags (`X-Opaque-Id`) of the requests the cluster received, in arrival order.
fn arrivals(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .filter(|r| !r.is_gateway_own())
        .filter_map(|r| r.header("x-opaque-id").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn over_its_rate_an_account_gets_429_with_the_draft_fields_and_others_do_not() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(
            "[[service_accounts]]\naccount = \"elastic/fleet-server\"\nrate = \"2/m\"\nburst = 2\n",
        )
        .build()
        .await;
    let fleet = gw.create_token(FLEET, "f1").await;
    let kibana = gw.create_token(KIBANA, "k1").await;
    for tag in ["f1", "f2"] {
        assert_eq!(get(&gw, &fleet, tag).await.status(), 200);
    }
    let refused = get(&gw, &fleet, "f3").await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    // The next of two a minute comes within 30 s.
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(header(&refused, "ratelimit-limit"), "2");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "ratelimit-reset"), retry.to_string());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(
        body["error"]["root_cause"][0]["type"],
        "es_rejected_execution_exception"
    );
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rejected execution: account [elastic/fleet-server] is over its request rate limit (a burst of 2); retry in "),
        "{reason}"
    );
    // Another account is not touched by fleet's limit.
    for tag in ["k1", "k2", "k3"] {
        assert_eq!(get(&gw, &kibana, tag).await.status(), 200);
    }
    assert_eq!(arrivals(&upstream), ["f1", "f2", "k1", "k2", "k3"]);

    let (_, metrics) = gw.admin_get("/metrics").await;
    for line in [
        "tokengate_account_limited_total{account=\"elastic/fleet-server\",limit=\"rate\"} 1",
        "tokengate_account_requests_total{account=\"elastic/fleet-server\"} 2",
        "tokengate_account_requests_total{account=\"elastic/kibana\"} 3",
        "tokengate_account_requests_in_flight{account=\"elastic/kibana\"} 0",
        "tokengate_replicas 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // The status page shows the same.
    let (_, status) = gw.admin_get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let fleet = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == FLEET)
        .unwrap();
    assert_eq!(
        (&fleet["requests"], &fleet["limited"]),
        (&2.into(), &1.into())
    );
    gw.stop().await;
}

#[tokio::test]
async fn requests_in_flight_count_until_the_answer_is_out() {
    let (upstream, release) = holding_upstream().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[limits]\nmax_in_flight = 1\n")
        .build()
        .await;
    let fleet = gw.create_token(FLEET, "f1").await;
    let kibana = gw.create_token(KIBANA, "k1").await;
    let first = tokio::spawn({
        let (client, url, token) = (gw.client.clone(), gw.url("/_search"), fleet.clone());
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    });
    upstream.wait_for_requests(1).await;

    let refused = get(&gw, &fleet, "second").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "ratelimit-limit"), "1");
    let body: Value = refused.json().await.unwrap();
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "account [elastic/fleet-server] has 1 requests in flight, its limit [max_in_flight]"
        ),
        "{reason}"
    );
    // The default applies to each account on its own: kibana has its one.
    let other = tokio::spawn({
        let (client, url) = (gw.client.clone(), gw.url("/_search"));
        async move { client.get(url).bearer_auth(kibana).send().await.unwrap() }
    });
    upstream.wait_for_requests(2).await;
    release.add_permits(2);
    let (first, other) = (first.await.unwrap(), other.await.unwrap());
    assert_eq!(
        (first.status().as_u16(), other.status().as_u16()),
        (200, 200)
    );
    first.bytes().await.unwrap();
    other.bytes().await.unwrap();
    eventually("fleet's request no longer in flight", WAIT, || {
        let mut total = 0;
        gw.state.limits.each(|l| total += l.figures().in_flight);
        total == 0
    })
    .await;
    release.add_permits(1);
    assert_eq!(get(&gw, &fleet, "third").await.status(), 200);
    gw.stop().await;
}

/// One slot; A holds it and queues three more, then B queues one. Released one at a time, the
/// node sees the order the queue serves in.
async fn contended_order(fair: bool) -> Vec<String> {
    let (upstream, release) = holding_upstream().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(&format!(
            "[upstream]\nmax_connections = 1\nmax_pending = 10\nfair_queue = {fair}\n"
        ))
        .build()
        .await;
    let a = gw.create_token(FLEET, "a").await;
    let b = gw.create_token(KIBANA, "b").await;
    let send = |token: &str, tag: &'static str| {
        let (client, url, token) = (gw.client.clone(), gw.url("/_search"), token.to_owned());
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .header("x-opaque-id", tag)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let mut sent = vec![send(&a, "a0")];
    upstream.wait_for_requests(1).await;
    for (i, (token, tag)) in [(&a, "a1"), (&a, "a2"), (&a, "a3"), (&b, "b1")]
        .into_iter()
        .enumerate()
    {
        sent.push(send(token, tag));
        eventually("the request waits for the slot", WAIT, || {
            gw.state.upstream.waiting() == i + 1
        })
        .await;
    }
    // Each request lets the next one in as it ends: the node sees them one at a time.
    release.add_permits(sent.len());
    for request in sent {
        assert_eq!(request.await.unwrap(), 200);
    }
    let order = arrivals(&upstream);
    gw.stop().await;
    order
}

#[tokio::test]
async fn waiting_requests_are_served_by_account_in_turn() {
    assert_eq!(contended_order(true).await, ["a0", "a1", "b1", "a2", "a3"]);
}

#[tokio::test]
async fn without_the_fair_queue_they_are_served_in_arrival_order() {
    assert_eq!(contended_order(false).await, ["a0", "a1", "a2", "a3", "b1"]);
}

/// The binary on a configuration file whose `[[service_accounts]]` entry for fleet-server ends
/// with `limits`; rewritten and re-read with SIGHUP by the test.
fn write_limits(path: &std::path::Path, upstream: &FakeUpstream, limits: &str) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{}\"\n\
         [[service_accounts]]\naccount = \"elastic/fleet-server\"\n{limits}\n",
        upstream.addr
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_reload_changes_limits_in_place_and_drops_nothing_in_flight() {
    use crate::common::process::{tokengate, GatewayProcess};
    const PASSWORD: &str = "limits-elastic-pw";
    let (upstream, release) = holding_upstream().await;
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = etc.path().join("tokengate.toml");
    write_limits(&config, &upstream, "max_in_flight = 1");
    let mut gw = GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path())
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let token = gw.create_token("t1", PASSWORD).await;
    let url = format!("http://{}/_search", gw.addr);
    let send = |tag: &'static str| {
        let (url, token) = (url.clone(), token.clone());
        tokio::spawn(async move {
            let response = crate::common::client()
                .get(url)
                .bearer_auth(token)
                .header("x-opaque-id", tag)
                .send()
                .await
                .unwrap();
            let limit = response
                .headers()
                .get("ratelimit-limit")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), limit)
        })
    };
    let first = send("held-across-the-reload");
    upstream.wait_for_requests(1).await;
    assert_eq!(send("over").await.unwrap(), (429, Some("1".into())));
    // Told once in the log, with the account and the limit.
    let line = gw.wait_for("account over its limit").await;
    assert!(
        line.contains("elastic/fleet-server") && line.contains("max_in_flight"),
        "{line}"
    );

    write_limits(&config, &upstream, "max_in_flight = 2");
    gw.signal("HUP");
    gw.wait_for("configuration reloaded").await;
    let second = send("admitted-after-the-reload");
    upstream.wait_for_requests(2).await;
    // The request from before the reload still counts: two in flight, the new limit.
    assert_eq!(send("over-again").await.unwrap(), (429, Some("2".into())));
    release.add_permits(2);
    assert_eq!(first.await.unwrap(), (200, None));
    assert_eq!(second.await.unwrap(), (200, None));

    write_limits(&config, &upstream, "rate = \"1/m\"\nburst = 1");
    gw.signal("HUP");
    gw.wait_for("configuration reloaded").await;
    release.add_permits(1);
    assert_eq!(send("within-the-rate").await.unwrap(), (200, None));
    assert_eq!(
        send("over-the-rate").await.unwrap(),
        (429, Some("1".into()))
    );
    assert!(gw.running());
}
