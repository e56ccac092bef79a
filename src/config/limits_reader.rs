//! `[limits]` and the same keys in each `[[service_accounts]]` entry: how much of the cluster
//! one account (or one forwarded file-realm user) may take.

use std::fmt;
use std::time::Duration;

use toml::Value;

use super::reader::{Reader, Section};
use crate::identity::AccountId;

/// Per-account limits: the default for every account and forwarded user, and each account's
/// own settings over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub default: LimitSettings,
    pub accounts: Vec<(AccountId, LimitSettings)>,
}

impl LimitsConfig {
    /// What `account` gets: its own settings, key by key, over the default.
    pub fn for_account(&self, account: &AccountId) -> Limit {
        let own = self
            .accounts
            .iter()
            .find(|(id, _)| id == account)
            .map(|(_, settings)| *settings)
            .unwrap_or_default();
        own.over(&self.default).resolve()
    }

    /// What a forwarded file-realm user gets: the default.
    pub fn for_user(&self) -> Limit {
        self.default.resolve()
    }
}

/// The limit keys as written: any may be absent (then the default's, then none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub rate: Option<Rate>,
    pub burst: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub weight: Option<u32>,
}

impl LimitSettings {
    fn over(self, default: &LimitSettings) -> LimitSettings {
        LimitSettings {
            rate: self.rate.or(default.rate),
            // A burst belongs to its rate: an account with a rate of its own does not inherit
            // a burst sized for the default's.
            burst: if self.rate.is_some() {
                self.burst
            } else {
                self.burst.or(default.burst)
            },
            max_in_flight: self.max_in_flight.or(default.max_in_flight),
            weight: self.weight.or(default.weight),
        }
    }

    fn resolve(self) -> Limit {
        Limit {
            rate: self.rate,
            burst: self
                .burst
                .unwrap_or_else(|| self.rate.map_or(1, Rate::default_burst)),
            max_in_flight: self.max_in_flight,
            weight: self.weight.unwrap_or(1),
        }
    }
}

/// One account's limits, every default applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per period; `None`: no rate limit.
    pub rate: Option<Rate>,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
    /// Requests admitted and not yet answered; `None`: no limit.
    pub max_in_flight: Option<u32>,
    /// Its share of a contended node's slots against other accounts'.
    pub weight: u32,
}

/// `count` requests every `per`: `"200/s"`, `"6000/m"`, `"50/10s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The time between two requests at this rate, in nanoseconds (at least 1).
    pub fn interval_nanos(&self) -> u64 {
        let nanos = self.per.as_nanos() / u128::from(self.count.max(1));
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }

    /// One period's worth, or one second's when the period is longer: a client may send what
    /// it is allowed in a second at once.
    fn default_burst(self) -> u32 {
        let per_second = u128::from(self.count) * 1_000_000_000 / self.per.as_nanos().max(1);
        let burst = if self.per <= Duration::from_secs(1) {
            u128::from(self.count)
        } else {
            per_second
        };
        u32::try_from(burst).unwrap_or(u32::MAX).max(1)
    }

    fn parse(text: &str) -> Option<Rate> {
        let (count, per) = text.split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).ok()?,
        };
        (!per.is_zero()).then_some(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    /// As written in the configuration: `200/s`, `6000/m`, `50/10s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.count),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/m", self.count),
            3600 if self.per.subsec_nanos() == 0 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

/// Weights beyond this would let one account's turn last longer than a client waits.
const MAX_WEIGHT: u32 = 1000;

impl Reader<'_> {
    /// `[limits]`: the default for every account; the accounts' own come from their entries.
    pub(super) fn limits_default(&mut self) -> LimitSettings {
        let mut section = self.section("limits");
        let settings = self.limit_settings(&mut section, "");
        self.finish(&section);
        settings
    }

    /// The limit keys of `section`, reported under `label` (`#2.` for an account entry).
    pub(super) fn limit_settings(&mut self, section: &mut Section, label: &str) -> LimitSettings {
        let rate = match section.take("rate") {
            None => None,
            Some(Value::String(text)) => {
                let rate = Rate::parse(&text);
                if rate.is_none() {
                    self.problem(
                        section.name,
                        &format!("{label}rate"),
                        &format!("expected a rate like \"200/s\", \"6000/m\" or \"50/10s\", found \"{text}\""),
                    );
                }
                rate
            }
            Some(other) => {
                self.problem(
                    section.name,
                    &format!("{label}rate"),
                    &format!("expected a rate like \"200/s\", found {other}"),
                );
                None
            }
        };
        let burst = self.limit_number(section, label, "burst", u32::MAX);
        if burst.is_some() && rate.is_none() {
            self.problem(
                section.name,
                &format!("{label}burst"),
                "a burst needs a rate in the same table",
            );
        }
        LimitSettings {
            rate,
            burst,
            max_in_flight: self.limit_number(section, label, "max_in_flight", u32::MAX),
            weight: self.limit_number(section, label, "weight", MAX_WEIGHT),
        }
    }

    /// A whole number from 1 to `max`, when set.
    fn limit_number(
        &mut self,
        section: &mut Section,
        label: &str,
        key: &str,
        max: u32,
    ) -> Option<u32> {
        let value = section.take(key)?;
        let number = match &value {
            Value::Integer(n) => u32::try_from(*n).ok().filter(|n| (1..=max).contains(n)),
            _ => None,
        };
        if number.is_none() {
            self.problem(
                section.name,
                &format!("{label}{key}"),
                &format!("expected a whole number from 1 to {max}, found {value}"),
            );
        }
        number
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn read(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml("t", text, &Overrides::default())
    }

    #[test]
    fn rates_read_as_written() {
        let rate = |t: &str| Rate::parse(t).map(|r| (r.count, r.per, r.to_string()));
        assert_eq!(
            rate("200/s"),
            Some((200, Duration::from_secs(1), "200/s".into()))
        );
        assert_eq!(
            rate("6000/m"),
            Some((6000, Duration::from_secs(60), "6000/m".into()))
        );
        assert_eq!(
            rate("50/10s"),
            Some((50, Duration::from_secs(10), "50/10s".into()))
        );
        for bad in [
            "",
            "200",
            "0/s",
            "-1/s",
            "200/",
            "200/fortnight",
            "x/s",
            "5/0s",
        ] {
            assert_eq!(rate(bad), None, "{bad}");
        }
        assert_eq!(
            Rate::parse("200/s").map(|r| r.interval_nanos()),
            Some(5_000_000)
        );
    }

    #[test]
    fn an_account_takes_its_own_keys_over_the_default() {
        let config = read(
            r#"
            [limits]
            rate = "100/s"
            burst = 300
            max_in_flight = 10
            [[service_accounts]]
            account = "acme/ingest"
            rate = "20/s"
            weight = 3
            [[service_accounts]]
            account = "acme/search"
            max_in_flight = 2
            "#,
        )
        .unwrap();
        let limits = &config.limits;
        let ingest = limits.for_account(&AccountId::parse("acme/ingest").unwrap());
        // Its own rate, so not the default's burst: one second of its own rate.
        assert_eq!(ingest.rate.map(|r| r.count), Some(20));
        assert_eq!(
            (ingest.burst, ingest.max_in_flight, ingest.weight),
            (20, Some(10), 3)
        );
        let search = limits.for_account(&AccountId::parse("acme/search").unwrap());
        assert_eq!(search.rate.map(|r| r.count), Some(100));
        assert_eq!(
            (search.burst, search.max_in_flight, search.weight),
            (300, Some(2), 1)
        );
        let fleet = limits.for_account(&AccountId::parse("elastic/fleet-server").unwrap());
        assert_eq!((fleet.burst, fleet.max_in_flight), (300, Some(10)));
        assert_eq!(limits.for_user(), limits.default.resolve());
    }

    #[test]
    fn no_limits_by_default() {
        let config = read("").unwrap();
        let limit = config.limits.for_user();
        assert_eq!(limit.rate, None);
        assert_eq!(limit.max_in_flight, None);
        assert_eq!(limit.weight, 1);
    }

    #[test]
    fn bad_limits_are_named() {
        let error = read(
            r#"
            [limits]
            rate = "fast"
            max_in_flight = 0
            [[service_accounts]]
            account = "acme/a"
            burst = 5
            weight = 5000
            "#,
        )
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "[limits] rate: expected a rate like",
            "[limits] max_in_flight: expected a whole number from 1 to",
            "[service_accounts] #0.burst: a burst needs a rate in the same table",
            "[service_accounts] #0.weight: expected a whole number from 1 to 1000, found 5000",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
