//! The rest of the service-account API: delete, list credentials, list accounts, clear cache,
//! and `_authenticate`.

use crate::common::{assert_response, es_unauthorized, json_of, FakeUpstream, TestGateway};
use crate::common::{basic, es_error, es_forbidden, FLEET};
use reqwest::Method;
use serde_json::json;

const FLEET_PATH: &str = "/_security/service/elastic/fleet-server";
const BUILTIN: [&str; 3] = [
    "elastic/enterprise-search-server",
    "elastic/fleet-server",
    "elastic/kibana",
];

#[tokio::test]
async fn delete_removes_a_token_which_then_no_longer_authenticates() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "gone").await;
    let kept = gw.create_token(FLEET, "kept").await;
    let path = format!("{FLEET_PATH}/credential/token/gone");
    let response = gw.as_elastic(Method::DELETE, &path).send().await.unwrap();
    assert_response(response, 200, &json!({"found": true})).await;
    let response = gw
        .as_elastic(Method::DELETE, &format!("{path}?refresh=wait_for"))
        .send()
        .await
        .unwrap();
    assert_response(response, 404, &json!({"found": false})).await;

    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    // The deleted token is still well formed: Elasticsearch names what it carries.
    let reason =
        "failed to authenticate service account [elastic/fleet-server] with token name [gone]";
    assert_response(response, 401, &es_unauthorized(reason)).await;
    let response = gw.with_token(Method::GET, "/", &kept).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn credentials_lists_the_tokens_of_one_account() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    gw.create_token(FLEET, "token42").await;
    gw.create_token(FLEET, "token1").await;
    gw.create_token("elastic/kibana", "other").await;
    let path = format!("{FLEET_PATH}/credential");
    let response = gw.as_elastic(Method::GET, &path).send().await.unwrap();
    let expected = json!({
        "service_account": "elastic/fleet-server",
        "count": 2,
        "tokens": {"token1": {}, "token42": {}},
        "nodes_credentials": {
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "file_tokens": {}
        }
    });
    assert_response(response, 200, &expected).await;

    let response = gw
        .as_elastic(
            Method::GET,
            "/_security/service/elastic/enterprise-search-server/credential",
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, &body["count"], &body["tokens"]),
        (200, &json!(0), &json!({}))
    );
}

#[tokio::test]
async fn accounts_are_listed_by_namespace_and_service() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    for (path, wanted) in [
        ("/_security/service", &BUILTIN[..]),
        ("/_security/service/elastic", &BUILTIN[..]),
        ("/_security/service/elastic/fleet-server", &BUILTIN[1..2]),
    ] {
        let response = gw.as_elastic(Method::GET, path).send().await.unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        let names: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, wanted, "{path}");
        for name in wanted {
            assert!(body[name]["role_descriptor"].is_object(), "{path}: {body}");
        }
    }
    let fleet = gw
        .as_elastic(Method::GET, "/_security/service/elastic/fleet-server")
        .send()
        .await
        .unwrap();
    let (_, fleet) = json_of(fleet).await;
    assert!(
        fleet[FLEET]["role_descriptor"]["cluster"].is_array(),
        "{fleet}"
    );
    for path in ["/_security/service/nope", "/_security/service/elastic/nope"] {
        let response = gw.as_elastic(Method::GET, path).send().await.unwrap();
        assert_response(response, 200, &json!({})).await;
    }
}

#[tokio::test]
async fn configured_accounts_are_listed_and_accept_tokens() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[[service_accounts]]\naccount = \"acme/ingest\"\n")
        .build()
        .await;
    let response = gw
        .as_elastic(Method::GET, "/_security/service/acme")
        .send()
        .await
        .unwrap();
    assert_response(
        response,
        200,
        &json!({"acme/ingest": {"role_descriptor": {}}}),
    )
    .await;
    let value = gw.create_token("acme/ingest", "i1").await;
    let response = gw
        .with_token(Method::GET, "/", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn clear_cache_answers_like_a_one_node_cluster() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\ncluster_name = \"prod\"\nnode_name = \"gw-a\"\n")
        .build()
        .await;
    let expected = json!({
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": "prod",
        "nodes": {"gw-a": {"name": "gw-a"}}
    });
    // `""` (an empty path segment), `*` and `_all` all mean every token of the account, as
    // `paramAsStringArrayOrEmptyIfAll` reads them; Elasticsearch never looks the account up.
    for names in ["t1", "*", "_all", "", "t1,t2", "t1,"] {
        let path = format!("{FLEET_PATH}/credential/token/{names}/_clear_cache");
        let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
        assert_response(response, 200, &expected).await;
    }
    let path = "/_security/service/acme/nope/credential/token/_all/_clear_cache";
    let response = gw.as_elastic(Method::POST, path).send().await.unwrap();
    assert_response(response, 200, &expected).await;
    assert!(gw.state.store.is_empty());
    // A bad name in a list is the REST handler's IllegalArgumentException, not a validation
    // failure.
    for (names, bad) in [("_x", "_x"), ("t1,*", "*"), (",t1", "")] {
        let path = format!("{FLEET_PATH}/credential/token/{names}/_clear_cache");
        let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
        let reason = format!(
            "invalid service token name [{bad}]. service account token name must have at least 1 \
             character and at most 256 characters that are alphanumeric (A-Z, a-z, 0-9) or hyphen \
             (-) or underscore (_). It must not begin with an underscore (_)."
        );
        assert_response(
            response,
            400,
            &es_error(400, "illegal_argument_exception", &reason),
        )
        .await;
    }
}

#[tokio::test]
async fn clearing_the_cache_takes_manage_security() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[security]\nadmin_roles = [\"token_admin\"]\n")
        .user("ops", "ops-password", &["token_admin"])
        .build()
        .await;
    let path = format!("{FLEET_PATH}/credential/token/*/_clear_cache");
    let response = gw
        .client
        .post(gw.url(&path))
        .header("authorization", basic("ops", "ops-password"))
        .send()
        .await
        .unwrap();
    let expected = es_forbidden(
        "cluster:admin/xpack/security/cache/clear",
        "ops",
        "token_admin",
        "manage_security,all",
    );
    assert_response(response, 403, &expected).await;
    // The same role still lists accounts: read_security's action is granted by
    // manage_service_account too.
    let response = gw
        .client
        .get(gw.url("/_security/service"))
        .header("authorization", basic("ops", "ops-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn authenticate_describes_a_service_token() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "token1").await;
    let response = gw
        .with_token(Method::GET, "/_security/_authenticate", &value)
        .send()
        .await
        .unwrap();
    let expected = json!({
        "username": "elastic/fleet-server",
        "roles": [],
        "full_name": "Service account - elastic/fleet-server",
        "email": null,
        "metadata": {"_elastic_service_account": true},
        "enabled": true,
        "authentication_realm": {"name": "_service_account", "type": "_service_account"},
        "lookup_realm": {"name": "_service_account", "type": "_service_account"},
        "authentication_type": "token",
        "token": {"name": "token1", "type": "_service_account_index"}
    });
    assert_response(response, 200, &expected).await;
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn authenticate_describes_a_file_realm_user() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::GET, "/_security/_authenticate")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["username"], "elastic");
    assert_eq!(body["roles"], json!(["superuser"]));
    assert_eq!(body["authentication_realm"]["type"], "file");
}

#[tokio::test]
async fn the_family_requires_credentials() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    for (method, path) in [
        (Method::GET, "/_security/service".to_owned()),
        (Method::GET, format!("{FLEET_PATH}/credential")),
        (Method::POST, format!("{FLEET_PATH}/credential/token/t1")),
        (Method::DELETE, format!("{FLEET_PATH}/credential/token/t1")),
        (Method::GET, "/_security/_authenticate".to_owned()),
    ] {
        let response = gw
            .client
            .request(method, gw.url(&path))
            .send()
            .await
            .unwrap();
        let reason = format!("missing authentication credentials for REST request [{path}]");
        assert_response(response, 401, &es_unauthorized(&reason)).await;
    }
    assert!(gw.state.store.is_empty());
}

#[tokio::test]
async fn delete_of_an_invalid_name_is_a_validation_error() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::DELETE, &format!("{FLEET_PATH}/credential/token/_x"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "action_request_validation_exception");
}
