//! Per-account limits: a request rate with a burst and a number of requests in flight, checked
//! before a request is forwarded, and the account's lane in the nodes' fair queues.
//!
//! The check is a few atomic operations on the account's own [`Limiter`]: no lock, no
//! allocation. Limiters outlive reloads (a reload changes their settings in place), so the
//! requests in flight across a reload stay counted. With several gateways on one store, each
//! enforces its part of every limit: the account's figures divided by the live gateways.

mod rate;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::accounts::Accounts;
use crate::auth::Principal;
use crate::config::{Limit, LimitsConfig};
use crate::store::Replicas;
use rate::{RateLimit, Verdict};

/// How often an account over its limit is told in the log, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The name of the lane of requests whose credential the cluster checks itself.
const PASS_THROUGH: &str = "pass-through";

/// Whose turn a waiting request takes: an account's lane and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// Equal for the requests of one account, different between accounts.
    pub id: usize,
    /// Slots the lane gets per round while others wait too (at least 1).
    pub weight: u32,
}

impl Lane {
    /// The lane of requests no account is known for.
    pub const SHARED: Lane = Lane { id: 0, weight: 1 };
}

/// Every account's limiter, for one configuration.
pub struct Limits {
    /// Service accounts by principal, sorted: searched in place per request.
    accounts: Vec<Arc<Limiter>>,
    /// Forwarded file-realm users, made on a user's first forwarded request; shared across
    /// reloads. Bounded by the users file.
    users: Arc<DashMap<Box<str>, Arc<Limiter>>>,
    user_limit: Limit,
    pass_through: Arc<Limiter>,
    replicas: Replicas,
}

impl Limits {
    /// Limiters for every account of `accounts`, set as `config` says.
    pub fn new(config: &LimitsConfig, accounts: &Accounts, replicas: Replicas) -> Limits {
        Limits::build(config, accounts, replicas, None)
    }

    /// The limiters for a reloaded `config`: the same ones, their settings changed in place.
    pub fn reconfigured(&self, config: &LimitsConfig, accounts: &Accounts) -> Limits {
        Limits::build(config, accounts, self.replicas.clone(), Some(self))
    }

    fn build(
        config: &LimitsConfig,
        accounts: &Accounts,
        replicas: Replicas,
        old: Option<&Limits>,
    ) -> Limits {
        let reuse = |name: &str| {
            old.and_then(|o| o.account(name))
                .cloned()
                .unwrap_or_else(|| Arc::new(Limiter::new(name)))
        };
        let mut limiters: Vec<Arc<Limiter>> = accounts
            .matching(None, None)
            .map(|(id, _)| {
                let limiter = reuse(id.as_str());
                limiter.configure(&config.for_account(id));
                limiter
            })
            .collect();
        limiters.sort_by(|a, b| a.name.cmp(&b.name));
        let user_limit = config.for_user();
        let users = old.map_or_else(Arc::default, |o| Arc::clone(&o.users));
        for user in users.iter() {
            user.configure(&user_limit);
        }
        let pass_through = old.map_or_else(
            || Arc::new(Limiter::new(PASS_THROUGH)),
            |o| Arc::clone(&o.pass_through),
        );
        Limits {
            accounts: limiters,
            users,
            user_limit,
            pass_through,
            replicas,
        }
    }

    fn account(&self, principal: &str) -> Option<&Arc<Limiter>> {
        let i = self
            .accounts
            .binary_search_by(|l| (*l.name).cmp(principal))
            .ok()?;
        self.accounts.get(i)
    }

    /// Admits one request of `principal` to be forwarded, or refuses it.
    pub fn admit(&self, principal: &Principal) -> Result<Admission, Refusal> {
        let limiter = match principal {
            // An account the registry does not know (its token outlived its declaration) is
            // counted with the requests nobody vouches for.
            Principal::ServiceToken(token) => self
                .account(token.account.as_str())
                .map_or_else(|| Arc::clone(&self.pass_through), Arc::clone),
            Principal::User(user) => match self.users.get(user.name.as_str()) {
                Some(limiter) => Arc::clone(&limiter),
                None => self.user(&user.name),
            },
        };
        limiter.admit(now, self.replicas.get())
    }

    /// Admits a request whose credential the cluster checks itself: counted, never limited.
    pub fn admit_pass_through(&self) -> Admission {
        self.pass_through.enter();
        self.pass_through.admitted.fetch_add(1, Ordering::Relaxed);
        Admission {
            limiter: Arc::clone(&self.pass_through),
        }
    }

    fn user(&self, name: &str) -> Arc<Limiter> {
        let entry = self.users.entry(name.into()).or_insert_with(|| {
            let limiter = Limiter::new(&format!("user:{name}"));
            limiter.configure(&self.user_limit);
            Arc::new(limiter)
        });
        Arc::clone(&entry)
    }

    /// Every limiter, accounts first, for metrics and the status page.
    pub fn each(&self, mut f: impl FnMut(&Limiter)) {
        for limiter in &self.accounts {
            f(limiter);
        }
        for user in self.users.iter() {
            f(&user);
        }
        f(&self.pass_through);
    }

    /// What `principal`'s limiter has counted, for a service account the registry knows.
    pub fn figures_of(&self, principal: &str) -> Option<Figures> {
        self.account(principal).map(|l| l.figures())
    }

    /// Gateways sharing the accounts now (1 on a store of its own).
    pub fn replicas(&self) -> u32 {
        self.replicas.get()
    }
}

/// One account's limits and what it used of them.
#[derive(Debug)]
pub struct Limiter {
    /// `namespace/service`, `user:<name>` or `pass-through`.
    pub name: Box<str>,
    rate: RateLimit,
    /// 0: no limit.
    max_in_flight: AtomicU32,
    weight: AtomicU32,
    in_flight: AtomicU32,
    admitted: AtomicU64,
    refused_rate: AtomicU64,
    refused_in_flight: AtomicU64,
    /// Time its requests spent waiting for an upstream slot, in microseconds.
    waited_micros: AtomicU64,
    /// When it was last told in the log, in seconds on the limits' clock (0: never).
    warned: AtomicU64,
}

/// What a limiter has counted, read at once for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub admitted: u64,
    pub refused_rate: u64,
    pub refused_in_flight: u64,
    pub in_flight: u32,
    pub waited: Duration,
}

impl Limiter {
    fn new(name: &str) -> Limiter {
        Limiter {
            name: name.into(),
            rate: RateLimit::default(),
            max_in_flight: AtomicU32::new(0),
            weight: AtomicU32::new(1),
            in_flight: AtomicU32::new(0),
            admitted: AtomicU64::new(0),
            refused_rate: AtomicU64::new(0),
            refused_in_flight: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
            warned: AtomicU64::new(0),
        }
    }

    fn configure(&self, limit: &Limit) {
        let interval = limit.rate.map_or(0, |r| r.interval_nanos());
        self.rate.configure(interval, limit.burst);
        self.max_in_flight
            .store(limit.max_in_flight.unwrap_or(0), Ordering::Relaxed);
        self.weight.store(limit.weight.max(1), Ordering::Relaxed);
    }

    pub fn figures(&self) -> Figures {
        Figures {
            admitted: self.admitted.load(Ordering::Relaxed),
            refused_rate: self.refused_rate.load(Ordering::Relaxed),
            refused_in_flight: self.refused_in_flight.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.waited_micros.load(Ordering::Relaxed)),
        }
    }

    fn enter(&self) -> u32 {
        self.in_flight.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Concurrency first (a request refused for it spends none of the rate), then the rate.
    /// `clock` is read only when the answer depends on the time.
    fn admit(self: Arc<Self>, clock: fn() -> u64, replicas: u32) -> Result<Admission, Refusal> {
        let max = self.max_in_flight.load(Ordering::Relaxed);
        let share = if max == 0 {
            0
        } else {
            (max / replicas.max(1)).max(1)
        };
        if self.enter() > share && share != 0 {
            self.leave();
            self.refused_in_flight.fetch_add(1, Ordering::Relaxed);
            return Err(self.refuse(Exceeded::InFlight { max: share }, clock()));
        }
        let mut now = 0;
        let verdict = self.rate.check(
            || {
                now = clock();
                now
            },
            replicas,
        );
        match verdict {
            Verdict::Allowed { .. } => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Admission { limiter: self })
            }
            Verdict::Refused { retry_after } => {
                self.leave();
                self.refused_rate.fetch_add(1, Ordering::Relaxed);
                let burst = (self.rate.burst() / replicas.max(1)).max(1);
                Err(self.refuse(Exceeded::Rate { burst, retry_after }, now))
            }
        }
    }

    fn refuse(&self, exceeded: Exceeded, now: u64) -> Refusal {
        let second = now / 1_000_000_000 + 1;
        let warned = self.warned.load(Ordering::Relaxed);
        if (warned == 0 || second >= warned + WARN_EVERY.as_secs())
            && self
                .warned
                .compare_exchange(warned, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                account = %self.name,
                limit = exceeded.name(),
                "account over its limit; its requests get 429 (told at most every {}s)",
                WARN_EVERY.as_secs()
            );
        }
        Refusal {
            account: self.name.clone(),
            exceeded,
        }
    }
}

/// A request admitted: it counts as in flight for its account until dropped (with the
/// response's body, or earlier when the request fails), however its future ends.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<Limiter>,
}

impl Admission {
    /// The account's lane in the nodes' fair queues.
    pub fn lane(&self) -> Lane {
        Lane {
            id: Arc::as_ptr(&self.limiter) as usize,
            weight: self.limiter.weight.load(Ordering::Relaxed),
        }
    }

    /// Counts time the request waited for an upstream slot.
    pub fn waited(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.limiter
            .waited_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limiter.leave();
    }
}

/// Which limit a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The rate: `burst` requests at once, the next in `retry_after` nanoseconds.
    Rate { burst: u32, retry_after: u64 },
    /// `max` requests in flight.
    InFlight { max: u32 },
}

impl Exceeded {
    /// As the access log and the metrics' `limit` label name it.
    pub fn name(&self) -> &'static str {
        match self {
            Exceeded::Rate { .. } => "rate",
            Exceeded::InFlight { .. } => "max_in_flight",
        }
    }
}

/// A request refused by its account's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub account: Box<str>,
    pub exceeded: Exceeded,
}

impl Refusal {
    /// Whole seconds until a retry may succeed (at least 1, as `Retry-After` counts).
    pub fn retry_after(&self) -> u64 {
        match self.exceeded {
            Exceeded::Rate { retry_after, .. } => retry_after.div_ceil(1_000_000_000).max(1),
            Exceeded::InFlight { .. } => 1,
        }
    }

    /// The limit as `RateLimit-Limit` says it: the requests that may come at once.
    pub fn quota(&self) -> u32 {
        match self.exceeded {
            Exceeded::Rate { burst, .. } => burst,
            Exceeded::InFlight { max } => max,
        }
    }
}

/// Nanoseconds on the limits' clock: monotonic, from the first use (never 0).
fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}
