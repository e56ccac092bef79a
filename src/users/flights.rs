//! Checks of one user+password pair that arrive together share one check: a client whose
//! connection pool opens with the same credentials on every connection, or a burst of replays,
//! costs one bcrypt and one pool slot, not one each (which would also fill the queue and turn
//! the rest into 429s).
//!
//! Pairs are keyed by the failure cache's salted digest, never by the password.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::failures::Key;
use super::pool::Busy;

type Outcome = Result<bool, Busy>;

/// Checks in progress, by pair.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<Key, Arc<OnceCell<Outcome>>>>,
}

impl Flights {
    /// The outcome of `check` for `key`, run once for all callers that arrive while it runs.
    /// If the caller running it goes away, one of the waiting callers runs its own.
    pub(crate) async fn share<F>(&self, key: Key, check: F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let flight = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(running.entry(key).or_default())
        };
        let outcome = *flight.get_or_init(|| check).await;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            running.remove(&key);
        }
        outcome
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn callers_arriving_together_share_one_check() {
        let flights = Flights::default();
        let (release, released) = oneshot::channel::<()>();
        let first = flights.share([1; 32], async {
            released.await.unwrap();
            Ok(true)
        });
        let second = flights.share([1; 32], async { unreachable!("shared, never run") });
        let other = flights.share([2; 32], async { Ok(false) });
        tokio::pin!(first, second);
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        assert_eq!(flights.len(), 1);
        assert_eq!(other.await, Ok(false));
        release.send(()).unwrap();
        assert_eq!(first.await, Ok(true));
        assert_eq!(second.await, Ok(true));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_caller_gone_hands_the_check_to_a_waiting_one() {
        let flights = Flights::default();
        // Boxed, so dropping it really cancels it.
        let mut gone = Box::pin(flights.share([1; 32], std::future::pending()));
        let waiting = flights.share([1; 32], async { Ok(false) });
        tokio::pin!(waiting);
        assert!(futures_util::poll!(&mut gone).is_pending());
        assert!(futures_util::poll!(&mut waiting).is_pending());
        drop(gone);
        assert_eq!(waiting.await, Ok(false));
        assert_eq!(flights.len(), 0);
    }
}
