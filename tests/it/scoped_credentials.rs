//! Each token only as strong as its account: what forwarded requests carry upstream (auto API
//! keys, configured credentials, the gateway's own only on request, nothing), keys kept across
//! restarts and replaced after a 401, pass-through of the clients' own credentials, and local
//! access rules.

use crate::common::cluster::KeyCluster;
use crate::common::{es_error, eventually, eventually_get, json_of, FakeUpstream, TestGateway};
use crate::common::{DEADLINE, FLEET};
use reqwest::Method;
use serde_json::json;

const ADMIN: &str = "ApiKey YWRtaW46YWRtaW4=";
const KIBANA: &str = "elastic/kibana";

fn admin_config(extra: &str) -> String {
    format!("[upstream]\nauthorization = \"{ADMIN}\"\n{extra}")
}

#[tokio::test]
async fn each_accounts_requests_carry_that_accounts_credential() {
    let cluster = KeyCluster::start(ADMIN).await;
    let config = admin_config(
        r#"
[[service_accounts]]
account = "acme/own"
upstream_authorization = "ApiKey b3duOmtleQ=="
[[service_accounts]]
account = "acme/legacy"
upstream_credential = "gateway"
[[service_accounts]]
account = "acme/open"
upstream_credential = "none"
[[service_accounts]]
account = "acme/ingest"
role_descriptor = { cluster = ["monitor"], indices = [{ names = ["logs-*"], privileges = ["create_doc"] }] }
"#,
    );
    let gw = TestGateway::builder()
        .upstream(cluster.upstream.addr)
        .config(&config)
        .build()
        .await;

    // One key per auto account, made at start with the gateway's credential and limited to the
    // account's own role descriptor.
    let issued = cluster.issued();
    let auto = [
        "acme/ingest",
        "elastic/enterprise-search-server",
        FLEET,
        KIBANA,
    ];
    assert_eq!(issued.len(), auto.len(), "{issued:#?}");
    for account in auto {
        let key = cluster.key_of(account).unwrap();
        assert_eq!(key.created_with, ADMIN);
        assert_eq!(key.name, format!("tokengate {account}"));
        let listed = gw
            .as_elastic(Method::GET, &format!("/_security/service/{account}"))
            .send()
            .await
            .unwrap();
        let (_, listed) = json_of(listed).await;
        let mut descriptor = listed[account]["role_descriptor"].clone();
        if let Some(map) = descriptor.as_object_mut() {
            map.remove("metadata");
            map.remove("transient_metadata");
        }
        assert_eq!(
            key.request["role_descriptors"][account], descriptor,
            "{account}"
        );
    }
    let kibana = &cluster.key_of(KIBANA).unwrap().request["role_descriptors"][KIBANA];
    assert!(
        !kibana["cluster"]
            .as_array()
            .unwrap()
            .contains(&json!("all")),
        "kibana's key must not hold the cluster privilege all: {kibana}"
    );

    let cases = [
        (KIBANA, Some(cluster.key_of(KIBANA).unwrap().authorization)),
        (
            "acme/ingest",
            Some(cluster.key_of("acme/ingest").unwrap().authorization),
        ),
        ("acme/own", Some("ApiKey b3duOmtleQ==".to_owned())),
        ("acme/legacy", Some(ADMIN.to_owned())),
        ("acme/open", None),
    ];
    for (account, _) in &cases {
        let value = gw.create_token(account, "t1").await;
        let response = gw
            .with_token(Method::GET, "/logs-a/_search", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{account}");
    }
    let expected: Vec<Option<String>> = cases.into_iter().map(|(_, auth)| auth).collect();
    assert_eq!(cluster.forwarded_authorizations(), expected);
}

#[tokio::test]
async fn keys_are_reused_after_a_restart_and_replaced_when_refused() {
    let cluster = KeyCluster::start(ADMIN).await;
    let dir = tempfile::tempdir().unwrap();
    let only_kibana = |descriptor: &str| {
        admin_config(&format!(
            "service_credentials = \"none\"\n\
             [[service_accounts]]\naccount = \"{KIBANA}\"\nupstream_credential = \"auto\"\n{descriptor}"
        ))
    };
    let start = |config: String| {
        TestGateway::builder()
            .upstream(cluster.upstream.addr)
            .data_dir(dir.path())
            .config(&config)
            .build()
    };
    let gw = start(only_kibana("")).await;
    let value = gw.create_token(KIBANA, "t1").await;
    let first = cluster.key_of(KIBANA).unwrap();
    let status = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let file = dir.path().join("upstream_api_keys.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the keys file is owner-only");
    gw.stop().await;

    // Same descriptor after a restart: the same key, none created.
    let gw = start(only_kibana("")).await;
    gw.with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(cluster.issued().len(), 1);
    assert_eq!(
        cluster.forwarded_authorizations(),
        vec![Some(first.authorization.clone()); 2]
    );

    // Invalidated behind the gateway's back: the request that meets the 401 is told to retry,
    // and a new key takes over.
    cluster.revoke(&first.id);
    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body),
        (
            503,
            es_error(
                503,
                "upstream_credential_unavailable_exception",
                "the upstream credential of service account [elastic/kibana] is being renewed; retry later"
            )
        )
    );
    let second = eventually_get(
        "a request with the token to be served again",
        DEADLINE,
        || async {
            let status = gw
                .with_token(Method::GET, "/", &value)
                .send()
                .await
                .unwrap()
                .status();
            match status.as_u16() {
                200 => Ok(cluster.key_of(KIBANA).unwrap()),
                other => Err(format!("status {other}")),
            }
        },
    )
    .await;
    assert_ne!(second.id, first.id);
    assert_eq!(
        cluster
            .forwarded_authorizations()
            .last()
            .unwrap()
            .as_deref(),
        Some(second.authorization.as_str())
    );
    gw.stop().await;

    // A changed descriptor needs a new key; the old one is invalidated.
    let gw = start(only_kibana("role_descriptor = { cluster = [\"monitor\"] }")).await;
    let third = cluster.key_of(KIBANA).unwrap();
    assert_ne!(third.id, second.id);
    assert_eq!(
        third.request["role_descriptors"][KIBANA],
        json!({"cluster": ["monitor"]})
    );
    eventually("the replaced key to be invalidated", DEADLINE, || {
        cluster.invalidated().contains(&second.id)
    })
    .await;
    gw.with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cluster
            .forwarded_authorizations()
            .last()
            .unwrap()
            .as_deref(),
        Some(third.authorization.as_str())
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(&third.id) && !saved.contains(&second.id));
}

#[tokio::test]
async fn a_cluster_without_the_api_answers_503_and_the_gateway_still_starts() {
    // The fake's default answer is no API-key answer at all.
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(&admin_config(""))
        .build()
        .await;
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.uri.path() == "/_security/api_key"));
}

#[tokio::test]
async fn pass_through_sends_the_clients_credential_and_never_the_gateways() {
    let cluster = KeyCluster::start(ADMIN).await;
    let gw = TestGateway::builder()
        .upstream(cluster.upstream.addr)
        .config(&admin_config(
            "service_credentials = \"gateway\"\n[security]\npass_through = [\"ApiKey\"]\n",
        ))
        .build()
        .await;
    let own = "ApiKey Y2xpZW50OmtleQ==";
    for path in [
        "/logs/_search",
        "/_security/api_key",
        "/_security/_query/api_key",
    ] {
        let response = gw
            .client
            .get(gw.url(path))
            .header("authorization", own)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(
        cluster.forwarded_authorizations(),
        vec![Some(own.to_owned()); 2]
    );
    assert_eq!(
        cluster.issued().len(),
        0,
        "GET of the key API creates nothing"
    );
    // The gateway's own API is still the gateway's: an API key is no credential there.
    let response = gw
        .client
        .get(gw.url("/_security/_authenticate"))
        .header("authorization", own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Without the opt-in an API key is refused by the gateway and nothing goes upstream.
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .client
        .get(gw.url("/logs/_search"))
        .header("authorization", own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn basic_pass_through_leaves_the_token_api_to_the_gateways_users() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[upstream]\nauthorization = \"ApiKey Z3c=\"\nservice_credentials = \"none\"\n[security]\npass_through = [\"Basic\"]\n")
        .build()
        .await;
    let theirs = crate::common::basic("cluster-user", "cluster-password");
    let response = gw
        .client
        .get(gw.url("/logs/_search"))
        .header("authorization", &theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.single_request().header("authorization"),
        Some(theirs.as_str())
    );
    // The gateway's users still manage tokens with Basic.
    gw.create_token(FLEET, "t1").await;
}

#[tokio::test]
async fn security_apis_go_upstream_only_with_a_scoped_credential() {
    let cluster = KeyCluster::start(ADMIN).await;
    let gw = TestGateway::builder()
        .upstream(cluster.upstream.addr)
        .config(&admin_config(
            "[[service_accounts]]\naccount = \"acme/legacy\"\nupstream_credential = \"gateway\"\n",
        ))
        .build()
        .await;
    let kibana = gw.create_token(KIBANA, "t1").await;
    let response = gw
        .with_token(Method::DELETE, "/_security/user/someone", &kibana)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the cluster judges kibana's own key"
    );
    assert_eq!(
        cluster.forwarded_authorizations(),
        vec![Some(cluster.key_of(KIBANA).unwrap().authorization)]
    );
    let legacy = gw.create_token("acme/legacy", "t1").await;
    let response = gw
        .with_token(Method::DELETE, "/_security/user/someone", &legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "never as the gateway's credential");
    assert_eq!(cluster.forwarded_authorizations().len(), 1);
}

#[tokio::test]
async fn local_rules_allow_and_deny_including_path_tricks() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(
            r#"
[[service_accounts]]
account = "acme/ingest"
access = [
  { methods = ["POST", "PUT"], paths = ["/logs-*/_bulk", "/logs-*/_doc/*"] },
  { methods = ["GET"], paths = ["/_cluster/health"] },
]
"#,
        )
        .build()
        .await;
    let value = gw.create_token("acme/ingest", "t1").await;
    let allowed = [
        (Method::POST, "/logs-a/_bulk"),
        (Method::PUT, "/logs-a/_doc/1"),
        (Method::GET, "/_cluster/health"),
        (Method::HEAD, "/_cluster/health"),
        (Method::POST, "//logs-a//_bulk"),
        (Method::POST, "/logs%2Da/_bulk"),
    ];
    for (method, path) in &allowed {
        let response = gw
            .with_token(method.clone(), path, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
    }
    let denied = [
        (Method::GET, "/logs-a/_search"),
        (Method::DELETE, "/logs-a"),
        (Method::POST, "/logs-a,secrets/_bulk"),
        (Method::POST, "/logs-a%2Csecrets/_bulk"),
        (Method::POST, "/logs-a:secrets/_bulk"),
        (Method::POST, "/secrets/_bulk"),
        (Method::GET, "/_cluster/health/secrets"),
    ];
    for (method, path) in &denied {
        let response = gw
            .with_token(method.clone(), path, &value)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        let reason = format!(
            "action [{method} {path}] is unauthorized for service account [acme/ingest], no access rule of the gateway allows it"
        );
        assert_eq!(
            (status, body),
            (403, es_error(403, "security_exception", &reason))
        );
    }
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path()))
        .collect();
    let expected: Vec<String> = allowed.iter().map(|(m, p)| format!("{m} {p}")).collect();
    assert_eq!(seen, expected);
    // Other accounts have no rules.
    let fleet = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::DELETE, "/logs-a", &fleet)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn keys_are_made_through_another_node_when_the_first_is_down() {
    let cluster = KeyCluster::start(ADMIN).await;
    let refusing = crate::common::refusing();
    let down = refusing.addr;
    let gw = TestGateway::builder()
        .upstreams(&[down, cluster.upstream.addr])
        .config(&admin_config(""))
        .build()
        .await;
    let key = cluster
        .key_of(FLEET)
        .expect("the key made through the second node");
    assert_eq!(key.created_with, ADMIN);
    let value = gw.create_token(FLEET, "t1").await;
    let response = gw
        .with_token(Method::GET, "/_search", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        cluster.forwarded_authorizations(),
        [Some(key.authorization)]
    );
}
