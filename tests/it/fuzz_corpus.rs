//! The fuzz targets' corpora (`fuzz/corpus/<target>/`), replayed on stable through the same
//! checks the targets run (`fuzz/checks.rs`): every input that once found a bug, or reached new
//! code, stays a test without nightly or libFuzzer.
#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>/`, naming the file that fails; an empty or
/// missing corpus fails too, so a lost corpus cannot pass as a clean one.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{}: check failed", file.display());
        }
    }
}

#[test]
fn framing() {
    replay("framing", checks::framing);
}

#[test]
fn credentials() {
    replay("credentials", checks::credentials);
}

#[test]
fn path() {
    replay("path", checks::path);
}

#[test]
fn journal() {
    replay("journal", checks::journal);
}

#[test]
fn users() {
    replay("users", checks::users);
}

#[test]
fn service_tokens() {
    replay("service_tokens", checks::service_tokens);
}

#[test]
fn config() {
    replay("config", checks::config);
}

#[test]
fn node_answer() {
    replay("node_answer", checks::node_answer);
}
