//! The access log: one line per request, written when its response has been sent (so the line
//! holds the bytes that really went out), handed to a writer thread through a bounded queue.
//! A request never waits for the disk; when the queue is full lines are dropped and counted.
//!
//! The query string is left out unless asked for: queries can carry data (a search term, a
//! document id) that the operator of a log pipeline should not see by default.

use std::fmt::{self, Display, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::CONTENT_LENGTH;
use http::{HeaderName, Method, Request};
use serde::Serialize;

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
        let mut line = String::with_capacity(256);
        match self.format {
            AccessLogFormat::Json => {
                let fields = JsonLine {
                    timestamp: time,
                    client_address: Address(entry.peer),
                    method: entry.method.as_str(),
                    target: &entry.target,
                    status: entry.status,
                    bytes_in: entry.bytes_in,
                    bytes_out,
                    took,
                    upstream,
                    principal: entry.principal.as_deref(),
                    opaque_id: entry.opaque_id.as_deref(),
                    completed: complete,
                };
                match serde_json::to_string(&fields) {
                    Ok(json) => line = json,
                    Err(_) => return,
                }
            }
            AccessLogFormat::Text => {
                let _ = write!(
                    line,
                    "{time} {} \"{} {}\" {} {} {}{} {took} {} {} {}",
                    Address(entry.peer),
                    entry.method,
                    entry.target.escape_debug(),
                    entry.status,
                    Dash(entry.bytes_in),
                    bytes_out,
                    if complete { "" } else { "!" },
                    Dash(upstream),
                    Dash(entry.principal.as_deref()),
                    Dash(entry.opaque_id.as_deref().map(str::escape_debug)),
                );
            }
        }
        line.push('\n');
        self.writer.write(line);
    }
}

/// A JSON line's fields, serialised straight into the line (no intermediate tree: a line per
/// request is the access log's whole cost).
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Timestamp,
    #[serde(rename = "client.address")]
    client_address: Address,
    #[serde(rename = "http.request.method")]
    method: &'a str,
    #[serde(rename = "url.original")]
    target: &'a str,
    #[serde(rename = "http.response.status_code")]
    status: u16,
    #[serde(rename = "http.request.body.bytes")]
    bytes_in: Option<u64>,
    #[serde(rename = "http.response.body.bytes")]
    bytes_out: u64,
    #[serde(rename = "event.duration_seconds")]
    took: Seconds,
    #[serde(rename = "upstream.duration_seconds")]
    upstream: Option<Seconds>,
    #[serde(rename = "user.name")]
    principal: Option<&'a str>,
    opaque_id: Option<&'a str>,
    completed: bool,
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

impl Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.micros();
        write!(f, "{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A JSON number, as before; f64 holds microseconds of any realistic duration exactly
        // enough for serde_json's shortest round-trip form.
        serializer.serialize_f64(self.micros() as f64 / 1e6)
    }
}

/// `-` for a field with no value, the value otherwise.
struct Dash<T>(Option<T>);

impl<T: Display> Display for Dash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
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
            assert_eq!(Seconds(duration).to_string(), text);
            assert_eq!(
                format!("{:.6}", duration.as_secs_f64()),
                text,
                "{duration:?}"
            );
            let json = serde_json::to_string(&Seconds(duration)).unwrap();
            assert_eq!(json.parse::<f64>().unwrap(), text.parse::<f64>().unwrap());
        }
        assert_eq!(Dash(None::<u64>).to_string(), "-");
        assert_eq!(Dash(Some(12)).to_string(), "12");
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
}
