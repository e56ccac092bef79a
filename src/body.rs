//! Streamed bodies with a deadline on silence, and the upstream slot a response holds until its
//! body is done.
//!
//! A client that stops sending half-way through a body, or an upstream that stalls after its
//! headers, would otherwise pin both connections (and an upstream slot) for good. The timer is
//! only armed while the source has nothing ready, so a body that arrives in one piece (nearly
//! every GET and most responses) never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// Why a guarded body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Source(#[from] hyper::Error),
    #[error("no body data for {0:?}")]
    Idle(Duration),
}

/// `inner`, failing with [`BodyError::Idle`] after `timeout` without a frame; releases `slot`
/// when the body ends or is dropped.
pub struct Guarded<B> {
    inner: B,
    /// Armed (allocated) only the first time the source has nothing ready.
    idle: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    /// A frame arrived since the timer was last armed.
    stale: bool,
    slot: Option<OwnedSemaphorePermit>,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, timeout: Duration, slot: Option<OwnedSemaphorePermit>) -> Self {
        Guarded {
            inner,
            idle: None,
            timeout,
            stale: false,
            slot,
        }
    }
}

impl Body for Guarded<Incoming> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stale = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.slot.take();
                Poll::Ready(Some(Err(BodyError::Source(error))))
            }
            Poll::Ready(None) => {
                this.slot.take();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let stale = std::mem::replace(&mut this.stale, false);
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stale {
                    idle.as_mut().reset(Instant::now() + timeout);
                }
                if idle.as_mut().poll(cx).is_ready() {
                    this.slot.take();
                    return Poll::Ready(Some(Err(BodyError::Idle(timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
