//! Per-address throttling of failed authentications: guessing costs the guesser, not the
//! gateway or other clients.
//!
//! Every client address has a token bucket (governor's GCRA) that only *failures* draw from. An
//! address that fails once too often is remembered as blocked until its bucket holds one more
//! failure; until then what it sends that fails, or would need the password pool, is answered
//! 429 without the pool, so a blocked guesser costs a hash and two map lookups per request.
//! Its valid credentials are still served ([`auth`](crate::auth) checks a bearer value first,
//! and recognises verified Basic pairs without the pool).
//!
//! The valid-credential path never touches the buckets, and a bearer one never asks whether its
//! address is blocked; the others read one atomic counter of blocked addresses and, only while
//! some address is blocked, look themselves up.
//! Memory is bounded by `max_addresses` for both maps; a background sweep forgets addresses whose
//! buckets are full again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use foldhash::SharedSeed;
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::AuthThrottle;

/// The bucket failures from addresses not yet tracked share once `max_addresses` are. No peer
/// can have it: 0.0.0.0 is never a source address.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The tables' hash: foldhash's quality one. SipHash, the default, cost a hundred and fifty
/// instructions per failed login (two lookups). Its seeds come from the system's random source
/// (foldhash's own come from address-space layout), so a client cannot choose addresses that
/// collide; both tables are bounded by `max_addresses` besides.
type AddressHash = foldhash::quality::SeedableRandomState;

/// A table's [`AddressHash`], seeded as it says.
fn address_hash() -> AddressHash {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(rand::random()));
    AddressHash::with_seed(rand::random(), shared)
}

type Limiter<C> = RateLimiter<
    IpAddr,
    DashMapStateStore<IpAddr, AddressHash>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// Failed-authentication buckets per client address, and the addresses currently over them.
pub struct FailureThrottle<C: Clock = MonotonicClock> {
    limiter: Limiter<C>,
    /// Addresses over their limit, with the instant their bucket holds one more failure.
    blocked: DashMap<IpAddr, C::Instant, AddressHash>,
    /// Entries in `blocked`, so the valid-credential path skips the map while it is empty.
    blocked_count: AtomicUsize,
    /// At least the number of buckets: raised before each failure is counted (which may add
    /// one), set to the count itself where it is read. While it is below `max_addresses`, so
    /// is the count, and a failure need not count the buckets (a read lock on every shard).
    buckets_bound: AtomicUsize,
    max_addresses: usize,
    /// Set when the address table first fills, so the warning is logged once per sweep.
    overflowing: AtomicBool,
}

impl FailureThrottle {
    pub fn new(config: &AuthThrottle) -> Self {
        Self::with_clock(config, MonotonicClock)
    }
}

impl<C: Clock> FailureThrottle<C> {
    /// A throttle reading time from `clock` (tests pass governor's fake clock).
    pub fn with_clock(config: &AuthThrottle, clock: C) -> Self {
        let quota = Quota::per_minute(config.failed_per_minute).allow_burst(config.failed_burst);
        FailureThrottle {
            limiter: RateLimiter::dashmap_with_clock_and_hasher(quota, clock, address_hash()),
            blocked: DashMap::with_hasher(address_hash()),
            blocked_count: AtomicUsize::new(0),
            buckets_bound: AtomicUsize::new(0),
            max_addresses: config.max_addresses.max(1),
            overflowing: AtomicBool::new(false),
        }
    }

    /// How long `ip` must still wait before its credentials are looked at again; `None` for
    /// every address not over its limit. Allocation-free, and a single atomic load while no
    /// address is blocked.
    pub fn refusal(&self, ip: IpAddr) -> Option<Duration> {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = *self.blocked.get(&client_key(ip))?;
        let wait: Duration = until.duration_since(self.limiter.clock().now()).into();
        (!wait.is_zero()).then_some(wait)
    }

    /// Counts one failed authentication from `ip`. `Some(wait)` when it was one too many: the
    /// address is blocked for `wait`, after which its bucket allows one more failure.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let key = client_key(ip);
        let bucket = if self.has_room() {
            key
        } else {
            if !self.overflowing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max = self.max_addresses,
                    "failed authentications from too many addresses to track each; \
                     new addresses share one bucket until the next sweep"
                );
            }
            OVERFLOW
        };
        let not_until = self.limiter.check_key(&bucket).err()?;
        let now = self.limiter.clock().now();
        let until = not_until.earliest_possible();
        self.block(key, until);
        tracing::debug!(client = %ip, "failed authentications over the limit; throttled");
        Some(until.duration_since(now).into())
    }

    /// Whether the buckets are fewer than `max_addresses`, for a failure about to be counted
    /// (and so perhaps to add one). Failures at the same moment may each add a bucket past the
    /// limit, as they could when every one counted the buckets.
    fn has_room(&self) -> bool {
        if self.buckets_bound.fetch_add(1, Ordering::Relaxed) < self.max_addresses {
            return true;
        }
        let buckets = self.limiter.len();
        // This failure may add one, to its own bucket or the shared one.
        self.buckets_bound.store(buckets + 1, Ordering::Relaxed);
        buckets < self.max_addresses
    }

    /// Remembers `key` as blocked until `until`, while there is room; without room the failure
    /// that found the limit is still refused, and the next one meets the bucket again.
    fn block(&self, key: IpAddr, until: C::Instant) {
        match self.blocked.entry(key) {
            Entry::Occupied(mut entry) => {
                entry.insert(until);
            }
            Entry::Vacant(entry) => {
                if self.blocked_count.load(Ordering::Relaxed) < self.max_addresses {
                    entry.insert(until);
                    self.blocked_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Forgets addresses whose buckets are full again and blocks that have run out. Run
    /// periodically; memory is bounded without it, but the room would not be reused.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.buckets_bound
            .store(self.limiter.len(), Ordering::Relaxed);
        let now = self.limiter.clock().now();
        self.blocked.retain(|_, until| {
            let keep = *until > now;
            if !keep {
                self.blocked_count.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
        self.blocked.shrink_to_fit();
        self.overflowing.store(false, Ordering::Relaxed);
    }

    /// How many addresses are blocked now, and up to `n` of them, those blocked longest ahead
    /// first, with how long each must still wait: for the status page, which reads it every
    /// few seconds at most. (Blocks that ran out stay in the table until the next sweep.)
    pub fn most_blocked(&self, n: usize) -> (usize, Vec<(IpAddr, Duration)>) {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return (0, Vec::new());
        }
        let now = self.limiter.clock().now();
        let mut blocked: Vec<(IpAddr, Duration)> = self
            .blocked
            .iter()
            .map(|entry| (*entry.key(), entry.value().duration_since(now).into()))
            .filter(|(_, wait): &(IpAddr, Duration)| !wait.is_zero())
            .collect();
        blocked.sort_by_key(|(_, wait)| std::cmp::Reverse(*wait));
        let count = blocked.len();
        blocked.truncate(n);
        (count, blocked)
    }

    /// Addresses with a bucket, and addresses blocked now.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.limiter.len(),
            self.blocked_count.load(Ordering::Relaxed),
        )
    }
}

/// The unit a limit applies to: an IPv4 address (also when IPv4-mapped), or an IPv6 /64, as one
/// host usually holds a whole /64 and could otherwise rotate through 2^64 fresh buckets.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn config(per_minute: u32, burst: u32, max_addresses: usize) -> AuthThrottle {
        AuthThrottle {
            failed_per_minute: NonZeroU32::new(per_minute).unwrap(),
            failed_burst: NonZeroU32::new(burst).unwrap(),
            max_addresses,
            ..AuthThrottle::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_failures_past_the_burst_block_and_the_refill_unblocks() {
        let clock = FakeRelativeClock::default();
        let throttle = FailureThrottle::with_clock(&config(60, 3, 100), clock.clone());
        let (attacker, other) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            assert_eq!(throttle.failed(attacker), None);
            assert_eq!(throttle.refusal(attacker), None);
        }
        // One too many: blocked until the bucket holds one more failure (60/min: 1 s).
        assert_eq!(throttle.failed(attacker), Some(Duration::from_secs(1)));
        assert_eq!(throttle.refusal(attacker), Some(Duration::from_secs(1)));
        assert_eq!(throttle.refusal(other), None);
        assert_eq!(throttle.failed(other), None);

        clock.advance(Duration::from_millis(400));
        assert_eq!(throttle.refusal(attacker), Some(Duration::from_millis(600)));
        clock.advance(Duration::from_millis(600));
        assert_eq!(throttle.refusal(attacker), None);
        // Refilled by exactly one: the next failure passes, the one after blocks again.
        assert_eq!(throttle.failed(attacker), None);
        assert_eq!(throttle.failed(attacker), Some(Duration::from_secs(1)));
    }

    #[test]
    fn sweep_forgets_full_buckets_and_expired_blocks() {
        let clock = FakeRelativeClock::default();
        let throttle = FailureThrottle::with_clock(&config(60, 1, 100), clock.clone());
        throttle.failed(ip("10.0.0.1"));
        assert!(throttle.failed(ip("10.0.0.1")).is_some());
        throttle.failed(ip("10.0.0.2"));
        assert_eq!(throttle.tracked(), (2, 1));
        throttle.sweep();
        assert_eq!(throttle.tracked(), (2, 1), "nothing has refilled yet");
        clock.advance(Duration::from_secs(3));
        throttle.sweep();
        assert_eq!(throttle.tracked(), (0, 0));
        assert_eq!(throttle.refusal(ip("10.0.0.1")), None);
    }

    #[test]
    fn a_full_table_puts_new_addresses_in_one_shared_bucket() {
        let throttle = FailureThrottle::with_clock(&config(60, 2, 2), FakeRelativeClock::default());
        throttle.failed(ip("10.0.0.1"));
        throttle.failed(ip("10.0.0.2"));
        // Table full: these share the overflow bucket (burst 2), whoever sends them.
        assert_eq!(throttle.failed(ip("10.0.0.3")), None);
        assert_eq!(throttle.failed(ip("10.0.0.4")), None);
        assert!(throttle.failed(ip("10.0.0.5")).is_some());
        assert!(throttle.refusal(ip("10.0.0.5")).is_some());
        assert_eq!(throttle.refusal(ip("10.0.0.3")), None);
        assert_eq!(throttle.tracked().0, 3);
    }

    #[test]
    fn repeated_failures_of_one_address_leave_the_room_to_others() {
        let throttle =
            FailureThrottle::with_clock(&config(600, 1000, 3), FakeRelativeClock::default());
        for _ in 0..10 {
            assert_eq!(throttle.failed(ip("10.0.0.1")), None);
        }
        throttle.failed(ip("10.0.0.2"));
        throttle.failed(ip("10.0.0.3"));
        assert_eq!(throttle.tracked().0, 3, "each in a bucket of its own");
        throttle.failed(ip("10.0.0.4"));
        assert_eq!(throttle.tracked().0, 4, "the shared bucket");
        throttle.sweep();
        throttle.failed(ip("10.0.0.5"));
        assert_eq!(
            throttle.tracked().0,
            4,
            "nothing refilled: the shared one again"
        );
    }

    #[test]
    fn ipv6_hosts_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff::9")),
            client_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:3::1")),
            client_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(client_key(ip("::1")), OVERFLOW);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
