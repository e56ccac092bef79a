//! One connection to etcd at a time, moved to the next endpoint when the current one fails.
//!
//! The client's own balancing keeps sending to a member that went away, and it does not renew
//! watches, so the gateway connects to one endpoint and decides itself when to give it up: any
//! failure that can be a dead or partitioned member moves on to the next, in order.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::EtcdConfig;
use crate::store::StoreError;

/// One attempt's bound: etcd commits in milliseconds, so a second without an answer is a member
/// that is gone or has no leader, and the next endpoint is worth a try.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pings below 5 s get the connection closed by etcd; 10 s still notices a dead peer well before
/// TCP would.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(crate) struct Conn {
    endpoints: Vec<String>,
    options: ConnectOptions,
    /// The endpoint in use and its client, made on first use.
    current: Mutex<(usize, Option<Client>)>,
}

/// Doubling waits between attempts, capped.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(BACKOFF_FIRST)
    }

    /// Sleeps for the next wait, never past `deadline`.
    pub async fn wait(&mut self, deadline: Option<Instant>) {
        let mut until = Instant::now() + self.0;
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        tokio::time::sleep_until(until).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }

    pub fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }
}

impl Conn {
    pub fn new(config: &EtcdConfig) -> Result<Conn, StoreError> {
        let mut options = ConnectOptions::new()
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_connect_timeout(ATTEMPT_TIMEOUT)
            // A member without a leader answers nothing current; it must say so instead.
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if config.ca.is_some() || config.cert.is_some() {
            options = options.with_tls(tls(config)?);
        }
        Ok(Conn {
            endpoints: config.endpoints.clone(),
            options,
            current: Mutex::new((0, None)),
        })
    }

    /// The client of the endpoint in use, and which one that is.
    async fn client(&self) -> Result<(usize, Client), etcd_client::Error> {
        let mut current = self.current.lock().await;
        let index = current.0;
        if let Some(client) = &current.1 {
            return Ok((index, client.clone()));
        }
        let endpoint = self.endpoints.get(index).map_or("", String::as_str);
        let connect = Client::connect([endpoint], Some(self.options.clone()));
        let client = match tokio::time::timeout(ATTEMPT_TIMEOUT, connect).await {
            Ok(client) => client?,
            Err(_) => {
                return Err(etcd_client::Error::EndpointError(format!(
                    "{endpoint}: connect timed out"
                )))
            }
        };
        current.1 = Some(client.clone());
        Ok((index, client))
    }

    /// Gives up endpoint `index` for the next one, unless another caller already did.
    pub async fn failed(&self, index: usize, error: &(dyn std::fmt::Display + Sync)) {
        let mut current = self.current.lock().await;
        if current.0 != index {
            return;
        }
        let next = (index + 1) % self.endpoints.len().max(1);
        tracing::warn!(
            endpoint = self.endpoints.get(index).map_or("", String::as_str),
            next = self.endpoints.get(next).map_or("", String::as_str),
            %error,
            "etcd endpoint failed; moving to the next"
        );
        *current = (next, None);
    }

    /// Runs `call` with the current client until it succeeds, fails for good, or `deadline`
    /// passes. Each attempt sends the same request, so an attempt whose answer was lost is
    /// repeated as it was: callers make their writes safe to repeat.
    pub async fn call<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut backoff = Backoff::new();
        loop {
            let error = match self.client().await {
                Ok((index, client)) => {
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, call(client)).await {
                        Ok(Ok(value)) => return Ok(value),
                        Ok(Err(error)) if !retryable(&error) => {
                            return Err(StoreError::Unavailable(format!("etcd: {error}")))
                        }
                        Ok(Err(error)) => {
                            self.failed(index, &error).await;
                            error.to_string()
                        }
                        Err(_) => {
                            self.failed(index, &"no answer in time").await;
                            "no answer in time".to_owned()
                        }
                    }
                }
                Err(error) => {
                    let index = self.current.lock().await.0;
                    self.failed(index, &error).await;
                    error.to_string()
                }
            };
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "etcd unreachable at every endpoint: {error}"
                )));
            }
            backoff.wait(Some(deadline)).await;
        }
    }

    /// A client for a watch stream, with the index to report to [`Conn::failed`].
    pub async fn watch_client(&self) -> Result<(usize, Client), (usize, etcd_client::Error)> {
        match self.client().await {
            Ok(pair) => Ok(pair),
            Err(error) => Err((self.current.lock().await.0, error)),
        }
    }
}

/// Whether another attempt, possibly at another member, may succeed. A request etcd judged and
/// refused (bad argument, permission, a compacted revision) fails the same everywhere.
pub(crate) fn retryable(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => !matches!(
            status.code(),
            Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::PermissionDenied
                | Code::OutOfRange
                | Code::Unimplemented
                | Code::AlreadyExists
                | Code::NotFound
        ),
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => false,
        _ => true,
    }
}

fn tls(config: &EtcdConfig) -> Result<TlsOptions, StoreError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &config.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn only_what_another_member_might_answer_differently_is_retried() {
        let status = |code| etcd_client::Error::GRpcStatus(Status::new(code, "x"));
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Internal,
        ] {
            assert!(retryable(&status(code)), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::OutOfRange,
        ] {
            assert!(!retryable(&status(code)), "{code:?}");
        }
        assert!(retryable(&etcd_client::Error::EndpointError("gone".into())));
    }
}
