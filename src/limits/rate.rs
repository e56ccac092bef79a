//! A request rate with a burst, as one atomic: the generic cell rate algorithm (GCRA).
//!
//! A token bucket needs a count and a time updated together; GCRA keeps only the time at
//! which the bucket would be full again (the "theoretical arrival time"), so a check is a load
//! and a compare-and-swap, with no lock and no background refill.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One account's rate. Its parameters are atomics so a reload changes them in place while
/// requests check against it.
#[derive(Debug, Default)]
pub struct RateLimit {
    /// When, in nanoseconds on the limits' clock, the bucket is full again.
    tat: AtomicU64,
    /// Nanoseconds between requests at the configured rate; 0: no rate limit.
    interval: AtomicU64,
    /// Requests that may come at once.
    burst: AtomicU32,
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; `remaining` more would be now, and the bucket is full again in `reset`
    /// nanoseconds.
    Allowed { remaining: u32, reset: u64 },
    /// Over the rate: the next request is admitted in `retry_after` nanoseconds.
    Refused { retry_after: u64 },
}

impl RateLimit {
    /// Sets the rate (`interval` nanoseconds apart; 0 for none) and the burst.
    pub fn configure(&self, interval: u64, burst: u32) {
        self.interval.store(interval, Ordering::Relaxed);
        self.burst.store(burst.max(1), Ordering::Relaxed);
    }

    /// The burst, as configured.
    pub fn burst(&self) -> u32 {
        self.burst.load(Ordering::Relaxed)
    }

    /// One request at `now`, when `share` gateways divide the rate: each admits one in
    /// `share` of the account's requests, and holds one in `share` of its burst.
    /// `now` is asked only when there is a rate to check: most accounts have none, and a clock
    /// read costs about 45 ns on a VM.
    pub fn check(&self, now: impl FnOnce() -> u64, share: u32) -> Verdict {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == 0 {
            return Verdict::Allowed {
                remaining: u32::MAX,
                reset: 0,
            };
        }
        let now = now();
        let share = share.max(1);
        let interval = interval.saturating_mul(u64::from(share));
        let burst = u64::from((self.burst.load(Ordering::Relaxed) / share).max(1));
        // How far ahead of now the bucket's time may run: the burst less the request itself.
        let tolerance = interval.saturating_mul(burst - 1);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > tolerance {
                return Verdict::Refused {
                    retry_after: ahead - tolerance,
                };
            }
            let next = start.saturating_add(interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let remaining = (tolerance - ahead) / interval;
                    return Verdict::Allowed {
                        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                        reset: next - now,
                    };
                }
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn admitted(rate: &RateLimit, now: u64, share: u32) -> bool {
        matches!(rate.check(|| now, share), Verdict::Allowed { .. })
    }

    #[test]
    fn without_a_rate_the_clock_is_not_read() {
        let rate = RateLimit::default();
        let verdict = rate.check(|| panic!("the clock was read"), 1);
        assert!(matches!(verdict, Verdict::Allowed { .. }));
        rate.configure(SECOND, 1);
        let mut read = false;
        rate.check(
            || {
                read = true;
                5 * SECOND
            },
            1,
        );
        assert!(read, "a rate is checked against the clock");
    }

    #[test]
    fn a_burst_then_the_rate() {
        let rate = RateLimit::default();
        // 10/s with a burst of 5.
        rate.configure(SECOND / 10, 5);
        let now = 1000 * SECOND;
        let mut remaining = Vec::new();
        for _ in 0..5 {
            match rate.check(|| now, 1) {
                Verdict::Allowed { remaining: r, .. } => remaining.push(r),
                refused => panic!("{refused:?}"),
            }
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        assert_eq!(
            rate.check(|| now, 1),
            Verdict::Refused {
                retry_after: SECOND / 10
            }
        );
        // A tenth of a second later, one more; a second later, the whole burst again.
        assert!(admitted(&rate, now + SECOND / 10, 1));
        assert!(!admitted(&rate, now + SECOND / 10, 1));
        let later = now + 2 * SECOND;
        assert_eq!((0..6).filter(|_| admitted(&rate, later, 1)).count(), 5);
    }

    #[test]
    fn over_a_second_the_rate_is_what_was_configured() {
        let rate = RateLimit::default();
        rate.configure(SECOND / 200, 1);
        let start = 5 * SECOND;
        // A client asking every millisecond for one second gets 200.
        let got = (0..1000)
            .filter(|ms| admitted(&rate, start + ms * SECOND / 1000, 1))
            .count();
        assert_eq!(got, 200);
    }

    #[test]
    fn replicas_divide_the_rate_and_the_burst() {
        let rate = RateLimit::default();
        rate.configure(SECOND / 100, 100);
        let now = 10 * SECOND;
        // Four gateways: each holds a quarter of the burst...
        assert_eq!((0..100).filter(|_| admitted(&rate, now, 4)).count(), 25);
        // ...and refills at a quarter of the rate.
        let got = (1..=1000)
            .filter(|ms| admitted(&rate, now + ms * SECOND / 1000, 4))
            .count();
        assert_eq!(got, 25);
    }

    #[test]
    fn no_rate_admits_everything() {
        let rate = RateLimit::default();
        assert!((0..1000).all(|_| admitted(&rate, 0, 1)));
    }
}
