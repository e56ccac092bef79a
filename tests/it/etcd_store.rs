//! Several gateways on one etcd behave as one: what one creates or deletes the others accept or
//! refuse within a second, a name is created once, an etcd outage stops changes but not checks,
//! and a gateway cut off or moved to another member misses nothing. Real etcd, started here.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::common::cli::{fails, ok, run_command};
use crate::common::etcd::{EtcdCluster, Relay};
use crate::common::process::tokengate;
use crate::common::{eventually, eventually_async, eventually_get, json_of, FakeUpstream};
use crate::common::{TestGateway, FLEET};
use reqwest::Method;
use tokengate::config::{Config, Overrides};
use tokengate::store::{StoreError, StoreOptions, TokenStore};

/// What the issue promises for a change to reach another gateway.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// Bound on recoveries that wait for reconnection back-off or an election.
const RECOVERY: Duration = Duration::from_secs(15);

pub(crate) fn store_toml(endpoints: &[String], extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let prefix = if extra.contains("prefix") {
        ""
    } else {
        "prefix = \"/test/\"\n"
    };
    format!(
        "[store]\nbackend = \"etcd\"\nendpoints = [{}]\n{prefix}start_timeout = \"10s\"\n{extra}",
        list.join(", ")
    )
}

pub(crate) async fn gateway(
    upstream: &FakeUpstream,
    endpoints: &[String],
    extra: &str,
) -> TestGateway {
    TestGateway::builder()
        .upstream(upstream.addr)
        .config(&store_toml(endpoints, extra))
        .build()
        .await
}

/// A one-member etcd with two gateways on it (`extra` in both `[store]` sections); `None` when
/// etcd is not installed (the test is skipped, as [`EtcdCluster::start`] says).
struct Pair {
    etcd: EtcdCluster,
    /// Kept for the gateways' lifetime.
    _upstream: FakeUpstream,
    a: TestGateway,
    b: TestGateway,
}

/// Bind every field where it is taken apart: one left to `..` is dropped at once.
async fn two_gateways(test: &str, extra: &str) -> Option<Pair> {
    let etcd = EtcdCluster::start(1, test).await?;
    let upstream = FakeUpstream::start().await;
    let a = gateway(&upstream, &[etcd.endpoint(0)], extra).await;
    let b = gateway(&upstream, &[etcd.endpoint(0)], extra).await;
    Some(Pair {
        etcd,
        _upstream: upstream,
        a,
        b,
    })
}

async fn status_with(gw: &TestGateway, token: &str) -> u16 {
    let response = gw.with_token(Method::GET, "/", token).send().await.unwrap();
    response.status().as_u16()
}

/// Polls until `gw` answers `want` to a request with `token`, failing after `within`.
async fn until_status(gw: &TestGateway, token: &str, want: u16, within: Duration) {
    let what = format!("a request with the token answered {want}");
    eventually_get(&what, within, || async {
        match status_with(gw, token).await {
            got if got == want => Ok(()),
            got => Err(format!("still {got}")),
        }
    })
    .await;
}

async fn create(gw: &TestGateway, name: &str) -> reqwest::Response {
    let path = format!("/_security/service/{FLEET}/credential/token/{name}");
    gw.as_elastic(Method::POST, &path).send().await.unwrap()
}

async fn delete(gw: &TestGateway, name: &str) -> u16 {
    let path = format!("/_security/service/{FLEET}/credential/token/{name}");
    let response = gw.as_elastic(Method::DELETE, &path).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_on_one_gateway_is_accepted_by_another_within_a_second() {
    let test = "a_token_created_on_one_gateway_is_accepted_by_another_within_a_second";
    let Some(Pair {
        etcd: _etcd,
        _upstream,
        a,
        b,
    }) = two_gateways(test, "").await
    else {
        return;
    };
    let value = a.create_token(FLEET, "shared").await;
    // The creating gateway itself accepts it as soon as it said "created".
    assert_eq!(status_with(&a, &value).await, 200);
    until_status(&b, &value, 200, VISIBLE_WITHIN).await;
    let listed = b
        .as_elastic(
            Method::GET,
            &format!("/_security/service/{FLEET}/credential"),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(listed).await;
    assert_eq!(status, 200);
    assert!(body["tokens"]["shared"].is_object(), "{body}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_deleted_on_one_gateway_is_refused_by_another_within_a_second() {
    let test = "a_token_deleted_on_one_gateway_is_refused_by_another_within_a_second";
    let Some(Pair {
        etcd: _etcd,
        _upstream,
        a,
        b,
    }) = two_gateways(test, "").await
    else {
        return;
    };
    let value = a.create_token(FLEET, "doomed").await;
    until_status(&b, &value, 200, VISIBLE_WITHIN).await;
    assert_eq!(delete(&b, "doomed").await, 200);
    assert_eq!(status_with(&b, &value).await, 401);
    until_status(&a, &value, 401, VISIBLE_WITHIN).await;
    assert_eq!(delete(&a, "doomed").await, 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_created_on_two_gateways_at_once_is_created_once() {
    let test = "one_name_created_on_two_gateways_at_once_is_created_once";
    let Some(Pair {
        etcd: _etcd,
        _upstream,
        a,
        b,
    }) = two_gateways(test, "").await
    else {
        return;
    };
    for round in 0..5 {
        let name = format!("race{round}");
        let (on_a, on_b) = tokio::join!(create(&a, &name), create(&b, &name));
        let (status_a, body_a) = json_of(on_a).await;
        let (status_b, body_b) = json_of(on_b).await;
        let mut statuses = [status_a, status_b];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "{body_a} {body_b}");
        let (winner, loser) = if status_a == 200 {
            (body_a, body_b)
        } else {
            (body_b, body_a)
        };
        assert_eq!(loser["error"]["type"], "version_conflict_engine_exception");
        let value = winner["token"]["value"].as_str().unwrap();
        until_status(&a, value, 200, VISIBLE_WITHIN).await;
        until_status(&b, value, 200, VISIBLE_WITHIN).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_etcd_is_down_tokens_still_pass_and_changes_are_refused_until_it_returns() {
    let test = "while_etcd_is_down_tokens_still_pass_and_changes_are_refused_until_it_returns";
    let extra = "request_timeout = \"1s\"\nmax_staleness = \"2s\"\n";
    let Some(Pair {
        mut etcd,
        _upstream,
        a,
        b,
    }) = two_gateways(test, extra).await
    else {
        return;
    };
    let value = a.create_token(FLEET, "before").await;
    until_status(&b, &value, 200, VISIBLE_WITHIN).await;
    assert_eq!(a.admin_get("/readyz").await.0, 200);

    etcd.kill(0);
    assert_eq!(status_with(&a, &value).await, 200);
    assert_eq!(status_with(&b, &value).await, 200);
    let (status, body) = json_of(create(&a, "during").await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "store_unavailable_exception");
    assert_eq!(body["status"], 503);
    // Past max_staleness the gateway tells its load balancer, and the gauge says why.
    eventually_async("readyz to fail", RECOVERY, || async {
        a.admin_get("/readyz").await.0 == 503
    })
    .await;
    let (_, metrics) = a.admin_get("/metrics").await;
    let stale = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tokengate_store_staleness_seconds "))
        .expect("no staleness gauge")
        .parse::<f64>()
        .unwrap();
    assert!(stale >= 2.0, "{stale}");
    assert_eq!(status_with(&a, &value).await, 200);

    etcd.restart(0).await;
    let after = eventually_get("creates to recover", RECOVERY, || async {
        let (status, body) = json_of(create(&a, "after").await).await;
        if status == 200 {
            return Ok(body["token"]["value"].as_str().unwrap().to_owned());
        }
        assert_eq!(status, 503, "{body}");
        Err(body.to_string())
    })
    .await;
    until_status(&b, &after, 200, RECOVERY).await;
    eventually_async("readyz to recover", RECOVERY, || async {
        a.admin_get("/readyz").await.0 == 200
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_while_history_is_compacted_catches_up_on_revocations() {
    let test = "a_gateway_cut_off_while_history_is_compacted_catches_up_on_revocations";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let relay = Relay::start(etcd.addr(0)).await;
    let a = gateway(&upstream, &[relay.endpoint()], "").await;
    let b = gateway(&upstream, &[etcd.endpoint(0)], "").await;
    let revoked = b.create_token(FLEET, "revoked").await;
    let kept = b.create_token(FLEET, "kept").await;
    until_status(&a, &revoked, 200, VISIBLE_WITHIN).await;
    until_status(&a, &kept, 200, VISIBLE_WITHIN).await;

    relay.cut();
    assert_eq!(delete(&b, "revoked").await, 200);
    let added = b.create_token(FLEET, "added").await;
    let mut client = etcd.client().await;
    let revision = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(revision, None).await.unwrap();
    // Cut off, A still serves what it knew.
    assert_eq!(status_with(&a, &revoked).await, 200);

    relay.restore();
    until_status(&a, &revoked, 401, RECOVERY).await;
    until_status(&a, &added, 200, VISIBLE_WITHIN).await;
    assert_eq!(status_with(&a, &kept).await, 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_a_gateway_watches_through_loses_no_change() {
    let test = "killing_the_member_a_gateway_watches_through_loses_no_change";
    let Some(mut etcd) = EtcdCluster::start(3, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let all: Vec<String> = (0..3).map(|i| etcd.endpoint(i)).collect();
    // A watches through the first member; B never uses it.
    let a = gateway(&upstream, &all, "").await;
    let b = gateway(&upstream, &all[1..], "request_timeout = \"10s\"\n").await;
    let old = b.create_token(FLEET, "old").await;
    until_status(&a, &old, 200, VISIBLE_WITHIN).await;

    etcd.kill(0);
    let new = b.create_token(FLEET, "new").await;
    assert_eq!(delete(&b, "old").await, 200);
    until_status(&a, &new, 200, RECOVERY).await;
    until_status(&a, &old, 401, VISIBLE_WITHIN).await;
    // A's own changes go through the members left.
    let own = a.create_token(FLEET, "own").await;
    until_status(&b, &own, 200, VISIBLE_WITHIN).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_starting_at_once_on_an_empty_prefix_agree_on_the_pepper() {
    let test = "two_gateways_starting_at_once_on_an_empty_prefix_agree_on_the_pepper";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let config = Config::from_toml(
        "test",
        &store_toml(&[etcd.endpoint(0)], ""),
        &Overrides::default(),
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let dir = tempfile::tempdir().unwrap();
    let open = |barrier: Arc<Barrier>, config: Config, dir: std::path::PathBuf| {
        std::thread::spawn(move || {
            barrier.wait();
            TokenStore::open_configured(&config.store, &dir, StoreOptions::default()).unwrap()
        })
    };
    let first = open(Arc::clone(&barrier), config.clone(), dir.path().join("a"));
    let second = open(barrier, config.clone(), dir.path().join("b"));
    let (a, b) = (first.join().unwrap(), second.join().unwrap());
    // The data directory (users, pid file, audit log) is still one gateway's.
    let again = TokenStore::open_configured(
        &config.store,
        &dir.path().join("a"),
        StoreOptions::default(),
    );
    assert!(
        matches!(again, Err(StoreError::Locked { .. })),
        "a second store on one directory"
    );
    for i in 0..3 {
        let name = format!("t{i}");
        let value =
            tokengate::identity::token::encode_raw(FLEET, &name, &format!("secret-{i}-0123456789"));
        a.create(&format!("{FLEET}/{name}"), &value).await.unwrap();
        assert!(a.verify_value(value.as_bytes()));
        eventually("B to accept A's token", VISIBLE_WITHIN, || {
            b.verify_value(value.as_bytes())
        })
        .await;
    }
    a.close();
    b.close();
}

/// `tokens migrate --to etcd` on a stopped gateway's data directory, with etcd named by variables.
fn migrate(data: &std::path::Path, endpoint: &str) -> std::process::Output {
    let mut command = tokengate();
    command
        .arg("--data-dir")
        .arg(data)
        .args(["tokens", "migrate", "--to", "etcd"])
        .env("TOKENGATE_STORE__ENDPOINTS", endpoint)
        .env("TOKENGATE_STORE__PREFIX", "/moved/");
    run_command(&mut command, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_journal_to_etcd_once_and_refuses_a_prefix_of_another_pepper() {
    let test = "migrate_copies_a_journal_to_etcd_once_and_refuses_a_prefix_of_another_pepper";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let (data, other) = (root.path().join("data"), root.path().join("other"));
    let single = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(&data)
        .build()
        .await;
    let moved = single.create_token(FLEET, "moved").await;
    let gone = single.create_token(FLEET, "gone").await;
    assert_eq!(delete(&single, "gone").await, 200);
    single.stop().await;

    let out = ok(&migrate(&data, &etcd.endpoint(0)));
    assert!(out.contains("copied 1 token(s)"), "{out}");
    // Run again (say, after an interruption): nothing copied twice.
    let out = ok(&migrate(&data, &etcd.endpoint(0)));
    assert!(
        out.contains("copied 0 token(s)") && out.contains("1 already there"),
        "{out}"
    );

    let shared = gateway(&upstream, &[etcd.endpoint(0)], "prefix = \"/moved/\"\n").await;
    assert_eq!(status_with(&shared, &moved).await, 200);
    assert_eq!(status_with(&shared, &gone).await, 401);
    shared.stop().await;

    let another = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(&other)
        .build()
        .await;
    another.create_token(FLEET, "elsewhere").await;
    another.stop().await;
    fails(
        &migrate(&other, &etcd.endpoint(0)),
        1,
        "already holds another pepper",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_authentication_on_the_gateway_logs_in_and_a_wrong_password_cannot_start() {
    let test = "with_etcd_authentication_on_the_gateway_logs_in_and_a_wrong_password_cannot_start";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let mut admin = etcd.client().await;
    admin.user_add("root", "root-password", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("gateway").await.unwrap();
    let own_prefix = etcd_client::Permission::read_write("/auth/").with_prefix();
    admin
        .role_grant_permission("gateway", own_prefix)
        .await
        .unwrap();
    admin.user_add("gw", "gw-password", None).await.unwrap();
    admin.user_grant_role("gw", "gateway").await.unwrap();
    admin.auth_enable().await.unwrap();

    let upstream = FakeUpstream::start().await;
    let login = "prefix = \"/auth/\"\nuser = \"gw\"\npassword = \"gw-password\"\n";
    let a = gateway(&upstream, &[etcd.endpoint(0)], login).await;
    let b = gateway(&upstream, &[etcd.endpoint(0)], login).await;
    let value = a.create_token(FLEET, "authenticated").await;
    until_status(&b, &value, 200, VISIBLE_WITHIN).await;
    a.stop().await;
    b.stop().await;

    let wrong =
        "prefix = \"/auth/\"\nuser = \"gw\"\npassword = \"not-it\"\nstart_timeout = \"2s\"\n";
    let config = Config::from_toml(
        "test",
        &store_toml(&[etcd.endpoint(0)], wrong).replace("start_timeout = \"10s\"\n", ""),
        &Overrides::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = TokenStore::open_configured(&config.store, dir.path(), StoreOptions::default());
    let error = refused.err().expect("a wrong etcd password must not start");
    assert!(
        error.to_string().contains("authentication failed"),
        "{error}"
    );
}
