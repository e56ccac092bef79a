//! A count of changes to the token sets (the store's tokens and the `service_tokens` file):
//! what a remembered verdict on a bearer value was reached against. A verdict taken at one
//! version holds while the version stays; any change, a revocation above all, moves it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide: two stores in one process (tests, a migration) only cost each other a
/// remembered verdict, never keep a stale one.
static VERSION: AtomicU64 = AtomicU64::new(1);

/// The version now. Read it before checking a value, so a change made during the check makes
/// the verdict stale rather than remembered as current.
pub fn current() -> u64 {
    VERSION.load(Ordering::Acquire)
}

/// Called after every change to a token set.
pub fn changed() {
    VERSION.fetch_add(1, Ordering::AcqRel);
}
