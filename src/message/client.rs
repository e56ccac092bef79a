//! What the gateway knows about a client connection, computed once when it is accepted and
//! handed to every request on it: who is calling (for limits, logs and the forwarding headers)
//! and what the connection's byte scan has seen.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;
use subtle::{Choice, ConstantTimeEq};

use crate::identity::TokenIdentity;

/// What the gateway knows about the client connection, computed once per connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The connection's remote address: the unit of every per-client limit.
    pub peer: SocketAddr,
    /// The peer's IP as a header value, ready to put in `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: HeaderValue,
    /// The peer is a configured trusted proxy: its forwarding headers are kept and extended.
    pub trusted: bool,
    /// Raised by the connection's byte scan when a head carried both `Content-Length` and
    /// `Transfer-Encoding` (see the listener's `scan::ScanIo`).
    pub ambiguous_length: Arc<AtomicBool>,
    /// Raised once the TLS handshake accepted a client certificate (the verifier checked it
    /// against the listener's client CA): the admin listener lets such a client in without a
    /// password.
    pub client_certificate: Arc<AtomicBool>,
    /// The last bearer value checked on this connection and its verdict.
    pub bearer: BearerMemo,
}

impl ClientInfo {
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        trusted: bool,
        ambiguous_length: Arc<AtomicBool>,
    ) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        ClientInfo {
            peer,
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            trusted,
            ambiguous_length,
            client_certificate: Arc::default(),
            bearer: BearerMemo::default(),
        }
    }
}

/// The last bearer value a connection presented and what it was, so a keep-alive client
/// repeating its token is neither fingerprinted nor decoded again on every request (the hash
/// alone was a sixth of a proxied request's work). A verdict holds only at the token sets'
/// version it was reached at: any change (a revocation above all) makes it stale.
///
/// The value is held as the connection's own buffers held it; it is compared in constant time.
#[derive(Default)]
pub struct BearerMemo(Mutex<Option<Verdict>>);

struct Verdict {
    value: Box<[u8]>,
    version: u64,
    outcome: Recalled,
}

/// What a connection's memo knew of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recalled {
    /// A token of the store, with its identity.
    Stored(TokenIdentity),
    /// It failed; with the account and token name it decodes to, when it decodes to a service
    /// token (its 401 names them), so a client repeating it is not decoded again either.
    Failed(Option<Claimed>),
}

/// The account and token name a failed bearer value claims. Shared: a client repeating the
/// value gets a clone of them in each 401, a count rather than two allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub account: Arc<str>,
    pub name: Arc<str>,
}

impl BearerMemo {
    /// What `value` was at `version`; `None` when it was not the last value checked at that
    /// version.
    pub fn recall(&self, value: &[u8], version: u64) -> Option<Recalled> {
        let memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = memo.as_ref()?;
        let same = verdict.version == version && same_value(&verdict.value, value);
        if !same {
            return None;
        }
        Some(verdict.outcome.clone())
    }

    /// Remembers `value`'s verdict at `version`, in place of the last one. A value as long as
    /// the last is copied into its buffer: a client rotating its tokens (load generators do,
    /// and every token of one format has one length) costs no allocation per request, and the
    /// last value is overwritten rather than left in freed memory.
    pub fn remember(&self, value: &[u8], version: u64, outcome: Recalled) {
        let mut memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match memo.as_mut() {
            Some(verdict) if verdict.value.len() == value.len() => {
                verdict.value.copy_from_slice(value);
                verdict.version = version;
                verdict.outcome = outcome;
            }
            _ => {
                *memo = Some(Verdict {
                    value: value.into(),
                    version,
                    outcome,
                })
            }
        }
    }
}

/// Whether two values are equal, in time that depends on their length only: a connection may
/// carry several clients' requests (a proxy's pooled connection), and the memo holds the last
/// one's token. Compared eight bytes at a time: byte by byte, subtle's comparison was a sixth
/// of the gateway's own work on a proxied request.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut equal = Choice::from(1);
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a_words.remainder(), b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        equal &= word(x).ct_eq(&word(y));
    }
    equal &= tail(a_tail).ct_eq(&tail(b_tail));
    equal.into()
}

/// Eight bytes as one word: read in place, where copying each into a buffer first called
/// `memcpy` once per word.
fn word(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_le_bytes)
}

/// The last bytes (fewer than eight) as one word, zero-padded.
fn tail(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |word, &byte| (word << 8) | u64::from(byte))
}

impl fmt::Debug for BearerMemo {
    /// The value is a credential: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerMemo")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_same_only_when_every_byte_is() {
        let value = b"AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL3Rva2VuMTpzZWNyZXQ";
        assert!(same_value(value, value));
        assert!(same_value(b"", b""));
        for at in 0..value.len() {
            let mut other = value.to_vec();
            other[at] ^= 1;
            assert!(!same_value(value, &other), "byte {at}");
            assert!(!same_value(value, &value[..at]), "prefix of {at}");
        }
        // Zero padding of the last word does not make a shorter value equal.
        assert!(!same_value(b"abc\0", b"abc"));
    }

    #[test]
    fn a_verdict_holds_for_the_same_value_at_the_same_version_only() {
        use crate::identity::{AccountId, TokenName, TokenSource};
        let identity = TokenIdentity {
            account: AccountId::parse("elastic/fleet-server").unwrap(),
            name: TokenName::new("t1").unwrap(),
            source: TokenSource::Index,
        };
        let memo = BearerMemo::default();
        assert_eq!(memo.recall(b"abc", 1), None);
        memo.remember(b"abc", 1, Recalled::Stored(identity.clone()));
        assert_eq!(memo.recall(b"abc", 1), Some(Recalled::Stored(identity)));
        assert_eq!(memo.recall(b"abc", 2), None, "the token sets changed");
        assert_eq!(memo.recall(b"abd", 1), None);
        assert_eq!(memo.recall(b"ab", 1), None);
        let claimed = Claimed {
            account: "elastic/fleet-server".into(),
            name: "t2".into(),
        };
        memo.remember(b"xyz", 2, Recalled::Failed(Some(claimed.clone())));
        assert_eq!(
            memo.recall(b"xyz", 2),
            Some(Recalled::Failed(Some(claimed)))
        );
        assert_eq!(memo.recall(b"abc", 1), None, "only the last value is kept");
        // A value of another length takes a buffer of its own.
        memo.remember(b"longer", 3, Recalled::Failed(None));
        assert_eq!(memo.recall(b"longer", 3), Some(Recalled::Failed(None)));
        assert_eq!(memo.recall(b"xyz", 2), None);
        assert_eq!(memo.recall(b"longe", 3), None);
    }
}
