//! Gateways on one etcd count each other, for limits divided among them: one that joins is
//! counted by all, one that closes is uncounted at once (it revokes its lease), one cut off from
//! etcd is uncounted when its lease expires and counted again once it is back, and nothing is
//! left in etcd once they are all closed. Real etcd and real gateways, started here.

use std::time::Duration;

use etcd_client::GetOptions;

use crate::common::etcd::{EtcdCluster, Relay};
use crate::common::{eventually, FakeUpstream, TestGateway};
use crate::etcd_store::gateway;

/// A join or a clean close reaches the others through their watch, in milliseconds. Bounded at
/// half the lease's life (6 s), so a close seen in time was the revocation, not the expiry.
const SEEN_WITHIN: Duration = Duration::from_secs(3);
/// A gateway cut off is counted until its lease expires; then the others recount.
const EXPIRED_WITHIN: Duration = Duration::from_secs(15);

fn count(gw: &TestGateway) -> u32 {
    gw.state.store.replicas().get()
}

/// Waits until every one of `gateways` counts `want`.
async fn all_count(what: &str, gateways: &[&TestGateway], want: u32, within: Duration) {
    eventually(what, within, || gateways.iter().all(|gw| count(gw) == want)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_count_each_other_as_they_join_and_close_and_leave_nothing_behind() {
    let test = "gateways_count_each_other_as_they_join_and_close_and_leave_nothing_behind";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let endpoints = [etcd.endpoint(0)];
    let a = gateway(&upstream, &endpoints, "").await;
    assert_eq!(count(&a), 1);
    // A starting gateway has counted the others before it serves.
    let b = gateway(&upstream, &endpoints, "").await;
    assert_eq!(count(&b), 2);
    all_count("a to count b", &[&a], 2, SEEN_WITHIN).await;
    let c = gateway(&upstream, &endpoints, "").await;
    assert_eq!(count(&c), 3);
    all_count("a and b to count c", &[&a, &b], 3, SEEN_WITHIN).await;

    a.stop().await;
    all_count("b and c to see a close", &[&b, &c], 2, SEEN_WITHIN).await;
    b.stop().await;
    all_count("c to see b close", &[&c], 1, SEEN_WITHIN).await;
    c.stop().await;

    // Every lease was revoked with its store: no key, no lease left to expire.
    let mut client = etcd.client().await;
    let options = GetOptions::new().with_prefix().with_count_only();
    let keys = client.get("/test/replicas/", Some(options)).await.unwrap();
    assert_eq!(keys.count(), 0);
    assert!(client.leases().await.unwrap().leases().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_etcd_is_uncounted_once_its_lease_expires_and_counted_when_back() {
    let test =
        "a_gateway_cut_off_from_etcd_is_uncounted_once_its_lease_expires_and_counted_when_back";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let relay = Relay::start(etcd.addr(0)).await;
    let a = gateway(&upstream, &[relay.endpoint()], "").await;
    let b = gateway(&upstream, &[etcd.endpoint(0)], "").await;
    all_count("a and b to count each other", &[&a, &b], 2, SEEN_WITHIN).await;

    // As far as the others can tell, a gateway cut off is one that was killed.
    relay.cut();
    all_count("b to see a's lease expire", &[&b], 1, EXPIRED_WITHIN).await;
    // Cut off, a cannot know who is left: it keeps the last count.
    assert_eq!(count(&a), 2);

    // Its lease gone, a registers again under a new one.
    relay.restore();
    all_count(
        "a and b to count each other again",
        &[&a, &b],
        2,
        EXPIRED_WITHIN,
    )
    .await;
    a.stop().await;
    b.stop().await;
}

/// The first refusal among up to 30 quick requests to `gw` with `token`: its
/// `RateLimit-Limit`, after how many were admitted.
async fn first_refusal(gw: &TestGateway, token: &str) -> (usize, String) {
    for admitted in 0..30 {
        let response = gw
            .client
            .get(gw.url("/_search"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let limit = response.headers()["ratelimit-limit"].to_str().unwrap();
            return (admitted, limit.to_owned());
        }
        assert_eq!(response.status(), 200);
    }
    panic!("30 requests admitted at 100/m with a burst of 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_enforces_its_part_of_an_account_limit() {
    let test = "each_gateway_enforces_its_part_of_an_account_limit";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let endpoints = [etcd.endpoint(0)];
    let limits = "\n[limits]\nrate = \"100/m\"\nburst = 10\n";
    let a = gateway(&upstream, &endpoints, limits).await;
    let b = gateway(&upstream, &endpoints, limits).await;
    all_count("a and b to count each other", &[&a, &b], 2, SEEN_WITHIN).await;
    let token = a.create_token("elastic/fleet-server", "shared").await;

    // Two gateways: each admits half of the burst.
    assert_eq!(first_refusal(&a, &token).await, (5, "5".to_owned()));
    b.stop().await;
    all_count("a to see b close", &[&a], 1, SEEN_WITHIN).await;
    // Alone, a holds the whole burst again.
    let (_, limit) = first_refusal(&a, &token).await;
    assert_eq!(limit, "10");
    a.stop().await;
}
