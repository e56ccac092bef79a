//! Which HTTP a connection speaks, told from its first bytes, as hyper-util's `auto` server
//! tells it: the HTTP/2 connection preface (h2c with prior knowledge, or h2 after ALPN) or
//! anything else, which HTTP/1 then parses (or refuses).
//!
//! The gateway picks the protocol itself instead of handing the connection to `auto`, because
//! `auto` cannot set hyper's `http1::Builder::max_header_size`: without it the head limit is
//! hyper's whole read buffer, which then also caps every read of a request body (see
//! [`HttpBuilders`](super::HttpBuilders)).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::greeting::PREFACE;

/// The protocol a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Http1,
    Http2,
}

/// Reads until the bytes so far are the whole preface (HTTP/2) or stop matching it (HTTP/1),
/// and gives them back in front of the rest of the stream.
pub(super) async fn sniff<IO: AsyncRead + Unpin>(mut io: IO) -> io::Result<(Version, Sniffed<IO>)> {
    let mut head = [0u8; PREFACE.len()];
    let mut filled = 0;
    let version = poll_fn(|cx| loop {
        let room = head.get_mut(filled..).unwrap_or_default();
        if room.is_empty() {
            return Poll::Ready(Ok(Version::Http2));
        }
        let mut buf = ReadBuf::new(room);
        match Pin::new(&mut io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        let read = buf.filled().len();
        let start = filled;
        filled += read;
        // End of stream, or a byte off the preface: HTTP/1 (hyper answers or closes).
        if read == 0 || head.get(start..filled) != PREFACE.get(start..filled) {
            return Poll::Ready(Ok(Version::Http1));
        }
    })
    .await?;
    let sniffed = Sniffed {
        io,
        head,
        at: 0,
        len: filled,
        deferred: None,
    };
    Ok((version, sniffed))
}

/// A stream whose first bytes were read by [`sniff`]: they are read again first.
pub(super) struct Sniffed<IO> {
    io: IO,
    head: [u8; PREFACE.len()],
    /// The next byte of `head` to hand out.
    at: usize,
    /// How many bytes of `head` were read.
    len: usize,
    /// An error met while reading on behalf of a read that already had bytes to return.
    deferred: Option<io::Error>,
}

write_through!(Sniffed, io);

impl<IO: AsyncRead + Unpin> AsyncRead for Sniffed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.deferred.take() {
            return Poll::Ready(Err(error));
        }
        let Some(rest) = this.head.get(this.at..this.len).filter(|r| !r.is_empty()) else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let take = rest.len().min(buf.remaining());
        if let Some(taken) = rest.get(..take) {
            buf.put_slice(taken);
        }
        this.at += take;
        // The rest of what has arrived goes in the same read: hyper grows its read buffer
        // whenever it holds a partial head, so a head handed over in two reads costs every
        // connection a second, twice as large buffer for as long as it lives.
        if this.at == this.len && buf.remaining() > 0 {
            if let Poll::Ready(Err(error)) = Pin::new(&mut this.io).poll_read(cx, buf) {
                this.deferred = Some(error);
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn sniffed(chunks: &[&[u8]]) -> (Version, Vec<u8>) {
        let mut source = chunked(chunks);
        let (version, mut io) = sniff(&mut source).await.unwrap_or_else(|e| panic!("{e}"));
        let mut all = Vec::new();
        io.read_to_end(&mut all)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (version, all)
    }

    /// A reader handing out `chunks` one read at a time, then the end of the stream.
    fn chunked(chunks: &[&[u8]]) -> Chunks {
        Chunks {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            then: None,
        }
    }

    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        /// What the read after the last chunk fails with, once; `None`: the end of the stream.
        then: Option<io::ErrorKind>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let Some(mut chunk) = this.chunks.pop_front() else {
                return Poll::Ready(this.then.take().map_or(Ok(()), |kind| Err(kind.into())));
            };
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..take]);
            if take < chunk.len() {
                this.chunks.push_front(chunk.split_off(take));
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_preface_is_http2_however_split_and_every_byte_is_read_again() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        // (A read of nothing is the end of the stream: no split at 0.)
        for split in 1..bytes.len() {
            let (version, all) = sniffed(&[&bytes[..split], &bytes[split..]]).await;
            assert_eq!(version, Version::Http2, "split at {split}");
            assert_eq!(all, bytes);
        }
    }

    #[tokio::test]
    async fn the_sniffed_bytes_come_back_with_what_followed_them_in_one_read() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n";
        let mut source = chunked(&[&request[..3], &request[3..]]);
        let (version, mut io) = sniff(&mut source).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version, Version::Http1);
        let mut buf = [0u8; 8192];
        let read = io.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..read], &request[..]);
    }

    #[tokio::test]
    async fn an_error_after_the_sniffed_bytes_comes_with_the_next_read() {
        let mut source = chunked(&[b"GET"]);
        source.then = Some(io::ErrorKind::ConnectionReset);
        let (version, mut io) = sniff(source).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version, Version::Http1);
        let mut buf = [0u8; 64];
        let read = io.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..read], b"GET");
        let error = io.read(&mut buf).await.err().map(|e| e.kind());
        assert_eq!(error, Some(io::ErrorKind::ConnectionReset));
    }

    #[tokio::test]
    async fn anything_else_is_http1_from_its_first_differing_byte() {
        let request = b"POST /_bulk HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let (version, all) = sniffed(&[b"P", b"OST", &request[4..]]).await;
        assert_eq!(version, Version::Http1);
        assert_eq!(all, request);
        let (version, all) = sniffed(&[b"PRI * HTTP/1.1\r\n"]).await;
        assert_eq!(
            (version, all.as_slice()),
            (Version::Http1, &b"PRI * HTTP/1.1\r\n"[..])
        );
        let (version, all) = sniffed(&[]).await;
        assert_eq!((version, all.len()), (Version::Http1, 0));
    }
}
