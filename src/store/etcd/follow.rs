//! Keeps the in-memory maps equal to etcd: a full read in bounded ranges at one revision, then a
//! watch from the revision after it. A watch that breaks resumes where it stopped, at whichever
//! member answers; one whose history was compacted meanwhile reads everything again and applies
//! the difference, since tokens missing from the new read were revoked during the gap.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::{self, Backoff, Conn};
use super::keys::{self, Layout, BUCKETS};
use crate::store::fingerprint::Fingerprint;
use crate::store::loading::{LoadObserver, Loading, Source};
use crate::store::maps::Maps;
use crate::store::{Shared, StoreError};

/// Keys per page within one bucket: a page stays well under gRPC's 4 MiB message limit.
const PAGE: i64 = 10_000;
/// Buckets read at once, so etcd serves the next while this side parses the last.
const PARALLEL_READS: usize = 4;
/// How often the watch is asked to prove it is current.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A watch silent for this long (no events, no progress answer) is given up for another member.
const SILENT_LIMIT: Duration = Duration::from_secs(3);

/// Every token at one revision.
pub(crate) struct Snapshot {
    pub tokens: Vec<(Box<str>, Fingerprint)>,
    pub revision: i64,
}

/// When the maps were last known to be current.
pub(crate) struct Freshness {
    start: std::time::Instant,
    /// Milliseconds after `start`.
    synced_ms: AtomicU64,
}

impl Freshness {
    pub fn new() -> Freshness {
        Freshness {
            start: std::time::Instant::now(),
            synced_ms: AtomicU64::new(0),
        }
    }

    fn synced(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.synced_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn staleness(&self) -> Duration {
        let since = Duration::from_millis(self.synced_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(since)
    }
}

/// Reads every token at one revision, bucket by bucket, retrying until `deadline`; `progress`
/// hears of each bucket read.
pub(crate) async fn read_all(
    conn: &Arc<Conn>,
    layout: &Layout,
    deadline: Instant,
    progress: &LoadObserver,
) -> Result<Snapshot, StoreError> {
    // The first bucket fixes the revision the others are read at.
    let (first, revision) = read_bucket(conn, layout, 0, None, deadline).await?;
    let mut read = Loading {
        source: Source::Etcd,
        tokens: first.len() as u64,
        done: 1,
        total: BUCKETS as u64,
    };
    progress.tell(&read);
    let mut buckets: Vec<Vec<(Box<str>, Fingerprint)>> = vec![Vec::new(); BUCKETS];
    buckets[0] = first;
    let mut reads = JoinSet::new();
    let mut next = 1usize;
    loop {
        while reads.len() < PARALLEL_READS && next < BUCKETS {
            let (conn, layout) = (Arc::clone(conn), layout.clone());
            let index = u8::try_from(next).unwrap_or(u8::MAX);
            reads.spawn(async move {
                let read = read_bucket(&conn, &layout, index, Some(revision), deadline).await;
                (index, read)
            });
            next += 1;
        }
        let Some(done) = reads.join_next().await else {
            break;
        };
        let (index, bucket) =
            done.map_err(|e| StoreError::Unavailable(format!("etcd read: {e}")))?;
        let bucket = bucket?.0;
        read.tokens += bucket.len() as u64;
        read.done += 1;
        progress.tell(&read);
        buckets[usize::from(index)] = bucket;
    }
    let tokens = buckets.into_iter().flatten().collect();
    Ok(Snapshot { tokens, revision })
}

/// One bucket, page by page, at `revision` (or the current one, which is returned).
async fn read_bucket(
    conn: &Conn,
    layout: &Layout,
    index: u8,
    revision: Option<i64>,
    deadline: Instant,
) -> Result<(Vec<(Box<str>, Fingerprint)>, i64), StoreError> {
    let (mut from, end) = layout.bucket(index);
    let mut revision = revision;
    let mut tokens = Vec::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let key = from.clone();
        let page = conn
            .call(deadline, |mut client| {
                let (key, options) = (key.clone(), options.clone());
                async move { client.get(key, Some(options)).await }
            })
            .await?;
        let at = page.header().map_or(0, |h| h.revision());
        let revision = *revision.get_or_insert(at);
        for kv in page.kvs() {
            match (layout.name_of(kv.key()), keys::decode(kv.value())) {
                (Some(name), Some(fp)) => tokens.push((Box::from(name), fp)),
                _ => {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "etcd key under the token prefix is not a token; ignored")
                }
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((tokens, revision)),
        }
    }
}

/// Builds maps from a first read.
pub(crate) fn maps_of(snapshot: Snapshot) -> Maps {
    let maps = Maps::with_capacity(snapshot.tokens.len());
    for (name, fp) in snapshot.tokens {
        insert(&maps, name, &fp);
    }
    maps
}

fn insert(maps: &Maps, name: Box<str>, fp: &Fingerprint) {
    if maps.insert(name, fp).is_err() {
        // Two values with one 64-bit key: only a crafted import can do that.
        tracing::error!("two tokens in etcd share a fingerprint key; the later one wins");
    }
}

/// Makes the maps equal to a fresh read: what it lacks was deleted during the gap.
fn apply_snapshot(maps: &Maps, snapshot: Snapshot) {
    let present: HashSet<&str> = snapshot.tokens.iter().map(|(name, _)| &**name).collect();
    let mut removed = 0usize;
    for name in maps.names() {
        if !present.contains(name.as_str()) && maps.remove(&name) {
            removed += 1;
        }
    }
    drop(present);
    let before = maps.len();
    for (name, fp) in snapshot.tokens {
        insert(maps, name, &fp);
    }
    tracing::info!(
        revision = snapshot.revision,
        removed,
        added = maps.len().saturating_sub(before),
        "token set read again from etcd after its history was compacted"
    );
}

/// The watch side: applies every change to the maps and publishes how far it got.
pub(crate) struct Follower {
    pub conn: Arc<Conn>,
    pub layout: Layout,
    pub shared: Arc<Shared>,
    /// The revision up to which every change is in the maps.
    pub applied: Arc<watch::Sender<i64>>,
    pub freshness: Arc<Freshness>,
}

/// How one watch stream ended.
enum Ended {
    /// Resume at the next revision, elsewhere if the member failed.
    Broken,
    /// The next revision is gone from etcd's history.
    Compacted,
}

impl Follower {
    /// Runs until `shutdown` flips, whatever it is waiting for then.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            let step = async {
                if let Ended::Compacted = Box::pin(self.watch_once(&mut backoff)).await {
                    self.reload().await;
                }
                backoff.wait(None).await;
            };
            tokio::select! {
                () = step => {}
                _ = shutdown.wait_for(|&stop| stop) => return,
            }
        }
    }

    async fn reload(&self) {
        // No deadline of its own: the gateway serves from memory meanwhile.
        let deadline = Instant::now() + Duration::from_secs(3600);
        // A million tokens take seconds to read again: the main log says how far it got.
        let progress = LoadObserver::or_log(None);
        match read_all(&self.conn, &self.layout, deadline, &progress).await {
            Ok(snapshot) => {
                let revision = snapshot.revision;
                apply_snapshot(&self.shared.maps, snapshot);
                self.advance(revision);
            }
            Err(error) => tracing::warn!(%error, "reading the token set again failed; retrying"),
        }
    }

    fn advance(&self, revision: i64) {
        self.applied.send_if_modified(|applied| {
            let newer = revision > *applied;
            if newer {
                *applied = revision;
            }
            newer
        });
        self.freshness.synced();
    }

    async fn watch_once(&self, backoff: &mut Backoff) -> Ended {
        let (index, client) = match self.conn.watch_client().await {
            Ok(pair) => pair,
            Err((index, error)) => {
                self.conn.failed(index, &error).await;
                return Ended::Broken;
            }
        };
        let start = *self.applied.borrow() + 1;
        let tokens = self.layout.tokens();
        let options = WatchOptions::new()
            .with_range(keys::range_end(&tokens))
            .with_start_revision(start);
        let mut watch_client = client.watch_client();
        let opened = tokio::time::timeout(
            conn::ATTEMPT_TIMEOUT,
            watch_client.watch(tokens, Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                self.conn.failed(index, &error).await;
                return Ended::Broken;
            }
            Err(_) => {
                self.conn.failed(index, &"watch not opened in time").await;
                return Ended::Broken;
            }
        };
        self.follow(index, &mut stream, backoff).await
    }

    /// Applies what the stream sends until it breaks, asking for progress every
    /// [`PROGRESS_EVERY`] so a member that went quiet is told from one with nothing to say.
    async fn follow(&self, index: usize, stream: &mut WatchStream, backoff: &mut Backoff) -> Ended {
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(response)) => {
                        heard = Instant::now();
                        backoff.reset();
                        if let Some(ended) = self.on_response(&response) {
                            if matches!(ended, Ended::Broken) {
                                self.conn.failed(index, &response.cancel_reason()).await;
                            }
                            return ended;
                        }
                    }
                    Ok(None) => {
                        self.conn.failed(index, &"watch stream closed").await;
                        return Ended::Broken;
                    }
                    Err(error) => {
                        self.conn.failed(index, &error).await;
                        return Ended::Broken;
                    }
                },
                _ = progress.tick() => {
                    if heard.elapsed() > SILENT_LIMIT {
                        self.conn.failed(index, &"watch silent").await;
                        return Ended::Broken;
                    }
                    if let Err(error) = stream.request_progress().await {
                        self.conn.failed(index, &error).await;
                        return Ended::Broken;
                    }
                }
            }
        }
    }

    /// Applies one watch response; `Some` when the stream is done.
    fn on_response(&self, response: &WatchResponse) -> Option<Ended> {
        if response.compact_revision() > 0 {
            tracing::warn!(
                compacted = response.compact_revision(),
                resume = *self.applied.borrow() + 1,
                "etcd compacted the history this gateway had not seen yet"
            );
            return Some(Ended::Compacted);
        }
        if response.canceled() {
            return Some(Ended::Broken);
        }
        let maps = &self.shared.maps;
        let mut revision = None;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(name) = self.layout.name_of(kv.key()) else {
                continue;
            };
            match event.event_type() {
                EventType::Put => match keys::decode(kv.value()) {
                    Some(fp) => insert(maps, Box::from(name), &fp),
                    None => {
                        tracing::warn!(token = name, "etcd value is not a token record; ignored")
                    }
                },
                EventType::Delete => {
                    maps.remove(name);
                }
            }
            revision = Some(kv.mod_revision());
        }
        match (revision, response.header()) {
            (Some(revision), _) => self.advance(revision),
            // The watch is open; what it has to catch up on comes next.
            (None, _) if response.created() => self.freshness.synced(),
            // A progress answer: every change up to its header's revision has been sent.
            (None, Some(header)) => self.advance(header.revision()),
            (None, None) => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> Fingerprint {
        [byte; 32]
    }

    #[test]
    fn a_new_read_removes_what_it_lacks_and_adds_what_is_new() {
        let maps = maps_of(Snapshot {
            tokens: vec![("a/b/kept".into(), fp(1)), ("a/b/revoked".into(), fp(2))],
            revision: 10,
        });
        apply_snapshot(
            &maps,
            Snapshot {
                tokens: vec![("a/b/kept".into(), fp(1)), ("a/b/new".into(), fp(3))],
                revision: 20,
            },
        );
        assert_eq!(maps.names(), ["a/b/kept", "a/b/new"]);
        assert!(maps.verify(&fp(1)) && maps.verify(&fp(3)));
        assert!(!maps.verify(&fp(2)));
    }

    #[test]
    fn staleness_grows_from_the_last_sync() {
        let freshness = Freshness::new();
        freshness.synced();
        assert!(freshness.staleness() < Duration::from_secs(1));
    }
}
