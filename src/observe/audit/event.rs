//! One audit event as a JSON line, with Elasticsearch's audit field names (flat, dotted keys as
//! its `LoggingAuditTrail` writes them) so tools that read a cluster's audit log read ours.

use std::borrow::Cow;

use http::header::{HeaderName, HeaderValue};
use serde::Serialize;

use super::{Request, Subject};
use crate::observe::log_fields::{Address, Timestamp};

/// `event.type` of events about a REST request.
pub const REST: &str = "rest";
/// `event.type` of changes to who may do what.
pub const SECURITY_CONFIG_CHANGE: &str = "security_config_change";
const X_OPAQUE_ID: HeaderName = HeaderName::from_static("x-opaque-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The file realm's name, as `_authenticate` reports it.
const FILE_REALM: &str = "default_file";
/// The realm Elasticsearch names for service tokens.
const SERVICE_ACCOUNT_REALM: &str = "_service_account";

/// An event being built, written straight into its JSON line as fields are added (in the order
/// they are added; no field is added twice). A failed-login flood is what this log sees most,
/// so an event costs one buffer, not a map of owned keys and values.
pub struct Event(Vec<u8>);

impl Event {
    /// The fields every event starts with.
    pub fn new(event_type: &str, action: &str) -> Event {
        let now = Timestamp(std::time::SystemTime::now());
        let mut line = Vec::with_capacity(384);
        line.extend_from_slice(b"{\"type\":\"audit\"");
        let mut event = Event(line);
        event.key("@timestamp");
        event.0.push(b'"');
        now.write_to(&mut event.0);
        event.0.push(b'"');
        event
            .text("event.type", event_type)
            .text("event.action", action)
    }

    /// A text field: copied as it is when nothing in it needs escaping (the usual case: the
    /// gateway's own words, paths, names), else escaped by serde_json. A flood of failed
    /// logins is a flood of these.
    pub fn text(mut self, key: &str, value: &str) -> Event {
        if !value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            return self.with(key, value);
        }
        self.key(key);
        self.0.push(b'"');
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b'"');
        self
    }

    fn some_text(self, key: &str, value: Option<&str>) -> Event {
        match value {
            Some(value) => self.text(key, value),
            None => self,
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Event {
        let start = self.0.len();
        self.key(key);
        if serde_json::to_writer(&mut self.0, &value).is_err() {
            // Nothing the gateway puts in an event fails to serialise; if it did, the field is
            // left out rather than the line broken.
            self.0.truncate(start);
        }
        self
    }

    /// `,"key":` — keys are the gateway's own constants (Elasticsearch's field names), which
    /// need no escaping.
    fn key(&mut self, key: &str) {
        debug_assert!(
            key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'),
            "audit key {key:?} needs escaping"
        );
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    pub fn with_some(self, key: &str, value: Option<impl Serialize>) -> Event {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    /// Who the event is about, as Elasticsearch's `withAuthentication` names an authenticated
    /// caller.
    pub fn subject(self, subject: Subject<'_>) -> Event {
        match subject {
            Subject::User(user) => self
                .text("authentication.type", "REALM")
                .text("user.name", user.name.as_str())
                .text("user.realm", FILE_REALM)
                .with("user.roles", &user.roles),
            Subject::Token(token) => self
                .text("authentication.type", "TOKEN")
                .text("user.name", token.account.as_str())
                .text("user.realm", SERVICE_ACCOUNT_REALM)
                .with("user.roles", [(); 0])
                .text("authentication.token.name", token.name.as_str())
                .text("authentication.token.type", token.source.as_str()),
        }
    }

    /// Where the request came from and what it asked for: the client's address as the gateway
    /// saw it, the path and query as sent, and the headers Elasticsearch copies.
    pub fn request(self, request: &Request<'_>) -> Event {
        let header = |name: &HeaderName| joined(request.headers.get_all(name).iter());
        let mut event = self.text("origin.type", REST);
        event.key("origin.address");
        event.0.push(b'"');
        Address(request.peer).write_to(&mut event.0);
        event.0.push(b'"');
        event
            .text("url.path", request.uri.path())
            .some_text("url.query", request.uri.query())
            .text("request.method", request.method.as_str())
            .some_text("opaque_id", header(&X_OPAQUE_ID).as_deref())
            .some_text("x_forwarded_for", header(&X_FORWARDED_FOR).as_deref())
    }

    /// The JSON line, newline included.
    pub fn line(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"}\n");
        self.0
    }
}

/// A header's text values joined by `, ` as Elasticsearch quotes them; `None` when it has none.
/// One value (the usual case) is borrowed.
fn joined<'h>(values: impl Iterator<Item = &'h HeaderValue>) -> Option<Cow<'h, str>> {
    let mut texts = values.filter_map(|v| v.to_str().ok());
    let first = texts.next()?;
    match texts.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}, {second}");
            for text in texts {
                all.push_str(", ");
                all.push_str(text);
            }
            Some(Cow::Owned(all))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_copied_when_plain_and_escaped_otherwise() {
        let line = Event::new(REST, "authentication_failed")
            .text("url.path", "/logs-é/_search")
            .text("user.name", "a\"b\\c\u{1}")
            .line();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["url.path"], "/logs-é/_search");
        assert_eq!(json["user.name"], "a\"b\\c\u{1}");
        assert_eq!(json["event.action"], "authentication_failed");
        assert!(json["@timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
