//! The audit log as an operator reads it: one JSON object per line in the data directory, naming
//! who failed or acted, from which address, and never a password or token value.

use std::path::Path;

use crate::common::{basic, eventually_get, FakeUpstream, TestGateway, DEADLINE};
use crate::common::{ELASTIC_PASSWORD, FLEET};
use reqwest::Method;
use serde_json::Value;
use tokengate::identity::{AccountId, TokenName};

/// The events of the audit file once `wanted` of them satisfy `matches`; fails after a bounded
/// wait, since the writer thread appends shortly after the request.
async fn events_once(
    dir: &Path,
    wanted: usize,
    matches: impl Fn(&Value) -> bool,
) -> (Vec<Value>, String) {
    let path = dir.join("audit.json");
    let what = format!("{wanted} matching events written to {}", path.display());
    eventually_get(&what, DEADLINE, || async {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // Only whole lines: the last one may still be arriving.
        let events: Vec<Value> = text
            .lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if events.iter().filter(|e| matches(e)).count() >= wanted {
            Ok((events, text))
        } else {
            Err(text)
        }
    })
    .await
}

fn action(event: &Value) -> &str {
    event["event.action"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn failed_logins_name_the_claimed_principal_and_client_but_no_secret() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let real = gw.create_token(FLEET, "real").await;
    let wrong_password = "not-the-password-4711";
    let response = gw
        .client
        .get(gw.url("/_cluster/health?pretty"))
        .header("authorization", basic("elastic", wrong_password))
        .header("x-opaque-id", "nightly-job")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let account = AccountId::new("elastic", "fleet-server");
    let name = TokenName::new("guessed").unwrap();
    let forged_secret = "forged-secret-0815";
    let forged = tokengate::identity::token::encode(&account, &name, forged_secret);
    let response = gw
        .with_token(Method::POST, "/logs/_doc", &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let failed = |e: &Value| action(e) == "authentication_failed";
    let (events, text) = events_once(&gw.data_dir, 2, failed).await;
    let failures: Vec<&Value> = events.iter().filter(|e| failed(e)).collect();
    let basic_event = failures[0];
    assert_eq!(basic_event["type"], "audit");
    assert!(basic_event["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(basic_event["event.type"], "rest");
    assert_eq!(basic_event["user.name"], "elastic");
    assert_eq!(basic_event["origin.type"], "rest");
    let origin = basic_event["origin.address"].as_str().unwrap();
    assert!(origin.starts_with("127.0.0.1:"), "{origin}");
    assert_eq!(basic_event["url.path"], "/_cluster/health");
    assert_eq!(basic_event["url.query"], "pretty");
    assert_eq!(basic_event["request.method"], "GET");
    assert_eq!(basic_event["opaque_id"], "nightly-job");
    let bearer_event = failures[1];
    assert_eq!(bearer_event["user.name"], "elastic/fleet-server");
    assert_eq!(bearer_event["authentication.token.name"], "guessed");
    assert_eq!(bearer_event["request.method"], "POST");
    assert_eq!(bearer_event["url.path"], "/logs/_doc");

    for secret in [
        wrong_password,
        ELASTIC_PASSWORD,
        forged_secret,
        forged.as_str(),
        real.as_str(),
        "Basic ",
        "Bearer ",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} in the audit log: {text}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn token_changes_name_the_acting_user_and_client() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let path = format!("/_security/service/{FLEET}/credential/token/t1");
    let response = gw.as_elastic(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let clear = format!("/_security/service/{FLEET}/credential/token/t1/_clear_cache");
    let response = gw.as_elastic(Method::POST, &clear).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let wanted = [
        "create_service_token",
        "delete_service_token",
        "access_granted",
    ];
    let (events, text) = events_once(&gw.data_dir, 3, |e| wanted.contains(&action(e))).await;
    for (event, (action_name, change)) in events.iter().zip([
        ("create_service_token", Some("create")),
        ("delete_service_token", Some("delete")),
        ("access_granted", None),
    ]) {
        assert_eq!(action(event), action_name, "{text}");
        assert_eq!(event["user.name"], "elastic");
        assert_eq!(event["user.realm"], "default_file");
        assert_eq!(event["authentication.type"], "REALM");
        let origin = event["origin.address"].as_str().unwrap();
        assert!(origin.starts_with("127.0.0.1:"), "{origin}");
        if let Some(change) = change {
            assert_eq!(event["event.type"], "security_config_change");
            let token = &event[change]["service_token"];
            assert_eq!(token["namespace"], "elastic");
            assert_eq!(token["service"], "fleet-server");
            assert_eq!(token["name"], "t1");
        } else {
            assert_eq!(
                event["action"],
                "cluster:admin/xpack/security/service_account/token/cache/clear"
            );
        }
    }
    assert!(!text.contains(&value), "the token value in the audit log");
    gw.stop().await;
}

#[tokio::test]
async fn refusals_of_the_authenticated_are_access_denied() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .user("viewer", "viewer-password", &["viewer"])
        .build()
        .await;
    let viewer = basic("viewer", "viewer-password");
    let create = format!("/_security/service/{FLEET}/credential/token/t1");
    for (method, path) in [
        (Method::POST, create.as_str()),
        (Method::GET, "/_security/user"),
    ] {
        let response = gw
            .client
            .request(method, gw.url(path))
            .header("authorization", &viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let denied = |e: &Value| action(e) == "access_denied";
    let (events, text) = events_once(&gw.data_dir, 2, denied).await;
    let denials: Vec<&Value> = events.iter().filter(|e| denied(e)).collect();
    assert_eq!(
        denials[0]["action"],
        "cluster:admin/xpack/security/service_account/token/create"
    );
    assert_eq!(denials[0]["url.path"], create);
    assert_eq!(
        denials[1]["action"],
        "cluster:admin/xpack/security/user/get"
    );
    assert_eq!(denials[1]["url.path"], "/_security/user");
    for denial in denials {
        assert_eq!(denial["user.name"], "viewer");
        assert_eq!(denial["user.roles"], serde_json::json!(["viewer"]));
    }
    assert!(!text.contains("viewer-password"));
    assert!(upstream.requests().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_changed_users_file_is_recorded() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nusers_reload_interval = \"50ms\"\n")
        .build()
        .await;
    let roles = gw.data_dir.join("users_roles");
    let mut text = std::fs::read_to_string(&roles).unwrap();
    text.push_str("viewer:elastic\n");
    std::fs::write(&roles, text).unwrap();
    let reloaded = |e: &Value| action(e) == "reload_users";
    let (events, _) = events_once(&gw.data_dir, 1, reloaded).await;
    let event = events.iter().find(|e| reloaded(e)).unwrap();
    assert_eq!(event["event.type"], "security_config_change");
    assert_eq!(event["event.outcome"], "success");
    assert_eq!(event["file.directory"], gw.data_dir.display().to_string());
    gw.stop().await;
}
