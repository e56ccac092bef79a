//! Failed authentication costs the client that fails: past its burst an address gets 429 with
//! `Retry-After` for what fails or would need the password pool, while valid service tokens and
//! Basic pairs already verified are served from that address as from any other (one client in a
//! retry loop behind NAT must not lock out its neighbours). The refill itself is tested with a fake clock in `src/throttle.rs`;
//! the password pool and failure cache in `src/users`.

use std::net::IpAddr;

use crate::common::{
    assert_response, basic, es_error, es_unauthorized, FakeUpstream, TestGateway, BAD_CREDENTIALS,
    ELASTIC_PASSWORD, FLEET,
};
use reqwest::{Method, Response};

const THROTTLED: &str = "too many failed authentication attempts from this address, retry later";

/// Three failures in a row, then one a minute: nothing refills during a test.
const STRICT: &str = "[security]\nfailed_auth_burst = 3\nfailed_auth_per_minute = 1\n";

/// A client whose connections come from `source` (any 127.0.0.0/8 address reaches the
/// gateway on 127.0.0.1).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(crate::common::REQUEST_DEADLINE)
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, gw: &TestGateway, path: &str, auth: &str) -> Response {
    client
        .get(gw.url(path))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
}

/// A gateway with [`STRICT`] limits in front of a fake cluster, and a valid bearer credential.
async fn strict_gateway() -> (FakeUpstream, TestGateway, String) {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(STRICT)
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    (upstream, gw, format!("Bearer {token}"))
}

/// Asserts a throttled answer: 429, the ES rejection shape, a `Retry-After` of at most the
/// configured minute.
async fn assert_throttled(response: Response) {
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(response.headers().get("www-authenticate").is_none());
    let expected = es_error(429, "es_rejected_execution_exception", THROTTLED);
    assert_response(response, 429, &expected).await;
}

#[tokio::test]
async fn wrong_tokens_past_the_burst_throttle_that_address_only() {
    let (upstream, gw, valid) = strict_gateway().await;
    let attacker = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");

    for _ in 0..3 {
        let response = get(&attacker, &gw, "/", "Bearer not-a-token").await;
        assert_response(response, 401, &es_unauthorized(BAD_CREDENTIALS)).await;
    }
    assert_throttled(get(&attacker, &gw, "/", "Bearer not-a-token").await).await;
    // Over the limit, what fails is refused, on every path; a valid token is still served.
    assert_throttled(get(&attacker, &gw, "/_security/_authenticate", "Bearer nope").await).await;
    let response = get(&attacker, &gw, "/", &valid).await;
    assert_eq!(response.status(), 200);
    let response = get(&attacker, &gw, "/_security/_authenticate", &valid).await;
    assert_eq!(response.status(), 200);
    // A Basic pair never verified would need the password pool: refused unchecked.
    let unverified = basic("elastic", "not-the-password");
    assert_throttled(get(&attacker, &gw, "/_security/user", &unverified).await).await;
    // Asking without credentials costs nothing to check and is answered as always.
    let response = attacker.get(gw.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // Another address is served, and has a bucket of its own.
    let response = get(&other, &gw, "/", &valid).await;
    assert_eq!(response.status(), 200);
    let response = get(&other, &gw, "/", "Bearer not-a-token").await;
    assert_eq!(response.status(), 401);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_valid_token_shares_its_address_with_a_failing_loop_unharmed() {
    let (upstream, gw, valid) = strict_gateway().await;
    // A well-formed token the gateway does not know (revoked, or from another cluster).
    let revoked =
        tokengate::identity::token::encode_raw(FLEET, "revoked", "aaaaaaaaaaaaaaaaaaaaaa");
    let revoked = format!("Bearer {revoked}");
    let client = client_from("127.0.0.1");
    let (mut served, mut refused) = (0, 0);
    // One request in four from the same address is a retry loop with a revoked token.
    for i in 0..200 {
        if i % 4 == 0 {
            let status = get(&client, &gw, "/", &revoked).await.status();
            assert!(status == 401 || status == 429, "revoked token got {status}");
            refused += u32::from(status == 429);
        } else {
            let response = get(&client, &gw, "/", &valid).await;
            assert_eq!(response.status(), 200, "valid request {i}");
            served += 1;
        }
    }
    assert_eq!(served, 150);
    assert_eq!(
        refused,
        50 - 3,
        "past its burst of 3 the failing loop is throttled"
    );
    assert_eq!(upstream.requests().len(), 150);
}

#[tokio::test]
async fn password_and_unusable_failures_count_on_every_path() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(STRICT)
        .user("bob", "bob-password", &["viewer"])
        .build()
        .await;
    let attacker = client_from("127.0.0.1");
    let wrong = basic("bob", "guess");
    let failures = [
        ("/_security/_authenticate", wrong.as_str()),
        ("/", &basic("nobody", "bob-password")),
        ("/_security/user", "ApiKey c29tZTprZXk="),
    ];
    for (path, authorization) in failures {
        let response = get(&attacker, &gw, path, authorization).await;
        assert_response(response, 401, &es_unauthorized(BAD_CREDENTIALS)).await;
    }
    assert_throttled(get(&attacker, &gw, "/", &wrong).await).await;
    // The right password, never verified yet, would need the pool: refused unchecked.
    let right = basic("bob", "bob-password");
    assert_throttled(get(&attacker, &gw, "/_security/_authenticate", &right).await).await;

    let other = client_from("127.0.0.2");
    let response = get(&other, &gw, "/_security/_authenticate", &right).await;
    assert_eq!(response.status(), 200);
    let elastic = basic("elastic", ELASTIC_PASSWORD);
    let response = get(&other, &gw, "/", &elastic).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
    // Verified now, the pair is recognised without the pool, from the throttled address too;
    // a wrong password for the same user still is not.
    let response = get(&attacker, &gw, "/_security/_authenticate", &right).await;
    assert_eq!(response.status(), 200);
    assert_throttled(get(&attacker, &gw, "/_security/_authenticate", &wrong).await).await;
}

#[tokio::test]
async fn successes_never_use_up_the_allowance() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(STRICT)
        .build()
        .await;
    let token = gw.create_token(FLEET, "t1").await;
    for _ in 0..20 {
        let response = gw
            .with_token(Method::GET, "/", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let response = gw.as_elastic(Method::GET, "/").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The whole burst is still there.
    for _ in 0..3 {
        let response = gw
            .with_token(Method::GET, "/", "not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let response = gw
        .with_token(Method::GET, "/", "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn zero_limits_are_refused_at_start_naming_the_key() {
    let text = "[security]\nfailed_auth_burst = 0\n";
    let error = tokengate::config::Config::from_toml(
        "gw.toml",
        text,
        &tokengate::config::Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.problems,
        ["gw.toml: [security] failed_auth_burst: must be at least 1, found 0"]
    );
}

#[tokio::test]
async fn holding_the_password_pool_full_counts_against_the_address() {
    let upstream = FakeUpstream::start().await;
    let config = "[security]\nfailed_auth_burst = 3\nfailed_auth_per_minute = 1\n\
                  password_workers = 1\npassword_queue = 1\n";
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(config)
        .user("bob", "bob-password", &["viewer"])
        .build()
        .await;
    let attacker = client_from("127.0.0.1");
    let guesses: Vec<String> = (0..30)
        .map(|i| basic("bob", &format!("guess-{i}")))
        .collect();
    let responses =
        futures_util::future::join_all(guesses.iter().map(|g| get(&attacker, &gw, "/", g))).await;
    let mut unthrottled = 0;
    for response in responses {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        match status {
            401 => unthrottled += 1,
            429 if !body.contains(THROTTLED) => unthrottled += 1,
            429 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // However the 30 interleave, wrong passwords and pool refusals share the burst of 3.
    assert!(unthrottled <= 3, "{unthrottled} answers were not throttled");
    let response = get(&attacker, &gw, "/", &basic("bob", "bob-password")).await;
    assert_throttled(response).await;
    let other = client_from("127.0.0.2");
    let response = get(&other, &gw, "/", &basic("bob", "bob-password")).await;
    assert_eq!(response.status(), 200);
}
