//! A client that leaves takes nothing with it. Every request future can be dropped at any of its
//! awaits (a client's timeout, a closed tab, an HTTP/2 stream reset, shutdown); whatever it held
//! (an upstream slot, a place in the wait queue, a node's one probe, a shared password check, a
//! claimed token name, a password pool place) must be given back.
//!
//! Two kinds of tests: [`Canceller::every_await`] drops one request after 1, 2, … polls until it
//! completes and checks the state after each drop; and real clients that leave (timeouts,
//! HTTP/2 resets) in the situations an operator meets: a rolling restart, a full queue.

use std::sync::Arc;
use std::time::Duration;

use crate::common::cancel::{Canceller, Held, DROPPED};
use crate::common::upstream::default_response;
use crate::common::upstream::Behaviour;
use crate::common::{
    basic, eventually, eventually_async, FakeUpstream, TestGateway, DEADLINE, FLEET,
};
use reqwest::Method;
use tokio::sync::Semaphore;

/// How long a leaving client waits before it gives up.
const CLIENT_PATIENCE: Duration = Duration::from_millis(300);

/// An upstream that answers `/hold…` only when `gate` gives it a permit, everything else at once.
async fn gated_upstream(gate: &Arc<Semaphore>) -> FakeUpstream {
    let gate = Arc::clone(gate);
    FakeUpstream::builder()
        .handler(move |request| {
            let gate = Arc::clone(&gate);
            let held = request.uri.path().starts_with("/hold");
            async move {
                if held {
                    gate.acquire().await.unwrap().forget();
                }
                default_response()
            }
        })
        .start()
        .await
}

/// One node whose ejections end after 1 ms (its next request is its probe at once), a gateway
/// in front of it, and a token.
async fn ejecting_gateway() -> (FakeUpstream, TestGateway, String) {
    let node = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(node.addr)
        .config("[upstream]\neject_for = \"1ms\"\neject_max = \"1ms\"\n")
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    (node, gw, token)
}

/// A gateway with one upstream slot (`max_connections = 1`, `max_pending = 2`), that slot held
/// by a request to `/hold` until `gate` gives a permit.
struct SlotTaken {
    gate: Arc<Semaphore>,
    upstream: FakeUpstream,
    gw: TestGateway,
    token: String,
    holder: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

async fn one_slot_taken() -> SlotTaken {
    let gate = Arc::new(Semaphore::new(0));
    let upstream = gated_upstream(&gate).await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[upstream]\nmax_connections = 1\nmax_pending = 2\n")
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    let holder = tokio::spawn(gw.with_token(Method::GET, "/hold", &token).send());
    eventually("the first request to hold the only slot", DEADLINE, || {
        gw.state.upstream.in_flight() == 1
    })
    .await;
    SlotTaken {
        gate,
        upstream,
        gw,
        token,
        holder,
    }
}

/// The `tokengate_client_connections` gauge, read from `/metrics`.
async fn client_connections(gw: &TestGateway) -> u64 {
    let (_, metrics) = gw.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tokengate_client_connections "))
        .and_then(|value| value.trim().parse().ok())
        .expect("no tokengate_client_connections in /metrics")
}

/// A client that gives up after [`CLIENT_PATIENCE`], closing its connection.
fn impatient() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_PATIENCE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_forwarded_request_dropped_at_any_await_gives_everything_back() {
    let upstream = FakeUpstream::builder()
        .delay(Duration::from_millis(2))
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;
    let token = gw.create_token(FLEET, "t1").await;
    let canceller = Canceller::start(&gw.state).await;
    let client = crate::common::client();

    let get = || client.get(canceller.url("/_search")).bearer_auth(&token);
    // The test's runtime has one thread: the request must yield at least once for the
    // connection tasks to carry it, so it is dropped at least once.
    let (response, drops) = canceller.every_await(get).await;
    assert_eq!(response.status(), 200);
    assert!(drops >= 1, "only {drops} awaits before the answer");

    // A body streamed upstream: dropped while it is being sent, too.
    let body = vec![b'x'; 256 * 1024];
    let post = || {
        client
            .post(canceller.url("/_bulk"))
            .bearer_auth(&token)
            .body(body.clone())
    };
    let (response, drops) = canceller.every_await(post).await;
    assert_eq!(response.status(), 200);
    assert!(drops >= 1, "only {drops} awaits before the answer");
    assert_eq!(Held::of(&gw.state), Held::none());
    assert!(canceller.dropped() >= 2);
    canceller.stop().await;
}

#[tokio::test]
async fn a_probe_dropped_at_any_await_passes_its_turn_on() {
    let (mut node, gw, token) = ejecting_gateway().await;
    let canceller = Canceller::start(&gw.state).await;
    let client = crate::common::client();
    let mut probes_dropped = 0;
    for n in 1..=200 {
        // Ejected: the node refuses a connection.
        node.stop().await;
        let response = gw
            .with_token(Method::GET, "/", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        // Back, and the next request is its one probe, dropped after `n` polls.
        node.restart().await;
        let probe = client.get(canceller.url("/")).bearer_auth(&token);
        let response = canceller.once(n, probe).await;
        eventually("the dropped probe to give its turn back", DEADLINE, || {
            Held::of(&gw.state) == Held::none()
        })
        .await;
        if response.status() != DROPPED {
            assert_eq!(response.status(), 200);
            break;
        }
        probes_dropped += 1;
        // The probe's turn passed on: the node is tried again and answers.
        let response = gw
            .with_token(Method::GET, "/", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "after a probe dropped at poll {n}");
    }
    assert!(probes_dropped >= 1, "no probe was dropped");
    canceller.stop().await;
}

#[tokio::test]
async fn a_request_dropped_in_the_wait_queue_gives_its_place_back() {
    let SlotTaken {
        gate,
        upstream: _upstream,
        gw,
        token,
        holder,
    } = one_slot_taken().await;
    let canceller = Canceller::start(&gw.state).await;
    let client = crate::common::client();
    // More waiters than the queue has places, each dropped while it waits.
    for _ in 0..5 {
        let waiter = client.get(canceller.url("/")).bearer_auth(&token);
        let response = canceller.once(1, waiter).await;
        assert_eq!(response.status(), DROPPED, "refused instead of queued");
        assert_eq!(gw.state.upstream.waiting(), 0);
    }
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    assert_eq!(Held::of(&gw.state), Held::none());
    canceller.stop().await;
}

#[tokio::test]
async fn the_token_api_and_password_checks_dropped_at_any_await_give_everything_back() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .user("bob", "bob-password", &["viewer"])
        .build()
        .await;
    let canceller = Canceller::start(&gw.state).await;
    let client = crate::common::client();

    // Authentication with a slow password check, right and wrong.
    let right = basic("bob", "bob-password");
    let auth = || {
        client
            .get(canceller.url("/_security/_authenticate"))
            .header("authorization", &right)
    };
    // How many polls it takes depends on when the pool's thread finishes: no count asserted.
    let (response, _) = canceller.every_await(auth).await;
    assert_eq!(response.status(), 200);
    let wrong = basic("bob", "not-bobs");
    let auth = || {
        client
            .get(canceller.url("/_security/_authenticate"))
            .header("authorization", &wrong)
    };
    let (response, _) = canceller.every_await(auth).await;
    assert_eq!(response.status(), 401);

    // A token's create: dropped before or after it was handed to the journal; the name is
    // never left claimed, and a create that went through is there whole.
    let path = format!("/_security/service/{FLEET}/credential/token/dropped");
    let create = || {
        client
            .post(canceller.url(&path))
            .header("authorization", crate::common::basic_elastic())
    };
    let (response, _) = canceller.every_await(create).await;
    let status = response.status();
    assert!(status == 200 || status == 409, "create answered {status}");
    assert!(gw.state.store.contains(&format!("{FLEET}/dropped")));
    assert_eq!(Held::of(&gw.state), Held::none());
    canceller.stop().await;
}

#[tokio::test]
async fn a_rolling_restart_with_a_client_that_leaves_mid_probe_loses_no_node() {
    let (mut node, gw, token) = ejecting_gateway().await;
    // The node restarts; a request meanwhile ejects it.
    node.stop().await;
    let response = gw
        .with_token(Method::GET, "/", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    node.restart().await;
    // The next request is the node's probe, and the node is slow to answer it: its client
    // gives up and leaves.
    node.set_behaviour(Behaviour::Hold);
    let gone = impatient()
        .get(gw.url("/"))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(gone.unwrap_err().is_timeout());
    eventually("the abandoned probe to be dropped", DEADLINE, || {
        Held::of(&gw.state) == Held::none()
    })
    .await;
    // The node answers again: so must the gateway, at once and from then on.
    node.set_behaviour(Behaviour::Answer);
    for _ in 0..5 {
        let response = gw
            .with_token(Method::GET, "/", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn clients_that_leave_the_wait_queue_leave_no_ghosts() {
    let SlotTaken {
        gate,
        upstream: _upstream,
        gw,
        token,
        holder,
    } = one_slot_taken().await;
    let connections_before = client_connections(&gw).await;
    // Two clients wait for the slot and give up.
    let leaving = impatient();
    let (b, c) = tokio::join!(
        leaving.get(gw.url("/")).bearer_auth(&token).send(),
        leaving.get(gw.url("/")).bearer_auth(&token).send(),
    );
    assert!(b.unwrap_err().is_timeout() && c.unwrap_err().is_timeout());
    eventually("the leavers' places to be given back", DEADLINE, || {
        gw.state.upstream.waiting() == 0
    })
    .await;
    // Their connections are gone too, as the gauge says.
    eventually_async("the leavers' connections to close", DEADLINE, || async {
        client_connections(&gw).await == connections_before
    })
    .await;
    // The next two wait, as the queue has room for them, and are served once the slot frees.
    let next = || tokio::spawn(gw.with_token(Method::GET, "/", &token).send());
    let (d, e) = (next(), next());
    eventually("two requests to wait", DEADLINE, || {
        gw.state.upstream.waiting() == 2
    })
    .await;
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    assert_eq!(d.await.unwrap().unwrap().status(), 200);
    assert_eq!(e.await.unwrap().unwrap().status(), 200);
    assert_eq!(Held::of(&gw.state), Held::none());
}

#[tokio::test]
async fn an_http2_stream_reset_mid_request_gives_everything_back() {
    let gate = Arc::new(Semaphore::new(0));
    let upstream = gated_upstream(&gate).await;
    let gw = TestGateway::start(&upstream).await;
    let token = gw.create_token(FLEET, "t1").await;
    let h2 = crate::common::h2c_client();
    let held = tokio::spawn(h2.get(gw.url("/hold")).bearer_auth(&token).send());
    eventually("the stream's request to reach the node", DEADLINE, || {
        gw.state.upstream.in_flight() == 1
    })
    .await;
    // Dropping the client's request resets its stream; the connection stays open.
    held.abort();
    assert!(held.await.unwrap_err().is_cancelled());
    eventually("the reset stream's slot to be given back", DEADLINE, || {
        Held::of(&gw.state) == Held::none()
    })
    .await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("tokengate_upstream_requests_in_flight 0"),
        "{metrics}"
    );
    // The same connection carries the next stream.
    let response = h2
        .get(gw.url("/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}
