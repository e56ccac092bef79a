//! Request shapes refused before anything else reads a request, as a hardened proxy (nginx ≥ 1.21)
//! or Elasticsearch's own HTTP layer refuses them: methods that have no business crossing a
//! proxy, ambiguous or missing `Host`, request lines and header blocks past the limits, and a
//! head the connection's byte scan (the listener's `scan::ScanIo`) saw carry both
//! `Content-Length` and `Transfer-Encoding`.
//!
//! hyper has already parsed the request; these rules close what its parser allows.

use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{HOST, TRANSFER_ENCODING};
use http::{Method, Request, Version};

use super::error::ApiError;
use crate::config::HttpLimits;

/// Methods forwarded to the cluster. `TRACE` would reflect the request (credentials included)
/// and `CONNECT` would ask the gateway to open a tunnel: neither is ever forwarded.
pub const FORWARDED_METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// Bytes a header line adds besides its name and value: `": "` and CRLF.
const HEADER_LINE_OVERHEAD: usize = 4;
/// `" HTTP/1.1\r\n"` after the request target.
const REQUEST_LINE_OVERHEAD: usize = 11;

/// Checks what must hold before the request is routed. `ambiguous` is the connection's
/// byte-scan flag (`None` for HTTP/2, which has no such framing).
pub fn check<B>(
    request: &Request<B>,
    limits: &HttpLimits,
    ambiguous: Option<&AtomicBool>,
) -> Result<(), ApiError> {
    // One pass over the fields for everything asked of them: a lookup hashes the name it looks
    // for, where a comparison with a standard name compares two small integers.
    let (mut header_bytes, mut hosts, mut transfer_encoding) = (0, 0_usize, false);
    for (name, value) in request.headers() {
        header_bytes += name.as_str().len() + value.len() + HEADER_LINE_OVERHEAD;
        hosts += usize::from(*name == HOST);
        transfer_encoding |= *name == TRANSFER_ENCODING;
    }
    if transfer_encoding && ambiguous.is_some_and(|flag| flag.load(Ordering::Acquire)) {
        return Err(ApiError::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let method = request.method();
    if method == Method::TRACE || method == Method::CONNECT {
        return Err(ApiError::MethodNotAllowed {
            uri: target(request).to_owned(),
            method: method.clone(),
            allowed: FORWARDED_METHODS,
        });
    }
    let target = target(request);
    if method.as_str().len() + 1 + target.len() + REQUEST_LINE_OVERHEAD > limits.max_request_line {
        return Err(ApiError::UriTooLong {
            limit: limits.max_request_line,
        });
    }
    if header_bytes > limits.max_header_size {
        return Err(ApiError::HeadersTooLarge {
            limit: limits.max_header_size,
        });
    }
    match (request.version(), hosts) {
        (_, 2..) => Err(ApiError::BadFraming("more than one Host header")),
        // HTTP/1.1 requires Host (RFC 9112 §3.2); h2 names the host in `:authority`.
        (Version::HTTP_11, 0) if request.uri().authority().is_none() => {
            Err(ApiError::BadFraming("missing Host header"))
        }
        _ => Ok(()),
    }
}

/// The request target as the client wrote it (path and query), as Elasticsearch quotes it.
pub fn target<B>(request: &Request<B>) -> &str {
    request.uri().path_and_query().map_or("/", |pq| pq.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            max_request_line: 64,
            max_header_size: 100,
            max_api_body: 0,
            client_body_timeout: std::time::Duration::from_secs(1),
        }
    }

    fn request(method: Method, target: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(target);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn trace_and_connect_are_refused() {
        for method in [Method::TRACE, Method::CONNECT] {
            let error = check(&request(method, "/", &["h"]), &limits(), None).unwrap_err();
            assert_eq!(error.status(), 405);
        }
        assert!(check(&request(Method::GET, "/", &["h"]), &limits(), None).is_ok());
    }

    #[test]
    fn host_must_be_there_once() {
        let error = check(&request(Method::GET, "/", &[]), &limits(), None).unwrap_err();
        assert_eq!(error, ApiError::BadFraming("missing Host header"));
        let error = check(&request(Method::GET, "/", &["a", "b"]), &limits(), None).unwrap_err();
        assert_eq!(error, ApiError::BadFraming("more than one Host header"));
        let mut old = request(Method::GET, "/", &[]);
        *old.version_mut() = Version::HTTP_10;
        assert!(check(&old, &limits(), None).is_ok());
        let mut h2 = request(Method::GET, "https://gw.example/", &[]);
        *h2.version_mut() = Version::HTTP_2;
        assert!(check(&h2, &limits(), None).is_ok());
    }

    #[test]
    fn long_lines_and_header_blocks_are_refused_with_their_statuses() {
        let long = format!("/{}", "a".repeat(60));
        let error = check(&request(Method::GET, &long, &["h"]), &limits(), None).unwrap_err();
        assert_eq!(error.status(), 414);
        let big = "v".repeat(100);
        let error = check(&request(Method::GET, "/", &[&big]), &limits(), None).unwrap_err();
        assert_eq!(error.status(), 431);
    }
}
