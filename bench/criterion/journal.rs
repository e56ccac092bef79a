//! The token journal: durable create latency (one fsync per create), group commit under 64
//! concurrent creates, and start-up replay (`TokenStore::open`) of 100k and 1M tokens.
//!
//! Run: `cargo bench --bench journal`. The journal lives in a temporary directory under the
//! system temp dir (`TMPDIR`), so the fsync numbers are those of that filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use tokengate::identity::token;
use tokengate::store::{StoreOptions, TokenStore};

const CONCURRENT: usize = 64;
/// Set (to a data directory) in the child process that reports the memory of a replayed store.
const RSS_CHILD_ENV: &str = "TOKENGATE_BENCH_REPLAY_RSS";

fn creates(c: &mut Criterion) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::open(dir.path(), StoreOptions::default()).unwrap();
    // (qualified name, value); every value differs, as the store keeps one token per value.
    let mut next = 0u64;
    let mut token = move || {
        next += 1;
        let name = format!("c-{next}");
        let value = token::encode_raw(common::ACCOUNT, &name, "bench-secret-0123456789");
        (format!("{}/{name}", common::ACCOUNT), value)
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
            let tokens: Vec<(String, String)> = (0..iters).map(|_| token()).collect();
            let started = Instant::now();
            for (name, value) in &tokens {
                rt.block_on(store.create(name, value)).unwrap();
            }
            started.elapsed()
        })
    });

    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("create_durable/{CONCURRENT}_concurrent"), |b| {
        b.iter_custom(|iters| {
            let rounds: Vec<Vec<(String, String)>> = (0..iters)
                .map(|_| (0..CONCURRENT).map(|_| token()).collect())
                .collect();
            let started = Instant::now();
            for round in &rounds {
                let all = join_all(round.iter().map(|(n, v)| store.create(n, v)));
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
        .measurement_time(Duration::from_secs(8))
        .sampling_mode(SamplingMode::Flat);
    for count in [100_000usize, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, took) = common::build(dir.path(), count, 1);
        store.close();
        drop(store);
        let bytes = std::fs::metadata(dir.path().join("tokens.journal"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "startup: {count} tokens (built in {:.2} s), journal {:.1} MiB",
            took.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64,
        );
        replay_memory(dir.path());
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

/// Opens the store in a fresh process (this executable again), so the numbers are those of a
/// gateway that just started, not of this process's reused heap.
fn replay_memory(dir: &std::path::Path) {
    let child = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .env(RSS_CHILD_ENV, dir)
            .output()
    });
    match child {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "startup: memory child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(error) => println!("startup: memory child not started: {error}"),
    }
}

/// The child's side of [`replay_memory`].
fn report_replay_memory(dir: &str) {
    let before = common::rss_kib().unwrap_or(0);
    let started = Instant::now();
    let store = TokenStore::open(std::path::Path::new(dir), StoreOptions::default()).unwrap();
    let took = started.elapsed();
    let after = common::rss_kib().unwrap_or(0);
    let peak = common::peak_rss_kib().unwrap_or(0);
    let tokens = store.len();
    println!(
        "startup: fresh process opened {tokens} tokens in {:.0} ms; VmRSS {:.1} MiB before, \
         {:.1} MiB after (+{:.1} MiB, ~{:.0} bytes/token), peak VmHWM {:.1} MiB",
        took.as_secs_f64() * 1e3,
        common::mib(before),
        common::mib(after),
        common::mib(after.saturating_sub(before)),
        (after.saturating_sub(before) * 1024) as f64 / tokens.max(1) as f64,
        common::mib(peak),
    );
    store.close();
}

// Start-up first: the create benches leave a large heap behind.
criterion_group!(benches, startup, creates);

fn main() {
    if let Ok(dir) = std::env::var(RSS_CHILD_ENV) {
        report_replay_memory(&dir);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
