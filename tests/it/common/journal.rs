//! A data directory whose journal already holds many tokens, written in one batch through the
//! store itself (as `tokens import` does), far quicker than creating them through the API.

use std::path::Path;
use std::time::Duration;

use tokengate::identity::token::encode_raw;
use tokengate::store::{in_use, StoreOptions, TokenStore};

use super::wait::eventually;

/// Accounts the tokens are spread over, in turn.
const ACCOUNTS: [&str; 2] = ["elastic/fleet-server", "elastic/kibana"];

/// Writes `count` tokens into the journal under `dir` (created if missing); returns their
/// qualified names, sorted, as `tokens list` prints them.
pub async fn with_tokens(dir: &Path, count: usize) -> Vec<String> {
    let tokens: Vec<(String, String)> = (0..count)
        .map(|i| {
            let account = ACCOUNTS[i % ACCOUNTS.len()];
            let name = format!("t{i:06}");
            let value = encode_raw(account, &name, &format!("secret-{i}-0123456789"));
            (format!("{account}/{name}"), value)
        })
        .collect();
    let mut names: Vec<String> = tokens.iter().map(|(name, _)| name.clone()).collect();
    names.sort_unstable();
    let store = TokenStore::open(dir, StoreOptions::default()).unwrap();
    let skipped = store.import(tokens).await.unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    store.close();
    // The lock is released, but a process another test spawned while it was held keeps a copy
    // of its descriptor (an inherited `flock` stays held) until it starts its program: a
    // command run on `dir` right now could find the directory "in use by a running gateway".
    eventually(
        "the data directory's lock free",
        Duration::from_secs(10),
        || matches!(in_use(dir), Ok(false)),
    )
    .await;
    names
}
