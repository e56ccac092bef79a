//! How many gateways share the store's accounts, for the per-account limits each enforces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How many gateways share the store's accounts: always 1 on the journal store.
#[derive(Clone, Debug)]
pub struct Replicas(Arc<AtomicU32>);

impl Replicas {
    pub fn single() -> Self {
        Replicas(Arc::new(AtomicU32::new(1)))
    }

    /// The live count, at least 1.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }

    #[allow(dead_code)]
    pub(crate) fn set(&self, n: u32) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }
}
