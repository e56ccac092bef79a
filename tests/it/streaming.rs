//! Bodies stream through the gateway both ways: each side sees the first bytes before the
//! other has sent the last ones.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::upstream::{default_response, receiver_stream, streaming};
use crate::common::{FakeUpstream, TestGateway, FLEET};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;
use tokio::sync::mpsc;

const CHUNK: usize = 1 << 20;
/// How long the other side may take to see the first chunk before the test calls it buffering.
const FIRST_BYTES: Duration = Duration::from_secs(10);

/// Chunk `i` of a test body: distinct bytes per chunk, so reordering would change the CRC.
fn chunk(i: usize) -> Bytes {
    let mut data = vec![0u8; CHUNK];
    for (j, byte) in data.iter_mut().enumerate() {
        *byte = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
    }
    Bytes::from(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_body_is_streamed_not_buffered() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let chunks = 64;
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let body = reqwest::Body::wrap_stream(receiver_stream(rx).map(Ok::<_, Infallible>));
    let request = gw
        .with_token(Method::POST, "/_bulk", &value)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send();
    let pending = tokio::spawn(request);
    let mut crc = crc32fast::Hasher::new();
    let first = chunk(0);
    crc.update(&first);
    tx.send(first).await.unwrap();
    // Only once the upstream holds bytes of the first chunk does the client send the rest; a
    // gateway that buffered the whole body would never get here.
    upstream.wait_for_body_bytes(1, FIRST_BYTES).await;
    for i in 1..chunks {
        let next = chunk(i);
        crc.update(&next);
        tx.send(next).await.unwrap();
    }
    drop(tx);
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.single_request();
    assert_eq!(seen.body_len, (chunks * CHUNK) as u64);
    assert_eq!(seen.body_crc, crc.finalize());
    assert_eq!(seen.header("content-type"), Some("application/x-ndjson"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_body_is_streamed_not_buffered() {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let slot = Arc::new(Mutex::new(Some(rx)));
    let upstream = FakeUpstream::builder()
        .handler(move |_| {
            let rx = slot
                .lock()
                .unwrap()
                .take()
                .expect("one streaming request only");
            async move {
                let (parts, _) = default_response().into_parts();
                http::Response::from_parts(parts, streaming(rx))
            }
        })
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;
    let value = gw.create_token(FLEET, "t1").await;
    let mut expected = crc32fast::Hasher::new();
    let first = chunk(0);
    expected.update(&first);
    tx.send(first).await.unwrap();

    let mut response = gw
        .with_token(Method::GET, "/big/_search", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[crate::common::upstream::E2E_HEADER],
        "kept"
    );
    // The client must see the start of the body while the upstream still holds the rest.
    let start = tokio::time::timeout(FIRST_BYTES, response.chunk())
        .await
        .expect("no body bytes reached the client while the upstream was still sending")
        .unwrap()
        .unwrap();
    assert!(!start.is_empty());
    let mut received = crc32fast::Hasher::new();
    received.update(&start);
    let mut total = start.len();

    let chunks = 32;
    let feeder = tokio::spawn(async move {
        for i in 1..chunks {
            let next = chunk(i);
            expected.update(&next);
            tx.send(next).await.unwrap();
        }
        expected.finalize()
    });
    while let Some(piece) = response.chunk().await.unwrap() {
        received.update(&piece);
        total += piece.len();
    }
    assert_eq!(total, chunks * CHUNK);
    assert_eq!(received.finalize(), feeder.await.unwrap());
}
