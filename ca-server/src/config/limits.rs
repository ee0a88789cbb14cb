//! Limits and timeouts: token clock skew, request deadline and concurrency,
//! discovery attempts, rate limits, how long an access request waits, and
//! how often key sets are refetched. Each is bounded here, so the server
//! never runs with a limit that disables itself (zero in-flight requests, a
//! zero timeout) or one that defeats its purpose (a minute of token skew, a
//! key set refetched every second from a remote provider).

use std::time::Duration;

use super::{duration_field, IssuerConfig, RawConfig};
use crate::oidc::JwksRefresh;

/// Largest clock-skew allowance for ID tokens.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// Certificate requests per minute one identity may make by default.
pub const DEFAULT_RATE_LIMIT_PER_IDENTITY: u32 = 30;
/// Certificate requests per minute one client address may make by default.
pub const DEFAULT_RATE_LIMIT_PER_ADDRESS: u32 = 600;

/// The checked limits, each becoming the [`Config`](super::Config) field
/// of the same name.
pub(super) struct Limits {
    pub(super) token_leeway: Duration,
    pub(super) request_timeout: Duration,
    pub(super) max_in_flight: usize,
    pub(super) discovery_attempts: u32,
    pub(super) rate_limit_per_identity: u32,
    pub(super) rate_limit_per_address: u32,
    pub(super) access_request_pending: Duration,
    pub(super) jwks_refresh: JwksRefresh,
}

impl Limits {
    /// Checks the limits of `raw`; `issuers` (already checked) decide how
    /// low the key-set refresh may go.
    pub(super) fn check(raw: &RawConfig, issuers: &[IssuerConfig]) -> Result<Limits, String> {
        let token_leeway = duration_field("token_leeway", &raw.token_leeway)?;
        if token_leeway > MAX_TOKEN_LEEWAY {
            return Err("token_leeway must be at most 60s".into());
        }
        let request_timeout = duration_field("request_timeout", &raw.request_timeout)?;
        if request_timeout.is_zero() {
            return Err("request_timeout must be at least 1s".into());
        }
        if raw.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if raw.discovery_attempts == 0 || raw.discovery_attempts > 20 {
            return Err("discovery_attempts must be between 1 and 20".into());
        }
        let access_request_pending =
            duration_field("access_request_pending", &raw.access_request_pending)?;
        if access_request_pending.is_zero() || access_request_pending > Duration::from_secs(86_400)
        {
            return Err("access_request_pending must be between 1s and 24h".into());
        }
        let jwks_refresh = JwksRefresh {
            min: duration_field("jwks_refresh_min", &raw.jwks_refresh_min)?,
            max: duration_field("jwks_refresh_max", &raw.jwks_refresh_max)?,
        };
        let all_loopback = issuers.iter().all(|i| {
            reqwest::Url::parse(&i.issuer)
                .is_ok_and(|url| ca_proto::is_loopback_host(url.host_str()))
        });
        let (floor, shown) = match all_loopback {
            true => (JwksRefresh::LOOPBACK_FLOOR, "1s"),
            false => (JwksRefresh::FLOOR, "5m"),
        };
        if jwks_refresh.min < floor || jwks_refresh.min > jwks_refresh.max {
            return Err(format!(
                "jwks_refresh_min must be at least {shown} and at most jwks_refresh_max \
                 (below 5m only when every [[oidc]] issuer is on loopback)"
            ));
        }
        if jwks_refresh.max > JwksRefresh::CEILING {
            return Err("jwks_refresh_max must be at most 24h".into());
        }
        Ok(Limits {
            token_leeway,
            request_timeout,
            max_in_flight: raw.max_in_flight,
            discovery_attempts: raw.discovery_attempts,
            rate_limit_per_identity: raw.rate_limit_per_identity,
            rate_limit_per_address: raw.rate_limit_per_address,
            access_request_pending,
            jwks_refresh,
        })
    }
}

pub(super) fn default_token_leeway() -> String {
    "60s".into()
}
pub(super) fn default_request_timeout() -> String {
    "10s".into()
}
pub(super) fn default_max_in_flight() -> usize {
    1024
}
pub(super) fn default_access_request_pending() -> String {
    "1h".into()
}
pub(super) fn default_discovery_attempts() -> u32 {
    5
}
pub(super) fn default_jwks_refresh_min() -> String {
    "5m".into()
}
pub(super) fn default_jwks_refresh_max() -> String {
    "24h".into()
}
pub(super) fn default_rate_limit_per_identity() -> u32 {
    DEFAULT_RATE_LIMIT_PER_IDENTITY
}
pub(super) fn default_rate_limit_per_address() -> u32 {
    DEFAULT_RATE_LIMIT_PER_ADDRESS
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{parse, MINIMAL};
    use crate::oidc::JwksRefresh;

    #[test]
    fn jwks_refresh_bounds_go_below_five_minutes_only_for_loopback_providers() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.jwks_refresh, JwksRefresh::default());
        let narrow = MINIMAL.replace(
            "data_dir",
            "jwks_refresh_min = \"10m\"\njwks_refresh_max = \"30m\"\ndata_dir",
        );
        let config = parse(&narrow).expect("valid");
        assert_eq!(config.jwks_refresh.min, Duration::from_secs(600));
        assert_eq!(config.jwks_refresh.max, Duration::from_secs(1800));
        let quick = "jwks_refresh_min = \"1s\"\njwks_refresh_max = \"1s\"\ndata_dir";
        let err = parse(&MINIMAL.replace("data_dir", quick)).expect_err("remote provider");
        assert!(err.contains("loopback"), "{err}");
        let local = MINIMAL
            .replace("https://idp.example.com", "http://127.0.0.1:9000")
            .replace("data_dir", quick);
        let config = parse(&local).expect("loopback provider");
        assert_eq!(config.jwks_refresh.min, Duration::from_secs(1));
    }
}
