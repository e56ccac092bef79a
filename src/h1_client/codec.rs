//! The bytes of one HTTP/1.1 exchange with a node: the request head written out, the response
//! head read with `httparse`, and the response body's framing decided and decoded.
//!
//! Pure functions over buffers, so every rule below is tested (and fuzzed) without a socket.
//! Where RFC 9112 lets a recipient choose, the choice is the strict one: an answer that could be
//! read two ways (two lengths, a length beside a chunked coding, a chunk size with a sign) is
//! either refused or read the one safe way with the connection closed after it, so bytes a node
//! did not mean as this response never reach the client or the next request.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};

/// The most a response head may take: Elasticsearch's are a few hundred bytes; a node that
/// sends more is answered with a 502 rather than buffered without bound.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most fields a response head may have (hyper's client default).
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (with its extensions) and the most trailer bytes taken.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why a node's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("response head over {MAX_HEAD} bytes or {MAX_HEADERS} fields")]
    HeadTooLarge,
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// How the response body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Read until the node closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once this body was read whole.
    pub reusable: bool,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No body, nothing declared.
    Empty,
    /// The request's own `Content-Length` (or the size the gateway knows) declares it.
    Length,
    /// Unknown length: chunked, with the field added.
    Chunked,
}

/// Writes the request head: the request line in origin form, the fields as they are, and
/// `Transfer-Encoding: chunked` when the body's length is not known up front.
pub fn encode_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    sending: Sending,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if sending == Sending::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked request body: its size line and data, or the last chunk.
pub fn encode_chunk_size(size: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = size;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// A field's name and value as offsets into its head: what is kept of httparse's reading so the
/// head can be split off the buffer, and shared by the values, once the parser's borrow ends.
/// Kept by the connection and reused, so no request pays for an array of them.
pub type Indices = Vec<(u32, u32, u32, u32)>;

/// Reads a response head from the front of `buf`, skipping interim (1xx) answers: `None` until
/// it is all there. The head's bytes are taken out of `buf` (its field values share them), the
/// body's first bytes stay. `head_request`: the answer is to a `HEAD`, so it has no body.
pub fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    indices: &mut Indices,
) -> Result<Option<Head>, CodecError> {
    loop {
        indices.clear();
        let (status, version, len) = {
            let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                buf,
                &mut fields,
            );
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
                Ok(httparse::Status::Complete(_)) => return Err(CodecError::HeadTooLarge),
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                    return Err(CodecError::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(CodecError::HeadTooLarge),
                Err(error) => return Err(CodecError::Head(parse_error(error))),
            };
            let code = response.code.ok_or(CodecError::Head("status"))?;
            let status = StatusCode::from_u16(code).map_err(|_| CodecError::Head("status"))?;
            let version = match response.version {
                Some(1) => Version::HTTP_11,
                _ => Version::HTTP_10,
            };
            let base = buf.as_ptr() as usize;
            // Offsets within a head of at most MAX_HEAD bytes: they fit in u32.
            let at = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
            indices.extend(response.headers.iter().map(|field| {
                let (name, value) = (at(field.name.as_bytes()), at(field.value));
                (
                    name,
                    name + field.name.len() as u32,
                    value,
                    value + field.value.len() as u32,
                )
            }));
            (status, version, len)
        };
        let head = buf.split_to(len).freeze();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        return build(status, version, &head, indices, head_request).map(Some);
    }
}

fn parse_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "field name",
        httparse::Error::HeaderValue => "field value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status",
        httparse::Error::Token => "token",
        httparse::Error::Version => "version",
        httparse::Error::TooManyHeaders => "too many fields",
    }
}

/// The fields a node's response head has room for, however few it has. hyper empties the map of
/// each response it writes and parses the connection's next request into it; that request's
/// fields (an Elasticsearch client sends eight or nine) and the three forwarding fields the
/// gateway adds then fit without the map growing again (about 1,000 instructions when it does).
/// An idle connection keeps that map: about 600 bytes more than a map sized to the response.
const RECYCLED_ROOM: usize = 12;

fn build(
    status: StatusCode,
    version: Version,
    head: &Bytes,
    fields: &[(u32, u32, u32, u32)],
    head_request: bool,
) -> Result<Head, CodecError> {
    let mut headers = HeaderMap::with_capacity(fields.len().max(RECYCLED_ROOM));
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = version != Version::HTTP_11;
    for &(name_at, name_end, value_at, value_end) in fields {
        let name = HeaderName::from_bytes(&head[name_at as usize..name_end as usize])
            .map_err(|_| CodecError::Head("field name"))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_at as usize..value_end as usize))
                .map_err(|_| CodecError::Head("field value"))?;
        if name == CONTENT_LENGTH {
            let declared = content_length(value.as_bytes())?;
            if length.is_some_and(|known| known != declared) {
                return Err(CodecError::ContentLength);
            }
            length = Some(declared);
        } else if name == TRANSFER_ENCODING {
            // The last coding decides, over every field: chunked last is the only framing a
            // length can come from.
            chunked = Some(ends_chunked(value.as_bytes()));
        } else if name == CONNECTION {
            close |= has_token(value.as_bytes(), b"close");
        }
        headers.append(name, value);
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        // A length beside a transfer coding is ignored, and the connection not trusted after.
        if length.is_some() {
            headers.remove(CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            Framing::Chunked
        } else {
            close = true;
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
            None => {
                close = true;
                Framing::Close
            }
        }
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        close = true;
    }
    Ok(Head {
        status,
        headers,
        framing,
        reusable: !close,
    })
}

/// A `Content-Length` value: digits only, or a list of the same digits (a field repeated by a
/// proxy on the way).
fn content_length(value: &[u8]) -> Result<u64, CodecError> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(CodecError::ContentLength);
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|known| known != n) {
            return Err(CodecError::ContentLength);
        }
        found = Some(n);
    }
    found.ok_or(CodecError::ContentLength)
}

fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| trim(part).eq_ignore_ascii_case(token))
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// What a body decoder made of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// Nothing to give until more bytes arrive.
    More,
    /// The body is over; the bytes after it stay in the buffer.
    End,
}

/// Reads a chunked body out of a buffer, a step at a time, whatever the reads' boundaries.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, CodecError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&buf[..line])?;
                    let _ = buf.split_to(line + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(CodecError::Chunk("no line end after the data"));
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = line(buf, MAX_TRAILERS.saturating_sub(self.trailer_bytes))?
                    else {
                        return Ok(Step::More);
                    };
                    self.trailer_bytes += line + 2;
                    let _ = buf.split_to(line + 2);
                    // Trailer fields are read and dropped: nothing downstream asked for them.
                    if line == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Step::End),
            }
        }
    }
}

/// The length of the CRLF-ended line at the front of `buf` (without its CRLF), `None` while it
/// is not all there; a bare LF, or a line over `limit`, is an error.
fn line(buf: &[u8], limit: usize) -> Result<Option<usize>, CodecError> {
    let window = &buf[..buf.len().min(limit.saturating_add(2))];
    match memchr::memchr(b'\n', window) {
        Some(0) => Err(CodecError::Chunk("bare line feed")),
        Some(lf) if window[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(CodecError::Chunk("bare line feed")),
        None if window.len() > limit => Err(CodecError::Chunk("line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits, then optional whitespace and extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, CodecError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(CodecError::Chunk("no chunk size"));
    }
    if digits > 16 {
        return Err(CodecError::Chunk("chunk size too large"));
    }
    let rest = trim(&line[digits..]);
    if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(CodecError::Chunk("chunk size"));
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(CodecError::Chunk("chunk size too large"))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests;
