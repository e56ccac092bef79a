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

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::message::body::OnEnd;
use crate::observe::line_writer::{open_output, Writer};
use crate::observe::log_fields::{Address, Timestamp};

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
    /// The account limit that refused the request (`rate`, `max_in_flight`), when one did.
    pub limit: Option<&'static str>,
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
            limit: None,
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
        let finished = Finished {
            entry,
            time: Timestamp(entry.time),
            took: Seconds(entry.started.elapsed()),
            upstream: entry.upstream.map(Seconds),
            bytes_out,
            complete,
        };
        let line = match self.format {
            AccessLogFormat::Json => finished.json(),
            AccessLogFormat::Text => finished.text(),
        };
        self.writer.write(&line);
    }
}

/// A request's entry as its line is written. Both lines are built field by field into one
/// buffer (numbers through `itoa`, no `core::fmt`): formatted, the line cost twice the rest of
/// the request's logging.
struct Finished<'a> {
    entry: &'a Entry,
    time: Timestamp,
    took: Seconds,
    upstream: Option<Seconds>,
    bytes_out: u64,
    complete: bool,
}

impl Finished<'_> {
    /// `time client "METHOD target" status bytes_in bytes_out[!] seconds upstream principal
    /// opaque_id limit`, `-` for what is unknown.
    fn text(&self) -> Vec<u8> {
        let entry = self.entry;
        let mut line = Line::with_capacity(192);
        self.time.write_to(&mut line.bytes);
        line.raw(b" ");
        Address(entry.peer).write_to(&mut line.bytes);
        line.raw(b" \"")
            .raw(entry.method.as_str().as_bytes())
            .raw(b" ")
            .escaped(&entry.target)
            .raw(b"\" ")
            .number(entry.status)
            .raw(b" ");
        line.or(entry.bytes_in, b"-", Line::number).raw(b" ");
        line.number(self.bytes_out);
        if !self.complete {
            line.raw(b"!");
        }
        line.raw(b" ").seconds(self.took).raw(b" ");
        line.or(self.upstream, b"-", Line::seconds).raw(b" ");
        let principal = entry.principal.as_deref().map(str::as_bytes);
        line.or(principal, b"-", Line::raw).raw(b" ");
        line.or(entry.opaque_id.as_deref(), b"-", Line::escaped);
        line.raw(b" ");
        line.or(entry.limit.map(str::as_bytes), b"-", Line::raw);
        line.raw(b"\n");
        line.bytes
    }

    /// The same fields under ECS-style names, every key present (`null` when unknown);
    /// strings are escaped by serde_json.
    fn json(&self) -> Vec<u8> {
        let entry = self.entry;
        let mut line = Line::with_capacity(320);
        line.raw(b"{\"@timestamp\":\"");
        self.time.write_to(&mut line.bytes);
        line.raw(b"\",\"client.address\":\"");
        Address(entry.peer).write_to(&mut line.bytes);
        line.raw(b"\",\"http.request.method\":")
            .string(Some(entry.method.as_str()))
            .raw(b",\"url.original\":")
            .string(Some(&entry.target))
            .raw(b",\"http.response.status_code\":")
            .number(entry.status)
            .raw(b",\"http.request.body.bytes\":")
            .or(entry.bytes_in, b"null", Line::number)
            .raw(b",\"http.response.body.bytes\":")
            .number(self.bytes_out)
            .raw(b",\"event.duration_seconds\":")
            .seconds(self.took)
            .raw(b",\"upstream.duration_seconds\":")
            .or(self.upstream, b"null", Line::seconds)
            .raw(b",\"user.name\":")
            .string(entry.principal.as_deref())
            .raw(b",\"opaque_id\":")
            .string(entry.opaque_id.as_deref())
            .raw(b",\"event.reason\":")
            .string(entry.limit)
            .raw(b",\"completed\":")
            .raw(if self.complete { b"true" } else { b"false" })
            .raw(b"}\n");
        line.bytes
    }
}

/// A line being built.
struct Line {
    bytes: Vec<u8>,
    numbers: itoa::Buffer,
}

impl Line {
    fn with_capacity(capacity: usize) -> Line {
        Line {
            bytes: Vec::with_capacity(capacity),
            numbers: itoa::Buffer::new(),
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Line {
        self.bytes.extend_from_slice(bytes);
        self
    }

    fn number<N: itoa::Integer>(&mut self, n: N) -> &mut Line {
        self.bytes
            .extend_from_slice(self.numbers.format(n).as_bytes());
        self
    }

    fn seconds(&mut self, seconds: Seconds) -> &mut Line {
        seconds.write_to(&mut self.bytes);
        self
    }

    /// `text` as `str::escape_debug` writes it (a client's quote or line break cannot forge a
    /// field or a line); printable ASCII without quotes or backslashes, nearly every target, is
    /// copied.
    fn escaped(&mut self, text: &str) -> &mut Line {
        let plain = text
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'));
        if plain {
            self.bytes.extend_from_slice(text.as_bytes());
        } else {
            let _ = write!(self.bytes, "{}", text.escape_debug());
        }
        self
    }

    /// A JSON string (escaped), or `null`.
    fn string(&mut self, text: Option<&str>) -> &mut Line {
        // Writing a `str` into a `Vec` cannot fail; `null` would stand in if it did.
        if serde_json::to_writer(&mut self.bytes, &text).is_err() {
            self.bytes.extend_from_slice(b"null");
        }
        self
    }

    /// `value` as `write` writes it, or `absent`.
    fn or<T>(
        &mut self,
        value: Option<T>,
        absent: &[u8],
        write: impl FnOnce(&mut Line, T) -> &mut Line,
    ) -> &mut Line {
        match value {
            Some(value) => write(self, value),
            None => self.raw(absent),
        }
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
            let mut line = Line::with_capacity(16);
            line.escaped(text);
            assert_eq!(
                line.bytes,
                text.escape_debug().to_string().as_bytes(),
                "{text:?}"
            );
        }
    }

    /// What an access log in `format` writes for one request from `peer`, its entry completed
    /// by `fill`, answered with `status` and `bytes_out` body bytes.
    fn logged(
        format: AccessLogFormat,
        request: &Request<()>,
        peer: &str,
        fill: impl FnOnce(&mut Entry),
        (status, bytes_out, complete): (u16, u64, bool),
    ) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            format: Some(format),
            output: Some(crate::config::LogOutput::File(path.clone())),
            query: false,
            buffer: 16,
        };
        let log = AccessLog::open(&config).unwrap().unwrap();
        let mut entry = log.begin(request, peer.parse().unwrap());
        fill(&mut entry);
        log.tail(entry, status).done(bytes_out, complete);
        log.close(Duration::from_secs(5));
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn text_lines_hold_every_field_and_never_the_query_unless_asked() {
        let request = Request::get("/logs/_search?q=secret")
            .header("content-length", "12")
            .header("x-opaque-id", "job-7")
            .body(())
            .unwrap();
        let fill = |entry: &mut Entry| {
            entry.principal = Some("elastic/fleet-server/t1".into());
            entry.upstream = Some(Duration::from_millis(2));
        };
        let text = logged(
            AccessLogFormat::Text,
            &request,
            "10.0.0.1:4000",
            fill,
            (200, 345, true),
        );
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            &fields[1..6],
            ["10.0.0.1:4000", "\"GET", "/logs/_search\"", "200", "12"]
        );
        assert_eq!(fields[6], "345");
        assert_eq!(fields[9], "elastic/fleet-server/t1");
        assert_eq!(fields[10], "job-7");
        assert_eq!(fields[11], "-");
        assert!(!text.contains("secret"));
    }

    #[test]
    fn json_lines_have_every_key_and_escape_what_a_client_sent() {
        let request = Request::post("/a%22b/_doc")
            .header("x-opaque-id", "job \"7\"\t")
            .body(())
            .unwrap();
        let fill = |entry: &mut Entry| entry.upstream = Some(Duration::from_micros(2_000_812));
        let text = logged(
            AccessLogFormat::Json,
            &request,
            "[2001:db8::7]:4000",
            fill,
            (502, 17, false),
        );
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
                "event.reason",
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
        assert!(line["event.reason"].is_null());
        assert_eq!(line["completed"], false);
        let time = line["@timestamp"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }
}
