//! The raw HTTP/1 bytes of a client connection, watched for the one request shape hyper's parser
//! allows but a gateway in front of a cluster must refuse: a head with both `Content-Length` and
//! `Transfer-Encoding` (the classic smuggling shape). hyper hands the service such a request with
//! `Content-Length` already removed, so [`ScanIo`] raises the connection's flag
//! ([`ClientInfo::ambiguous_length`](crate::message::ClientInfo::ambiguous_length)) and the
//! request-shape check ([`shape`](crate::message::shape)) refuses the request (400, connection
//! closed), as nginx does, instead of hyper's RFC-allowed reading by `Transfer-Encoding` alone.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// How much of a line's start the scan looks at: `content-length:` with room for its value
/// (20 digits and some spaces), which is longer than `transfer-encoding:`.
const WINDOW: usize = 40;

/// What a head said of its body's length.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Length {
    /// No `Content-Length` line.
    #[default]
    Absent,
    /// One `Content-Length` line with a plain decimal value.
    Known(u64),
    /// Several, or a value the scan does not read (a list, a line longer than its window).
    Unusable,
}

/// Watches an HTTP/1 byte stream for a block of lines (a head) that carries both
/// `Content-Length` and `Transfer-Encoding`, and raises `flag` when one ends.
///
/// It looks only at the first bytes of each line (lines found with `memchr`). While it is sure
/// where the heads are — every body so far was a `POST`'s or `PUT`'s framed by one plain
/// `Content-Length` — it passes the next body over unread, as hyper reads it: a `_bulk` of
/// many megabytes costs nothing per line. After any other body (chunked, a length it does not
/// read, another method's, or one sent after `Expect`) it reads every line to the connection's
/// end, where body text can only raise the flag for its own connection, and only with lines
/// that start with both field names followed by an empty line. A real head with both is always
/// seen, since hyper reads every byte through here before it parses the head.
#[derive(Debug)]
pub struct LengthScan {
    /// The first bytes of a line whose start was split between two reads.
    carry: [u8; WINDOW],
    carry_len: usize,
    /// At the start of a line (or within its first bytes, kept in `carry`).
    at_start: bool,
    /// The next line that is not empty is a request line.
    head_line: bool,
    /// What the head being read has said so far.
    head: Head,
    /// Heads and bodies seen so far are where hyper sees them: bodies may be skipped.
    synced: bool,
    /// Body bytes still to pass over unread.
    body_left: u64,
}

/// What one head said that the scan acts on; a new head starts from the default.
#[derive(Debug, Default)]
struct Head {
    length: Length,
    transfer_encoding: bool,
    /// The request line is a `POST` or a `PUT`.
    posts: bool,
    /// An `Expect` line: the body may never come.
    expects: bool,
}

impl Default for LengthScan {
    fn default() -> Self {
        LengthScan {
            carry: [0; WINDOW],
            carry_len: 0,
            at_start: true,
            head_line: true,
            head: Head::default(),
            synced: true,
            body_left: 0,
        }
    }
}

impl LengthScan {
    /// Feeds bytes as read; true once a head with both fields has ended.
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        let mut found = false;
        loop {
            if self.body_left > 0 {
                let skipped =
                    usize::try_from(self.body_left).map_or(data.len(), |n| n.min(data.len()));
                data = &data[skipped..];
                self.body_left -= skipped as u64;
                if self.body_left > 0 {
                    return found;
                }
            }
            if self.at_start {
                let room = WINDOW - self.carry_len;
                let window = data.get(..room.min(data.len())).unwrap_or_default();
                // At most a window: a plain search beats memchr's set-up.
                let (taken, line_ended) = match window.iter().position(|&b| b == b'\n') {
                    Some(at) => (at, true),
                    None => (window.len(), false),
                };
                if !line_ended && self.carry_len + taken < WINDOW {
                    // The read ended inside the line's first bytes: keep them for the next one.
                    self.carry[self.carry_len..self.carry_len + taken]
                        .copy_from_slice(&window[..taken]);
                    self.carry_len += taken;
                    return found;
                }
                if self.carry_len == 0 {
                    found |= self.classify(&window[..taken], line_ended);
                } else {
                    let len = self.carry_len + taken;
                    let mut start = [0u8; WINDOW];
                    start[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
                    start[self.carry_len..len].copy_from_slice(&window[..taken]);
                    self.carry_len = 0;
                    found |= self.classify(&start[..len], line_ended);
                }
                if line_ended {
                    data = &data[taken + 1..];
                    continue;
                }
                data = &data[taken..];
                self.at_start = false;
            }
            match memchr::memchr(b'\n', data) {
                Some(at) => {
                    data = &data[at + 1..];
                    self.at_start = true;
                }
                None => return found,
            }
        }
    }

    /// Takes in the first bytes of a line (all of it when `whole`); true when it is the empty
    /// line ending a head that had both fields.
    fn classify(&mut self, start: &[u8], whole: bool) -> bool {
        if start.is_empty() || start == b"\r" {
            return self.end_of_head();
        }
        if self.head_line {
            self.head_line = false;
            self.head.posts = start.starts_with(b"POST ") || start.starts_with(b"PUT ");
            return false;
        }
        let is = |name: &[u8]| {
            start
                .get(..name.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(name))
        };
        // Most lines start with none of these letters: one comparison each.
        match start.first().map(u8::to_ascii_lowercase) {
            Some(b'c') if is(CONTENT_LENGTH) => {
                let value = whole.then(|| plain_length(&start[CONTENT_LENGTH.len()..]));
                self.head.length = match (self.head.length, value.flatten()) {
                    (Length::Absent, Some(n)) => Length::Known(n),
                    _ => Length::Unusable,
                };
            }
            Some(b't') if is(b"transfer-encoding:") => self.head.transfer_encoding = true,
            Some(b'e') if is(b"expect:") => self.head.expects = true,
            _ => {}
        }
        false
    }

    /// The empty line: says whether the head had both fields, decides whether its body is
    /// passed over, and starts the next head.
    fn end_of_head(&mut self) -> bool {
        let head = std::mem::take(&mut self.head);
        self.head_line = true;
        let chunked = head.transfer_encoding;
        match head.length {
            Length::Known(n) if self.synced && head.posts && !chunked && !head.expects => {
                self.body_left = n;
            }
            Length::Absent if !chunked => {}
            // A body the scan does not frame: from here on every line is read.
            _ => self.synced = false,
        }
        head.length != Length::Absent && chunked
    }
}

const CONTENT_LENGTH: &[u8] = b"content-length:";

/// A `Content-Length` value as it follows the colon (`" 4096\r"`): spaces, 1 to 19 digits,
/// spaces; anything else is not read.
fn plain_length(value: &[u8]) -> Option<u64> {
    let value = value.strip_suffix(b"\r").unwrap_or(value);
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// An HTTP/1 connection's byte stream with a [`LengthScan`] on what is read.
pub struct ScanIo<IO> {
    inner: IO,
    scan: LengthScan,
    flag: Arc<AtomicBool>,
}

impl<IO> ScanIo<IO> {
    /// Wraps `inner`; `flag` is raised for good once an ambiguous head went by.
    pub fn new(inner: IO, flag: Arc<AtomicBool>) -> Self {
        ScanIo {
            inner,
            scan: LengthScan::default(),
            flag,
        }
    }
}

write_through!(ScanIo, inner);

impl<IO: AsyncRead + Unpin> AsyncRead for ScanIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if let Some(new) = buf.filled().get(before..) {
                if this.scan.feed(new) {
                    this.flag.store(true, Ordering::Release);
                }
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_sees_both_length_fields_in_one_head_however_split() {
        let smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for split in 0..smuggle.len() {
            let mut scan = LengthScan::default();
            let found = scan.feed(&smuggle[..split]) | scan.feed(&smuggle[split..]);
            assert!(found, "missed when split at {split}");
        }
        let mut scan = LengthScan::default();
        assert!(smuggle.iter().any(|b| scan.feed(std::slice::from_ref(b))));
        let upper = b"GET / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length:5\r\n\r\n";
        assert!(LengthScan::default().feed(upper));
    }

    #[test]
    fn the_scan_leaves_ordinary_traffic_alone() {
        let mut scan = LengthScan::default();
        let traffic = b"POST /_bulk HTTP/1.1\r\nHost: a\r\nContent-Length: 38\r\n\r\n{\"index\":{}}\n{\"transfer-encoding:\":1}\n\
            POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert!(!scan.feed(traffic));
        // The fields in two different heads are not one head.
        let mut scan = LengthScan::default();
        assert!(!scan.feed(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
    }

    /// A head with both length fields, as a smuggler sends it.
    const SMUGGLE: &[u8] =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    /// `head` with a body that holds the lines of a smuggling head (raising the flag if read),
    /// then a real one.
    fn body_then_smuggle(head: &str) -> Vec<u8> {
        let body = b"{\"index\":{}}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{}\n";
        let mut bytes = head.replace("{len}", &body.len().to_string()).into_bytes();
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(SMUGGLE);
        bytes
    }

    /// Feeds `bytes` split in two at every point, then byte by byte; returns at which byte
    /// offset the flag first rose each time.
    fn first_flag(bytes: &[u8]) -> Vec<Option<usize>> {
        let mut seen = Vec::new();
        for split in 0..=bytes.len() {
            let mut scan = LengthScan::default();
            seen.push(if scan.feed(&bytes[..split]) {
                Some(split)
            } else if scan.feed(&bytes[split..]) {
                Some(bytes.len())
            } else {
                None
            });
        }
        let mut scan = LengthScan::default();
        seen.push(
            bytes
                .iter()
                .position(|b| scan.feed(std::slice::from_ref(b))),
        );
        seen
    }

    #[test]
    fn a_post_body_framed_by_its_length_is_passed_over_and_the_next_head_still_seen() {
        for head in [
            "POST /_bulk HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n",
            "PUT /i/_doc/1 HTTP/1.1\r\ncontent-length:{len}\r\nHost: a\r\n\r\n",
            "\r\nPOST /_bulk HTTP/1.1\r\nContent-Length:  {len} \r\n\r\n",
        ] {
            let bytes = body_then_smuggle(head);
            let smuggle_ends = bytes.len() - b"0\r\n\r\n".len();
            for (i, seen) in first_flag(&bytes).into_iter().enumerate() {
                // Raised by the real head (at its empty line, or when the read holding it
                // ends), never by the lines inside the body.
                let at = seen.unwrap_or_else(|| panic!("{head:?}: missed ({i})"));
                assert!(
                    at >= smuggle_ends - 2,
                    "{head:?}: raised at {at} by the body ({i})"
                );
            }
        }
    }

    #[test]
    fn after_a_body_it_cannot_frame_the_scan_reads_every_line() {
        // Up to the end of the smuggling lines inside the body (before its last `{}\n`).
        let inside = |bytes: &[u8]| bytes.len() - SMUGGLE.len() - 3;
        // Heads whose body is not passed over: the lines inside it raise the flag (for this
        // connection only), which is what the scan did for every body before.
        for head in [
            "GET / HTTP/1.1\r\nContent-Length: {len}\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: {len}\r\nContent-Length: {len}\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: {len}, {len}\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n",
            "post / HTTP/1.1\r\nContent-Length: {len}\r\n\r\n",
        ] {
            let bytes = body_then_smuggle(head);
            let mut scan = LengthScan::default();
            assert!(
                scan.feed(&bytes[..inside(&bytes)]),
                "{head:?}: body not read"
            );
        }
        // Once a body was chunked, later bodies are read too: where the chunked one ended is
        // hyper's to know.
        let mut bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec();
        bytes.extend(body_then_smuggle(
            "POST /_bulk HTTP/1.1\r\nContent-Length: {len}\r\n\r\n",
        ));
        let mut scan = LengthScan::default();
        assert!(scan.feed(&bytes[..inside(&bytes)]));
    }

    #[test]
    fn only_a_plain_length_is_read() {
        assert_eq!(plain_length(b" 4096\r"), Some(4096));
        assert_eq!(plain_length(b"0"), Some(0));
        assert_eq!(plain_length(b"\t 12 \r"), Some(12));
        for value in [
            &b""[..],
            b" \r",
            b"5, 5",
            b"+5",
            b"-1",
            b"0x10",
            b"12345678901234567890",
        ] {
            assert_eq!(plain_length(value), None, "{value:?}");
        }
    }
}
