//! The request path as any normalising hop would read it, for the one decision that depends on
//! it: whether a request reaches the cluster's security APIs.
//!
//! The gateway forwards the path as the client wrote it, and a proxy, load balancer or the
//! cluster itself behind it may percent-decode it, resolve dot segments or collapse slashes. If
//! the gateway judged the raw text while a later hop acted on the normalised one,
//! `/x/../_security/user` would pass as an ordinary path and arrive as a security call made with
//! the gateway's own credential. So the check reads the path the way the most liberal hop would,
//! and a path with dot segments, which no Elasticsearch API uses and which hops resolve
//! differently, is refused outright. Hops can be chained, so percent-escapes are decoded until none
//! is left.

use std::borrow::Cow;

/// The security API prefixes, as path segments.
const SECURITY_PREFIXES: [&[&str]; 2] = [&["_security"], &["_xpack", "security"]];

/// What the path means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Under `/_security` or `/_xpack/security`, however spelled.
    Security,
    /// Anything else.
    Other,
}

/// Why a path is refused before anything else looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `.` or `..` segment, literal or percent-encoded.
    DotSegment,
}

/// Classifies a request path (without the query).
pub fn classify(raw: &str) -> Result<PathKind, PathError> {
    // The common path has nothing to decode or resolve: judge the text as it is.
    if is_plain(raw.as_bytes()) {
        // No `//` here, so at most one slash leads.
        let path = raw.strip_prefix('/').unwrap_or(raw);
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let security = under("_security") || under("_xpack/security");
        return Ok(if security {
            PathKind::Security
        } else {
            PathKind::Other
        });
    }
    let decoded = decode_fully(raw.as_bytes());
    let decoded: Cow<'_, str> = String::from_utf8_lossy(&decoded);
    // A decoded `%2F` separates segments too: some hops decode before they split.
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(kind_of(&segments.into_iter()))
}

/// The path percent-decoded until nothing decodes any more: two hops that each decode once read
/// `%252e` (or `%2%65`) as `.`, so the check reads it as the last of any number of such hops
/// would. One pass: a decoded byte that completes an escape with the bytes before it is decoded
/// at once, so a deeply nested escape costs no more than a plain one.
fn decode_fully(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(raw.len());
    for &byte in raw {
        out.push(byte);
        while let &[.., b'%', high, low] = out.as_slice() {
            let (Some(high), Some(low)) = (hex(high), hex(low)) else {
                break;
            };
            out.truncate(out.len() - 3);
            out.push(high << 4 | low);
        }
    }
    out
}

/// No `%`, no `//` and no `/.`: one pass over the bytes, as paths are short. Nor a `.` first:
/// an HTTP/2 `:path` need not start with `/`, and `../_security` is a dot segment too.
fn is_plain(path: &[u8]) -> bool {
    if path.first() == Some(&b'.') {
        return false;
    }
    let mut after_slash = false;
    for &byte in path {
        if byte == b'%' || (after_slash && (byte == b'/' || byte == b'.')) {
            return false;
        }
        after_slash = byte == b'/';
    }
    true
}

fn kind_of<'a, I: Iterator<Item = &'a str> + Clone>(segments: &I) -> PathKind {
    let security = SECURITY_PREFIXES.iter().any(|prefix| {
        segments
            .clone()
            .take(prefix.len())
            .eq(prefix.iter().copied())
    });
    if security {
        PathKind::Security
    } else {
        PathKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_paths_are_recognised_however_spelled() {
        for path in [
            "/_security",
            "/_security/",
            "/_security/user",
            "//_security/role",
            "/%5Fsecurity/user",
            "/%5fsecurity",
            "/_xpack/security/user",
            "/_xpack//security",
            "/_xpack%2Fsecurity/user",
            "///_xpack/security",
        ] {
            assert_eq!(classify(path), Ok(PathKind::Security), "{path}");
        }
    }

    #[test]
    fn other_paths_pass() {
        for path in [
            "/",
            "",
            "/_securityx",
            "/_cluster/health",
            "/index/_security",
            "/_xpack",
            "/_xpack/usage",
            "/logs-%2A/_search",
            "/a.b/_doc/1",
            "/.kibana/_search",
            "/..kibana",
        ] {
            assert_eq!(classify(path), Ok(PathKind::Other), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_refused_literal_or_encoded() {
        for path in [
            "/x/../_security/user",
            "/./_security",
            "/%2e/_security",
            "/%2E%2E/_security",
            "/index/./_search",
            "/index/..",
            "/a%2F..%2F_security",
        ] {
            assert_eq!(classify(path), Err(PathError::DotSegment), "{path}");
        }
    }

    /// Found by the `path` fuzz target: `%2%65` decodes once to `%2e`, which passed, and which
    /// the next hop that decodes reads as `.`; so does `%252e`. A path is judged as decoded
    /// until nothing decodes any more.
    #[test]
    fn escapes_that_decode_to_escapes_are_decoded_too() {
        for path in ["%2%65", "/%252e%252e/_security", "/a/%25%32%65", "/%25252e"] {
            assert_eq!(classify(path), Err(PathError::DotSegment), "{path}");
        }
        for path in [
            "/%255Fsecurity/user",
            "/_xpack%252Fsecurity",
            "/%2525255Fsecurity",
        ] {
            assert_eq!(classify(path), Ok(PathKind::Security), "{path}");
        }
        // Escapes that do not decode stay as they are.
        assert_eq!(classify("/100%25/_doc/%zz%"), Ok(PathKind::Other));
        assert_eq!(decode_fully(b"%%341%"), b"A%");
    }

    /// Found by the `path` fuzz target: a path whose first segment has no slash before it (an
    /// HTTP/2 `:path` may be `../_security/user`) took the fast path, where only `/.` marks a
    /// dot segment, and passed as an ordinary path.
    #[test]
    fn a_first_dot_segment_without_a_slash_is_refused() {
        for path in ["../_security/user", "./_security", ".", ".."] {
            assert_eq!(classify(path), Err(PathError::DotSegment), "{path}");
        }
        assert_eq!(classify(".kibana/_search"), Ok(PathKind::Other));
    }
}
