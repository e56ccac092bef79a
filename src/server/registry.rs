//! Every live connection with its idle state, so that at the connection limit the longest-idle
//! one can be asked to make room.
//!
//! A request touches only its own connection's [`Slot`] (two atomic read-modify-writes and a
//! store, no lock); the registry's lock is taken when a connection opens or closes and when
//! the accept loop looks for a connection to evict, never across an `.await`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::proxy::headers::ClientInfo;

/// The live connections. Indexes are reused (a free list), so the table stays as long as the
/// most connections ever open at once, at most `max_connections`.
///
/// It also carries the shutdown signal: one wake-up per connection for both reasons to close
/// keeps a connection task's per-poll cost what it was with a shutdown watcher alone.
pub(super) struct Registry {
    /// What every slot's timestamps count from.
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
    /// Shutting down: every connection, including one registered from now on, is told to close.
    closing: bool,
}

/// One connection as its requests and the accept loop see it.
///
/// Relaxed atomics throughout: eviction only needs a recent picture, and acting on a stale one
/// is harmless, since a connection told to close finishes what it has in flight first.
pub(super) struct Slot {
    pub(super) client: Arc<ClientInfo>,
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` to the end of the last request (to the accept before one).
    last_active: AtomicU64,
    /// Whether the client has spoken: a request head arrived, or an HTTP/2 preface.
    greeted: AtomicBool,
    /// Set once, by the accept loop, when it asks this connection to make room.
    evicting: AtomicBool,
    close: Notify,
}

/// Keeps a slot in the registry; removes it when the connection task ends.
pub(super) struct Registered {
    registry: Arc<Registry>,
    index: usize,
}

/// One request in flight on a slot; marks the connection active again when dropped, which the
/// request future does whether it completes or is cancelled.
pub(super) struct Active<'a> {
    slot: &'a Slot,
}

impl Registry {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Registry {
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        })
    }

    /// A slot for a connection accepted just now; not yet a candidate for eviction.
    pub(super) fn slot(&self, client: ClientInfo) -> Arc<Slot> {
        let slot = Slot {
            client: Arc::new(client),
            epoch: self.epoch,
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(0),
            greeted: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            close: Notify::new(),
        };
        slot.touch();
        Arc::new(slot)
    }

    /// Makes `slot` a candidate for eviction until the returned guard is dropped.
    pub(super) fn register(self: &Arc<Self>, slot: Arc<Slot>) -> Registered {
        let mut table = self.lock();
        if table.closing {
            slot.close.notify_one();
        }
        let index = match table.free.pop() {
            Some(index) => {
                if let Some(entry) = table.slots.get_mut(index) {
                    *entry = Some(slot);
                }
                index
            }
            None => {
                table.slots.push(Some(slot));
                table.slots.len() - 1
            }
        };
        Registered {
            registry: self.clone(),
            index,
        }
    }

    /// Asks the connection idle the longest (no request in flight, not already asked) to close;
    /// `false` when every connection is busy.
    ///
    /// A linear scan: it runs only when every slot is taken, and visiting ten thousand slots
    /// costs tens of microseconds, against keeping an ordered index up to date on every request.
    pub(super) fn evict_idlest(&self) -> bool {
        let table = self.lock();
        let idlest = table
            .slots
            .iter()
            .flatten()
            .filter(|slot| slot.is_idle() && !slot.evicting.load(Ordering::Relaxed))
            .min_by_key(|slot| slot.last_active.load(Ordering::Relaxed));
        let Some(slot) = idlest else {
            return false;
        };
        slot.evicting.store(true, Ordering::Relaxed);
        // A stored permit if the task is not waiting yet: the request cannot be lost.
        slot.close.notify_one();
        true
    }

    /// Tells every connection, now and registered later, to close gracefully.
    pub(super) fn close_all(&self) {
        let mut table = self.lock();
        table.closing = true;
        for slot in table.slots.iter().flatten() {
            slot.close.notify_one();
        }
    }

    /// Connections registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let table = self.lock();
        table.slots.len() - table.free.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock, and the table stays consistent if it did.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut table = self.registry.lock();
        if let Some(entry) = table.slots.get_mut(self.index) {
            *entry = None;
            table.free.push(self.index);
        }
    }
}

impl Slot {
    /// Called as a request reaches the handler.
    pub(super) fn begin(&self) -> Active<'_> {
        self.greet();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Active { slot: self }
    }

    /// The client has spoken; the first-request deadline no longer applies.
    pub(super) fn greet(&self) {
        // A load first: after the first request this never writes the shared cache line.
        if !self.greeted.load(Ordering::Relaxed) {
            self.greeted.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn greeted(&self) -> bool {
        self.greeted.load(Ordering::Relaxed)
    }

    /// Resolves once the connection is to close: to make room, or for shutdown.
    pub(super) async fn told_to_close(&self) {
        self.close.notified().await;
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(now, Ordering::Relaxed);
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.slot.touch();
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientInfo {
        ClientInfo::new("127.0.0.1:1".parse().unwrap(), false)
    }

    /// A slot whose last request ended `ms` after the registry's epoch.
    fn idle_since(registry: &Registry, ms: u64) -> Arc<Slot> {
        let slot = registry.slot(client());
        slot.last_active.store(ms, Ordering::Relaxed);
        slot
    }

    #[test]
    fn the_longest_idle_connection_is_asked_first_and_only_once() {
        let registry = Registry::new();
        let (old, young) = (idle_since(&registry, 1), idle_since(&registry, 5));
        let _kept = (
            registry.register(old.clone()),
            registry.register(young.clone()),
        );
        assert!(registry.evict_idlest());
        assert!(old.evicting.load(Ordering::Relaxed));
        assert!(!young.evicting.load(Ordering::Relaxed));
        assert!(registry.evict_idlest());
        assert!(young.evicting.load(Ordering::Relaxed));
        assert!(!registry.evict_idlest(), "both were asked already");
    }

    #[test]
    fn busy_connections_are_never_asked() {
        let registry = Registry::new();
        let slot = idle_since(&registry, 1);
        let _registered = registry.register(slot.clone());
        let active = slot.begin();
        assert!(!registry.evict_idlest());
        drop(active);
        assert!(registry.evict_idlest());
    }

    #[test]
    fn a_request_greets_and_counts_while_in_flight() {
        let registry = Registry::new();
        let slot = idle_since(&registry, 0);
        assert!(!slot.greeted());
        let active = slot.begin();
        assert!(slot.greeted());
        assert!(!slot.is_idle());
        drop(active);
        assert!(slot.is_idle());
    }

    #[test]
    fn closed_connections_leave_and_their_index_is_reused() {
        let registry = Registry::new();
        let first = registry.register(registry.slot(client()));
        let second = registry.register(registry.slot(client()));
        assert_eq!(registry.len(), 2);
        let index = first.index;
        drop(first);
        assert_eq!(registry.len(), 1);
        let third = registry.register(registry.slot(client()));
        assert_eq!(third.index, index);
        drop((second, third));
        assert_eq!(registry.len(), 0);
        assert!(!registry.evict_idlest());
    }
}
