//! A client that writes HTTP/1.1 by hand, for headers a library client would drop or refuse
//! (hop-by-hop fields, `Connection` listings).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DEADLINE;

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header fields in wire order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name` (lowercase).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends `head` (request line and header lines, without the final blank line) with
/// `Connection: close` semantics expected of the caller, and reads the answer to EOF.
pub async fn send(addr: SocketAddr, head: &str) -> RawResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("{}\r\n\r\n", head.trim_end().replace('\n', "\r\n"));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        bytes
    };
    let bytes = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("raw exchange did not finish in time");
    parse(&bytes)
}

/// Writes `bytes` as they are (a request head and whatever body a test needs, well-formed or
/// not) and reads the answer to EOF: the gateway must close the connection by itself.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let answer = exchange_bytes(addr, bytes).await;
    parse(&answer)
}

/// [`exchange`] for a request the gateway may cut short: the raw answer, possibly empty when
/// the connection was reset before anything could be read.
pub async fn exchange_bytes(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A peer that refuses a request early may close while it is still being written.
        let _ = stream.write_all(bytes).await;
        let mut answer = Vec::new();
        // A peer that closes with unread request bytes resets the connection; what arrived
        // before the reset is the answer.
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("raw exchange did not finish in time")
}

/// Parses raw answer bytes.
pub fn parse_answer(bytes: &[u8]) -> RawResponse {
    parse(bytes)
}

fn parse(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of response head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let rest = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
