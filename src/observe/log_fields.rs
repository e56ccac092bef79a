//! The two fields every audit event and access-log line carries: when, and from which address.
//! A failed-login flood writes one audit line per request, so these are formatted into a stack
//! buffer without `core::fmt` (whose padding support makes an address cost more than the rest of
//! the line): the date and time up to the second once per second per thread, the numbers with
//! `itoa`. Each is `Display` for the text lines and `Serialize` (a JSON string) for the JSON ones.

use std::cell::Cell;
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Room for either field's fast text: `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes) and
/// `255.255.255.255:65535` (21).
type Buf = [u8; 24];

/// A field with a fast text (ASCII, in a stack buffer) where it can, and `Display` otherwise.
trait Fast {
    /// The fast text, or `None` where only `slow` writes it.
    fn bytes<'b>(&self, buf: &'b mut Buf) -> Option<&'b [u8]>;
    fn slow(&self) -> impl fmt::Display;

    /// Appends the text to a line being built (no UTF-8 check: the fast text is ASCII).
    fn write_to(&self, out: &mut Vec<u8>) {
        match self.bytes(&mut [0; 24]) {
            Some(text) => out.extend_from_slice(text),
            None => {
                let _ = write!(out, "{}", self.slow());
            }
        }
    }

    fn display(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text(&mut [0; 24]) {
            Some(text) => f.write_str(text),
            None => fmt::Display::fmt(&self.slow(), f),
        }
    }

    /// A JSON string.
    fn serialize_to<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text(&mut [0; 24]) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(&self.slow()),
        }
    }

    fn text<'b>(&self, buf: &'b mut Buf) -> Option<&'b str> {
        std::str::from_utf8(self.bytes(buf)?).ok()
    }
}

/// `2026-12-06T16:48:01.123Z` (RFC 3339, UTC, milliseconds), as `humantime` writes it.
#[derive(Clone, Copy)]
pub struct Timestamp(pub SystemTime);

/// `YYYY-MM-DDTHH:MM:SS`; `.mmmZ` follows.
const SECOND_LEN: usize = 19;

thread_local! {
    /// The last second formatted on this thread, and its text.
    static SECOND: Cell<Option<(u64, [u8; SECOND_LEN])>> = const { Cell::new(None) };
}

impl Fast for Timestamp {
    /// `None` where the cached layout does not apply (a year past 9999): `humantime` writes it.
    fn bytes<'b>(&self, buf: &'b mut Buf) -> Option<&'b [u8]> {
        let since = self.0.duration_since(UNIX_EPOCH).ok()?;
        let seconds = since.as_secs();
        let prefix = match SECOND.with(Cell::get) {
            Some((cached, text)) if cached == seconds => text,
            _ => {
                let whole = UNIX_EPOCH + Duration::from_secs(seconds);
                let formatted = humantime::format_rfc3339_seconds(whole).to_string();
                // `…:SSZ`: exactly the second's text and its `Z`.
                let text: [u8; SECOND_LEN] =
                    formatted.as_bytes().strip_suffix(b"Z")?.try_into().ok()?;
                SECOND.with(|c| c.set(Some((seconds, text))));
                text
            }
        };
        let millis = since.subsec_millis();
        buf[..SECOND_LEN].copy_from_slice(&prefix);
        buf[SECOND_LEN..].copy_from_slice(&[
            b'.',
            digit(millis / 100),
            digit(millis / 10),
            digit(millis),
            b'Z',
        ]);
        Some(buf)
    }

    fn slow(&self) -> impl fmt::Display {
        humantime::format_rfc3339_millis(self.0)
    }
}

/// The last decimal digit of `n`.
fn digit(n: u32) -> u8 {
    // `n % 10` is below 10: the cast keeps it.
    b'0' + (n % 10) as u8
}

/// A client's address and port, `127.0.0.1:54321` or `[::1]:54321`, as `SocketAddr` prints it.
#[derive(Clone, Copy)]
pub struct Address(pub SocketAddr);

/// Each octet's decimal digits, left-aligned, followed by a dot, and how many of the four bytes
/// are text: an address is four fixed-size copies, whose tails the next one overwrites.
static OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0; 4], 0); 256];
    let mut n = 0;
    while n < 256 {
        // Each is a decimal digit: below 10.
        let (hundreds, tens, ones) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = match n {
            0..=9 => ([b'0' + ones, b'.', 0, 0], 2),
            10..=99 => ([b'0' + tens, b'0' + ones, b'.', 0], 3),
            _ => ([b'0' + hundreds, b'0' + tens, b'0' + ones, b'.'], 4),
        };
        n += 1;
    }
    table
};

impl Fast for Address {
    /// `None` for IPv6, which `SocketAddr` writes.
    fn bytes<'b>(&self, buf: &'b mut Buf) -> Option<&'b [u8]> {
        let SocketAddr::V4(v4) = self.0 else {
            return None;
        };
        let mut len = 0;
        for octet in v4.ip().octets() {
            let (text, text_len) = OCTETS[usize::from(octet)];
            buf[len..len + 4].copy_from_slice(&text);
            len += usize::from(text_len);
        }
        // The last octet's dot becomes the port's colon.
        buf[len - 1] = b':';
        let mut port = itoa::Buffer::new();
        let port = port.format(v4.port()).as_bytes();
        buf[len..len + port.len()].copy_from_slice(port);
        Some(&buf[..len + port.len()])
    }

    fn slow(&self) -> impl fmt::Display {
        self.0
    }
}

impl Timestamp {
    /// Appends the text to a line being built.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        Fast::write_to(self, out);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_to(serializer)
    }
}

impl Address {
    /// Appends the text to a line being built.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        Fast::write_to(self, out);
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display(f)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_to(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_humantime_writes_them() {
        let base = UNIX_EPOCH + Duration::from_secs(1_796_575_681);
        // Same second twice (the cached text), the next second, a whole second, a leap day,
        // the epoch, and far ahead.
        for at in [
            base + Duration::from_millis(7),
            base + Duration::from_millis(999),
            base + Duration::from_millis(1_000),
            base + Duration::from_micros(1_045_999),
            UNIX_EPOCH + Duration::from_secs(951_782_400) + Duration::from_millis(250),
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_secs(253_402_300_799),
        ] {
            let expected = humantime::format_rfc3339_millis(at).to_string();
            assert_eq!(Timestamp(at).to_string(), expected);
            let mut line = Vec::new();
            Timestamp(at).write_to(&mut line);
            assert_eq!(line, expected.as_bytes());
            assert_eq!(
                serde_json::to_string(&Timestamp(at)).unwrap(),
                format!("\"{expected}\"")
            );
        }
    }

    #[test]
    fn addresses_read_as_socket_addr_writes_them() {
        for text in [
            "127.0.0.1:54321",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:9200",
            "[::1]:443",
            "[2001:db8::7]:8080",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(Address(addr).to_string(), addr.to_string());
            let mut line = Vec::new();
            Address(addr).write_to(&mut line);
            assert_eq!(line, addr.to_string().as_bytes());
            assert_eq!(
                serde_json::to_string(&Address(addr)).unwrap(),
                format!("\"{addr}\"")
            );
        }
    }
}
