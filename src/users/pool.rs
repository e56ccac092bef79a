//! The one place passwords are checked. bcrypt is slow by design, so anyone who can send Basic
//! credentials could make the gateway burn CPU; here that work is capped at a fixed number of
//! checks at once, with a bounded queue, and a check that finds the queue full is refused at
//! once instead of waiting.
//!
//! The answers that need no bcrypt (an unknown user, a failure already seen) go through the same
//! slots and last as long as a real check, so neither queueing nor latency tells them apart from
//! a wrong password, and they cost no CPU.
//!
//! Real checks run on tokio's blocking threads, never on the async workers, so a bearer request
//! never waits behind bcrypt; the semaphore keeps this pool's share of blocking threads at
//! `workers`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Recent verification times kept for imitations to draw from.
const SAMPLES: usize = 32;

/// Every slot and queue place is taken; the caller answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password verifications in progress")]
pub struct Busy;

/// A cheap-clone handle on the pool.
#[derive(Clone)]
pub struct PasswordPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// One permit per worker: checks running (or being imitated) now.
    running: Arc<Semaphore>,
    /// Running plus waiting: a check that finds none left is refused.
    admitted: Arc<Semaphore>,
    /// Durations of recent real checks, which imitations reproduce.
    timings: Mutex<Timings>,
    #[cfg(test)]
    counts: counts::Counts,
}

/// Both permits a check holds until it is done, wherever it finishes.
struct Slot {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl PasswordPool {
    /// A pool running at most `workers` checks (at least 1), with at most `queue` waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = workers.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        PasswordPool {
            inner: Arc::new(Inner {
                running: Arc::new(Semaphore::new(workers)),
                admitted: Arc::new(Semaphore::new(admitted)),
                timings: Mutex::new(Timings::default()),
                #[cfg(test)]
                counts: counts::Counts::default(),
            }),
        }
    }

    /// Whether `password` matches the bcrypt `hash`, checked on a blocking thread.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, Busy> {
        let slot = self.admit().await?;
        #[cfg(test)]
        self.inner.counts.verified();
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let ok = self
            .timed(slot, move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await;
        Ok(ok.unwrap_or(false))
    }

    /// Takes a slot for as long as a check of the realm's passwords takes, without checking
    /// anything. Before any real check was timed, it times one bcrypt hash at `cost` instead
    /// (once, as a real check would cost).
    pub async fn imitate(&self, cost: u32) -> Result<(), Busy> {
        let slot = self.admit().await?;
        #[cfg(test)]
        self.inner.counts.imitated();
        match self.sample() {
            Some(duration) => {
                tokio::time::sleep(duration).await;
                drop(slot);
            }
            None => {
                let mut password = [0u8; 16];
                OsRng.fill_bytes(&mut password);
                self.timed(slot, move || bcrypt::hash(password, cost).is_ok())
                    .await;
            }
        }
        Ok(())
    }

    /// A place in the queue, then a worker's slot. Refused at once when the queue is full.
    async fn admit(&self) -> Result<Slot, Busy> {
        let admitted = Arc::clone(&self.inner.admitted)
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        // The semaphore is never closed; were it, refusing is the safe answer.
        let running = Arc::clone(&self.inner.running)
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        Ok(Slot {
            _admitted: admitted,
            _running: running,
        })
    }

    /// Runs `job` on a blocking thread holding `slot` until it returns (also when the request
    /// waiting for it is gone), and records how long it took. `None` if the job panicked.
    async fn timed<T: Send + 'static>(
        &self,
        slot: Slot,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let inner = Arc::clone(&self.inner);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let out = job();
            inner.record(started.elapsed());
            drop(slot);
            out
        })
        .await
        .ok()
    }

    /// A recent real check's duration, at random, so imitations have the same spread.
    fn sample(&self) -> Option<Duration> {
        let timings = self.inner.timings.lock().unwrap_or_else(|e| e.into_inner());
        let len = timings.len.min(SAMPLES);
        (len > 0)
            .then(|| {
                timings
                    .samples
                    .get(rand::thread_rng().gen_range(0..len))
                    .copied()
            })
            .flatten()
    }

    /// What the pool did: (real verifications, imitations).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.inner.counts.get()
    }

    /// Runs any `job` through the pool's admission, as a check would (to stall it in tests).
    #[cfg(test)]
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = self.admit().await?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(slot);
            out
        })
        .await
        .map_err(|_| Busy)
    }
}

impl Inner {
    fn record(&self, duration: Duration) {
        let mut timings = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        timings.push(duration);
    }
}

/// A ring of the last [`SAMPLES`] check durations.
#[derive(Default)]
struct Timings {
    samples: [Duration; SAMPLES],
    len: usize,
    next: usize,
}

impl Timings {
    fn push(&mut self, duration: Duration) {
        if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = duration;
        }
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
    }
}

#[cfg(test)]
mod counts {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the pool did, for tests to observe without timing anything.
    #[derive(Default)]
    pub(super) struct Counts {
        verified: AtomicUsize,
        imitated: AtomicUsize,
    }

    impl Counts {
        pub(super) fn verified(&self) {
            self.verified.fetch_add(1, Ordering::SeqCst);
        }
        pub(super) fn imitated(&self) {
            self.imitated.fetch_add(1, Ordering::SeqCst);
        }
        pub(super) fn get(&self) -> (usize, usize) {
            (
                self.verified.load(Ordering::SeqCst),
                self.imitated.load(Ordering::SeqCst),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use tokio::sync::oneshot;

    use super::*;

    /// A cheap hash of "secret" (cost 4), so the real checks here are quick.
    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_reopens_when_the_stalled_job_ends() {
        let pool = PasswordPool::new(1, 1);
        let hash = hash();
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let stalled = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    release_rx.recv().is_ok()
                })
                .await
            }
        });
        started_rx.await.unwrap();
        // The one queue place: admitted, waiting for the worker the stalled job holds.
        let queued = pool.verify("secret", &hash);
        tokio::pin!(queued);
        assert!(futures_util::poll!(&mut queued).is_pending());
        // Nothing left: refused without waiting, real check and imitation alike.
        assert_eq!(pool.verify("secret", &hash).await, Err(Busy));
        assert_eq!(pool.imitate(4).await, Err(Busy));
        assert_eq!(pool.counts(), (0, 0));

        release_tx.send(()).unwrap();
        assert_eq!(stalled.await.unwrap(), Ok(true));
        assert_eq!(queued.await, Ok(true));
        assert_eq!(pool.verify("wrong", &hash).await, Ok(false));
        assert_eq!(pool.counts(), (2, 0));
    }

    #[tokio::test]
    async fn imitations_wait_in_the_same_slots_and_calibrate_once() {
        let pool = PasswordPool::new(1, 0);
        // Nothing timed yet: the first imitation times one bcrypt of the realm's cost.
        assert_eq!(pool.sample(), None);
        pool.imitate(4).await.unwrap();
        assert!(pool.sample().is_some());
        pool.imitate(4).await.unwrap();
        assert_eq!(pool.counts(), (0, 2));

        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let stalled = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    release_rx.recv().is_ok()
                })
                .await
            }
        });
        started_rx.await.unwrap();
        assert_eq!(pool.imitate(4).await, Err(Busy));
        release_tx.send(()).unwrap();
        assert_eq!(stalled.await.unwrap(), Ok(true));
        pool.imitate(4).await.unwrap();
    }

    #[test]
    fn timings_keep_the_most_recent_samples() {
        let mut timings = Timings::default();
        for ms in 0..(SAMPLES as u64 + 3) {
            timings.push(Duration::from_millis(ms));
        }
        assert_eq!(timings.len, SAMPLES);
        assert!(!timings.samples.contains(&Duration::from_millis(2)));
        assert!(timings
            .samples
            .contains(&Duration::from_millis(SAMPLES as u64 + 2)));
    }
}
