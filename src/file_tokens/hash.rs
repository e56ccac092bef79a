//! Elasticsearch's stored-hash formats, as its `Hasher` writes them into `service_tokens`: read
//! once when the file is loaded, verified on the password pool, never per request.
//!
//! - `{PBKDF2_STRETCH}<iterations>$<salt b64>$<key b64>`: PBKDF2-HMAC-SHA512 over the lowercase
//!   hex of the secret's SHA-512 (Elasticsearch's default for service tokens, 10 000 iterations,
//!   32-byte salt and key);
//! - `{PBKDF2}<iterations>$<salt b64>$<key b64>`: the same without the SHA-512 step;
//! - bcrypt `$2a$`, `$2b$`, `$2y$`;
//! - `{SSHA256}<8-byte salt, 12 b64 chars><b64 of SHA-256(secret ‖ salt)>`.
//!
//! Anything else (Elasticsearch's plain text, `{SHA}`, `{MD5}`) is refused when the file is read.
//! The iteration count is the hash's own: a file written with another count is verified with it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

const PBKDF2_STRETCH_PREFIX: &str = "{PBKDF2_STRETCH}";
const PBKDF2_PREFIX: &str = "{PBKDF2}";
const SSHA256_PREFIX: &str = "{SSHA256}";
const BCRYPT_PREFIXES: [&str; 3] = ["$2a$", "$2b$", "$2y$"];

/// Elasticsearch's iteration count for new service-token hashes (`Hasher.PBKDF2_DEFAULT_COST`).
pub const DEFAULT_ITERATIONS: u32 = 10_000;
/// Elasticsearch's largest PBKDF2 count (`PBKDF2_1000000`): a line asking for more would hold a
/// password worker for seconds per check, so it is refused as a bad line.
const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt and key lengths of hashes Elasticsearch writes.
const SALT_LEN: usize = 32;
const KEY_LEN: usize = 32;
/// Elasticsearch refuses shorter PBKDF2 salts.
const MIN_SALT_LEN: usize = 8;
/// Elasticsearch derives keys in whole HMAC-SHA512 halves (128 bits).
const KEY_UNIT: usize = 16;
/// `{SSHA256}` salts: 8 bytes, 12 base64 characters.
const SSHA256_SALT_CHARS: usize = 12;

/// A parsed stored hash.
#[derive(Clone)]
pub enum StoredHash {
    Pbkdf2 {
        /// Whether the secret is first replaced by the hex of its SHA-512 (`{PBKDF2_STRETCH}`).
        stretch: bool,
        iterations: u32,
        salt: Vec<u8>,
        key: Vec<u8>,
    },
    /// The whole hash string, as the bcrypt crate reads it.
    Bcrypt(String),
    Ssha256 {
        salt: Vec<u8>,
        digest: [u8; 32],
    },
}

/// Why a hash string is not one Elasticsearch's hasher would verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("unsupported hash format (plain text, {{SHA}} and {{MD5}} are not accepted)")]
    Unsupported,
    #[error("malformed {0} hash")]
    Malformed(&'static str),
}

impl StoredHash {
    /// Reads a hash as Elasticsearch's `Hasher.resolveFromHash` tells formats apart.
    pub fn parse(text: &str) -> Result<StoredHash, HashError> {
        if let Some(rest) = text.strip_prefix(PBKDF2_STRETCH_PREFIX) {
            parse_pbkdf2(rest, true).ok_or(HashError::Malformed("PBKDF2_STRETCH"))
        } else if let Some(rest) = text.strip_prefix(PBKDF2_PREFIX) {
            parse_pbkdf2(rest, false).ok_or(HashError::Malformed("PBKDF2"))
        } else if let Some(rest) = text.strip_prefix(SSHA256_PREFIX) {
            parse_ssha256(rest).ok_or(HashError::Malformed("SSHA256"))
        } else if BCRYPT_PREFIXES.iter().any(|p| text.starts_with(p)) {
            text.parse::<bcrypt::HashParts>()
                .map_err(|_| HashError::Malformed("bcrypt"))?;
            Ok(StoredHash::Bcrypt(text.to_owned()))
        } else {
            Err(HashError::Unsupported)
        }
    }

    /// Whether `secret` matches. Deliberately slow for every format but `{SSHA256}`: run it on
    /// the password pool only.
    pub fn verify(&self, secret: &[u8]) -> bool {
        match self {
            StoredHash::Pbkdf2 {
                stretch,
                iterations,
                salt,
                key,
            } => {
                let mut derived = vec![0u8; key.len()];
                if *stretch {
                    pbkdf2_sha512(&sha512_hex(secret), salt, *iterations, &mut derived);
                } else {
                    pbkdf2_sha512(secret, salt, *iterations, &mut derived);
                }
                derived.ct_eq(key).into()
            }
            StoredHash::Bcrypt(hash) => bcrypt::verify(secret, hash).unwrap_or(false),
            StoredHash::Ssha256 { salt, digest } => {
                let computed: [u8; 32] = Sha256::new()
                    .chain_update(secret)
                    .chain_update(salt)
                    .finalize()
                    .into();
                computed.ct_eq(digest).into()
            }
        }
    }
}

impl fmt::Debug for StoredHash {
    /// A hash is offline-guessable material; logs get its kind only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            StoredHash::Pbkdf2 { stretch: true, .. } => "PBKDF2_STRETCH",
            StoredHash::Pbkdf2 { stretch: false, .. } => "PBKDF2",
            StoredHash::Bcrypt(_) => "bcrypt",
            StoredHash::Ssha256 { .. } => "SSHA256",
        };
        write!(f, "StoredHash({kind})")
    }
}

/// `<iterations>$<salt b64>$<key b64>`.
fn parse_pbkdf2(rest: &str, stretch: bool) -> Option<StoredHash> {
    let mut parts = rest.splitn(3, '$');
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = STANDARD.decode(parts.next()?).ok()?;
    let key = STANDARD.decode(parts.next()?).ok()?;
    let usable = iterations > 0
        && iterations <= MAX_ITERATIONS
        && salt.len() >= MIN_SALT_LEN
        && !key.is_empty()
        && key.len().is_multiple_of(KEY_UNIT);
    usable.then_some(StoredHash::Pbkdf2 {
        stretch,
        iterations,
        salt,
        key,
    })
}

fn parse_ssha256(rest: &str) -> Option<StoredHash> {
    let salt = STANDARD.decode(rest.get(..SSHA256_SALT_CHARS)?).ok()?;
    let digest = STANDARD.decode(rest.get(SSHA256_SALT_CHARS..)?).ok()?;
    Some(StoredHash::Ssha256 {
        salt,
        digest: digest.try_into().ok()?,
    })
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, out);
}

/// The lowercase hex of SHA-512(`secret`): what `{PBKDF2_STRETCH}` feeds PBKDF2 instead of the
/// secret (Elasticsearch's `MessageDigests.toHexCharArray`).
fn sha512_hex(secret: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha512::digest(secret);
    let mut hex = Vec::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(HEX[usize::from(byte >> 4)]);
        hex.push(HEX[usize::from(byte & 0x0f)]);
    }
    hex
}

/// A new `{PBKDF2_STRETCH}` hash of `secret` as Elasticsearch writes one: fresh 32-byte salt,
/// 32-byte key, standard base64 with padding.
pub fn pbkdf2_stretch(secret: &[u8], iterations: u32) -> String {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut key = [0u8; KEY_LEN];
    pbkdf2_sha512(&sha512_hex(secret), &salt, iterations, &mut key);
    format!(
        "{PBKDF2_STRETCH_PREFIX}{iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From Elasticsearch's own `FileServiceAccountTokenStoreTests` fixture (`service_tokens`),
    /// with the secrets of the token values that test pairs them with.
    const ES_STRETCH: &str = "{PBKDF2_STRETCH}10000$Pa3oNkj8xTD8j2gTgjWnTvnE6jseKApWMFjcNCLxX1U=$84ECweHFZQ2DblHEjHTRWA+fG6h5bVMyTSJUmFvTo1o=";
    const ES_STRETCH_SECRET: &[u8] = b"aI_0QLRfRyGBP1U60Sby2w";
    const ES_PBKDF2: &str = "{PBKDF2}10000$0N2h5/AsDS5uO0/A+B6y8AnTCJ3Tqo8nygbzu1gkgpo=$5aTcCtteHf2g2ye7Y3p6jSZBoGhNJ7l6F3tmUhPTwRo=";
    const ES_PBKDF2_SECRET: &[u8] = b"5DjRC_XRSAql5Hlampyv7Q";

    #[test]
    fn verifies_elasticsearch_fixture_hashes() {
        let stretch = StoredHash::parse(ES_STRETCH).unwrap();
        assert!(stretch.verify(ES_STRETCH_SECRET));
        assert!(!stretch.verify(ES_PBKDF2_SECRET));
        let plain = StoredHash::parse(ES_PBKDF2).unwrap();
        assert!(plain.verify(ES_PBKDF2_SECRET));
        assert!(!plain.verify(ES_STRETCH_SECRET));
    }

    /// A vector computed step by step from the documented algorithm: SHA-512 hex, then one
    /// PBKDF2-HMAC-SHA512 block of 2 iterations written out as HMACs.
    #[test]
    fn stretch_is_pbkdf2_over_the_sha512_hex() {
        use hmac::{Hmac, Mac};
        let secret = b"secret";
        let hex = sha512_hex(secret);
        assert_eq!(&hex[..16], b"bd2b1aaf7ef4f09b");
        assert_eq!(hex.len(), 128);
        let salt = [7u8; 16];
        let hmac = |data: &[u8]| -> Vec<u8> {
            let mut mac = Hmac::<Sha512>::new_from_slice(&hex).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        };
        let u1 = hmac(&[&salt[..], &1u32.to_be_bytes()].concat());
        let u2 = hmac(&u1);
        let block: Vec<u8> = u1.iter().zip(&u2).map(|(a, b)| a ^ b).collect();
        let text = format!(
            "{{PBKDF2_STRETCH}}2${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(&block[..32])
        );
        let hash = StoredHash::parse(&text).unwrap();
        assert!(hash.verify(secret));
        assert!(!hash.verify(b"secreT"));
    }

    #[test]
    fn new_hashes_have_elasticsearchs_layout_and_verify() {
        let text = pbkdf2_stretch(b"token-secret", 3);
        let rest = text.strip_prefix("{PBKDF2_STRETCH}3$").unwrap();
        let (salt, key) = rest.split_once('$').unwrap();
        assert_eq!((salt.len(), key.len()), (44, 44));
        let hash = StoredHash::parse(&text).unwrap();
        assert!(hash.verify(b"token-secret"));
        assert!(!hash.verify(b"token-secreT"));
        assert_eq!(format!("{hash:?}"), "StoredHash(PBKDF2_STRETCH)");
    }

    #[test]
    fn bcrypt_and_ssha256() {
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        let hash = StoredHash::parse(&bcrypt).unwrap();
        assert!(hash.verify(b"s3cret"));
        assert!(!hash.verify(b"s3creT"));
        let y = bcrypt.replacen("$2b$", "$2y$", 1);
        assert!(StoredHash::parse(&y).unwrap().verify(b"s3cret"));

        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let digest = Sha256::new()
            .chain_update(b"s3cret")
            .chain_update(salt)
            .finalize();
        let text = format!(
            "{{SSHA256}}{}{}",
            STANDARD.encode(salt),
            STANDARD.encode(digest)
        );
        let hash = StoredHash::parse(&text).unwrap();
        assert!(hash.verify(b"s3cret"));
        assert!(!hash.verify(b"s3creT"));
    }

    #[test]
    fn other_formats_and_broken_hashes_are_refused() {
        assert_eq!(
            StoredHash::parse("{plain}_By842iQQVKSCLxVcJZWvw").unwrap_err(),
            HashError::Unsupported
        );
        for unsupported in ["{SHA}abc", "{MD5}abc", "secret", "", "$2x$10$abc"] {
            assert_eq!(
                StoredHash::parse(unsupported).unwrap_err(),
                HashError::Unsupported,
                "{unsupported}"
            );
        }
        for broken in [
            "{PBKDF2_STRETCH}10000$c2FsdA==",
            "{PBKDF2_STRETCH}0$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "{PBKDF2_STRETCH}x$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "{PBKDF2_STRETCH}1000001$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", // past ES's largest
            "{PBKDF2}10$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAA==",                  // salt under 8 bytes
            "{PBKDF2}10$AAAAAAAAAAA=$AAAA",                                  // key not whole halves
            "{SSHA256}short",
            "$2a$10$tooshort",
        ] {
            assert!(
                matches!(StoredHash::parse(broken), Err(HashError::Malformed(_))),
                "{broken}"
            );
        }
    }
}
