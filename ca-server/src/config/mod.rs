//! The server configuration: a TOML file read once at start-up into a checked
//! [`Config`].
//!
//! Unknown keys are errors (a misspelt `max_ttl` must not silently mean the
//! default), relative paths are resolved against the file's own directory, and
//! every limit is checked here so the rest of the server can trust it.
//!
//! This file is the whole public face: [`Config`], [`ConfigError`] and the
//! file's schema, `RawConfig`, whose check turns it into a `Config`. Each
//! concern checks its own part, in its own file: `listeners.rs` (`listen`,
//! `metrics_listen`, `[tls]`), `issuers.rs` (`[[oidc]]`), `certs.rs`
//! (`[certs]`), `limits.rs` (limits and timeouts), `webhooks.rs`
//! (`[[webhook]]`), `client.rs` (`[client]`: what `/v1/config` tells clients), and `urls.rs` (the https-or-loopback rule issuers and
//! webhooks share); `reserved_logins` is checked by the policy's
//! [`ReservedLogins`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jit_ssh_common::duration::parse_duration;
use serde::Deserialize;

use crate::oidc::JwksRefresh;
use crate::policy::reserved::ReservedLogins;
use crate::webhook::WebhookTarget;

mod certs;
mod client;
mod issuers;
mod limits;
mod listeners;
#[cfg(test)]
mod testing;
mod urls;
mod webhooks;

pub use certs::{CertSettings, MAX_TTL_CEILING};
pub use client::ClientSettings;
pub use issuers::{
    IssuerConfig, NonceRule, ProviderSettings, UsernameClaim, DEFAULT_NONCE_SESSION,
    MAX_NONCE_SESSION,
};
pub use limits::{
    ConnectionLimits, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_RATE_LIMIT_PER_ADDRESS, DEFAULT_RATE_LIMIT_PER_IDENTITY, MAX_TOKEN_LEEWAY,
};
pub use listeners::{TlsFiles, DEFAULT_METRICS_LISTEN};

use certs::RawCerts;
use client::RawClient;
use issuers::RawIssuer;
use limits::Limits;
use listeners::RawTls;
use webhooks::RawWebhook;

/// Errors reading the configuration; each renders as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type...).
    #[error("config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message, including line and column.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address of the monitoring listener (`/metrics`, `/healthz`,
    /// `/readyz`), apart from the API.
    pub metrics_listen: SocketAddr,
    /// Directory holding the CA keys and the database.
    pub data_dir: PathBuf,
    /// Directory of `*.toml` policy files.
    pub policy_dir: PathBuf,
    /// Where the CA key passphrase is read from; `None` means the environment.
    pub passphrase_file: Option<PathBuf>,
    /// TLS certificate and key, when serving HTTPS.
    pub tls: Option<TlsFiles>,
    /// Trusted OpenID providers.
    pub issuers: Vec<IssuerConfig>,
    /// Certificate lifetimes.
    pub certs: CertSettings,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub token_leeway: Duration,
    /// Longest time one request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Requests processed at once; more are answered 429.
    pub max_in_flight: usize,
    /// Connection deadlines and caps.
    pub connections: ConnectionLimits,
    /// Attempts at OpenID discovery per issuer before start-up fails.
    pub discovery_attempts: u32,
    /// Certificate requests per minute per identity (0: unlimited).
    pub rate_limit_per_identity: u32,
    /// Certificate requests per minute per client address (0: unlimited).
    pub rate_limit_per_address: u32,
    /// How long an access request waits for a decision before it expires.
    pub access_request_pending: Duration,
    /// How often each issuer's key set is refetched.
    pub jwks_refresh: JwksRefresh,
    /// Where access-request events are posted, with their secrets.
    pub webhooks: Vec<WebhookTarget>,
    /// Names principal templates never expand to: the built-in list and
    /// `reserved_logins`.
    pub reserved_logins: ReservedLogins,
    /// What `/v1/config` tells clients beyond sign-in (`[client]`).
    pub client: ClientSettings,
}

impl Config {
    /// A configuration with every default, as an empty file would give,
    /// for the given essentials (dev mode builds its own this way).
    pub fn with_defaults(
        listen: SocketAddr,
        data_dir: PathBuf,
        policy_dir: PathBuf,
        issuers: Vec<IssuerConfig>,
    ) -> Config {
        Config {
            listen,
            metrics_listen: DEFAULT_METRICS_LISTEN,
            data_dir,
            policy_dir,
            passphrase_file: None,
            tls: None,
            issuers,
            certs: CertSettings::default(),
            token_leeway: MAX_TOKEN_LEEWAY,
            request_timeout: Duration::from_secs(10),
            max_in_flight: limits::default_max_in_flight(),
            connections: ConnectionLimits::default(),
            discovery_attempts: limits::default_discovery_attempts(),
            rate_limit_per_identity: DEFAULT_RATE_LIMIT_PER_IDENTITY,
            rate_limit_per_address: DEFAULT_RATE_LIMIT_PER_ADDRESS,
            access_request_pending: Duration::from_secs(crate::access::DEFAULT_PENDING_SECS),
            jwks_refresh: JwksRefresh::default(),
            webhooks: Vec::new(),
            reserved_logins: ReservedLogins::default(),
            client: ClientSettings::default(),
        }
    }

    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ParseError::Syntax(message) => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ParseError::Invalid(message) => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    /// Parses config text; relative paths are taken from `base`.
    fn parse(text: &str, base: &Path) -> Result<Config, ParseError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ParseError::Syntax(one_line(&e.to_string())))?;
        raw.check(base).map_err(ParseError::Invalid)
    }
}

/// The file as written: every key, with its default, and no other.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    #[serde(default = "listeners::default_metrics_listen")]
    metrics_listen: String,
    data_dir: PathBuf,
    #[serde(default = "default_policy_dir")]
    policy_dir: PathBuf,
    passphrase_file: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default)]
    oidc: Vec<RawIssuer>,
    #[serde(default)]
    certs: RawCerts,
    #[serde(default = "limits::default_token_leeway")]
    token_leeway: String,
    #[serde(default = "limits::default_request_timeout")]
    request_timeout: String,
    #[serde(default = "limits::default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "limits::default_header_read_timeout")]
    header_read_timeout: String,
    #[serde(default = "limits::default_body_timeout")]
    body_timeout: String,
    #[serde(default = "limits::default_idle_timeout")]
    idle_timeout: String,
    #[serde(default = "limits::default_max_connections")]
    max_connections: usize,
    #[serde(default = "limits::default_max_connections_per_address")]
    max_connections_per_address: usize,
    #[serde(default = "limits::default_discovery_attempts")]
    discovery_attempts: u32,
    #[serde(default = "limits::default_rate_limit_per_identity")]
    rate_limit_per_identity: u32,
    #[serde(default = "limits::default_rate_limit_per_address")]
    rate_limit_per_address: u32,
    #[serde(default = "limits::default_access_request_pending")]
    access_request_pending: String,
    #[serde(default = "limits::default_jwks_refresh_min")]
    jwks_refresh_min: String,
    #[serde(default = "limits::default_jwks_refresh_max")]
    jwks_refresh_max: String,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
    #[serde(default)]
    reserved_logins: Vec<String>,
    #[serde(default)]
    client: RawClient,
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}

enum ParseError {
    Syntax(String),
    Invalid(String),
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration in the one grammar, its error naming the key it came from.
fn duration_field(name: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("{name}: {e}"))
}

impl RawConfig {
    /// Checks each concern in turn, so that a file with several mistakes
    /// reports the first of them in this order: listeners, issuers,
    /// certificates, limits, webhooks, reserved logins.
    fn check(mut self, base: &Path) -> Result<Config, String> {
        let (listen, metrics_listen) =
            listeners::check_listeners(&self.listen, &self.metrics_listen, self.tls.is_some())?;
        let issuers = issuers::check_issuers(std::mem::take(&mut self.oidc))?;
        let certs = self.certs.check()?;
        let limits = Limits::check(&self, &issuers)?;
        let webhooks = self
            .webhook
            .into_iter()
            .map(|w| w.check(base))
            .collect::<Result<Vec<_>, _>>()?;
        let reserved_logins = ReservedLogins::with_extra(&self.reserved_logins)?;
        let client = self.client.check()?;
        Ok(Config {
            listen,
            metrics_listen,
            data_dir: base.join(self.data_dir),
            policy_dir: base.join(self.policy_dir),
            passphrase_file: self.passphrase_file.map(|p| base.join(p)),
            tls: self.tls.map(|t| TlsFiles {
                cert: base.join(t.cert),
                key: base.join(t.key),
            }),
            issuers,
            certs,
            token_leeway: limits.token_leeway,
            request_timeout: limits.request_timeout,
            max_in_flight: limits.max_in_flight,
            connections: limits.connections,
            discovery_attempts: limits.discovery_attempts,
            rate_limit_per_identity: limits.rate_limit_per_identity,
            rate_limit_per_address: limits.rate_limit_per_address,
            access_request_pending: limits.access_request_pending,
            jwks_refresh: limits.jwks_refresh,
            webhooks,
            reserved_logins,
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{parse, MINIMAL};
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/etc/jit/data"));
        assert_eq!(config.policy_dir, PathBuf::from("/etc/jit/policies"));
        assert_eq!(config.certs.default_ttl, Duration::from_secs(300));
        assert_eq!(config.certs.max_ttl, Duration::from_secs(3600));
        assert_eq!(config.token_leeway, Duration::from_secs(60));
        assert_eq!(config.metrics_listen.to_string(), "127.0.0.1:9464");
        let issuer = &config.issuers[0];
        assert_eq!(issuer.username_claim, UsernameClaim::PreferredUsername);
        assert_eq!(issuer.groups_claim, "groups");
        assert!(issuer.scopes.contains(&"offline_access".to_string()));
        assert_eq!(issuer.nonce, NonceRule::default());
        assert!(issuer.nonce.required);
    }

    #[test]
    fn built_in_defaults_match_an_empty_file() {
        let parsed = parse(MINIMAL).expect("valid");
        let built = Config::with_defaults(
            parsed.listen,
            parsed.data_dir.clone(),
            parsed.policy_dir.clone(),
            parsed.issuers.clone(),
        );
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse(&format!("{MINIMAL}\nmax_ttl = \"5m\"\n")).expect_err("unknown key");
        assert!(err.contains("max_ttl"), "{err}");
        let err = parse(&MINIMAL.replace("client_id", "clientid")).expect_err("unknown key");
        assert!(err.contains("clientid"), "{err}");
    }

    #[test]
    fn reserved_logins_extend_the_built_in_list() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.reserved_logins, ReservedLogins::default());
        let extended = MINIMAL.replace(
            "data_dir",
            "reserved_logins = [\"jenkins\", \"svc-*\"]\ndata_dir",
        );
        let config = parse(&extended).expect("valid");
        assert!(config.reserved_logins.reason("svc-backup").is_some());
        assert!(config.reserved_logins.reason("root").is_some());
        let bad = MINIMAL.replace("data_dir", "reserved_logins = [\"Bad Name\"]\ndata_dir");
        let err = parse(&bad).expect_err("not a login name");
        assert!(err.contains("reserved_logins: \"Bad Name\""), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            MINIMAL.replace("https://idp.example.com", "http://idp.example.com"),
            MINIMAL.replace("\"corp\"", "\"Corp Inc\""),
            format!("{MINIMAL}\n[certs]\nmax_ttl = \"2h\"\n"),
            format!("{MINIMAL}\n[certs]\ndefault_ttl = \"10m\"\nmax_ttl = \"5m\"\n"),
            format!("{MINIMAL}\n[certs]\ndefault_ttl = \"5\"\n"),
            format!(
                "{MINIMAL}\n[[oidc]]\nname = \"corp\"\nissuer = \"https://b\"\nclient_id = \"x\"\n"
            ),
            MINIMAL.replace(
                "client_id = \"jit-ssh\"",
                "client_id = \"jit-ssh\"\nusername_claim = \"sub\"",
            ),
            "listen = \"127.0.0.1:1\"\ndata_dir = \"d\"\n".to_string(),
            MINIMAL.replace("data_dir", "access_request_pending = \"0s\"\ndata_dir"),
            MINIMAL.replace("data_dir", "access_request_pending = \"25h\"\ndata_dir"),
            MINIMAL.replace("data_dir", "jwks_refresh_min = \"4m\"\ndata_dir"),
            MINIMAL.replace("data_dir", "jwks_refresh_max = \"25h\"\ndata_dir"),
            MINIMAL.replace("data_dir", "jwks_refresh_min = \"2h\"\njwks_refresh_max = \"1h\"\ndata_dir"),
            MINIMAL
                .replace("https://idp.example.com", "http://127.0.0.1:9000")
                .replace("data_dir", "jwks_refresh_min = \"0s\"\ndata_dir"),
            format!("{MINIMAL}\n[[webhook]]\nurl = \"http://hooks.example.com/x\"\nsecret_env = \"PATH\"\n"),
            format!("{MINIMAL}\n[[webhook]]\nurl = \"https://hooks.example.com/x\"\n"),
            format!("{MINIMAL}\n[[webhook]]\nurl = \"https://h.example.com/\"\nsecret = \"inline\"\n"),
            format!("{MINIMAL}\n[[webhook]]\nurl = \"https://h.example.com/\"\nsecret_env = \"JIT_SSH_TEST_UNSET_VAR\"\n"),
            MINIMAL.replace("data_dir", "metrics_listen = \"9464\"\ndata_dir"),
        ];
        for case in cases {
            assert!(parse(&case).is_err(), "should be refused:\n{case}");
        }
    }
}
