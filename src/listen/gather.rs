//! An HTTP/2 connection's writes, gathered until it flushes.
//!
//! The h2 codec writes a frame whose payload it did not copy (a chained `DATA` frame) on its
//! own and flushes before it takes the next, so every response of a few hundred bytes used to
//! cost a write, and over TLS a record, of its own: four streams answered together were four
//! `writev`s where a peer makes one. Told that the transport has no vectored writes, the codec
//! copies payloads under 1 KiB into its buffer and writes the frames of all ready streams at
//! once. What it still writes in two (a larger payload's first bytes, then the rest) is held
//! here and goes out with the rest in one vectored write, or at the flush that always follows.
//! A frame of up to 1 KiB costs a copy; a larger payload is never copied. Nothing is kept
//! between flushes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// The most a connection holds between flushes. The codec's buffer is 16 KiB, so one write
/// of its buffer is held whole.
const HOLD_LIMIT: usize = 16 * 1024;

/// The first allocation of a connection's buffer after a flush: a few small responses' frames
/// fit without growing it.
const FIRST_CAPACITY: usize = 2 * 1024;

/// A transport whose writes wait for its flush, for the h2 codec.
pub(super) struct Gathered<IO> {
    io: IO,
    held: Vec<u8>,
}

impl<IO> Gathered<IO> {
    pub(super) fn new(io: IO) -> Self {
        Gathered {
            io,
            held: Vec::new(),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Gathered<IO> {
    /// Writes what is held, and with it (when the transport writes vectors) as much of
    /// `next` as it takes. `Ok(n)`: `n` bytes of `next` went too, and nothing is held any more.
    fn poll_write_held(&mut self, cx: &mut Context<'_>, next: &[u8]) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let held = self.held.len();
            let written = if next.is_empty() || !self.io.is_write_vectored() {
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?
            } else {
                let slices = [IoSlice::new(&self.held), IoSlice::new(next)];
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written >= held {
                self.release();
                return Poll::Ready(Ok(written - held));
            }
            self.held.drain(..written);
        }
        Poll::Ready(Ok(0))
    }

    /// Frees the buffer: a connection between flushes (an idle one above all: agents hold
    /// theirs for minutes) keeps nothing. Another allocation per flush costs less than a write.
    fn release(&mut self) {
        self.held = Vec::new();
    }
}

read_through!(Gathered, io);

impl<IO: AsyncWrite + Unpin> AsyncWrite for Gathered<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= HOLD_LIMIT {
            if this.held.capacity() == 0 {
                this.held.reserve(buf.len().max(FIRST_CAPACITY));
            }
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // Too much to hold: what is held goes first, in the same write as `buf` where it can.
        let with_held = ready!(this.poll_write_held(cx, buf))?;
        if with_held > 0 {
            return Poll::Ready(Ok(with_held));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// Not vectored, whatever the transport: the codec then copies small payloads (see the
    /// module's comment). Vectors given anyway are written one at a time.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx, &[]))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx, &[]))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::recorder::Recorder;
    use rand::{Rng, SeedableRng};
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn small_writes_wait_for_the_flush_and_go_out_as_one() {
        let mut gathered = Gathered::new(Recorder::new(usize::MAX, true));
        for frame in [&b"HEADERS"[..], b"DATA one", b"HEADERS", b"DATA two"] {
            gathered.write_all(frame).await.unwrap();
        }
        assert!(
            gathered.io.writes.is_empty(),
            "nothing written before the flush"
        );
        gathered.flush().await.unwrap();
        assert_eq!(
            gathered.io.writes,
            [b"HEADERSDATA oneHEADERSDATA two".to_vec()]
        );
        assert_eq!(gathered.io.flushes, 1);
        assert!(gathered.held.is_empty());
    }

    #[tokio::test]
    async fn a_large_payload_goes_out_in_one_write_with_what_was_held() {
        let mut gathered = Gathered::new(Recorder::new(usize::MAX, true));
        let head = vec![1u8; 1033];
        let payload = vec![2u8; 40_000];
        gathered.write_all(&head).await.unwrap();
        gathered.write_all(&payload).await.unwrap();
        gathered.flush().await.unwrap();
        assert_eq!(gathered.io.writes.len(), 1, "one write for the frame");
        assert_eq!(gathered.io.bytes(), [head, payload].concat());
    }

    #[tokio::test]
    async fn without_vectors_what_is_held_goes_first() {
        let mut gathered = Gathered::new(Recorder::new(usize::MAX, false));
        gathered.write_all(b"head").await.unwrap();
        gathered.write_all(&[7u8; 20_000]).await.unwrap();
        gathered.flush().await.unwrap();
        assert_eq!(gathered.io.writes.len(), 2);
        assert_eq!(gathered.io.writes[0], b"head");
        assert_eq!(gathered.io.writes[1], [7u8; 20_000]);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_held_first() {
        let mut gathered = Gathered::new(Recorder::new(usize::MAX, true));
        gathered.write_all(b"GOAWAY").await.unwrap();
        gathered.shutdown().await.unwrap();
        assert_eq!(gathered.io.bytes(), b"GOAWAY");
    }

    #[tokio::test]
    async fn nothing_is_kept_after_a_flush() {
        let mut gathered = Gathered::new(Recorder::new(usize::MAX, true));
        for size in [12_000, 100] {
            gathered.write_all(&vec![0u8; size]).await.unwrap();
            assert!(gathered.held.capacity() >= size);
            gathered.flush().await.unwrap();
            assert_eq!(gathered.held.capacity(), 0, "after {size} bytes");
        }
    }

    /// Whatever the sizes of the writes, the transport's partial writes and its `Pending`s, the
    /// bytes arrive whole and in order, and nothing is left held after a flush.
    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_through_partial_and_pending_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for round in 0..200 {
            let max = rng.gen_range(1..40_000);
            let mut io = Recorder::new(max, round % 2 == 0);
            io.stalls = round % 3 == 0;
            let mut gathered = Gathered::new(io);
            let mut sent = Vec::new();
            for _ in 0..rng.gen_range(1..12) {
                let len = match rng.gen_range(0..3) {
                    0 => rng.gen_range(0..64),
                    1 => rng.gen_range(64..2_000),
                    _ => rng.gen_range(2_000..40_000),
                };
                let mut chunk = vec![0u8; len];
                rng.fill(&mut chunk[..]);
                gathered.write_all(&chunk).await.unwrap();
                sent.extend_from_slice(&chunk);
                if rng.gen_bool(0.3) {
                    gathered.flush().await.unwrap();
                    assert!(gathered.held.is_empty());
                }
            }
            poll_fn(|cx| Pin::new(&mut gathered).poll_flush(cx))
                .await
                .unwrap();
            assert!(gathered.held.is_empty());
            assert_eq!(gathered.io.bytes(), sent, "round {round}");
        }
    }
}
