//! The `[security]` keys that bound what failed authentications may cost.

use std::num::NonZeroU32;

use super::reader::{Reader, Section};
use super::AuthThrottle;

impl Reader<'_> {
    /// The throttle keys of `[security]`. A 0 that would switch a limit off or make it
    /// meaningless is a problem naming the key; `password_workers` and `password_queue` take 0
    /// for "sized from the cores".
    pub(super) fn auth_throttle(&mut self, security: &mut Section) -> AuthThrottle {
        let optional = |n: usize| (n > 0).then_some(n);
        AuthThrottle {
            failed_per_minute: self.positive_u32(
                security,
                "failed_auth_per_minute",
                AuthThrottle::DEFAULT_FAILED_PER_MINUTE,
            ),
            failed_burst: self.positive_u32(
                security,
                "failed_auth_burst",
                AuthThrottle::DEFAULT_FAILED_BURST,
            ),
            max_addresses: self.positive_count(
                security,
                "failed_auth_max_addresses",
                AuthThrottle::DEFAULT_MAX_ADDRESSES,
            ),
            password_workers: optional(self.count(security, "password_workers", 0)),
            password_queue: optional(self.count(security, "password_queue", 0)),
            failed_password_cache: self.positive_count(
                security,
                "failed_password_cache",
                AuthThrottle::DEFAULT_FAILED_PASSWORD_CACHE,
            ),
            failed_password_ttl: self.duration(
                security,
                "failed_password_ttl",
                AuthThrottle::DEFAULT_FAILED_PASSWORD_TTL,
            ),
        }
    }

    /// A rate or burst: governor counts cells in `u32`, and 0 would admit nothing.
    fn positive_u32(
        &mut self,
        section: &mut Section,
        key: &str,
        default: NonZeroU32,
    ) -> NonZeroU32 {
        let fallback = usize::try_from(default.get()).unwrap_or(usize::MAX);
        let n = self.positive_count(section, key, fallback);
        match u32::try_from(n).ok().and_then(NonZeroU32::new) {
            Some(n) => n,
            None => {
                self.problem(
                    section.name,
                    key,
                    &format!("must be at most {}, found {n}", u32::MAX),
                );
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{AuthThrottle, Config, Overrides};

    fn throttle(text: &str) -> AuthThrottle {
        Config::from_toml("t", text, &Overrides::default())
            .unwrap()
            .security
            .throttle
    }

    #[test]
    fn defaults_apply_and_zero_sizes_from_the_cores() {
        assert_eq!(throttle(""), AuthThrottle::default());
        let t = throttle("[security]\npassword_workers = 0\npassword_queue = 0\n");
        assert_eq!((t.password_workers, t.password_queue), (None, None));
        assert!(t.workers() >= 1);
        assert_eq!(t.queue(), t.workers() * AuthThrottle::QUEUE_PER_WORKER);
    }

    #[test]
    fn every_key_is_read() {
        let t = throttle(
            "[security]\nfailed_auth_per_minute = 6\nfailed_auth_burst = 2\n\
             failed_auth_max_addresses = 10\npassword_workers = 3\npassword_queue = 1\n\
             failed_password_cache = 5\nfailed_password_ttl = \"2s\"\n",
        );
        assert_eq!(t.failed_per_minute.get(), 6);
        assert_eq!(t.failed_burst.get(), 2);
        assert_eq!(t.max_addresses, 10);
        assert_eq!((t.workers(), t.queue()), (3, 1));
        assert_eq!(t.failed_password_cache, 5);
        assert_eq!(t.failed_password_ttl, Duration::from_secs(2));
    }

    #[test]
    fn meaningless_zeros_and_overflows_name_their_keys() {
        let text = "[security]\nfailed_auth_per_minute = 0\nfailed_auth_burst = 4294967296\n\
                    failed_auth_max_addresses = 0\nfailed_password_cache = 0\n\
                    failed_password_ttl = \"0s\"\n";
        let error = Config::from_toml("t", text, &Overrides::default()).unwrap_err();
        let all = error.problems.join("\n");
        for key in [
            "[security] failed_auth_per_minute: must be at least 1",
            "[security] failed_auth_burst: must be at most 4294967295",
            "[security] failed_auth_max_addresses: must be at least 1",
            "[security] failed_password_cache: must be at least 1",
            "[security] failed_password_ttl",
        ] {
            assert!(all.contains(key), "missing {key} in {all}");
        }
        assert_eq!(error.problems.len(), 5, "{all}");
    }
}
