//! Memory given back to the system after a crowd of connections has gone.
//!
//! mimalloc frees a page only on the thread that allocated from it, and only when that
//! thread next allocates enough to look: a block freed by another worker (tokio moves tasks
//! between threads) waits on its page's list until then, and freed pages are returned to the
//! system after a delay, checked on the same occasions. A worker that went quiet after a burst
//! of 10,000 connections kept their 300 MB for as long as it stayed quiet. Each worker now
//! collects its own heap when it parks (goes idle), at most once per epoch: a counter a
//! background task advances every second, so a park costs one atomic load, not a clock read.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a worker may collect.
const EPOCH: Duration = Duration::from_secs(1);

static EPOCHS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The epoch of this thread's last collection.
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// Called by the runtime on a worker about to park.
pub fn on_park() {
    let epoch = EPOCHS.load(Ordering::Relaxed);
    if COLLECTED.with(|last| last.replace(epoch)) != epoch {
        collect();
    }
}

/// Advances the epoch every second, for as long as the gateway runs.
pub async fn epochs() {
    let mut every = tokio::time::interval(EPOCH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        EPOCHS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Frees what this thread's heap holds for nothing and returns pages whose delay has passed.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and may be called on any thread at any time; with
    // `force = false` it does only what an allocation on this thread may do anyway.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// The system allocator keeps no such lists.
#[cfg(not(feature = "mimalloc"))]
fn collect() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_collects_once_per_epoch() {
        COLLECTED.with(|last| last.set(0));
        let epoch = EPOCHS.load(Ordering::Relaxed);
        on_park();
        assert_eq!(COLLECTED.with(Cell::get), epoch);
        EPOCHS.fetch_add(1, Ordering::Relaxed);
        on_park();
        assert_eq!(COLLECTED.with(Cell::get), epoch + 1);
    }
}
