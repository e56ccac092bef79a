//! The token journal: durable create latency (one fsync per create), group commit under 64
//! concurrent creates, and start-up replay (`TokenStore::open`) of 100k and 1M tokens.
//!
//! Run: `cargo bench --bench journal`. The journal lives in a temporary directory under the
//! system temp dir (`TMPDIR`), so the fsync numbers are those of that filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use tokengate::auth::secret::SecretHash;
use tokengate::store::{StoreOptions, TokenStore};

const CONCURRENT: usize = 64;

fn creates(c: &mut Criterion) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::open(dir.path(), StoreOptions::default()).unwrap();
    let hash = SecretHash::new(b"bench-secret-0123456789");
    let mut next = 0u64;
    let mut name = move || {
        next += 1;
        format!("{}/c-{next}", common::ACCOUNT)
    };

    let mut group = c.benchmark_group("journal");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);

    group.throughput(Throughput::Elements(1));
    group.bench_function("create_durable/1", |b| {
        b.iter_custom(|iters| {
            let names: Vec<String> = (0..iters).map(|_| name()).collect();
            let started = Instant::now();
            for n in &names {
                rt.block_on(store.create(n, hash.clone())).unwrap();
            }
            started.elapsed()
        })
    });

    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("create_durable/{CONCURRENT}_concurrent"), |b| {
        b.iter_custom(|iters| {
            let rounds: Vec<Vec<String>> = (0..iters)
                .map(|_| (0..CONCURRENT).map(|_| name()).collect())
                .collect();
            let started = Instant::now();
            for round in &rounds {
                let all = join_all(round.iter().map(|n| store.create(n, hash.clone())));
                for result in rt.block_on(all) {
                    result.unwrap();
                }
            }
            started.elapsed()
        })
    });
    group.finish();
    println!(
        "journal: {} tokens created durably during the create benches",
        store.len()
    );
    store.close();
}

fn startup(c: &mut Criterion) {
    let mut group = c.benchmark_group("startup");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    for count in [100_000usize, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, took) = common::build(dir.path(), count, 1);
        store.close();
        drop(store);
        let bytes = std::fs::metadata(dir.path().join("tokens.journal"))
            .map(|m| m.len())
            .unwrap_or(0);
        // One untimed open to report the memory the replayed store holds.
        let rss_before = common::rss_kib().unwrap_or(0);
        let opened = TokenStore::open(dir.path(), StoreOptions::default()).unwrap();
        let rss_after = common::rss_kib().unwrap_or(0);
        assert_eq!(opened.len(), count);
        opened.close();
        drop(opened);
        println!(
            "startup: {count} tokens (built in {:.2} s), journal {:.1} MiB; VmRSS {:.1} MiB before \
             open, {:.1} MiB with the replayed store (+{:.1} MiB)",
            took.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64,
            common::mib(rss_before),
            common::mib(rss_after),
            common::mib(rss_after.saturating_sub(rss_before)),
        );
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("open_replay/{count}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let store = TokenStore::open(dir.path(), StoreOptions::default()).unwrap();
                    total += started.elapsed();
                    assert_eq!(store.len(), count);
                    // Closing and freeing the map are not part of start-up.
                    store.close();
                    drop(store);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, creates, startup);
criterion_main!(benches);
