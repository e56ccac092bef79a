//! The last few minutes of a few figures, for the status page's charts: a background task
//! reads the metrics counters every [`INTERVAL`] and keeps the differences in a fixed ring of
//! [`CAPACITY`] samples. Counters only ever grow, so a sample is the difference of two reads;
//! nothing is added to the request path.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::limits::Limits;
use crate::observe::metrics::Metrics;
use crate::state::Live;

/// How often the counters are read.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: five minutes at [`INTERVAL`]. A bound on the page's size, too.
pub const CAPACITY: usize = 150;

/// One interval's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The interval's end, in seconds since the Unix epoch.
    pub at: u64,
    /// Requests per second by outcome label (`forwarded`, `api`, `401`, …).
    pub requests: Vec<(&'static str, f64)>,
    /// Median and 99th percentile of the request duration in milliseconds; `None` without
    /// requests in the interval.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Forwarded requests the cluster did not answer, per second.
    pub upstream_errors: f64,
    /// Failed authentications in the interval.
    pub auth_failures: u64,
}

/// The counters as read at one instant.
#[derive(Debug, Clone, Default)]
struct Reading {
    requests: Vec<(&'static str, u64)>,
    buckets: Vec<(f64, u64)>,
    upstream_failures: u64,
    auth_failures: u64,
    /// Requests admitted per account (its limiter's count).
    accounts: Vec<(Box<str>, u64)>,
}

impl Reading {
    fn of(metrics: &Metrics, limits: &Limits) -> Reading {
        let mut accounts = Vec::new();
        limits.each(|limiter| accounts.push((limiter.name.clone(), limiter.figures().admitted)));
        Reading {
            requests: metrics.requests_by_outcome(),
            buckets: metrics.duration_buckets(),
            upstream_failures: metrics.upstream_failures_total(),
            auth_failures: metrics.auth_failures_total(),
            accounts,
        }
    }
}

/// The ring of samples and the reading the next one is measured from.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Sample>,
    last: Option<Reading>,
    /// Each account's requests per second over the last interval (only the last: the page
    /// shows no per-account chart).
    account_rates: Vec<(Box<str>, f64)>,
}

impl History {
    /// Reads the counters every [`INTERVAL`] for as long as the gateway runs. The metrics are
    /// shared by every state a reload makes, so any state's will do; the live one is read.
    pub async fn sample(&self, live: Live) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = live.load();
            self.record(
                Reading::of(&state.metrics, &state.limits),
                unix_now(),
                INTERVAL,
            );
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.samples.iter().cloned().collect()
    }

    /// `account`'s requests per second over the last interval, once there is one.
    pub fn account_rate(&self, account: &str) -> Option<f64> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.account_rates
            .iter()
            .find(|(name, _)| &**name == account)
            .map(|(_, rate)| *rate)
    }

    fn record(&self, now: Reading, at: u64, interval: Duration) {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = ring.last.take() {
            ring.account_rates = now
                .accounts
                .iter()
                .map(|(name, count)| {
                    let was = before
                        .accounts
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(0, |(_, c)| *c);
                    let rate = count.saturating_sub(was) as f64 / interval.as_secs_f64();
                    (name.clone(), rate)
                })
                .collect();
            let sample = difference(&before, &now, at, interval.as_secs_f64());
            if ring.samples.len() == CAPACITY {
                ring.samples.pop_front();
            }
            ring.samples.push_back(sample);
        }
        ring.last = Some(now);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What happened between two readings `seconds` apart.
fn difference(before: &Reading, now: &Reading, at: u64, seconds: f64) -> Sample {
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let requests = now
        .requests
        .iter()
        .map(|(label, count)| {
            let was = before
                .requests
                .iter()
                .find(|(l, _)| l == label)
                .map_or(0, |(_, c)| *c);
            (*label, rate(was, *count))
        })
        .collect();
    let buckets: Vec<(f64, u64)> = now
        .buckets
        .iter()
        .enumerate()
        .map(|(i, (bound, count))| {
            let was = before.buckets.get(i).map_or(0, |(_, c)| *c);
            (*bound, count.saturating_sub(was))
        })
        .collect();
    Sample {
        at,
        requests,
        p50_ms: quantile(&buckets, 0.5),
        p99_ms: quantile(&buckets, 0.99),
        upstream_errors: rate(before.upstream_failures, now.upstream_failures),
        auth_failures: now.auth_failures.saturating_sub(before.auth_failures),
    }
}

/// The `q` quantile in milliseconds of cumulative `buckets` (upper bound in seconds, count),
/// interpolated inside its bucket as Prometheus's `histogram_quantile` does; a quantile in the
/// open last bucket is given as the last finite bound.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c)?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let inside = (count - lower.1) as f64;
            let share = if inside > 0.0 {
                (rank - lower.1 as f64) / inside
            } else {
                1.0
            };
            return Some((lower.0 + (bound - lower.0) * share) * 1000.0);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let buckets = [(0.001, 50), (0.01, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&buckets, 0.5), Some(1.0));
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 9.82).abs() < 0.01, "{p99}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(quantile(&[(0.5, 0), (f64::INFINITY, 4)], 0.5), Some(500.0));
    }

    #[test]
    fn the_ring_keeps_the_last_samples_as_rates() {
        let history = History::default();
        let reading = |n: u64| Reading {
            requests: vec![("forwarded", n)],
            buckets: vec![(0.001, n), (f64::INFINITY, n)],
            upstream_failures: n / 2,
            auth_failures: n / 4,
            accounts: vec![("acme/ingest".into(), n * 2)],
        };
        for i in 0..=(CAPACITY as u64 + 5) {
            history.record(reading(i * 4), i, Duration::from_secs(2));
        }
        let samples = history.samples();
        assert_eq!(samples.len(), CAPACITY);
        assert_eq!(samples[0].at, 6, "the oldest were dropped");
        let last = samples.last().unwrap();
        assert_eq!(last.requests, vec![("forwarded", 2.0)]);
        assert_eq!(last.upstream_errors, 1.0);
        assert_eq!(last.auth_failures, 1);
        assert_eq!(history.account_rate("acme/ingest"), Some(4.0));
        assert_eq!(history.account_rate("acme/other"), None);
        assert!(last.p50_ms.is_some());
    }
}
