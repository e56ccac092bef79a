//! The per-request token check on a store holding 1M tokens: `auth::verify_bearer`
//! (peppered SHA-256 of the value + one map lookup + constant-time compare) and its hashing part.
//!
//! Run: `cargo bench --bench token_check`. Also prints the resident memory of the 1M-token store,
//! and measures a valid check on a 1,000-token store for comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use tokengate::accounts::Accounts;
use tokengate::auth;
use tokengate::identity::token;
use tokengate::store::TokenStore;

const TOKENS: usize = 1_000_000;
/// Token values cycled through, so lookups touch many map buckets (not one hot entry).
const ROTATE: usize = 65_536;

/// What a request's bearer check runs: the store's lookup and, on a match, naming the token.
struct Checker {
    store: TokenStore,
    accounts: Accounts,
}

impl Checker {
    fn new(store: TokenStore) -> Self {
        Checker {
            store,
            accounts: Accounts::new(&[]).expect("built-in accounts"),
        }
    }

    fn verify(&self, value: &[u8]) -> bool {
        auth::verify_bearer(&self.store, &self.accounts, value).is_some()
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rss_before = common::rss_kib().unwrap_or(0);
    let (store, sample, took) = common::build(dir.path(), TOKENS, ROTATE);
    let rss_after = common::rss_kib().unwrap_or(0);
    let per_token = (rss_after.saturating_sub(rss_before) * 1024) as f64 / TOKENS as f64;
    println!(
        "token store: {TOKENS} tokens imported in {:.2} s; VmRSS {:.1} MiB before, {:.1} MiB after \
         (+{:.1} MiB, ~{per_token:.0} bytes/token)",
        took.as_secs_f64(),
        common::mib(rss_before),
        common::mib(rss_after),
        common::mib(rss_after.saturating_sub(rss_before)),
    );

    let checker = Checker::new(store.clone());

    let unknown: Vec<String> = (0..ROTATE)
        .map(|i| {
            token::encode_raw(
                common::ACCOUNT,
                &format!("absent-{i}"),
                &token::generate_secret(),
            )
        })
        .collect();
    // Not base64. Nothing is decoded any more, so these are hashed and looked up like any value.
    let malformed: Vec<String> = (0..ROTATE)
        .map(|i| format!("not-a-token!{i:08}-AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVy"))
        .collect();
    // Every case's values packed back to back: the sample strings were allocated amid a million
    // others and scattered over the heap, and later allocations reuse their holes, so reading a
    // value would otherwise be timed as part of the check, by a different amount for each case
    // (a server reads the value from a request buffer that is already in cache).
    let valid = Packed::new(&sample.valid);
    let wrong = Packed::new(&sample.wrong_secret);
    let unknown = Packed::new(&unknown);
    let malformed = Packed::new(&malformed);
    drop(sample);
    let (valid, wrong) = (valid.slices(), wrong.slices());
    let (unknown, malformed) = (unknown.slices(), malformed.slices());
    assert!(valid.iter().all(|v| checker.verify(v)));
    assert!(!wrong.iter().any(|v| checker.verify(v)));
    assert!(!unknown.iter().any(|v| checker.verify(v)));
    assert!(!malformed.iter().any(|v| checker.verify(v)));

    let mut group = c.benchmark_group("token_check_1M");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (case, values) in [
        ("valid", &valid),
        ("wrong_secret", &wrong),
        ("unknown_name", &unknown),
        ("malformed", &malformed),
    ] {
        group.bench_function(format!("verify_bearer/{case}"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % values.len();
                checker.verify(black_box(values[i]))
            })
        });
    }
    // The hashing part of a valid check (the same SHA-256 over a 16-byte pepper and the value);
    // the rest of `verify_bearer/valid` is the map lookup and compare.
    let pepper = [0x5au8; 16];
    group.bench_function("sha256_only/valid", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % valid.len();
            let mut hasher = Sha256::new();
            hasher.update(pepper);
            hasher.update(black_box(valid[i]));
            hasher.finalize()
        })
    });
    group.finish();
    drop(checker);
    store.close();

    // The same check when the whole map fits in cache: the difference to the 1M case is memory
    // latency (the map's control bytes and bucket).
    let small_dir = tempfile::tempdir().unwrap();
    let (small, small_sample, _) = common::build(small_dir.path(), 1_000, 1_000);
    let small_valid: Vec<&[u8]> = small_sample.valid.iter().map(|v| v.as_bytes()).collect();
    let small_checker = Checker::new(small.clone());
    let mut group = c.benchmark_group("token_check_1k");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    group.bench_function("verify_bearer/valid", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % small_valid.len();
            small_checker.verify(black_box(small_valid[i]))
        })
    });
    group.finish();
    drop(small_checker);
    small.close();
}

/// Values stored back to back in one buffer.
struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    fn new(values: &[String]) -> Self {
        let mut bytes = Vec::with_capacity(values.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(values.len());
        for value in values {
            bytes.extend_from_slice(value.as_bytes());
            ends.push(bytes.len());
        }
        Packed { bytes, ends }
    }

    fn slices(&self) -> Vec<&[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
            .collect()
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
