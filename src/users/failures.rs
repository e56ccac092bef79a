//! Failed user+password pairs, remembered briefly, so a client repeating one (a misconfigured
//! service retrying, a script replaying a list) costs no bcrypt.
//!
//! Pairs are kept only as a SHA-256 under a random per-process salt, never in clear: the map
//! holds guesses, some of which are one typo away from real passwords. Expiry is first-in
//! first-out, which with one TTL is also oldest-expiry-first, so eviction needs no scan.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The salted digest of one `user:password`.
pub(crate) type Key = [u8; 32];

pub(crate) struct FailureCache {
    salt: [u8; 32],
    capacity: usize,
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// When each pair last failed, and that insertion's number.
    failed: HashMap<Key, (Instant, u64)>,
    /// Insertions in order; a key failing again appears twice, and only its newest entry
    /// (matched by number) removes it from `failed`.
    order: VecDeque<(Key, Instant, u64)>,
    inserted: u64,
}

impl FailureCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        FailureCache {
            salt,
            capacity: capacity.max(1),
            ttl,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The key of a credential as sent: a decoded Basic `user:password`, or a bearer value.
    pub(crate) fn key(&self, credential: impl AsRef<[u8]>) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(credential.as_ref());
        hasher.finalize().into()
    }

    /// Whether this pair failed within the TTL.
    pub(crate) fn contains(&self, key: &Key) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .failed
            .get(key)
            .is_some_and(|(at, _)| at.elapsed() < self.ttl)
    }

    /// Remembers a failure, dropping expired entries and, when full, the oldest.
    pub(crate) fn insert(&self, key: Key) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Entries {
            failed,
            order,
            inserted,
        } = &mut *entries;
        while let Some(&(oldest, at, number)) = order.front() {
            if order.len() < self.capacity && now.duration_since(at) < self.ttl {
                break;
            }
            order.pop_front();
            if failed.get(&oldest).is_some_and(|&(_, n)| n == number) {
                failed.remove(&oldest);
            }
        }
        *inserted += 1;
        failed.insert(key, (now, *inserted));
        order.push_back((key, now, *inserted));
    }

    /// Forgets everything: the passwords changed.
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        *entries = Entries::default();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.failed.len().max(entries.order.len())
    }
}

impl std::fmt::Debug for FailureCache {
    /// Salted digests are still guessable offline; they stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureCache(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_pairs_not_passwords_and_stays_bounded() {
        let cache = FailureCache::new(3, Duration::from_secs(60));
        let a = cache.key("bob:guess1");
        assert_ne!(a, cache.key("bob:guess2"));
        assert_ne!(a, cache.key("bo:b:guess1"));
        assert_ne!(
            a,
            FailureCache::new(3, Duration::from_secs(60)).key("bob:guess1"),
            "salted per cache"
        );
        assert!(!cache.contains(&a));
        cache.insert(a);
        assert!(cache.contains(&a));
        for i in 0..10 {
            cache.insert(cache.key(format!("bob:other{i}")));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&a), "the oldest went first");
        assert!(cache.contains(&cache.key("bob:other9")));
        cache.clear();
        assert!(!cache.contains(&cache.key("bob:other9")));
    }

    #[test]
    fn expired_entries_are_not_reported_and_are_dropped() {
        let cache = FailureCache::new(100, Duration::ZERO);
        let a = cache.key("bob:guess");
        cache.insert(a);
        assert!(!cache.contains(&a));
        cache.insert(cache.key("bob:again"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_repeated_failure_keeps_its_newest_time() {
        let cache = FailureCache::new(2, Duration::from_secs(60));
        let a = cache.key("bob:guess");
        cache.insert(a);
        cache.insert(a);
        // The first entry for `a` is evicted; `a` itself stays, by its second entry.
        cache.insert(cache.key("bob:other"));
        assert!(cache.contains(&a));
    }
}
