//! `auto` credentials: one Elasticsearch API key per service account, created by the gateway with
//! its own credential and limited to the account's role descriptor, so the cluster enforces what
//! the account may do.
//!
//! Keys live in the data directory (`upstream_api_keys.json`, owner-only, replaced atomically)
//! and are reused across restarts while the account's descriptor is unchanged. A key the cluster
//! answers 401 for is dropped and a new one made; replaced keys are invalidated at the cluster.
//! Creation runs in one background task, so a cluster that is down costs no request more than a
//! 503, and renewals are spaced so a cluster refusing every key is not hammered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::atomic_file;
use crate::config::UpstreamConfig;
use crate::identity::AccountId;
use crate::proxy;
use crate::tls::TlsError;

/// The file keeping the keys, in the data directory.
pub const FILE_NAME: &str = "upstream_api_keys.json";
/// The longest answer read from the security API.
const MAX_ANSWER: usize = 64 * 1024;
/// First wait after a failed round; doubles up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Least time between two rounds: a cluster that refuses every new key gets one attempt per
/// account per second, not one per request.
const RENEW_SPACING: Duration = Duration::from_secs(1);

/// Why the keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a keys file ({reason}); move it away to have every key created anew")]
    Corrupt { path: String, reason: String },
}

/// The current key of one account; read on every request of the account.
pub struct KeySlot {
    account: AccountId,
    current: RwLock<Option<Key>>,
}

#[derive(Clone)]
struct Key {
    id: String,
    authorization: HeaderValue,
}

impl KeySlot {
    /// The `Authorization` value to send, when a key exists.
    pub fn current(&self) -> Option<HeaderValue> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|k| k.authorization.clone())
    }

    pub fn account(&self) -> &AccountId {
        &self.account
    }

    fn set(&self, key: Option<Key>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// Drops the key if `used` is still the current one; returns its id.
    fn take_if_current(&self, used: &HeaderValue) -> Option<String> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|k| k.authorization == used) {
            return current.take().map(|k| k.id);
        }
        None
    }
}

/// The keys file's content.
#[derive(Default, Clone, Serialize, Deserialize)]
struct Saved {
    keys: Vec<SavedKey>,
    /// Ids of replaced keys still to invalidate at the cluster.
    retired: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
struct SavedKey {
    account: String,
    id: String,
    name: String,
    /// Which descriptor the key was made for: a changed descriptor needs a new key.
    role_descriptor_sha256: String,
    authorization: String,
}

/// An account whose key the gateway manages.
struct Managed {
    slot: Arc<KeySlot>,
    /// What the key is limited to, as sent to the cluster.
    descriptor: Value,
    digest: String,
}

/// The key maker: every managed account, the keys file and the client that talks to the
/// cluster's security API.
pub struct ApiKeys {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `/_security/api_key` and `Host` on each configured node.
    endpoints: Vec<(Uri, HeaderValue)>,
    /// The node asked first: the last one that could be reached.
    current: AtomicUsize,
    /// The gateway's own credential: what creates and invalidates the keys.
    gateway: HeaderValue,
    timeout: Duration,
    file: PathBuf,
    managed: Vec<Managed>,
    saved: Mutex<Saved>,
    wake: Notify,
}

impl ApiKeys {
    /// Loads the keys file under `data_dir` and gives every account in `accounts` (with its role
    /// descriptor) the key saved for that descriptor, if any. Keys of accounts no longer managed,
    /// or made for another descriptor, are marked for invalidation.
    pub fn open(
        config: &UpstreamConfig,
        gateway: HeaderValue,
        data_dir: &Path,
        accounts: Vec<(AccountId, &Value)>,
    ) -> Result<ApiKeys, OpenKeysError> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(1)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(proxy::connector(config)?);
        let endpoints = endpoints(config)?;
        let file = data_dir.join(FILE_NAME);
        let mut saved = load(&file)?;
        let managed: Vec<Managed> = accounts
            .into_iter()
            .map(|(account, descriptor)| manage(&saved, account, descriptor))
            .collect();
        if retire_stale(&mut saved, &managed) {
            save(&file, &saved)?;
        }
        Ok(ApiKeys {
            client,
            endpoints,
            current: AtomicUsize::new(0),
            gateway,
            timeout: config.timeout,
            file,
            managed,
            saved: Mutex::new(saved),
            wake: Notify::new(),
        })
    }

    /// The slots, one per managed account, in the order given to [`ApiKeys::open`].
    pub fn slots(&self) -> impl Iterator<Item = &Arc<KeySlot>> {
        self.managed.iter().map(|m| &m.slot)
    }

    /// Whether the account's key was loaded from the keys file (for the start-up log).
    pub fn reused(&self, account: &AccountId) -> bool {
        self.managed
            .iter()
            .any(|m| &m.slot.account == account && m.slot.current().is_some())
    }

    /// The cluster answered 401 to `used`: unless it was replaced meanwhile, it is dropped,
    /// queued for invalidation, and the key task makes a new one.
    pub fn refused(&self, slot: &KeySlot, used: &HeaderValue) {
        let Some(id) = slot.take_if_current(used) else {
            return;
        };
        tracing::warn!(account = %slot.account, key_id = %id, "the cluster refused the account's API key; creating a new one");
        let snapshot = {
            let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
            saved.keys.retain(|k| k.id != id);
            saved.retired.push(id);
            saved.clone()
        };
        if let Err(error) = save(&self.file, &snapshot) {
            tracing::error!(%error, "keys file not updated");
        }
        self.wake.notify_one();
    }

    /// One round: creates every missing key and invalidates retired ones. `true` when nothing
    /// is left to do.
    pub async fn provision(&self) -> bool {
        let mut done = true;
        for managed in &self.managed {
            if managed.slot.current().is_some() {
                continue;
            }
            match self.create(managed).await {
                Ok(saved_key) => {
                    let key = Key {
                        id: saved_key.id.clone(),
                        authorization: sensitive(&saved_key.authorization),
                    };
                    tracing::info!(account = %managed.slot.account, key_id = %key.id, "API key created for the account");
                    let snapshot = {
                        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
                        saved.keys.retain(|k| k.account != saved_key.account);
                        saved.keys.push(saved_key);
                        saved.clone()
                    };
                    // On disk before use: a key in use is a key the next start finds.
                    if let Err(error) = save(&self.file, &snapshot) {
                        tracing::error!(%error, "keys file not written; the key is not used");
                        done = false;
                        continue;
                    }
                    managed.slot.set(Some(key));
                }
                Err(error) => {
                    tracing::warn!(account = %managed.slot.account, %error, "API key not created; requests of the account get 503 until it is");
                    done = false;
                }
            }
        }
        let retired = {
            let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
            saved.retired.clone()
        };
        if !retired.is_empty() {
            match self.invalidate(&retired).await {
                Ok(()) => {
                    tracing::info!(count = retired.len(), "replaced API keys invalidated");
                    let snapshot = {
                        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
                        saved.retired.retain(|id| !retired.contains(id));
                        saved.clone()
                    };
                    if let Err(error) = save(&self.file, &snapshot) {
                        tracing::error!(%error, "keys file not updated");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "replaced API keys not invalidated yet");
                    done = false;
                }
            }
        }
        done
    }

    /// Runs rounds for as long as the gateway runs: after a failed round with growing pauses,
    /// else whenever a key is refused.
    pub async fn run(self: Arc<Self>) {
        let mut retry = MIN_RETRY;
        let mut last_round = Instant::now();
        loop {
            if self.managed.iter().all(|m| m.slot.current().is_some())
                && self
                    .saved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retired
                    .is_empty()
            {
                self.wake.notified().await;
            } else {
                tokio::time::sleep(retry).await;
            }
            let since = last_round.elapsed();
            if since < RENEW_SPACING {
                tokio::time::sleep(RENEW_SPACING.saturating_sub(since)).await;
            }
            last_round = Instant::now();
            retry = if self.provision().await {
                MIN_RETRY
            } else {
                (retry * 2).min(MAX_RETRY)
            };
        }
    }

    async fn create(&self, managed: &Managed) -> Result<SavedKey, KeyError> {
        let account = managed.slot.account.as_str();
        let name = format!("tokengate {account}");
        let body = json!({
            "name": name,
            "role_descriptors": { account: managed.descriptor },
            "metadata": {
                "tokengate": {
                    "service_account": account,
                    "role_descriptor_sha256": managed.digest,
                }
            }
        });
        let answer = self.call(Method::POST, &body).await?;
        let id = answer.get("id").and_then(Value::as_str);
        let encoded = match (answer.get("encoded").and_then(Value::as_str), id) {
            (Some(encoded), _) => encoded.to_owned(),
            (None, Some(id)) => {
                let secret = answer
                    .get("api_key")
                    .and_then(Value::as_str)
                    .ok_or(KeyError::Answer("no api_key"))?;
                STANDARD.encode(format!("{id}:{secret}"))
            }
            (None, None) => return Err(KeyError::Answer("no id")),
        };
        let id = id.ok_or(KeyError::Answer("no id"))?.to_owned();
        let authorization = format!("ApiKey {encoded}");
        if HeaderValue::from_str(&authorization).is_err() {
            return Err(KeyError::Answer("the key is not a header value"));
        }
        Ok(SavedKey {
            account: account.to_owned(),
            id,
            name,
            role_descriptor_sha256: managed.digest.clone(),
            authorization,
        })
    }

    async fn invalidate(&self, ids: &[String]) -> Result<(), KeyError> {
        match self.call(Method::DELETE, &json!({ "ids": ids })).await {
            // Already gone is as good as invalidated.
            Ok(_) | Err(KeyError::Refused(StatusCode::NOT_FOUND, _)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One JSON call to `/_security/api_key` with the gateway's credential, on the node that
    /// answered last; a node that cannot be connected to passes the call to the next one (no
    /// byte of it was sent, so nothing is done twice).
    async fn call(&self, method: Method, body: &Value) -> Result<Value, KeyError> {
        let bytes = Bytes::from(
            serde_json::to_vec(body).map_err(|_| KeyError::Answer("unencodable body"))?,
        );
        let first = self.current.load(Ordering::Relaxed);
        let mut last = KeyError::Answer("no node");
        for i in 0..self.endpoints.len() {
            let node = (first + i) % self.endpoints.len();
            match self.call_on(node, method.clone(), bytes.clone()).await {
                Err(KeyError::Unconnected(reason)) => {
                    last = KeyError::Unreachable(reason);
                    self.current
                        .store((node + 1) % self.endpoints.len(), Ordering::Relaxed);
                }
                outcome => return outcome,
            }
        }
        Err(last)
    }

    async fn call_on(&self, node: usize, method: Method, bytes: Bytes) -> Result<Value, KeyError> {
        let Some((endpoint, host)) = self.endpoints.get(node) else {
            return Err(KeyError::Answer("no node"));
        };
        let request = Request::builder()
            .method(method)
            .uri(endpoint.clone())
            .header(HOST, host.clone())
            .header(AUTHORIZATION, self.gateway.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(bytes))
            .map_err(|_| KeyError::Answer("unbuildable request"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    KeyError::Unconnected(e.to_string())
                } else {
                    KeyError::Unreachable(e.to_string())
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| KeyError::Unreachable(e.to_string()))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(KeyError::Refused(status, error_reason(&value)));
            }
            Ok(value)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| KeyError::Unreachable("no answer in time".to_owned()))?
    }
}

/// Why a call to the security API failed; never carries a key.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("cluster not reachable: {0}")]
    Unreachable(String),
    /// No connection could be made to the node asked: another may be tried.
    #[error("node not reachable: {0}")]
    Unconnected(String),
    #[error("cluster answered {0}: {1}")]
    Refused(StatusCode, String),
    #[error("unexpected answer: {0}")]
    Answer(&'static str),
}

/// Why the key maker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OpenKeysError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// `/_security/api_key` and `Host` on each configured node, in the configuration's order.
fn endpoints(config: &UpstreamConfig) -> Result<Vec<(Uri, HeaderValue)>, TlsError> {
    config
        .nodes
        .iter()
        .map(|node| {
            let endpoint = Uri::builder()
                .scheme(node.scheme.clone())
                .authority(node.authority.clone())
                .path_and_query(format!("{}/_security/api_key", node.path_prefix))
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            let host = HeaderValue::from_str(node.authority.as_str())
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            Ok((endpoint, host))
        })
        .collect()
}

/// The account's slot, holding the saved key made for this very descriptor, if there is one.
fn manage(saved: &Saved, account: AccountId, descriptor: &Value) -> Managed {
    let descriptor = key_descriptor(descriptor);
    let digest = digest(&descriptor);
    let key = saved
        .keys
        .iter()
        .find(|k| k.account == account.as_str() && k.role_descriptor_sha256 == digest)
        .and_then(|k| {
            let mut value = HeaderValue::from_str(&k.authorization).ok()?;
            value.set_sensitive(true);
            Some(Key {
                id: k.id.clone(),
                authorization: value,
            })
        });
    Managed {
        slot: Arc::new(KeySlot {
            account,
            current: RwLock::new(key),
        }),
        descriptor,
        digest,
    }
}

/// Moves the saved keys no managed account uses (account gone, descriptor changed) to the ids
/// to invalidate; `true` when any moved, so the file must be written again.
fn retire_stale(saved: &mut Saved, managed: &[Managed]) -> bool {
    let before = saved.keys.len();
    let (kept, stale): (Vec<SavedKey>, Vec<SavedKey>) = saved.keys.drain(..).partition(|k| {
        managed
            .iter()
            .any(|m| m.slot.account.as_str() == k.account && m.digest == k.role_descriptor_sha256)
    });
    saved.keys = kept;
    saved.retired.extend(stale.into_iter().map(|k| k.id));
    saved.keys.len() != before
}

/// The `reason` of an Elasticsearch error body, for the log.
fn error_reason(body: &Value) -> String {
    body.pointer("/error/reason")
        .and_then(Value::as_str)
        .or_else(|| body.get("error").and_then(Value::as_str))
        .unwrap_or("no reason given")
        .chars()
        .take(300)
        .collect()
}

/// The descriptor as an API key may carry it: metadata is the account's own business (and keys
/// starting with `_` are refused in a key's descriptors).
fn key_descriptor(descriptor: &Value) -> Value {
    let mut descriptor = descriptor.clone();
    if let Value::Object(map) = &mut descriptor {
        map.remove("metadata");
        map.remove("transient_metadata");
    }
    descriptor
}

fn digest(descriptor: &Value) -> String {
    let bytes = serde_json::to_vec(descriptor).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sensitive(text: &str) -> HeaderValue {
    let mut value =
        HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
    value.set_sensitive(true);
    value
}

fn load(path: &Path) -> Result<Saved, KeyFileError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(source) => {
            return Err(KeyFileError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    serde_json::from_slice(&text).map_err(|e| KeyFileError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn save(path: &Path, saved: &Saved) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = serde_json::to_vec_pretty(saved)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    bytes.push(b'\n');
    atomic_file::replace(path, &bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_not_part_of_a_keys_descriptor() {
        let descriptor = json!({"cluster": ["monitor"], "metadata": {"_reserved": true}, "transient_metadata": {"enabled": true}});
        assert_eq!(key_descriptor(&descriptor), json!({"cluster": ["monitor"]}));
        assert_ne!(
            digest(&json!({"cluster": ["monitor"]})),
            digest(&json!({"cluster": ["all"]}))
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "{not json").unwrap();
        let error = load(&path).err().unwrap().to_string();
        assert!(
            error.contains(FILE_NAME) && error.contains("move it away"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(load(&path).unwrap().keys.is_empty());
    }
}
