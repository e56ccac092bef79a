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
/// (SIGHUP), forever. Steps read files and sweep tables, so each runs on the blocking pool,
/// never on a runtime worker that requests need; the loop waits for one step before the next.
pub async fn every(
    interval: Duration,
    mut hangups: watch::Receiver<u64>,
    step: impl Fn(bool) + Send + Sync + 'static,
) {
    let step = std::sync::Arc::new(step);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate and the state was just loaded.
    ticker.tick().await;
    let mut signals = true;
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            changed = hangups.changed(), if signals => {
                // A gone sender never changes again; keep the timer alone.
                signals = changed.is_ok();
                signals
            }
        };
        let step = std::sync::Arc::clone(&step);
        if tokio::task::spawn_blocking(move || step(forced))
            .await
            .is_err()
        {
            tracing::error!("a background step failed");
        }
    }
}
