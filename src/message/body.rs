//! Streamed bodies with a deadline on silence, and the upstream lease (slot and connection) a
//! response holds until its body is done.
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
use tokio::time::{Instant, Sleep};

use crate::h1_client::ResponseBody;

/// Why a guarded body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Source(#[from] hyper::Error),
    /// The node's connection failed, or it sent a body that could not be read.
    #[error("{0}")]
    Upstream(#[from] std::io::Error),
    #[error("no body data for {0:?}")]
    Idle(Duration),
}

/// Told once when a response body is done: how many bytes went out and whether it ended
/// normally (not cut by an error, a deadline or the client going away). The access log's line
/// waits for this.
pub trait OnEnd: Send {
    fn done(self: Box<Self>, bytes: u64, complete: bool);
}

/// What a response body holds upstream until it is done: its node's slot and the connection it
/// arrives on. Told once whether the body ended normally, so a connection whose response was read
/// whole can serve the next request.
pub trait Lease: Send {
    fn release(self: Box<Self>, complete: bool);
}

/// `inner`, failing with [`BodyError::Idle`] after `timeout` without a frame; releases `lease`
/// when the body ends or is dropped.
pub struct Guarded<B> {
    inner: B,
    /// Armed (allocated) only the first time the source has nothing ready.
    idle: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    /// A frame arrived since the timer was last armed.
    stale: bool,
    lease: Option<Box<dyn Lease>>,
    /// Data bytes passed on so far.
    sent: u64,
    /// Told when the body is done; `None` unless someone asked (the access log).
    tail: Option<Box<dyn OnEnd>>,
    /// The body's length, when it is known up front: hyper drops a body whose declared length
    /// has gone out without polling it for its end.
    expected: Option<u64>,
}

impl<B: Body> Guarded<B> {
    pub fn new(inner: B, timeout: Duration, lease: Option<Box<dyn Lease>>) -> Self {
        let expected = if inner.is_end_stream() {
            Some(0)
        } else {
            inner.size_hint().exact()
        };
        Guarded {
            inner,
            idle: None,
            timeout,
            stale: false,
            lease,
            sent: 0,
            tail: None,
            expected,
        }
    }
}

impl<B> Guarded<B> {
    fn finish(&mut self, complete: bool) {
        if let Some(lease) = self.lease.take() {
            lease.release(complete);
        }
        if let Some(tail) = self.tail.take() {
            tail.done(self.sent, complete);
        }
    }
}

impl<B> Drop for Guarded<B> {
    /// A body dropped before its end (the client went away) still gets its line; one whose
    /// declared length went out whole ended normally.
    fn drop(&mut self) {
        let complete = self.expected == Some(self.sent);
        if let Some(lease) = self.lease.take() {
            lease.release(complete);
        }
        if let Some(tail) = self.tail.take() {
            tail.done(self.sent, complete);
        }
    }
}

impl<B> Guarded<B> {
    /// `tail` is told when this body is done (or dropped before its end).
    pub fn set_tail(&mut self, tail: Box<dyn OnEnd>) {
        self.tail = Some(tail);
    }
}

/// A node's response body: read by the request's own task from an HTTP/1.1 connection, or
/// hyper's when the node speaks h2.
pub enum Answer {
    Own(ResponseBody),
    Shared(Incoming),
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Answer::Own(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::from),
            Answer::Shared(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Own(body) => body.is_end_stream(),
            Answer::Shared(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Own(body) => body.size_hint(),
            Answer::Shared(body) => body.size_hint(),
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    BodyError: From<B::Error>,
{
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
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(false);
                Poll::Ready(Some(Err(BodyError::from(error))))
            }
            Poll::Ready(None) => {
                this.finish(true);
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
                    this.finish(false);
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
