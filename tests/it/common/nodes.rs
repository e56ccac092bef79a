//! `ClusterNode`: one node of a fake multi-node cluster that can be stopped (listener closed,
//! every connection dropped, as a process that exits) and started again on the same port. It
//! counts what it received and answers `GET /_nodes/http` with the node list a test sets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How a node answers a request (other than `/_nodes/http`, always answered from the list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with a body naming the node.
    Answer,
    /// Keeps the request until the node is stopped: a request in flight when it dies.
    Hold,
    /// Reads the whole request, then closes the connection without a word.
    DropAfterRead,
    /// 500 on the health-check path `/_health`, 200 elsewhere.
    FailHealth,
}

/// One request as the node received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
    pub body_len: usize,
    pub body_crc: u32,
}

struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
    behaviour: Mutex<Behaviour>,
    /// The `_nodes/http` answer's publish addresses.
    listed: Mutex<Vec<SocketAddr>>,
    /// Requests received, for waiting on.
    count: watch::Sender<usize>,
    /// Connections accepted.
    connections: std::sync::atomic::AtomicUsize,
}

/// A node of a fake cluster on loopback.
pub struct ClusterNode {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop and every connection; aborted together by [`ClusterNode::stop`].
    running: Option<JoinSet<()>>,
}

impl ClusterNode {
    pub async fn start(name: &str) -> ClusterNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Answer),
            listed: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            connections: std::sync::atomic::AtomicUsize::new(0),
        });
        let mut node = ClusterNode {
            addr,
            shared,
            running: None,
        };
        node.serve(listener);
        node
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut set = JoinSet::new();
        let shared = Arc::clone(&self.shared);
        set.spawn(accept_loop(listener, shared));
        self.running = Some(set);
    }

    /// Stops as a killed process would: no more connections accepted, every open one closed,
    /// requests in flight unanswered.
    pub async fn stop(&mut self) {
        if let Some(mut set) = self.running.take() {
            set.shutdown().await;
        }
    }

    /// Starts again on the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Makes `GET /_nodes/http` list `nodes` (as their HTTP publish addresses).
    pub fn list(&self, nodes: &[SocketAddr]) {
        *self.shared.listed.lock().unwrap() = nodes.to_vec();
    }

    /// Connections accepted so far, over restarts.
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests received other than sniffing and health checks: the forwarded ones.
    pub fn forwarded(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path != "/_nodes/http" && s.path != "/_health")
            .count()
    }

    /// Waits until the node has received `n` requests in all.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.shared.count.subscribe();
        count.wait_for(|c| *c >= n).await.unwrap();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set: dropping it (on stop) closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&shared), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        authorization: parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body_len: body.len(),
        body_crc: crc32fast::hash(&body),
    };
    shared.seen.lock().unwrap().push(seen);
    shared.count.send_modify(|c| *c += 1);
    if parts.uri.path() == "/_nodes/http" {
        return Ok(json(StatusCode::OK, nodes_answer(&shared)));
    }
    let behaviour = *shared.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::Hold => std::future::pending::<()>().await,
        // An error from the service makes hyper close the connection without a response.
        Behaviour::DropAfterRead => return Err(std::io::Error::other("dropped on purpose")),
        Behaviour::FailHealth if parts.uri.path() == "/_health" => {
            return Ok(json(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned()));
        }
        Behaviour::FailHealth => {}
    }
    Ok(json(
        StatusCode::OK,
        format!(r#"{{"name":"{}","cluster_name":"fake"}}"#, shared.name),
    ))
}

fn nodes_answer(shared: &Shared) -> String {
    let listed = shared.listed.lock().unwrap().clone();
    let nodes: Vec<String> = listed
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            format!(
                r#""node{i}":{{"name":"n{i}","roles":["data","ingest"],"http":{{"publish_address":"{addr}"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"_nodes":{{"total":{}}},"cluster_name":"fake","nodes":{{{}}}}}"#,
        listed.len(),
        nodes.join(",")
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
