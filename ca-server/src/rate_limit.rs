//! Per-identity and per-address request limits, so that one runaway script or
//! one noisy network cannot slow everybody else down.
//!
//! Each key (an identity's stable key, its issuer and `sub`, never its
//! display name, which two people may share; or a client address) has its
//! own token bucket refilled at the configured rate per minute, with a burst
//! of the same size. Requests over the limit are refused at once with the time
//! after which a retry can succeed; nothing is queued.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::identity::IdentityKey;

/// How long a refused client should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1 (for the `Retry-After` header).
    pub fn seconds(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

/// The limits of one server.
pub struct RateLimits {
    per_identity: Option<DefaultKeyedRateLimiter<IdentityKey>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limits of `per_identity` and `per_address` requests per minute; 0
    /// turns a limit off.
    pub fn new(per_identity: u32, per_address: u32) -> RateLimits {
        RateLimits {
            per_identity: keyed_limiter(per_identity),
            per_address: keyed_limiter(per_address),
            clock: DefaultClock::default(),
        }
    }

    /// No limits.
    pub fn disabled() -> RateLimits {
        RateLimits::new(0, 0)
    }

    /// Counts a request from `address`. IPv6 addresses count by their /64:
    /// one host usually holds a whole /64 and could otherwise pick a fresh
    /// address (and bucket) for every request. An IPv4 client of a
    /// dual-stack listener (`::ffff:a.b.c.d`) counts as its IPv4 address, not
    /// in the /64 that all IPv4 clients share.
    pub fn check_address(&self, address: IpAddr) -> Result<(), RetryAfter> {
        let key = match address.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
            v4 => v4,
        };
        self.check(self.per_address.as_ref(), &key)
    }

    /// Counts a request by the identity with key `identity`.
    pub fn check_identity(&self, identity: &IdentityKey) -> Result<(), RetryAfter> {
        self.check(self.per_identity.as_ref(), identity)
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), RetryAfter> {
        match limiter {
            Some(limiter) => limiter
                .check_key(key)
                .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now()))),
            None => Ok(()),
        }
    }

    /// Drops the state of keys whose buckets are full again, bounding memory.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_identity {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn keyed_limiter<K: Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str) -> IdentityKey {
        IdentityKey {
            issuer: "https://corp.example".into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn one_identity_over_its_limit_does_not_affect_another() {
        let limits = RateLimits::new(3, 0);
        for _ in 0..3 {
            assert_eq!(limits.check_identity(&key("user-alice")), Ok(()));
        }
        let refused = limits
            .check_identity(&key("user-alice"))
            .expect_err("fourth in a minute");
        assert!(
            refused.0 <= Duration::from_secs(20) && refused.seconds() >= 1,
            "{refused:?}"
        );
        assert_eq!(limits.check_identity(&key("user-bob")), Ok(()));
        // Another issuer's user-alice is someone else.
        let elsewhere = IdentityKey {
            issuer: "https://other.example".into(),
            ..key("user-alice")
        };
        assert_eq!(limits.check_identity(&elsewhere), Ok(()));
        assert_eq!(
            limits.check_address(IpAddr::from([10, 0, 0, 1])),
            Ok(()),
            "off"
        );
    }

    #[test]
    fn addresses_are_limited_separately() {
        let limits = RateLimits::new(0, 1);
        let a = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(limits.check_address(a), Ok(()));
        assert!(limits.check_address(a).is_err());
        assert_eq!(limits.check_address(IpAddr::from([192, 0, 2, 2])), Ok(()));
        let host: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(limits.check_address(host), Ok(()));
        assert!(limits.check_address(same_64).is_err(), "same /64");
        assert_eq!(limits.check_address(other_64), Ok(()));
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().expect("mapped");
        let mapped_neighbour: IpAddr = "::ffff:198.51.100.2".parse().expect("mapped");
        assert_eq!(limits.check_address(mapped), Ok(()));
        assert_eq!(limits.check_address(mapped_neighbour), Ok(()), "own bucket");
        assert!(
            limits
                .check_address(IpAddr::from([198, 51, 100, 1]))
                .is_err(),
            "the same client as plain IPv4"
        );
        limits.forget_idle();
    }
}
