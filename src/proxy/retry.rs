//! When a failed attempt may be repeated on another node, and how many repeats a sick cluster
//! gets: a budget as linkerd's and Envoy's, so retries add at most a set share of load.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use http::Method;

use super::nodes::now_ms;
use super::outbound::Outbound;
use crate::config::RetryPolicy;

/// Retries are paid from a balance every request adds to; the floor refills each second.
pub struct RetryBudget {
    /// In thousandths of a retry.
    balance: AtomicI64,
    /// Thousandths of a retry each request earns (`budget_percent` × 10).
    earn: i64,
    /// Thousandths of a retry granted each second whatever the traffic.
    floor: i64,
    /// The balance never grows past ten seconds' floor plus what 1,000 requests earn, so a
    /// quiet hour does not save up a storm.
    cap: i64,
    /// The second the floor was last granted, in [`now_ms`] seconds.
    refilled: AtomicU64,
    /// Retries made and refused for want of budget, for metrics.
    pub retried: AtomicU64,
    pub refused: AtomicU64,
}

const UNIT: i64 = 1000;

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        let earn = i64::from(policy.budget_percent) * UNIT / 100;
        let floor = i64::from(policy.min_per_second) * UNIT;
        RetryBudget {
            balance: AtomicI64::new(floor),
            earn,
            floor,
            cap: floor * 10 + earn * 1000,
            refilled: AtomicU64::new(now_ms() / 1000),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A request started: it earns its share of a retry.
    pub fn deposit(&self) {
        if self.earn > 0 && self.balance.load(Ordering::Relaxed) < self.cap {
            self.balance.fetch_add(self.earn, Ordering::Relaxed);
        }
    }

    /// Pays for one retry if the budget allows it.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(now_ms() / 1000)
    }

    /// [`RetryBudget::withdraw`] in the given second of [`now_ms`] time.
    fn withdraw_at(&self, second: u64) -> bool {
        let last = self.refilled.load(Ordering::Relaxed);
        if second > last
            && self
                .refilled
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let balance = self.balance.load(Ordering::Relaxed);
            if balance < self.floor {
                self.balance
                    .fetch_add(self.floor - balance.max(0), Ordering::Relaxed);
            }
        }
        let paid = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok();
        let counter = if paid { &self.retried } else { &self.refused };
        counter.fetch_add(1, Ordering::Relaxed);
        paid
    }
}

/// Whether a request may be sent again unchanged after it went out: an idempotent method and no
/// body (a streamed body is used up by sending it, and never kept for a second time).
pub fn repeatable(method: &Method, body: &Outbound) -> bool {
    body.is_empty() && idempotent(method)
}

/// RFC 9110's idempotent methods: repeating one has the effect of sending it once.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_allows_retries_without_traffic_and_requests_earn_more() {
        let budget = RetryBudget::new(&RetryPolicy {
            max_retries: 2,
            budget_percent: 20,
            min_per_second: 2,
        });
        // Second 0 is never later than the last refill: no refill happens in between.
        assert!(budget.withdraw_at(0));
        assert!(budget.withdraw_at(0));
        assert!(
            !budget.withdraw_at(0),
            "the floor is spent within the second"
        );
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(
            budget.withdraw_at(0),
            "five requests earn one retry at 20 %"
        );
        assert!(!budget.withdraw_at(0));
        assert!(
            budget.withdraw_at(u64::MAX),
            "the next second grants the floor again"
        );
        assert_eq!(budget.retried.load(Ordering::Relaxed), 4);
        assert_eq!(budget.refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_zero_budget_refuses_every_retry() {
        let budget = RetryBudget::new(&RetryPolicy {
            max_retries: 2,
            budget_percent: 0,
            min_per_second: 0,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(!budget.withdraw_at(0));
    }

    #[test]
    fn only_idempotent_methods_repeat_after_the_request_went_out() {
        assert!(
            idempotent(&Method::GET) && idempotent(&Method::PUT) && idempotent(&Method::DELETE)
        );
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
