//! One audit event as a JSON line, with Elasticsearch's audit field names (flat, dotted keys as
//! its `LoggingAuditTrail` writes them) so tools that read a cluster's audit log read ours.

use serde::Serialize;

use super::{Request, Subject};

/// `event.type` of events about a REST request.
pub const REST: &str = "rest";
/// `event.type` of changes to who may do what.
pub const SECURITY_CONFIG_CHANGE: &str = "security_config_change";
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
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut line = Vec::with_capacity(384);
        line.extend_from_slice(b"{\"type\":\"audit\"");
        Event(line)
            .with("@timestamp", now.to_string())
            .with("event.type", event_type)
            .with("event.action", action)
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Event {
        let start = self.0.len();
        self.0.push(b',');
        let written = serde_json::to_writer(&mut self.0, key).and_then(|()| {
            self.0.push(b':');
            serde_json::to_writer(&mut self.0, &value)
        });
        if written.is_err() {
            // Nothing the gateway puts in an event fails to serialise; if it did, the field is
            // left out rather than the line broken.
            self.0.truncate(start);
        }
        self
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
        let headers = request.headers;
        let header = |name: &str| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        self.with("origin.type", REST)
            .with("origin.address", request.peer.to_string())
            .with("url.path", request.uri.path())
            .with_some("url.query", request.uri.query())
            .with("request.method", request.method.as_str())
            .with_some("opaque_id", header("x-opaque-id"))
            .with_some("x_forwarded_for", header("x-forwarded-for"))
    }

    /// The JSON line, newline included.
    pub fn line(mut self) -> String {
        self.0.extend_from_slice(b"}\n");
        // serde_json writes UTF-8 only.
        String::from_utf8(self.0)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}
