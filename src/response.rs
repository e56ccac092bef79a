//! Response bodies and the headers every locally produced answer carries.
//!
//! Forwarded responses stream the upstream's body untouched (`Incoming`); answers the gateway writes
//! itself are small JSON documents held in one `Bytes`. One `Either` type covers both so the
//! service never boxes a body on the hot path.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderName, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::body::Guarded;

/// The body type of every response the gateway sends.
pub type Body = Either<Guarded<Incoming>, Full<Bytes>>;

/// Elasticsearch clients (the official ones check it) refuse a server without this header.
pub static X_ELASTIC_PRODUCT: HeaderName = HeaderName::from_static("x-elastic-product");
static ELASTICSEARCH: HeaderValue = HeaderValue::from_static("Elasticsearch");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response as a node would send it: content type and product header set.
pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(X_ELASTIC_PRODUCT.clone(), ELASTICSEARCH.clone());
    response
}

/// Serialises `value`, indented when the caller asked for `?pretty`.
pub fn json_value(status: StatusCode, value: &serde_json::Value, pretty: bool) -> Response<Body> {
    json(status, Bytes::from(to_bytes(value, pretty)))
}

/// JSON text of `value`; serialising a `Value` cannot fail, so an empty object stands in for the
/// impossible error rather than a panic.
pub fn to_bytes(value: &serde_json::Value, pretty: bool) -> Vec<u8> {
    let out = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    out.unwrap_or_else(|_| b"{}".to_vec())
}
