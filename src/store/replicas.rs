//! How many gateways share the store's accounts, for limits that divide each account's share
//! among them.
//!
//! The journal store is one gateway's, so its count is always 1. The etcd store counts the
//! gateways registered under its prefix (see `etcd::replicas`) and keeps this number current
//! within seconds of one joining or leaving. Readers are on the request path: one relaxed load,
//! no lock. The count is advice for dividing limits, not a membership protocol: a value read
//! while gateways come and go may be one off for a moment, which the limits tolerate.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How many gateways share the store's accounts: always 1 on the journal store.
#[derive(Clone, Debug)]
pub struct Replicas(Arc<AtomicU32>);

impl Replicas {
    /// A count of one that nothing changes: a gateway alone with its accounts.
    pub fn single() -> Self {
        Replicas(Arc::new(AtomicU32::new(1)))
    }

    /// The gateways sharing the accounts now, this one included; never 0.
    pub fn get(&self) -> u32 {
        let n = self.0.load(Ordering::Relaxed);
        debug_assert!(n >= 1, "a replica count of 0 was stored");
        n.max(1)
    }

    /// Publishes a new count; 0 is taken as 1, since the gateway that counts is one.
    // Only the etcd store counts.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn set(&self, n: u32) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_gateway_counts_one_and_clones_share_the_count() {
        let replicas = Replicas::single();
        assert_eq!(replicas.get(), 1);
        let seen = replicas.clone();
        replicas.set(3);
        assert_eq!(seen.get(), 3);
        replicas.set(0);
        assert_eq!(seen.get(), 1);
        assert_eq!(Replicas::single().get(), 1, "each single count is its own");
    }
}
