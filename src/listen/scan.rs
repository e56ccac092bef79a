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
/// It looks only at the first bytes of each line, and at only the first byte of a line that can
/// name none of the fields it acts on (lines found with `memchr`). While it is sure
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
            if self.carry_len > 0 {
                match self.finish_carry(data) {
                    Some((rest, flagged)) => {
                        found |= flagged;
                        data = rest;
                        continue;
                    }
                    None => return found,
                }
            }
            if !self.at_start {
                match line_end(data) {
                    Some(at) => {
                        data = &data[at + 1..];
                        self.at_start = true;
                    }
                    None => return found,
                }
            }
            match self.lines(data, &mut found) {
                Some(rest) => data = rest,
                None => return found,
            }
        }
    }

    /// Takes in the lines of `data`, which starts a line, up to a body to pass over (the bytes
    /// from there on) or to the read's end (`None`).
    fn lines<'d>(&mut self, mut data: &'d [u8], found: &mut bool) -> Option<&'d [u8]> {
        loop {
            let &first = data.first()?;
            if first == b'\n' || (first == b'\r' && data.get(1) == Some(&b'\n')) {
                // The empty line, without a search for its end.
                *found |= self.end_of_head();
                data = &data[usize::from(first == b'\r') + 1..];
                if self.body_left > 0 {
                    return Some(data);
                }
                continue;
            }
            if self.head_line && data.len() >= b"POST ".len() {
                // `POST ` and `PUT ` hold no `\n`: the read starts with one exactly when the
                // line does, however short the line.
                self.head_line = false;
                self.head.posts = data.starts_with(b"POST ") || data.starts_with(b"PUT ");
            } else if self.head_line || matters(first) {
                let end = line_end(data);
                let len = end.unwrap_or(data.len());
                if end.is_none() && len < WINDOW {
                    // The read ended inside the line's first bytes: keep them for the next one.
                    self.carry[..len].copy_from_slice(data);
                    self.carry_len = len;
                    return None;
                }
                // Not the empty line (taken above): no body to pass over starts here.
                *found |= self.classify(&data[..len.min(WINDOW)], len < WINDOW);
                match end {
                    Some(at) => {
                        data = &data[at + 1..];
                        continue;
                    }
                    None => {
                        self.at_start = false;
                        return None;
                    }
                }
            }
            // A request line taken in above, or a line that changes nothing: only its end counts.
            match line_end(&data[1..]) {
                Some(at) => data = &data[at + 2..],
                None => {
                    self.at_start = false;
                    return None;
                }
            }
        }
    }

    /// Completes the line start kept in `carry` with the bytes of the next read and takes it in;
    /// the bytes left after the line's first ones and whether a head with both fields ended, or
    /// `None` when the read ended inside them again (kept too).
    fn finish_carry<'d>(&mut self, data: &'d [u8]) -> Option<(&'d [u8], bool)> {
        let room = WINDOW - self.carry_len;
        let window = data.get(..room.min(data.len())).unwrap_or_default();
        // At most a window: a plain search beats memchr's set-up.
        let (taken, line_ended) = match window.iter().position(|&b| b == b'\n') {
            Some(at) => (at, true),
            None => (window.len(), false),
        };
        let len = self.carry_len + taken;
        self.carry[self.carry_len..len].copy_from_slice(&window[..taken]);
        if !line_ended && len < WINDOW {
            self.carry_len = len;
            return None;
        }
        self.carry_len = 0;
        let start = self.carry;
        let flagged = self.classify(&start[..len], line_ended);
        if line_ended {
            return Some((&data[taken + 1..], flagged));
        }
        self.at_start = false;
        Some((&data[taken..], flagged))
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

/// Whether a line (not a request line) starting with `first` can change what the scan knows:
/// an empty line, or one that may name `Content-Length`, `Transfer-Encoding` or `Expect`. Most
/// header lines do not, and are passed over after their first byte.
fn matters(first: u8) -> bool {
    matches!(
        first,
        b'\r' | b'\n' | b'c' | b'C' | b't' | b'T' | b'e' | b'E'
    )
}

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

/// On x86_64 `memchr::memchr` reaches its AVX2 searcher through a function pointer and builds it
/// anew on every call, which costs more than finding the end of a header line of a few dozen
/// bytes; SSE2 is always there, so its searcher is built in place and inlined.
#[inline]
fn line_end(data: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return searcher.find(data);
    }
    memchr::memchr(b'\n', data)
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

    /// Where the flag rises for `bytes` read at once, worked out on the whole stream with none of
    /// `feed`'s shortcuts: the offsets of the `\n`s that end a head with both fields.
    fn reference(bytes: &[u8]) -> Vec<usize> {
        let mut scan = LengthScan::default();
        let mut raised = Vec::new();
        let mut at = 0;
        while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
            if scan.body_left > 0 {
                let skipped =
                    usize::try_from(scan.body_left).map_or(rest.len(), |n| n.min(rest.len()));
                scan.body_left -= skipped as u64;
                at += skipped;
                continue;
            }
            // A line the stream ends inside says nothing that could raise the flag.
            let Some(len) = rest.iter().position(|&b| b == b'\n') else {
                break;
            };
            if scan.classify(&rest[..len.min(WINDOW)], len < WINDOW) {
                raised.push(at + len);
            }
            at += len + 1;
        }
        raised
    }

    /// Feeds `bytes` in reads ending at `ends` (rising, then the rest) and holds each read's
    /// verdict to the reference's.
    fn same_as_reference(bytes: &[u8], ends: &[usize], raised: &[usize]) {
        let mut scan = LengthScan::default();
        let mut start = 0;
        for end in ends.iter().copied().chain([bytes.len()]) {
            let expected = raised.iter().any(|at| (start..end).contains(at));
            assert_eq!(
                scan.feed(&bytes[start..end]),
                expected,
                "{:?} read in pieces ending at {ends:?}: the one of {start}..{end}",
                String::from_utf8_lossy(bytes)
            );
            start = end;
        }
    }

    /// A small xorshift: the same streams on every run.
    struct Pick(u64);

    impl Pick {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const REQUEST_LINES: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\n",
        b"PUT /i/_doc/1 HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\n",
        b"post / HTTP/1.1\r\n",
    ];

    /// Each field name's first letter in both cases, values the scan does and does not read,
    /// lines about the window's length, and lines like none of them.
    const FIELDS: &[&[u8]] = &[
        b"Content-Length: 5\r\n",
        b"content-length:0\r\n",
        b"CONTENT-LENGTH: 2\n",
        b"Content-Length: 3, 3\r\n",
        b"Content-Length:                      7\r\n",
        b"Content-Length:                       7\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"transfer-encoding:gzip\n",
        b"TRANSFER-ENCODIN: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"expect:\n",
        b"Host: a\r\n",
        b"connection: close\r\n",
        b"Elsewhere: x\r\n",
        b"authorization: Bearer AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL3Rva2VuLTE6c2VjcmV0\r\n",
    ];

    /// Pieces of lines and bodies.
    const PIECES: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\r\n",
        b"c",
        b"T",
        b"e",
        b"POST",
        b"PU",
        b" ",
        b"hello",
        b"0\r\n\r\n",
    ];

    fn stream(pick: &mut Pick) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..1 + pick.below(12) {
            let piece = match pick.below(6) {
                // A whole head: a request line, a few fields, the empty line.
                0 | 1 => {
                    bytes.extend_from_slice(REQUEST_LINES[pick.below(REQUEST_LINES.len())]);
                    for _ in 0..pick.below(4) {
                        bytes.extend_from_slice(FIELDS[pick.below(FIELDS.len())]);
                    }
                    b"\r\n"
                }
                2 => REQUEST_LINES[pick.below(REQUEST_LINES.len())],
                3 => FIELDS[pick.below(FIELDS.len())],
                _ => PIECES[pick.below(PIECES.len())],
            };
            bytes.extend_from_slice(piece);
        }
        bytes
    }

    #[test]
    fn read_in_any_pieces_the_scan_says_what_a_reading_of_the_whole_stream_says() {
        let mut pick = Pick(0x9E37_79B9_7F4A_7C15);
        let mut flagged = 0;
        for _ in 0..1500 {
            let bytes = stream(&mut pick);
            let raised = reference(&bytes);
            flagged += usize::from(!raised.is_empty());
            same_as_reference(&bytes, &[], &raised);
            // In two reads split at every byte: every line start cut at every point.
            for split in 0..=bytes.len() {
                same_as_reference(&bytes, &[split], &raised);
            }
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            same_as_reference(&bytes, &every_byte, &raised);
            for _ in 0..4 {
                let mut ends: Vec<usize> = (0..1 + pick.below(6))
                    .map(|_| pick.below(bytes.len() + 1))
                    .collect();
                ends.sort_unstable();
                same_as_reference(&bytes, &ends, &raised);
            }
        }
        // Streams of both kinds were tried.
        assert!((100..1400).contains(&flagged), "{flagged} of 1500 flagged");
    }

    #[test]
    fn a_line_cut_anywhere_in_its_first_bytes_is_read_as_one() {
        // Each with whether it raises the flag: lines that decide it cut at every point across
        // two reads, and byte by byte.
        for (bytes, flagged) in [
            // Passed over, then a head without a body.
            (
                &b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"[..],
                false,
            ),
            // A length line that fits the window (39 bytes before its `\n`): the body is
            // passed over; one byte longer, its value is not read and the body is.
            (
                b"POST / HTTP/1.1\r\nContent-Length:                     41\r\n\r\nx\nTransfer-Encoding: x\ncontent-length:1\n\n",
                false,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length:                      41\r\n\r\nx\nTransfer-Encoding: x\ncontent-length:1\n\n",
                true,
            ),
            // After `Expect`, and after a request line too short for `PUT `, the body is read.
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nxx\r\nTransfer-Encoding: x\r\nContent-Length: 1\r\n\r\n",
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nexpect:\r\ncontent-length: 2\r\n\r\nxx\r\nTransfer-Encoding: x\r\nContent-Length: 1\r\n\r\n",
                true,
            ),
            (
                b"PUT\r\nContent-Length: 2\r\n\r\nxx\r\nTransfer-Encoding: x\r\ncontent-length:1\n\n",
                true,
            ),
            // Empty lines of both kinds, before a request and inside a passed-over body.
            (
                b"\r\n\nPOST /x HTTP/1.1\nContent-Length: 4\n\r\n\r\n\r\nGET / HTTP/1.1\ntransfer-encoding: x\ncontent-length: 1\n\r\n",
                true,
            ),
        ] {
            let raised = reference(bytes);
            assert_eq!(!raised.is_empty(), flagged, "{:?}", String::from_utf8_lossy(bytes));
            for split in 0..=bytes.len() {
                same_as_reference(bytes, &[split], &raised);
            }
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            same_as_reference(bytes, &every_byte, &raised);
        }
    }
}
