//! The request body as it goes upstream.
//!
//! Bodies are streamed, never buffered for retries: a connection is made before a request is
//! handed to it, so a request whose connection failed comes back whole, and one that went out is
//! repeated only when it had no body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::message::body::{BodyError, Guarded};

/// A client's body on its way upstream.
pub enum Outbound {
    /// No body: nothing to stream, nothing used up by sending it.
    Empty,
    /// Streamed as it comes.
    Streamed(Guarded<Incoming>),
}

impl Outbound {
    pub fn new(body: Guarded<Incoming>) -> Outbound {
        if body.is_end_stream() {
            Outbound::Empty
        } else {
            Outbound::Streamed(body)
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Outbound::Empty)
    }
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Outbound::Empty => Poll::Ready(None),
            Outbound::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outbound::Empty => true,
            Outbound::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outbound::Empty => SizeHint::with_exact(0),
            Outbound::Streamed(body) => body.size_hint(),
        }
    }
}
