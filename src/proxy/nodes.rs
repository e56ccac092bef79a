//! The cluster's nodes as the gateway sees them: where each one is, how busy it is, and whether
//! it may be sent a request now.
//!
//! Choosing costs no lock and, while every node is healthy, no clock read: each node's health
//! is a few atomics. Balancing is power of two choices on outstanding requests, which follows
//! the slowest node's load better than round robin without the herd a pure least-loaded pick
//! sends to a node that just came back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::uri::{PathAndQuery, Uri};
use http::HeaderValue;
use rand::Rng;
use tokio::sync::Notify;

use super::pool::NodePool;
use super::slots::{SlotLimits, Slots};
use super::Error;
use crate::config::{NodeHealth, NodeUrl};

/// Idle connections kept per node, and for how long.
pub type PoolSize = (usize, Duration);

/// One node of the cluster.
pub struct Node {
    pub url: NodeUrl,
    /// The node's `Host`, built once instead of per request.
    pub host: HeaderValue,
    /// `scheme://host:port`, for logs and metrics.
    pub label: String,
    /// One per request in flight to this node, held until its response body ends, and the
    /// queue of requests waiting for one.
    pub slots: Arc<Slots>,
    /// Its idle connections.
    pub pool: Arc<NodePool>,
    /// `scheme://authority/`: what a connection is opened to.
    pub base: Uri,
    health: Health,
}

/// A node's health: passive ejection (connections refused or not accepted in time) and the
/// active checks' verdict. A node is used when neither holds it out.
#[derive(Default)]
struct Health {
    /// 0: not ejected; else when the ejection ends, in [`now_ms`] time.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the growing back-off.
    ejections: AtomicU32,
    /// Set while one request tries a node that is out: only one at a time does (half-open).
    probing: AtomicBool,
    /// The active checks' verdict: out until they pass again.
    checked_down: AtomicBool,
    /// Active check results in a row: passes (positive) or failures (negative).
    streak: std::sync::atomic::AtomicI32,
    /// Every ejection since the start, for metrics.
    ejections_total: AtomicU64,
    /// What took the node out last, and when: written at an ejection only, read by the
    /// status page.
    last_failure: std::sync::Mutex<Option<(SystemTime, &'static str)>>,
}

/// Why a node was taken out, as the status page says it.
const REFUSED: &str = "refused or did not accept a connection";
const CHECKS_FAILED: &str = "failed its health checks";

/// A node's health as the status page shows it, read from its atomics.
#[derive(Debug, Clone)]
pub struct HealthView {
    /// In rotation now.
    pub up: bool,
    /// Why it is out (`None` while in rotation).
    pub reason: Option<String>,
    /// How long until its ejection ends and a request may try it again; `None` when not
    /// ejected or when only the health checks hold it out.
    pub back_in: Option<Duration>,
    /// Active check results in a row: passes (positive) or failures (negative).
    pub check_streak: i32,
    /// The active checks hold it out.
    pub checked_down: bool,
    /// What took it out last, and when.
    pub last_failure: Option<(SystemTime, &'static str)>,
}

/// Whether a node takes requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Up,
    /// Its ejection is over: the next request that finds its probe free tries it.
    Probation,
    Out,
}

impl Node {
    fn new(
        url: NodeUrl,
        slots: SlotLimits,
        (max_idle, idle_timeout): PoolSize,
    ) -> Result<Node, http::Error> {
        Ok(Node {
            host: HeaderValue::from_str(url.authority.as_str())?,
            label: format!("{}://{}", url.scheme, url.socket_authority()),
            base: Uri::builder()
                .scheme(url.scheme.clone())
                .authority(url.authority.clone())
                .path_and_query("/")
                .build()?,
            url,
            slots: Arc::new(Slots::new(slots)),
            pool: Arc::new(NodePool::new(max_idle, idle_timeout)),
            health: Health::default(),
        })
    }

    /// A node outside the set: a seed asked while sniffing.
    pub fn detached(url: NodeUrl) -> Result<Node, http::Error> {
        let slots = SlotLimits {
            max: 1,
            max_pending: 0,
            fair: false,
        };
        Node::new(url, slots, (0, Duration::ZERO))
    }

    /// Requests in flight to this node.
    pub fn outstanding(&self) -> usize {
        self.slots.held()
    }

    /// Whether the node is in rotation (not ejected, not failed by the active checks).
    pub fn is_up(&self) -> bool {
        self.standing(&mut None) == Standing::Up
    }

    /// Whether a request is trying the node as its probe now.
    pub fn is_probing(&self) -> bool {
        self.health.probing.load(Ordering::Acquire)
    }

    pub fn ejections_total(&self) -> u64 {
        self.health.ejections_total.load(Ordering::Relaxed)
    }

    /// The node's health now, for the status page: a few atomic loads and one uncontended lock.
    pub fn health_view(&self) -> HealthView {
        let health = &self.health;
        let mut now = None;
        let standing = self.standing(&mut now);
        let checked_down = health.checked_down.load(Ordering::Relaxed);
        let until = health.ejected_until.load(Ordering::Relaxed);
        let back_in = (until != 0)
            .then(|| Duration::from_millis(until.saturating_sub(now_ms())))
            .filter(|left| !left.is_zero());
        let reason = match standing {
            Standing::Up => None,
            Standing::Out if checked_down => Some(CHECKS_FAILED.to_owned()),
            Standing::Out => Some(REFUSED.to_owned()),
            Standing::Probation => Some(format!(
                "{REFUSED}; on probation: the next request tries it"
            )),
        };
        let last_failure = *health
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        HealthView {
            up: standing == Standing::Up,
            reason,
            back_in: back_in.filter(|_| !checked_down),
            check_streak: health.streak.load(Ordering::Relaxed),
            checked_down,
            last_failure,
        }
    }

    /// Remembers why the node was just taken out.
    fn taken_out(&self, why: &'static str) {
        *self
            .health
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((SystemTime::now(), why));
    }

    fn standing(&self, now: &mut Option<u64>) -> Standing {
        if self.health.checked_down.load(Ordering::Relaxed) {
            return Standing::Out;
        }
        match self.health.ejected_until.load(Ordering::Relaxed) {
            0 => Standing::Up,
            until if *now.get_or_insert_with(now_ms) >= until => Standing::Probation,
            _ => Standing::Out,
        }
    }

    fn try_probe(&self) -> bool {
        self.health
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The request target on this node for a client's path and query, in origin form (the
    /// node's path prefix put before it).
    pub fn target(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, Error> {
        let path_and_query = match (self.url.path_prefix.is_empty(), path_and_query) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                format!("{}{pq}", self.url.path_prefix)
                    .parse()
                    .map_err(|_| Error::Target)?
            }
        };
        Ok(Uri::from(path_and_query))
    }

    /// One active check's result. Returns whether the node's verdict changed.
    pub fn checked(&self, passed: bool, unhealthy: u32, healthy: u32) -> bool {
        let health = &self.health;
        let streak = health.streak.load(Ordering::Relaxed);
        let streak = match (passed, streak) {
            (true, s) if s > 0 => s.saturating_add(1),
            (true, _) => 1,
            (false, s) if s < 0 => s.saturating_sub(1),
            (false, _) => -1,
        };
        health.streak.store(streak, Ordering::Relaxed);
        let down = health.checked_down.load(Ordering::Relaxed);
        if down && passed && streak.unsigned_abs() >= healthy {
            health.checked_down.store(false, Ordering::Relaxed);
            // The check saw it answer: no need to wait out a passive ejection too.
            health.ejected_until.store(0, Ordering::Release);
            health.ejections.store(0, Ordering::Relaxed);
            tracing::info!(node = %self.label, "upstream node passes its health checks; back in rotation");
            return true;
        }
        if !down && !passed && streak.unsigned_abs() >= unhealthy {
            health.checked_down.store(true, Ordering::Relaxed);
            health.ejections_total.fetch_add(1, Ordering::Relaxed);
            self.taken_out(CHECKS_FAILED);
            tracing::warn!(node = %self.label, failures = streak.unsigned_abs(), "upstream node fails its health checks; taken out of rotation");
            return true;
        }
        if passed && health.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            health.ejections.store(0, Ordering::Relaxed);
            tracing::info!(node = %self.label, "upstream node passes its health check; back in rotation");
        }
        false
    }
}

/// The node a request goes to, and whether it is that node's one probe. A probe's turn is held
/// by this value: however the request ends (an answer, a refusal, an error, or its future
/// dropped at an await because the client left), dropping the pick passes the turn on, so a
/// node on probation can never be left waiting for a probe that will not report.
pub struct Pick {
    pub node: Arc<Node>,
    probe: bool,
}

impl Pick {
    fn new(node: &Arc<Node>, probe: bool) -> Pick {
        Pick {
            node: Arc::clone(node),
            probe,
        }
    }

    /// Whether this request is its node's one probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// A response came back: a node on probation is in rotation again.
    pub fn answered(self) {
        let node = &self.node;
        if self.probe {
            if node.health.ejected_until.swap(0, Ordering::AcqRel) != 0 {
                tracing::info!(node = %node.label, "upstream node answers again; back in rotation");
            }
            node.health.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A connection to the node was refused or not accepted in time: out for a back-off that
    /// doubles with each ejection in a row. Failures within one ejection are that ejection:
    /// requests that raced the first failure, and probes sent while the node is still out
    /// (every node out), neither log again nor lengthen it; only a probe after the back-off
    /// ended starts the next, longer one. Returns whether this call ejected it.
    pub fn refused(self, policy: &NodeHealth) -> bool {
        let (node, health) = (&self.node, &self.node.health);
        let until = health.ejected_until.load(Ordering::Acquire);
        let ejected = until == 0 || (self.probe && now_ms() >= until);
        if ejected {
            let n = health.ejections.fetch_add(1, Ordering::Relaxed).min(16);
            let back_off = policy
                .eject_for
                .saturating_mul(1 << n)
                .min(policy.eject_max);
            health
                .ejected_until
                .store(now_ms() + millis(back_off).max(1), Ordering::Release);
            health.ejections_total.fetch_add(1, Ordering::Relaxed);
            node.taken_out(REFUSED);
            tracing::warn!(node = %node.label, ?back_off, "upstream node ejected: it refused or did not accept a connection");
        }
        ejected
    }
}

impl Drop for Pick {
    /// The request ended, told nothing more about the node (a client fault, a timeout on a
    /// response that may just be slow, a client gone), or reported through `answered` or
    /// `refused`: a probe's turn passes to the next request.
    fn drop(&mut self) {
        if self.probe {
            self.node.health.probing.store(false, Ordering::Release);
        }
    }
}

/// The nodes requests are spread over; replaced whole when sniffing finds a different set.
pub struct NodeSet {
    nodes: ArcSwap<Vec<Arc<Node>>>,
    slots: SlotLimits,
    pools: PoolSize,
    /// Told when a node is ejected, for sniffing on failure.
    pub ejected: Notify,
}

impl NodeSet {
    pub fn new(
        urls: impl IntoIterator<Item = NodeUrl>,
        slots: SlotLimits,
        pools: PoolSize,
    ) -> Result<NodeSet, http::Error> {
        let nodes = urls
            .into_iter()
            .map(|url| Node::new(url, slots, pools).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeSet {
            nodes: ArcSwap::from_pointee(nodes),
            slots,
            pools,
            ejected: Notify::new(),
        })
    }

    /// The nodes now.
    pub fn all(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.load_full()
    }

    pub fn len(&self) -> usize {
        self.nodes.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.load().is_empty()
    }

    /// Replaces the nodes with `urls`, keeping the state (health, requests in flight, pooled
    /// connections) of those that stay. Returns whether anything changed.
    pub fn replace(&self, urls: Vec<NodeUrl>) -> bool {
        let current = self.nodes.load_full();
        let same =
            urls.len() == current.len() && urls.iter().all(|u| current.iter().any(|n| &n.url == u));
        if same || urls.is_empty() {
            return false;
        }
        let mut next = Vec::with_capacity(urls.len());
        for url in urls {
            match current.iter().find(|n| n.url == url) {
                Some(node) => next.push(Arc::clone(node)),
                None => match Node::new(url, self.slots, self.pools) {
                    Ok(node) => next.push(Arc::new(node)),
                    Err(error) => tracing::warn!(%error, "skipping a discovered node"),
                },
            }
        }
        if next.is_empty() {
            return false;
        }
        let labels: Vec<&str> = next.iter().map(|n| n.label.as_str()).collect();
        tracing::info!(nodes = ?labels, "upstream nodes changed");
        self.nodes.store(Arc::new(next));
        true
    }

    /// The node for the next attempt, not one of `tried`: a node on probation whose probe is
    /// free first (so a node that came back gets traffic again as soon as its back-off ends),
    /// else the less busy of two random nodes in rotation, else — every node out — one probe
    /// at a time on the node whose ejection ends first. `None`: nowhere to send it now.
    pub fn pick(&self, tried: &[Arc<Node>]) -> Option<Pick> {
        let nodes = self.nodes.load();
        let mut now = None;
        if let [node] = nodes.as_slice() {
            if !tried.is_empty() {
                return None;
            }
            return match node.standing(&mut now) {
                Standing::Up => Some(Pick::new(node, false)),
                _ => node.try_probe().then(|| Pick::new(node, true)),
            };
        }
        let fresh = |node: &&Arc<Node>| !tried.iter().any(|t| Arc::ptr_eq(t, node));
        let mut up = 0usize;
        for node in nodes.iter().filter(fresh) {
            match node.standing(&mut now) {
                Standing::Up => up += 1,
                Standing::Probation if node.try_probe() => return Some(Pick::new(node, true)),
                _ => {}
            }
        }
        if up > 0 {
            if let Some(node) = two_choices(nodes.iter().filter(fresh), up, &mut now) {
                return Some(Pick { node, probe: false });
            }
        }
        let mut out: Vec<&Arc<Node>> = nodes.iter().filter(fresh).collect();
        out.sort_by_key(|n| n.health.ejected_until.load(Ordering::Relaxed));
        out.into_iter()
            .find(|n| n.try_probe())
            .map(|node| Pick::new(node, true))
    }

    /// Whether any node is in rotation.
    pub fn any_up(&self) -> bool {
        self.nodes.load().iter().any(|n| n.is_up())
    }

    /// Requests in flight over all nodes.
    pub fn outstanding(&self) -> usize {
        self.nodes.load().iter().map(|n| n.outstanding()).sum()
    }
}

/// Of `count` nodes in rotation among `nodes`, two at random, and of those the one with fewer
/// requests in flight. `None` only when a health change since the count left none.
fn two_choices<'a>(
    nodes: impl Iterator<Item = &'a Arc<Node>>,
    count: usize,
    now: &mut Option<u64>,
) -> Option<Arc<Node>> {
    let mut up = nodes.filter(|n| n.standing(now) == Standing::Up);
    if count <= 1 {
        return up.next().map(Arc::clone);
    }
    let mut rng = rand::thread_rng();
    let a = rng.gen_range(0..count);
    // A second index different from the first, uniformly.
    let b = (a + rng.gen_range(1..count)) % count;
    let (mut first, mut second) = (None, None);
    for (i, node) in up.enumerate() {
        if i == a {
            first = Some(node);
        } else if i == b {
            second = Some(node);
        }
    }
    // A tie goes to the first pick, itself random: sequential traffic spreads evenly.
    match (first, second) {
        (Some(x), Some(y)) if y.outstanding() < x.outstanding() => Some(Arc::clone(y)),
        (Some(x), _) | (None, Some(x)) => Some(Arc::clone(x)),
        (None, None) => None,
    }
}

/// Milliseconds since the first call: a monotonic clock cheap to compare in an atomic.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    millis(EPOCH.get_or_init(Instant::now).elapsed())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_node() -> NodeSet {
        let url = NodeUrl {
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("127.0.0.1:9200"),
            path_prefix: String::new(),
        };
        let slots = SlotLimits {
            max: 4,
            max_pending: 4,
            fair: true,
        };
        NodeSet::new([url], slots, (0, Duration::ZERO)).unwrap()
    }

    fn policy() -> NodeHealth {
        NodeHealth {
            eject_for: Duration::from_secs(60),
            eject_max: Duration::from_secs(600),
            check: None,
        }
    }

    #[test]
    fn failures_within_one_ejection_are_that_ejection() {
        let nodes = one_node();
        let first = nodes.pick(&[]).unwrap();
        let raced = nodes.pick(&[]).unwrap();
        assert!(first.refused(&policy()), "the first failure ejects");
        assert!(
            !raced.refused(&policy()),
            "a request that raced it does not"
        );
        // Every node out: one probe at a time, and its failure is still the same ejection.
        for _ in 0..4 {
            let probe = nodes.pick(&[]).unwrap();
            assert!(probe.is_probe());
            assert!(nodes.pick(&[]).is_none(), "one probe at a time");
            assert!(!probe.refused(&policy()));
        }
        let node = &nodes.all()[0];
        assert_eq!(node.ejections_total(), 1);
        assert_eq!(
            node.health.ejections.load(Ordering::Relaxed),
            1,
            "no doubling"
        );
        assert!(!node.is_probing());
    }

    #[test]
    fn a_dropped_probe_passes_its_turn_on() {
        let nodes = one_node();
        assert!(nodes.pick(&[]).unwrap().refused(&policy()));
        let probe = nodes.pick(&[]).unwrap();
        assert!(probe.is_probe() && nodes.all()[0].is_probing());
        drop(probe);
        assert!(!nodes.all()[0].is_probing());
        assert!(nodes.pick(&[]).is_some_and(|p| p.is_probe()));
    }
}
