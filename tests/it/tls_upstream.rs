//! Forwarding to an `https://` upstream: CA file, system roots, refused certificates,
//! `verify = false`, fingerprint pinning, client certificates, and ALPN towards the upstream.

use std::path::Path;

use crate::common::tls::{leaf_params, Ca, Issued, KeyKind};
use crate::common::{FakeUpstream, TestGateway, FLEET};
use http::Version;
use reqwest::Method;

/// A bearer-token request through a gateway whose `[upstream]` section is `url` plus `keys`;
/// returns the status the client got.
async fn status_through(upstream: &FakeUpstream, keys: &str) -> u16 {
    let toml = format!("[upstream]\nurl = \"{}\"\n{keys}\n", upstream.url());
    let gw = TestGateway::builder().config(&toml).build().await;
    let token = gw.create_token(FLEET, "upstream-tls").await;
    let response = gw
        .with_token(Method::GET, "/logs/_search", &token)
        .send()
        .await;
    let status = response.unwrap().status().as_u16();
    gw.stop().await;
    status
}

/// `key = "<path>"`.
fn path_key(key: &str, path: &Path) -> String {
    format!("{key} = {:?}\n", path.display().to_string())
}

#[tokio::test]
async fn the_configured_ca_is_trusted_and_system_roots_alone_are_not_enough() {
    let ca = Ca::root("upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::builder().tls(&ca.server()).start().await;
    let with_ca = path_key("ca", &ca.write(dir.path(), "ca"));
    assert_eq!(status_through(&upstream, &with_ca).await, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri.path(), "/logs/_search");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");

    if rustls_native_certs::load_native_certs().certs.is_empty() {
        crate::common::skipped(
            "the system-roots half",
            "this machine has no root certificates",
        );
        return;
    }
    assert_eq!(status_through(&upstream, "").await, 502);
    assert_eq!(upstream.requests().len(), 1, "nothing reached the upstream");
}

#[tokio::test]
async fn bad_upstream_certificates_give_502_unless_verify_is_off() {
    let ca = Ca::root("upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let with_ca = path_key("ca", &ca.write(dir.path(), "ca"));
    let mut expired = leaf_params(&crate::common::tls::LOCAL_NAMES, false);
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = || KeyKind::P256.generate().unwrap();
    let cases: [(&str, Issued); 3] = [
        ("self-signed", Issued::self_signed()),
        ("expired", ca.issue(&expired, &key())),
        (
            "wrong host",
            ca.issue(&leaf_params(&["elsewhere.example"], false), &key()),
        ),
    ];
    for (case, served) in cases {
        let upstream = FakeUpstream::builder().tls(&served).start().await;
        assert_eq!(status_through(&upstream, &with_ca).await, 502, "{case}");
        assert!(upstream.requests().is_empty(), "{case}");
        let unchecked = format!("{with_ca}verify = false\n");
        assert_eq!(status_through(&upstream, &unchecked).await, 200, "{case}");
        assert_eq!(upstream.requests().len(), 1, "{case}");
    }
}

#[tokio::test]
async fn ca_fingerprint_pins_the_ca_the_upstream_sends() {
    let ca = Ca::root("pinned CA");
    // Like Elasticsearch's HTTP layer, the upstream sends its CA after the leaf.
    let mut served = ca.server();
    served.chain_pem.push_str(&ca.pem);
    let upstream = FakeUpstream::builder().tls(&served).start().await;
    let pin = format!("ca_fingerprint = \"{}\"\n", ca.fingerprint());
    assert_eq!(status_through(&upstream, &pin).await, 200);
    let bare = ca.fingerprint().replace(':', "").to_lowercase();
    let pin = format!("ca_fingerprint = \"{bare}\"\n");
    assert_eq!(status_through(&upstream, &pin).await, 200);

    let wrong = Ca::root("some other CA").fingerprint();
    let pin = format!("ca_fingerprint = \"{wrong}\"\n");
    assert_eq!(status_through(&upstream, &pin).await, 502);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_an_upstream_that_requires_one() {
    let ca = Ca::root("upstream CA");
    let clients = Ca::root("upstream client CA");
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::builder()
        .tls(&ca.server())
        .require_client_cert(&clients)
        .start()
        .await;
    let with_ca = path_key("ca", &ca.write(dir.path(), "ca"));
    assert_eq!(status_through(&upstream, &with_ca).await, 502);
    assert!(upstream.requests().is_empty());

    let (cert, key) = clients.client().write(dir.path(), "gateway-client");
    let keys = format!(
        "{with_ca}{}{}",
        path_key("client_cert", &cert),
        path_key("client_key", &key)
    );
    assert_eq!(status_through(&upstream, &keys).await, 200);
    assert!(upstream.requests()[0].client_cert);
}

#[tokio::test]
async fn h2_is_used_when_the_upstream_offers_it_and_http1_when_disabled() {
    let ca = Ca::root("upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let with_ca = path_key("ca", &ca.write(dir.path(), "ca"));
    let upstream = FakeUpstream::builder().tls(&ca.server()).start().await;
    assert_eq!(status_through(&upstream, &with_ca).await, 200);
    let http1_only = format!("{with_ca}http2 = false\n");
    assert_eq!(status_through(&upstream, &http1_only).await, 200);
    let versions: Vec<Version> = upstream.requests().iter().map(|r| r.version).collect();
    assert_eq!(versions, [Version::HTTP_2, Version::HTTP_11]);

    let h1_upstream = FakeUpstream::builder()
        .tls(&ca.server())
        .alpn(&["http/1.1"])
        .start()
        .await;
    assert_eq!(status_through(&h1_upstream, &with_ca).await, 200);
    assert_eq!(h1_upstream.requests()[0].version, Version::HTTP_11);
}
