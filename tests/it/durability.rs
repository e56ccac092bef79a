//! Tokens outlive the process: restarts, torn journal tails, corruption, concurrent creates.

use std::io::Write;
use std::path::Path;

use crate::common::{FakeUpstream, TestGateway, ELASTIC_PASSWORD, FLEET};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use futures_util::future::join_all;
use reqwest::Method;
use tokengate::app::{Gateway, StartError};
use tokengate::config::{Config, Overrides};

const JOURNAL: &str = "tokens.journal";

async fn start(upstream: &FakeUpstream, dir: &Path) -> TestGateway {
    TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(dir)
        .build()
        .await
}

async fn authenticates(gw: &TestGateway, value: &str) -> bool {
    let response = gw
        .with_token(Method::GET, "/_cluster/health", value)
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => true,
        401 => false,
        other => panic!("unexpected status {other}"),
    }
}

/// Starts a second gateway over `dir` as the binary would, to see why it refuses to start.
async fn try_start(upstream: &FakeUpstream, dir: &Path) -> Result<Gateway, StartError> {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        upstream: vec![format!("http://{}", upstream.addr)],
        data_dir: Some(dir.to_owned()),
    };
    let config = Config::from_toml("test", "", &overrides).unwrap();
    Gateway::start(config, Some(ELASTIC_PASSWORD)).await
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let kept = gw.create_token(FLEET, "kept").await;
    let deleted = gw.create_token("elastic/kibana", "deleted").await;
    let path = "/_security/service/elastic/kibana/credential/token/deleted";
    let response = gw.as_elastic(Method::DELETE, path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;

    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &kept).await);
    assert!(!authenticates(&gw, &deleted).await);
    assert_eq!(gw.state.store.len(), 1);
    // A name taken before the restart is still taken.
    let response = gw
        .as_elastic(
            Method::POST,
            "/_security/service/elastic/fleet-server/credential/token/kept",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn the_answer_comes_after_the_token_is_in_the_journal_without_its_secret() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "durable").await;
    // Read while the gateway runs: the 200 promised the record is already on disk.
    let journal = std::fs::read(gw.data_dir.join(JOURNAL)).unwrap();
    let needle = b"elastic/fleet-server/durable";
    assert!(journal.windows(needle.len()).any(|w| w == needle));
    let decoded = STANDARD_NO_PAD.decode(&value).unwrap();
    let secret = &decoded[decoded.iter().position(|&b| b == b':').unwrap() + 1..];
    assert_eq!(secret.len(), 22);
    assert!(
        !journal.windows(secret.len()).any(|w| w == secret),
        "the journal holds the secret in clear"
    );
}

/// Creates two tokens, stops, appends `tail` to the journal as an interrupted write would,
/// restarts: both tokens must still authenticate, and a token created after the restart must
/// survive the next one (the tail was cut, not written after).
async fn survives_torn_tail(tail: &[u8]) {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let first = gw.create_token(FLEET, "first").await;
    let second = gw.create_token(FLEET, "second").await;
    gw.stop().await;

    append(&dir.path().join(JOURNAL), tail);
    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &first).await);
    assert!(authenticates(&gw, &second).await);
    let third = gw.create_token(FLEET, "third").await;
    gw.stop().await;

    let gw = start(&upstream, dir.path()).await;
    for value in [&first, &second, &third] {
        assert!(authenticates(&gw, value).await);
    }
}

#[tokio::test]
async fn a_few_garbage_bytes_at_the_tail_are_dropped() {
    survives_torn_tail(&[0xde, 0xad, 0xbe, 0xef, 0x01]).await;
}

#[tokio::test]
async fn zero_filled_space_at_the_tail_is_dropped() {
    survives_torn_tail(&[0u8; 100]).await;
}

#[tokio::test]
async fn a_record_header_without_its_payload_is_dropped() {
    // A length of 60 and a checksum, then the write stopped.
    let mut tail = 60u32.to_le_bytes().to_vec();
    tail.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x01, 0x05]);
    survives_torn_tail(&tail).await;
}

#[tokio::test]
async fn a_record_cut_mid_way_is_dropped_and_the_earlier_ones_kept() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let first = gw.create_token(FLEET, "first").await;
    let journal = dir.path().join(JOURNAL);
    let after_first = std::fs::metadata(&journal).unwrap().len();
    let second = gw.create_token(FLEET, "second").await;
    gw.stop().await;
    let full = std::fs::metadata(&journal).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(after_first + (full - after_first) / 2)
        .unwrap();
    drop(file);

    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &first).await);
    assert!(
        !authenticates(&gw, &second).await,
        "a torn record is not a token"
    );
    // The torn bytes are gone, so the next record lands where a reader will find it.
    let again = gw.create_token(FLEET, "second").await;
    gw.stop().await;
    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &first).await);
    assert!(authenticates(&gw, &again).await);
}

#[tokio::test]
async fn corruption_in_the_middle_refuses_to_start_naming_file_and_offset() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    gw.create_token(FLEET, "first").await;
    gw.create_token(FLEET, "second").await;
    gw.stop().await;
    let journal = dir.path().join(JOURNAL);
    let mut bytes = std::fs::read(&journal).unwrap();
    // The first record starts after the 24-byte header (magic, version, pepper); flip a byte of
    // its payload.
    bytes[24 + 8 + 5] ^= 0x55;
    std::fs::write(&journal, &bytes).unwrap();

    let Err(error) = try_start(&upstream, dir.path()).await else {
        panic!("a journal corrupt in the middle was accepted");
    };
    let message = error.to_string();
    assert!(
        message.contains(&journal.display().to_string()),
        "{message}"
    );
    assert!(message.contains("offset 24"), "{message}");
    // The file is left as it was for an operator to inspect.
    assert_eq!(std::fs::read(&journal).unwrap(), bytes);
}

#[tokio::test]
async fn a_second_gateway_cannot_open_a_data_directory_in_use() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let value = gw.create_token(FLEET, "t1").await;
    let Err(error) = try_start(&upstream, dir.path()).await else {
        panic!("two stores opened one data directory");
    };
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
    // The running gateway is unaffected, and releases the directory when it stops.
    assert!(authenticates(&gw, &value).await);
    gw.stop().await;
    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &value).await);
}

/// Creates a token, lets `tamper` do something to the journal while the gateway runs, creates
/// another: that one must be acknowledged, and both must survive a restart.
async fn survives_tampering_while_running(tamper: impl FnOnce(&Path)) {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let first = gw.create_token(FLEET, "t1").await;
    tamper(&dir.path().join(JOURNAL));
    let second = gw.create_token(FLEET, "t2").await;
    gw.stop().await;

    let gw = start(&upstream, dir.path()).await;
    assert!(authenticates(&gw, &first).await);
    assert!(authenticates(&gw, &second).await);
    assert_eq!(gw.state.store.len(), 2);
}

#[tokio::test]
async fn a_journal_deleted_while_running_loses_no_token() {
    survives_tampering_while_running(|journal| std::fs::remove_file(journal).unwrap()).await;
}

#[tokio::test]
async fn a_journal_replaced_while_running_loses_no_token() {
    survives_tampering_while_running(|journal| {
        let other = journal.with_file_name("other");
        std::fs::write(&other, b"some other file").unwrap();
        std::fs::rename(&other, journal).unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_lock_needs_no_lock_file() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let value = gw.create_token(FLEET, "t1").await;
    // Nothing in the directory can be deleted to let a second gateway in.
    assert!(!dir.path().join(".lock").exists());
    let Err(error) = try_start(&upstream, dir.path()).await else {
        panic!("a second gateway opened a data directory in use");
    };
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "{}: the data directory is in use",
            dir.path().display()
        )),
        "{message}"
    );
    assert!(authenticates(&gw, &value).await);
    gw.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_first_start_creates_owner_only_files() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let upstream = FakeUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .data_dir(&dir)
        .bootstrap()
        .build()
        .await;
    gw.create_token(FLEET, "t1").await;
    gw.stop().await;
    assert_eq!(mode(&dir), 0o700, "data directory");
    for file in [JOURNAL, "users", "users_roles"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_all_succeed_and_survive_a_restart() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&upstream, dir.path()).await;
    let creates = (0..64).map(|i| {
        let path = format!("/_security/service/elastic/fleet-server/credential/token/c{i}");
        gw.as_elastic(Method::POST, &path).send()
    });
    let mut values = Vec::new();
    for response in join_all(creates).await {
        let (status, body) = crate::common::json_of(response.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        values.push(body["token"]["value"].as_str().unwrap().to_owned());
    }
    let distinct: std::collections::HashSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), 64);
    gw.stop().await;

    let gw = start(&upstream, dir.path()).await;
    assert_eq!(gw.state.store.len(), 64);
    let checks = values.iter().map(|value| authenticates(&gw, value));
    assert!(join_all(checks).await.into_iter().all(|ok| ok));
}

#[tokio::test]
async fn concurrent_creates_of_one_name_admit_exactly_one() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let path = "/_security/service/elastic/fleet-server/credential/token/same";
    let creates = (0..16).map(|_| gw.as_elastic(Method::POST, path).send());
    let mut statuses: Vec<u16> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    let mut expected = vec![200];
    expected.extend([409; 15]);
    assert_eq!(statuses, expected);
}
