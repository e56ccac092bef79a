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
