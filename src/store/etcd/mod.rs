//! The etcd backend: several gateways share one token set.
//!
//! Each gateway keeps the whole set in memory, as with the journal, and a watch keeps it current;
//! etcd is only asked when a token is created or deleted. A create is a create-only transaction
//! on the token's key, so two gateways creating one name at once get one success and one
//! conflict, and it is acknowledged only once etcd has committed it and this gateway's own maps
//! hold it. While etcd is unreachable the gateway keeps checking tokens from memory and refuses
//! changes; [`Etcd::staleness`] tells for how long it may have missed revocations. A serving
//! gateway also registers itself, so that each knows how many share the accounts (`replicas`).
//!
//! All etcd traffic runs on a thread of its own with its own runtime, as the journal writer does:
//! the gateway's workers only hand it requests.

mod conn;
mod follow;
mod keys;
mod migrate;
mod replicas;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp, TxnResponse};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fingerprint::{self, Fingerprint, Pepper};
use super::loading::LoadObserver;
use super::replicas::Replicas;
use super::worker::{self, Worker};
use super::writer::{Op, Reply, Request};
use super::{Shared, StoreError};
use crate::config::EtcdConfig;
use conn::Conn;
use follow::{Follower, Freshness};
use keys::Layout;

pub use migrate::{migrate, Migrated};

/// Puts per transaction in a bulk copy; etcd refuses more than 128 operations in one.
const TXN_PUTS: usize = 64;

/// The running backend, held by the store.
pub(crate) struct Etcd {
    worker: Worker<Request>,
    freshness: Arc<Freshness>,
    /// The gateways registered under the prefix, this one included.
    replicas: Replicas,
    /// The data directory's lock, released once the thread is done.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl Etcd {
    pub async fn submit(&self, ops: Vec<Op>, queued: impl FnOnce()) -> Reply {
        self.worker
            .call(|reply| Request { ops, reply }, queued)
            .await
    }

    pub fn staleness(&self) -> Duration {
        self.freshness.staleness()
    }

    pub fn replicas(&self) -> Replicas {
        self.replicas.clone()
    }

    pub fn close(&self) {
        if !self.worker.stop() {
            tracing::error!("etcd store thread panicked");
        }
        drop(
            self.lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }
}

/// Connects, agrees on the pepper, reads every token, and starts following changes. Returns once
/// the maps hold the whole set, or fails after `start_timeout`. `progress` hears how far the read
/// got.
pub(crate) fn open(
    config: &EtcdConfig,
    lock: std::fs::File,
    serving: bool,
    progress: LoadObserver,
) -> Result<(Arc<Shared>, Etcd), StoreError> {
    let writes = Writes {
        conn: Arc::new(Conn::new(config)?),
        layout: Layout::new(&config.prefix),
        timeout: config.request_timeout,
    };
    let start_timeout = config.start_timeout;
    let replicas = Replicas::single();
    let counting = serving.then(|| replicas.clone());
    let (tx, rx) = worker::queue();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = thread::Builder::new()
        .name("tokengate-etcd".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx.send(Err(StoreError::Unavailable(format!(
                        "etcd store runtime: {error}"
                    ))));
                    return;
                }
            };
            runtime.block_on(serve(
                writes,
                counting,
                start_timeout,
                rx,
                ready_tx,
                progress,
            ));
        })
        .map_err(|error| StoreError::Unavailable(format!("etcd store thread: {error}")))?;
    match ready_rx.recv() {
        Ok(Ok((shared, freshness))) => Ok((
            shared,
            Etcd {
                worker: Worker::new(tx, thread),
                freshness,
                replicas,
                lock: std::sync::Mutex::new(Some(lock)),
            },
        )),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StoreError::Closed)
        }
    }
}

type Ready = std::sync::mpsc::SyncSender<Result<(Arc<Shared>, Arc<Freshness>), StoreError>>;

/// The thread's life: start, then answer requests until the store closes.
async fn serve(
    writes: Writes,
    replicas: Option<Replicas>,
    start_timeout: Duration,
    mut requests: mpsc::Receiver<Request>,
    ready: Ready,
    progress: LoadObserver,
) {
    let started = Instant::now();
    let deadline = started + start_timeout;
    let (pepper, snapshot) = match start(&writes, deadline, &progress).await {
        Ok(started) => started,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let revision = snapshot.revision;
    let shared = Arc::new(Shared::new(follow::maps_of(snapshot), pepper));
    tracing::info!(
        prefix = %writes.layout.tokens().escape_ascii(),
        tokens = shared.maps.len(),
        revision,
        took_ms = started.elapsed().as_millis(),
        "token store read from etcd"
    );
    let applied = Arc::new(watch::Sender::new(revision));
    let freshness = Arc::new(Freshness::new());
    let (stop, stopped) = watch::channel(false);
    let follower = Follower {
        conn: Arc::clone(&writes.conn),
        layout: writes.layout.clone(),
        shared: Arc::clone(&shared),
        applied: Arc::clone(&applied),
        freshness: Arc::clone(&freshness),
    };
    let following = tokio::spawn(follower.run(stopped));
    let registered =
        replicas::start(&writes.conn, &writes.layout, replicas, stop.subscribe()).await;
    if ready.send(Ok((shared, freshness))).is_err() {
        let _ = stop.send(true);
        return;
    }
    let writes = Arc::new(writes);
    let mut in_flight = JoinSet::new();
    while let Some(Request { ops, reply }) = requests.recv().await {
        let (writes, applied) = (Arc::clone(&writes), Arc::clone(&applied));
        in_flight.spawn(async move {
            let _ = reply.send(writes.apply(ops, &applied).await);
        });
        while in_flight.try_join_next().is_some() {}
    }
    // Requests sent before the store closed still get their answer.
    while in_flight.join_next().await.is_some() {}
    let _ = stop.send(true);
    let _ = following.await;
    // Revokes this gateway's lease, so the others count one fewer at once.
    if let Some(registered) = registered {
        let _ = registered.await;
    }
}

/// The pepper and every token, retried until `deadline`.
async fn start(
    writes: &Writes,
    deadline: Instant,
    progress: &LoadObserver,
) -> Result<(Pepper, follow::Snapshot), StoreError> {
    let mut backoff = conn::Backoff::new();
    loop {
        let attempt = async {
            let fresh = fingerprint::new_pepper()
                .map_err(|e| StoreError::Unavailable(format!("no randomness for a pepper: {e}")))?;
            let pepper = writes.agree_on_pepper(fresh, deadline).await?;
            let snapshot =
                follow::read_all(&writes.conn, &writes.layout, deadline, progress).await?;
            Ok::<_, StoreError>((pepper, snapshot))
        };
        match attempt.await {
            Ok(started) => return Ok(started),
            // A read whose revision was compacted meanwhile starts over.
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(%error, "token store not read from etcd yet; retrying");
                backoff.wait(Some(deadline)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Writes to etcd; shared by the requests in flight.
pub(crate) struct Writes {
    conn: Arc<Conn>,
    layout: Layout,
    /// What one create or delete may take, retries included.
    timeout: Duration,
}

/// What a write did and at which revision etcd committed it.
struct Outcome {
    changed: bool,
    revision: i64,
}

impl Writes {
    /// The pepper every gateway of the prefix uses: `candidate` if no gateway chose one before
    /// (a create-only transaction, so of two starting at once one wins), else the stored one.
    async fn agree_on_pepper(
        &self,
        candidate: Pepper,
        deadline: Instant,
    ) -> Result<Pepper, StoreError> {
        let key = self.layout.pepper_key();
        let value = keys::encode_pepper(&candidate);
        let created = self.create_only(&[(key.clone(), value)], deadline).await?;
        if created.succeeded() {
            tracing::info!(key = %key.escape_ascii(), "chose the token pepper for this etcd prefix");
            return Ok(candidate);
        }
        let stored = self.get(&key, deadline).await?;
        stored
            .as_ref()
            .and_then(|kv| keys::decode_pepper(kv.value()))
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "etcd key {} does not hold a token pepper (32 hex digits)",
                    key.escape_ascii()
                ))
            })
    }

    /// The key's value and revisions, `None` when it does not exist.
    async fn get(&self, key: &[u8], deadline: Instant) -> Result<Option<KeyValue>, StoreError> {
        let mut response = self
            .conn
            .call(deadline, |mut client| {
                let key = key.to_vec();
                async move { client.get(key, None).await }
            })
            .await?;
        Ok(response.take_kvs().into_iter().next())
    }

    /// Applies ops in etcd, then waits until this gateway's maps show them, so a client that
    /// was told "created" can use the token here at once.
    async fn apply(&self, ops: Vec<Op>, applied: &watch::Sender<i64>) -> Reply {
        let mut changed = vec![false; ops.len()];
        let mut puts = Vec::new();
        let mut revision = 0;
        for (index, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(name, fp) => puts.push((index, name, fp)),
                Op::Delete(name) => {
                    let outcome = self.delete(&name).await?;
                    changed[index] = outcome.changed;
                    revision = revision.max(outcome.revision);
                }
            }
        }
        let created = keys::now_ms();
        for chunk in puts.chunks(TXN_PUTS) {
            let tokens: Vec<(&str, &Fingerprint)> =
                chunk.iter().map(|(_, name, fp)| (&**name, fp)).collect();
            let outcomes = self.put_many(&tokens, created).await?;
            for ((index, _, _), outcome) in chunk.iter().zip(outcomes) {
                changed[*index] = outcome.changed;
                revision = revision.max(outcome.revision);
            }
        }
        if revision > 0 {
            let mut seen = applied.subscribe();
            let caught_up = seen.wait_for(|&applied| applied >= revision);
            if tokio::time::timeout(self.timeout, caught_up).await.is_err() {
                tracing::warn!(
                    revision,
                    "etcd committed a change this gateway has not seen yet"
                );
            }
        }
        Ok(changed)
    }

    /// One transaction that puts every entry only if none of their keys exists yet.
    async fn create_only(
        &self,
        entries: &[(Vec<u8>, Vec<u8>)],
        deadline: Instant,
    ) -> Result<TxnResponse, StoreError> {
        self.conn
            .call(deadline, |mut client| {
                let compares: Vec<Compare> = entries
                    .iter()
                    .map(|(key, _)| Compare::version(key.clone(), CompareOp::Equal, 0))
                    .collect();
                let puts: Vec<TxnOp> = entries
                    .iter()
                    .map(|(key, value)| TxnOp::put(key.clone(), value.clone(), None))
                    .collect();
                let txn = Txn::new().when(compares).and_then(puts);
                async move { client.txn(txn).await }
            })
            .await
    }

    /// Creates tokens that do not exist yet: one transaction for all when none exists (a bulk
    /// copy), else one at a time.
    async fn put_many(
        &self,
        tokens: &[(&str, &Fingerprint)],
        created: u64,
    ) -> Result<Vec<Outcome>, StoreError> {
        if let [(name, fp)] = tokens {
            return Ok(vec![self.create(name, fp, created).await?]);
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = tokens
            .iter()
            .map(|(name, fp)| (self.layout.token_key(name), keys::encode(name, fp, created)))
            .collect();
        let deadline = Instant::now() + self.timeout;
        let response = self.create_only(&entries, deadline).await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(tokens
                .iter()
                .map(|_| Outcome {
                    changed: true,
                    revision,
                })
                .collect());
        }
        let mut outcomes = Vec::with_capacity(tokens.len());
        for (name, fp) in tokens {
            outcomes.push(self.create(name, fp, created).await?);
        }
        Ok(outcomes)
    }

    /// A create-only transaction. An attempt whose answer was lost is repeated with the same
    /// value, so finding exactly that value stored means the earlier attempt committed.
    async fn create(
        &self,
        name: &str,
        fp: &Fingerprint,
        created: u64,
    ) -> Result<Outcome, StoreError> {
        let key = self.layout.token_key(name);
        let value = keys::encode(name, fp, created);
        let deadline = Instant::now() + self.timeout;
        let response = self
            .create_only(&[(key.clone(), value.clone())], deadline)
            .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(Outcome {
                changed: true,
                revision,
            });
        }
        let stored = self.get(&key, deadline).await?;
        Ok(match stored {
            Some(kv) if kv.value() == value.as_slice() => Outcome {
                changed: true,
                revision: kv.mod_revision(),
            },
            _ => Outcome {
                changed: false,
                revision: 0,
            },
        })
    }

    /// Deletes a token's key. After an attempt whose answer was lost, finding nothing means that
    /// attempt did it: the caller saw the token before asking.
    async fn delete(&self, name: &str) -> Result<Outcome, StoreError> {
        let key = self.layout.token_key(name);
        let deadline = Instant::now() + self.timeout;
        let mut attempts = 0u32;
        let response = self
            .conn
            .call(deadline, |mut client| {
                attempts += 1;
                let key = key.clone();
                async move { client.delete(key, None).await }
            })
            .await?;
        let changed = response.deleted() > 0 || attempts > 1;
        // Nothing deleted, nothing for the watch to bring.
        let revision = match response.header() {
            Some(header) if response.deleted() > 0 => header.revision(),
            _ => 0,
        };
        Ok(Outcome { changed, revision })
    }
}
