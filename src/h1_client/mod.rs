//! HTTP/1.1 to a node, driven by the task of the request it carries.
//!
//! hyper's client gives each connection a task of its own and hands requests, responses and
//! body chunks to it through channels: two tasks woken per request, and their queues, for an
//! exchange that is strictly one request after another on one connection. Here the request's
//! future writes the head and body itself and reads the response head, and the response body
//! reads straight from the connection as the client's connection polls it. A connection is
//! owned by exactly one request or by its pool, never shared, so nothing is locked or queued.
//!
//! What a node sends is checked by the rules in [`codec`]; a connection is reused only when its
//! last response was read whole and nothing followed it.

mod body;
pub mod codec;
mod io;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request};
use hyper::body::Body;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

pub use body::{Home, ResponseBody};
use codec::{Head, Sending};
pub use io::{from_connector, Io};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response head is read into this much room: Elasticsearch's heads and most of its answers
/// fit, and it is all an idle pooled connection keeps.
const HEAD_READ: usize = 8 * 1024;
/// A body is read in pieces of up to this much: larger answers take fewer reads.
const READ_SIZE: usize = 16 * 1024;
/// Body chunks up to this long are copied behind the head (one write for both); longer ones are
/// written from where they are.
const COPY_MAX: usize = 16 * 1024;
/// A pooled connection keeps buffers up to this size; larger ones (a big body went through) are
/// given back to the allocator rather than held while idle.
const KEEP_BUFFER: usize = HEAD_READ;

/// One HTTP/1.1 connection to a node and its buffers.
pub struct Conn {
    io: Io,
    read: BytesMut,
    write: Vec<u8>,
    indices: codec::Indices,
    /// The exchange's deadline (its response head, its request all sent), one timer for the
    /// connection's life: each exchange moves it on, which costs a store while the timer is
    /// still registered for an earlier time (the runtime moves it when that time comes), where
    /// a timer per request was registered and removed every time (~550 instructions per
    /// request). While the connection idles, the timer keeps the last exchange's waker until
    /// it fires, the upstream `timeout` at most: that request's task, if it has ended, stays
    /// allocated until then.
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    /// Made inside the runtime, whose timers the deadline uses.
    pub fn new(io: Io) -> Conn {
        Conn {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            indices: Vec::new(),
            deadline: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// Whether the node closed the connection (or sent something unasked) while it was idle:
    /// one read that does not wait. A connection found so carries nothing, so the request it
    /// was picked for is still whole for another.
    pub fn is_stale(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if !self.read.is_empty() {
            return true;
        }
        self.read.reserve(1);
        !matches!(
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.read),
            Poll::Pending
        )
    }

    /// Ready to idle in a pool: buffers a large body grew are let go.
    fn trim(&mut self) {
        if self.read.capacity() > KEEP_BUFFER {
            self.read = BytesMut::new();
        }
        if self.write.capacity() > KEEP_BUFFER {
            self.write = Vec::new();
        }
    }

    /// Writes `request` (its target in origin form) and reads the response head. The future
    /// ends once the head is there and the body all sent; a node that answered early and then
    /// stopped taking the body ends it at once, [`Exchanged::whole`] false, and the connection
    /// is not reused. The request is borrowed, not taken: its body is streamed from where it
    /// is, and the caller's future holds no second copy of it. Not over by `deadline`, it ends
    /// with [`DeadlinePassed`].
    pub fn send<'a, B>(
        &'a mut self,
        request: &'a mut Request<B>,
        deadline: Instant,
    ) -> Exchange<'a, B>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let declared = request.headers().contains_key(http::header::CONTENT_LENGTH);
        let sending = if declared {
            Sending::Length
        } else if request.body().is_end_stream() {
            Sending::Empty
        } else {
            Sending::Chunked
        };
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        self.deadline.as_mut().reset(deadline);
        self.write.clear();
        codec::encode_head(
            request.method(),
            target,
            request.headers(),
            sending,
            &mut self.write,
        );
        Exchange {
            conn: self,
            head_request: request.method() == Method::HEAD,
            body: request.body_mut(),
            chunked: sending == Sending::Chunked,
            written: 0,
            large: None,
            body_done: sending == Sending::Empty,
            sent: false,
            early: None,
            yielded: false,
        }
    }
}

/// A response head, and whether the whole request went out before it.
pub struct Exchanged {
    pub head: Head,
    pub whole: bool,
}

/// The future of [`Conn::send`].
pub struct Exchange<'a, B> {
    conn: &'a mut Conn,
    /// A `HEAD`: its answer has no body, whatever its fields say.
    head_request: bool,
    body: &'a mut B,
    chunked: bool,
    /// How much of `conn.write` is out.
    written: usize,
    /// A long body chunk being written from where it is.
    large: Option<Bytes>,
    body_done: bool,
    /// Everything written and flushed.
    sent: bool,
    /// The node's answer, when it came before the body was all sent (boxed: rare, and the
    /// request's future would otherwise carry its space).
    early: Option<Box<Head>>,
    /// The first poll has given way to the tasks already woken (see [`Exchange::poll`]).
    yielded: bool,
}

impl<B> Exchange<'_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Writes as much of the request as can go now. The body's chunks that are ready are taken
    /// first, so the head and a small body leave in one write: the node reads them in one go,
    /// instead of waking for the head and again for the body.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        let io = &mut self.conn.io;
        let write = &mut self.conn.write;
        loop {
            let mut waiting = false;
            while !self.body_done && self.large.is_none() && write.len() < COPY_MAX {
                match Pin::new(&mut *self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are not forwarded: nothing was declared to the node for them.
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        if self.chunked {
                            codec::encode_chunk_size(data.len(), write);
                        }
                        if data.len() <= COPY_MAX {
                            write.extend_from_slice(&data);
                            if self.chunked {
                                write.extend_from_slice(b"\r\n");
                            }
                        } else {
                            self.large = Some(data);
                        }
                        // A body whose declared length has all come says so: its end is not
                        // polled for. hyper's request body tells its end only once the
                        // connection's task has let go of the sending side; asking costs a poll
                        // of its channel, and a wait when that task has not run yet.
                        if !self.chunked && self.body.is_end_stream() {
                            self.body_done = true;
                        }
                    }
                    Poll::Ready(Some(Err(error))) => return Err(error.into()),
                    Poll::Ready(None) => {
                        self.body_done = true;
                        if self.chunked {
                            write.extend_from_slice(b"0\r\n\r\n");
                        }
                    }
                    Poll::Pending => waiting = true,
                }
                if waiting {
                    break;
                }
            }
            while self.written < write.len() {
                match Pin::new(&mut *io).poll_write(cx, &write[self.written..]) {
                    Poll::Ready(Ok(0)) => return Err(write_zero()),
                    Poll::Ready(Ok(n)) => self.written += n,
                    Poll::Ready(Err(error)) => return Err(error.into()),
                    Poll::Pending => return Ok(()),
                }
            }
            write.clear();
            self.written = 0;
            if let Some(data) = &mut self.large {
                while data.has_remaining() {
                    match Pin::new(&mut *io).poll_write(cx, data) {
                        Poll::Ready(Ok(0)) => return Err(write_zero()),
                        Poll::Ready(Ok(n)) => data.advance(n),
                        Poll::Ready(Err(error)) => return Err(error.into()),
                        Poll::Pending => return Ok(()),
                    }
                }
                self.large = None;
                if self.chunked {
                    write.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if self.body_done || waiting {
                // Out now, whether the body is done or its next chunk is awaited.
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.sent = self.body_done,
                    Poll::Ready(Err(error)) => return Err(error.into()),
                    Poll::Pending => {}
                }
                return Ok(());
            }
        }
    }

    /// Reads until a response head is there.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Head, BoxError>> {
        let conn = &mut *self.conn;
        loop {
            // Parsed only when bytes came: the first poll finds none.
            if !conn.read.is_empty() {
                if let Some(head) =
                    codec::parse_head(&mut conn.read, self.head_request, &mut conn.indices)?
                {
                    return Poll::Ready(Ok(head));
                }
            }
            if conn.read.capacity() - conn.read.len() < HEAD_READ / 8 {
                conn.read.reserve(HEAD_READ);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the node closed the connection before its response head",
                    )
                    .into()))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The exchange's steps as far as they go now (see [`Exchange::poll`]).
    fn progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<Exchanged, BoxError>> {
        let head = match self.early.take() {
            Some(head) => head,
            None => {
                // Written first: the read that follows then usually finds the answer or waits
                // once.
                if !self.sent {
                    self.poll_send(cx)?;
                }
                match self.poll_head(cx) {
                    Poll::Ready(Ok(head)) if self.sent => {
                        return Poll::Ready(Ok(Exchanged { head, whole: true }))
                    }
                    Poll::Ready(Ok(head)) => Box::new(head),
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        match self.poll_send(cx) {
            Ok(()) if self.sent => Poll::Ready(Ok(Exchanged {
                head: *head,
                whole: true,
            })),
            Ok(()) => {
                self.early = Some(head);
                Poll::Pending
            }
            Err(_) => Poll::Ready(Ok(Exchanged {
                head: *head,
                whole: false,
            })),
        }
    }
}

impl<B> Future for Exchange<'_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Exchanged, BoxError>;

    /// The request goes out while the answer is awaited. A node may answer before it has read
    /// the whole body (a stand-in that answers at once, or an error such as 413): the rest of
    /// the body is still sent, so the client's request is read whole and its connection, and
    /// this one, stay usable; if the node stops taking it, the answer it gave is the answer.
    ///
    /// The first poll writes nothing: it wakes its own task and gives way, so the other tasks
    /// already woken with it (client connections that became readable in the same turn of the
    /// runtime) read and check their requests first, and the requests to the nodes then go out
    /// one after another. A node that shares the gateway's core is then woken for several
    /// requests at a time instead of taking the core back after each one (HAProxy's loop orders
    /// its work the same way: every ready client read before any server is written). On one
    /// 2-vCPU VM, with a shared core, context switches per proxied `GET` went from 0.76 to 0.40
    /// and the gateway served 12 % more of them; on another, `GET` was no faster and `_bulk` up
    /// to 7 % faster. The extra poll costs about 1,100 instructions. A request dropped here
    /// (its client gone) drops the connection with it, though nothing was written on it yet.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match this.progress(cx) {
            // Looked at only when the exchange waits: a wake-up finds the time passed or
            // registers for it.
            Poll::Pending if this.conn.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(Box::new(DeadlinePassed)))
            }
            polled => polled,
        }
    }
}

/// The exchange was not over by its deadline: no response head, or the request still going
/// out.
#[derive(Debug)]
pub struct DeadlinePassed;

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the exchange did not end within the upstream timeout")
    }
}

impl std::error::Error for DeadlinePassed {}

fn write_zero() -> BoxError {
    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
}
