//! What a fake node answers with: bodies whole or streamed, its usual node-like answer, and the
//! `_nodes/http` list.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// The body of every answer the fake gives.
pub type FakeBody = BoxBody<Bytes, Infallible>;

/// The body of the default answer.
pub const DEFAULT_BODY: &str = r#"{"cluster_name":"fake","status":"green"}"#;
/// An end-to-end header the default answer carries, to see it come back through the gateway.
pub const E2E_HEADER: &str = "x-fake-e2e";

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> FakeBody {
    Full::new(bytes.into()).boxed()
}

/// A body fed chunk by chunk through `chunks`; it ends when the sender is dropped.
pub fn streaming(chunks: mpsc::Receiver<Bytes>) -> FakeBody {
    let frames = receiver_stream(chunks).map(|chunk| Ok(Frame::data(chunk)));
    BodyExt::boxed(StreamBody::new(frames))
}

/// The chunks sent through `rx`, as a stream that ends when every sender is gone.
pub fn receiver_stream(rx: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// The fake's usual answer, shaped like a node's: JSON, product header, one end-to-end header.
pub fn default_response() -> Response<FakeBody> {
    let mut response = node_json(DEFAULT_BODY);
    response
        .headers_mut()
        .insert(E2E_HEADER, HeaderValue::from_static("kept"));
    response
}

/// A 200 with `body` as a node sends it: JSON, and the product header Elasticsearch's clients
/// refuse a 2xx answer without (7.14 and later).
pub fn node_json(body: impl Into<Bytes>) -> Response<FakeBody> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

/// A JSON answer with `status`.
pub(super) fn json(status: StatusCode, body: String) -> Response<FakeBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /_nodes/http` as a node answers it, listing `listed` as the nodes' publish addresses.
pub(super) fn nodes_answer(listed: &[SocketAddr]) -> String {
    let nodes: Vec<String> = listed
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            format!(
                r#""node{i}":{{"name":"n{i}","roles":["data","ingest"],"http":{{"publish_address":"{addr}"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"_nodes":{{"total":{}}},"cluster_name":"fake","nodes":{{{}}}}}"#,
        listed.len(),
        nodes.join(",")
    )
}
