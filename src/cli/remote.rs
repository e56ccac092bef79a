//! A running gateway's token API over plain HTTP, for the commands that find the data directory
//! held by that gateway: the journal has one writer, so changes go through the process that
//! owns it. One request at a time, each under a deadline, on a runtime of its own.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;

/// How long one request (connect, send, whole answer) may take; the gateway answers the token
/// API from memory and its journal, so anything longer means it is not answering.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Bytes escaped in a path segment: what would end it (`/`, `?`, `#`) or is not allowed bare.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("[{0}] is not a usable URL: {1}")]
    Url(String, &'static str),
    #[error("{0}: {1}")]
    Transport(String, String),
    #[error("{0}: no answer within {REQUEST_DEADLINE:?}")]
    Timeout(String),
    #[error("{0}: the answer is not JSON ({1})")]
    NotJson(String, u16),
}

/// A gateway at a base URL, with the Basic credentials every request carries.
pub struct Remote {
    base: String,
    /// Who the requests authenticate as, for messages.
    user: String,
    authorization: String,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Remote {
    /// `base` is `http://host:port` (a trailing `/` is ignored).
    pub fn new(base: &str, user: &str, password: &str) -> Result<Remote, RemoteError> {
        let bad = |why| RemoteError::Url(base.to_owned(), why);
        let uri: Uri = base.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("only plain http:// is supported here")),
            _ => return Err(bad("expected http://host:port")),
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Transport(base.to_owned(), e.to_string()))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Remote {
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            authorization: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            runtime,
            client,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// `/_security/service/{ns}/{svc}…` with each part escaped as a path segment.
    pub fn path(parts: &[&str]) -> String {
        parts
            .iter()
            .map(|p| format!("/{}", utf8_percent_encode(p, SEGMENT)))
            .collect()
    }

    /// Sends `method path` and returns the status with the JSON body.
    pub fn call(&self, method: Method, path: &str) -> Result<(StatusCode, Value), RemoteError> {
        let url = format!("{}{path}", self.base);
        let transport =
            |e: &dyn std::fmt::Display| RemoteError::Transport(url.clone(), e.to_string());
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| transport(&e))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport(&chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&e))?;
            Ok::<_, RemoteError>((status, body.to_bytes()))
        };
        let (status, body) = self
            .runtime
            .block_on(async { tokio::time::timeout(REQUEST_DEADLINE, exchange).await })
            .map_err(|_| RemoteError::Timeout(url.clone()))??;
        let json = serde_json::from_slice(&body)
            .map_err(|_| RemoteError::NotJson(url.clone(), status.as_u16()))?;
        Ok((status, json))
    }
}

/// An error with its causes: the client's own message ("client error (Connect)") hides the
/// reason ("Connection refused") in its sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The `reason` of an Elasticsearch error body, or the body itself.
pub fn reason(body: &Value) -> String {
    body.pointer("/error/reason")
        .and_then(Value::as_str)
        .map_or_else(|| body.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_are_escaped_as_segments() {
        assert_eq!(
            Remote::path(&["_security", "service", "a?b", "c/d"]),
            "/_security/service/a%3Fb/c%2Fd"
        );
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(Remote::new("http://127.0.0.1:1", "u", "p").is_ok());
        for bad in ["https://127.0.0.1", "127.0.0.1:8080", "ftp://x"] {
            assert!(
                matches!(Remote::new(bad, "u", "p"), Err(RemoteError::Url(..))),
                "{bad}"
            );
        }
    }
}
