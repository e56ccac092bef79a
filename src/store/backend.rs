//! The seam between the in-memory token set and what makes a change durable.
//!
//! Checking a token never crosses it: every backend applies its changes to the same
//! [`Maps`](super::maps::Maps), and the per-request check reads only those. A backend answers
//! for two things: that a change acknowledged to a caller survives (journal fsync, etcd commit),
//! and that every change, whoever made it, reaches the maps.

use std::fs;
use std::sync::{Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::writer::{Op, Reply, Request};
use super::StoreError;

/// Where changes go. Both hand ops to a thread of their own and await its answer, so a request
/// handler never blocks on a disk or a network.
pub(crate) enum Backend {
    Journal(Journal),
    #[cfg(feature = "etcd")]
    Etcd(super::etcd::Etcd),
}

impl Backend {
    /// Per op, whether it changed anything: `false` for a put of a name that exists, or a delete
    /// of one that does not.
    /// `queued` runs once the ops are handed to the backend's thread.
    pub async fn submit(&self, ops: Vec<Op>, queued: impl FnOnce()) -> Reply {
        match self {
            Backend::Journal(journal) => {
                journal
                    .worker
                    .call(|reply| Request { ops, reply }, queued)
                    .await
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => etcd.submit(ops, queued).await,
        }
    }

    /// How long since the maps were last known to hold every change; `None` when they always
    /// do (the journal is their only writer).
    pub fn staleness(&self) -> Option<Duration> {
        match self {
            Backend::Journal(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => Some(etcd.staleness()),
        }
    }

    /// Lets queued callers have their answer, then stops the backend's thread. Idempotent.
    pub fn close(&self) {
        match self {
            Backend::Journal(journal) => journal.close(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => etcd.close(),
        }
    }
}

/// Changes that may wait for a backend's thread at once. Each carries a whole batch (a create,
/// a delete, an import), so this is far above what a gateway has in flight while its disk or
/// etcd keeps up; it bounds the memory a backend that stopped answering (a hung etcd) can make
/// callers pile up.
pub(crate) const QUEUE: usize = 1024;
/// How long a change waits for room in a full queue before its caller gets 503.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A backend thread fed through a bounded channel: dropping the sender is what tells it to
/// finish.
pub(crate) struct Worker<R> {
    pub tx: RwLock<Option<mpsc::Sender<R>>>,
    pub thread: Mutex<Option<JoinHandle<()>>>,
}

/// The channel a [`Worker`]'s thread reads.
pub(crate) fn queue<R>() -> (mpsc::Sender<R>, mpsc::Receiver<R>) {
    mpsc::channel(QUEUE)
}

impl<R> Worker<R> {
    pub fn new(tx: mpsc::Sender<R>, thread: JoinHandle<()>) -> Self {
        Worker {
            tx: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Sends a request and awaits its reply; a dropped reply means the thread died without
    /// answering. A full queue is waited on for [`QUEUE_WAIT`], then refused as busy. A caller
    /// dropped while it waits takes nothing from the queue; once queued, the change is made
    /// whether or not anyone still waits for its answer.
    pub async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Reply>) -> R,
        queued: impl FnOnce(),
    ) -> Reply {
        let tx = self
            .tx
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)?;
        let room = match tx.try_reserve() {
            Ok(room) => room,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(StoreError::Closed),
            Err(mpsc::error::TrySendError::Full(())) => {
                tokio::time::timeout(QUEUE_WAIT, tx.reserve())
                    .await
                    .map_err(|_| StoreError::Busy)?
                    .map_err(|_| StoreError::Closed)?
            }
        };
        let (reply, answer) = oneshot::channel();
        room.send(make(reply));
        queued();
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Closes the channel and joins the thread; `false` when the thread panicked.
    pub fn stop(&self) -> bool {
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        thread.is_none_or(|thread| thread.join().is_ok())
    }
}

/// The local journal: the group-commit writer thread and the data directory's lock.
pub(crate) struct Journal {
    pub worker: Worker<Request>,
    pub path: std::path::PathBuf,
    /// Holds an exclusive lock on the data directory for the store's lifetime: two writers
    /// appending to one journal would corrupt it. Released by `close`, after the writer has
    /// finished, so the directory can be reopened.
    pub lock: Mutex<Option<fs::File>>,
}

impl Journal {
    fn close(&self) {
        // Joining ensures the file is released before a reopen of the same dir.
        if !self.worker.stop() {
            tracing::error!(file = %self.path.display(), "token journal writer thread panicked");
        }
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker whose thread never reads its queue of `capacity`, as a backend stuck on a hung
    /// etcd; the receiver is handed back so the test can read it.
    fn stuck(
        capacity: usize,
    ) -> (
        Worker<oneshot::Sender<Reply>>,
        mpsc::Receiver<oneshot::Sender<Reply>>,
    ) {
        let (tx, rx) = mpsc::channel(capacity);
        let thread = std::thread::spawn(|| {});
        (Worker::new(tx, thread), rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_is_waited_on_then_refused_as_busy() {
        let (worker, mut rx) = stuck(1);
        let first = worker.call(|reply| reply, || {});
        tokio::pin!(first);
        assert!(
            futures_util::poll!(&mut first).is_pending(),
            "queued, awaiting its answer"
        );
        let started = tokio::time::Instant::now();
        let refused = worker.call(|reply| reply, || {}).await;
        assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
        assert_eq!(started.elapsed(), QUEUE_WAIT);
        // Room again: a waiting change gets in, and every answer reaches its caller.
        let second = worker.call(|reply| reply, || {});
        tokio::pin!(second);
        assert!(futures_util::poll!(&mut second).is_pending());
        rx.recv().await.unwrap().send(Ok(vec![true])).unwrap();
        assert_eq!(first.await.unwrap(), vec![true]);
        assert!(futures_util::poll!(&mut second).is_pending());
        rx.recv().await.unwrap().send(Ok(vec![false])).unwrap();
        assert_eq!(second.await.unwrap(), vec![false]);
        assert!(worker.stop());
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_dropped_while_waiting_for_room_takes_no_place() {
        let (worker, mut rx) = stuck(1);
        let first = worker.call(|reply| reply, || {});
        tokio::pin!(first);
        assert!(futures_util::poll!(&mut first).is_pending());
        let mut gone = Box::pin(worker.call(|reply| reply, || {}));
        assert!(futures_util::poll!(&mut gone).is_pending());
        drop(gone);
        rx.recv().await.unwrap().send(Ok(vec![true])).unwrap();
        assert_eq!(first.await.unwrap(), vec![true]);
        assert!(
            rx.try_recv().is_err(),
            "the dropped caller's change was queued"
        );
    }
}
