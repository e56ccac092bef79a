//! `tokengate tokens migrate --to etcd`: copies a journal's tokens, and its pepper, to etcd.
//!
//! The pepper goes first and decides: every fingerprint was made with the journal's, so a prefix
//! that already holds another would make the copied tokens unusable; it is refused. A prefix
//! with the same pepper is the same store, so a copy that stopped halfway can be run again:
//! tokens already there are skipped.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::Conn;
use super::keys::Layout;
use super::{Writes, TXN_PUTS};
use crate::config::EtcdConfig;
use crate::store::fingerprint::Fingerprint;
use crate::store::{LoadObserver, StoreError, StoreOptions, TokenStore};

/// What a migration did.
#[derive(Debug, Default)]
pub struct Migrated {
    pub copied: usize,
    /// Already in etcd with the same value.
    pub present: usize,
    /// Names etcd holds with another value; left as they are.
    pub conflicts: Vec<String>,
}

/// Copies the journal under `dir` (no gateway may hold it) to the etcd `config` names.
/// `reading` hears how far the journal's replay got; `copied(done, total)` hears of every chunk
/// done: tokens in it, tokens in all.
pub fn migrate(
    dir: &Path,
    config: &EtcdConfig,
    reading: LoadObserver,
    copied: &mut dyn FnMut(usize, usize),
) -> Result<Migrated, StoreError> {
    let options = StoreOptions {
        on_load: Some(reading),
        ..StoreOptions::default()
    };
    let store = TokenStore::open(dir, options)?;
    let shared = Arc::clone(&store.inner.shared);
    store.close();
    let mut tokens: Vec<(Box<str>, Fingerprint)> = Vec::with_capacity(shared.maps.len());
    shared
        .maps
        .try_for_each(|name, fp| {
            tokens.push((Box::from(name), *fp));
            Ok::<(), ()>(())
        })
        .ok();
    let writes = Writes {
        conn: Arc::new(Conn::new(config)?),
        layout: Layout::new(&config.prefix),
        timeout: config.request_timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Unavailable(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let deadline = Instant::now() + config.start_timeout;
        let pepper = writes.agree_on_pepper(shared.pepper, deadline).await?;
        if pepper != shared.pepper {
            return Err(StoreError::Unavailable(format!(
                "etcd prefix {} already holds another pepper: its tokens are another store's; \
                 choose an empty prefix",
                config.prefix
            )));
        }
        let created = super::keys::now_ms();
        let writes = Arc::new(writes);
        let mut migrated = Migrated::default();
        let mut copies = JoinSet::new();
        let mut chunks = tokens.chunks(TXN_PUTS).map(<[_]>::to_vec);
        loop {
            while copies.len() < PARALLEL_COPIES {
                let Some(chunk) = chunks.next() else { break };
                let writes = Arc::clone(&writes);
                copies.spawn(async move { copy(&writes, chunk, created, deadline).await });
            }
            let Some(done) = copies.join_next().await else {
                break;
            };
            let done = done.map_err(|e| StoreError::Unavailable(format!("copy task: {e}")))??;
            copied(
                done.copied + done.present + done.conflicts.len(),
                tokens.len(),
            );
            migrated.copied += done.copied;
            migrated.present += done.present;
            migrated.conflicts.extend(done.conflicts);
        }
        migrated.conflicts.sort_unstable();
        Ok(migrated)
    })
}

/// Transactions in flight at once: each waits mostly for etcd's commit (an fsync on a quorum),
/// so a few at a time make the copy several times faster without loading etcd much.
const PARALLEL_COPIES: usize = 8;

/// Copies one chunk, telling copied tokens from ones already there and from conflicts.
async fn copy(
    writes: &Writes,
    chunk: Vec<(Box<str>, Fingerprint)>,
    created: u64,
    deadline: Instant,
) -> Result<Migrated, StoreError> {
    let batch: Vec<(&str, &Fingerprint)> = chunk.iter().map(|(name, fp)| (&**name, fp)).collect();
    let outcomes = writes.put_many(&batch, created).await?;
    let mut migrated = Migrated::default();
    for ((name, fp), outcome) in chunk.iter().zip(outcomes) {
        if outcome.changed {
            migrated.copied += 1;
        } else if writes.holds(name, fp, deadline).await? {
            migrated.present += 1;
        } else {
            migrated.conflicts.push(name.to_string());
        }
    }
    Ok(migrated)
}

impl Writes {
    /// Whether etcd holds token `name` with fingerprint `fp`.
    async fn holds(
        &self,
        name: &str,
        fp: &Fingerprint,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let stored = self.get(&self.layout.token_key(name), deadline).await?;
        Ok(stored
            .and_then(|kv| super::keys::decode(kv.value()))
            .as_ref()
            == Some(fp))
    }
}
