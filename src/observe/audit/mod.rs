//! The audit log: who did what to the gateway's security, and who failed to get in, as JSON
//! lines apart from the main log, in Elasticsearch's audit field names. Also the main log's
//! rate-limited line per failed authentication, since both start from the same failure.
//!
//! Events leave the request through a bounded queue ([`writer`]): a full queue drops and counts
//! them, it never makes a request wait. Never a secret: events carry names (user, account, token
//! name), addresses and paths. A presented credential is read only as far as the name it
//! claims; its password or secret is never copied into an event or a log line.

mod event;
mod notices;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, Method, Uri};
use serde_json::json;

use crate::config::{AuditConfig, LogConfig};
use crate::identity::token;
use crate::identity::{AccountId, TokenIdentity, TokenName};
use crate::message::error::ApiError;
use crate::observe::line_writer::Writer;
use crate::users::User;
use event::{key, kind, Event, Key, Kind};
use notices::{Claimed, FailureNotices};

/// Longest Basic credential read for its user name, encoded (as the realm bounds it).
const MAX_BASIC_LEN: usize = 1024;
/// The action Elasticsearch audits a token-cache clear under (an `access_granted` event).
const CLEAR_CACHE_ACTION: &str = "cluster:admin/xpack/security/service_account/token/cache/clear";

/// The request an event is about, borrowed from it as received.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The connection's remote address (`origin.address`).
    pub peer: SocketAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

impl<'a> Request<'a> {
    pub fn new<B>(request: &'a http::Request<B>, peer: SocketAddr) -> Self {
        Request {
            peer,
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
        }
    }

    pub fn from_parts(parts: &'a http::request::Parts, peer: SocketAddr) -> Self {
        Request {
            peer,
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
        }
    }

    /// The target as the client wrote it (path and query), as Elasticsearch quotes it.
    pub fn target(&self) -> &'a str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }
}

/// An authenticated caller, as an event names it.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    User(&'a User),
    Token(&'a TokenIdentity),
}

/// A credential that failed, still encoded as the client sent it.
#[derive(Clone, Copy)]
pub enum Presented<'a> {
    /// The value after `Bearer `.
    Bearer(&'a [u8]),
    /// A bearer value already decoded to the service token it names (account `ns/svc`, token
    /// name): the 401 path decodes it for its message, so the event need not do it again.
    Token { account: &'a str, name: &'a str },
    /// The value after `Basic `.
    Basic(&'a [u8]),
    /// Nothing that names anyone.
    Other,
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    source: std::io::Error,
}

/// A cheap-clone handle: every event function is a no-op for the audit file when it is off
/// (the main-log notices of failures stay on).
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Option<Writer>,
    authentication_success: bool,
    notices: FailureNotices,
}

impl Audit {
    /// Opens the output (a file is created owner-only and appended to) and starts its writer.
    pub fn open(config: &AuditConfig) -> Result<Audit, OpenError> {
        let writer = match &config.output {
            None => None,
            Some(output) => {
                let (sink, path) = crate::observe::line_writer::open_output(output)
                    .map_err(|(path, source)| OpenError { path, source })?;
                let writer = Writer::start(
                    "audit",
                    sink,
                    config.buffer,
                    AuditConfig::DROP_WARNING_INTERVAL,
                )
                .map_err(|source| OpenError { path, source })?;
                Some(writer)
            }
        };
        Ok(Audit {
            inner: Arc::new(Inner {
                writer,
                authentication_success: config.authentication_success,
                notices: FailureNotices::new(LogConfig::FAILURE_NOTICE_ADDRESSES),
            }),
        })
    }

    /// Events lost so far (queue full, output failing): for a metrics endpoint.
    pub fn dropped(&self) -> u64 {
        self.inner.writer.as_ref().map_or(0, Writer::dropped)
    }

    /// Writes out what is queued (bounded by [`AuditConfig::CLOSE_DEADLINE`]); later events
    /// are dropped. Called once the gateway has stopped serving.
    pub fn close(&self) {
        if let Some(writer) = &self.inner.writer {
            if !writer.close(AuditConfig::CLOSE_DEADLINE) {
                tracing::warn!(deadline = ?AuditConfig::CLOSE_DEADLINE, "audit log not flushed in time");
            }
        }
    }

    /// Ends a window of failure notices (see [`notices`]); run every
    /// [`LogConfig::FAILURE_NOTICE_INTERVAL`].
    pub fn sweep(&self) {
        self.inner.notices.sweep();
    }

    /// A request refused because its address is over its failure limit: counted for the
    /// window's summary line, never an event or a line of its own (a throttled client may send
    /// thousands a second).
    pub fn throttled(&self) {
        self.inner.notices.throttled();
    }

    fn write(&self, event: impl FnOnce() -> Event) {
        if let Some(writer) = &self.inner.writer {
            event().queue(|line| writer.write(line));
        }
    }

    /// Credentials were presented and did not authenticate. The event names whom they claim to
    /// be: the user of Basic credentials, the account and token name a bearer value decodes to.
    pub fn authentication_failed(&self, request: &Request<'_>, presented: Presented<'_>) {
        // A buffer only for what needs decoding: a token the 401 path already decoded (a
        // flood of wrong secrets) is named without one to clear and wipe.
        match presented {
            Presented::Basic(value) => {
                let mut basic = [0u8; MAX_BASIC_LEN];
                let claimed = basic_user(value, &mut basic).map_or(Claimed::Unknown, Claimed::User);
                self.failed(request, claimed);
                wipe(&mut basic);
            }
            Presented::Bearer(value) => {
                let mut bearer = [0u8; token::MAX_DECODED_LEN];
                let claimed = token::decode(value, &mut bearer)
                    .map_or(Claimed::Unknown, |t| Claimed::Token(t.account, t.name));
                self.failed(request, claimed);
                wipe(&mut bearer);
            }
            Presented::Token { account, name } => {
                self.failed(request, Claimed::Token(account, name));
            }
            Presented::Other => self.failed(request, Claimed::Unknown),
        }
    }

    fn failed(&self, request: &Request<'_>, claimed: Claimed<'_>) {
        self.inner
            .notices
            .failed(request.peer.ip(), claimed, request.uri.path());
        self.write(|| {
            let event = Event::new(kind!("rest", "authentication_failed"));
            let event = match claimed {
                Claimed::User(user) => event.text(key!("user.name"), user),
                Claimed::Token(account, name) => event
                    .text(key!("user.name"), account)
                    .text(key!("authentication.token.name"), name),
                Claimed::Unknown => event,
            };
            event.request(request)
        });
    }

    /// A request authenticated; recorded only with `[audit] authentication_success = true`.
    pub fn authentication_success(&self, request: &Request<'_>, subject: Subject<'_>) {
        if self.inner.authentication_success {
            self.write(|| {
                Event::new(kind!("rest", "authentication_success"))
                    .subject(subject)
                    .request(request)
            });
        }
    }

    /// Records a 403 the gateway makes (a missing privilege, a local access rule) and hands the
    /// error back; any other error passes unrecorded.
    pub fn denied(&self, request: &Request<'_>, subject: Subject<'_>, error: ApiError) -> ApiError {
        let action = match &error {
            ApiError::Unauthorized { action, .. } => Some(*action),
            ApiError::AccessDenied { .. } => None,
            _ => return error,
        };
        self.write(|| {
            Event::new(kind!("rest", "access_denied"))
                .subject(subject)
                .request(request)
                .with_some(key!("action"), action)
        });
        error
    }

    /// A token was created (and is durable).
    pub fn token_created(
        &self,
        request: &Request<'_>,
        subject: Subject<'_>,
        account: &AccountId,
        name: &TokenName,
    ) {
        self.token_change(
            request,
            subject,
            (
                kind!("security_config_change", "create_service_token"),
                key!("create"),
            ),
            account,
            name,
        );
    }

    /// A token was deleted durably, or found absent.
    pub fn token_deleted(
        &self,
        request: &Request<'_>,
        subject: Subject<'_>,
        account: &AccountId,
        name: &TokenName,
    ) {
        self.token_change(
            request,
            subject,
            (
                kind!("security_config_change", "delete_service_token"),
                key!("delete"),
            ),
            account,
            name,
        );
    }

    /// Elasticsearch's `security_config_change` record, with the caller and the client, which
    /// Elasticsearch puts in a separate `access_granted` event.
    fn token_change(
        &self,
        request: &Request<'_>,
        subject: Subject<'_>,
        (kind, field): (Kind, Key),
        account: &AccountId,
        name: &TokenName,
    ) {
        self.write(|| {
            let token = json!({"service_token": {
                "namespace": account.namespace(),
                "service": account.service(),
                "name": name.as_str(),
            }});
            Event::new(kind)
                .subject(subject)
                .request(request)
                .with(field, token)
        });
    }

    /// A token-cache clear: not a change in Elasticsearch's terms, so its `access_granted`.
    pub fn cache_cleared(&self, request: &Request<'_>, subject: Subject<'_>) {
        self.write(|| {
            Event::new(kind!("rest", "access_granted"))
                .subject(subject)
                .request(request)
                .text(key!("action"), CLEAR_CACHE_ACTION)
        });
    }

    /// `reset-password` set a new password for `user` (run on this host).
    pub fn password_changed(&self, user: &str) {
        self.write(|| {
            Event::new(kind!("security_config_change", "change_password"))
                .text(key!("origin.type"), "local_node")
                .with(
                    key!("change"),
                    json!({"password": {"user": {"name": user}}}),
                )
        });
    }

    /// The users files in `dir` were re-read because they changed or, when `forced`, on
    /// SIGHUP; `error` when they were refused and the previous users stay in force.
    pub fn users_reloaded(&self, dir: &Path, forced: bool, error: Option<&dyn Display>) {
        self.reloaded(
            kind!("security_config_change", "reload_users"),
            (key!("file.directory"), dir),
            forced,
            error,
        );
    }

    /// The TLS certificate `cert` was re-read, as [`Audit::users_reloaded`].
    pub fn certificate_reloaded(&self, cert: &Path, forced: bool, error: Option<&dyn Display>) {
        self.reloaded(
            kind!("security_config_change", "reload_certificate"),
            (key!("file.path"), cert),
            forced,
            error,
        );
    }

    fn reloaded(
        &self,
        kind: Kind,
        (key, path): (Key, &Path),
        forced: bool,
        error: Option<&dyn Display>,
    ) {
        self.write(|| {
            Event::new(kind)
                .text(key!("origin.type"), "local_node")
                .text(
                    key!("event.outcome"),
                    if error.is_some() {
                        "failure"
                    } else {
                        "success"
                    },
                )
                .text(
                    key!("event.reason"),
                    if forced { "signal" } else { "file changed" },
                )
                .text(key, &path.display().to_string())
                .with_some(key!("error.message"), error.map(ToString::to_string))
        });
    }
}

/// Clears a buffer that held a password or token secret; black_box keeps the wipe from being
/// optimised away as a dead store.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(buf);
}

/// The user name of an encoded Basic credential, decoded into `buf`.
fn basic_user<'b>(encoded: &[u8], buf: &'b mut [u8; MAX_BASIC_LEN]) -> Option<&'b str> {
    if encoded.len() > MAX_BASIC_LEN {
        return None;
    }
    let len = STANDARD.decode_slice(encoded, buf).ok()?;
    let decoded = buf.get(..len)?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    std::str::from_utf8(decoded.get(..colon)?).ok()
}

/// The output and, for messages, what it is called.
#[cfg(test)]
mod tests;
