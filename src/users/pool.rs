//! The one place passwords are checked. bcrypt is slow by design, so anyone who can send Basic
//! credentials could make the gateway burn CPU; here that work is capped at a fixed number of
//! checks at once, with a bounded queue, and a check that finds the queue full is refused at
//! once instead of waiting.
//!
//! The answers that need no bcrypt (an unknown user, a failure already seen) go through the same
//! slots and last as long as a real check does now, so neither queueing nor latency tells them
//! apart from a wrong password, and they cost no CPU.
//!
//! Checks run on threads of their own, never on the async workers, under Linux's `SCHED_IDLE`
//! policy (elsewhere: the lowest priority): they use only CPU nothing else wants, and any
//! waking async worker preempts them at once, where a merely niced thread keeps the core for
//! the rest of its slice (a loopback flood measured a valid client's p99 at 4.5× quiet with
//! nice 19). A bearer request never waits behind bcrypt, not even for a core. The price is that
//! on a core saturated by proxied traffic, password checks crawl and the bounded queue refuses
//! the excess; the proxy path is what the gateway is for.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use thread_priority::ThreadPriority;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Recent check durations kept for imitations to draw from.
const SAMPLES: usize = 32;
/// How long a timed check stands for the ones to come. How long bcrypt takes depends on what
/// else the machine is doing, so an old sample (taken under a flood, say) would make
/// imitations stand out once it is over; with none this fresh, an imitation times a real hash
/// again, which bounds that CPU to one hash per worker per this interval.
const FRESH: Duration = Duration::from_secs(5);

/// How late tokio's timer wakes a sleeper: it fires on whole milliseconds after the deadline.
/// Imitations sleep this much less, so they end when a real check would (a loopback probe
/// measured imitations 1.1–1.5 ms longer than wrong passwords without it).
const TIMER_LATENESS: Duration = Duration::from_millis(1);

/// Every slot and queue place is taken; the caller answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password verifications in progress")]
pub struct Busy;

/// A cheap-clone handle on the pool. Its threads end when the last handle is dropped.
#[derive(Clone)]
pub struct PasswordPool {
    inner: Arc<Inner>,
}

type Job = Box<dyn FnOnce() + Send>;

struct Inner {
    /// One permit per worker thread: checks running (or being imitated) now.
    running: Arc<Semaphore>,
    /// Running plus waiting: a check that finds none left is refused.
    admitted: Arc<Semaphore>,
    /// The permits `admitted` started with.
    capacity: usize,
    /// To the worker threads. A job holds its slot until it has run, so no more than
    /// `workers` jobs are ever in here or running, and sending never blocks.
    jobs: SyncSender<Job>,
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
    /// A pool of `workers` threads (at least 1), with at most `queue` checks waiting.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = workers.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        let (jobs, receiver) = mpsc::sync_channel::<Job>(workers);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..workers {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(PasswordPool {
            inner: Arc::new(Inner {
                running: Arc::new(Semaphore::new(workers)),
                admitted: Arc::new(Semaphore::new(admitted)),
                capacity: admitted,
                jobs,
                timings: Mutex::new(Timings::default()),
                #[cfg(test)]
                counts: counts::Counts::default(),
            }),
        })
    }

    /// Whether `password` matches the bcrypt `hash`.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, Busy> {
        let slot = self.admit().await?;
        #[cfg(test)]
        self.inner.counts.verified();
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let job = move || bcrypt::verify(password, &hash).unwrap_or(false);
        Ok(self.on_worker(slot, true, job).await?.unwrap_or(false))
    }

    /// Runs another slow credential check (a file service token's stored hash) in the same
    /// slots. Untimed: its cost is not bcrypt's, so it must not set how long imitations last.
    pub async fn check(&self, job: impl FnOnce() -> bool + Send + 'static) -> Result<bool, Busy> {
        let slot = self.admit().await?;
        #[cfg(test)]
        self.inner.counts.verified();
        Ok(self.on_worker(slot, false, job).await?.unwrap_or(false))
    }

    /// Takes a slot for as long as a check of the realm's passwords takes now, without
    /// checking anything. With no fresh timing, it times one bcrypt hash at `cost` instead.
    pub async fn imitate(&self, cost: u32) -> Result<(), Busy> {
        let slot = self.admit().await?;
        #[cfg(test)]
        self.inner.counts.imitated();
        match self.sample() {
            Some(duration) => {
                tokio::time::sleep(duration.saturating_sub(TIMER_LATENESS)).await;
                drop(slot);
            }
            None => {
                let mut password = [0u8; 16];
                OsRng.fill_bytes(&mut password);
                let job = move || bcrypt::hash(password, cost).is_ok();
                self.on_worker(slot, true, job).await?;
            }
        }
        Ok(())
    }

    /// Checks admitted now: running on a worker or waiting for one.
    pub fn in_use(&self) -> usize {
        self.inner.capacity - self.inner.admitted.available_permits()
    }

    /// Checks admitted at most (workers plus queue): past it, checks are refused.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
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

    /// Runs `job` on a worker thread, which holds `slot` until the job is done (also when the
    /// request waiting for it is gone), and records how long it took when `timed`. `Ok(None)`
    /// if the job panicked.
    async fn on_worker<T: Send + 'static>(
        &self,
        slot: Slot,
        timed: bool,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let (reply, outcome) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let started = Instant::now();
        let job: Job = Box::new(move || {
            let out = job();
            if timed {
                inner.record(started.elapsed());
            }
            drop(slot);
            let _ = reply.send(out);
        });
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(outcome.await.ok()),
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("password threads are gone; password checks refused");
                Err(Busy)
            }
        }
    }

    /// A fresh check duration, at random, so imitations have the spread real checks have.
    fn sample(&self) -> Option<Duration> {
        let timings = self.inner.timings.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = timings.fresh();
        let count = fresh.clone().count();
        if count == 0 {
            return None;
        }
        fresh.nth(rand::thread_rng().gen_range(0..count))
    }

    /// What the pool did: (real verifications, imitations).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.inner.counts.get()
    }

    /// Runs any `job` through the pool as a check would, untimed (to stall it in tests).
    #[cfg(test)]
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = self.admit().await?;
        self.on_worker(slot, false, job).await?.ok_or(Busy)
    }
}

/// A worker thread: idle priority, then jobs until the pool is gone. A panicking job is
/// contained, so the pool never loses a thread.
fn work(jobs: &Mutex<Receiver<Job>>) {
    if let Err(error) = idle_priority() {
        tracing::warn!(?error, "password thread keeps normal priority");
    }
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.recv()
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password check panicked");
        }
    }
}

#[cfg(target_os = "linux")]
fn idle_priority() -> Result<(), thread_priority::Error> {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
}

#[cfg(not(target_os = "linux"))]
fn idle_priority() -> Result<(), thread_priority::Error> {
    thread_priority::set_current_thread_priority(ThreadPriority::Min)
}

impl Inner {
    fn record(&self, duration: Duration) {
        let mut timings = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        timings.push(duration, Instant::now());
    }
}

/// A ring of the last [`SAMPLES`] check durations, with when each was taken.
#[derive(Default)]
struct Timings {
    samples: [Option<(Duration, Instant)>; SAMPLES],
    next: usize,
}

impl Timings {
    fn push(&mut self, duration: Duration, at: Instant) {
        if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = Some((duration, at));
        }
        self.next = (self.next + 1) % SAMPLES;
    }

    /// Durations taken within [`FRESH`].
    fn fresh(&self) -> impl Iterator<Item = Duration> + Clone + '_ {
        self.samples
            .iter()
            .flatten()
            .filter(|(_, at)| at.elapsed() < FRESH)
            .map(|(duration, _)| *duration)
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

/// A job that holds a worker until released, for tests that need the pool busy.
#[cfg(test)]
pub(super) struct Stalled;

#[cfg(test)]
impl Stalled {
    /// Starts the job on `pool` and returns once a worker runs it.
    pub(super) async fn start(
        pool: &PasswordPool,
    ) -> (
        tokio::task::JoinHandle<Result<bool, Busy>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
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
        (stalled, release_tx)
    }

    /// Lets the job finish; its outcome.
    pub(super) async fn release(
        stalled: tokio::task::JoinHandle<Result<bool, Busy>>,
        release: std::sync::mpsc::Sender<()>,
    ) -> Result<bool, Busy> {
        release.send(()).unwrap();
        stalled.await.unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap hash of "secret" (cost 4), so the real checks here are quick.
    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_reopens_when_the_stalled_job_ends() {
        let pool = PasswordPool::new(1, 1).unwrap();
        let hash = hash();
        let (stalled, release_tx) = Stalled::start(&pool).await;
        // The one queue place: admitted, waiting for the worker the stalled job holds.
        let queued = pool.verify("secret", &hash);
        tokio::pin!(queued);
        assert!(futures_util::poll!(&mut queued).is_pending());
        // Nothing left: refused without waiting, real check and imitation alike.
        assert_eq!(pool.verify("secret", &hash).await, Err(Busy));
        assert_eq!(pool.imitate(4).await, Err(Busy));
        assert_eq!(pool.counts(), (0, 0));

        assert_eq!(Stalled::release(stalled, release_tx).await, Ok(true));
        assert_eq!(queued.await, Ok(true));
        assert_eq!(pool.verify("wrong", &hash).await, Ok(false));
        assert_eq!(pool.counts(), (2, 0));
    }

    #[tokio::test]
    async fn imitations_wait_in_the_same_slots_and_calibrate_once() {
        let pool = PasswordPool::new(1, 0).unwrap();
        // Nothing timed yet: the first imitation times one bcrypt of the realm's cost.
        assert_eq!(pool.sample(), None);
        pool.imitate(4).await.unwrap();
        assert!(pool.sample().is_some());
        pool.imitate(4).await.unwrap();
        assert_eq!(pool.counts(), (0, 2));

        let (stalled, release_tx) = Stalled::start(&pool).await;
        assert_eq!(pool.imitate(4).await, Err(Busy));
        assert_eq!(Stalled::release(stalled, release_tx).await, Ok(true));
        pool.imitate(4).await.unwrap();
    }

    #[test]
    fn timings_keep_the_most_recent_fresh_samples() {
        let mut timings = Timings::default();
        let now = Instant::now();
        for ms in 0..(SAMPLES as u64 + 3) {
            timings.push(Duration::from_millis(ms), now);
        }
        let fresh: Vec<Duration> = timings.fresh().collect();
        assert_eq!(fresh.len(), SAMPLES);
        assert!(!fresh.contains(&Duration::from_millis(2)));
        assert!(fresh.contains(&Duration::from_millis(SAMPLES as u64 + 2)));
        if let Some(stale) = now.checked_sub(FRESH) {
            let mut timings = Timings::default();
            timings.push(Duration::from_millis(80), stale);
            assert_eq!(
                timings.fresh().count(),
                0,
                "a stale sample stands for nothing"
            );
        }
    }

    #[tokio::test]
    async fn a_panicking_job_costs_neither_a_thread_nor_a_slot() {
        let pool = PasswordPool::new(1, 0).unwrap();
        assert_eq!(pool.run(|| -> bool { panic!("boom") }).await, Err(Busy));
        assert_eq!(pool.run(|| true).await, Ok(true));
    }
}
