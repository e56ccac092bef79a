//! The per-request token check on a store holding 1M tokens: `Authenticator::verify_bearer`
//! (decode + map lookup + salted SHA-256 + constant-time compare) and its two halves.
//!
//! Run: `cargo bench --bench token_check`. Also prints the resident memory of the 1M-token store,
//! and measures a valid check on a 1,000-token store for comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokengate::auth::accounts::Accounts;
use tokengate::auth::token;
use tokengate::auth::users::UserRealm;
use tokengate::auth::Authenticator;

const TOKENS: usize = 1_000_000;
/// Token values cycled through, so lookups touch many map buckets (not one hot entry).
const ROTATE: usize = 65_536;

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

    let (realm, _) = UserRealm::open(dir.path(), Some("bench-password")).unwrap();
    let auth = Authenticator::new(store.clone(), realm, Accounts::new(&[]), Vec::new());

    let valid: Vec<&[u8]> = sample.valid.iter().map(|v| v.as_bytes()).collect();
    let wrong: Vec<&[u8]> = sample.wrong_secret.iter().map(|v| v.as_bytes()).collect();
    let unknown: Vec<String> = (0..ROTATE)
        .map(|i| {
            token::encode(
                common::ACCOUNT,
                &format!("absent-{i}"),
                &token::generate_secret(),
            )
        })
        .collect();
    let unknown: Vec<&[u8]> = unknown.iter().map(|v| v.as_bytes()).collect();
    // Not base64: rejected by the decoder before any lookup.
    let malformed: Vec<Vec<u8>> = (0..ROTATE)
        .map(|i| format!("not-a-token!{i:08}-AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVy").into_bytes())
        .collect();
    let malformed: Vec<&[u8]> = malformed.iter().map(Vec::as_slice).collect();
    assert!(valid.iter().all(|v| auth.verify_bearer(v)));
    assert!(!wrong.iter().any(|v| auth.verify_bearer(v)));
    assert!(!unknown.iter().any(|v| auth.verify_bearer(v)));
    assert!(!malformed.iter().any(|v| auth.verify_bearer(v)));

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
                auth.verify_bearer(black_box(values[i]))
            })
        });
    }
    // The two halves of a valid check.
    group.bench_function("decode_only/valid", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % valid.len();
            let mut buf = [0u8; token::MAX_DECODED_LEN];
            token::decode(black_box(valid[i]), &mut buf).map(|t| t.secret.len())
        })
    });
    let decoded: Vec<(String, Vec<u8>)> = valid
        .iter()
        .map(|v| {
            let mut buf = [0u8; token::MAX_DECODED_LEN];
            let t = token::decode(v, &mut buf).unwrap();
            (t.qualified.to_owned(), t.secret.to_vec())
        })
        .collect();
    group.bench_function("store_verify_only/valid", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % decoded.len();
            let (name, secret) = &decoded[i];
            store.verify(black_box(name), black_box(secret))
        })
    });
    group.finish();
    drop(auth);
    store.close();

    // The same check when the whole map fits in cache: the difference to the 1M case is memory
    // latency (map buckets and the heap-allocated names they point to).
    let small_dir = tempfile::tempdir().unwrap();
    let (small, small_sample, _) = common::build(small_dir.path(), 1_000, 1_000);
    let small_valid: Vec<&[u8]> = small_sample.valid.iter().map(|v| v.as_bytes()).collect();
    let (realm, _) = UserRealm::open(small_dir.path(), Some("bench-password")).unwrap();
    let small_auth = Authenticator::new(small.clone(), realm, Accounts::new(&[]), Vec::new());
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
            small_auth.verify_bearer(black_box(small_valid[i]))
        })
    });
    group.finish();
    drop(small_auth);
    small.close();
}

criterion_group!(benches, bench);
criterion_main!(benches);
