//! The access log: one line per request, written when its response has been sent (so the line
//! holds the bytes that really went out), handed to a writer thread through a bounded queue.
//! A request never waits for the disk; when the queue is full lines are dropped and counted.
//!
//! The query string is left out unless asked for: queries can carry data (a search term, a
//! document id) that the operator of a log pipeline should not see by default.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::CONTENT_LENGTH;
use http::{HeaderName, Method, Request};
use serde_json::json;

use crate::body::OnEnd;
use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::line_writer::{open_output, Writer};

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
        let took = entry.started.elapsed().as_secs_f64();
        let upstream = entry.upstream.map(|d| d.as_secs_f64());
        let time = humantime::format_rfc3339_millis(entry.time);
        let line = match self.format {
            AccessLogFormat::Json => {
                let mut line = json!({
                    "@timestamp": time.to_string(),
                    "client.address": entry.peer.to_string(),
                    "http.request.method": entry.method.as_str(),
                    "url.original": entry.target,
                    "http.response.status_code": entry.status,
                    "http.request.body.bytes": entry.bytes_in,
                    "http.response.body.bytes": bytes_out,
                    "event.duration_seconds": took,
                    "upstream.duration_seconds": upstream,
                    "user.name": entry.principal,
                    "opaque_id": entry.opaque_id,
                    "completed": complete,
                })
                .to_string();
                line.push('\n');
                line
            }
            AccessLogFormat::Text => {
                let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
                let mut line = String::with_capacity(160);
                let _ = write!(
                    line,
                    "{time} {} \"{} {}\" {} {} {}{} {took:.6} {} {} {}",
                    entry.peer,
                    entry.method,
                    entry.target.escape_debug(),
                    entry.status,
                    entry.bytes_in.map_or("-".to_owned(), |n| n.to_string()),
                    bytes_out,
                    if complete { "" } else { "!" },
                    upstream.map_or("-".to_owned(), |s| format!("{s:.6}")),
                    dash(entry.principal.as_deref()),
                    dash(entry.opaque_id.as_deref()).escape_debug(),
                );
                line.push('\n');
                line
            }
        };
        self.writer.write(line);
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
