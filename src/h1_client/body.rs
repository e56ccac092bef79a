//! A node's response body, read from its connection as the client's side asks for it; the
//! connection goes back to its pool the moment the body's last byte is read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::codec::{Chunked, Framing, Head, Step};
use super::{Conn, READ_SIZE};

/// Where a connection goes when its response was read whole: its node's pool.
pub trait Home: Send + Sync {
    fn put(&self, conn: Box<Conn>);
}

/// The body of one response, and the connection it arrives on until it is read.
pub struct ResponseBody {
    /// `None` once the body is over (or failed): the connection went home, or was closed.
    conn: Option<Box<Conn>>,
    reading: Reading,
    /// The connection may serve another request after this body.
    reusable: bool,
    home: Arc<dyn Home>,
}

enum Reading {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

impl ResponseBody {
    /// `whole`: the request went out whole (else the connection is not reused).
    pub fn new(conn: Box<Conn>, head: &Head, whole: bool, home: Arc<dyn Home>) -> ResponseBody {
        let reading = match head.framing {
            Framing::Empty => Reading::Done,
            Framing::Length(length) => Reading::Length(length),
            Framing::Chunked => Reading::Chunked(Chunked::default()),
            Framing::Close => Reading::Close,
        };
        let mut body = ResponseBody {
            conn: Some(conn),
            reading,
            reusable: head.reusable && whole,
            home,
        };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The body is over: the connection goes home when it may serve again and nothing
    /// followed the body; otherwise it is closed.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let Some(mut conn) = self.conn.take() {
            if self.reusable && conn.read.is_empty() {
                conn.trim();
                self.home.put(conn);
            }
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.reading = Reading::Done;
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match &mut this.reading {
                Reading::Done => Step::End,
                Reading::Length(left) if !conn.read.is_empty() => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.read.len());
                    *left -= take as u64;
                    Step::Data(conn.read.split_to(take).freeze())
                }
                Reading::Close if !conn.read.is_empty() => Step::Data(conn.read.split().freeze()),
                Reading::Length(_) | Reading::Close => Step::More,
                Reading::Chunked(chunked) => match chunked.step(&mut conn.read) {
                    Ok(step) => step,
                    Err(error) => {
                        return this.fail(io::Error::new(io::ErrorKind::InvalidData, error))
                    }
                },
            };
            match step {
                Step::Data(data) => {
                    if matches!(this.reading, Reading::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::More => {}
            }
            if conn.read.capacity() - conn.read.len() < READ_SIZE / 4 {
                conn.read.reserve(READ_SIZE);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read) {
                Poll::Ready(Ok(0)) if matches!(this.reading, Reading::Close) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the node closed the connection before the response body's end",
                    ))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return this.fail(error),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(left) => SizeHint::with_exact(left),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
