//! Response bodies and the headers every locally produced answer carries (`X-Tokengate: gateway`
//! among them).
//!
//! Forwarded responses stream the upstream's body untouched (`Incoming`); answers the gateway writes
//! itself are small JSON documents held in one `Bytes`. One `Either` type covers both so the
//! service never boxes a body on the hot path.

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::message::body::{Answer, Guarded};

/// The body type of every response the gateway sends.
pub type Body = Either<Guarded<Answer>, Full<Bytes>>;

/// Elasticsearch clients (the official ones check it) refuse a server without this header.
pub static X_ELASTIC_PRODUCT: HeaderName = HeaderName::from_static("x-elastic-product");
static ELASTICSEARCH: HeaderValue = HeaderValue::from_static("Elasticsearch");
/// Marks an answer the gateway wrote itself, so an operator reading a client's trace can tell a
/// gateway 401 or 502 from the cluster's; forwarded responses have it removed, so the cluster
/// cannot claim it.
pub static X_TOKENGATE: HeaderName = HeaderName::from_static("x-tokengate");
static GATEWAY: HeaderValue = HeaderValue::from_static("gateway");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The three fields of every answer the gateway writes, hashed and placed once: a copy of the
/// map is a few pointer copies where three inserts hash three names.
static JSON_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(X_ELASTIC_PRODUCT.clone(), ELASTICSEARCH.clone());
    headers.insert(X_TOKENGATE.clone(), GATEWAY.clone());
    headers
});

/// A JSON response as a node would send it: content type and product header set.
pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    with_headers(status, body, JSON_HEADERS.clone())
}

/// The fields [`json`] sets, in its order, for an answer that carries more: a map built once
/// from this and cloned per answer keeps the hot ones (the 401's challenges) off the hash path.
pub fn json_headers() -> HeaderMap {
    JSON_HEADERS.clone()
}

/// A JSON response with `headers`, which start with [`json_headers`].
pub fn with_headers(status: StatusCode, body: Bytes, headers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether `text` is written in a JSON string as it is: no control character, quote or
/// backslash (serde_json escapes nothing else). Eight bytes per step, as the hot answers and
/// audit lines check what a client sent before copying it; the tail is the last eight bytes
/// again, or for a short text its bytes read in two overlapping halves, never a copy.
#[inline]
pub fn json_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    let len = bytes.len();
    if len < 8 {
        return !needs_escape(short_word(bytes));
    }
    let mut at = 0;
    while at + 8 <= len {
        if needs_escape(word_at(bytes, at)) {
            return false;
        }
        at += 8;
    }
    at == len || !needs_escape(word_at(bytes, len - 8))
}

/// The eight bytes of `bytes` from `at`, which has them.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A word holding every byte of `bytes` (fewer than eight), some twice, the rest spaces,
/// which need no escaping.
fn short_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    if len >= 4 {
        let half = |at: usize| {
            let mut half = [0; 4];
            half.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(half))
        };
        return half(0) | half(len - 4) << 32;
    }
    match bytes {
        [] => u64::from_le_bytes([b' '; 8]),
        [first, ..] => {
            let (middle, last) = (bytes[len / 2], bytes[len - 1]);
            u64::from_le_bytes([*first, middle, last, b' ', b' ', b' ', b' ', b' '])
        }
    }
}

/// Whether any of the eight bytes in `word` is below 0x20, `"` or `\`: the classic "has a byte
/// less than n" and "has a zero byte" tests, exact for whether any byte matches.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// Serialises `value`, indented when the caller asked for `?pretty`.
pub fn json_value(status: StatusCode, value: &serde_json::Value, pretty: bool) -> Response<Body> {
    json(status, Bytes::from(to_bytes(value, pretty)))
}

/// JSON text of `value`; serialising a `Value` cannot fail, so an empty object stands in for the
/// impossible error rather than a panic.
pub fn to_bytes(value: &serde_json::Value, pretty: bool) -> Vec<u8> {
    if !pretty {
        return serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    }
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, EsPretty::default());
    if serde::Serialize::serialize(value, &mut serializer).is_err() {
        return b"{ }\n".to_vec();
    }
    // Elasticsearch's REST channel asks for a line feed after a pretty document (`lfAtEnd`).
    out.push(b'\n');
    out
}

/// Jackson's `DefaultPrettyPrinter` as Elasticsearch configures it (`JsonXContentGenerator`): a
/// line feed and two spaces per level for objects *and* arrays, `" : "` between a key and its
/// value, and a single space inside an empty object or array (`{ }`, `[ ]`). Clients and scripts
/// that compare `?pretty` output with a node's see the same bytes.
#[derive(Debug, Default)]
struct EsPretty {
    /// Current nesting depth.
    depth: usize,
    /// Whether the innermost open object or array has had a member yet.
    has_value: bool,
}

impl EsPretty {
    fn indent<W: ?Sized + std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b"\n")?;
        for _ in 0..self.depth {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }

    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        token: &[u8],
    ) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        writer.write_all(token)
    }

    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        token: &[u8],
    ) -> std::io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        if self.has_value {
            self.indent(writer)?;
        } else {
            writer.write_all(b" ")?;
        }
        // The enclosing container (if any) now holds this value.
        self.has_value = true;
        writer.write_all(token)
    }

    fn member<W: ?Sized + std::io::Write>(
        &self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            writer.write_all(b",")?;
        }
        self.indent(writer)
    }
}

impl serde_json::ser::Formatter for EsPretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.member(writer, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.member(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b" : ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pretty(value: &serde_json::Value) -> String {
        String::from_utf8(to_bytes(value, true)).unwrap()
    }

    #[test]
    fn pretty_prints_like_jackson_in_elasticsearch() {
        let value = json!({"found": true, "list": [1, "a"], "empty": {}, "none": [], "nested": {"a": {"b": null}}});
        assert_eq!(
            pretty(&value),
            "{\n  \"found\" : true,\n  \"list\" : [\n    1,\n    \"a\"\n  ],\n  \"empty\" : { },\n  \"none\" : [ ],\n  \"nested\" : {\n    \"a\" : {\n      \"b\" : null\n    }\n  }\n}\n"
        );
    }

    #[test]
    fn empty_documents_keep_the_inner_space() {
        assert_eq!(pretty(&json!({})), "{ }\n");
        assert_eq!(pretty(&json!([])), "[ ]\n");
        assert_eq!(pretty(&json!([{}, []])), "[\n  { },\n  [ ]\n]\n");
    }

    #[test]
    fn plain_text_is_what_serde_json_leaves_unescaped() {
        let mut texts: Vec<String> = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '\u{7f}', '\u{2028}', '😀'])
            .flat_map(|c| {
                // Each character at every offset of texts from one byte to past two words.
                (1..=17).flat_map(move |len| {
                    (0..len).map(move |at| {
                        let mut text = "a".repeat(at);
                        text.push(c);
                        text.push_str(&"b".repeat(len - 1 - at));
                        text
                    })
                })
            })
            .collect();
        texts.extend(["".into(), "/".into(), "elastic/fleet-server".into()]);
        for text in texts {
            let escaped = serde_json::to_string(&text).unwrap();
            assert_eq!(
                json_plain(&text),
                escaped == format!("\"{text}\""),
                "{text:?}"
            );
        }
    }

    #[test]
    fn compact_output_is_unchanged() {
        assert_eq!(to_bytes(&json!({"a": [1, {}]}), false), br#"{"a":[1,{}]}"#);
    }
}
