//! Every live connection with its idle state, so that at the connection limit the longest-idle
//! one can be asked to make room, and its slot handed to the connection that asked.
//!
//! A request touches only its own connection's [`Slot`] (two atomic read-modify-writes and a
//! store, no lock); the registry's lock is taken when a connection opens or closes and when
//! the accept loop looks for a connection to evict, never across an `.await`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit};

use crate::message::ClientInfo;

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
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Shutting down: every connection, including one registered from now on, is told to close.
    closing: bool,
}

struct Entry {
    slot: Arc<Slot>,
    /// Where this connection's permit goes when it ends, once it was asked to make room.
    heir: Option<Succession>,
}

/// The permit of an evicted connection, sent to the connection it made room for.
///
/// Handing it over directly, rather than releasing it to the semaphore, keeps the accept loop
/// from giving it to a later connection before the one that evicted for it is ready to wait.
type Succession = oneshot::Sender<OwnedSemaphorePermit>;

/// One connection as its requests and the accept loop see it.
///
/// Relaxed atomics throughout: eviction only needs a recent picture, and acting on a stale one
/// is harmless, since a connection told to close finishes what it has in flight first. For
/// the same reason a request counts as in flight only while its handler runs: a response body
/// still streaming after that does not protect its connection from being chosen, but the
/// connection then closes after that response, not during it.
pub(super) struct Slot {
    pub(super) client: Arc<ClientInfo>,
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` to the end of the last request (before the first: to when the
    /// connection got its slot).
    last_active: AtomicU64,
    /// Whether the client has spoken: a request head arrived, or an HTTP/2 preface.
    greeted: AtomicBool,
    /// Successful writes to the client so far (only the connection's own task writes).
    writes: AtomicU64,
    close: Notify,
}

/// Keeps a slot and its permit in the registry; when the connection task ends, removes it and
/// gives the permit back, or to the connection it made room for.
pub(super) struct Registered {
    registry: Arc<Registry>,
    index: usize,
    permit: Option<OwnedSemaphorePermit>,
}

/// One request in flight on its connection, held by the request's future: marks the connection
/// active again when dropped, which the future does whether it completes or is cancelled.
pub struct InFlight {
    slot: Arc<Slot>,
    /// When the request ended, if the caller said ([`InFlight::end`]).
    ended: Option<Instant>,
}

impl InFlight {
    /// Who sent the request.
    pub fn client(&self) -> &Arc<ClientInfo> {
        &self.slot.client
    }

    /// Ends the request at `at`, a time the caller read anyway (its latency's end): the
    /// connection is quiet from then, without a clock read of its own (about 45 ns on a VM).
    pub fn end(mut self, at: Instant) {
        self.ended = Some(at);
    }
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
            writes: AtomicU64::new(0),
            close: Notify::new(),
        };
        slot.touch();
        Arc::new(slot)
    }

    /// Makes `slot`, holding `permit`, a candidate for eviction until the returned guard is
    /// dropped.
    pub(super) fn register(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        permit: OwnedSemaphorePermit,
    ) -> Registered {
        let mut table = self.lock();
        if table.closing {
            slot.close.notify_one();
        }
        let entry = Entry { slot, heir: None };
        let index = match table.free.pop() {
            Some(index) => {
                if let Some(free) = table.entries.get_mut(index) {
                    *free = Some(entry);
                }
                index
            }
            None => {
                table.entries.push(Some(entry));
                table.entries.len() - 1
            }
        };
        Registered {
            registry: self.clone(),
            index,
            permit: Some(permit),
        }
    }

    /// Asks the connection idle the longest (no request in flight, not already asked) to close;
    /// its permit arrives on the returned receiver when it has. `None` when every connection
    /// is busy.
    ///
    /// A linear scan: it runs only when every slot is taken, and visiting ten thousand slots
    /// costs tens of microseconds, against keeping an ordered index up to date on every request.
    pub(super) fn evict_idlest(&self) -> Option<oneshot::Receiver<OwnedSemaphorePermit>> {
        let mut table = self.lock();
        let idlest = table
            .entries
            .iter_mut()
            .flatten()
            .filter(|entry| entry.heir.is_none() && entry.slot.is_idle())
            .min_by_key(|entry| entry.slot.last_active.load(Ordering::Relaxed))?;
        let (heir, permit) = oneshot::channel();
        idlest.heir = Some(heir);
        // A stored permit if the task is not waiting yet: the request cannot be lost.
        idlest.slot.close.notify_one();
        Some(permit)
    }

    /// Tells every connection, now and registered later, to close gracefully.
    pub(super) fn close_all(&self) {
        let mut table = self.lock();
        table.closing = true;
        for entry in table.entries.iter().flatten() {
            entry.slot.close.notify_one();
        }
    }

    /// Connections registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let table = self.lock();
        table.entries.len() - table.free.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock, and the table stays consistent if it did.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Under the lock, so an eviction either sees this entry (and its heir is found here)
        // or does not see it at all.
        let heir = {
            let mut table = self.registry.lock();
            let entry = table.entries.get_mut(self.index).and_then(Option::take);
            table.free.push(self.index);
            entry.and_then(|entry| entry.heir)
        };
        if let (Some(heir), Some(permit)) = (heir, self.permit.take()) {
            // An heir that gave up waiting returns the permit to the semaphore.
            let _ = heir.send(permit);
        }
    }
}

impl Slot {
    /// Called as a request reaches the handler.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.greet();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            slot: Arc::clone(self),
            ended: None,
        }
    }

    /// The client has spoken; the first-request deadline no longer applies.
    pub(super) fn greet(&self) {
        // A load first: after the first request this never writes the shared cache line.
        if !self.greeted.load(Ordering::Relaxed) {
            self.greeted.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a write to the client. A load and a store, not a read-modify-write: the
    /// connection's task is the only writer.
    pub(super) fn wrote(&self) {
        let writes = self.writes.load(Ordering::Relaxed);
        self.writes.store(writes.wrapping_add(1), Ordering::Relaxed);
    }

    /// How many writes to the client there have been.
    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
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

    /// How long the connection has had no request in flight (since it got its slot, before
    /// the first); `None` while one is.
    pub(super) fn quiet_for(&self) -> Option<Duration> {
        if !self.is_idle() {
            return None;
        }
        let last = Duration::from_millis(self.last_active.load(Ordering::Relaxed));
        Some(self.epoch.elapsed().saturating_sub(last))
    }

    fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, at: Instant) {
        let since = at.saturating_duration_since(self.epoch);
        let now = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(now, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        match self.ended {
            Some(at) => self.slot.touch_at(at),
            None => self.slot.touch(),
        }
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    fn client() -> ClientInfo {
        ClientInfo::new(
            "127.0.0.1:1".parse().unwrap(),
            false,
            false,
            Default::default(),
        )
    }

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    /// A slot whose last request ended `ms` after the registry's epoch.
    fn idle_since(registry: &Registry, ms: u64) -> Arc<Slot> {
        let slot = registry.slot(client());
        slot.last_active.store(ms, Ordering::Relaxed);
        slot
    }

    #[test]
    fn a_request_ended_at_a_given_time_leaves_its_connection_quiet_from_then() {
        let registry = Registry::new();
        let slot = registry.slot(client());
        let request = slot.begin();
        assert_eq!(
            slot.quiet_for(),
            None,
            "busy while the request is in flight"
        );
        request.end(registry.epoch + Duration::from_secs(7));
        assert_eq!(slot.last_active.load(Ordering::Relaxed), 7_000);
        assert!(slot.quiet_for().is_some());
    }

    #[test]
    fn the_longest_idle_connection_is_asked_first_and_only_once() {
        let registry = Registry::new();
        let (old, young) = (idle_since(&registry, 1), idle_since(&registry, 5));
        let old_registered = registry.register(old, permit());
        let _young_registered = registry.register(young, permit());
        let mut heir = registry.evict_idlest().unwrap();
        assert!(registry.evict_idlest().is_some(), "the younger one next");
        assert!(registry.evict_idlest().is_none(), "both were asked already");
        assert!(heir.try_recv().is_err(), "nothing before the old one ends");
        drop(old_registered);
        assert!(heir.try_recv().is_ok(), "its permit went to the heir");
    }

    #[test]
    fn busy_connections_are_never_asked() {
        let registry = Registry::new();
        let slot = idle_since(&registry, 1);
        let _registered = registry.register(slot.clone(), permit());
        let active = slot.begin();
        assert!(registry.evict_idlest().is_none());
        drop(active);
        assert!(registry.evict_idlest().is_some());
    }

    #[test]
    fn a_permit_whose_heir_gave_up_returns_to_its_semaphore() {
        let registry = Registry::new();
        let semaphore = Arc::new(Semaphore::new(1));
        let permit = semaphore.clone().try_acquire_owned().unwrap();
        let registered = registry.register(registry.slot(client()), permit);
        drop(registry.evict_idlest().unwrap());
        drop(registered);
        assert_eq!(semaphore.available_permits(), 1);
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
        let first = registry.register(registry.slot(client()), permit());
        let second = registry.register(registry.slot(client()), permit());
        assert_eq!(registry.len(), 2);
        let index = first.index;
        drop(first);
        assert_eq!(registry.len(), 1);
        let third = registry.register(registry.slot(client()), permit());
        assert_eq!(third.index, index);
        drop((second, third));
        assert_eq!(registry.len(), 0);
        assert!(registry.evict_idlest().is_none());
    }
}
