//! One audit event as a JSON line, with Elasticsearch's audit field names (flat, dotted keys as
//! its `LoggingAuditTrail` writes them) so tools that read a cluster's audit log read ours.

use serde_json::{Map, Value};

use super::{Request, Subject};

/// `event.type` of events about a REST request.
pub const REST: &str = "rest";
/// `event.type` of changes to who may do what.
pub const SECURITY_CONFIG_CHANGE: &str = "security_config_change";
/// The file realm's name, as `_authenticate` reports it.
const FILE_REALM: &str = "default_file";
/// The realm Elasticsearch names for service tokens.
const SERVICE_ACCOUNT_REALM: &str = "_service_account";

/// An event being built; fields keep the order they are added in.
pub struct Event(Map<String, Value>);

impl Event {
    /// The fields every event starts with.
    pub fn new(event_type: &str, action: &str) -> Event {
        let mut fields = Map::new();
        fields.insert("type".into(), "audit".into());
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        fields.insert("@timestamp".into(), now.to_string().into());
        fields.insert("event.type".into(), event_type.into());
        fields.insert("event.action".into(), action.into());
        Event(fields)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.0.insert(key.into(), value.into());
        self
    }

    pub fn with_some(self, key: &str, value: Option<impl Into<Value>>) -> Event {
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
    pub fn line(self) -> String {
        let mut line = Value::Object(self.0).to_string();
        line.push('\n');
        line
    }
}
