//! Tests of what the store does about its files being tampered with while it runs: a journal
//! removed or replaced under the writer, a rewrite that cannot happen, a second opener, and the
//! permissions of what it creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use super::journal::{JOURNAL_FILE, TMP_FILE};
use super::tests::{create, value, verifies};
use super::{StoreError, StoreOptions, TokenStore};
use crate::atomic_file::logged_during;

fn open(dir: &Path) -> TokenStore {
    TokenStore::open(dir, StoreOptions::default()).unwrap()
}

fn journal(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

/// Both tokens verify after a restart, and nothing else is there.
fn reopened_holds(dir: &Path, names: &[&str]) {
    let store = open(dir);
    for name in names {
        assert!(verifies(&store, name), "{name} lost");
    }
    assert_eq!(store.len(), names.len());
}

#[tokio::test]
async fn a_removed_journal_is_rewritten_before_the_next_create_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/before").await;
    fs::remove_file(journal(dir.path())).unwrap();
    create(&store, "ns/svc/after").await;
    // Acknowledged means on disk at the journal path already, not only at close.
    let copy = tempfile::tempdir().unwrap();
    fs::copy(journal(dir.path()), journal(copy.path())).unwrap();
    reopened_holds(copy.path(), &["ns/svc/before", "ns/svc/after"]);
    drop(store);
    reopened_holds(dir.path(), &["ns/svc/before", "ns/svc/after"]);
}

#[tokio::test]
async fn a_journal_replaced_by_another_file_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/before").await;
    let decoy = dir.path().join("decoy");
    fs::write(&decoy, b"not a journal").unwrap();
    fs::rename(&decoy, journal(dir.path())).unwrap();
    create(&store, "ns/svc/after").await;
    assert_ne!(fs::read(journal(dir.path())).unwrap(), b"not a journal");
    drop(store);
    reopened_holds(dir.path(), &["ns/svc/before", "ns/svc/after"]);
}

#[tokio::test]
async fn a_journal_removed_after_the_last_create_is_rewritten_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/only").await;
    fs::remove_file(journal(dir.path())).unwrap();
    store.close();
    drop(store);
    reopened_holds(dir.path(), &["ns/svc/only"]);
}

#[tokio::test]
async fn deletes_after_a_removal_are_durable_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "ns/svc/kept").await;
    create(&store, "ns/svc/gone").await;
    fs::remove_file(journal(dir.path())).unwrap();
    assert!(store.delete("ns/svc/gone").await.unwrap());
    drop(store);
    reopened_holds(dir.path(), &["ns/svc/kept"]);
}

/// Removes the journal and puts `block` in the way of its rewrite; a create must then be refused
/// and leave no trace, and once `unblock` has run, the next create must rewrite the journal with
/// every acknowledged token. Permission bits cannot be the obstacle: the tests run as root.
async fn refused_while_blocked(block: impl FnOnce(&Path), unblock: impl FnOnce(&Path)) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let store = open(&dir);
    create(&store, "ns/svc/before").await;
    block(&dir);
    let refused = store
        .create("ns/svc/refused", &value("ns/svc/refused"))
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Io { path, .. }) if *path == journal(&dir)),
        "{refused:?}"
    );
    assert!(!store.contains("ns/svc/refused"));
    assert!(!verifies(&store, "ns/svc/refused"));
    assert!(verifies(&store, "ns/svc/before"));
    unblock(&dir);
    create(&store, "ns/svc/after").await;
    drop(store);
    reopened_holds(&dir, &["ns/svc/before", "ns/svc/after"]);
}

#[tokio::test]
async fn a_rewrite_that_cannot_create_its_temporary_file_refuses_the_batch() {
    refused_while_blocked(
        |dir| {
            fs::remove_file(journal(dir)).unwrap();
            fs::create_dir(dir.join(TMP_FILE)).unwrap();
        },
        |dir| fs::remove_dir(dir.join(TMP_FILE)).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn a_rewrite_that_cannot_rename_over_the_path_refuses_the_batch() {
    refused_while_blocked(
        |dir| {
            fs::remove_file(journal(dir)).unwrap();
            fs::create_dir(journal(dir)).unwrap();
        },
        |dir| fs::remove_dir(journal(dir)).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn a_removed_data_directory_refuses_the_batch_until_it_is_back() {
    refused_while_blocked(
        |dir| fs::remove_dir_all(dir).unwrap(),
        |dir| fs::create_dir(dir).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn the_lock_is_on_the_directory_itself() {
    let dir = tempfile::tempdir().unwrap();
    // A lock file left by an earlier version is neither needed nor in the way.
    fs::write(dir.path().join(".lock"), b"").unwrap();
    let store = open(dir.path());
    fs::remove_file(dir.path().join(".lock")).unwrap();
    match TokenStore::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|s| s.len())),
    }
    assert!(!dir.path().join(".lock").exists());
    drop(store);
    drop(open(dir.path()));
    assert!(!dir.path().join(".lock").exists());
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
#[tokio::test]
async fn the_directory_and_journal_are_owner_only_also_after_compaction() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let options = StoreOptions {
        compact_min_bytes: 1,
        ..StoreOptions::default()
    };
    let store = TokenStore::open(&dir, options).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&journal(&dir)), 0o600);
    let before = fs::metadata(journal(&dir)).unwrap();
    create(&store, "ns/svc/a").await;
    assert!(store.delete("ns/svc/a").await.unwrap());
    create(&store, "ns/svc/b").await;
    let after = fs::metadata(journal(&dir)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(before.ino(), after.ino(), "the journal was not compacted");
    assert_eq!(mode(&journal(&dir)), 0o600);
}

#[cfg(unix)]
#[tokio::test]
async fn a_journal_open_to_others_is_reported_and_left_as_it_is() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    create(&open(dir.path()), "ns/svc/a").await;
    let path = journal(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let (store, log) = logged_during(|| open(dir.path()));
    assert!(verifies(&store, "ns/svc/a"));
    assert_eq!(mode(&path), 0o640);
    let warning = log.lines().find(|l| l.contains("WARN")).expect(&log);
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(warning.contains("0640"), "{warning}");
    drop(store);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let (_store, log) = logged_during(|| open(dir.path()));
    assert!(!log.contains("WARN"), "{log}");
}
