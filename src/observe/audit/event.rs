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
        Event(line)
            .with("@timestamp", now)
            .with("event.type", event_type)
            .with("event.action", action)
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
                .with("authentication.type", "REALM")
                .with("user.name", user.name.as_str())
                .with("user.realm", FILE_REALM)
                .with("user.roles", user.roles.clone()),
            Subject::Token(token) => self
                .with("authentication.type", "TOKEN")
                .with("user.name", token.account.as_str())
                .with("user.realm", SERVICE_ACCOUNT_REALM)
                .with("user.roles", Vec::<String>::new())
                .with("authentication.token.name", token.name.as_str())
                .with("authentication.token.type", token.source.as_str()),
        }
    }

    /// Where the request came from and what it asked for: the client's address as the gateway
    /// saw it, the path and query as sent, and the headers Elasticsearch copies.
    pub fn request(self, request: &Request<'_>) -> Event {
        let header = |name: &HeaderName| joined(request.headers.get_all(name).iter());
        self.with("origin.type", REST)
            .with("origin.address", Address(request.peer))
            .with("url.path", request.uri.path())
            .with_some("url.query", request.uri.query())
            .with("request.method", request.method.as_str())
            .with_some("opaque_id", header(&X_OPAQUE_ID))
            .with_some("x_forwarded_for", header(&X_FORWARDED_FOR))
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
