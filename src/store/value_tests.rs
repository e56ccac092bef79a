//! Tests of checking whole token values: padding, near misses, the pepper's life cycle, and
//! what the journal holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use super::journal::{HEADER_LEN, JOURNAL_FILE};
use super::tests::{account, create, value, value_with, verifies, wait_sent};
use super::{StoreError, StoreOptions, TokenStore};

fn open(dir: &Path) -> TokenStore {
    TokenStore::open(dir, StoreOptions::default()).unwrap()
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(JOURNAL_FILE)).unwrap()
}

fn pepper(dir: &Path) -> Vec<u8> {
    journal_bytes(dir)[8..HEADER_LEN as usize].to_vec()
}

fn padded(value: &str) -> String {
    let mut padded = value.to_owned();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    padded
}

#[tokio::test]
async fn padded_and_unpadded_values_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Issued unpadded, presented padded.
    let unpadded = value("ns/svc/a");
    assert!(!unpadded.len().is_multiple_of(4), "the test needs padding");
    store.create("ns/svc/a", &unpadded).await.unwrap();
    assert!(store.verify_value(unpadded.as_bytes()));
    assert!(store.verify_value(padded(&unpadded).as_bytes()));
    // Imported padded, presented unpadded.
    let other = value("ns/svc/b");
    store
        .import(vec![("ns/svc/b".into(), padded(&other))])
        .await
        .unwrap();
    assert!(store.verify_value(other.as_bytes()));
    assert!(store.verify_value(padded(&other).as_bytes()));
}

#[tokio::test]
async fn near_misses_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/a").await;
    let good = value("ns/svc/a");
    assert!(store.verify_value(good.as_bytes()));
    for i in 0..good.len() {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(!store.verify_value(&bytes), "changed at {i}");
    }
    assert!(!store.verify_value(&good.as_bytes()[..good.len() - 1]));
    assert!(!store.verify_value(&good.as_bytes()[1..]));
    assert!(!store.verify_value(format!("{good}A").as_bytes()));
    assert!(!store.verify_value(format!("{good} ").as_bytes()));
    assert!(!store.verify_value(b""));
    assert!(!store.verify_value(b"===="));
    assert!(!store.verify_value(b"not a token at all"));
    assert!(!store.verify_value(&[b'A'; 5000]));
    assert!(!store.verify_value(value_with("ns/svc/a", "another-secret").as_bytes()));
}

#[tokio::test]
async fn a_value_is_stored_under_one_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let shared = value("ns/svc/a");
    store.create("ns/svc/a", &shared).await.unwrap();
    for (name, v) in [("ns/svc/b", shared.clone()), ("ns/svc/c", padded(&shared))] {
        assert!(matches!(
            store.create(name, &v).await,
            Err(StoreError::Conflict(n)) if n == name
        ));
    }
    let skipped = store
        .import(vec![("ns/svc/d".into(), shared.clone())])
        .await
        .unwrap();
    assert_eq!(skipped, ["ns/svc/d"]);
    assert_eq!(store.names_of(&account("ns/svc")), ["a"]);
    // Freed by a delete, the value can be stored again.
    assert!(store.delete("ns/svc/a").await.unwrap());
    assert!(!store.verify_value(shared.as_bytes()));
    store.create("ns/svc/a", &shared).await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.len(), 1);
    assert!(store.verify_value(shared.as_bytes()));
}

/// Within one group-commit batch a value is claimed by the first put, and freed by a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_sees_its_own_claims_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/old").await;
    let old = value("ns/svc/old");
    let fresh = value("ns/svc/x");
    let paused = store.inner.shared.pause.lock().await;
    let sent = store
        .inner
        .shared
        .sent
        .load(std::sync::atomic::Ordering::SeqCst);
    let spawn_import = |name: &'static str, value: String| {
        let store = store.clone();
        tokio::spawn(async move { store.import(vec![(name.to_owned(), value)]).await })
    };
    let first = spawn_import("ns/svc/x", fresh.clone());
    wait_sent(&store, sent + 1).await;
    let second = spawn_import("ns/svc/y", fresh.clone());
    wait_sent(&store, sent + 2).await;
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete("ns/svc/old").await }
    });
    wait_sent(&store, sent + 3).await;
    let reuse = spawn_import("ns/svc/new", old.clone());
    wait_sent(&store, sent + 4).await;
    let syncs = store
        .inner
        .shared
        .syncs
        .load(std::sync::atomic::Ordering::SeqCst);
    drop(paused);
    assert!(first.await.unwrap().unwrap().is_empty());
    assert_eq!(second.await.unwrap().unwrap(), ["ns/svc/y"]);
    assert!(delete.await.unwrap().unwrap());
    assert!(reuse.await.unwrap().unwrap().is_empty());
    let syncs_now = store
        .inner
        .shared
        .syncs
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(syncs_now, syncs + 1, "one batch");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.names_of(&account("ns/svc")), ["new", "x"]);
    assert!(store.verify_value(fresh.as_bytes()));
    assert!(store.verify_value(old.as_bytes()));
}

#[tokio::test]
async fn the_pepper_survives_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_bytes: 1,
        ..StoreOptions::default()
    };
    let store = TokenStore::open(dir.path(), options.clone()).unwrap();
    let first = pepper(dir.path());
    assert!(first.iter().any(|&b| b != 0));
    create(&store, "ns/svc/kept").await;
    drop(store);
    let store = open(dir.path());
    assert_eq!(pepper(dir.path()), first);
    assert!(verifies(&store, "ns/svc/kept"));
    drop(store);

    // Deleting most of many tokens forces compactions, which rewrite the file.
    let store = TokenStore::open(dir.path(), options.clone()).unwrap();
    for i in 0..20 {
        create(&store, &format!("ns/svc/t{i:02}")).await;
    }
    for i in 0..20 {
        assert!(store.delete(&format!("ns/svc/t{i:02}")).await.unwrap());
    }
    assert!(verifies(&store, "ns/svc/kept"));
    create(&store, "ns/svc/after").await;
    drop(store);
    let bytes = journal_bytes(dir.path());
    assert!(bytes.len() < 200, "not compacted: {} bytes", bytes.len());
    assert_eq!(pepper(dir.path()), first);
    let store = TokenStore::open(dir.path(), options).unwrap();
    assert_eq!(store.names_of(&account("ns/svc")), ["after", "kept"]);
    assert!(verifies(&store, "ns/svc/kept"));
    assert!(verifies(&store, "ns/svc/after"));
}

#[tokio::test]
async fn stores_have_different_peppers() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (store_a, store_b) = (open(a.path()), open(b.path()));
    create(&store_a, "ns/svc/same").await;
    create(&store_b, "ns/svc/same").await;
    drop((store_a, store_b));
    assert_ne!(pepper(a.path()), pepper(b.path()));
    // So one token value has different fingerprints in the two journals.
    let fingerprint = |dir: &Path| journal_bytes(dir)[journal_bytes(dir).len() - 32..].to_vec();
    assert_ne!(fingerprint(a.path()), fingerprint(b.path()));
}

#[tokio::test]
async fn the_journal_holds_neither_values_nor_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let secret = "0123456789abcdefghijkl";
    let token = value_with("ns/svc/a", secret);
    store.create("ns/svc/a", &token).await.unwrap();
    drop(store);
    let bytes = journal_bytes(dir.path());
    let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(holds(b"ns/svc/a"));
    assert!(!holds(secret.as_bytes()));
    assert!(!holds(&token.as_bytes()[token.len() - 16..]));
}

#[test]
fn a_version_1_journal_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(JOURNAL_FILE), b"TGJ1\x01\0\0\0").unwrap();
    match TokenStore::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 4);
            assert!(reason.contains("tokens import"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.len())),
    }
    assert_eq!(journal_bytes(dir.path()), b"TGJ1\x01\0\0\0", "left alone");
}

#[tokio::test]
async fn an_unknown_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/a").await;
    drop(store);
    let mut bytes = journal_bytes(dir.path());
    bytes[4] = 9;
    fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
    assert!(matches!(
        TokenStore::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Corrupt { offset: 4, .. })
    ));
}
