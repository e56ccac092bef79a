//! The gateway's background tasks (file watchers and the like): one set, one cancellation.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long stopping waits for cancelled tasks to finish: they stop at their next await point,
/// so this bounds only a task stuck in blocking code.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Background tasks of a running gateway; stopped together by [`Tasks::stop`].
pub struct Tasks {
    cancel: CancellationToken,
    set: JoinSet<()>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            cancel: CancellationToken::new(),
            set: JoinSet::new(),
        }
    }
}

impl Tasks {
    /// Runs `task` until it ends or the set is stopped; `name` is for the logs.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.set.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => tracing::debug!(task = name, "task stopped"),
                () = task => tracing::debug!(task = name, "task ended"),
            }
        });
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Cancels every task and waits for them to finish.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_DEADLINE, all).await.is_err() {
            tracing::warn!(deadline = ?STOP_DEADLINE, "background tasks did not stop in time; aborted");
            self.set.abort_all();
        }
    }
}

/// A watcher's loop: `step(false)` every `interval`, `step(true)` whenever `hangups` changes
/// (SIGHUP), forever. For quick in-memory steps (sweeping a table), run in place.
pub async fn every(
    interval: Duration,
    hangups: watch::Receiver<u64>,
    mut step: impl FnMut(bool) + Send,
) {
    let mut ticks = Ticks::new(interval, hangups);
    loop {
        step(ticks.next().await);
    }
}

/// As [`every`], for steps that read files (the users, the `service_tokens` file, a
/// certificate): each runs on the blocking pool, never on a runtime worker that requests need;
/// the loop waits for one step before the next.
pub async fn every_blocking(
    interval: Duration,
    hangups: watch::Receiver<u64>,
    step: impl Fn(bool) + Send + Sync + 'static,
) {
    let step = std::sync::Arc::new(step);
    let mut ticks = Ticks::new(interval, hangups);
    loop {
        let forced = ticks.next().await;
        let step = std::sync::Arc::clone(&step);
        if tokio::task::spawn_blocking(move || step(forced))
            .await
            .is_err()
        {
            tracing::error!("a background step failed");
        }
    }
}

/// When a watcher's step is due: on its interval, and on every SIGHUP.
struct Ticks {
    ticker: tokio::time::Interval,
    hangups: watch::Receiver<u64>,
    /// Whether SIGHUPs can still come (their sender may be gone).
    signals: bool,
}

impl Ticks {
    fn new(interval: Duration, hangups: watch::Receiver<u64>) -> Self {
        // The first step one interval from now: the state was just loaded.
        let first = tokio::time::Instant::now() + interval;
        let mut ticker = tokio::time::interval_at(first, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticks {
            ticker,
            hangups,
            signals: true,
        }
    }

    /// The next step's `forced`: `true` for a SIGHUP.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => false,
            changed = self.hangups.changed(), if self.signals => {
                // A gone sender never changes again; keep the timer alone.
                self.signals = changed.is_ok();
                self.signals
            }
        }
    }
}
