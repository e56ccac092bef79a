//! Answers compared byte for byte with a node's: `?pretty` layout, paths with empty segments,
//! and the built-in accounts' role descriptors.

use crate::common::{assert_response, es_error, json_of, FakeUpstream, TestGateway, FLEET};
use reqwest::Method;
use serde_json::json;

const FLEET_PATH: &str = "/_security/service/elastic/fleet-server";

async fn text_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn pretty_answers_are_laid_out_as_jackson_lays_them_out() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{FLEET_PATH}/credential/token/absent?pretty");
    let response = gw.as_elastic(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(
        text_of(response).await,
        (404, "{\n  \"found\" : false\n}\n".to_owned())
    );

    let path = "/_security/service/elastic/enterprise-search-server/credential?pretty=true";
    let response = gw.as_elastic(Method::GET, path).send().await.unwrap();
    let expected = "{\n  \"service_account\" : \"elastic/enterprise-search-server\",\n  \"count\" : 0,\n  \
                    \"tokens\" : { },\n  \"nodes_credentials\" : {\n    \"_nodes\" : {\n      \"total\" : 1,\n      \
                    \"successful\" : 1,\n      \"failed\" : 0\n    },\n    \"file_tokens\" : { }\n  }\n}\n";
    assert_eq!(text_of(response).await, (200, expected.to_owned()));

    let response = gw
        .as_elastic(
            Method::GET,
            "/_security/service/elastic/fleet-server?pretty",
        )
        .send()
        .await
        .unwrap();
    let (status, text) = text_of(response).await;
    assert_eq!(status, 200);
    assert!(
        text.starts_with(
            "{\n  \"elastic/fleet-server\" : {\n    \"role_descriptor\" : {\n      \"cluster\" : [\n        \"monitor\",\n        \"manage_own_api_key\"\n      ],\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n      \"run_as\" : [ ],\n"), "{text}");
}

#[tokio::test]
async fn pretty_errors_are_laid_out_the_same_way() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = format!("{FLEET_PATH}/credential/token/t1");
    let response = gw
        .as_elastic(Method::POST, &format!("{path}?foo=1&pretty"))
        .send()
        .await
        .unwrap();
    let reason = format!("request [{path}] contains unrecognized parameter: [foo]");
    let expected = format!(
        "{{\n  \"error\" : {{\n    \"root_cause\" : [\n      {{\n        \"type\" : \"illegal_argument_exception\",\n        \
         \"reason\" : \"{reason}\"\n      }}\n    ],\n    \"type\" : \"illegal_argument_exception\",\n    \
         \"reason\" : \"{reason}\"\n  }},\n  \"status\" : 400\n}}\n"
    );
    assert_eq!(text_of(response).await, (400, expected));

    let response = gw
        .as_elastic(Method::GET, &format!("{path}?pretty"))
        .send()
        .await
        .unwrap();
    let expected = format!(
        "{{\n  \"error\" : \"Incorrect HTTP method for uri [{path}?pretty] and method [GET], allowed: [POST, PUT, DELETE]\",\n  \"status\" : 405\n}}\n"
    );
    assert_eq!(text_of(response).await, (405, expected));

    // A 401 keeps its challenges when pretty.
    let response = gw
        .client
        .get(gw.url("/_security/_authenticate?pretty"))
        .send()
        .await
        .unwrap();
    let (status, text) = text_of(response).await;
    assert_eq!(status, 401);
    assert!(
        text.contains("\"header\" : {\n      \"WWW-Authenticate\" : [\n        \"Basic realm=\\\"security\\\", charset=\\\"UTF-8\\\"\",\n"),
        "{text}"
    );
}

#[tokio::test]
async fn empty_path_segments_are_values_not_separators() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;

    // `token//_clear_cache` clears every token; it does not create one called `_clear_cache`.
    let path = format!("{FLEET_PATH}/credential/token//_clear_cache");
    let response = gw.as_elastic(Method::POST, &path).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, &body["_nodes"]["successful"]), (200, &json!(1)));
    let response = gw.as_elastic(Method::GET, &path).send().await.unwrap();
    let expected = json!({
        "error": format!("Incorrect HTTP method for uri [{path}] and method [GET], allowed: [POST]"),
        "status": 405
    });
    assert_response(response, 405, &expected).await;

    // An empty segment inside the account shifts every segment after it: no endpoint matches.
    for path in [
        "/_security/service/elastic//fleet-server/credential/token/t1",
        "/_security/service/elastic/fleet-server//credential/token/t1",
        "/_security/service/elastic/fleet-server/credential//token/t1",
    ] {
        let response = gw.as_elastic(Method::POST, path).send().await.unwrap();
        let expected = json!({
            "error": format!("no handler found for uri [{path}] and method [POST]"),
            "status": 400
        });
        assert_response(response, 400, &expected).await;
    }

    // An empty namespace or service where one is expected is a value, refused by validation.
    let response = gw
        .as_elastic(
            Method::POST,
            "/_security/service//fleet-server/credential/token/t1",
        )
        .send()
        .await
        .unwrap();
    let reason = "Validation Failed: 1: service account namespace is required;";
    let expected = es_error(400, "action_request_validation_exception", reason);
    assert_response(response, 400, &expected).await;
    let response = gw
        .as_elastic(
            Method::DELETE,
            "/_security/service/elastic//credential/token/_t",
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400);
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "Validation Failed: 1: service account service-name is required;2: invalid service token name [_t]."
        ),
        "{reason}"
    );
    assert!(gw.state.store.is_empty());

    // Trailing slashes vanish, as Java's `split` drops trailing empty strings.
    let response = gw
        .as_elastic(Method::POST, &format!("{FLEET_PATH}/credential/token//"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"]["name"]
        .as_str()
        .unwrap()
        .starts_with("token_"));
    assert_eq!(gw.state.store.len(), 1);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn kibana_has_the_kibana_system_descriptor() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let response = gw
        .as_elastic(Method::GET, "/_security/service/elastic/kibana")
        .send()
        .await
        .unwrap();
    let (status, text) = text_of(response).await;
    assert_eq!(status, 200);
    // Field order is RoleDescriptor.toXContent's.
    assert!(
        text.starts_with(
            "{\"elastic/kibana\":{\"role_descriptor\":{\"cluster\":[\"monitor\",\"manage_index_templates\",\"cluster:admin/xpack/monitoring/bulk\","
        ),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let descriptor = &body["elastic/kibana"]["role_descriptor"];
    let keys: Vec<&str> = descriptor
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "cluster",
            "global",
            "indices",
            "applications",
            "run_as",
            "metadata",
            "transient_metadata"
        ]
    );
    let cluster = descriptor["cluster"].as_array().unwrap();
    assert!(!cluster.contains(&json!("all")), "{cluster:?}");
    assert_eq!(cluster.len(), 22);
    assert_eq!(cluster.last().unwrap(), "cancel_task");
    assert_eq!(
        descriptor["global"],
        json!({"application": {"manage": {"applications": ["kibana-*"]}},
               "profile": {"write": {"applications": ["kibana*"]}}})
    );
    assert_eq!(
        descriptor["indices"][0],
        json!({"names": [".kibana*", ".reporting-*"], "privileges": ["all"], "allow_restricted_indices": true})
    );
    assert!(descriptor["indices"].as_array().unwrap().contains(
        &json!({"names": [".fleet*"], "privileges": ["all"], "allow_restricted_indices": true})
    ));
    assert_eq!(descriptor["applications"], json!([]));
    assert_eq!(descriptor["run_as"], json!([]));
    assert_eq!(descriptor["metadata"], json!({"_reserved": true}));
    assert_eq!(descriptor["transient_metadata"], json!({"enabled": true}));

    let response = gw
        .as_elastic(Method::GET, "/_security/service/elastic/fleet-server")
        .send()
        .await
        .unwrap();
    let (_, body) = json_of(response).await;
    let fleet = &body[FLEET]["role_descriptor"];
    assert_eq!(fleet["cluster"], json!(["monitor", "manage_own_api_key"]));
    assert!(fleet.get("global").is_none());
    assert_eq!(
        fleet["applications"],
        json!([{"application": "kibana-*", "privileges": ["reserved_fleet-setup"], "resources": ["*"]}])
    );
    assert_eq!(fleet["metadata"], json!({}));
}
