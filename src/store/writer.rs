//! The group-commit writer thread: sole owner of the journal file and sole
//! mutator of the token maps.
//!
//! Each batch is written with one `write_all` and made durable with one
//! `sync_data` before it touches the maps, so they never hold a token whose
//! creation could still be lost, and concurrent callers share one fsync.
//!
//! Durable in the open file is not enough when that file is no longer the
//! journal (deleted or replaced while the gateway runs): the next start would
//! never read it. So before a batch is acknowledged the writer checks that the
//! path still names its file, and otherwise rewrites the journal from the maps.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tokio::sync::{mpsc, oneshot};

use super::fingerprint::{self, Fingerprint};
use super::journal::{self, put_record_len, FileId, HEADER_LEN};
use super::maps::Maps;
use super::{Shared, StoreError, StoreOptions};
use crate::atomic_file;

pub(crate) enum Op {
    Put(Box<str>, Fingerprint),
    Delete(Box<str>),
}

impl Op {
    fn name(&self) -> &str {
        match self {
            Op::Put(name, _) | Op::Delete(name) => name,
        }
    }
}

/// Per op: whether it changed anything (false = put of an existing name or
/// fingerprint, or delete of an absent name; such ops are not written).
pub(crate) type Reply = Result<Vec<bool>, StoreError>;

pub(crate) struct Request {
    pub ops: Vec<Op>,
    pub reply: oneshot::Sender<Reply>,
}

/// Everything the writer needs, taken from the replayed journal.
pub(crate) struct WriterInit {
    pub dir: PathBuf,
    pub file: File,
    /// Identity of `file`, kept current whenever the writer switches files.
    pub file_id: FileId,
    pub file_len: u64,
    pub live_bytes: u64,
    pub shared: Arc<Shared>,
    pub rx: mpsc::Receiver<Request>,
    pub options: StoreOptions,
}

struct Writer {
    init: WriterInit,
    path: PathBuf,
    /// Raised after a failed compaction so a persistent failure (e.g. a full
    /// disk) is not retried after every batch.
    compact_floor: u64,
    /// Set when a failed batch could not be rolled back: appending after
    /// leftover bytes would turn a torn tail into mid-file corruption.
    broken: Option<String>,
    /// Set when the directory fsync after a rename failed: until one succeeds,
    /// a power failure may bring back the file the rename replaced, without
    /// anything written since.
    dir_unsynced: bool,
    buf: Vec<u8>,
}

pub(crate) fn spawn(init: WriterInit) -> io::Result<JoinHandle<()>> {
    let path = init.dir.join(journal::JOURNAL_FILE);
    let writer = Writer {
        init,
        path,
        compact_floor: 0,
        broken: None,
        dir_unsynced: false,
        buf: Vec::new(),
    };
    thread::Builder::new()
        .name("tokengate-journal".into())
        .spawn(move || writer.run())
}

impl Writer {
    /// Runs until every sender is gone and the queue is drained, so requests
    /// sent before close still get their answer.
    fn run(mut self) {
        let max_batch = self.init.options.max_batch.max(1);
        let mut batch = Vec::new();
        while let Some(first) = self.init.rx.blocking_recv() {
            // Tests hold this lock to queue requests behind a stalled writer.
            #[cfg(test)]
            drop(self.init.shared.pause.blocking_lock());
            batch.push(first);
            while batch.len() < max_batch {
                match self.init.rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            self.maybe_compact();
        }
        // A journal removed after the last batch would otherwise take every
        // token with it at the next start.
        if let Some(what) = self.displaced() {
            if let Err(e) = self.rewrite(&what) {
                tracing::error!(file = %self.path.display(), error = %e, "token journal was {what} and could not be rewritten at shutdown; its tokens are lost at the next start");
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Request>) {
        if let Some(reason) = &self.broken {
            let reason = format!("journal unusable after a failed rollback: {reason}");
            self.fail_all(batch, io::ErrorKind::Other, &reason);
            return;
        }
        self.buf.clear();
        let outcomes = plan(batch, &self.init.shared.maps, &mut self.buf);
        if !self.buf.is_empty() {
            let started = std::time::Instant::now();
            if let Err(e) = self.make_durable() {
                self.rollback();
                self.fail_all(batch, e.kind(), &e.to_string());
                return;
            }
            self.init.file_len += self.buf.len() as u64;
            if let Some(observer) = &self.init.options.on_sync {
                (observer.0)(started.elapsed(), batch.len());
            }
        }
        self.apply(batch, outcomes);
    }

    /// Writes the batch so that the next start reads it: synced, in the file
    /// the journal path names, under a directory entry that is itself synced.
    /// One `metadata` call per batch checks the path.
    fn make_durable(&mut self) -> io::Result<()> {
        self.write_buf().inspect_err(|e| {
            tracing::error!(file = %self.path.display(), error = %e, "token journal write failed; batch rejected");
        })?;
        if self.dir_unsynced {
            self.sync_dir().inspect_err(|e| {
                tracing::error!(dir = %self.init.dir.display(), error = %e, "fsync of data directory failed again; batch rejected");
            })?;
        }
        let Some(what) = self.displaced() else {
            return Ok(());
        };
        // The batch went into a file no start will read. The maps hold every
        // acknowledged token, so a journal written from them and followed by
        // this batch is complete.
        self.rewrite(&what).inspect_err(|e| {
            tracing::error!(file = %self.path.display(), error = %e, "token journal was {what} and could not be rewritten from memory; batch rejected");
        })?;
        self.write_buf().inspect_err(|e| {
            tracing::error!(file = %self.path.display(), error = %e, "write to the rewritten token journal failed; batch rejected");
        })
    }

    /// Appends the batch at the end of the open file and syncs it.
    fn write_buf(&mut self) -> io::Result<()> {
        self.init.file.write_all(&self.buf)?;
        self.init.file.sync_data()?;
        #[cfg(test)]
        self.init
            .shared
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// `None` while the journal path still names the open file; otherwise what
    /// became of it. An unlinked file can never match (its inode stays taken
    /// while it is open), so one `stat` of the path covers removal and
    /// replacement alike.
    fn displaced(&self) -> Option<String> {
        match fs::metadata(&self.path) {
            Ok(meta) if FileId::of(&meta) == self.init.file_id => None,
            Ok(_) => Some("replaced by another file".to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("removed".to_owned()),
            Err(e) => Some(format!("unreachable ({e})")),
        }
    }

    /// Writes the journal afresh from the maps and makes it the open file.
    /// `what` says what became of the previous one, for the log.
    fn rewrite(&mut self, what: &str) -> io::Result<()> {
        let shared = &self.init.shared;
        let fresh = journal::compact(&self.init.dir, &shared.pepper, &shared.maps)
            .map_err(|(path, e)| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.adopt(fresh);
        self.sync_dir()?;
        tracing::warn!(
            file = %self.path.display(),
            tokens = self.init.shared.maps.len(),
            "token journal was {what} while the gateway was running; rewrote it from memory"
        );
        Ok(())
    }

    /// Switches to a journal that `journal::compact` just renamed into place.
    fn adopt(&mut self, fresh: journal::Rewritten) {
        self.init.file = fresh.file;
        self.init.file_id = fresh.file_id;
        self.init.file_len = fresh.len;
    }

    /// Makes the last rename durable; remembers a failure so that no batch is
    /// acknowledged before a later attempt succeeds.
    fn sync_dir(&mut self) -> io::Result<()> {
        let synced = atomic_file::sync_dir(&self.init.dir);
        self.dir_unsynced = synced.is_err();
        synced
    }

    /// Cuts the file back to its length before the failed batch. The handle is
    /// in append mode, so the next batch lands right after the good data.
    fn rollback(&mut self) {
        let file = &self.init.file;
        if let Err(e) = file
            .set_len(self.init.file_len)
            .and_then(|()| file.sync_all())
        {
            tracing::error!(file = %self.path.display(), error = %e, "rollback of failed journal write failed; store is now read-only");
            self.broken = Some(e.to_string());
        }
    }

    fn fail_all(&self, batch: &mut Vec<Request>, kind: io::ErrorKind, reason: &str) {
        for request in batch.drain(..) {
            let source = io::Error::new(kind, reason.to_owned());
            let _ = request.reply.send(Err(StoreError::Io {
                path: self.path.clone(),
                source,
            }));
        }
    }

    /// Publishes a durable batch to the maps, then answers its callers.
    fn apply(&mut self, batch: &mut Vec<Request>, outcomes: Vec<Vec<bool>>) {
        let maps = &self.init.shared.maps;
        for (Request { ops, reply }, applied) in batch.drain(..).zip(outcomes) {
            for (op, _) in ops
                .into_iter()
                .zip(&applied)
                .filter(|(_, &changed)| changed)
            {
                match op {
                    Op::Put(name, fp) => {
                        self.init.live_bytes += put_record_len(name.len());
                        // `plan` admitted this put only with its name and key both free.
                        if maps.insert(name, &fp).is_err() {
                            tracing::error!(file = %self.path.display(), "token fingerprint collided after planning");
                        }
                    }
                    Op::Delete(name) => {
                        if maps.remove(&name) {
                            let len = put_record_len(name.len());
                            self.init.live_bytes = self.init.live_bytes.saturating_sub(len);
                        }
                    }
                }
            }
            let _ = reply.send(Ok(applied));
        }
    }

    fn maybe_compact(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let live = HEADER_LEN + self.init.live_bytes;
        let threshold = (self.init.options.compact_min_bytes)
            .max(live.saturating_mul(2))
            .max(self.compact_floor);
        if self.init.file_len <= threshold {
            return;
        }
        let before = self.init.file_len;
        let shared = &self.init.shared;
        match journal::compact(&self.init.dir, &shared.pepper, &shared.maps) {
            Ok(fresh) => {
                tracing::info!(file = %self.path.display(), before, after = fresh.len, "compacted token journal");
                self.adopt(fresh);
                self.compact_floor = 0;
                // Losing this rename to a power failure would bring back the
                // old journal, complete up to now; the next batch retries the
                // sync before it is acknowledged.
                if let Err(e) = self.sync_dir() {
                    tracing::error!(dir = %self.init.dir.display(), error = %e, "fsync of directory after compaction failed");
                }
            }
            Err((path, e)) => {
                tracing::error!(file = %path.display(), error = %e, "token journal compaction failed; continuing with the old journal");
                self.compact_floor = before.saturating_add(before / 2);
            }
        }
    }
}

/// What the ops planned so far in a batch did, on top of the maps.
#[derive(Default)]
struct Overlay<'a> {
    /// Name -> its key if present, `None` if absent.
    names: HashMap<&'a str, Option<u64>>,
    /// Key -> whether held.
    keys: HashMap<u64, bool>,
}

impl Overlay<'_> {
    fn key_of(&self, maps: &Maps, name: &str) -> Option<u64> {
        match self.names.get(name) {
            Some(&key) => key,
            None => maps.key_of(name),
        }
    }

    fn key_held(&self, maps: &Maps, key: u64) -> bool {
        match self.keys.get(&key) {
            Some(&held) => held,
            None => maps.contains_key(key),
        }
    }
}

/// Decides each op against the maps plus the earlier ops of this batch and
/// encodes the ones that change something.
fn plan(batch: &[Request], maps: &Maps, buf: &mut Vec<u8>) -> Vec<Vec<bool>> {
    let mut overlay = Overlay::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let mut applied = Vec::with_capacity(request.ops.len());
        for op in &request.ops {
            let name = op.name();
            let current = overlay.key_of(maps, name);
            let changed = match op {
                // Re-checked here, not only by the caller: a caller whose
                // future was dropped releases its in-flight claim early. A
                // held key means the value is already stored under another
                // name (only a crafted import can do that, as a value embeds
                // its name); one value is one token.
                Op::Put(_, fp) if current.is_none() => {
                    let (key, _) = fingerprint::split(fp);
                    let free = !overlay.key_held(maps, key);
                    if free {
                        journal::encode_put(buf, name, fp);
                        overlay.names.insert(name, Some(key));
                        overlay.keys.insert(key, true);
                    }
                    free
                }
                Op::Delete(_) => match current {
                    Some(key) => {
                        journal::encode_delete(buf, name);
                        overlay.names.insert(name, None);
                        overlay.keys.insert(key, false);
                        true
                    }
                    None => false,
                },
                Op::Put(..) => false,
            };
            applied.push(changed);
        }
        outcomes.push(applied);
    }
    outcomes
}
