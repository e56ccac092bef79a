//! The access log: one line per request, written when its response has been sent (so the line
//! holds the bytes that really went out), handed to a writer thread through a bounded queue.
//! A request never waits for the disk; when the queue is full lines are dropped and counted.
//!
//! The query string is left out unless asked for: queries can carry data (a search term, a
//! document id) that the operator of a log pipeline should not see by default.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::CONTENT_LENGTH;
use http::{HeaderName, Method, Request};

use crate::body::OnEnd;
use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::line_writer::{open_output, Writer};
use crate::log_fields::{Address, Timestamp};

static X_OPAQUE_ID: HeaderName = HeaderName::from_static("x-opaque-id");

/// The open access log.
pub struct AccessLog {
    writer: Writer,
    format: AccessLogFormat,
    query: bool,
}

/// Why the access log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("access log {path}: {source}")]
pub struct OpenError {
    path: String,
    source: std::io::Error,
}

/// What is known of a request when it arrives; completed as it is answered.
pub struct Entry {
    time: SystemTime,
    started: Instant,
    peer: SocketAddr,
    method: Method,
    target: String,
    bytes_in: Option<u64>,
    opaque_id: Option<String>,
    /// Who the request authenticated as: `ns/svc/token` or a user name.
    pub principal: Option<String>,
    /// The cluster's time to the response head, for forwarded requests.
    pub upstream: Option<Duration>,
    status: u16,
}

impl AccessLog {
    /// `None` when the configuration turns the access log off.
    pub fn open(config: &AccessLogConfig) -> Result<Option<Arc<AccessLog>>, OpenError> {
        let (Some(format), Some(output)) = (config.format, &config.output) else {
            return Ok(None);
        };
        let (sink, path) = open_output(output).map_err(|(path, source)| OpenError {
            path: path.display().to_string(),
            source,
        })?;
        let writer = Writer::start(
            "access",
            sink,
            config.buffer,
            AccessLogConfig::DROP_WARNING_INTERVAL,
        )
        .map_err(|source| OpenError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Some(Arc::new(AccessLog {
            writer,
            format,
            query: config.query,
        })))
    }

    /// Lines lost so far (queue full, output failing), for the metrics.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// Writes what is queued, within `deadline`; later lines are dropped.
    pub fn close(&self, deadline: Duration) {
        if !self.writer.close(deadline) {
            tracing::warn!("access log not fully written at shutdown");
        }
    }

    /// The entry of a request that has just arrived from `peer`.
    pub fn begin<B>(&self, request: &Request<B>, peer: SocketAddr) -> Entry {
        let uri = request.uri();
        let target = match (self.query, uri.query()) {
            (true, Some(_)) => uri.path_and_query().map_or("/", |pq| pq.as_str()),
            _ => uri.path(),
        };
        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
        Entry {
            time: SystemTime::now(),
            started: Instant::now(),
            peer,
            method: request.method().clone(),
            target: target.to_owned(),
            bytes_in: header(&CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            opaque_id: header(&X_OPAQUE_ID).map(str::to_owned),
            principal: None,
            upstream: None,
            status: 0,
        }
    }

    /// Completes `entry` with the response's status; the line goes out when `tail` is told the
    /// body ended.
    pub fn tail(self: &Arc<Self>, mut entry: Entry, status: u16) -> Box<dyn OnEnd> {
        entry.status = status;
        Box::new(Tail {
            log: Arc::clone(self),
            entry,
        })
    }

    fn finish(&self, entry: &Entry, bytes_out: u64, complete: bool) {
        let took = Seconds(entry.started.elapsed());
        let upstream = entry.upstream.map(Seconds);
        let time = Timestamp(entry.time);
        let line = match self.format {
            AccessLogFormat::Json => json_line(entry, time, took, upstream, bytes_out, complete),
            AccessLogFormat::Text => text_line(entry, time, took, upstream, bytes_out, complete),
        };
        self.writer.write(line);
    }
}

/// The JSON line: the same fields under ECS-style names, every key present (`null` when
/// unknown), written field by field like the text line; strings are escaped by serde_json.
fn json_line(
    entry: &Entry,
    time: Timestamp,
    took: Seconds,
    upstream: Option<Seconds>,
    bytes_out: u64,
    complete: bool,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(320);
    let mut numbers = itoa::Buffer::new();
    line.extend_from_slice(b"{\"@timestamp\":\"");
    time.write_to(&mut line);
    line.extend_from_slice(b"\",\"client.address\":\"");
    Address(entry.peer).write_to(&mut line);
    line.extend_from_slice(b"\",\"http.request.method\":");
    json_str(&mut line, Some(entry.method.as_str()));
    line.extend_from_slice(b",\"url.original\":");
    json_str(&mut line, Some(&entry.target));
    line.extend_from_slice(b",\"http.response.status_code\":");
    line.extend_from_slice(numbers.format(entry.status).as_bytes());
    line.extend_from_slice(b",\"http.request.body.bytes\":");
    match entry.bytes_in {
        Some(n) => line.extend_from_slice(numbers.format(n).as_bytes()),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"http.response.body.bytes\":");
    line.extend_from_slice(numbers.format(bytes_out).as_bytes());
    line.extend_from_slice(b",\"event.duration_seconds\":");
    took.write_to(&mut line);
    line.extend_from_slice(b",\"upstream.duration_seconds\":");
    match upstream {
        Some(seconds) => seconds.write_to(&mut line),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"user.name\":");
    json_str(&mut line, entry.principal.as_deref());
    line.extend_from_slice(b",\"opaque_id\":");
    json_str(&mut line, entry.opaque_id.as_deref());
    line.extend_from_slice(b",\"completed\":");
    line.extend_from_slice(if complete { b"true" } else { b"false" });
    line.extend_from_slice(b"}\n");
    line
}

/// A JSON string (escaped), or `null`.
fn json_str(line: &mut Vec<u8>, text: Option<&str>) {
    // Writing a `str` into a `Vec` cannot fail; `null` would stand in if it did.
    if serde_json::to_writer(&mut *line, &text).is_err() {
        line.extend_from_slice(b"null");
    }
}

/// A duration in seconds with microsecond precision (`0.000812`), from integers: formatting an
/// `f64` to six places costs more than the rest of the line.
#[derive(Clone, Copy)]
struct Seconds(Duration);

impl Seconds {
    fn micros(self) -> u64 {
        // Rounded to the nearest microsecond, as `{:.6}` of the seconds rounds; 584,000 years
        // fit.
        u64::try_from((self.0.as_nanos() + 500) / 1000).unwrap_or(u64::MAX)
    }
}

impl Seconds {
    /// `2.000812`: whole seconds and six places.
    fn write_to(self, line: &mut Vec<u8>) {
        let micros = self.micros();
        line.extend_from_slice(itoa::Buffer::new().format(micros / 1_000_000).as_bytes());
        let mut fraction = [b'.', b'0', b'0', b'0', b'0', b'0', b'0'];
        let mut rest = micros % 1_000_000;
        for place in fraction[1..].iter_mut().rev() {
            // `rest % 10` is a digit: the cast keeps it.
            *place = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.extend_from_slice(&fraction);
    }
}

/// `time client "METHOD target" status bytes_in bytes_out[!] seconds upstream principal
/// opaque_id`, written field by field: through `core::fmt` the line cost twice the rest of the
/// request's logging.
fn text_line(
    entry: &Entry,
    time: Timestamp,
    took: Seconds,
    upstream: Option<Seconds>,
    bytes_out: u64,
    complete: bool,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(192);
    let mut numbers = itoa::Buffer::new();
    time.write_to(&mut line);
    line.push(b' ');
    Address(entry.peer).write_to(&mut line);
    line.extend_from_slice(b" \"");
    line.extend_from_slice(entry.method.as_str().as_bytes());
    line.push(b' ');
    push_escaped(&mut line, &entry.target);
    line.extend_from_slice(b"\" ");
    line.extend_from_slice(numbers.format(entry.status).as_bytes());
    line.push(b' ');
    match entry.bytes_in {
        Some(n) => line.extend_from_slice(numbers.format(n).as_bytes()),
        None => line.push(b'-'),
    }
    line.push(b' ');
    line.extend_from_slice(numbers.format(bytes_out).as_bytes());
    if !complete {
        line.push(b'!');
    }
    line.push(b' ');
    took.write_to(&mut line);
    line.push(b' ');
    match upstream {
        Some(seconds) => seconds.write_to(&mut line),
        None => line.push(b'-'),
    }
    line.push(b' ');
    match &entry.principal {
        Some(name) => line.extend_from_slice(name.as_bytes()),
        None => line.push(b'-'),
    }
    line.push(b' ');
    match &entry.opaque_id {
        Some(id) => push_escaped(&mut line, id),
        None => line.push(b'-'),
    }
    line.push(b'\n');
    line
}

/// `text` as `str::escape_debug` writes it (a client's quote or line break cannot forge a field
/// or a line); printable ASCII without quotes or backslashes, nearly every target, is copied.
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'));
    if plain {
        line.extend_from_slice(text.as_bytes());
    } else {
        let _ = write!(line, "{}", text.escape_debug());
    }
}

/// Carried by the response body; writes the line when the body is done.
struct Tail {
    log: Arc<AccessLog>,
    entry: Entry,
}

impl OnEnd for Tail {
    fn done(self: Box<Self>, bytes_out: u64, complete: bool) {
        self.log.finish(&self.entry, bytes_out, complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_print_as_six_places_rounded_like_a_float_would() {
        let cases = [
            (Duration::from_nanos(812_400), "0.000812"),
            (Duration::from_nanos(812_600), "0.000813"),
            (Duration::from_micros(2_000_001), "2.000001"),
            (Duration::ZERO, "0.000000"),
        ];
        for (duration, text) in cases {
            let mut line = Vec::new();
            Seconds(duration).write_to(&mut line);
            assert_eq!(line, text.as_bytes());
            assert_eq!(
                format!("{:.6}", duration.as_secs_f64()),
                text,
                "{duration:?}"
            );
        }
    }

    #[test]
    fn targets_are_escaped_as_escape_debug_escapes_them() {
        for text in [
            "/_search",
            "/a b/%22",
            "/x\"y",
            "/it's",
            "/back\\slash",
            "/tab\there",
            "/é",
            "\u{7f}",
        ] {
            let mut line = Vec::new();
            push_escaped(&mut line, text);
            assert_eq!(line, text.escape_debug().to_string().as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn text_lines_hold_every_field_and_never_the_query_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            format: Some(AccessLogFormat::Text),
            output: Some(crate::config::LogOutput::File(path.clone())),
            query: false,
            buffer: 16,
        };
        let log = AccessLog::open(&config).unwrap().unwrap();
        let request = Request::get("/logs/_search?q=secret")
            .header("content-length", "12")
            .header("x-opaque-id", "job-7")
            .body(())
            .unwrap();
        let mut entry = log.begin(&request, "10.0.0.1:4000".parse().unwrap());
        entry.principal = Some("elastic/fleet-server/t1".into());
        entry.upstream = Some(Duration::from_millis(2));
        log.tail(entry, 200).done(345, true);
        log.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            &fields[1..6],
            ["10.0.0.1:4000", "\"GET", "/logs/_search\"", "200", "12"]
        );
        assert_eq!(fields[6], "345");
        assert_eq!(fields[9], "elastic/fleet-server/t1");
        assert_eq!(fields[10], "job-7");
        assert!(!text.contains("secret"));
    }

    #[test]
    fn json_lines_have_every_key_and_escape_what_a_client_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let config = AccessLogConfig {
            format: Some(AccessLogFormat::Json),
            output: Some(crate::config::LogOutput::File(path.clone())),
            query: false,
            buffer: 16,
        };
        let log = AccessLog::open(&config).unwrap().unwrap();
        let request = Request::post("/a%22b/_doc")
            .header("x-opaque-id", "job \"7\"\t")
            .body(())
            .unwrap();
        let peer: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let mut entry = log.begin(&request, peer);
        entry.upstream = Some(Duration::from_micros(2_000_812));
        log.tail(entry, 502).done(17, false);
        log.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = line.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "@timestamp",
                "client.address",
                "http.request.method",
                "url.original",
                "http.response.status_code",
                "http.request.body.bytes",
                "http.response.body.bytes",
                "event.duration_seconds",
                "upstream.duration_seconds",
                "user.name",
                "opaque_id",
                "completed"
            ]
        );
        assert_eq!(line["client.address"], "[2001:db8::7]:4000");
        assert_eq!(line["http.request.method"], "POST");
        assert_eq!(line["url.original"], "/a%22b/_doc");
        assert_eq!(line["opaque_id"], "job \"7\"\t");
        assert_eq!(line["http.response.status_code"], 502);
        assert!(line["http.request.body.bytes"].is_null());
        assert_eq!(line["http.response.body.bytes"], 17);
        assert!(line["event.duration_seconds"].as_f64().unwrap() >= 0.0);
        assert_eq!(line["upstream.duration_seconds"], 2.000812);
        assert!(line["user.name"].is_null());
        assert_eq!(line["completed"], false);
        let time = line["@timestamp"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }
}
