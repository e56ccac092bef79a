//! Forwarding an authenticated request to the cluster over pooled keep-alive connections.
//!
//! Bodies stream both ways (`Incoming` in, `Incoming` out): a 1 GB `_bulk` is never held whole.

mod failure;
pub mod headers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::{BodyError, Guarded};
use crate::config::UpstreamConfig;
use crate::error::ApiError;
use crate::tls::{upstream::client_config, TlsError};
use failure::{Cause, FailureLog};
use headers::{Authorization, ClientInfo};

/// The upstream cluster and the pooled client that reaches it.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Guarded<Incoming>>,
    /// One permit per request in flight upstream, held until its response body ends: bounds
    /// the connections the pool opens, whatever the clients multiplex onto the gateway.
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot.
    waiting: Arc<AtomicUsize>,
    max_pending: usize,
    max_connections: usize,
    /// How long a request may wait for a slot.
    slot_wait: Duration,
    client_body_timeout: Duration,
    body_timeout: Duration,
    /// The upstream's `Host`, built once instead of per request.
    host: HeaderValue,
    scheme: Scheme,
    authority: Authority,
    path_prefix: String,
    timeout: std::time::Duration,
    /// Upstream failures logged, rate-limited per cause.
    failures: Arc<FailureLog>,
}

impl Upstream {
    /// Builds the pooled client; fails only on unusable upstream TLS files. `client_body_timeout`
    /// bounds the silences of a client's request body while it is streamed upstream.
    pub fn new(config: &UpstreamConfig, client_body_timeout: Duration) -> Result<Self, TlsError> {
        let connector = connector(config)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let host = HeaderValue::from_str(config.authority.as_str())
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Upstream {
            client,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_pending: config.max_pending,
            max_connections: config.max_connections,
            slot_wait: config.connect_timeout,
            client_body_timeout,
            body_timeout: config.body_timeout,
            host,
            scheme: config.scheme.clone(),
            authority: config.authority.clone(),
            path_prefix: config.path_prefix.clone(),
            timeout: config.timeout,
            failures: Arc::default(),
        })
    }

    /// Requests holding an upstream slot now.
    pub fn in_flight(&self) -> usize {
        self.max_connections
            .saturating_sub(self.slots.available_permits())
    }

    /// `host:port` of the cluster, for reachability probes.
    pub fn socket_authority(&self) -> String {
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if self.scheme == Scheme::HTTPS {
                443
            } else {
                80
            });
        format!("{}:{port}", self.authority.host())
    }

    /// `scheme://host:port`, the port spelled out, for failure logs.
    fn address(&self) -> String {
        format!("{}://{}", self.scheme, self.socket_authority())
    }

    /// `scheme://authority`, for logs.
    pub fn describe(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path_prefix)
    }

    /// Sends `request` upstream with `authorization` and returns its response with hop-by-hop
    /// fields removed. Refused/reset connections become 502, a missed response deadline 504, no
    /// free upstream slot 503; a client body that breaks off or stalls is the client's 400 or 408.
    pub async fn forward(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        authorization: Authorization,
    ) -> Result<Response<Guarded<Incoming>>, ApiError> {
        let slot = self.slot().await?;
        let (mut parts, body) = request.into_parts();
        let body = Guarded::new(body, self.client_body_timeout, None);
        let authority = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        parts.uri = self.target(&parts.uri)?;
        parts.version = Version::HTTP_11;
        headers::rewrite_request(
            &mut parts.headers,
            client,
            authorization,
            authority.as_ref(),
        );
        parts.headers.insert(http::header::HOST, self.host.clone());
        let pending = self.client.request(Request::from_parts(parts, body));
        match tokio::time::timeout(self.timeout, pending).await {
            Ok(Ok(response)) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                // No `Upgrade` is ever forwarded, so a 101 is the upstream misbehaving.
                tracing::warn!("upstream switched protocols unasked; refused");
                Err(ApiError::UpstreamUnavailable)
            }
            Ok(Ok(mut response)) => {
                headers::remove_hop_by_hop(response.headers_mut());
                // Only the gateway's own answers may say they are its own.
                response.headers_mut().remove(&crate::response::X_TOKENGATE);
                // The client's connection is ours, not the upstream's: answer in our version.
                *response.version_mut() = Version::HTTP_11;
                Ok(response.map(|body| Guarded::new(body, self.body_timeout, Some(slot))))
            }
            Ok(Err(error)) => match client_body_fault(&error) {
                Some(fault) => {
                    tracing::debug!(%fault, "client request body failed");
                    Err(match fault {
                        BodyError::Idle(_) => ApiError::ClientTimeout,
                        BodyError::Source(_) => {
                            ApiError::BadFraming("the request body could not be read")
                        }
                    })
                }
                None => {
                    let cause = Cause::of(&error);
                    self.failures.report(cause, &self.address(), &error);
                    Err(ApiError::UpstreamUnavailable)
                }
            },
            Err(_) => {
                let deadline = format!("no response headers within {:?}", self.timeout);
                self.failures
                    .report(Cause::ResponseTimeout, &self.address(), &deadline);
                Err(ApiError::UpstreamTimeout)
            }
        }
    }

    /// A slot for one request upstream: at once when one is free, else after waiting in a
    /// bounded queue for up to the connect timeout; 503 when the queue is full or the wait ends.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                max_pending = self.max_pending,
                "upstream wait queue full; request refused"
            );
            return Err(ApiError::UpstreamBusy);
        }
        let waited = tokio::time::timeout(self.slot_wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                tracing::warn!(wait = ?self.slot_wait, "no upstream slot in time; request refused");
                Err(ApiError::UpstreamBusy)
            }
        }
    }

    /// The upstream URI for a client URI: same path and query, upstream scheme and authority.
    fn target(&self, uri: &Uri) -> Result<Uri, ApiError> {
        let path_and_query = match (self.path_prefix.is_empty(), uri.path_and_query()) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                format!("{}{pq}", self.path_prefix)
                    .parse()
                    .map_err(|_| ApiError::Internal)?
            }
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ApiError::Internal)
    }
}

/// The connector every upstream client uses: TCP options, timeouts and the upstream's TLS trust.
pub fn connector(config: &UpstreamConfig) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_keepalive(Some(UpstreamConfig::TCP_KEEPALIVE));
    connector.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&config.tls, config.scheme == Scheme::HTTPS)?)
        .https_or_http();
    Ok(if config.tls.http2 {
        https.enable_all_versions().wrap_connector(connector)
    } else {
        https.enable_http1().wrap_connector(connector)
    })
}

/// The client's own body failure behind an upstream request error, if that is what it was: the
/// pooled client reports a request body that broke off as its own failure.
fn client_body_fault(error: &hyper_util::client::legacy::Error) -> Option<&BodyError> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(fault) = cause.downcast_ref::<BodyError>() {
            return Some(fault);
        }
        source = cause.source();
    }
    None
}
