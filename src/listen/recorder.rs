//! A transport for the wrappers' tests: it records each write, takes at most a set number of
//! bytes a write, and can answer every other attempt with `Pending`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// A transport that records each write it took, takes at most `max` bytes a write, and
/// answers every other write attempt with `Pending` when `stalls` is set.
pub(super) struct Recorder {
    pub(super) writes: Vec<Vec<u8>>,
    /// For each write, whether it came as a vector.
    pub(super) vectors: Vec<bool>,
    max: usize,
    pub(super) stalls: bool,
    stalled: bool,
    vectored: bool,
    pub(super) flushes: usize,
}

impl Recorder {
    pub(super) fn new(max: usize, vectored: bool) -> Self {
        Recorder {
            writes: Vec::new(),
            vectors: Vec::new(),
            max,
            stalls: false,
            stalled: false,
            vectored,
            flushes: 0,
        }
    }

    pub(super) fn bytes(&self) -> Vec<u8> {
        self.writes.concat()
    }

    fn stall(&mut self, cx: &mut Context<'_>) -> bool {
        if self.stalls {
            self.stalled = !self.stalled;
            if self.stalled {
                cx.waker().wake_by_ref();
                return true;
            }
        }
        false
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stall(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(this.max);
        this.writes.push(buf[..n].to_vec());
        this.vectors.push(false);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        assert!(this.vectored, "a vector given to a transport without them");
        if this.stall(cx) {
            return Poll::Pending;
        }
        let mut taken = Vec::new();
        for buf in bufs {
            let n = buf.len().min(this.max - taken.len());
            taken.extend_from_slice(&buf[..n]);
        }
        let n = taken.len();
        this.writes.push(taken);
        this.vectors.push(true);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().flushes += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
