//! The request body as it goes upstream, and what can be taken back of it for a retry.
//!
//! Bodies are streamed, never buffered for retries: a request can go to a second node only
//! while its body has not been read at all. A body-less request (nearly every GET) can be sent
//! any number of times; a body that may need retrying is shared with the forwarding loop until
//! the connection first asks it for data.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::body::{BodyError, Guarded};

/// A client's body on its way upstream.
pub enum Outbound {
    /// No body: nothing to stream, nothing that can be used up.
    Empty,
    /// Streamed as it comes; not retried once sent.
    Streamed(Guarded<Incoming>),
    /// Streamed as it comes, but returnable until first read.
    Returnable(Returnable),
}

/// A body the forwarding loop can take back while nobody has read from it.
pub struct Returnable {
    shared: Arc<Mutex<Option<Guarded<Incoming>>>>,
    /// Taken out of `shared` at the first read, so later reads take no lock.
    taken: Option<Guarded<Incoming>>,
    size: SizeHint,
}

/// What the forwarding loop keeps of a body sent upstream, to send it again.
pub enum Claim {
    /// There was none: another attempt sends none too.
    Empty,
    /// Shared with a [`Returnable`] body until its first read.
    Shared(Arc<Mutex<Option<Guarded<Incoming>>>>),
    /// Streamed without a way back.
    Gone,
}

impl Outbound {
    /// `body` for the first attempt; with `retryable`, a [`Claim`] to take it back by.
    pub fn new(body: Guarded<Incoming>, retryable: bool) -> (Outbound, Claim) {
        if body.is_end_stream() {
            return (Outbound::Empty, Claim::Empty);
        }
        if !retryable {
            return (Outbound::Streamed(body), Claim::Gone);
        }
        let size = body.size_hint();
        let shared = Arc::new(Mutex::new(Some(body)));
        let claim = Claim::Shared(Arc::clone(&shared));
        let body = Returnable {
            shared,
            taken: None,
            size,
        };
        (Outbound::Returnable(body), claim)
    }
}

impl Claim {
    /// The body again for another attempt, if no byte of it has been read; `Empty` stays
    /// `Empty`. `None`: it is gone upstream, the request cannot be repeated.
    pub fn reclaim(&self) -> Option<(Outbound, Claim)> {
        match self {
            Claim::Empty => Some((Outbound::Empty, Claim::Empty)),
            Claim::Shared(shared) => {
                let body = shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()?;
                Some(Outbound::new(body, true))
            }
            Claim::Gone => None,
        }
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
            Outbound::Returnable(body) => {
                if body.taken.is_none() {
                    body.taken = body
                        .shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                }
                match &mut body.taken {
                    Some(inner) => Pin::new(inner).poll_frame(cx),
                    // Taken back by the loop: this attempt was abandoned.
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outbound::Empty => true,
            Outbound::Streamed(body) => body.is_end_stream(),
            Outbound::Returnable(body) => body.taken.as_ref().is_some_and(Guarded::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outbound::Empty => SizeHint::with_exact(0),
            Outbound::Streamed(body) => body.size_hint(),
            Outbound::Returnable(body) => match &body.taken {
                Some(inner) => inner.size_hint(),
                None => body.size,
            },
        }
    }
}
