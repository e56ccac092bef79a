//! File service tokens (`service_tokens` in the data directory) through the real gateway: lines
//! hashed here with Elasticsearch's documented `{PBKDF2_STRETCH}` algorithm, written without
//! the gateway's code, authenticate forwarded requests; reloads follow the file.

use std::path::Path;

use crate::common::{json_of, FakeUpstream, TestGateway, FLEET};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha512};

const CREDENTIALS: &str = "/_security/service/elastic/fleet-server/credential";
/// The lowest count Elasticsearch itself accepts; the gateway verifies with the hash's count.
const ITERATIONS: u32 = 1000;

/// `{PBKDF2_STRETCH}` as Elasticsearch's `Hasher` documents it: PBKDF2-HMAC-SHA512 (one 64-byte
/// block, truncated to the 32-byte key) over the lowercase hex of SHA-512(secret).
fn pbkdf2_stretch(secret: &str, salt: &[u8; 32], iterations: u32) -> String {
    let hex: String = Sha512::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prf = |data: &[u8]| -> Vec<u8> {
        let mut mac = Hmac::<Sha512>::new_from_slice(hex.as_bytes()).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    let mut u = prf(&[&salt[..], &1u32.to_be_bytes()].concat());
    let mut block = u.clone();
    for _ in 1..iterations {
        u = prf(&u);
        block.iter_mut().zip(&u).for_each(|(b, x)| *b ^= x);
    }
    format!(
        "{{PBKDF2_STRETCH}}{iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(&block[..32])
    )
}

/// The bearer value of `account/name` with `secret`: base64(00 01 00 01 ‖ "ns/svc/name:secret").
fn bearer(account: &str, name: &str, secret: &str) -> String {
    let mut raw = vec![0, 1, 0, 1];
    raw.extend_from_slice(format!("{account}/{name}:{secret}").as_bytes());
    STANDARD.encode(raw).trim_end_matches('=').to_owned()
}

/// A `service_tokens` line for `elastic/fleet-server/<name>` and its value.
fn file_token(name: &str, secret: &str) -> (String, String) {
    let salt: [u8; 32] = std::array::from_fn(|i| i as u8 ^ name.len() as u8);
    let line = format!(
        "{FLEET}/{name}:{}\n",
        pbkdf2_stretch(secret, &salt, ITERATIONS)
    );
    (line, bearer(FLEET, name, secret))
}

fn write_tokens(dir: &Path, text: &str) {
    std::fs::write(dir.join("service_tokens"), text).unwrap();
}

async fn status(gw: &TestGateway, value: &str) -> u16 {
    let response = gw.with_token(Method::GET, "/_cluster/health", value);
    response.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_file_token_is_forwarded_and_named_as_a_file_token() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (line, value) = file_token("from-file", "Zm9vYmFyYmF6cXV4MTIzNA");
    write_tokens(dir.path(), &line);
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir.path())
        .config("[server]\nnode_name = \"gw-node-7\"\n")
        .build()
        .await;

    assert_eq!(status(&gw, &value).await, 200);
    assert_eq!(upstream.requests().len(), 1);
    let response = gw.with_token(Method::GET, "/_security/_authenticate", &value);
    let (code, body) = json_of(response.send().await.unwrap()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["username"], FLEET);
    assert_eq!(
        body["token"],
        json!({"name": "from-file", "type": "_service_account_file"})
    );

    // A wrong secret for the same name is a failure like any other.
    let wrong = bearer(FLEET, "from-file", "wrong-secret-wrong-sec");
    assert_eq!(status(&gw, &wrong).await, 401);
    assert_eq!(upstream.requests().len(), 1);

    // An index token may carry the same name; each value names its own source.
    let index = gw.create_token(FLEET, "from-file").await;
    for (value, kind) in [
        (&index, "_service_account_index"),
        (&value, "_service_account_file"),
    ] {
        let response = gw.with_token(Method::GET, "/_security/_authenticate", value);
        let (code, body) = json_of(response.send().await.unwrap()).await;
        assert_eq!(
            (code, &body["token"]["type"]),
            (200, &json!(kind)),
            "{body}"
        );
    }

    let response = gw
        .as_elastic(Method::GET, CREDENTIALS)
        .send()
        .await
        .unwrap();
    let (code, body) = json_of(response).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "service_account": FLEET,
            "count": 2,
            "tokens": {"from-file": {}},
            "nodes_credentials": {
                "_nodes": {"total": 1, "successful": 1, "failed": 0},
                "file_tokens": {"from-file": {"nodes": ["gw-node-7"]}}
            }
        })
    );
    gw.stop().await;
}

#[tokio::test]
async fn reloads_add_and_remove_tokens_and_a_bad_line_costs_only_itself() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let (line1, value1) = file_token("one", "b25lLXNlY3JldC12YWx1ZQ");
    let (line2, value2) = file_token("two", "dHdvLXNlY3JldC12YWx1ZQ");
    assert_eq!(status(&gw, &value1).await, 401);

    write_tokens(&gw.data_dir, &line1);
    gw.state.file_tokens.refresh(true);
    assert_eq!(status(&gw, &value1).await, 200);

    write_tokens(
        &gw.data_dir,
        &format!("# tokens\n{line1}elastic/fleet-server/broken\nelastic/fleet-server/x:{{MD5}}abc\n{line2}"),
    );
    gw.state.file_tokens.refresh(true);
    assert_eq!(status(&gw, &value1).await, 200);
    assert_eq!(status(&gw, &value2).await, 200);

    write_tokens(&gw.data_dir, &line2);
    gw.state.file_tokens.refresh(true);
    assert_eq!(status(&gw, &value1).await, 401, "removed from the file");
    assert_eq!(status(&gw, &value2).await, 200);
    assert_eq!(upstream.requests().len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn an_elasticsearch_file_is_read_unchanged() {
    // Elasticsearch's own test fixture, with the secrets its test pairs these hashes with.
    let fixture = "elastic/fleet-server/pbkdf2:{PBKDF2}10000$0N2h5/AsDS5uO0/A+B6y8AnTCJ3Tqo8nygbzu1gkgpo=$5aTcCtteHf2g2ye7Y3p6jSZBoGhNJ7l6F3tmUhPTwRo=\n\
        elastic/fleet-server/pbkdf2_stretch:{PBKDF2_STRETCH}10000$Pa3oNkj8xTD8j2gTgjWnTvnE6jseKApWMFjcNCLxX1U=$84ECweHFZQ2DblHEjHTRWA+fG6h5bVMyTSJUmFvTo1o=\n\
        elastic/fleet-server/plain:{plain}_By842iQQVKSCLxVcJZWvw\n";
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_tokens(dir.path(), fixture);
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir.path())
        .build()
        .await;
    for (name, secret) in [
        ("pbkdf2", "5DjRC_XRSAql5Hlampyv7Q"),
        ("pbkdf2_stretch", "aI_0QLRfRyGBP1U60Sby2w"),
    ] {
        assert_eq!(
            status(&gw, &bearer(FLEET, name, secret)).await,
            200,
            "{name}"
        );
    }
    let plain = bearer(FLEET, "plain", "_By842iQQVKSCLxVcJZWvw");
    assert_eq!(
        status(&gw, &plain).await,
        401,
        "plain text is never accepted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn wrong_file_token_secrets_count_against_the_address_like_any_wrong_token() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (line, value) = file_token("guarded", "Z3VhcmRlZC1zZWNyZXQtdg");
    write_tokens(dir.path(), &line);
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir.path())
        .config("[security]\nfailed_auth_burst = 3\nfailed_auth_per_minute = 1\n")
        .build()
        .await;
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_eq!(status(&gw, &bearer(FLEET, "guarded", guess)).await, 401);
    }
    assert_eq!(status(&gw, &bearer(FLEET, "guarded", "guess-4")).await, 429);
    assert_eq!(status(&gw, &value).await, 429, "refused before any check");
    assert!(upstream.requests().is_empty());
    gw.stop().await;
}
