//! Salted hashing and verification of secrets kept in memory.
//!
//! The users realm remembers each password it has verified with bcrypt (slow
//! by design) as one of these, as Elasticsearch's realm cache does, so repeat
//! requests skip bcrypt and the cache never holds a password in clear.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Salted SHA-256 of a secret.
#[derive(Clone)]
pub struct SecretHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl SecretHash {
    /// Hashes `secret` under a fresh random salt.
    pub fn new(secret: &[u8]) -> Self {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let digest = compute(&salt, secret);
        SecretHash { salt, digest }
    }

    /// Whether `secret` hashes to this digest; the comparison is constant-time
    /// so response timing does not reveal how many digest bytes matched.
    pub fn verify(&self, secret: &[u8]) -> bool {
        let candidate = compute(&self.salt, secret);
        candidate.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for SecretHash {
    // Even a salted digest must not reach logs: it would allow offline guessing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

fn compute(salt: &[u8; 16], secret: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_secret() {
        let hash = SecretHash::new(b"0123456789abcdef");
        assert!(hash.verify(b"0123456789abcdef"));
        assert!(!hash.verify(b"0123456789abcdeg"));
        assert!(!hash.verify(b""));
        assert!(!hash.verify(b"0123456789abcdef0"));
    }

    #[test]
    fn salts_are_random() {
        let a = SecretHash::new(b"same");
        let b = SecretHash::new(b"same");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn debug_redacts() {
        let hash = SecretHash::new(b"secret");
        assert_eq!(format!("{hash:?}"), "SecretHash(..)");
    }
}
