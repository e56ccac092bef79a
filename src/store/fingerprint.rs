//! Token fingerprints: what the store keeps instead of a token.
//!
//! `fingerprint = SHA-256(pepper || value)`, where `value` is the bearer value with its trailing
//! `=` padding removed (clients may send either form) and `pepper` is 16 random bytes chosen when
//! the journal is created. Token values carry at least 122 random bits, so one fast salted hash is
//! the right cost: guessing is infeasible and a slow KDF would only add latency to every request.
//! The pepper keeps fingerprints from one store useless against any other.
//!
//! Hashing the whole value, rather than looking a token up by name and then checking its secret,
//! means a check does the same work whether or not the name exists, needs no base64 decoding,
//! and touches one map entry whose key is already a uniform random number.

use std::hash::{BuildHasherDefault, Hasher};
use std::io;

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::identity::token;

pub(crate) const PEPPER_LEN: usize = 16;
pub(crate) const FINGERPRINT_LEN: usize = 32;

pub(crate) type Pepper = [u8; PEPPER_LEN];
pub(crate) type Fingerprint = [u8; FINGERPRINT_LEN];

/// The check's index: a fingerprint's bytes 0..8 (the key) to its bytes 8..16 (the tag, compared
/// in constant time). 16 bytes an entry keep the index of a million tokens near the size of the
/// processor's cache, which is what a check at that scale waits on; 128 matching bits are still
/// far beyond guessing. The full fingerprint lives in the name map, for the journal.
pub(crate) type KeyMap = dashmap::DashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

/// A fresh pepper from the operating system's CSPRNG.
pub(crate) fn new_pepper() -> io::Result<Pepper> {
    let mut pepper = [0u8; PEPPER_LEN];
    OsRng
        .try_fill_bytes(&mut pepper)
        .map_err(io::Error::other)?;
    Ok(pepper)
}

/// The value as it is hashed: trailing `=` removed so padded and unpadded forms agree.
fn canonical(mut value: &[u8]) -> &[u8] {
    while let [rest @ .., b'='] = value {
        value = rest;
    }
    value
}

/// Fingerprint of a bearer value, `None` when it is longer than any token value: such a value
/// can never verify, so it is not worth hashing.
pub(crate) fn of(pepper: &Pepper, value: &[u8]) -> Option<Fingerprint> {
    if value.len() > token::MAX_VALUE_LEN {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(pepper);
    hasher.update(canonical(value));
    Some(hasher.finalize().into())
}

/// A fingerprint's index key and the tag compared on a hit.
pub(crate) fn split(fp: &Fingerprint) -> (u64, u64) {
    let mut key = [0u8; 8];
    let mut tag = [0u8; 8];
    key.copy_from_slice(&fp[..8]);
    tag.copy_from_slice(&fp[8..16]);
    (u64::from_le_bytes(key), u64::from_le_bytes(tag))
}

/// Hasher for [`KeyMap`]: the keys are already uniformly random (a peppered SHA-256 nobody can
/// steer without the pepper), so their low 64 bits are used as they are. Hashing them again would
/// only add latency to every lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Only reached if the map's key type ever changes; folds the bytes so it stays a hash.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn padding_does_not_change_the_fingerprint() {
        let pepper = [7u8; PEPPER_LEN];
        let bare = of(&pepper, b"QUJD").unwrap();
        assert_eq!(of(&pepper, b"QUJD=").unwrap(), bare);
        assert_eq!(of(&pepper, b"QUJD==").unwrap(), bare);
        assert_ne!(of(&pepper, b"QUJE").unwrap(), bare);
        assert_ne!(of(&[8u8; PEPPER_LEN], b"QUJD").unwrap(), bare);
        assert!(of(&pepper, &[b'A'; token::MAX_VALUE_LEN + 1]).is_none());
    }

    #[test]
    fn split_takes_key_then_tag() {
        let fp = of(&[1u8; PEPPER_LEN], b"value").unwrap();
        let (key, tag) = split(&fp);
        assert_eq!(key.to_le_bytes(), fp[..8]);
        assert_eq!(tag.to_le_bytes(), fp[8..16]);
    }

    #[test]
    fn key_hash_is_the_key_itself() {
        let build = BuildHasherDefault::<KeyHasher>::default();
        assert_eq!(
            build.hash_one(0xfedc_ba98_7654_3210u64),
            0xfedc_ba98_7654_3210
        );
    }

    #[test]
    fn peppers_are_random() {
        assert_ne!(new_pepper().unwrap(), new_pepper().unwrap());
    }
}
