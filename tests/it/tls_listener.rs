//! The HTTPS listener on real loopback sockets: ALPN, key types, chains, protocol versions, client
//! certificates, server cipher order, certificate reload and stalled handshakes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::cli::run_within;
use crate::common::tls::client::TlsClient;
use crate::common::tls::{create_token_over_tls, installed, tls_section, Ca, KeyKind};
use crate::common::{basic_elastic, FakeUpstream, TestGateway};
use rustls::crypto::ring::cipher_suite;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUTHENTICATE: &str = "/_security/_authenticate";

/// A root CA, a server certificate it signed, and a gateway serving that pair.
struct Setup {
    ca: Ca,
    dir: tempfile::TempDir,
    gw: TestGateway,
}

async fn setup(upstream: &str, extra_tls: &str) -> Setup {
    let ca = Ca::root("listener test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server().write(dir.path(), "server");
    let gw = TestGateway::https(&tls_section(&cert, &key, extra_tls), upstream).await;
    Setup { ca, dir, gw }
}

/// A stock client (reqwest over rustls) trusting `ca`; it negotiates h2 by itself.
fn stock_client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(&ca.cert).unwrap())
        .timeout(crate::common::REQUEST_DEADLINE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn http1_and_h2_by_alpn_forward_a_bearer_token_as_https() {
    let upstream = FakeUpstream::start().await;
    let Setup { ca, gw, .. } = setup(&format!("http://{}", upstream.addr), "").await;
    let client = TlsClient::trusting(&ca.cert);
    let token = create_token_over_tls(&gw, &client, "alpn").await;
    let bearer = format!("Bearer {token}");

    let mut h2 = client.connect(gw.addr).await.unwrap();
    assert_eq!(h2.alpn.as_deref(), Some("h2"));
    assert_eq!(
        h2.send("GET", "/logs/_search", &bearer).await.unwrap().0,
        200
    );

    let mut h1 = client
        .clone()
        .alpn(&["http/1.1"])
        .connect(gw.addr)
        .await
        .unwrap();
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(
        h1.send("GET", "/logs/_count", &bearer).await.unwrap().0,
        200
    );

    // No ALPN at all still gets HTTP/1.1.
    let mut bare = client.clone().alpn(&[]).connect(gw.addr).await.unwrap();
    assert_eq!(bare.alpn, None);
    assert_eq!(
        bare.send("GET", "/logs/_doc/1", &bearer).await.unwrap().0,
        200
    );

    let seen = upstream.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.uri.path()).collect();
    assert_eq!(paths, ["/logs/_search", "/logs/_count", "/logs/_doc/1"]);
    for request in &seen {
        assert_eq!(request.header("x-forwarded-proto"), Some("https"));
        assert_eq!(
            request.header("authorization"),
            None,
            "the token stays at the gateway"
        );
    }

    // A stock client (reqwest over rustls) negotiates h2 by itself.
    let reqwest = stock_client(&ca);
    let url = format!("https://localhost:{}/logs/_search", gw.addr.port());
    let response = reqwest.get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn h2_streams_at_once_over_tls_get_their_own_bodies_back_whole() {
    let upstream = FakeUpstream::builder().echo().start().await;
    let Setup { ca, gw, .. } = setup(&format!("http://{}", upstream.addr), "").await;
    let client = TlsClient::trusting(&ca.cert);
    let token = create_token_over_tls(&gw, &client, "bodies").await;
    let reqwest = stock_client(&ca);
    let url = format!("https://localhost:{}/logs/_doc", gw.addr.port());
    crate::common::h2_bodies_come_back_whole(&reqwest, &url, &token).await;
}

#[tokio::test]
async fn curl_speaks_h2_to_the_listener() {
    if !installed("curl") {
        crate::common::skipped("curl_speaks_h2_to_the_listener", "curl not installed");
        return;
    }
    let upstream = FakeUpstream::start().await;
    let Setup { ca, dir, gw } = setup(&format!("http://{}", upstream.addr), "").await;
    let token = create_token_over_tls(&gw, &TlsClient::trusting(&ca.cert), "curl").await;
    let ca_file = ca.write(dir.path(), "ca");
    let mut curl = Command::new("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "20",
    ])
    .arg("--cacert")
    .arg(&ca_file)
    .args(["--http2", "--output", "/dev/null"])
    .args(["--write-out", "%{http_code} %{http_version}"])
    .arg("--header")
    .arg(format!("Authorization: Bearer {token}"))
    .arg(format!("https://127.0.0.1:{}/logs/_search", gw.addr.port()));
    let output =
        tokio::task::spawn_blocking(move || run_within(&mut curl, None, Duration::from_secs(30)))
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "curl failed: {stderr}");
    assert_eq!(stdout, "200 2", "curl said: {stderr}");
    assert_eq!(
        upstream.single_request().header("x-forwarded-proto"),
        Some("https")
    );
}

#[tokio::test]
async fn every_key_type_serves_and_the_whole_chain_is_sent() {
    let root = Ca::root("listener test root");
    let intermediate = root.intermediate("listener test intermediate");
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Rsa, KeyKind::P256, KeyKind::P384, KeyKind::Ed25519] {
        let Some(served) = intermediate.try_server(kind) else {
            crate::common::skipped(
                &format!("{kind:?} key"),
                "openssl not installed to make the key",
            );
            continue;
        };
        let (cert, key) = served.write(dir.path(), &format!("{kind:?}"));
        let gw = TestGateway::https(&tls_section(&cert, &key, ""), "http://127.0.0.1:9").await;
        // The client trusts only the root: it needs the intermediate from the server.
        let mut conn = TlsClient::trusting(&root.cert)
            .connect(gw.addr)
            .await
            .unwrap();
        assert_eq!(
            conn.peer,
            [served.cert.clone(), intermediate.cert.clone()],
            "{kind:?}"
        );
        let (status, body) = conn
            .send("GET", AUTHENTICATE, &basic_elastic())
            .await
            .unwrap();
        assert_eq!(status, 200, "{kind:?}: {body}");
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_spoken_and_older_versions_refused() {
    let Setup { ca, gw, .. } = setup("http://127.0.0.1:9", "").await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = TlsClient::trusting(&ca.cert).only(version);
        let mut conn = client.connect(gw.addr).await.unwrap();
        assert_eq!(conn.version, version.version);
        assert_eq!(
            conn.send("GET", AUTHENTICATE, &basic_elastic())
                .await
                .unwrap()
                .0,
            200
        );
    }
    // rustls clients cannot speak TLS 1.0/1.1, so offer them by hand.
    for legacy in [[3, 1], [3, 2]] {
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&legacy_client_hello(legacy)).await.unwrap();
        let mut answer = [0u8; 7];
        tcp.read_exact(&mut answer).await.unwrap();
        // A fatal alert record: protocol_version (70).
        assert_eq!((answer[0], answer[5], answer[6]), (21, 2, 70), "{legacy:?}");
    }
}

#[tokio::test]
async fn the_server_picks_the_cipher_suite() {
    let Setup { ca, gw, .. } = setup("http://127.0.0.1:9", "").await;
    // Both clients prefer ChaCha20; the server's order puts AES-256-GCM first.
    let cases = [
        (
            &rustls::version::TLS13,
            [
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
            ],
        ),
        (
            &rustls::version::TLS12,
            [
                cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
        ),
    ];
    for (version, offered) in cases {
        let client = TlsClient::trusting(&ca.cert).only(version).suites(&offered);
        let conn = client.connect(gw.addr).await.unwrap();
        assert_eq!(conn.suite.suite(), offered[1].suite(), "{version:?}");
    }
}

/// A ClientHello offering only `version` (no supported_versions extension), with suites those
/// versions and TLS 1.2 share. It carries signature_algorithms, which a real TLS 1.0/1.1 client
/// leaves out (rustls then refuses with handshake_failure before looking at the version), so
/// the refusal seen is the version's.
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let suites: [u8; 8] = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09, 0xc0, 0x13];
    let mut hello = version.to_vec();
    hello.extend_from_slice(&[7; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    hello.extend_from_slice(&suites);
    hello.extend_from_slice(&[1, 0]); // compression: null only
                                      // Extensions (10 bytes): signature_algorithms (13) = ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
    hello.extend_from_slice(&[0, 10, 0, 13, 0, 6, 0, 4, 4, 3, 4, 1]);
    let mut handshake = vec![1, 0, 0, 0]; // client_hello, length below
    handshake[1..4].copy_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Client certificates signed by the configured CA, by another CA, and none, against `policy`.
async fn client_cert_outcomes(policy: &str) -> [Result<u16, String>; 3] {
    let clients_ca = Ca::root("client CA");
    let other_ca = Ca::root("another CA");
    let ca = Ca::root("server CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server().write(dir.path(), "server");
    let client_ca = clients_ca.write(dir.path(), "clients-ca");
    let extra = format!("client_ca = {client_ca:?}\nclient_authentication = \"{policy}\"");
    let gw = TestGateway::https(&tls_section(&cert, &key, &extra), "http://127.0.0.1:9").await;
    let client = TlsClient::trusting(&ca.cert);
    let addr = gw.addr;
    let get =
        |client: TlsClient| async move { client.get(addr, AUTHENTICATE, &basic_elastic()).await };
    [
        get(client.clone().identity(&clients_ca.client())).await,
        get(client.clone().identity(&other_ca.client())).await,
        get(client).await,
    ]
}

/// The handshake was refused with a fatal `alert` (under TLS 1.3 the client learns it on its
/// first read, so the request is what fails).
fn assert_refused(outcome: &Result<u16, String>, alert: &str, what: &str) {
    let error = outcome.as_ref().expect_err(what);
    assert!(
        error.contains(&format!("received fatal alert: {alert}")),
        "{what}: {error}"
    );
}

#[tokio::test]
async fn required_client_certificates_admit_only_the_configured_ca() {
    let [good, foreign, none] = client_cert_outcomes("required").await;
    assert_eq!(good, Ok(200));
    assert_refused(&foreign, "UnknownCA", "a certificate from another CA");
    assert_refused(&none, "CertificateRequired", "no certificate");
}

#[tokio::test]
async fn optional_client_certificates_admit_none_but_refuse_a_bad_one() {
    let [good, foreign, none] = client_cert_outcomes("optional").await;
    assert_eq!(good, Ok(200));
    assert_refused(&foreign, "UnknownCA", "a certificate from another CA");
    assert_eq!(none, Ok(200));
}

#[tokio::test]
async fn reload_switches_new_handshakes_and_keeps_open_connections() {
    let ca = Ca::root("reload CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.server();
    let (cert, key) = first.write(dir.path(), "server");
    let gw = TestGateway::https(&tls_section(&cert, &key, ""), "http://127.0.0.1:9").await;
    let client = TlsClient::trusting(&ca.cert);
    let mut open = client
        .clone()
        .alpn(&["http/1.1"])
        .connect(gw.addr)
        .await
        .unwrap();
    assert_eq!(open.peer[0], first.cert);
    assert_eq!(
        open.send("GET", AUTHENTICATE, &basic_elastic())
            .await
            .unwrap()
            .0,
        200
    );

    let second = ca.server();
    second.write(dir.path(), "server");
    gw.tls().reload().unwrap();
    let (status, _) = open
        .send("GET", AUTHENTICATE, &basic_elastic())
        .await
        .unwrap();
    assert_eq!(status, 200, "the keep-alive connection survives the reload");
    let peer = |conn: crate::common::tls::client::Conn| conn.peer[0].clone();
    assert_eq!(peer(client.connect(gw.addr).await.unwrap()), second.cert);

    // Broken replacements are refused, name the file, and the second pair keeps serving.
    let third = ca.server();
    let broken: [(&str, &str, &Path); 3] = [
        (&third.chain_pem, &second.key_pem, &key),
        (&second.chain_pem, "garbage", &key),
        ("garbage", &second.key_pem, &cert),
    ];
    for (chain, key_pem, named) in broken {
        std::fs::write(&cert, chain).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let error = gw
            .tls()
            .reload()
            .expect_err("a broken pair must be refused");
        assert!(
            error.to_string().contains(&named.display().to_string()),
            "{error}"
        );
        assert_eq!(peer(client.connect(gw.addr).await.unwrap()), second.cert);
    }
    assert_eq!(
        open.send("GET", AUTHENTICATE, &basic_elastic())
            .await
            .unwrap()
            .0,
        200
    );
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_others() {
    let Setup { ca, gw, .. } = setup("http://127.0.0.1:9", "").await;
    // One connection says nothing; another stops halfway through a ClientHello record.
    let _silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    partial.write_all(&[22, 3, 1, 2, 0, 1]).await.unwrap();
    let status = TlsClient::trusting(&ca.cert)
        .get(gw.addr, AUTHENTICATE, &basic_elastic())
        .await;
    assert_eq!(status, Ok(200));
}

#[tokio::test]
async fn metrics_show_handshakes_and_when_the_certificate_expires() {
    let upstream = FakeUpstream::start().await;
    let Setup { ca, gw, .. } = setup(&format!("http://{}", upstream.addr), "").await;
    let client = TlsClient::trusting(&ca.cert);
    create_token_over_tls(&gw, &client, "metrics").await;
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    // Test certificates run out 90 days from now (see `leaf_params`).
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    let expiry: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tokengate_certificate_expiry_timestamp_seconds "))
        .expect("expiry gauge")
        .parse()
        .unwrap();
    let days = (expiry - now) / 86_400.0;
    assert!((89.0..=90.5).contains(&days), "{days} days");
    let handshakes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tokengate_tls_handshakes_total "))
        .expect("handshake gauge")
        .parse()
        .unwrap();
    assert!(handshakes >= 1, "{text}");
}
