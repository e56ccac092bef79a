//! A cluster of several nodes: requests spread over them, a node that dies or fails its checks
//! leaves the rotation and comes back, requests are retried on another node only where that is
//! safe, and sniffing finds the nodes a cluster lists.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::upstream::Behaviour;
use crate::common::{eventually_async, json_of, FakeUpstream, TestGateway, FLEET};
use reqwest::Method;

/// Every "within" of these tests: far above what the behaviour needs on an idle machine.
const DEADLINE: Duration = Duration::from_secs(10);

async fn nodes(n: usize) -> Vec<FakeUpstream> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(FakeUpstream::start().await);
    }
    nodes
}

fn addrs(nodes: &[FakeUpstream]) -> Vec<SocketAddr> {
    nodes.iter().map(|n| n.addr).collect()
}

async fn gateway(nodes: &[FakeUpstream], toml: &str) -> (TestGateway, String) {
    let gw = TestGateway::builder()
        .upstreams(&addrs(nodes))
        .config(toml)
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    (gw, token)
}

async fn get(gw: &TestGateway, token: &str) -> u16 {
    gw.with_token(Method::GET, "/_search", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A `_bulk` POST of `body`.
async fn bulk(gw: &TestGateway, token: &str, body: &str) -> reqwest::Response {
    gw.with_token(Method::POST, "/_bulk", token)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The value of the `/metrics` sample whose line starts with `series`.
async fn metric(gw: &TestGateway, series: &str) -> Option<f64> {
    let (_, text) = gw.admin_get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn node_series(name: &str, node: &FakeUpstream) -> String {
    format!("tokengate_{name}{{node=\"http://{}\"}}", node.addr)
}

/// Sends GETs until `done` holds, failing after [`DEADLINE`]; every answer must be 200.
async fn get_until(gw: &TestGateway, token: &str, mut done: impl FnMut() -> bool) {
    eventually_async("done, sending GETs", DEADLINE, || {
        let done = done();
        async move {
            if !done {
                assert_eq!(get(gw, token).await, 200);
            }
            done
        }
    })
    .await;
}

#[tokio::test]
async fn sequential_requests_spread_over_every_node() {
    let cluster = nodes(3).await;
    let (gw, token) = gateway(&cluster, "").await;
    for _ in 0..90 {
        assert_eq!(get(&gw, &token).await, 200);
    }
    let counts: Vec<usize> = cluster.iter().map(FakeUpstream::forwarded).collect();
    assert_eq!(counts.iter().sum::<usize>(), 90);
    // 30 each on average; below 10 is a one-in-a-million draw for a fair spread.
    assert!(counts.iter().all(|&c| c >= 10), "{counts:?}");
}

#[tokio::test]
async fn a_busy_node_is_passed_over_for_idle_ones() {
    let cluster = nodes(3).await;
    cluster[0].set_behaviour(Behaviour::Hold);
    let (gw, token) = gateway(&cluster, "").await;
    // Requests one after another until one is stuck on node 0; it stays there (dropping it
    // would free its slot).
    let _stuck = {
        let (client, url) = (gw.client.clone(), gw.url("/_search"));
        let bearer = format!("Bearer {token}");
        tokio::spawn(async move {
            loop {
                let response = client
                    .get(&url)
                    .header("authorization", &bearer)
                    .send()
                    .await;
                if response.is_err() {
                    break;
                }
            }
        })
    };
    cluster[0].wait_for_requests(1).await;
    let before: Vec<usize> = cluster.iter().map(FakeUpstream::forwarded).collect();
    for _ in 0..30 {
        assert_eq!(get(&gw, &token).await, 200);
    }
    let after: Vec<usize> = cluster.iter().map(FakeUpstream::forwarded).collect();
    assert_eq!(
        after[0], before[0],
        "node 0 has a request in flight and the others none: the less busy one wins each time"
    );
    assert_eq!(after[1] + after[2] - before[1] - before[2], 30);
}

#[tokio::test]
async fn a_node_killed_under_load_costs_no_get_and_comes_back_after_its_back_off() {
    let mut cluster = nodes(3).await;
    // Requests reaching node 1 stay there until it dies: in flight when it is killed.
    cluster[1].set_behaviour(Behaviour::Hold);
    let (gw, token) = gateway(&cluster, "[upstream]\neject_for = \"200ms\"\n").await;
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (gw.client.clone(), gw.url("/_search"));
            let bearer = format!("Bearer {token}");
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..50 {
                    let response = client
                        .get(&url)
                        .header("authorization", &bearer)
                        .send()
                        .await
                        .unwrap();
                    statuses.push(response.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    cluster[1].wait_for_requests(1).await;
    cluster[1].stop().await;
    let mut statuses = Vec::new();
    for task in load {
        statuses.extend(task.await.unwrap());
    }
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let retried = metric(&gw, "tokengate_upstream_retries_total{outcome=\"retried\"}").await;
    assert!(
        retried.unwrap() >= 1.0,
        "the held request was retried: {retried:?}"
    );
    assert_eq!(
        metric(&gw, &node_series("upstream_node_up", &cluster[1])).await,
        Some(0.0)
    );
    assert!(
        metric(
            &gw,
            &node_series("upstream_node_ejections_total", &cluster[1])
        )
        .await
            >= Some(1.0)
    );

    cluster[1].set_behaviour(Behaviour::Answer);
    cluster[1].restart().await;
    let before = cluster[1].forwarded();
    get_until(&gw, &token, || cluster[1].forwarded() > before).await;
    assert_eq!(
        metric(&gw, &node_series("upstream_node_up", &cluster[1])).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn every_node_down_is_502_naming_no_node_then_recovery_without_restart() {
    let mut cluster = nodes(2).await;
    let (gw, token) = gateway(&cluster, "").await;
    for node in &mut cluster {
        node.stop().await;
    }
    for _ in 0..5 {
        let response = gw
            .with_token(Method::GET, "/_search", &token)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 502);
        assert_eq!(body["error"]["type"], "upstream_unavailable_exception");
        assert_eq!(body["status"], 502);
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    }
    let (status, _) = gw.admin_get("/readyz").await;
    assert_eq!(status, 503);
    for node in &mut cluster {
        node.restart().await;
    }
    // No back-off to wait out when every node is out: the next request probes one.
    assert_eq!(get(&gw, &token).await, 200);
    eventually_async("ready again", DEADLINE, || async {
        gw.admin_get("/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn a_post_that_reached_a_node_is_never_sent_again_but_a_get_is() {
    let cluster = nodes(2).await;
    cluster[0].set_behaviour(Behaviour::DropAfterRead);
    let (gw, token) = gateway(&cluster, "").await;
    let body = "{\"index\":{}}\n{\"field\":1}\n".repeat(200);
    let mut failed = 0;
    for _ in 0..20 {
        let response = bulk(&gw, &token, &body).await;
        match response.status().as_u16() {
            200 => {}
            502 => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let (dropped, served) = (cluster[0].forwarded(), cluster[1].forwarded());
    assert_eq!(
        dropped + served,
        20,
        "each POST reached exactly one node once"
    );
    assert_eq!(
        failed, dropped,
        "a POST the node dropped is the client's 502, not a retry"
    );
    assert!(dropped > 0, "20 random picks never chose node 0");

    // A GET that met the same fate is repeated on the other node.
    let before = cluster[0].forwarded();
    get_until(&gw, &token, || cluster[0].forwarded() > before).await;
}

#[tokio::test]
async fn a_post_whose_connection_was_refused_goes_whole_to_another_node() {
    let mut cluster = nodes(2).await;
    let (gw, token) = gateway(&cluster, "").await;
    cluster[0].stop().await;
    let body: String = (0..2000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let crc = crc32fast::hash(body.as_bytes());
    for _ in 0..10 {
        let response = bulk(&gw, &token, &body).await;
        assert_eq!(response.status(), 200);
    }
    let seen = cluster[1].requests();
    assert_eq!(seen.len(), 10);
    assert!(seen
        .iter()
        .all(|s| s.body_len == body.len() as u64 && s.body_crc == crc));
}

#[tokio::test]
async fn without_budget_a_failed_request_is_not_retried() {
    let mut cluster = nodes(2).await;
    let toml = "[upstream]\nretry_budget_percent = 0\nretry_budget_min_per_second = 0\n\
                eject_for = \"10m\"\neject_max = \"10m\"\n";
    let (gw, token) = gateway(&cluster, toml).await;
    cluster[0].stop().await;
    let mut statuses = Vec::new();
    while !statuses.contains(&502) {
        assert!(statuses.len() < 40, "node 0 never picked in 40 requests");
        statuses.push(get(&gw, &token).await);
    }
    let refused = metric(
        &gw,
        "tokengate_upstream_retries_total{outcome=\"budget_exhausted\"}",
    )
    .await;
    assert_eq!(refused, Some(1.0));
    // Ejected now: the rest go to node 1.
    for _ in 0..10 {
        assert_eq!(get(&gw, &token).await, 200);
    }
}

#[tokio::test]
async fn active_checks_take_a_failing_node_out_and_bring_it_back() {
    let cluster = nodes(2).await;
    let toml = "[upstream]\nhealth_check_interval = \"20ms\"\nhealth_check_path = \"/_health\"\n\
                unhealthy_threshold = 2\nhealthy_threshold = 2\n";
    let (gw, token) = gateway(&cluster, toml).await;
    cluster[0].set_behaviour(Behaviour::FailHealth);
    let down = node_series("upstream_node_up", &cluster[0]);
    eventually_async("node 0 taken out", DEADLINE, || async {
        metric(&gw, &down).await == Some(0.0)
    })
    .await;
    let before = cluster[0].forwarded();
    for _ in 0..30 {
        assert_eq!(get(&gw, &token).await, 200);
    }
    assert_eq!(
        cluster[0].forwarded(),
        before,
        "a node out of rotation gets no request"
    );
    cluster[0].set_behaviour(Behaviour::Answer);
    get_until(&gw, &token, || cluster[0].forwarded() > before).await;
    // Checks and requests share the node's pooled connections: at most one each at a time.
    let checks = cluster[1]
        .requests()
        .iter()
        .filter(|s| s.uri.path() == "/_health")
        .count();
    assert!(checks >= 2, "{checks} checks");
    assert!(
        cluster[1].connections() <= 2,
        "{} connections for {checks} checks",
        cluster[1].connections()
    );
}

#[tokio::test]
async fn sniffing_finds_the_nodes_the_cluster_lists() {
    let cluster = nodes(3).await;
    cluster[0].list(&addrs(&cluster[..2]));
    let gw = TestGateway::builder()
        .upstreams(&addrs(&cluster[..1]))
        .config(
            "[upstream]\nsniff_on_start = true\nsniff_interval = \"50ms\"\n\
             authorization = \"ApiKey Z2F0ZXdheQ==\"\nservice_credentials = \"gateway\"\n",
        )
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    get_until(&gw, &token, || cluster[1].forwarded() > 0).await;
    assert_eq!(cluster[2].forwarded(), 0);
    // A node the cluster adds is found by the next sniff.
    for node in &cluster[..2] {
        node.list(&addrs(&cluster));
    }
    get_until(&gw, &token, || cluster[2].forwarded() > 0).await;
    let sniffs: Vec<_> = cluster
        .iter()
        .flat_map(FakeUpstream::requests)
        .filter(|s| s.uri.path() == "/_nodes/http")
        .collect();
    assert!(!sniffs.is_empty());
    assert!(sniffs
        .iter()
        .all(|s| s.header("authorization") == Some("ApiKey Z2F0ZXdheQ==")));
}

#[tokio::test]
async fn a_connection_goes_back_to_its_node_pool_when_the_response_is_read() {
    let cluster = nodes(1).await;
    let (gw, token) = gateway(&cluster, "").await;
    for _ in 0..20 {
        assert_eq!(get(&gw, &token).await, 200);
    }
    let head = gw
        .with_token(Method::HEAD, "/_search", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(get(&gw, &token).await, 200);
    assert_eq!(
        cluster[0].connections(),
        1,
        "one keep-alive connection served all"
    );
    assert_eq!(
        metric(
            &gw,
            &node_series("upstream_node_idle_connections", &cluster[0])
        )
        .await,
        Some(1.0)
    );
}
