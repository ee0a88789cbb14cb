//! Certificate settings (`[certs]`): the lifetimes the CA signs. Every
//! lifetime is at least a second and at most [`MAX_TTL_CEILING`], and the
//! default never exceeds the maximum, so the policy can trust them.

use std::time::Duration;

use serde::Deserialize;

use super::duration_field;

/// Longest certificate lifetime the CA will ever be configured to sign.
pub const MAX_TTL_CEILING: Duration = Duration::from_secs(60 * 60);

/// Certificate lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct CertSettings {
    /// Lifetime when the client does not ask for one.
    pub default_ttl: Duration,
    /// Longest lifetime ever signed.
    pub max_ttl: Duration,
    /// How far before "now" `valid_after` is set, for clients with slow clocks.
    pub backdate: Duration,
}

impl Default for CertSettings {
    fn default() -> Self {
        CertSettings {
            default_ttl: Duration::from_secs(5 * 60),
            max_ttl: MAX_TTL_CEILING,
            backdate: Duration::from_secs(60),
        }
    }
}

/// The `[certs]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCerts {
    #[serde(default = "default_ttl")]
    default_ttl: String,
    #[serde(default = "default_max_ttl")]
    max_ttl: String,
    #[serde(default = "default_backdate")]
    backdate: String,
}

impl Default for RawCerts {
    fn default() -> Self {
        RawCerts {
            default_ttl: default_ttl(),
            max_ttl: default_max_ttl(),
            backdate: default_backdate(),
        }
    }
}

fn default_ttl() -> String {
    "5m".into()
}
fn default_max_ttl() -> String {
    "60m".into()
}
fn default_backdate() -> String {
    "60s".into()
}

impl RawCerts {
    pub(super) fn check(&self) -> Result<CertSettings, String> {
        let certs = CertSettings {
            default_ttl: duration_field("certs.default_ttl", &self.default_ttl)?,
            max_ttl: duration_field("certs.max_ttl", &self.max_ttl)?,
            backdate: duration_field("certs.backdate", &self.backdate)?,
        };
        if certs.max_ttl > MAX_TTL_CEILING || certs.max_ttl.is_zero() {
            return Err(format!(
                "certs.max_ttl must be between 1s and {}m",
                MAX_TTL_CEILING.as_secs() / 60
            ));
        }
        if certs.default_ttl.is_zero() || certs.default_ttl > certs.max_ttl {
            return Err("certs.default_ttl must be at least 1s and at most certs.max_ttl".into());
        }
        if certs.backdate > Duration::from_secs(600) {
            return Err("certs.backdate must be at most 10m".into());
        }
        Ok(certs)
    }
}
