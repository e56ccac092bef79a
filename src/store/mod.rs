//! The durable token store: in-memory maps of token fingerprints and names, made durable by a
//! backend (see [`backend`]): an append-only journal with group commit, or etcd shared by several
//! gateways.
//!
//! The store never holds a token value, only its peppered fingerprint (see
//! [`fingerprint`]), so neither the journal nor a memory dump gives a token away.

mod backend;
#[cfg(feature = "etcd")]
pub mod etcd;
mod fingerprint;
mod journal;
mod loading;
#[doc(hidden)]
pub use journal::{replay_bytes as replay_journal, write_bytes as write_journal};
pub use loading::{LoadObserver, Loading, Source as LoadSource};
pub use replicas::Replicas;
mod maps;
mod replicas;
pub mod version;
mod worker;
mod writer;

#[cfg(test)]
mod safety_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod value_tests;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::{StoreBackend, StoreConfig};
use crate::identity::token;
use crate::identity::AccountId;
use backend::Backend;
use fingerprint::Pepper;
use maps::Maps;
use worker::Worker;
use writer::{Op, WriterInit};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("token [{0}] already exists")]
    Conflict(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt journal at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("token store is shut down")]
    Closed,
    #[error("{path}: the data directory is in use by another tokengate process")]
    Locked { path: PathBuf },
    /// Changes queued faster than the backend makes them durable, for longer than a caller
    /// waits; nothing was acknowledged.
    #[error("the token store is not keeping up with changes; retry later")]
    Busy,
    /// The shared store could not be reached or refused the change; nothing was acknowledged.
    #[error("{0}")]
    Unavailable(String),
}

/// Tuning of the journal writer.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The journal is never compacted below this size.
    pub compact_min_bytes: u64,
    /// Most requests committed with one fsync.
    pub max_batch: usize,
    /// Told how long each batch's fsync took and how many requests it made durable.
    pub on_sync: Option<SyncObserver>,
    /// Whether the store serves a gateway, which the other gateways on etcd then count when they
    /// divide an account's limits; a command that opens the store for a moment is no gateway.
    pub serving: bool,
    /// Told how far opening the store got; without it, a line in the main log every few
    /// seconds.
    pub on_load: Option<LoadObserver>,
}

/// Receives `(fsync duration, requests in the batch)` after each durable batch, on the
/// writer's thread: it must be quick.
#[derive(Clone)]
pub struct SyncObserver(pub Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>);

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncObserver")
    }
}

impl StoreOptions {
    /// Below 4 MiB a rewrite is not worth its fsyncs, whatever the share of dead records.
    pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 4 << 20;
    /// Enough to absorb a burst of concurrent creates in one fsync while keeping one batch's
    /// write (about 70 bytes a token) well under a megabyte.
    pub const DEFAULT_MAX_BATCH: usize = 1024;
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compact_min_bytes: Self::DEFAULT_COMPACT_MIN_BYTES,
            max_batch: Self::DEFAULT_MAX_BATCH,
            on_sync: None,
            serving: true,
            on_load: None,
        }
    }
}

/// State shared between handles and the writer thread. Only the writer
/// mutates `maps`; callers only read them.
pub(crate) struct Shared {
    maps: Maps,
    /// Mixed into every fingerprint; read from the journal header, fixed for
    /// the journal's lifetime (compaction copies it).
    pepper: Pepper,
    /// Names with a create in flight, so that two concurrent creates of one
    /// name cannot both pass the existence check.
    in_flight: DashMap<Box<str>, ()>,
    #[cfg(test)]
    syncs: std::sync::atomic::AtomicU64,
    #[cfg(test)]
    sent: std::sync::atomic::AtomicUsize,
    /// Held by tests to stall the writer while requests queue up.
    #[cfg(test)]
    pause: tokio::sync::Mutex<()>,
}

impl Shared {
    pub(crate) fn new(maps: Maps, pepper: Pepper) -> Shared {
        Shared {
            maps,
            pepper,
            in_flight: DashMap::new(),
            #[cfg(test)]
            syncs: Default::default(),
            #[cfg(test)]
            sent: Default::default(),
            #[cfg(test)]
            pause: Default::default(),
        }
    }
}

/// Handle to the token store; clones share one store.
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Names the store in messages: the journal's path, or etcd and the key prefix.
    path: PathBuf,
    backend: Backend,
}

/// Locks the data directory itself, refusing when another process holds it. A lock file can be
/// deleted while the gateway runs, which lets a second one share the journal; removing the
/// directory instead takes the journal with it, and the writer then refuses every write.
fn lock_dir(dir: &Path) -> Result<fs::File, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let handle = fs::File::open(dir).map_err(io)?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// Whether a running gateway holds `dir` now. The lock is the truth a pid file cannot be: it
/// goes away with the process, however that ends.
pub fn in_use(dir: &Path) -> Result<bool, StoreError> {
    match lock_dir(dir) {
        Ok(_released_on_drop) => Ok(false),
        Err(StoreError::Locked { .. }) => Ok(true),
        // No directory, no gateway on it.
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

impl TokenStore {
    /// Whether `other` is this very instance (a reload shares it, never reopens it).
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Opens the store `config` names: the journal under `dir`, or etcd.
    pub fn open_configured(
        config: &StoreConfig,
        dir: &Path,
        options: StoreOptions,
    ) -> Result<TokenStore, StoreError> {
        match config.backend {
            StoreBackend::Journal => Self::open(dir, options),
            #[cfg(feature = "etcd")]
            StoreBackend::Etcd => {
                // The data directory still holds the users, the pid file and the audit log: one
                // gateway per directory, as with the journal.
                crate::atomic_file::create_private_dir(dir).map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let lock = lock_dir(dir)?;
                let progress = LoadObserver::or_log(options.on_load.as_ref());
                let (shared, etcd) = etcd::open(&config.etcd, lock, options.serving, progress)?;
                let path = PathBuf::from(format!("etcd {}", config.etcd.prefix));
                Ok(TokenStore {
                    inner: Arc::new(Inner {
                        shared,
                        path,
                        backend: Backend::Etcd(etcd),
                    }),
                })
            }
            // The configuration refuses etcd in a build without it; this is a second guard.
            #[cfg(not(feature = "etcd"))]
            StoreBackend::Etcd => Err(StoreError::Unavailable(
                "this build has no etcd support".to_owned(),
            )),
        }
    }

    /// Opens (creating the dir if needed) `<dir>/tokens.journal`, replays it
    /// into memory, starts the writer thread.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<TokenStore, StoreError> {
        crate::atomic_file::create_private_dir(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let started = Instant::now();
        let replayed = journal::open(dir, &LoadObserver::or_log(options.on_load.as_ref()))?;
        let path = dir.join(journal::JOURNAL_FILE);
        tracing::info!(
            file = %path.display(),
            tokens = replayed.maps.len(),
            bytes = replayed.file_len,
            took_ms = started.elapsed().as_millis(),
            "token store opened"
        );
        let shared = Arc::new(Shared::new(replayed.maps, replayed.pepper));
        let (tx, rx) = worker::queue();
        let init = WriterInit {
            dir: dir.to_path_buf(),
            file: replayed.file,
            file_id: replayed.file_id,
            file_len: replayed.file_len,
            live_bytes: replayed.live_bytes,
            shared: Arc::clone(&shared),
            rx,
            options,
        };
        let thread = writer::spawn(init).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let journal = backend::Journal {
            worker: Worker::new(tx, thread),
            path: path.clone(),
            lock: Mutex::new(Some(lock)),
        };
        let inner = Inner {
            shared,
            path,
            backend: Backend::Journal(journal),
        };
        Ok(TokenStore {
            inner: Arc::new(inner),
        })
    }

    /// Hot path: is `value` (a bearer value as sent) a stored token? One
    /// SHA-256 and one map lookup, with no decoding and no allocation, and the
    /// same work for an unknown name as for a wrong secret, so timing does not
    /// tell whether a name exists. Anything that is not a token simply fails.
    pub fn verify_value(&self, value: &[u8]) -> bool {
        let shared = &self.inner.shared;
        fingerprint::of(&shared.pepper, value).is_some_and(|fp| shared.maps.verify(&fp))
    }

    /// Names claimed by changes under way now (a create or import between its claim and its
    /// answer).
    pub fn claims_in_flight(&self) -> usize {
        self.inner.shared.in_flight.len()
    }

    pub fn contains(&self, qualified: &str) -> bool {
        self.inner.shared.maps.contains_name(qualified)
    }

    /// Durably adds token `qualified` whose full value (as it will be handed
    /// to the client) is `value`; resolves only after the record is fsynced.
    pub async fn create(&self, qualified: &str, value: &str) -> Result<(), StoreError> {
        self.check_name(qualified)?;
        let fp = self.fingerprint(value)?;
        let shared = &self.inner.shared;
        let mut claim = Claim::new(&shared.in_flight);
        // Claim first, then check the maps: the writer publishes to the maps
        // before the claim is released, so one of the two always sees the other.
        if !claim.take(qualified) || shared.maps.contains_name(qualified) {
            return Err(StoreError::Conflict(qualified.to_owned()));
        }
        let applied = self.submit(vec![Op::Put(Box::from(qualified), fp)]).await?;
        match applied.first() {
            Some(true) => Ok(()),
            _ => Err(StoreError::Conflict(qualified.to_owned())),
        }
    }

    /// Durably adds many `(qualified name, value)` tokens in one batch; names
    /// that already exist (or repeat within `tokens`) are skipped and returned.
    pub async fn import(&self, tokens: Vec<(String, String)>) -> Result<Vec<String>, StoreError> {
        let mut fps = Vec::with_capacity(tokens.len());
        for (name, value) in &tokens {
            self.check_name(name)?;
            fps.push(self.fingerprint(value)?);
        }
        let shared = &self.inner.shared;
        let mut claim = Claim::new(&shared.in_flight);
        let mut skipped = Vec::new();
        let mut names = Vec::with_capacity(tokens.len());
        let mut ops = Vec::with_capacity(tokens.len());
        for ((name, _), fp) in tokens.into_iter().zip(fps) {
            if claim.take(&name) && !shared.maps.contains_name(&name) {
                ops.push(Op::Put(Box::from(name.as_str()), fp));
                names.push(name);
            } else {
                skipped.push(name);
            }
        }
        if ops.is_empty() {
            return Ok(skipped);
        }
        let applied = self.submit(ops).await?;
        let lost = names
            .into_iter()
            .zip(applied)
            .filter(|(_, changed)| !changed);
        skipped.extend(lost.map(|(name, _)| name));
        Ok(skipped)
    }

    /// Durably removes; `Ok(false)` when absent.
    pub async fn delete(&self, qualified: &str) -> Result<bool, StoreError> {
        if !self.contains(qualified) {
            return Ok(false);
        }
        let applied = self.submit(vec![Op::Delete(Box::from(qualified))]).await?;
        Ok(applied.first().copied().unwrap_or(false))
    }

    /// Token names of `account`, sorted.
    pub fn names_of(&self, account: &AccountId) -> Vec<String> {
        self.inner.shared.maps.names_of(account.as_str())
    }

    /// Every token's `namespace/service/name`, sorted, whatever its account: an operator
    /// looking at a data directory also sees tokens of accounts no longer configured.
    pub fn names(&self) -> Vec<String> {
        self.inner.shared.maps.names()
    }

    pub fn len(&self) -> usize {
        self.inner.shared.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.shared.maps.is_empty()
    }

    /// Stops the writer thread after it has flushed what it has (pending
    /// callers get their answer). Idempotent; also happens on drop of the last
    /// handle.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Tokens per account (`namespace/service`), counted in one pass over the names without
    /// copying them: for the status page.
    pub fn counts_by_account(&self) -> std::collections::HashMap<String, usize> {
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        let counted = self.inner.shared.maps.try_for_each(|name, _| {
            if let Some((account, _)) = name.rsplit_once('/') {
                match counts.get_mut(account) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(account.to_owned(), 1);
                    }
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = counted;
        counts
    }

    /// What names the store in messages: the journal's path, or etcd and the key prefix.
    pub fn location(&self) -> &Path {
        &self.inner.path
    }

    /// How long since the in-memory set was last known to be current; `None` for the journal,
    /// whose writer is the only source of changes.
    pub fn staleness(&self) -> Option<Duration> {
        self.inner.backend.staleness()
    }

    /// How many gateways share this store's accounts, this one included: 1 on the journal, the
    /// live gateways on etcd. Clones follow the count; reading it is one relaxed load.
    pub fn replicas(&self) -> Replicas {
        self.inner.backend.replicas()
    }

    async fn submit(&self, ops: Vec<Op>) -> Result<Vec<bool>, StoreError> {
        let queued = || {
            #[cfg(test)]
            self.inner
                .shared
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        };
        self.inner.backend.submit(ops, queued).await
    }

    fn check_name(&self, name: &str) -> Result<(), StoreError> {
        if name.len() <= journal::MAX_NAME_LEN {
            return Ok(());
        }
        self.invalid(format!(
            "token name longer than {} bytes",
            journal::MAX_NAME_LEN
        ))
    }

    /// Refuses a value the check would never accept, rather than storing a
    /// token that can never be used.
    fn fingerprint(&self, value: &str) -> Result<fingerprint::Fingerprint, StoreError> {
        match fingerprint::of(&self.inner.shared.pepper, value.as_bytes()) {
            Some(fp) => Ok(fp),
            None => self.invalid(format!(
                "token value longer than {} bytes",
                token::MAX_VALUE_LEN
            )),
        }
    }

    fn invalid<T>(&self, reason: String) -> Result<T, StoreError> {
        Err(StoreError::Io {
            path: self.inner.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        })
    }
}

impl Inner {
    fn close(&self) {
        self.backend.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// In-flight names claimed by one call, released when the call ends however
/// it ends (including cancellation).
struct Claim<'a> {
    set: &'a DashMap<Box<str>, ()>,
    names: Vec<Box<str>>,
}

impl<'a> Claim<'a> {
    fn new(set: &'a DashMap<Box<str>, ()>) -> Self {
        Claim {
            set,
            names: Vec::new(),
        }
    }

    /// False if another call holds `name`; that call's claim is left alone.
    fn take(&mut self, name: &str) -> bool {
        match self.set.entry(Box::from(name)) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(());
                self.names.push(Box::from(name));
                true
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            self.set.remove(name);
        }
    }
}
