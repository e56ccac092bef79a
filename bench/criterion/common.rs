//! Helpers shared by the criterion benches: building large token stores and reading memory use.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use tokengate::identity::token;
use tokengate::store::{StoreOptions, TokenStore};

/// The account every bench token belongs to.
pub const ACCOUNT: &str = "elastic/fleet-server";
/// Tokens per `TokenStore::import` call while building.
const BATCH: usize = 10_000;

/// Token values (valid, and the same names with a wrong secret) kept from a built store.
pub struct Sample {
    pub valid: Vec<String>,
    pub wrong_secret: Vec<String>,
}

/// A current-thread runtime for the store's async API.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Fills `store` with `count` tokens `elastic/fleet-server/token-<i>` (fresh random secrets),
/// durably, in batches. Keeps the values of about `keep` of them, spread evenly.
pub fn fill(
    rt: &tokio::runtime::Runtime,
    store: &TokenStore,
    count: usize,
    keep: usize,
) -> (Sample, Duration) {
    let stride = (count / keep.max(1)).max(1);
    let mut sample = Sample {
        valid: Vec::with_capacity(keep),
        wrong_secret: Vec::with_capacity(keep),
    };
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let end = (i + BATCH).min(count);
        let mut batch = Vec::with_capacity(end - i);
        for n in i..end {
            let name = format!("token-{n}");
            let secret = token::generate_secret();
            if n % stride == 0 && sample.valid.len() < keep {
                sample
                    .valid
                    .push(token::encode_raw(ACCOUNT, &name, &secret));
                let wrong = token::generate_secret();
                sample
                    .wrong_secret
                    .push(token::encode_raw(ACCOUNT, &name, &wrong));
            }
            batch.push((
                format!("{ACCOUNT}/{name}"),
                token::encode_raw(ACCOUNT, &name, &secret),
            ));
        }
        let skipped = rt.block_on(store.import(batch)).unwrap();
        assert!(skipped.is_empty(), "names collided while building");
        i = end;
    }
    (sample, started.elapsed())
}

/// Opens a store in `dir` and fills it; see [`fill`].
pub fn build(dir: &Path, count: usize, keep: usize) -> (TokenStore, Sample, Duration) {
    let rt = runtime();
    let store = TokenStore::open(dir, StoreOptions::default()).unwrap();
    let (sample, took) = fill(&rt, &store, count, keep);
    assert_eq!(store.len(), count);
    (store, sample, took)
}

/// Resident set size of this process in KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Peak resident set size of this process in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
