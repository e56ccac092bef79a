//! Failed authentications in the main log, at `warn`, without letting a flood flood the log.
//!
//! Within one window (`LogConfig::FAILURE_NOTICE_INTERVAL`) a client address gets one line, for
//! its first failure; its further failures, and every failure from addresses beyond the table's
//! bound, are only counted, and [`FailureNotices::sweep`] ends the window with one summary line.
//! So the log grows by at most `FAILURE_NOTICE_ADDRESSES + 1` lines a window, and the table
//! never holds more addresses than that.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

/// Who a failed credential claimed to be, as far as it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed<'a> {
    /// The user name of Basic credentials.
    User(&'a str),
    /// A service token's account and name (`ns/svc`, `name`), when the value decodes.
    Token(&'a str, &'a str),
    /// Nothing readable.
    Unknown,
}

/// The current window's addresses and counts.
pub struct FailureNotices {
    /// Failures not logged individually, per address that had its line this window.
    seen: DashMap<IpAddr, u64, AddressHash>,
    /// Entries in `seen`, so the bound is checked without walking the shards.
    addresses: AtomicUsize,
    max_addresses: usize,
    /// Failures from addresses that found the table full.
    overflow: AtomicU64,
    /// Requests refused this window because their address was over its failure limit.
    throttled: AtomicU64,
}

impl FailureNotices {
    pub fn new(max_addresses: usize) -> Self {
        FailureNotices {
            seen: DashMap::default(),
            addresses: AtomicUsize::new(0),
            max_addresses,
            overflow: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// One failure from `client` on `path`: a line when it is the address's first this window.
    pub fn failed(&self, client: IpAddr, claimed: Claimed<'_>, path: &str) {
        if let Some(mut suppressed) = self.seen.get_mut(&client) {
            *suppressed += 1;
            return;
        }
        if self.addresses.fetch_add(1, Ordering::Relaxed) >= self.max_addresses {
            self.addresses.fetch_sub(1, Ordering::Relaxed);
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.seen.insert(client, 0).is_some() {
            // Another failure from the same address got in first and logged.
            self.addresses.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        // Debug formatting quotes and escapes what the client chose, so it cannot forge lines.
        match claimed {
            Claimed::User(user) => {
                tracing::warn!(%client, user = ?user, path = ?path, "authentication failed")
            }
            Claimed::Token(account, name) => tracing::warn!(
                %client, account = ?account, token = ?name, path = ?path, "authentication failed"
            ),
            Claimed::Unknown => tracing::warn!(%client, path = ?path, "authentication failed"),
        }
    }

    /// One request refused while its address was throttled: counted for the summary.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the window: one line counting the failures not logged one by one, then a fresh
    /// table. Returns that count.
    pub fn sweep(&self) -> u64 {
        let mut suppressed = self.overflow.swap(0, Ordering::Relaxed);
        let mut addresses = 0u64;
        self.seen.retain(|_, count| {
            suppressed += *count;
            addresses += u64::from(*count > 0);
            false
        });
        self.addresses.store(0, Ordering::Relaxed);
        let throttled = self.throttled.swap(0, Ordering::Relaxed);
        if throttled > 0 {
            tracing::warn!(
                refused = throttled,
                "requests refused in the last window: their address is over its failure limit"
            );
        }
        if suppressed > 0 {
            tracing::warn!(
                failures = suppressed,
                repeating_addresses = addresses,
                "more authentication failures than logged one by one in the last window"
            );
        }
        suppressed
    }
}

/// The table's hash: foldhash's fast one (a folded multiply, seeded per process). SipHash's
/// resistance to chosen collisions buys nothing in a table that never holds more than a
/// window's few addresses (`max_addresses`, a hundred), and costs a hundred instructions on
/// every failure.
type AddressHash = foldhash::fast::RandomState;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_hash_apart() {
        use std::hash::BuildHasher;
        let hasher = AddressHash::default();
        let mut hashes: Vec<u64> = (0..=255u8)
            .flat_map(|n| {
                [
                    IpAddr::from([10, 0, 0, n]),
                    IpAddr::from([n, 0, 0, 1]),
                    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)]),
                    IpAddr::from([0x2001, 0xdb8, u16::from(n), 0, 0, 0, 0, 1]),
                ]
            })
            .map(|ip| hasher.hash_one(ip))
            .collect();
        let count = hashes.len();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(
            hashes.len(),
            count - 2,
            "10.0.0.1 and 2001:db8::1 are listed twice"
        );
        // The top seven bits (a table's tag) and the low ones (its bucket) both vary.
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        let buckets: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xff).collect();
        assert!(
            tags.len() > 100 && buckets.len() > 200,
            "{} {}",
            tags.len(),
            buckets.len()
        );
    }

    #[test]
    fn one_line_per_address_per_window_and_a_bounded_table() {
        let notices = FailureNotices::new(2);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let (_, log) = crate::atomic_file::logged_during(|| {
            for _ in 0..5 {
                notices.failed(a, Claimed::User("bob"), "/x");
            }
            notices.failed(b, Claimed::Token("elastic/fleet-server", "t1"), "/y");
            for n in 0..100u8 {
                notices.failed(IpAddr::from([10, 1, 0, n]), Claimed::Unknown, "/z");
            }
            assert_eq!(notices.seen.len(), 2);
            assert_eq!(notices.sweep(), 4 + 100);
            assert_eq!(notices.seen.len(), 0);
            notices.failed(IpAddr::from([10, 1, 0, 7]), Claimed::Unknown, "/z");
            assert_eq!(notices.sweep(), 0);
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 4, "{log}");
        assert!(lines[0].contains("client=10.0.0.1") && lines[0].contains("user=\"bob\""));
        assert!(lines[1].contains("token=\"t1\""), "{log}");
        assert!(lines[2].contains("failures=104"), "{log}");
        assert!(lines[3].contains("client=10.1.0.7"), "{log}");
        assert!(lines.iter().all(|l| l.contains("WARN")), "{log}");
    }
}
