//! The audit handle end to end: events in a file, as an operator reads them.

use super::*;
use crate::config::LogOutput;

fn audit_to(dir: &Path, success: bool) -> (Audit, PathBuf) {
    let path = dir.join("audit.json");
    let config = AuditConfig {
        output: Some(LogOutput::File(path.clone())),
        authentication_success: success,
        buffer: 64,
    };
    (Audit::open(&config).unwrap(), path)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_failed_credential_names_whom_it_claims_and_never_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, path) = audit_to(dir.path(), false);
    let request = http::Request::get("/_cluster/health?pretty")
        .header("x-opaque-id", "job-7")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-for", "10.0.0.2")
        .body(())
        .unwrap();
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let request = Request::new(&request, peer);
    let basic = STANDARD.encode("bob:hunter2-secret");
    audit.authentication_failed(&request, Presented::Basic(basic.as_bytes()));
    let account = AccountId::new("elastic", "fleet-server");
    let name = TokenName::new("t1").unwrap();
    let value = token::encode(&account, &name, "s3cr3t-token-part");
    audit.authentication_failed(&request, Presented::Bearer(value.as_bytes()));
    audit.authentication_failed(&request, Presented::Bearer(b"garbage"));
    audit.close();

    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["hunter2", "s3cr3t", &basic, &value] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let events = lines(&path);
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(events[0]["event.action"], "authentication_failed");
    assert_eq!(events[0]["event.type"], "rest");
    assert_eq!(events[0]["user.name"], "bob");
    assert_eq!(events[0]["origin.address"], "192.0.2.7:40000");
    assert_eq!(events[0]["url.path"], "/_cluster/health");
    assert_eq!(events[0]["url.query"], "pretty");
    assert_eq!(events[0]["request.method"], "GET");
    assert_eq!(events[0]["opaque_id"], "job-7");
    assert_eq!(events[0]["x_forwarded_for"], "203.0.113.9, 10.0.0.2");
    assert!(events[0]["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[1]["user.name"], "elastic/fleet-server");
    assert_eq!(events[1]["authentication.token.name"], "t1");
    assert!(events[2].get("user.name").is_none(), "{text}");
}

#[test]
fn successes_only_when_asked_and_nothing_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let user = User {
        name: "alice".into(),
        roles: vec!["viewer".into()],
    };
    let request = http::Request::get("/").body(()).unwrap();
    let request = Request::new(&request, "127.0.0.1:1".parse().unwrap());
    for success in [false, true] {
        let sub = dir.path().join(success.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let (audit, path) = audit_to(&sub, success);
        audit.authentication_success(&request, Subject::User(&user));
        audit.close();
        let events = lines(&path);
        assert_eq!(events.len(), usize::from(success));
        if success {
            assert_eq!(events[0]["user.realm"], "default_file");
            assert_eq!(events[0]["user.roles"], json!(["viewer"]));
            assert_eq!(events[0]["authentication.type"], "REALM");
        }
    }
    let off = Audit::open(&AuditConfig {
        output: None,
        authentication_success: true,
        buffer: 1,
    })
    .unwrap();
    off.authentication_success(&request, Subject::User(&user));
    off.close();
    assert_eq!(off.dropped(), 0);
}

/// Every event the audit log writes, compared byte for byte with serde_json's compact rendering
/// of the same fields in the same order (the timestamp taken from the line itself).
#[test]
fn every_event_is_serde_jsons_rendering_of_its_fields_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, path) = audit_to(dir.path(), true);
    let user = User {
        name: "al\"ice".into(),
        roles: vec!["viewer".into(), "r\\2".into()],
    };
    let token = TokenIdentity {
        account: AccountId::new("elastic", "fleet-server"),
        name: TokenName::new("t1").unwrap(),
        source: crate::identity::TokenSource::File,
    };
    let plain = http::Request::get("/").body(()).unwrap();
    let odd = http::Request::post("/logs-é/_doc?refresh=true&q=%22x%22")
        .header("x-opaque-id", "job \"7\"\t")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-for", "10.0.0.2")
        .header("x-forwarded-for", "10.0.0.3")
        .header("user-agent", "bench")
        .body(())
        .unwrap();
    let one_header = http::Request::get("/_search?")
        .header("x-forwarded-for", "198.51.100.1")
        .body(())
        .unwrap();
    let requests = [
        Request::new(&plain, "127.0.0.1:54321".parse().unwrap()),
        Request::new(&odd, "[2001:db8::7]:8080".parse().unwrap()),
        Request::new(&one_header, "255.255.255.255:65535".parse().unwrap()),
        Request::new(&plain, "0.0.0.0:0".parse().unwrap()),
    ];
    let basic = STANDARD.encode("bob:secret");
    let odd_basic = STANDARD.encode("b\\o\u{1}b:secret");
    let bearer = token::encode(&token.account, &token.name, "s3cr3t-token-part");
    let mut expected: Vec<Vec<(&str, serde_json::Value)>> = Vec::new();
    for request in &requests {
        let mut fields = vec![
            ("origin.type", json!("rest")),
            ("origin.address", json!(request.peer.to_string())),
            ("url.path", json!(request.uri.path())),
        ];
        if let Some(query) = request.uri.query() {
            fields.push(("url.query", json!(query)));
        }
        fields.push(("request.method", json!(request.method.as_str())));
        for (key, name) in [
            ("opaque_id", "x-opaque-id"),
            ("x_forwarded_for", "x-forwarded-for"),
        ] {
            let values: Vec<&str> = request
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            if !values.is_empty() {
                fields.push((key, json!(values.join(", "))));
            }
        }
        let event = |kind: &'static str,
                     action: &'static str,
                     head: Vec<(&'static str, serde_json::Value)>,
                     tail: Vec<(&'static str, serde_json::Value)>| {
            let mut all = vec![("event.type", json!(kind)), ("event.action", json!(action))];
            all.extend(head);
            all.extend(fields.iter().cloned());
            all.extend(tail);
            all
        };
        let user_subject = vec![
            ("authentication.type", json!("REALM")),
            ("user.name", json!(user.name)),
            ("user.realm", json!("default_file")),
            ("user.roles", json!(user.roles)),
        ];
        let token_subject = vec![
            ("authentication.type", json!("TOKEN")),
            ("user.name", json!("elastic/fleet-server")),
            ("user.realm", json!("_service_account")),
            ("user.roles", json!([])),
            ("authentication.token.name", json!("t1")),
            ("authentication.token.type", json!("_service_account_file")),
        ];
        let failed = |head| event("rest", "authentication_failed", head, vec![]);

        audit.authentication_failed(request, Presented::Basic(basic.as_bytes()));
        expected.push(failed(vec![("user.name", json!("bob"))]));
        audit.authentication_failed(request, Presented::Basic(odd_basic.as_bytes()));
        expected.push(failed(vec![("user.name", json!("b\\o\u{1}b"))]));
        audit.authentication_failed(request, Presented::Bearer(bearer.as_bytes()));
        expected.push(failed(vec![
            ("user.name", json!("elastic/fleet-server")),
            ("authentication.token.name", json!("t1")),
        ]));
        audit.authentication_failed(
            request,
            Presented::Token {
                account: "ns/s\"vc",
                name: "n\n",
            },
        );
        expected.push(failed(vec![
            ("user.name", json!("ns/s\"vc")),
            ("authentication.token.name", json!("n\n")),
        ]));
        audit.authentication_failed(request, Presented::Other);
        expected.push(failed(vec![]));
        audit.authentication_success(request, Subject::User(&user));
        expected.push(event(
            "rest",
            "authentication_success",
            user_subject.clone(),
            vec![],
        ));
        audit.authentication_success(request, Subject::Token(&token));
        expected.push(event(
            "rest",
            "authentication_success",
            token_subject.clone(),
            vec![],
        ));
        let refused = ApiError::Unauthorized {
            action: "cluster:admin/xpack/security/user/delete",
            caller: crate::message::error::Caller::ServiceAccount {
                principal: "elastic/fleet-server".into(),
            },
            privileges: &["all"],
        };
        let _ = audit.denied(request, Subject::User(&user), refused);
        expected.push(event(
            "rest",
            "access_denied",
            user_subject.clone(),
            vec![("action", json!("cluster:admin/xpack/security/user/delete"))],
        ));
        let _ = audit.denied(
            request,
            Subject::Token(&token),
            ApiError::AccessDenied {
                method: http::Method::GET,
                path: "/".into(),
                account: "elastic/fleet-server".into(),
            },
        );
        expected.push(event(
            "rest",
            "access_denied",
            token_subject.clone(),
            vec![],
        ));
        audit.token_created(request, Subject::User(&user), &token.account, &token.name);
        expected.push(event(
            "security_config_change",
            "create_service_token",
            user_subject.clone(),
            vec![(
                "create",
                json!({"service_token": {"namespace": "elastic", "service": "fleet-server", "name": "t1"}}),
            )],
        ));
        audit.token_deleted(request, Subject::Token(&token), &token.account, &token.name);
        expected.push(event(
            "security_config_change",
            "delete_service_token",
            token_subject.clone(),
            vec![(
                "delete",
                json!({"service_token": {"namespace": "elastic", "service": "fleet-server", "name": "t1"}}),
            )],
        ));
        audit.cache_cleared(request, Subject::User(&user));
        expected.push(event(
            "rest",
            "access_granted",
            user_subject.clone(),
            vec![("action", json!(CLEAR_CACHE_ACTION))],
        ));
    }
    audit.password_changed("bo\"b");
    expected.push(vec![
        ("event.type", json!("security_config_change")),
        ("event.action", json!("change_password")),
        ("origin.type", json!("local_node")),
        ("change", json!({"password": {"user": {"name": "bo\"b"}}})),
    ]);
    let error: &dyn Display = &"bad \"line\"";
    audit.users_reloaded(Path::new("/etc/token\"gate"), true, Some(error));
    expected.push(vec![
        ("event.type", json!("security_config_change")),
        ("event.action", json!("reload_users")),
        ("origin.type", json!("local_node")),
        ("event.outcome", json!("failure")),
        ("event.reason", json!("signal")),
        ("file.directory", json!("/etc/token\"gate")),
        ("error.message", json!("bad \"line\"")),
    ]);
    audit.certificate_reloaded(Path::new("/etc/tls/cert.pem"), false, None);
    expected.push(vec![
        ("event.type", json!("security_config_change")),
        ("event.action", json!("reload_certificate")),
        ("origin.type", json!("local_node")),
        ("event.outcome", json!("success")),
        ("event.reason", json!("file changed")),
        ("file.path", json!("/etc/tls/cert.pem")),
    ]);
    audit.close();

    let text = std::fs::read_to_string(&path).unwrap();
    let written: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(written.len(), expected.len(), "{text}");
    for (line, fields) in written.iter().zip(expected) {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut map = serde_json::Map::new();
        map.insert("type".into(), json!("audit"));
        map.insert("@timestamp".into(), parsed["@timestamp"].clone());
        for (key, value) in fields {
            map.insert(key.into(), value);
        }
        let rendered = serde_json::to_string(&map).unwrap() + "\n";
        assert_eq!(*line, rendered);
    }
}
