use super::prebuilt::{
    unauthorized_body, REJECTED_PIECES, SECONDS_VALUES, UNAUTHORIZED_PARTS, WRITTEN_SECONDS,
};
use super::*;
use http::header::WWW_AUTHENTICATE;

#[test]
fn unauthorized_carries_challenges_in_body_and_root_cause() {
    let body = ApiError::BadCredentials.to_json();
    assert_eq!(body["status"], 401);
    assert_eq!(body["error"]["type"], "security_exception");
    assert_eq!(
        body["error"]["header"]["WWW-Authenticate"][1],
        "Bearer realm=\"security\""
    );
    assert_eq!(
        body["error"]["root_cause"][0]["header"]["WWW-Authenticate"][2],
        "ApiKey"
    );
}

#[test]
fn static_429_body_matches_dynamic_rendering() {
    let error = ApiError::AuthThrottled { retry_after: 3 };
    let dynamic = response::to_bytes(&error.to_json(), false);
    assert_eq!(&THROTTLED_BODY[..], &dynamic[..]);
    let response = error.into_response(false);
    assert_eq!(response.headers()[RETRY_AFTER], "3");
}

#[test]
fn static_401_body_matches_dynamic_rendering() {
    let dynamic = response::to_bytes(&ApiError::BadCredentials.to_json(), false);
    assert_eq!(&BAD_CREDENTIALS_BODY[..], &dynamic[..]);
}

#[test]
fn forbidden_reason_lists_roles_and_privileges() {
    let privileges = &["manage_service_account", "manage_security", "all"];
    let error = ApiError::Unauthorized {
        action: "cluster:admin/xpack/security/service_account/token/create",
        caller: Caller::User {
            name: "bob".into(),
            roles: vec!["viewer".into(), "x".into()],
        },
        privileges,
    };
    assert_eq!(
        error.reason(),
        "action [cluster:admin/xpack/security/service_account/token/create] is unauthorized for \
         user [bob] with effective roles [viewer,x], this action is granted by the cluster \
         privileges [manage_service_account,manage_security,all]"
    );
}

#[test]
fn forbidden_reason_for_a_service_account_names_no_roles() {
    let error = ApiError::Unauthorized {
        action: "cluster:admin/xpack/security/user/delete",
        caller: Caller::ServiceAccount {
            principal: "elastic/fleet-server".into(),
        },
        privileges: &["manage_security", "all"],
    };
    assert_eq!(
        error.reason(),
        "action [cluster:admin/xpack/security/user/delete] is unauthorized for service account \
         [elastic/fleet-server], this action is granted by the cluster privileges \
         [manage_security,all]"
    );
}

#[test]
fn a_rejected_service_token_is_a_401_with_challenges() {
    let error = ApiError::ServiceTokenRejected {
        account: "elastic/fleet-server".into(),
        name: "token1".into(),
    };
    let body = error.to_json();
    assert_eq!(
        body["error"]["reason"],
        "failed to authenticate service account [elastic/fleet-server] with token name [token1]"
    );
    assert_eq!(
        body["error"]["root_cause"][0]["header"]["WWW-Authenticate"][0],
        CHALLENGES[0]
    );
    let response = error.into_response(false);
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers().get_all(WWW_AUTHENTICATE).iter().count(),
        3
    );
}

#[test]
fn the_prebuilt_rejection_is_byte_for_byte_the_general_one() {
    let names = [
        "token1",
        "with \"quotes\" and \\ and é",
        "",
        "tab\there",
        "é",
    ];
    let accounts = ["elastic/fleet-server", "a\"b/c", "ns/ünïcode"];
    for (account, name) in accounts.iter().flat_map(|a| names.map(|n| (a, n))) {
        let error = ApiError::ServiceTokenRejected {
            account: (*account).into(),
            name: name.into(),
        };
        assert_eq!(
            error.reason(),
            format!("failed to authenticate service account [{account}] with token name [{name}]")
        );
        let general = response::to_bytes(&error.to_json(), false);
        assert_eq!(
            unauthorized_body(&error.reason()).as_ref(),
            general.as_slice()
        );
        assert_eq!(
            rejected_token_body(account, name).as_ref(),
            general.as_slice()
        );
    }
    assert_eq!(UNAUTHORIZED_PARTS.len(), 3, "the reason appears twice");
    assert!(REJECTED_PIECES.is_some());
}

#[test]
fn a_401_carries_its_fields_in_a_nodes_order() {
    for error in [
        ApiError::BadCredentials,
        ApiError::ServiceTokenRejected {
            account: "elastic/fleet-server".into(),
            name: "t".into(),
        },
        ApiError::MissingCredentials { uri: "/".into() },
    ] {
        let response = error.into_response(false);
        let fields: Vec<(&str, &str)> = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("content-type", "application/json"),
                ("x-elastic-product", "Elasticsearch"),
                ("x-tokengate", "gateway"),
                ("www-authenticate", CHALLENGES[0]),
                ("www-authenticate", CHALLENGES[1]),
                ("www-authenticate", CHALLENGES[2]),
            ]
        );
    }
}

#[test]
fn retry_after_values_read_as_the_number() {
    for seconds in [0, 1, 9, 10, 59, 60, 99, 100, 119, 120, 121, 3600, u64::MAX] {
        assert_eq!(seconds_value(seconds), HeaderValue::from(seconds));
    }
    assert_eq!(SECONDS_VALUES.len(), WRITTEN_SECONDS + 1);
    let response = ApiError::AuthThrottled { retry_after: 42 }.into_response(false);
    let fields: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(
        fields,
        [
            "content-type",
            "x-elastic-product",
            "x-tokengate",
            "retry-after"
        ]
    );
    assert_eq!(response.headers()[RETRY_AFTER], "42");
}

#[test]
fn pretty_errors_use_elasticsearch_spacing() {
    let error = ApiError::IllegalArgument("bad".into());
    let text = String::from_utf8(response::to_bytes(&error.to_json(), true)).unwrap();
    assert_eq!(
        text,
        "{\n  \"error\" : {\n    \"root_cause\" : [\n      {\n        \"type\" : \"illegal_argument_exception\",\n        \"reason\" : \"bad\"\n      }\n    ],\n    \"type\" : \"illegal_argument_exception\",\n    \"reason\" : \"bad\"\n  },\n  \"status\" : 400\n}\n"
    );
}

#[test]
fn too_many_requests_says_when_to_retry() {
    let error = ApiError::TooManyRequests {
        reason: "slow down".into(),
        retry_after: 7,
    };
    assert_eq!(
        error.to_json(),
        json!({"error": {"root_cause": [{"type": "es_rejected_execution_exception", "reason": "slow down"}],
               "type": "es_rejected_execution_exception", "reason": "slow down"}, "status": 429})
    );
    let response = error.into_response(false);
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[RETRY_AFTER], "7");
}

#[test]
fn method_not_allowed_uses_the_short_form() {
    let error = ApiError::MethodNotAllowed {
        uri: "/x".into(),
        method: Method::GET,
        allowed: &[Method::POST, Method::PUT],
    };
    assert_eq!(
        error.to_json(),
        json!({"error": "Incorrect HTTP method for uri [/x] and method [GET], allowed: [POST, PUT]", "status": 405})
    );
}
