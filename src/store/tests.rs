//! Behavioural tests of the token store: durability, group commit, races,
//! torn-tail recovery, corruption detection and compaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::journal::{put_record_len, HEADER_LEN, JOURNAL_FILE, TMP_FILE};
use super::{StoreError, StoreOptions, TokenStore};
use crate::identity::token;

fn open(dir: &Path) -> TokenStore {
    TokenStore::open(dir, StoreOptions::default()).unwrap()
}

fn journal(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

fn file_len(dir: &Path) -> u64 {
    fs::metadata(journal(dir)).unwrap().len()
}

/// The value of token `qualified` ("ns/svc/name") with `secret`, as issued.
pub(super) fn value_with(qualified: &str, secret: &str) -> String {
    let (account, name) = qualified.rsplit_once('/').unwrap();
    token::encode_raw(account, name, secret)
}

/// The value [`create`] gives token `qualified`.
pub(super) fn value(qualified: &str) -> String {
    value_with(qualified, &format!("secret-of-{qualified}"))
}

/// The account `text` ("ns/svc").
pub(super) fn account(text: &str) -> crate::identity::AccountId {
    crate::identity::AccountId::parse(text).unwrap()
}

pub(super) fn verifies(store: &TokenStore, qualified: &str) -> bool {
    store.verify_value(value(qualified).as_bytes())
}

pub(super) async fn create(store: &TokenStore, name: &str) {
    store.create(name, &value(name)).await.unwrap();
}

#[tokio::test]
async fn create_then_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.is_empty());
    create(&store, "ns/svc/one").await;
    assert!(verifies(&store, "ns/svc/one"));
    assert!(!store.verify_value(value_with("ns/svc/one", "wrong").as_bytes()));
    assert!(!verifies(&store, "ns/svc/two"));
    assert!(store.contains("ns/svc/one"));
    assert_eq!(store.len(), 1);
}

#[test]
fn a_journal_is_one_gateway_s_so_its_limits_are_not_divided() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.replicas().get(), 1);
    store.close();
    assert_eq!(store.replicas().get(), 1);
}

#[tokio::test]
async fn reopen_sees_tokens_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/a").await;
    create(&store, "ns/svc/b").await;
    assert!(store.delete("ns/svc/a").await.unwrap());
    assert!(!store.delete("ns/svc/a").await.unwrap());
    assert!(!store.delete("ns/svc/never").await.unwrap());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.len(), 1);
    assert!(!store.contains("ns/svc/a"));
    assert!(!verifies(&store, "ns/svc/a"));
    assert!(verifies(&store, "ns/svc/b"));
}

#[tokio::test]
async fn duplicate_is_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/a").await;
    let other = value_with("ns/svc/a", "x");
    let err = store.create("ns/svc/a", &other).await;
    assert!(matches!(err, Err(StoreError::Conflict(name)) if name == "ns/svc/a"));
    assert!(verifies(&store, "ns/svc/a"));
    assert!(!store.verify_value(other.as_bytes()));
}

#[tokio::test]
async fn overlong_name_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let name = "n".repeat(5000);
    assert!(matches!(
        store.create(&name, "x").await,
        Err(StoreError::Io { .. })
    ));
    let long_value = "A".repeat(token::MAX_VALUE_LEN + 1);
    assert!(matches!(
        store.create("ns/svc/long", &long_value).await,
        Err(StoreError::Io { .. })
    ));
    let tokens = vec![("ns/svc/long".to_owned(), long_value)];
    assert!(matches!(
        store.import(tokens).await,
        Err(StoreError::Io { .. })
    ));
    assert!(store.is_empty());
}

/// Bound on [`wait_sent`]: far more than handing a request to the writer takes, so only a
/// request that never gets there reaches it.
const SENT_DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `n` requests are queued behind the paused writer; fails the test after
/// [`SENT_DEADLINE`] instead of hanging.
pub(super) async fn wait_sent(store: &TokenStore, n: usize) {
    let start = std::time::Instant::now();
    loop {
        let sent = store.inner.shared.sent.load(Ordering::SeqCst);
        if sent >= n {
            return;
        }
        assert!(
            start.elapsed() < SENT_DEADLINE,
            "{sent} requests queued behind the paused writer, not {n}, within {SENT_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let paused = store.inner.shared.pause.lock().await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("ns/svc/t{i}");
                store.create(&name, &value(&name)).await
            })
        })
        .collect();
    wait_sent(&store, 64).await;
    drop(paused);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.inner.shared.syncs.load(Ordering::SeqCst), 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.len(), 64);
    for i in 0..64 {
        assert!(verifies(&store, &format!("ns/svc/t{i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let value = value_with("ns/svc/same", &format!("secret{i}"));
                let result = store.create("ns/svc/same", &value).await;
                (value, result)
            })
        })
        .collect();
    let (mut winners, mut losers) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            (value, Ok(())) => winners.push(value),
            (value, Err(StoreError::Conflict(_))) => losers.push(value),
            (_, Err(e)) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert!(store.verify_value(winners[0].as_bytes()));
    assert!(!losers.iter().any(|v| store.verify_value(v.as_bytes())));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn import_skips_existing_and_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "a/b/x").await;
    let tokens = ["a/b/x", "a/b/y", "a/b/y", "a/b/z", "a/c/w"]
        .iter()
        .map(|n| (n.to_string(), value(n)))
        .collect();
    let skipped = store.import(tokens).await.unwrap();
    assert_eq!(skipped, ["a/b/x", "a/b/y"]);
    drop(store);
    let store = open(dir.path());
    for name in ["a/b/x", "a/b/y", "a/b/z", "a/c/w"] {
        assert!(verifies(&store, name), "{name}");
    }
    assert_eq!(store.names_of(&account("a/b")), ["x", "y", "z"]);
    assert_eq!(store.names_of(&account("a/c")), ["w"]);
    assert!(store.names_of(&account("a/bc")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_answers_pending_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let paused = store.inner.shared.pause.lock().await;
    let pending = tokio::spawn({
        let store = store.clone();
        async move { store.create("ns/svc/late", &value("ns/svc/late")).await }
    });
    wait_sent(&store, 1).await;
    let closing = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.close()
    });
    drop(paused);
    pending.await.unwrap().unwrap();
    closing.await.unwrap();
    store.close();
    let err = store.create("ns/svc/after", &value("ns/svc/after")).await;
    assert!(matches!(err, Err(StoreError::Closed)));
    drop(store);
    assert!(verifies(&open(dir.path()), "ns/svc/late"));
}

/// Three same-length tokens; returns the journal bytes and one record's size.
async fn three_records(dir: &Path) -> (Vec<u8>, usize) {
    let store = open(dir);
    for name in ["ns/svc/t1", "ns/svc/t2", "ns/svc/t3"] {
        create(&store, name).await;
    }
    drop(store);
    let record = put_record_len("ns/svc/t1".len()) as usize;
    let bytes = fs::read(journal(dir)).unwrap();
    assert_eq!(bytes.len(), HEADER_LEN as usize + 3 * record);
    (bytes, record)
}

fn reopen_with(dir: &Path, bytes: &[u8]) -> Result<TokenStore, StoreError> {
    fs::write(journal(dir), bytes).unwrap();
    TokenStore::open(dir, StoreOptions::default())
}

#[tokio::test]
async fn torn_tails_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (good, record) = three_records(dir.path()).await;
    let two = good.len() - record;
    let mut cases: Vec<(Vec<u8>, usize)> = Vec::new();
    for cut in 1..=record {
        cases.push((good[..good.len() - cut].to_vec(), two));
    }
    for zeros in [1, 7, 8, 100, 5000] {
        cases.push(([&good[..], &vec![0; zeros]].concat(), good.len()));
    }
    cases.push(([&good[..], &[60, 0, 0]].concat(), good.len()));
    let mut bad_crc = good;
    *bad_crc.last_mut().unwrap() ^= 1;
    cases.push((bad_crc.clone(), two));
    cases.push(([&bad_crc[..], &[0; 64]].concat(), two));
    for (i, (bytes, expect_len)) in cases.iter().enumerate() {
        let store = reopen_with(dir.path(), bytes).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let expect_tokens = (expect_len - HEADER_LEN as usize) / record;
        assert_eq!(store.len(), expect_tokens, "case {i}");
        for (n, name) in ["ns/svc/t1", "ns/svc/t2", "ns/svc/t3"].iter().enumerate() {
            assert_eq!(verifies(&store, name), n < expect_tokens, "case {i} {name}");
        }
        drop(store);
        assert_eq!(file_len(dir.path()), *expect_len as u64, "case {i}");
    }
}

#[tokio::test]
async fn mid_file_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (good, record) = three_records(dir.path()).await;
    let second = HEADER_LEN as usize + record;
    let mut flipped = good.clone();
    flipped[second + 12] ^= 0x40;
    let mut zero_len = good.clone();
    zero_len[second..second + 4].fill(0);
    let mut huge_len = good.clone();
    huge_len[second..second + 4].copy_from_slice(&100_000u32.to_le_bytes());
    for bytes in [flipped, zero_len, huge_len] {
        match reopen_with(dir.path(), &bytes) {
            Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
            other => panic!("expected Corrupt, got {:?}", other.map(|s| s.len())),
        }
        assert_eq!(
            file_len(dir.path()),
            good.len() as u64,
            "file must be left alone"
        );
    }
    let mut bad_magic = good;
    bad_magic[0] = b'X';
    assert!(matches!(
        reopen_with(dir.path(), &bad_magic),
        Err(StoreError::Corrupt { offset: 0, .. })
    ));
}

#[tokio::test]
async fn compaction_shrinks_and_preserves() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_bytes: 1,
        ..StoreOptions::default()
    };
    let store = TokenStore::open(dir.path(), options.clone()).unwrap();
    for i in 0..20 {
        create(&store, &format!("ns/svc/t{i:02}")).await;
    }
    for i in 1..20 {
        assert!(store.delete(&format!("ns/svc/t{i:02}")).await.unwrap());
    }
    create(&store, "ns/svc/after").await;
    drop(store);
    let live = put_record_len("ns/svc/t00".len()) + put_record_len("ns/svc/after".len());
    assert_eq!(file_len(dir.path()), HEADER_LEN + live);
    assert!(!dir.path().join(TMP_FILE).exists());
    let store = TokenStore::open(dir.path(), options).unwrap();
    assert_eq!(store.names_of(&account("ns/svc")), ["after", "t00"]);
    assert!(verifies(&store, "ns/svc/t00"));
    assert!(verifies(&store, "ns/svc/after"));
    assert!(!verifies(&store, "ns/svc/t01"));
}

#[tokio::test]
async fn leftover_tmp_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/a").await;
    drop(store);
    fs::write(dir.path().join(TMP_FILE), b"half a compaction").unwrap();
    let store = open(dir.path());
    assert!(verifies(&store, "ns/svc/a"));
    assert!(!dir.path().join(TMP_FILE).exists());
}

#[test]
fn fresh_and_half_created_journals_open_empty() {
    let dir = tempfile::tempdir().unwrap();
    let zero_pepper = [&b"TGJ1\x02\0\0\0"[..], &[0; 16]].concat();
    for bytes in [
        &b""[..],
        b"TG",
        b"TGJ1\x02\x00",
        b"TGJ1\x02\0\0\0\x9a\x41",
        b"\0\0\0",
        &[0; 24],
        &zero_pepper,
    ] {
        let store = reopen_with(dir.path(), bytes).unwrap();
        assert!(store.is_empty());
        drop(store);
        assert_eq!(file_len(dir.path()), HEADER_LEN);
    }
}
