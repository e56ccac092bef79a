//! `FakeUpstream`: a real HTTP/1.1 server standing in for the Elasticsearch cluster. It records
//! every request it receives and answers with a handler chosen by the test; a handler that panics
//! is answered with a 500 and the panic is re-raised when the fake is dropped, so it cannot go
//! unnoticed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Bodies longer than this are recorded by length and checksum only.
const KEPT_BODY: usize = 1 << 20;

/// The body of every answer the fake gives.
pub type FakeBody = BoxBody<Bytes, Infallible>;
/// What a handler returns: the response, possibly after a while.
pub type Reply = BoxFuture<'static, Response<FakeBody>>;
type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// The body of the default answer.
pub const DEFAULT_BODY: &str = r#"{"cluster_name":"fake","status":"green"}"#;
/// An end-to-end header the default answer carries, to see it come back through the gateway.
pub const E2E_HEADER: &str = "x-fake-e2e";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body, when no longer than [`KEPT_BODY`]; empty otherwise.
    pub body: Bytes,
    /// Bytes received, however long the body was.
    pub body_len: u64,
    /// CRC-32 of the whole body, to check long bodies arrived intact.
    pub body_crc: u32,
}

impl Recorded {
    /// The single value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Body bytes received so far over all requests, for tests that wait on streaming.
    received: watch::Sender<u64>,
    panics: Mutex<Vec<String>>,
    handler: Handler,
}

/// A running fake cluster; stops (and reports handler panics) when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// Configures a [`FakeUpstream`] before it starts.
pub struct FakeUpstreamBuilder {
    handler: Handler,
}

impl FakeUpstream {
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            handler: Arc::new(|_| async { default_response() }.boxed()),
        }
    }

    /// A fake with the default answer.
    pub async fn start() -> FakeUpstream {
        Self::builder().start().await
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The only request received; fails the test if there were none or several.
    pub fn single_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one upstream request");
        requests.into_iter().next().unwrap()
    }

    /// Waits until at least `bytes` body bytes have arrived, failing the test after `deadline`.
    pub async fn wait_for_body_bytes(&self, bytes: u64, deadline: Duration) {
        let mut received = self.shared.received.subscribe();
        let reached = tokio::time::timeout(deadline, received.wait_for(|n| *n >= bytes)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "upstream received {} body bytes, not {bytes}, within {deadline:?}",
            *self.shared.received.borrow()
        );
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.accept.abort();
        let panics = std::mem::take(&mut *self.shared.panics.lock().unwrap());
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("fake upstream handler panicked: {panics:?}");
        }
    }
}

impl FakeUpstreamBuilder {
    /// Answers with `handler`, called once the whole request body has arrived.
    pub fn handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(&Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<FakeBody>> + Send + 'static,
    {
        self.handler = Arc::new(move |request| handler(request).boxed());
        self
    }

    /// Answers 200 with the request's own body and content type.
    pub fn echo(self) -> Self {
        self.handler(|request| {
            let mut response = Response::new(full(request.body.clone()));
            if let Some(kind) = request.headers.get(http::header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, kind.clone());
            }
            async move { response }
        })
    }

    /// Holds every request: tells `arrived` when one has come in, and answers it with the
    /// default response once `release` is notified.
    pub fn hold(self, arrived: &Arc<Notify>, release: &Arc<Notify>) -> Self {
        let (arrived, release) = (arrived.clone(), release.clone());
        self.handler(move |_| {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                arrived.notify_one();
                release.notified().await;
                default_response()
            }
        })
    }

    /// Answers with the default response, but only after `delay`.
    pub fn delay(self, delay: Duration) -> Self {
        self.handler(move |_| async move {
            tokio::time::sleep(delay).await;
            default_response()
        })
    }

    pub async fn start(self) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            received: watch::Sender::new(0),
            panics: Mutex::new(Vec::new()),
            handler: self.handler,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeUpstream {
            addr,
            shared,
            accept,
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(shared.clone(), request));
            // A peer that goes away mid-request is not the fake's failure.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<FakeBody>, hyper::Error> {
    let (parts, mut body) = request.into_parts();
    let mut kept = BytesMut::new();
    let mut body_len = 0u64;
    let mut crc = crc32fast::Hasher::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        body_len += data.len() as u64;
        crc.update(&data);
        if kept.len() + data.len() <= KEPT_BODY {
            kept.extend_from_slice(&data);
        }
        shared.received.send_modify(|n| *n += data.len() as u64);
    }
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: if body_len as usize <= KEPT_BODY {
            kept.freeze()
        } else {
            Bytes::new()
        },
        body_len,
        body_crc: crc.finalize(),
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let handler = shared.handler.clone();
    let outcome = AssertUnwindSafe(async move { handler(&recorded).await })
        .catch_unwind()
        .await;
    Ok(outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned());
        shared.panics.lock().unwrap().push(message);
        let mut response = Response::new(full("fake upstream handler panicked"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    }))
}

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
    let mut response = Response::new(full(DEFAULT_BODY));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    headers.insert(E2E_HEADER, HeaderValue::from_static("kept"));
    response
}
