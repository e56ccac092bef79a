//! A backend's thread and the bounded queue that feeds it: the journal writer and the etcd
//! client each run on a thread of their own, and request handlers hand them changes here and
//! await the answer, never blocking on a disk or a network.

use std::sync::{Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::writer::Reply;
use super::StoreError;

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
        // Room now is taken without a timer: no timer entry per change, and the command line's
        // runtimes, built without a time driver, never wait here.
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
