//! What the pool found for token values already checked, so no value costs a KDF twice: the
//! values that verified until the file changes, and the ones that failed briefly and boundedly
//! (the users realm's failure cache, with its limits), so a guesser repeating a value gets its
//! 401 without the pool.
//!
//! Values are keyed by a salted SHA-256 of the whole value as sent, never kept in clear.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::config::AuthThrottle;
use crate::users::FailureCache;

/// The salted fingerprint of one bearer value.
pub(super) type Key = [u8; 32];

pub(super) struct Verdicts {
    /// Values that verified against the current file.
    valid: Mutex<HashSet<Key>>,
    /// Values that failed recently; bounded, expiring.
    failed: FailureCache,
    /// Bumped on every reload, so a check that started before one cannot record its outcome
    /// against the new file.
    generation: AtomicU64,
}

impl Verdicts {
    pub(super) fn new(limits: &AuthThrottle) -> Self {
        Verdicts {
            valid: Mutex::new(HashSet::new()),
            failed: FailureCache::new(limits.failed_password_cache, limits.failed_password_ttl),
            generation: AtomicU64::new(0),
        }
    }

    pub(super) fn key(&self, value: &[u8]) -> Key {
        self.failed.key(value)
    }

    /// The remembered outcome for `key`, if any.
    pub(super) fn get(&self, key: &Key) -> Option<bool> {
        if self
            .valid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
        {
            Some(true)
        } else if self.failed.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    /// The generation a check starts in, for [`Verdicts::record`].
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remembers an outcome, unless the file was reloaded since the check started.
    pub(super) fn record(&self, key: Key, generation: u64, ok: bool) {
        let mut valid = self.valid.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if ok {
            valid.insert(key);
        } else {
            self.failed.insert(key);
        }
    }

    /// Forgets everything: the hashes changed.
    pub(super) fn clear(&self) {
        let mut valid = self.valid.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        valid.clear();
        self.failed.clear();
    }
}

impl std::fmt::Debug for Verdicts {
    /// Salted fingerprints of bearer values stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verdicts(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_kept_until_a_reload_and_stale_ones_are_dropped() {
        let verdicts = Verdicts::new(&AuthThrottle::default());
        let (good, bad) = (verdicts.key(b"good"), verdicts.key(b"bad"));
        assert_eq!(verdicts.get(&good), None);
        let generation = verdicts.generation();
        verdicts.record(good, generation, true);
        verdicts.record(bad, generation, false);
        assert_eq!(
            (verdicts.get(&good), verdicts.get(&bad)),
            (Some(true), Some(false))
        );
        verdicts.clear();
        assert_eq!((verdicts.get(&good), verdicts.get(&bad)), (None, None));
        // A check that began before the reload records nothing.
        verdicts.record(good, generation, true);
        assert_eq!(verdicts.get(&good), None);
    }
}
