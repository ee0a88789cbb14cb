//! Limits and timeouts: token clock skew, request deadline and concurrency,
//! discovery attempts, rate limits, how long an access request waits, how
//! often key sets are refetched, and what one connection may hold (its
//! header, body and idle deadlines, connections per address and in all).
//! Each is bounded here, so the server never runs with a limit that disables
//! itself (zero in-flight requests, a zero timeout, no connection allowed)
//! or one that defeats its purpose (a minute of token skew, a key set
//! refetched every second from a remote provider, a connection that may sit
//! silent for an hour).

use std::time::Duration;

use super::{duration_field, IssuerConfig, RawConfig};
use crate::oidc::JwksRefresh;

/// Largest clock-skew allowance for ID tokens.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// Certificate requests per minute one identity may make by default.
pub const DEFAULT_RATE_LIMIT_PER_IDENTITY: u32 = 30;
/// Certificate requests per minute one client address may make by default.
pub const DEFAULT_RATE_LIMIT_PER_ADDRESS: u32 = 600;

/// What one connection may take, and how many there may be: the deadlines
/// that end a slow or silent client's connection, and the caps past which a
/// new connection is closed as soon as it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a connection's first byte, or the end of its previous request,
    /// until its request line and headers have all arrived (HTTP/1.1); the
    /// TLS handshake gets as long.
    pub header_read_timeout: Duration,
    /// From the end of the headers until the whole body has arrived.
    pub body_timeout: Duration,
    /// Longest a connection may stay open with no request in progress and
    /// no byte moving either way (HTTP/2 included).
    pub idle_timeout: Duration,
    /// Connections open at once, from everyone.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_address: usize,
}

/// Connections open at once from everyone, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections open at once from one client address, by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Longest any connection deadline may be.
const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

impl ConnectionLimits {
    fn check(raw: &RawConfig) -> Result<ConnectionLimits, String> {
        let deadline = |name: &str, value: &str| {
            let duration = duration_field(name, value)?;
            if duration < Duration::from_secs(1) || duration > MAX_CONNECTION_TIMEOUT {
                return Err(format!("{name} must be between 1s and 10m"));
            }
            Ok(duration)
        };
        let limits = ConnectionLimits {
            header_read_timeout: deadline("header_read_timeout", &raw.header_read_timeout)?,
            body_timeout: deadline("body_timeout", &raw.body_timeout)?,
            idle_timeout: deadline("idle_timeout", &raw.idle_timeout)?,
            max_connections: raw.max_connections,
            max_connections_per_address: raw.max_connections_per_address,
        };
        if limits.max_connections == 0 || limits.max_connections_per_address == 0 {
            return Err(
                "max_connections and max_connections_per_address must be at least 1".into(),
            );
        }
        if limits.max_connections_per_address > limits.max_connections {
            return Err("max_connections_per_address must be at most max_connections".into());
        }
        Ok(limits)
    }
}

/// The checked limits, each becoming the [`Config`](super::Config) field
/// of the same name.
pub(super) struct Limits {
    pub(super) connections: ConnectionLimits,
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
            connections: ConnectionLimits::check(raw)?,
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
pub(super) fn default_header_read_timeout() -> String {
    "10s".into()
}
pub(super) fn default_body_timeout() -> String {
    "10s".into()
}
pub(super) fn default_idle_timeout() -> String {
    "60s".into()
}
pub(super) fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
pub(super) fn default_max_connections_per_address() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
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

    use super::ConnectionLimits;

    #[test]
    fn connection_limits_default_and_refuse_what_disables_them() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.connections, ConnectionLimits::default());
        let with = |lines: &str| parse(&MINIMAL.replace("data_dir", &format!("{lines}\ndata_dir")));
        let config = with(
            "header_read_timeout = \"2s\"\nbody_timeout = \"3s\"\nidle_timeout = \"4s\"\n\
             max_connections = 10\nmax_connections_per_address = 5",
        )
        .expect("valid");
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(2),
                body_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(4),
                max_connections: 10,
                max_connections_per_address: 5,
            }
        );
        for (bad, says) in [
            ("header_read_timeout = \"0s\"", "header_read_timeout"),
            ("body_timeout = \"1h\"", "body_timeout"),
            ("idle_timeout = \"500ms\"", "idle_timeout"),
            ("max_connections = 0", "max_connections"),
            (
                "max_connections_per_address = 0",
                "max_connections_per_address",
            ),
            (
                "max_connections = 4\nmax_connections_per_address = 5",
                "at most",
            ),
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

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
