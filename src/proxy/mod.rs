//! Forwarding an authenticated request to the cluster's nodes over pooled keep-alive
//! connections, with passive and active health, safe retries and node discovery.
//!
//! Bodies stream both ways (hyper's `Incoming` in, read from the node's connection out): a 1 GB
//! `_bulk` is never held whole, and so never sent twice.

mod error;
mod failure;
pub mod headers;
mod maintain;
pub mod nodes;
mod outbound;
mod pool;
mod retry;
mod slots;
mod sniff;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::{NodeHealth, RetryPolicy, UpstreamConfig};
use crate::limits::{Admission, Lane};
use crate::message::body::{Answer, BodyError, Guarded};
use crate::message::ClientInfo;
use crate::tls::{upstream::client_config, TlsError};
pub use error::Error;
use failure::{Cause, FailureLog};
use headers::Authorization;
use nodes::{Node, NodeSet, Pick};
use outbound::Outbound;
pub use pool::Connector;
use pool::{ConnectionLease, SendError, TimedOut};
use retry::RetryBudget;
use slots::{NoSlot, Slot, SlotLimits};

/// The cluster's nodes and the connections that reach them (a pool per node).
#[derive(Clone)]
pub struct Upstream {
    connector: Connector,
    nodes: Arc<NodeSet>,
    /// The configured nodes: where sniffing starts and falls back to.
    seeds: Arc<crate::config::NodeList>,
    health: Arc<NodeHealth>,
    retry: RetryPolicy,
    budget: Arc<RetryBudget>,
    /// How long a request may wait for a slot.
    slot_wait: Duration,
    client_body_timeout: Duration,
    body_timeout: Duration,
    timeout: Duration,
    /// The gateway's own credential, for health checks and sniffing.
    authorization: Option<HeaderValue>,
    /// Upstream failures logged, rate-limited per cause.
    failures: Arc<FailureLog>,
}

impl Upstream {
    /// Prepares the connector and the node set; fails only on unusable upstream TLS files.
    /// `client_body_timeout` bounds the silences of a client's request body while it is
    /// streamed upstream.
    pub fn new(config: &UpstreamConfig, client_body_timeout: Duration) -> Result<Self, TlsError> {
        let pools = (config.pool_max_idle, config.pool_idle_timeout);
        let slots = SlotLimits {
            max: config.max_connections,
            max_pending: config.max_pending,
            fair: config.fair_queue,
        };
        let nodes = NodeSet::new(config.nodes.iter().cloned(), slots, pools)
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Upstream {
            connector: connector(config)?,
            nodes: Arc::new(nodes),
            seeds: Arc::new(config.nodes.clone()),
            health: Arc::new(config.health.clone()),
            retry: config.retry.clone(),
            budget: Arc::new(RetryBudget::new(&config.retry)),
            slot_wait: config.connect_timeout,
            client_body_timeout,
            body_timeout: config.body_timeout,
            timeout: config.timeout,
            authorization: config.authorization.clone(),
            failures: Arc::default(),
        })
    }

    /// Requests holding an upstream slot now, over all nodes.
    pub fn in_flight(&self) -> usize {
        self.nodes.outstanding()
    }

    /// The nodes now, for metrics and readiness.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.all()
    }

    /// Retries made, and refused for want of budget, since the start.
    pub fn retries(&self) -> (u64, u64) {
        (
            self.budget.retried.load(Ordering::Relaxed),
            self.budget.refused.load(Ordering::Relaxed),
        )
    }

    /// Closes pooled connections idle too long.
    pub fn sweep_idle(&self) {
        for node in self.nodes.all().iter() {
            node.pool.sweep();
        }
    }

    /// The nodes, for logs: `http://a:9200, http://b:9200`.
    pub fn describe(&self) -> String {
        let nodes = self.nodes.all();
        let mut text = String::new();
        for (i, node) in nodes.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&node.url.to_string());
        }
        text
    }

    /// Sends `request` upstream with `authorization` and returns its response with hop-by-hop
    /// fields removed. A node that cannot be connected to is ejected and the request, still
    /// whole, goes to another; one that fails after the request went out is repeated elsewhere
    /// only when it had no body and an idempotent method. All within the retry budget.
    /// Refused/reset connections become 502, a missed response deadline 504, no free upstream
    /// slot 503; a client body that breaks off or stalls is the client's 400 or 408.
    /// `admission` goes with the response's body: its account counts the request in flight
    /// until the body ends.
    ///
    /// Not an `async fn`, nor are `attempt` and the pool's `send`: an `async fn` keeps its
    /// arguments twice in its future (as passed, then moved into its body), and the request is
    /// the largest of them.
    #[allow(
        clippy::manual_async_fn,
        reason = "its future holds its arguments once"
    )]
    pub fn forward<'a>(
        &'a self,
        request: Request<Incoming>,
        client: &'a ClientInfo,
        authorization: Authorization,
        admission: Admission,
    ) -> impl Future<Output = Result<Response<Guarded<Answer>>, Error>> + 'a {
        async move {
            let retries = self
                .retry
                .max_retries
                .min(self.nodes.len().saturating_sub(1));
            if retries > 0 {
                self.budget.deposit();
            }
            let Some(mut pick) = self.nodes.pick(&[]) else {
                self.failures
                    .report(Cause::NoNode, "every node", &"no node in rotation");
                return Err(Error::Unavailable);
            };
            let host = pick.node.host.clone();
            let (mut request, target) =
                self.outbound(request, client, authorization, retries, host);
            let mut tried: Vec<Arc<Node>> = Vec::new();
            let mut admission = Some(admission);
            loop {
                let node = Arc::clone(&pick.node);
                *request.uri_mut() = node.target(target.path_and_query.as_ref())?;
                if !tried.is_empty() {
                    request
                        .headers_mut()
                        .insert(http::header::HOST, node.host.clone());
                }
                let failed = match self.attempt(pick, request, &mut admission).await? {
                    Attempt::Answered(response) => return Ok(response),
                    Attempt::Failed(failed) => failed,
                };
                // A request that never went out may go elsewhere; one that did, only when it may
                // be repeated. Either within the retry bound and the budget.
                let again = matches!(failed, SendError::Unsent(..)) || target.repeatable.is_some();
                if !again || tried.len() >= retries || !self.budget.withdraw() {
                    return Err(Error::Unavailable);
                }
                request = match failed {
                    SendError::Unsent(unsent, _) => *unsent,
                    SendError::Sent(_) => target.repeat().ok_or(Error::Unavailable)?,
                };
                tracing::debug!(node = %node.label, "retrying the request on another node");
                tried.push(node);
                pick = self.nodes.pick(&tried).ok_or(Error::Unavailable)?;
            }
        }
    }

    /// The client's request as it goes upstream (`host`: its first node's): hop-by-hop fields
    /// out, forwarding and credential fields in, its body guarded against stalls; and what a
    /// retry needs.
    fn outbound(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        authorization: Authorization,
        retries: usize,
        host: HeaderValue,
    ) -> (Request<Outbound>, Target) {
        let (parts, body) = request.into_parts();
        let authority = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let method = parts.method;
        let mut headers = parts.headers;
        headers::rewrite_request(
            &mut headers,
            client,
            authorization,
            authority.as_ref(),
            host,
        );
        let outbound = Outbound::new(Guarded::new(body, self.client_body_timeout, None));
        // What it takes to send a request that went out once more, when it may be.
        let repeatable = (retries > 0 && retry::repeatable(&method, &outbound))
            .then(|| (method.clone(), headers.clone()));
        let target = Target {
            path_and_query: parts.uri.path_and_query().cloned(),
            repeatable,
        };
        let mut request = Request::new(outbound);
        *request.method_mut() = method;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        (request, target)
    }

    /// One try on `pick`'s node: a slot, the request sent, its response head awaited. A
    /// failure the client caused, or a timeout, ends the request; a connection that failed is
    /// handed back for the caller to decide on a retry (a refused one ejects the node).
    #[allow(
        clippy::manual_async_fn,
        reason = "its future holds its arguments once"
    )]
    fn attempt<'a>(
        &'a self,
        pick: Pick,
        request: Request<Outbound>,
        admission: &'a mut Option<Admission>,
    ) -> impl Future<Output = Result<Attempt, Error>> + 'a {
        async move {
            let node = &pick.node;
            let slot = self.slot(node, admission.as_ref()).await?;
            let repeatable = retry::repeatable(request.method(), request.body());
            let sent = node.pool.send(
                &self.connector,
                &node.base,
                request,
                repeatable,
                self.timeout,
            );
            let failed = match sent.await {
                Ok(Ok(response)) => {
                    let lease = ConnectionLease {
                        _slot: slot,
                        _admission: admission.take(),
                    };
                    pick.answered();
                    return self.answer(response, lease).map(Attempt::Answered);
                }
                Err(TimedOut) => {
                    let deadline = format!("no response headers within {:?}", self.timeout);
                    self.failures
                        .report(Cause::ResponseTimeout, &node.label, &deadline);
                    return Err(Error::Timeout);
                }
                Ok(Err(failed)) => failed,
            };
            drop(slot);
            match &failed {
                SendError::Unsent(_, error) => {
                    self.failures
                        .report(Cause::of(error.as_ref()), &node.label, error);
                    if pick.refused(&self.health) {
                        self.nodes.ejected.notify_one();
                    }
                }
                SendError::Sent(error) => {
                    if let Some(fault) = client_body_fault(error.as_ref()) {
                        tracing::debug!(%fault, "client request body failed");
                        return Err(match fault {
                            BodyError::Idle(_) => Error::ClientTimeout,
                            BodyError::Source(_) | BodyError::Upstream(_) => Error::ClientBody,
                        });
                    }
                    self.failures
                        .report(Cause::of(error.as_ref()), &node.label, error);
                }
            }
            Ok(Attempt::Failed(failed))
        }
    }

    /// The node's response, as the client gets it.
    fn answer(
        &self,
        mut response: Response<Answer>,
        lease: ConnectionLease,
    ) -> Result<Response<Guarded<Answer>>, Error> {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // No `Upgrade` is ever forwarded, so a 101 is the upstream misbehaving.
            tracing::warn!("upstream switched protocols unasked; refused");
            return Err(Error::Unavailable);
        }
        headers::rewrite_response(response.headers_mut());
        // The client's connection is ours, not the upstream's: answer in our version.
        *response.version_mut() = Version::HTTP_11;
        let lease = Box::new(lease);
        Ok(response.map(|body| Guarded::new(body, self.body_timeout, Some(lease))))
    }

    /// A slot for one request on `node`: at once when one is free, else after its account's
    /// turn in the node's queue, within the connect timeout; 503 when the queue (or its
    /// account's part of it) is full or the wait ends.
    async fn slot(&self, node: &Node, admission: Option<&Admission>) -> Result<Slot, Error> {
        if let Some(slot) = node.slots.try_acquire() {
            return Ok(slot);
        }
        let lane = admission.map_or(Lane::SHARED, Admission::lane);
        let started = std::time::Instant::now();
        let slot = node.slots.acquire(lane, self.slot_wait).await;
        if let Some(admission) = admission {
            admission.waited(started.elapsed());
        }
        slot.map_err(|refused| {
            match refused {
                NoSlot::QueueFull => tracing::warn!(
                    node = %node.label,
                    "upstream wait queue full; request refused"
                ),
                NoSlot::TimedOut => tracing::warn!(
                    wait = ?self.slot_wait,
                    node = %node.label,
                    "no upstream slot in time; request refused"
                ),
            }
            Error::Busy
        })
    }

    /// Requests waiting for a slot now, over all nodes.
    pub fn waiting(&self) -> usize {
        self.nodes.all().iter().map(|n| n.slots.waiting()).sum()
    }

    /// A `GET` of `path` on `node` with the gateway's credential, for health checks and
    /// sniffing: the status, and the body when it arrived whole within `limit` bytes (then the
    /// connection goes back to the node's pool). `timeout` covers the body too.
    async fn get(
        &self,
        node: &Node,
        path: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<(http::StatusCode, Option<bytes::Bytes>), String> {
        let path = path
            .parse::<http::uri::PathAndQuery>()
            .map_err(|e| e.to_string())?;
        let uri = node
            .target(Some(&path))
            .map_err(|_| format!("cannot ask {} for {path}", node.label))?;
        let mut request = Request::new(Outbound::Empty);
        *request.uri_mut() = uri;
        let headers: &mut HeaderMap = request.headers_mut();
        headers.insert(http::header::HOST, node.host.clone());
        if let Some(credential) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, credential.clone());
        }
        let exchange = async {
            let response = node
                .pool
                .send(&self.connector, &node.base, request, true, timeout)
                .await
                .map_err(|TimedOut| format!("no answer within {timeout:?}"))?
                .map_err(|error| match error {
                    SendError::Unsent(_, error) => Cause::of(error.as_ref()).as_str().to_owned(),
                    SendError::Sent(error) => Cause::of(error.as_ref()).as_str().to_owned(),
                })?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), limit)
                .collect()
                .await
                .ok()
                .map(http_body_util::Collected::to_bytes);
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

/// The outcome of one try on one node. Not boxed: the large variant is the common one, and
/// boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Answered(Response<Guarded<Answer>>),
    /// The connection failed; the request, when it never went out, is inside.
    Failed(SendError),
}

/// What a request needs to be sent again: its target, and its method and fields when it may be
/// repeated after it went out (no body, an idempotent method).
struct Target {
    path_and_query: Option<PathAndQuery>,
    repeatable: Option<(Method, HeaderMap)>,
}

impl Target {
    /// A fresh copy of the request, when it may be repeated.
    fn repeat(&self) -> Option<Request<Outbound>> {
        let (method, headers) = self.repeatable.as_ref()?;
        let mut request = Request::new(Outbound::Empty);
        *request.method_mut() = method.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers.clone();
        Some(request)
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
        .with_tls_config(client_config(&config.tls, config.nodes.any_https())?)
        .https_or_http();
    Ok(if config.tls.http2 {
        https.enable_all_versions().wrap_connector(connector)
    } else {
        https.enable_http1().wrap_connector(connector)
    })
}

/// The client's own body failure behind an upstream request error, if that is what it was: the
/// connection reports a request body that broke off as its own failure.
fn client_body_fault<'e>(
    error: &'e (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'e BodyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(fault) = cause.downcast_ref::<BodyError>() {
            return Some(fault);
        }
        source = cause.source();
    }
    None
}
