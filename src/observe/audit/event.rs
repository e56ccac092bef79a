//! One audit event as a JSON line, with Elasticsearch's audit field names (flat, dotted keys as
//! its `LoggingAuditTrail` writes them) so tools that read a cluster's audit log read ours.

use std::borrow::Cow;
use std::cell::Cell;

use http::header::{HeaderName, HeaderValue};
use serde::Serialize;

use super::{Request, Subject};
use crate::message::response::json_plain;
use crate::observe::log_fields::{Address, Timestamp};

const X_OPAQUE_ID: HeaderName = HeaderName::from_static("x-opaque-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The file realm's name, as `_authenticate` reports it.
const FILE_REALM: &str = "default_file";
/// The realm Elasticsearch names for service tokens.
const SERVICE_ACCOUNT_REALM: &str = "_service_account";

/// A field's name as the line holds it before a text value, `,"name":"`, written with
/// [`key!`]: one copy per field, checked at compile time to need no escaping.
#[derive(Clone, Copy)]
pub struct Key(&'static str);

impl Key {
    /// `piece` is `,"name":"`; a name with a quote, backslash or control character fails the
    /// build, as it would need escaping.
    pub const fn new(piece: &'static str) -> Key {
        let bytes = piece.as_bytes();
        let mut i = 2;
        while i + 3 < bytes.len() {
            let b = bytes[i];
            assert!(
                b >= 0x20 && b != b'"' && b != b'\\',
                "an audit key needs escaping"
            );
            i += 1;
        }
        Key(piece)
    }

    /// `,"name":"`, for a text value.
    fn text(self) -> &'static [u8] {
        self.0.as_bytes()
    }

    /// `,"name":`, for a value serde_json writes.
    fn value(self) -> &'static [u8] {
        let piece = self.0.as_bytes();
        piece.split_last().map_or(piece, |(_, key)| key)
    }
}

/// The [`Key`] of the audit field `$name`.
macro_rules! key {
    ($name:literal) => {
        const { $crate::observe::audit::event::Key::new(concat!(",\"", $name, "\":\"")) }
    };
}
pub(super) use key;

/// What an event is, `event.type` and `event.action`, written with [`kind!`]: the line's fixed
/// start after its timestamp, one copy.
#[derive(Clone, Copy)]
pub struct Kind(&'static str);

impl Kind {
    /// `piece` is `","event.type":"…","event.action":"…"`, checked as [`Key::new`] checks.
    pub const fn new(piece: &'static str) -> Kind {
        let bytes = piece.as_bytes();
        let mut quotes = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b >= 0x20 && b != b'\\',
                "an audit event kind needs escaping"
            );
            quotes += (b == b'"') as usize;
            i += 1;
        }
        assert!(quotes == 9, "an audit event kind needs escaping");
        Kind(piece)
    }
}

/// The [`Kind`] of events of type `$type` and action `$action`.
macro_rules! kind {
    ($type:literal, $action:literal) => {
        const {
            $crate::observe::audit::event::Kind::new(concat!(
                "\",\"event.type\":\"",
                $type,
                "\",\"event.action\":\"",
                $action,
                "\""
            ))
        }
    };
}
pub(super) use kind;

/// `{"type":"audit","@timestamp":"`; the timestamp and the event's [`Kind`] follow.
const START: &[u8] = b"{\"type\":\"audit\",\"@timestamp\":\"";
/// `origin.type` of a REST request, and the key of the address that follows.
const REST_ORIGIN: &[u8] = b",\"origin.type\":\"rest\",\"origin.address\":\"";
/// A line's first allocation: room for a failed login's whole line, which then never grows.
const USUAL_LEN: usize = 384;
/// A line buffer larger than this (a long path, many roles) is not kept for the next event.
const KEEP_LEN: usize = 4096;

thread_local! {
    /// The last event's buffer on this thread, emptied once its line was queued: the next
    /// event writes into it, so a failed-login flood allocates nothing per event.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An event being built, written straight into its JSON line as fields are added (in the order
/// they are added; no field is added twice). A failed-login flood is what this log sees most,
/// so an event costs one buffer, not a map of owned keys and values, and its fixed stretches
/// are one copy each.
pub struct Event(Vec<u8>);

impl Event {
    /// The fields every event starts with.
    pub fn new(kind: Kind) -> Event {
        let now = Timestamp(std::time::SystemTime::now());
        let mut line = SPARE.take();
        line.reserve(USUAL_LEN);
        line.extend_from_slice(START);
        now.write_to(&mut line);
        line.extend_from_slice(kind.0.as_bytes());
        Event(line)
    }

    /// A text field: copied as it is when nothing in it needs escaping (the usual case: the
    /// gateway's own words, paths, names; a scan of eight bytes a step says so), else escaped
    /// by serde_json. A flood of failed logins is a flood of these.
    pub fn text(mut self, key: Key, value: &str) -> Event {
        self.put_text(key, value);
        self
    }

    /// Inlined: the key's length is then a constant and its copy a few moves.
    #[inline(always)]
    fn put_text(&mut self, key: Key, value: &str) {
        if !json_plain(value) {
            self.put(key, value);
            return;
        }
        let line = &mut self.0;
        line.reserve(key.text().len() + value.len() + 1);
        line.extend_from_slice(key.text());
        line.extend_from_slice(value.as_bytes());
        line.push(b'"');
    }

    fn put_some_text(&mut self, key: Key, value: Option<&str>) {
        if let Some(value) = value {
            self.put_text(key, value);
        }
    }

    pub fn with(mut self, key: Key, value: impl Serialize) -> Event {
        self.put(key, value);
        self
    }

    fn put(&mut self, key: Key, value: impl Serialize) {
        let start = self.0.len();
        self.0.extend_from_slice(key.value());
        if serde_json::to_writer(&mut self.0, &value).is_err() {
            // Nothing the gateway puts in an event fails to serialise; if it did, the field is
            // left out rather than the line broken.
            self.0.truncate(start);
        }
    }

    pub fn with_some(self, key: Key, value: Option<impl Serialize>) -> Event {
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
                .text(key!("authentication.type"), "REALM")
                .text(key!("user.name"), user.name.as_str())
                .text(key!("user.realm"), FILE_REALM)
                .with(key!("user.roles"), &user.roles),
            Subject::Token(token) => self
                .text(key!("authentication.type"), "TOKEN")
                .text(key!("user.name"), token.account.as_str())
                .text(key!("user.realm"), SERVICE_ACCOUNT_REALM)
                .with(key!("user.roles"), [(); 0])
                .text(key!("authentication.token.name"), token.name.as_str())
                .text(key!("authentication.token.type"), token.source.as_str()),
        }
    }

    /// Where the request came from and what it asked for: the client's address as the gateway
    /// saw it, the path and query as sent, and the headers Elasticsearch copies.
    pub fn request(mut self, request: &Request<'_>) -> Event {
        self.0.extend_from_slice(REST_ORIGIN);
        Address(request.peer).write_to(&mut self.0);
        self.0.push(b'"');
        self.put_text(key!("url.path"), request.uri.path());
        self.put_some_text(key!("url.query"), request.uri.query());
        self.put_text(key!("request.method"), request.method.as_str());
        // One pass over the names present, where a lookup of each absent header would hash
        // its name: most requests carry neither.
        let (mut opaque_id, mut forwarded_for) = (false, false);
        for name in request.headers.keys() {
            opaque_id |= *name == X_OPAQUE_ID;
            forwarded_for |= *name == X_FORWARDED_FOR;
        }
        let header = |name: &HeaderName| joined(request.headers.get_all(name).iter());
        if opaque_id {
            self.put_some_text(key!("opaque_id"), header(&X_OPAQUE_ID).as_deref());
        }
        if forwarded_for {
            self.put_some_text(key!("x_forwarded_for"), header(&X_FORWARDED_FOR).as_deref());
        }
        self
    }

    /// The JSON line, newline included.
    #[cfg(test)]
    pub fn line(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"}\n");
        self.0
    }

    /// Hands the JSON line, newline included, to `queue`, and keeps the buffer for this
    /// thread's next event.
    pub fn queue(mut self, queue: impl FnOnce(&[u8])) {
        let mut line = std::mem::take(&mut self.0);
        line.extend_from_slice(b"}\n");
        queue(&line);
        if line.capacity() <= KEEP_LEN {
            line.clear();
            SPARE.set(line);
        }
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
        let line = Event::new(kind!("rest", "authentication_failed"))
            .text(key!("url.path"), "/logs-é/_search")
            .text(key!("user.name"), "a\"b\\c\u{1}")
            .line();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["url.path"], "/logs-é/_search");
        assert_eq!(json["user.name"], "a\"b\\c\u{1}");
        assert_eq!(json["event.action"], "authentication_failed");
        assert_eq!(json["event.type"], "rest");
        assert!(json["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn keys_hold_the_name_for_a_text_and_for_a_value() {
        let key = key!("user.name");
        assert_eq!(key.text(), b",\"user.name\":\"");
        assert_eq!(key.value(), b",\"user.name\":");
    }
}
