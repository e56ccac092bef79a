//! Elasticsearch's service-token wire format: encoding, decoding, names and secrets.
//!
//! `value = base64(00 01 00 01 || "ns/svc/name" || ":" || secret)`, standard alphabet, unpadded
//! when issued, either form accepted.
//!
//! Threat model: the decoder sees attacker-controlled bytes on every request. It caps the input
//! length before decoding, decodes into a caller's stack buffer, and answers `None` for anything
//! malformed; it never allocates or panics.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;

use crate::identity::{AccountId, TokenName};

/// The version prefix Elasticsearch puts before the qualified name.
const PREFIX: [u8; 4] = [0, 1, 0, 1];

/// Longest token value considered; anything longer is not a token we issued.
pub const MAX_VALUE_LEN: usize = 1024;
/// Room for the decoded form of the longest accepted value.
pub const MAX_DECODED_LEN: usize = MAX_VALUE_LEN / 4 * 3;

/// Issues unpadded, accepts padded and unpadded.
const STANDARD_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded token, borrowing from the caller's buffer.
#[derive(Clone, Copy)]
pub struct ServiceToken<'a> {
    /// `namespace/service/name`, the store's key.
    pub qualified: &'a str,
    /// `namespace/service`.
    pub account: &'a str,
    pub namespace: &'a str,
    pub service: &'a str,
    /// The token's own name.
    pub name: &'a str,
    /// Secret bytes as sent.
    pub secret: &'a [u8],
}

impl std::fmt::Debug for ServiceToken<'_> {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceToken({})", self.qualified)
    }
}

/// Decodes a bearer value into `buf`. `None` when it is not a well-formed service token.
pub fn decode<'a>(value: &[u8], buf: &'a mut [u8; MAX_DECODED_LEN]) -> Option<ServiceToken<'a>> {
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    let len = STANDARD_INDIFFERENT.decode_slice(value, buf).ok()?;
    let bytes = buf.get(..len)?;
    let rest = bytes.strip_prefix(&PREFIX)?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let (qualified, secret) = (rest.get(..colon)?, rest.get(colon + 1..)?);
    let qualified = std::str::from_utf8(qualified).ok()?;
    let (account, name) = qualified.rsplit_once('/')?;
    let (namespace, service) = account.split_once('/')?;
    if namespace.is_empty() || service.is_empty() || service.contains('/') || name.is_empty() {
        return None;
    }
    Some(ServiceToken {
        qualified,
        account,
        namespace,
        service,
        name,
        secret,
    })
}

/// The value a client presents for token `name` of `account` with `secret`.
pub fn encode(account: &AccountId, name: &TokenName, secret: &str) -> String {
    encode_raw(account.as_str(), name.as_str(), secret)
}

/// [`encode`] from plain strings, for values no typed name can express (tests of malformed input).
pub fn encode_raw(account: &str, name: &str, secret: &str) -> String {
    let mut raw = Vec::with_capacity(PREFIX.len() + account.len() + name.len() + secret.len() + 2);
    raw.extend_from_slice(&PREFIX);
    raw.extend_from_slice(account.as_bytes());
    raw.push(b'/');
    raw.extend_from_slice(name.as_bytes());
    raw.push(b':');
    raw.extend_from_slice(secret.as_bytes());
    STANDARD_INDIFFERENT.encode(raw)
}

/// A fresh secret: 16 CSPRNG bytes shaped as a version-4 UUID, base64url without padding (22
/// characters), as Elasticsearch's `randomBase64UUIDSecureString` makes it.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A generated token name: `token_` and a 20-character URL-safe id; never starts with `_`.
pub fn generate_name() -> String {
    let mut bytes = [0u8; 15];
    OsRng.fill_bytes(&mut bytes);
    format!("token_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_elasticsearch() {
        let value = encode_raw("elastic/fleet-server", "token1", "7TFdaSD");
        assert!(value.starts_with("AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL3Rva2VuMTo"));
        assert!(!value.ends_with('='));
    }

    #[test]
    fn round_trips_padded_and_unpadded() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 22);
        let value = encode_raw("elastic/kibana", "t", &secret);
        let mut buf = [0u8; MAX_DECODED_LEN];
        let token = decode(value.as_bytes(), &mut buf).unwrap();
        assert_eq!(token.qualified, "elastic/kibana/t");
        assert_eq!(token.account, "elastic/kibana");
        assert_eq!(token.name, "t");
        assert_eq!(token.secret, secret.as_bytes());
        let mut padded = value.clone();
        while !padded.len().is_multiple_of(4) {
            padded.push('=');
        }
        let mut buf = [0u8; MAX_DECODED_LEN];
        assert_eq!(decode(padded.as_bytes(), &mut buf).unwrap().name, "t");
    }

    #[test]
    fn rejects_malformed_values() {
        let mut buf = [0u8; MAX_DECODED_LEN];
        let b64 = |raw: &[u8]| STANDARD_INDIFFERENT.encode(raw);
        for bad in [
            "!!!".to_owned(),
            b64(b"elastic/kibana/t:secret"),          // no prefix
            b64(b"\x00\x01\x00\x01elastic/kibana/t"), // no colon
            b64(b"\x00\x01\x00\x01elastic/t:secret"), // two parts
            b64(b"\x00\x01\x00\x01a/b/c/d:secret"),   // four parts
            b64(b"\x00\x01\x00\x01/b/c:secret"),      // empty namespace
            b64(b"\x00\x01\x00\x01\xff/b/c:secret"),  // not UTF-8
            "A".repeat(MAX_VALUE_LEN + 4),
        ] {
            assert!(decode(bad.as_bytes(), &mut buf).is_none(), "{bad}");
        }
    }

    #[test]
    fn generated_names_follow_the_rule() {
        let generated = generate_name();
        assert_eq!(generated.len(), 26);
        assert!(crate::identity::is_valid_token_name(&generated));
    }
}
