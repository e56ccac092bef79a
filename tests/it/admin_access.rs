//! Who may read the admin listener off loopback: the status page and `/status` (and by default
//! `/metrics`) need a client certificate signed by `admin.client_ca` or a user holding `monitor`
//! or `superuser`; the probes never ask. The tests stay on loopback and say
//! `require_auth = true`, which is what `"auto"` means on any other address.

use crate::common::tls::client::TlsClient;
use crate::common::tls::{tls_section, Ca};
use crate::common::{basic, basic_elastic, json_of, FakeUpstream, TestGateway};

const WATCHER: (&str, &str) = ("watcher", "watcher-pw-123");
const VIEWER: (&str, &str) = ("viewer", "viewer-pw-123");

async fn gateway(upstream: &FakeUpstream, admin: &str) -> TestGateway {
    TestGateway::builder()
        .upstream(upstream.addr)
        .config(&format!("[admin]\nrequire_auth = true\n{admin}"))
        .user(WATCHER.0, WATCHER.1, &["monitor"])
        .user(VIEWER.0, VIEWER.1, &["viewer"])
        .build()
        .await
}

/// `GET path` on the admin listener with `authorization` (or none).
async fn get(gw: &TestGateway, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = gw
        .client
        .get(format!("http://{}{path}", gw.admin_addr.unwrap()));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_pages_ask_for_a_monitor_user_and_the_probes_never_do() {
    let upstream = FakeUpstream::start().await;
    let gw = gateway(&upstream, "").await;
    let watcher = basic(WATCHER.0, WATCHER.1);
    for path in ["/", "/status", "/status.js", "/status.css", "/metrics"] {
        let response = get(&gw, path, None).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"tokengate\", charset=\"UTF-8\"",
            "{path}"
        );
        let (status, body) = json_of(response).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["status"], 401);
        assert_eq!(body["error"]["type"], "security_exception", "{body}");
        assert_eq!(
            body["error"]["root_cause"][0]["reason"],
            format!("missing authentication credentials for REST request [{path}]")
        );
        assert_eq!(get(&gw, path, Some(&watcher)).await.status(), 200, "{path}");
    }
    for path in ["/livez", "/readyz"] {
        assert_eq!(get(&gw, path, None).await.status(), 200, "{path}");
    }
    assert_eq!(get(&gw, "/", Some(&basic_elastic())).await.status(), 200);
    let wrong = get(&gw, "/status", Some(&basic(WATCHER.0, "wrong-password"))).await;
    assert_eq!(wrong.status(), 401);

    let (status, body) = json_of(get(&gw, "/status", Some(&basic(VIEWER.0, VIEWER.1))).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "security_exception");
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("cluster:monitor/tokengate/status") && reason.contains("[viewer]"),
        "{reason}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn metrics_stay_open_when_configured_so_and_loopback_asks_nothing() {
    let upstream = FakeUpstream::start().await;
    let gw = gateway(&upstream, "metrics_require_auth = false\n").await;
    assert_eq!(get(&gw, "/metrics", None).await.status(), 200);
    assert_eq!(get(&gw, "/status", None).await.status(), 401);
    // The default on loopback ("auto"): nothing asked.
    let open = TestGateway::start(&upstream).await;
    for path in ["/", "/status", "/metrics"] {
        assert_eq!(get(&open, path, None).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_client_certificate_from_the_admin_ca_lets_in_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("test root");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let admins = Ca::root("admins");
    let client_ca = admins.write(dir.path(), "admins-ca");
    let upstream = FakeUpstream::start().await;
    let config = format!(
        "{}\n[admin]\nrequire_auth = true\nclient_ca = {:?}\n",
        tls_section(&cert, &key, ""),
        client_ca.display().to_string()
    );
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(&config)
        .build()
        .await;
    let addr = gw.admin_addr.unwrap();
    let with_cert = TlsClient::trusting(&ca.cert).identity(&admins.client());
    assert_eq!(with_cert.get(addr, "/status", "").await, Ok(200));
    assert_eq!(with_cert.get(addr, "/", "").await, Ok(200));
    let without = TlsClient::trusting(&ca.cert);
    assert_eq!(without.get(addr, "/status", "").await, Ok(401));
    assert_eq!(without.get(addr, "/livez", "").await, Ok(200));
    assert_eq!(without.get(addr, "/readyz", "").await, Ok(200));
    assert_eq!(
        without.get(addr, "/status", &basic_elastic()).await,
        Ok(200),
        "a password still does without a certificate"
    );
    // A certificate from another CA does not get through the handshake.
    let stranger = TlsClient::trusting(&ca.cert).identity(&ca.client());
    assert!(stranger.get(addr, "/status", "").await.is_err());
}
