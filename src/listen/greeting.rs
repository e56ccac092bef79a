//! Notices an HTTP/2 client's greeting, so the first-request deadline holds it to the preface
//! and not to its first request.
//!
//! An HTTP/2 client may open its connection ahead of need and send no stream for a long time;
//! having sent the connection preface and its SETTINGS it has shown it speaks HTTP, which is
//! what the deadline is for. HTTP/1 has no such greeting: its first request head is the
//! greeting, which the handler marks ([`Slot::begin`](super::registry::Slot::begin)).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::registry::Slot;

/// RFC 9113 §3.4: every HTTP/2 connection opens with these bytes, then a SETTINGS frame.
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
/// The preface and the first frame's header: enough to know the SETTINGS frame's length.
const HEAD: usize = PREFACE.len() + FRAME_HEADER;

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Too few bytes to tell.
    Undecided,
    /// The preface and a whole SETTINGS frame have arrived.
    Greeted,
    /// Not an HTTP/2 greeting: HTTP/1 (its handler marks the greeting) or garbage (hyper
    /// rejects it). Nothing more to watch.
    Other,
}

/// Follows the first bytes of a connection until a [`Verdict`] other than undecided.
#[derive(Debug)]
struct PrefaceWatch {
    head: [u8; HEAD],
    /// Bytes seen so far (the first `HEAD` of them kept in `head`).
    seen: usize,
}

impl Default for PrefaceWatch {
    fn default() -> Self {
        PrefaceWatch {
            head: [0; HEAD],
            seen: 0,
        }
    }
}

impl PrefaceWatch {
    fn feed(&mut self, bytes: &[u8]) -> Verdict {
        if let Some(room) = self.head.get_mut(self.seen.min(HEAD)..) {
            let take = room.len().min(bytes.len());
            if let (Some(room), Some(bytes)) = (room.get_mut(..take), bytes.get(..take)) {
                room.copy_from_slice(bytes);
            }
        }
        self.seen = self.seen.saturating_add(bytes.len());
        let kept = self.seen.min(HEAD);
        let compared = kept.min(PREFACE.len());
        if self.head.get(..compared) != PREFACE.get(..compared) {
            return Verdict::Other;
        }
        if kept < HEAD {
            return Verdict::Undecided;
        }
        // A frame header: 24-bit payload length, then the type.
        let Some(&[l0, l1, l2, kind]) = self.head.get(PREFACE.len()..PREFACE.len() + 4) else {
            return Verdict::Other;
        };
        if kind != SETTINGS {
            return Verdict::Other;
        }
        let length = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        if self.seen >= HEAD + length {
            Verdict::Greeted
        } else {
            Verdict::Undecided
        }
    }
}

/// A connection's transport, watched until its first bytes say whether it greeted in HTTP/2.
/// Afterwards a read costs one branch more than the bare transport. Its writes are counted on
/// the slot: how the connection's timer tells a response still going out from a stalled head.
pub(super) struct Greeting<IO> {
    io: IO,
    slot: Arc<Slot>,
    watch: Option<PrefaceWatch>,
}

impl<IO> Greeting<IO> {
    pub(super) fn new(io: IO, slot: Arc<Slot>) -> Self {
        Greeting {
            io,
            slot,
            watch: Some(PrefaceWatch::default()),
        }
    }

    fn counted(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.slot.wrote();
            }
        }
        written
    }
}

write_through!(Greeting, io, Self::counted);

impl<IO: AsyncRead + Unpin> AsyncRead for Greeting<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(watch)) = (&polled, this.watch.as_mut()) {
            match watch.feed(buf.filled().get(before..).unwrap_or_default()) {
                Verdict::Undecided => {}
                Verdict::Greeted => {
                    this.slot.greet();
                    this.watch = None;
                }
                Verdict::Other => this.watch = None,
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preface and a SETTINGS frame with one setting (6 bytes of payload).
    fn greeting() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 6, SETTINGS, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        bytes
    }

    #[test]
    fn a_whole_greeting_at_once() {
        let mut watch = PrefaceWatch::default();
        assert_eq!(watch.feed(&greeting()), Verdict::Greeted);
    }

    #[test]
    fn a_greeting_byte_by_byte_is_only_complete_at_its_last_byte() {
        let bytes = greeting();
        let mut watch = PrefaceWatch::default();
        for byte in &bytes[..bytes.len() - 1] {
            assert_eq!(watch.feed(std::slice::from_ref(byte)), Verdict::Undecided);
        }
        assert_eq!(watch.feed(&bytes[bytes.len() - 1..]), Verdict::Greeted);
    }

    #[test]
    fn the_preface_alone_is_not_a_greeting() {
        let mut watch = PrefaceWatch::default();
        assert_eq!(watch.feed(PREFACE), Verdict::Undecided);
        assert_eq!(watch.feed(&[0, 0, 0, SETTINGS]), Verdict::Undecided);
        assert_eq!(watch.feed(&[0, 0, 0, 0, 0]), Verdict::Greeted);
    }

    #[test]
    fn http1_is_told_apart_at_its_first_byte() {
        let mut watch = PrefaceWatch::default();
        assert_eq!(watch.feed(b"G"), Verdict::Other);
        let mut watch = PrefaceWatch::default();
        assert_eq!(watch.feed(b"PRI * HTTP/1.1\r\n"), Verdict::Other);
    }

    #[test]
    fn a_first_frame_other_than_settings_is_not_a_greeting() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0x6, 0, 0, 0, 0, 0]);
        assert_eq!(PrefaceWatch::default().feed(&bytes), Verdict::Other);
    }

    #[test]
    fn nothing_read_decides_nothing() {
        assert_eq!(PrefaceWatch::default().feed(&[]), Verdict::Undecided);
    }
}
