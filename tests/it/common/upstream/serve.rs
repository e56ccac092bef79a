//! The fake node's one accept loop: TCP, then TLS when configured, then HTTP (HTTP/1.1 on plain
//! TCP; HTTP/1.1 or h2 by ALPN over TLS); each request recorded, then answered by its
//! [`Behaviour`] and handler.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::reply::{full, json, nodes_answer, FakeBody};
use super::{Behaviour, Recorded, Shared, TlsOptions};
use crate::common::tls::provider;

/// Bodies longer than this are recorded by length and checksum only.
const KEPT_BODY: usize = 1 << 20;

/// The rustls side of a TLS fake.
pub(super) fn acceptor(options: TlsOptions) -> TlsAcceptor {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match options.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider());
            builder.with_client_cert_verifier(verifier.build().unwrap())
        }
    };
    let mut config = builder
        .with_single_cert(options.served.chain(), options.served.key())
        .unwrap();
    config.alpn_protocols = options.alpn;
    TlsAcceptor::from(Arc::new(config))
}

/// Accepts until `stopped` fires (or the task is aborted), then closes every connection it
/// accepted before returning: the listener and the connections live and die together.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(connection(stream, tls.clone(), Arc::clone(&shared)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn connection(stream: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let Some(acceptor) = tls else {
        let http1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        return serve(http1, TokioIo::new(stream), shared, false).await;
    };
    // A refused handshake is the outcome some tests want; nothing to record.
    let Ok(stream) = acceptor.accept(stream).await else {
        return;
    };
    let client_cert = stream.get_ref().1.peer_certificates().is_some();
    let builder = auto::Builder::new(TokioExecutor::new());
    serve(builder, TokioIo::new(stream), shared, client_cert).await;
}

async fn serve<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    shared: Arc<Shared>,
    client_cert: bool,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(Arc::clone(&shared), request, client_cert));
    // A peer that goes away mid-request is not the fake's failure.
    let _ = builder.serve_connection(io, service).await;
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    client_cert: bool,
) -> Result<Response<FakeBody>, std::io::Error> {
    let recorded = record(&shared, request, client_cert)
        .await
        .map_err(std::io::Error::other)?;
    if recorded.uri.path() == "/_nodes/http" {
        let listed = shared.listed.lock().unwrap().clone();
        return Ok(json(StatusCode::OK, nodes_answer(&listed)));
    }
    let behaviour = *shared.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::Hold => std::future::pending::<()>().await,
        // An error from the service makes hyper close the connection without a response.
        Behaviour::DropAfterRead => return Err(std::io::Error::other("dropped on purpose")),
        Behaviour::FailHealth if recorded.uri.path() == "/_health" => {
            return Ok(json(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned()));
        }
        Behaviour::FailHealth => {}
    }
    let handler = Arc::clone(&shared.handler);
    let outcome = AssertUnwindSafe(async move { handler(&recorded).await })
        .catch_unwind()
        .await;
    Ok(outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned());
        shared.panics.lock().unwrap().push(message);
        let mut response = Response::new(full("fake upstream handler panicked"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    }))
}

/// Reads the whole body (counting it as it arrives) and records the request.
async fn record(
    shared: &Shared,
    request: Request<Incoming>,
    client_cert: bool,
) -> Result<Recorded, hyper::Error> {
    let (parts, mut body) = request.into_parts();
    let mut kept = BytesMut::new();
    let mut body_len = 0u64;
    let mut crc = crc32fast::Hasher::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        body_len += data.len() as u64;
        crc.update(&data);
        if kept.len() + data.len() <= KEPT_BODY {
            kept.extend_from_slice(&data);
        }
        shared.received.send_modify(|n| *n += data.len() as u64);
    }
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: if body_len as usize <= KEPT_BODY {
            kept.freeze()
        } else {
            Bytes::new()
        },
        body_len,
        body_crc: crc.finalize(),
        client_cert,
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    shared.count.send_modify(|c| *c += 1);
    Ok(recorded)
}
