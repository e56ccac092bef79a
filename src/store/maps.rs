//! The in-memory token set: fingerprints for the per-request check, names for everything else.
//!
//! The check needs one lookup keyed by something the request already has without parsing, so
//! tokens are found by the first 16 bytes of their fingerprint. Names are kept in a second map
//! because the token API addresses tokens by name (conflicts, delete, listing). Only the journal
//! writer (and replay, before the store is shared) mutates either map.

use dashmap::DashMap;
use subtle::{Choice, ConstantTimeEq};

use super::fingerprint::{self, Fingerprint, KeyMap};

/// Moves the token sets' version when dropped: after the change it marks, on every return path.
struct Changed;

impl Drop for Changed {
    fn drop(&mut self) {
        super::version::changed();
    }
}

/// A put whose fingerprint key is already held by a different token.
#[derive(Debug)]
pub(crate) struct Collision;

pub(crate) struct Maps {
    by_key: KeyMap,
    /// Name to full fingerprint: conflicts, delete, listing, and rewriting the journal.
    by_name: DashMap<Box<str>, Fingerprint>,
}

impl Maps {
    /// Both maps sized for `tokens` entries, so replay of a large journal never rehashes.
    pub fn with_capacity(tokens: usize) -> Self {
        // A new set may replace the one requests were checked against.
        super::version::changed();
        Maps {
            by_key: KeyMap::with_capacity_and_hasher(tokens, Default::default()),
            by_name: DashMap::with_capacity(tokens),
        }
    }

    /// Whether `fp` is the fingerprint of a stored token. The rest is compared in constant time,
    /// and against zeros on a miss, so the work does not depend on how much matched.
    pub fn verify(&self, fp: &Fingerprint) -> bool {
        let (key, tag) = fingerprint::split(fp);
        // Copied out so the shard lock is not held during the compare.
        let found = self.by_key.get(&key).map(|entry| *entry.value());
        let present = Choice::from(u8::from(found.is_some()));
        let stored = found.unwrap_or(0);
        (present & stored.ct_eq(&tag)).into()
    }

    pub fn contains_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.by_key.contains_key(&key)
    }

    pub fn key_of(&self, name: &str) -> Option<u64> {
        self.by_name
            .get(name)
            .map(|entry| fingerprint::split(entry.value()).0)
    }

    /// Adds a token: the name first, so a concurrent create sees it taken as soon as the token
    /// can verify. Replacing a name's token (only a hand-edited journal does that) drops the old
    /// fingerprint. Returns whether the name is new.
    ///
    /// On a [`Collision`] the maps are left inconsistent: replay gives up on the journal, and the
    /// writer rules collisions out before it calls this.
    pub fn insert(&self, name: Box<str>, fp: &Fingerprint) -> Result<bool, Collision> {
        let (key, tag) = fingerprint::split(fp);
        let _changed = Changed;
        let old = self
            .by_name
            .insert(name, *fp)
            .map(|old| fingerprint::split(&old).0);
        if let Some(old) = old.filter(|&old| old != key) {
            self.by_key.remove(&old);
        }
        match self.by_key.insert(key, tag) {
            Some(_) if old != Some(key) => Err(Collision),
            _ => Ok(old.is_none()),
        }
    }

    /// Removes a token by name; false when absent.
    pub fn remove(&self, name: &str) -> bool {
        let _changed = Changed;
        match self.by_name.remove(name) {
            Some((_, fp)) => {
                self.by_key.remove(&fingerprint::split(&fp).0);
                true
            }
            None => false,
        }
    }

    /// Token names (the last path part) of account "ns/svc", sorted.
    pub fn names_of(&self, account: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_name
            .iter()
            .filter_map(|entry| {
                let rest = entry.key().strip_prefix(account)?.strip_prefix('/')?;
                (!rest.contains('/')).then(|| rest.to_owned())
            })
            .collect();
        names.sort_unstable();
        names
    }

    /// Every token's qualified name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.iter().map(|e| e.key().to_string()).collect();
        names.sort_unstable();
        names
    }

    /// Calls `f` with every token's name and fingerprint, for rewriting the journal. Stops at the
    /// first error.
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(&str, &Fingerprint) -> Result<(), E>,
    ) -> Result<(), E> {
        for entry in self.by_name.iter() {
            f(entry.key(), entry.value())?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
