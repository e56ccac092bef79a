//! Where a token lives in etcd and what its value holds.
//!
//! `<prefix>pepper` holds the cluster-wide pepper (32 hex digits), and each token is
//! `<prefix>tokens/<bucket>/<namespace>/<service>/<name>`, whose value is a small JSON record:
//! the peppered fingerprint, account, name and creation time, never the secret. Each running
//! gateway has a key of its own under `<prefix>replicas/` (see the replicas module).
//!
//! Keys carry their name, so "does this name exist" is one key and a create is one create-only
//! transaction. The two hex digits of bucket (a hash of the name, which is no secret) split the
//! set into 256 ranges: a starting gateway reads each range on its own, because etcd counts the
//! remaining keys on every page of one large paginated range, which makes that read quadratic.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::store::fingerprint::{Fingerprint, Pepper, FINGERPRINT_LEN, PEPPER_LEN};

pub(crate) const BUCKETS: usize = 256;

/// The keys under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    prefix: Vec<u8>,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    pub fn pepper_key(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"pepper"].concat()
    }

    /// Every token key starts with this.
    pub fn tokens(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"tokens/"].concat()
    }

    /// Every gateway's registration key starts with this (see the replicas module).
    pub fn replicas(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"replicas/"].concat()
    }

    pub fn token_key(&self, name: &str) -> Vec<u8> {
        let mut key = self.tokens();
        key.extend_from_slice(hex(&[bucket(name)]).as_bytes());
        key.push(b'/');
        key.extend_from_slice(name.as_bytes());
        key
    }

    /// `[start, end)` of bucket `index`.
    pub fn bucket(&self, index: u8) -> (Vec<u8>, Vec<u8>) {
        let mut start = self.tokens();
        start.extend_from_slice(hex(&[index]).as_bytes());
        start.push(b'/');
        let end = range_end(&start);
        (start, end)
    }

    /// The qualified name a token key stands for; `None` for a key that is not one.
    pub fn name_of<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        let rest = key.strip_prefix(self.prefix.as_slice())?;
        let rest = rest.strip_prefix(b"tokens/".as_slice())?;
        let (bucket, rest) = rest.split_at_checked(3)?;
        if bucket[2] != b'/' {
            return None;
        }
        std::str::from_utf8(rest)
            .ok()
            .filter(|name| !name.is_empty())
    }
}

/// The end of the range of keys that start with `prefix`, as etcd wants it.
pub(crate) fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only a prefix of 0xff bytes gets here: every key from it on.
    vec![0]
}

fn bucket(name: &str) -> u8 {
    crc32fast::hash(name.as_bytes()) as u8
}

/// What a token key holds.
#[derive(Serialize, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    fingerprint: Cow<'a, str>,
    #[serde(borrow)]
    account: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    created: u64,
}

/// The value stored for token `qualified` (`namespace/service/name`).
pub(crate) fn encode(qualified: &str, fp: &Fingerprint, created_ms: u64) -> Vec<u8> {
    let (account, name) = qualified.rsplit_once('/').unwrap_or(("", qualified));
    let record = Record {
        fingerprint: Cow::Owned(hex(fp)),
        account: Cow::Borrowed(account),
        name: Cow::Borrowed(name),
        created: created_ms,
    };
    // A struct of strings and a number always serializes.
    serde_json::to_vec(&record).unwrap_or_default()
}

/// The fingerprint in a stored value; `None` when the value is not a token record.
pub(crate) fn decode(value: &[u8]) -> Option<Fingerprint> {
    let record: Record<'_> = serde_json::from_slice(value).ok()?;
    unhex::<FINGERPRINT_LEN>(&record.fingerprint)
}

pub(crate) fn encode_pepper(pepper: &Pepper) -> Vec<u8> {
    hex(pepper).into_bytes()
}

pub(crate) fn decode_pepper(value: &[u8]) -> Option<Pepper> {
    unhex::<PEPPER_LEN>(std::str::from_utf8(value).ok()?)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Milliseconds since the Unix epoch, 0 if the clock is before it.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_key_names_its_token_and_falls_in_its_bucket() {
        let layout = Layout::new("/gw/");
        let key = layout.token_key("elastic/fleet-server/t1");
        assert_eq!(layout.name_of(&key), Some("elastic/fleet-server/t1"));
        assert!(key.starts_with(b"/gw/tokens/"));
        let inside = (0..=255u8).filter(|&b| {
            let (start, end) = layout.bucket(b);
            key >= start && key < end
        });
        assert_eq!(inside.count(), 1);
        assert_eq!(layout.name_of(b"/gw/pepper"), None);
        assert_eq!(layout.name_of(b"/gw/tokens/0"), None);
        assert_eq!(layout.name_of(b"/other/tokens/00/a"), None);
    }

    #[test]
    fn range_ends_follow_their_prefix() {
        assert_eq!(range_end(b"/gw/tokens/07/"), b"/gw/tokens/070");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), b"\0");
    }

    #[test]
    fn records_keep_the_fingerprint_and_never_the_secret() {
        let fp = [0xabu8; FINGERPRINT_LEN];
        let value = encode("elastic/fleet-server/t1", &fp, 1_700_000_000_000);
        let text = String::from_utf8(value.clone()).unwrap();
        assert!(
            text.contains("\"account\":\"elastic/fleet-server\""),
            "{text}"
        );
        assert!(text.contains("\"name\":\"t1\""), "{text}");
        assert_eq!(decode(&value), Some(fp));
        assert_eq!(decode(b"{}"), None);
        assert_eq!(decode(b"not json"), None);
        let short = br#"{"fingerprint":"ab","account":"a/b","name":"n","created":1}"#;
        assert_eq!(decode(short), None);
    }

    #[test]
    fn peppers_round_trip_as_hex() {
        let pepper = [0x5au8; PEPPER_LEN];
        assert_eq!(decode_pepper(&encode_pepper(&pepper)), Some(pepper));
        assert_eq!(decode_pepper(b"zz"), None);
        assert_eq!(decode_pepper(&[b'g'; 32]), None);
    }
}
