//! A client socket's writes, made with `send` wherever a copy of under 2 KiB allows it.
//!
//! hyper hands an HTTP/1 response over as pieces (its head buffer, then the body's chunks) in
//! one vectored write, and rustls its records the same way. On a socket `writev` goes through
//! the file layer (the descriptor's position lock, the vector copied in, the generic write
//! path) where `send` goes straight to the socket: about 150 ns more kernel time per answer on
//! this kind of machine, more than copying a couple of kilobytes costs. So a write of one piece
//! is a `send`; the pieces of a write up to [`COPY_MAX`] in all are copied into one reused
//! buffer and sent with one `send`; a larger write goes out vectored, from where it is. The
//! buffer is the runtime thread's, not the connection's: an idle connection keeps nothing.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// The largest answer copied into one write: Elasticsearch's 401 (about 850 bytes) and most
/// small answers fit; beyond it the copy would cost more than the vectored write saves.
const COPY_MAX: usize = 2 * 1024;

thread_local! {
    /// Where an answer's pieces are put together; at most [`COPY_MAX`], for the thread's life.
    static JOINED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(COPY_MAX));
}

/// A transport whose small vectored writes are sent as one plain write.
pub(super) struct OneSend<IO> {
    io: IO,
}

impl<IO> OneSend<IO> {
    pub(super) fn new(io: IO) -> Self {
        OneSend { io }
    }
}

read_through!(OneSend, io);

impl<IO: AsyncWrite + Unpin> AsyncWrite for OneSend<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let io = &mut self.get_mut().io;
        if let [one] = bufs {
            return Pin::new(io).poll_write(cx, one);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total > COPY_MAX {
            return Pin::new(io).poll_write_vectored(cx, bufs);
        }
        JOINED.with(|joined| match joined.try_borrow_mut() {
            Ok(mut joined) => {
                joined.clear();
                for buf in bufs {
                    joined.extend_from_slice(buf);
                }
                Pin::new(&mut *io).poll_write(cx, &joined)
            }
            // Only if a write re-entered this one on the same thread; not copied then.
            Err(_) => Pin::new(&mut *io).poll_write_vectored(cx, bufs),
        })
    }

    /// Vectored, so hyper hands its pieces over without copying them into a buffer of its own
    /// (which a keep-alive connection would keep at its largest size).
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::recorder::Recorder;
    use rand::{Rng, SeedableRng};
    use std::future::poll_fn;

    /// Writes `pieces` as one vectored write, as hyper does, until all of it is taken.
    async fn write_pieces(one: &mut OneSend<Recorder>, pieces: &[&[u8]]) {
        let whole = pieces.concat();
        let mut done = 0;
        while done < whole.len() {
            // What is left, still in pieces, as hyper's queue presents it after a partial write.
            let mut skip = done;
            let mut left = Vec::new();
            for piece in pieces {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                left.push(IoSlice::new(&piece[skip..]));
                skip = 0;
            }
            let n = poll_fn(|cx| Pin::new(&mut *one).poll_write_vectored(cx, &left))
                .await
                .unwrap();
            assert!(n > 0);
            done += n;
        }
    }

    #[tokio::test]
    async fn a_small_answer_in_pieces_is_one_plain_write() {
        let mut one = OneSend::new(Recorder::new(usize::MAX, true));
        write_pieces(
            &mut one,
            &[b"HTTP/1.1 401 Unauthorized\r\n\r\n", &[b'x'; 553]],
        )
        .await;
        assert_eq!(one.io.vectors, [false], "one write, not vectored");
        assert_eq!(one.io.writes[0].len(), 29 + 553);
    }

    #[tokio::test]
    async fn a_single_piece_is_a_plain_write_whatever_its_size() {
        let mut one = OneSend::new(Recorder::new(usize::MAX, true));
        write_pieces(&mut one, &[&[7u8; 40_000]]).await;
        assert_eq!(one.io.vectors, [false]);
        assert_eq!(one.io.bytes(), [7u8; 40_000]);
    }

    #[tokio::test]
    async fn a_large_answer_goes_out_vectored_uncopied() {
        let mut one = OneSend::new(Recorder::new(usize::MAX, true));
        let body = vec![3u8; COPY_MAX];
        write_pieces(&mut one, &[b"HTTP/1.1 200 OK\r\n\r\n", &body]).await;
        assert_eq!(one.io.vectors, [true]);
    }

    /// Whatever the pieces and however little the socket takes at a time, the bytes arrive
    /// whole and in order.
    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_through_partial_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let mut one = OneSend::new(Recorder::new(rng.gen_range(1..5_000), true));
            one.io.stalls = round % 3 == 0;
            let pieces: Vec<Vec<u8>> = (0..rng.gen_range(1..6))
                .map(|_| {
                    let mut piece = vec![0u8; rng.gen_range(0..1_500)];
                    rng.fill(&mut piece[..]);
                    piece
                })
                .collect();
            let slices: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            write_pieces(&mut one, &slices).await;
            assert_eq!(one.io.bytes(), pieces.concat(), "round {round}");
        }
    }
}
