//! The seam between the in-memory token set and what makes a change durable.
//!
//! Checking a token never crosses it: every backend applies its changes to the same
//! [`Maps`](super::maps::Maps), and the per-request check reads only those. A backend answers
//! for two things: that a change acknowledged to a caller survives (journal fsync, etcd commit),
//! and that every change, whoever made it, reaches the maps.

use std::fs;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::replicas::Replicas;
use super::worker::Worker;
use super::writer::{Op, Reply, Request};

/// Where changes go. Both hand ops to a thread of their own and await its answer, so a request
/// handler never blocks on a disk or a network.
pub(crate) enum Backend {
    Journal(Journal),
    #[cfg(feature = "etcd")]
    Etcd(super::etcd::Etcd),
}

impl Backend {
    /// Per op, whether it changed anything: `false` for a put of a name that exists, or a delete
    /// of one that does not.
    /// `queued` runs once the ops are handed to the backend's thread.
    pub async fn submit(&self, ops: Vec<Op>, queued: impl FnOnce()) -> Reply {
        match self {
            Backend::Journal(journal) => {
                journal
                    .worker
                    .call(|reply| Request { ops, reply }, queued)
                    .await
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => etcd.submit(ops, queued).await,
        }
    }

    /// How long since the maps were last known to hold every change; `None` when they always
    /// do (the journal is their only writer).
    pub fn staleness(&self) -> Option<Duration> {
        match self {
            Backend::Journal(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => Some(etcd.staleness()),
        }
    }

    /// How many gateways share the accounts: one alone on a journal, the live ones on etcd.
    pub fn replicas(&self) -> Replicas {
        match self {
            Backend::Journal(_) => Replicas::single(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => etcd.replicas(),
        }
    }

    /// Lets queued callers have their answer, then stops the backend's thread. Idempotent.
    pub fn close(&self) {
        match self {
            Backend::Journal(journal) => journal.close(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => etcd.close(),
        }
    }
}

/// The local journal: the group-commit writer thread and the data directory's lock.
pub(crate) struct Journal {
    pub worker: Worker<Request>,
    pub path: std::path::PathBuf,
    /// Holds an exclusive lock on the data directory for the store's lifetime: two writers
    /// appending to one journal would corrupt it. Released by `close`, after the writer has
    /// finished, so the directory can be reopened.
    pub lock: Mutex<Option<fs::File>>,
}

impl Journal {
    fn close(&self) {
        // Joining ensures the file is released before a reopen of the same dir.
        if !self.worker.stop() {
            tracing::error!(file = %self.path.display(), "token journal writer thread panicked");
        }
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}
