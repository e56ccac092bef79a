//! Wake-ups of a connection task's side futures (its timer, its close signal), told apart from
//! the connection's own.
//!
//! A connection's task wakes several times per request: bytes from the client, the upstream's
//! answer, room to write. Polling the timer and the close signal on each of those wake-ups
//! cost more than the rest of the task's own work per request, and they are rarely the reason
//! the task woke. They get a waker of their own, which notes that one of them woke before it
//! wakes the task, and they are polled only then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// The side futures' waker, and whether it was woken since they were last polled.
pub(super) struct SideWakes {
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    woken: AtomicBool,
    /// The connection task, woken in turn.
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl SideWakes {
    /// The side futures are polled on the first call.
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&shared));
        SideWakes { shared, waker }
    }

    /// Calls `poll` (which polls the side futures with the context it is given) when one of them
    /// woke since the last call, or was [rearmed](Self::rearm); else `Pending`. After `Ready`,
    /// the next call polls them again: one that woke together with the one that finished has
    /// not been polled yet.
    pub(super) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // Registered before the flag is read: a wake-up between the two wakes the task again.
        self.shared.task.register(cx.waker());
        if !self.shared.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        let ready = poll(&mut Context::from_waker(&self.waker));
        if ready.is_ready() {
            self.rearm();
        }
        ready
    }

    /// The side futures are polled on the next call: one of them changed (a timer was reset)
    /// and has to register its new wake-up.
    pub(super) fn rearm(&self) {
        self.shared.woken.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the task's wake-ups.
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn side_futures_are_polled_first_then_only_after_they_woke() {
        let task = Arc::new(Task(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        let sides = SideWakes::new();
        let side_waker = std::cell::RefCell::new(None::<Waker>);
        let polls = std::cell::Cell::new(0);
        let poll = |cx: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            *side_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };
        assert!(sides.poll(&mut cx, poll).is_pending());
        assert!(sides.poll(&mut cx, poll).is_pending());
        assert_eq!(polls.get(), 1, "not woken: not polled again");
        let Some(side) = side_waker.borrow_mut().take() else {
            panic!("the side future saw no waker");
        };
        side.wake();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the task is woken in turn"
        );
        assert!(sides.poll(&mut cx, poll).is_pending());
        assert_eq!(polls.get(), 2, "woken: polled");
        sides.rearm();
        assert!(sides.poll(&mut cx, poll).is_pending());
        assert_eq!(polls.get(), 3, "rearmed: polled");
    }

    #[test]
    fn after_ready_the_side_futures_are_polled_again() {
        let task_waker = Waker::from(Arc::new(Task(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&task_waker);
        let sides = SideWakes::new();
        assert!(sides.poll(&mut cx, |_| Poll::Ready(())).is_ready());
        let mut polled = false;
        let _ = sides.poll(&mut cx, |_| {
            polled = true;
            Poll::<()>::Pending
        });
        assert!(polled);
    }
}
