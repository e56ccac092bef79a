//! The store against real files: reload rules, remembered outcomes, the pool's bound.

use std::fs;
use std::path::Path;

use super::hash::pbkdf2_stretch;
use super::*;
use crate::identity::TokenName;

/// Iterations for hashes written here: the gateway honours the hash's own count.
const ITERATIONS: u32 = 2;

fn open(dir: &Path, workers: usize, queue: usize) -> FileTokens {
    let pool = PasswordPool::new(workers, queue).unwrap();
    FileTokens::open(
        dir,
        &Accounts::new(&[]).unwrap(),
        pool,
        &AuthThrottle::default(),
    )
}

/// A line for `elastic/fleet-server/<name>` and the value that authenticates with it.
fn token(name: &str) -> (String, String) {
    let secret = token::generate_secret();
    let account = AccountId::parse("elastic/fleet-server").unwrap();
    let value = token::encode(&account, &TokenName::new(name).unwrap(), &secret);
    let line = format!(
        "elastic/fleet-server/{name}:{}\n",
        pbkdf2_stretch(secret.as_bytes(), ITERATIONS)
    );
    (line, value)
}

fn write(dir: &Path, text: &str) {
    atomic_file::replace(&path_in(dir), text.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_value_costs_one_check_whatever_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (line, value) = token("t1");
    write(dir.path(), &line);
    let tokens = open(dir.path(), 1, 0);
    assert_eq!(
        tokens.names_of(&AccountId::parse("elastic/fleet-server").unwrap()),
        ["t1"]
    );

    for _ in 0..3 {
        let identity = tokens.verify(value.as_bytes()).await.unwrap().unwrap();
        assert_eq!(
            (
                identity.account.as_str(),
                identity.name.as_str(),
                identity.source
            ),
            ("elastic/fleet-server", "t1", TokenSource::File)
        );
    }
    assert_eq!(tokens.checks(), 1);

    let guess = token::encode_raw("elastic/fleet-server", "t1", "guess");
    for _ in 0..3 {
        assert_eq!(tokens.verify(guess.as_bytes()).await, Ok(None));
    }
    assert_eq!(tokens.checks(), 2, "a repeated guess reaches the KDF once");

    // Names the file does not hold, and values that are no tokens, never reach the pool.
    let other = token::encode_raw("elastic/fleet-server", "t2", "guess");
    assert_eq!(tokens.verify(other.as_bytes()).await, Ok(None));
    assert_eq!(tokens.verify(b"%%%").await, Ok(None));
    assert_eq!(tokens.checks(), 2);

    // `_clear_cache` forgets outcomes: the next use checks again, once.
    tokens.clear_cache();
    assert!(tokens.verify(value.as_bytes()).await.unwrap().is_some());
    assert!(tokens.verify(value.as_bytes()).await.unwrap().is_some());
    assert_eq!(tokens.checks(), 3);
}

#[tokio::test]
async fn reloads_follow_the_file_and_keep_the_last_good_reading() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = open(dir.path(), 1, 2);
    assert!(tokens.is_empty());
    let (line1, value1) = token("t1");
    let (line2, value2) = token("t2");
    write(dir.path(), &format!("{line1}not a token line\n{line2}"));
    tokens.refresh(false);
    assert_eq!(tokens.len(), 2);
    assert!(tokens.verify(value1.as_bytes()).await.unwrap().is_some());
    assert!(tokens.verify(value2.as_bytes()).await.unwrap().is_some());

    write(dir.path(), &line2);
    tokens.refresh(false);
    assert_eq!(tokens.verify(value1.as_bytes()).await, Ok(None), "removed");
    assert!(tokens.verify(value2.as_bytes()).await.unwrap().is_some());

    // Unreadable (a directory where the file was): the previous tokens stay.
    fs::remove_file(path_in(dir.path())).unwrap();
    fs::create_dir(path_in(dir.path())).unwrap();
    tokens.refresh(true);
    assert!(tokens.verify(value2.as_bytes()).await.unwrap().is_some());
    // Gone: no tokens.
    fs::remove_dir(path_in(dir.path())).unwrap();
    tokens.refresh(false);
    assert!(tokens.is_empty());
}

#[tokio::test]
async fn a_full_pool_is_busy_and_nothing_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let (line, value) = token("t1");
    write(dir.path(), &line);
    let tokens = open(dir.path(), 1, 0);
    let pool = tokens.inner.pool.clone();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stalled = tokio::spawn(async move {
        pool.check(move || {
            let _ = started_tx.send(());
            release_rx.recv().is_ok()
        })
        .await
    });
    started_rx.await.unwrap();
    assert_eq!(tokens.verify(value.as_bytes()).await, Err(Busy));
    release_tx.send(()).unwrap();
    assert_eq!(stalled.await.unwrap(), Ok(true));
    assert!(tokens.verify(value.as_bytes()).await.unwrap().is_some());
}

#[test]
fn bad_lines_are_logged_with_file_and_number() {
    let dir = tempfile::tempdir().unwrap();
    let (line, _) = token("t1");
    write(
        dir.path(),
        &format!("# c\n{line}elastic/fleet-server/t2:{{MD5}}x\n"),
    );
    let (tokens, log) = atomic_file::logged_during(|| open(dir.path(), 1, 0));
    assert_eq!(tokens.len(), 1);
    let warning = log.lines().find(|l| l.contains("WARN")).unwrap();
    assert!(warning.contains("line=3"), "{log}");
    assert!(
        warning.contains(&path_in(dir.path()).display().to_string()),
        "{log}"
    );
}
