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
    /// If the caller running it goes away, one of the waiting callers runs its own. The entry
    /// leaves the map with its last caller, however that caller ends (its future may be
    /// dropped at the await when its client leaves), so the map holds only checks someone
    /// still waits for.
    pub(crate) async fn share<F>(&self, key: Key, check: F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let boarded = Boarded::join(self, key);
        *boarded.flight.get_or_init(|| check).await
    }

    /// Checks someone waits for now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<OnceCell<Outcome>>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One caller's hold on a flight: the last one to let go, or the first after the outcome is
/// known, takes the entry out of the map.
struct Boarded<'a> {
    flights: &'a Flights,
    key: Key,
    flight: Arc<OnceCell<Outcome>>,
}

impl<'a> Boarded<'a> {
    fn join(flights: &'a Flights, key: Key) -> Self {
        let flight = Arc::clone(flights.lock().entry(key).or_default());
        Boarded {
            flights,
            key,
            flight,
        }
    }
}

impl Drop for Boarded<'_> {
    fn drop(&mut self) {
        let mut running = self.flights.lock();
        // Clones are only made under the lock: two references (the map's and this one) mean
        // nobody else waits on this flight.
        let last = Arc::strong_count(&self.flight) == 2;
        if running
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            && (last || self.flight.initialized())
        {
            running.remove(&self.key);
        }
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

    #[tokio::test]
    async fn a_flight_whose_callers_all_left_leaves_the_map() {
        let flights = Flights::default();
        for key in 0..100u8 {
            let mut gone = Box::pin(flights.share([key; 32], std::future::pending()));
            assert!(futures_util::poll!(&mut gone).is_pending());
            assert_eq!(flights.len(), 1);
            drop(gone);
            assert_eq!(flights.len(), 0, "key {key} stayed behind");
        }
        // Two callers on one pair: the entry stays while one still waits.
        let mut first = Box::pin(flights.share([7; 32], std::future::pending()));
        let mut second = Box::pin(flights.share([7; 32], std::future::pending()));
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        drop(first);
        assert_eq!(flights.len(), 1);
        drop(second);
        assert_eq!(flights.len(), 0);
    }
}
