//! The pace of a long piece of work (a journal replayed, a million tokens read from etcd, copied
//! or listed): when the next progress report is due, how fast the work goes and how long it
//! still takes. Whoever reports (the main log at start-up, a command's standard error) asks
//! only every few thousand items, so the clock is read rarely and nothing is formatted between
//! two reports.

use std::time::{Duration, Instant};

/// How often a long piece of work reports.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Milliseconds between two reports instead of [`DEFAULT_INTERVAL`]; `0` reports every time a
/// caller asks. For tests, which want a report without waiting; read here and nowhere else.
pub const INTERVAL_ENV: &str = "TOKENGATE_PROGRESS_INTERVAL_MS";

/// The interval between two reports: [`INTERVAL_ENV`] when it holds a number, else the default.
pub fn interval() -> Duration {
    std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

/// When a piece of work started and last reported.
#[derive(Debug)]
pub struct Pace {
    started: Instant,
    last: Instant,
    every: Duration,
}

/// How fast and how far: what a report says besides the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speed {
    /// Items (tokens, bytes) per second since the start.
    pub per_second: u64,
    /// Seconds still to go at that pace; `None` before any progress or without a total.
    pub left_s: Option<u64>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::every(interval())
    }
}

impl Pace {
    /// Starting now, reporting every `every`.
    pub fn every(every: Duration) -> Pace {
        let now = Instant::now();
        Pace {
            started: now,
            last: now,
            every,
        }
    }

    /// Whether a report is due now; if it is, the next one is due an interval later.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last) < self.every {
            return false;
        }
        self.last = now;
        true
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// `count` items handled so far, `done` of `total` (in whatever unit measures the whole,
    /// e.g. bytes of a journal while counting tokens).
    pub fn speed(&self, count: u64, done: u64, total: Option<u64>) -> Speed {
        speed(self.elapsed(), count, done, total)
    }
}

/// As [`Pace::speed`], after `elapsed`.
pub fn speed(elapsed: Duration, count: u64, done: u64, total: Option<u64>) -> Speed {
    let secs = elapsed.as_secs_f64();
    let per_second = if secs > 0.0 {
        (count as f64 / secs) as u64
    } else {
        0
    };
    // What is left goes as fast as what is done: the share still to do times the time taken.
    let left_s = match total {
        Some(total) if done > 0 && secs > 0.0 => {
            Some((secs * total.saturating_sub(done) as f64 / done as f64).round() as u64)
        }
        _ => None,
    };
    Speed { per_second, left_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_counts_per_second_and_time_left_from_the_share_done() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            speed(ten, 250_000, 250_000, Some(1_000_000)),
            Speed {
                per_second: 25_000,
                left_s: Some(30)
            }
        );
        // Tokens counted, bytes measured: a fifth of the bytes in 10 s leaves 40 s.
        assert_eq!(speed(ten, 1_000, 20, Some(100)).left_s, Some(40));
        assert_eq!(speed(ten, 0, 0, Some(5)).left_s, None);
        assert_eq!(speed(ten, 5, 5, None).left_s, None);
        assert_eq!(speed(Duration::ZERO, 5, 5, Some(10)).per_second, 0);
    }

    #[test]
    fn a_zero_interval_is_always_due_and_a_long_one_not_at_once() {
        let mut always = Pace::every(Duration::ZERO);
        assert!(always.due() && always.due());
        let mut rarely = Pace::every(Duration::from_secs(3600));
        assert!(!rarely.due());
    }
}
