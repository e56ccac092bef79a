//! Connection limits against a real gateway over raw sockets: per client address, the first
//! request's deadline, and the global limit (idle connections make room, busy ones do not).
//!
//! Every wait is bounded; the only sleeps are idle periods under test, never synchronisation.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::tls::client::TlsClient;
use crate::common::tls::{tls_section, Ca};
use crate::common::upstream::default_response;
use crate::common::{basic_elastic, eventually_get, FakeUpstream, TestGateway, DEADLINE};
use futures_util::future::select_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// A client socket bound to `ip` (any of 127.0.0.0/8 is local on loopback) connected to `addr`.
async fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    timeout(DEADLINE, socket.connect(addr))
        .await
        .expect("connect did not finish in time")
        .unwrap()
}

/// Sends `GET /` as `elastic` and reads the answer's status; `None` when the connection is
/// closed first.
async fn get(stream: &mut TcpStream) -> Option<u16> {
    let request = format!(
        "GET / HTTP/1.1\r\nhost: gateway\r\nauthorization: {}\r\n\r\n",
        basic_elastic()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    timeout(DEADLINE, read_response(stream))
        .await
        .expect("no answer and no close in time")
}

/// One response with a `content-length` body off a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, &mut bytes).await?;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("answer without content-length: {head}"));
    while bytes.len() < head_end + length {
        read_more(stream, &mut bytes).await?;
    }
    Some(status)
}

async fn read_more(stream: &mut TcpStream, bytes: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            bytes.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Everything the gateway sends until it closes the connection; fails the test if it does not
/// close within `bound`.
async fn until_closed(stream: &mut TcpStream, bound: Duration) -> Vec<u8> {
    let mut bytes = Vec::new();
    let closed = timeout(bound, async {
        while read_more(stream, &mut bytes).await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "still open after {bound:?}");
    bytes
}

/// Asserts `bytes` are the gateway's 429 refusal whose reason mentions `key`.
fn assert_refusal(bytes: &[u8], key: &str) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["type"], "es_rejected_execution_exception");
    let reason = json["error"]["reason"].as_str().unwrap();
    assert!(reason.contains(key), "{reason}");
}

#[tokio::test]
async fn an_address_over_its_limit_is_refused_while_others_are_served() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nmax_connections_per_ip = 4\n")
        .build()
        .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from("127.0.0.1", gw.addr).await;
        assert_eq!(get(&mut stream).await, Some(200));
        held.push(stream);
    }

    let mut fifth = connect_from("127.0.0.1", gw.addr).await;
    let refused = until_closed(&mut fifth, DEADLINE).await;
    assert_refusal(&refused, "max_connections_per_ip");

    let mut other = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(get(&mut other).await, Some(200));
    for stream in &mut held {
        assert_eq!(
            get(stream).await,
            Some(200),
            "admitted connections keep working"
        );
    }

    // Closing one gives its address a slot back, as soon as the gateway has seen the close.
    drop(held.pop());
    eventually_get("a slot to come back for 127.0.0.1", DEADLINE, || async {
        let mut stream = connect_from("127.0.0.1", gw.addr).await;
        match get(&mut stream).await {
            Some(200) => Ok(stream),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_request_timeout() {
    let upstream = FakeUpstream::start().await;
    // Long enough that a loaded machine still delivers a first request in time; the idle
    // period below is 2.5 times longer.
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nfirst_request_timeout = \"1s\"\n")
        .build()
        .await;
    let mut silent = connect_from("127.0.0.1", gw.addr).await;
    let mut partial = connect_from("127.0.0.1", gw.addr).await;
    partial
        .write_all(b"GET / HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    let mut served = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(get(&mut served).await, Some(200));

    // The header timeout (60 s) would keep both open; the first-request deadline does not.
    let bound = Duration::from_secs(5);
    assert!(until_closed(&mut silent, bound).await.is_empty());
    assert!(until_closed(&mut partial, bound).await.is_empty());

    // Idle well past the deadline after a request: keep-alive, bounded by header_timeout only.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(&mut served).await, Some(200));
}

/// After a request, `header_timeout` bounds how long a connection may go without one: an idle
/// keep-alive connection and one that stalls half-way through its next head are closed, and a
/// connection that keeps sending requests is not.
#[tokio::test]
async fn header_timeout_closes_quiet_and_stalled_connections_only() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nheader_timeout = \"1s\"\n")
        .build()
        .await;
    let mut idle = connect_from("127.0.0.1", gw.addr).await;
    let mut stalled = connect_from("127.0.0.1", gw.addr).await;
    let mut busy = connect_from("127.0.0.1", gw.addr).await;
    for stream in [&mut idle, &mut stalled, &mut busy] {
        assert_eq!(get(stream).await, Some(200));
    }
    stalled
        .write_all(b"GET / HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    // Requests every 250 ms for twice the timeout: each one keeps the connection.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get(&mut busy).await, Some(200));
    }
    let bound = Duration::from_secs(5);
    assert!(until_closed(&mut idle, bound).await.is_empty());
    assert!(until_closed(&mut stalled, bound).await.is_empty());
}

/// HTTP/2 frames by hand: a 9-byte header, then the payload.
mod h2 {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const ACK: u8 = 0x1;

    pub fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let length = payload.len().to_be_bytes();
        let mut bytes = vec![length[5], length[6], length[7], kind, flags, 0, 0, 0, 0];
        bytes.extend_from_slice(payload);
        bytes
    }
}

/// Reads HTTP/2 frames until one of `kind` with `flags` set; `None` when the connection closes.
async fn h2_wait_for(stream: &mut TcpStream, kind: u8, flags: u8) -> Option<()> {
    loop {
        let mut header = [0u8; 9];
        stream.read_exact(&mut header).await.ok()?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.ok()?;
        if header[3] == kind && header[4] & flags == flags {
            return Some(());
        }
    }
}

#[tokio::test]
async fn an_http2_client_that_greeted_may_idle_before_its_first_stream() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nfirst_request_timeout = \"1s\"\n")
        .build()
        .await;
    let mut preface_only = connect_from("127.0.0.1", gw.addr).await;
    preface_only.write_all(h2::PREFACE).await.unwrap();

    let mut greeted = connect_from("127.0.0.1", gw.addr).await;
    let mut greeting = h2::PREFACE.to_vec();
    greeting.extend(h2::frame(h2::SETTINGS, 0, &[]));
    greeted.write_all(&greeting).await.unwrap();
    let settings = timeout(DEADLINE, h2_wait_for(&mut greeted, h2::SETTINGS, 0)).await;
    assert_eq!(settings.unwrap(), Some(()), "the server's SETTINGS");
    greeted
        .write_all(&h2::frame(h2::SETTINGS, h2::ACK, &[]))
        .await
        .unwrap();

    let bound = Duration::from_secs(5);
    until_closed(&mut preface_only, bound).await;

    // Idle well past the deadline, then still answered.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    greeted
        .write_all(&h2::frame(h2::PING, 0, b"tokengat"))
        .await
        .unwrap();
    let pong = timeout(DEADLINE, h2_wait_for(&mut greeted, h2::PING, h2::ACK)).await;
    assert_eq!(pong.unwrap(), Some(()), "PING answered after idling");
}

#[tokio::test]
async fn at_the_limit_a_new_connection_takes_the_place_of_an_idle_one() {
    let upstream = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nmax_connections = 3\n")
        .build()
        .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", gw.addr).await;
        assert_eq!(get(&mut stream).await, Some(200));
        idle.push(stream);
    }

    let mut newcomer = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(get(&mut newcomer).await, Some(200));

    // Exactly one idle connection was closed to make room; the others still work.
    let closes = idle
        .iter_mut()
        .map(|stream| Box::pin(until_closed(stream, DEADLINE)))
        .collect::<Vec<_>>();
    let (bytes, evicted, _) = select_all(closes).await;
    assert!(
        bytes.is_empty(),
        "an idle HTTP/1 connection closes without a word"
    );
    idle.remove(evicted);
    for stream in &mut idle {
        assert_eq!(get(stream).await, Some(200));
    }
    assert_eq!(get(&mut newcomer).await, Some(200));
}

#[tokio::test]
async fn at_the_limit_with_every_connection_busy_a_new_one_is_refused_at_once() {
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let upstream = FakeUpstream::builder()
        .handler(move |_| {
            let (arrived_tx, mut released) = (arrived_tx.clone(), released.clone());
            async move {
                let _ = arrived_tx.send(());
                let _ = released.wait_for(|released| *released).await;
                default_response()
            }
        })
        .start()
        .await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config("[server]\nmax_connections = 3\n")
        .build()
        .await;
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", gw.addr).await;
        let request = format!(
            "GET / HTTP/1.1\r\nhost: gateway\r\nauthorization: {}\r\n\r\n",
            basic_elastic()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        busy.push(stream);
    }
    for _ in 0..3 {
        let reached = timeout(DEADLINE, arrived.recv()).await;
        assert!(
            matches!(reached, Ok(Some(()))),
            "a request did not reach the upstream"
        );
    }

    let mut refused = connect_from("127.0.0.2", gw.addr).await;
    let bytes = until_closed(&mut refused, DEADLINE).await;
    assert_refusal(&bytes, "max_connections");

    release.send_replace(true);
    for stream in &mut busy {
        let answer = timeout(DEADLINE, read_response(stream)).await.unwrap();
        assert_eq!(answer, Some(200));
    }
}

#[tokio::test]
async fn over_tls_a_refused_or_silent_connection_is_closed_without_a_word() {
    let upstream = FakeUpstream::start().await;
    let ca = Ca::root("connection limits test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server().write(dir.path(), "server");
    let limits = "[server]\nmax_connections_per_ip = 1\nfirst_request_timeout = \"1s\"\n";
    let config = format!("{}{limits}", tls_section(&cert, &key, ""));
    let gw = TestGateway::https(&config, &format!("http://{}", upstream.addr)).await;

    // Accepted in connect order: the first holds the address's only slot.
    let mut silent = connect_from("127.0.0.1", gw.addr).await;
    let mut over = connect_from("127.0.0.1", gw.addr).await;
    // Plaintext on a TLS port would only confuse the client: a refusal is a bare close.
    assert!(until_closed(&mut over, DEADLINE).await.is_empty());
    // A handshake never started is cut at the first-request deadline.
    assert!(until_closed(&mut silent, Duration::from_secs(5))
        .await
        .is_empty());

    // The slot comes back once the gateway has seen its connection end.
    let (client, elastic) = (TlsClient::trusting(&ca.cert), basic_elastic());
    let served = eventually_get("the slot to come back", DEADLINE, || {
        client.get(gw.addr, "/", &elastic)
    })
    .await;
    assert_eq!(served, 200);
}
