use super::*;

fn head(text: &str) -> Result<Option<Head>, CodecError> {
    parse_head(&mut BytesMut::from(text), false, &mut Vec::new())
}

fn framing(text: &str) -> (Framing, bool) {
    let head = head(text).unwrap().unwrap();
    (head.framing, head.reusable)
}

#[test]
fn the_request_head_is_written_in_origin_form_with_its_fields_as_they_are() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("node:9200"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let mut out = Vec::new();
    encode_head(
        &Method::GET,
        "/_search?q=a",
        &headers,
        Sending::Empty,
        &mut out,
    );
    assert_eq!(
        out,
        b"GET /_search?q=a HTTP/1.1\r\nhost: node:9200\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
    out.clear();
    encode_head(
        &Method::POST,
        "/_bulk",
        &HeaderMap::new(),
        Sending::Chunked,
        &mut out,
    );
    assert_eq!(
        out,
        b"POST /_bulk HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn chunk_sizes_are_lowercase_hex() {
    for (size, text) in [
        (0, "0"),
        (1, "1"),
        (15, "f"),
        (16, "10"),
        (0xabcdef, "abcdef"),
    ] {
        let mut out = Vec::new();
        encode_chunk_size(size, &mut out);
        assert_eq!(out, format!("{text}\r\n").as_bytes());
    }
}

#[test]
fn a_head_is_read_only_when_it_is_all_there_and_the_body_stays_behind() {
    let full = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello";
    for cut in 0..full.len() - 5 {
        assert!(head(&full[..cut]).unwrap().is_none(), "{cut}");
    }
    let mut buf = BytesMut::from(full);
    let head = parse_head(&mut buf, false, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.reusable);
    assert_eq!(head.headers["x-a"], "b");
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn interim_answers_are_skipped() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
         HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    );
    let head = parse_head(&mut buf, false, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(head.status, StatusCode::CREATED);
    assert!(!head.headers.contains_key("link"));
    assert_eq!(head.framing, Framing::Empty);
    assert!(buf.is_empty());
}

#[test]
fn answers_without_a_body_have_none_whatever_they_declare() {
    for status in ["204 No Content", "304 Not Modified"] {
        let text = format!("HTTP/1.1 {status}\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(framing(&text), (Framing::Empty, true), "{status}");
    }
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n");
    let head = parse_head(&mut buf, true, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Framing::Empty);
    assert_eq!(head.headers["content-length"], "7");
}

#[test]
fn a_chunked_coding_wins_over_a_length_and_the_connection_is_not_trusted_after() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        (Framing::Chunked, true)
    );
    let head = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Framing::Chunked);
    assert!(!head.reusable);
    assert!(!head.headers.contains_key("content-length"));
    // Codings that do not end in chunked leave only the connection's close to end the body.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
        (Framing::Close, false)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: Chunked\r\n\r\n"),
        (Framing::Chunked, true)
    );
}

#[test]
fn lengths_must_agree_and_be_plain_digits() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n"),
        (Framing::Length(5), true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
        (Framing::Length(5), true)
    );
    for bad in [
        "5\r\ncontent-length: 6",
        "5, 6",
        "+5",
        "-1",
        "0x5",
        "",
        "5 5",
        "99999999999999999999",
    ] {
        let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
        assert_eq!(
            head(&text).unwrap_err(),
            CodecError::ContentLength,
            "{bad:?}"
        );
    }
}

#[test]
fn a_body_without_framing_ends_with_the_connection() {
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n"),
        (Framing::Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
        (Framing::Length(1), false)
    );
}

#[test]
fn oversized_or_malformed_heads_are_refused() {
    let long = format!("HTTP/1.1 200 OK\r\nx-a: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(head(&long).unwrap_err(), CodecError::HeadTooLarge);
    assert_eq!(
        head(&long[..MAX_HEAD]).unwrap_err(),
        CodecError::HeadTooLarge
    );
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("x-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(head(&many).unwrap_err(), CodecError::HeadTooLarge);
    for bad in [
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: \u{1}\r\n\r\n",
    ] {
        assert!(matches!(head(bad), Err(CodecError::Head(_))), "{bad:?}");
    }
}

/// A chunked body's data, and the bytes after its end.
type Decoded = (Vec<u8>, Vec<u8>);

/// Decodes `wire` fed in pieces of at most `piece` bytes; `None` when the bytes end before the
/// body does.
fn decode(wire: &[u8], piece: usize) -> Result<Option<Decoded>, CodecError> {
    let mut chunked = Chunked::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        match chunked.step(&mut buf)? {
            Step::Data(bytes) => data.extend_from_slice(&bytes),
            Step::End => {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(&wire[fed..]);
                return Ok(Some((data, rest)));
            }
            Step::More if fed == wire.len() => return Ok(None),
            Step::More => {
                let next = (fed + piece).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_the_same_however_they_arrive() {
    let wire =
        b"5;ext=1\r\nhello\r\n1 ; a\r\n \r\n0010\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\nNEXT";
    for piece in 1..=wire.len() {
        let (data, rest) = decode(wire, piece).unwrap().unwrap();
        assert_eq!(data, b"hello 0123456789abcdef", "{piece}");
        assert_eq!(rest, b"NEXT", "{piece}");
    }
}

#[test]
fn malformed_chunks_are_refused() {
    for bad in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"10000000000000000\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"0\r\nx-t: 1\n\r\n",
    ] {
        for piece in [1, 3, bad.len()] {
            assert!(
                matches!(decode(bad, piece), Err(CodecError::Chunk(_))),
                "{:?} in pieces of {piece}",
                String::from_utf8_lossy(bad)
            );
        }
    }
    assert_eq!(decode(b"5\r\nhel", 2), Ok(None));
    let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
    assert!(matches!(
        decode(long.as_bytes(), 64),
        Err(CodecError::Chunk(_))
    ));
    let trailers = format!("0\r\n{}\r\n\r\n", "x-t: 1\r\n".repeat(MAX_TRAILERS / 8 + 1));
    assert!(matches!(
        decode(trailers.as_bytes(), 512),
        Err(CodecError::Chunk(_))
    ));
}

#[test]
fn the_largest_chunk_size_is_read_and_one_digit_more_is_refused() {
    let mut chunked = Chunked::default();
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
    assert_eq!(
        chunked.step(&mut buf).unwrap(),
        Step::Data(Bytes::from_static(b"ab"))
    );
}

/// hyper parses the connection's next request into the map of the response it wrote: a
/// client's usual fields and the three the gateway adds fit in it without regrowing.
#[test]
fn a_response_map_has_room_for_the_next_request_and_its_forwarding_fields() {
    let head = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.headers.len(), 1);
    assert!(
        head.headers.capacity() >= 9 + 3,
        "{}",
        head.headers.capacity()
    );
}
