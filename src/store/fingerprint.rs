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

use crate::auth::token;

pub(crate) const PEPPER_LEN: usize = 16;
pub(crate) const FINGERPRINT_LEN: usize = 32;

pub(crate) type Pepper = [u8; PEPPER_LEN];
pub(crate) type Fingerprint = [u8; FINGERPRINT_LEN];

/// The second half of a fingerprint, stored under the first half and compared in constant time.
pub(crate) type Rest = [u8; 16];

/// Map from a fingerprint's first half to its second half.
pub(crate) type KeyMap = dashmap::DashMap<u128, Rest, BuildHasherDefault<KeyHasher>>;

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

/// Splits a fingerprint into its map key and the part compared on a hit.
pub(crate) fn split(fp: &Fingerprint) -> (u128, Rest) {
    let mut key = [0u8; 16];
    let mut rest = [0u8; 16];
    key.copy_from_slice(&fp[..16]);
    rest.copy_from_slice(&fp[16..]);
    (u128::from_le_bytes(key), rest)
}

/// The inverse of [`split`], for rewriting the journal from memory.
pub(crate) fn join(key: u128, rest: &Rest) -> Fingerprint {
    let mut fp = [0u8; FINGERPRINT_LEN];
    fp[..16].copy_from_slice(&key.to_le_bytes());
    fp[16..].copy_from_slice(rest);
    fp
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

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
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
    fn split_and_join_round_trip() {
        let fp = of(&[1u8; PEPPER_LEN], b"value").unwrap();
        let (key, rest) = split(&fp);
        assert_eq!(join(key, &rest), fp);
    }

    #[test]
    fn key_hash_is_the_low_64_bits() {
        let build = BuildHasherDefault::<KeyHasher>::default();
        let key = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        assert_eq!(build.hash_one(key), 0xfedc_ba98_7654_3210);
    }

    #[test]
    fn peppers_are_random() {
        assert_ne!(new_pepper().unwrap(), new_pepper().unwrap());
    }
}
