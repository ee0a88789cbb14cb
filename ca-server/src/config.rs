//! The server configuration: a TOML file read once at start-up into a checked
//! [`Config`].
//!
//! Unknown keys are errors (a misspelt `max_ttl` must not silently mean the
//! default), relative paths are resolved against the file's own directory, and
//! every limit is checked here so the rest of the server can trust it.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jit_ssh_common::duration::parse_duration;
use serde::Deserialize;

use crate::oidc::JwksRefresh;
use crate::policy::reserved::ReservedLogins;
use crate::webhook::{WebhookSecret, WebhookTarget};

/// Longest certificate lifetime the CA will ever be configured to sign.
pub const MAX_TTL_CEILING: Duration = Duration::from_secs(60 * 60);
/// Largest clock-skew allowance for ID tokens.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// Where `/metrics` is served unless the config says otherwise: loopback,
/// so that counts of issuances, refusals and issuers stay on the CA's host
/// until an operator chooses to expose them.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    #[serde(default = "default_metrics_listen")]
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
    #[serde(default = "default_token_leeway")]
    token_leeway: String,
    #[serde(default = "default_request_timeout")]
    request_timeout: String,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_discovery_attempts")]
    discovery_attempts: u32,
    #[serde(default = "default_rate_limit_per_identity")]
    rate_limit_per_identity: u32,
    #[serde(default = "default_rate_limit_per_address")]
    rate_limit_per_address: u32,
    #[serde(default = "default_access_request_pending")]
    access_request_pending: String,
    #[serde(default = "default_jwks_refresh_min")]
    jwks_refresh_min: String,
    #[serde(default = "default_jwks_refresh_max")]
    jwks_refresh_max: String,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
    #[serde(default)]
    reserved_logins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
}

/// Shows the URL as logs do: a Slack or Teams webhook URL is itself a
/// credential.
impl std::fmt::Debug for RawWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawWebhook")
            .field("url", &crate::webhook::loggable_url(&self.url))
            .field("secret_file", &self.secret_file)
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    issuer: String,
    client_id: String,
    #[serde(default = "default_username_claim")]
    username_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default)]
    email_domains: Vec<String>,
    #[serde(default = "default_require_nonce")]
    require_nonce: bool,
    #[serde(default = "default_nonce_session")]
    nonce_session: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCerts {
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

fn default_metrics_listen() -> String {
    DEFAULT_METRICS_LISTEN.to_string()
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_token_leeway() -> String {
    "60s".into()
}
fn default_request_timeout() -> String {
    "10s".into()
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_access_request_pending() -> String {
    "1h".into()
}
fn default_discovery_attempts() -> u32 {
    5
}
fn default_jwks_refresh_min() -> String {
    "5m".into()
}
fn default_jwks_refresh_max() -> String {
    "24h".into()
}
fn default_rate_limit_per_identity() -> u32 {
    DEFAULT_RATE_LIMIT_PER_IDENTITY
}
fn default_rate_limit_per_address() -> u32 {
    DEFAULT_RATE_LIMIT_PER_ADDRESS
}

/// Certificate requests per minute one identity may make by default.
pub const DEFAULT_RATE_LIMIT_PER_IDENTITY: u32 = 30;
/// Certificate requests per minute one client address may make by default.
pub const DEFAULT_RATE_LIMIT_PER_ADDRESS: u32 = 600;
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_require_nonce() -> bool {
    true
}
fn default_nonce_session() -> String {
    "12h".into()
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
}

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Which claim names the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameClaim {
    /// `preferred_username`, which must be a Unix login name.
    PreferredUsername,
    /// `email` (its local part, a Unix login name), which then requires
    /// `email_verified: true`.
    Email,
    /// Any other claim, for workloads whose tokens name no person (GitHub
    /// Actions: `repository`). Its value names the identity in key IDs and
    /// records; it need not be a login name, and policy templates that
    /// expand it to something that is not one grant nothing.
    Claim(String),
}

/// One trusted OpenID provider.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Short name used in key IDs and records.
    pub name: String,
    /// Issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// The audience ID tokens must carry.
    pub client_id: String,
    /// Which claim names the user.
    pub username_claim: UsernameClaim,
    /// Claim holding group names.
    pub groups_claim: String,
    /// Scopes clients should request.
    pub scopes: Vec<String>,
    /// With `username_claim = "email"` (where it is required and never
    /// empty): the only domains, lower-cased, whose verified addresses name
    /// a user, so that `alice@` of two domains cannot both become `alice`
    /// unless the admin lists both. Empty for every other username claim.
    pub email_domains: Vec<String>,
    /// Whether a certificate needs a token bound to its key by a nonce.
    pub nonce: NonceRule,
}

/// How an issuer's ID tokens must be bound to the key they certify
/// (`require_nonce`, `nonce_session`; docs/security.md, *Key binding*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceRule {
    /// A token without a nonce certifies only a key that the same `(issuer,
    /// sub)` certified with a nonce within [`NonceRule::session`]; `false`
    /// (workload issuers, whose tokens carry no nonce) lets it certify any
    /// key its bearer proves.
    pub required: bool,
    /// How long after a certificate for a key bound by a nonce a token
    /// without one still certifies that key: the sign-in session a refresh
    /// token renews silently.
    pub session: Duration,
}

impl Default for NonceRule {
    /// Required, with a 12-hour sign-in session.
    fn default() -> NonceRule {
        NonceRule {
            required: true,
            session: DEFAULT_NONCE_SESSION,
        }
    }
}

/// The default `nonce_session`: a working day and then some, about as long
/// as identity providers keep a refresh token alive without a new sign-in.
pub const DEFAULT_NONCE_SESSION: Duration = Duration::from_secs(12 * 3600);
/// The longest `nonce_session` accepted.
pub const MAX_NONCE_SESSION: Duration = Duration::from_secs(30 * 24 * 3600);

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
            max_in_flight: default_max_in_flight(),
            discovery_attempts: default_discovery_attempts(),
            rate_limit_per_identity: DEFAULT_RATE_LIMIT_PER_IDENTITY,
            rate_limit_per_address: DEFAULT_RATE_LIMIT_PER_ADDRESS,
            access_request_pending: Duration::from_secs(crate::access::DEFAULT_PENDING_SECS),
            jwks_refresh: JwksRefresh::default(),
            webhooks: Vec::new(),
            reserved_logins: ReservedLogins::default(),
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

fn duration_field(name: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("{name}: {e}"))
}

impl RawConfig {
    fn check(self, base: &Path) -> Result<Config, String> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "listen: {:?} is not an address:port (e.g. \"127.0.0.1:8443\")",
                self.listen
            )
        })?;
        if self.tls.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "listen: {listen} is not a loopback address, and plain HTTP would send ID tokens \
                 in clear text: add a [tls] section or listen on 127.0.0.1"
            ));
        }
        let metrics_listen: SocketAddr = self.metrics_listen.parse().map_err(|_| {
            format!(
                "metrics_listen: {:?} is not an address:port (e.g. \"{DEFAULT_METRICS_LISTEN}\")",
                self.metrics_listen
            )
        })?;
        if metrics_listen.port() != 0 && metrics_listen.port() == listen.port() {
            let same_socket = metrics_listen.ip() == listen.ip()
                || metrics_listen.ip().is_unspecified()
                || listen.ip().is_unspecified();
            if same_socket {
                return Err(format!(
                    "metrics_listen: {metrics_listen} overlaps listen ({listen}); /metrics has \
                     its own listener: give it another port (default {DEFAULT_METRICS_LISTEN})"
                ));
            }
        }
        if self.oidc.is_empty() {
            return Err("no [[oidc]] issuer: the CA needs at least one identity provider".into());
        }
        let mut names = HashSet::new();
        let mut issuer_urls = HashSet::new();
        let mut issuers = Vec::new();
        for raw in self.oidc {
            let issuer = raw.check()?;
            if !names.insert(issuer.name.clone()) {
                return Err(format!("[[oidc]] name {:?} is used twice", issuer.name));
            }
            if !issuer_urls.insert(issuer.issuer.clone()) {
                return Err(format!(
                    "[[oidc]] issuer {:?} is listed twice",
                    issuer.issuer
                ));
            }
            issuers.push(issuer);
        }
        let certs = CertSettings {
            default_ttl: duration_field("certs.default_ttl", &self.certs.default_ttl)?,
            max_ttl: duration_field("certs.max_ttl", &self.certs.max_ttl)?,
            backdate: duration_field("certs.backdate", &self.certs.backdate)?,
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
        let token_leeway = duration_field("token_leeway", &self.token_leeway)?;
        if token_leeway > MAX_TOKEN_LEEWAY {
            return Err("token_leeway must be at most 60s".into());
        }
        let request_timeout = duration_field("request_timeout", &self.request_timeout)?;
        if request_timeout.is_zero() {
            return Err("request_timeout must be at least 1s".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.discovery_attempts == 0 || self.discovery_attempts > 20 {
            return Err("discovery_attempts must be between 1 and 20".into());
        }
        let access_request_pending =
            duration_field("access_request_pending", &self.access_request_pending)?;
        if access_request_pending.is_zero() || access_request_pending > Duration::from_secs(86_400)
        {
            return Err("access_request_pending must be between 1s and 24h".into());
        }
        let jwks_refresh = JwksRefresh {
            min: duration_field("jwks_refresh_min", &self.jwks_refresh_min)?,
            max: duration_field("jwks_refresh_max", &self.jwks_refresh_max)?,
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
        let webhooks = self
            .webhook
            .into_iter()
            .map(|w| w.check(base))
            .collect::<Result<Vec<_>, _>>()?;
        let reserved_logins = ReservedLogins::with_extra(&self.reserved_logins)?;
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
            token_leeway,
            request_timeout,
            max_in_flight: self.max_in_flight,
            discovery_attempts: self.discovery_attempts,
            rate_limit_per_identity: self.rate_limit_per_identity,
            rate_limit_per_address: self.rate_limit_per_address,
            access_request_pending,
            jwks_refresh,
            webhooks,
            reserved_logins,
        })
    }
}

/// Whether `url` is an https URL, or a plain http one on loopback (test and
/// development servers); the host is compared whole, so that
/// `http://localhost.example.com` is not loopback.
fn https_or_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| match url.scheme() {
        "https" => url.host().is_some(),
        "http" => ca_proto::is_loopback_host(url.host_str()),
        _ => false,
    })
}

impl RawWebhook {
    fn check(self, base: &Path) -> Result<WebhookTarget, String> {
        if !https_or_loopback(&self.url) {
            return Err(format!(
                "[[webhook]] url {} must be an https:// URL (plain http only on loopback)",
                crate::webhook::loggable_url(&self.url)
            ));
        }
        let shown = crate::webhook::loggable_url(&self.url);
        let text = match (self.secret_file, self.secret_env) {
            (Some(file), None) => {
                let path = base.join(file);
                std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "[[webhook]] {}: cannot read secret_file {}: {e}",
                        shown,
                        path.display()
                    )
                })?
            }
            (None, Some(name)) => std::env::var(&name).map_err(|_| {
                format!(
                    "[[webhook]] {}: environment variable {name} (secret_env) is not set",
                    shown
                )
            })?,
            _ => {
                return Err(format!(
                    "[[webhook]] {}: give exactly one of secret_file or secret_env",
                    shown
                ))
            }
        };
        let secret = WebhookSecret::new(text);
        if secret.is_empty() {
            return Err(format!("[[webhook]] {shown}: the secret is empty"));
        }
        Ok(WebhookTarget {
            url: self.url,
            secret,
        })
    }
}

impl RawIssuer {
    fn check(self) -> Result<IssuerConfig, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "[[oidc]] name {:?}: use 1-32 of a-z, 0-9, '-', '_'",
                self.name
            ));
        }
        if !https_or_loopback(&self.issuer) {
            return Err(format!(
                "[[oidc]] {}: issuer {:?} must be an https:// URL (plain http only on loopback)",
                self.name, self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err(format!("[[oidc]] {}: client_id is empty", self.name));
        }
        let username_claim = match self.username_claim.as_str() {
            "preferred_username" => UsernameClaim::PreferredUsername,
            "email" => UsernameClaim::Email,
            "" | "iss" | "aud" | "azp" | "exp" | "iat" | "nbf" | "nonce" | "sub" => {
                return Err(format!(
                    "[[oidc]] {}: username_claim {:?} cannot name a user \
                     (use \"preferred_username\", \"email\", or a claim such as \"repository\")",
                    self.name, self.username_claim
                ))
            }
            other => UsernameClaim::Claim(other.to_string()),
        };
        let email_domains = self.checked_email_domains(&username_claim)?;
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!(
                "[[oidc]] {}: scopes must include \"openid\"",
                self.name
            ));
        }
        let session = duration_field("nonce_session", &self.nonce_session)
            .map_err(|e| format!("[[oidc]] {}: {e}", self.name))?;
        if session.is_zero() || session > MAX_NONCE_SESSION {
            return Err(format!(
                "[[oidc]] {}: nonce_session must be between 1s and 720h",
                self.name
            ));
        }
        Ok(IssuerConfig {
            name: self.name,
            issuer: self.issuer,
            client_id: self.client_id,
            username_claim,
            groups_claim: self.groups_claim,
            scopes: self.scopes,
            email_domains,
            nonce: NonceRule {
                required: self.require_nonce,
                session,
            },
        })
    }

    /// `email_domains`, lower-cased: required with `username_claim =
    /// "email"` (the local part alone would let one name stand for people
    /// of every domain the provider serves), refused with any other claim,
    /// where it would restrict nothing.
    fn checked_email_domains(&self, username_claim: &UsernameClaim) -> Result<Vec<String>, String> {
        let name = &self.name;
        if *username_claim != UsernameClaim::Email {
            if !self.email_domains.is_empty() {
                return Err(format!(
                    "[[oidc]] {name}: email_domains applies only with username_claim = \"email\" \
                     (to restrict other issuers by domain, use an email_domain condition in the policy)"
                ));
            }
            return Ok(Vec::new());
        }
        if self.email_domains.is_empty() {
            return Err(format!(
                "[[oidc]] {name}: username_claim = \"email\" needs email_domains = [\"corp.example\", ...]: \
                 the login name is the address's local part, so without it alice@ of any domain \
                 the provider vouches for would be the same user"
            ));
        }
        let mut domains = Vec::new();
        for domain in &self.email_domains {
            let lowered = domain.to_ascii_lowercase();
            let well_formed = lowered.contains('.')
                && lowered.len() <= 253
                && lowered.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if !well_formed {
                return Err(format!(
                    "[[oidc]] {name}: email_domains entry {domain:?} is not a domain name \
                     (write the part after '@', e.g. \"corp.example\"; no wildcards)"
                ));
            }
            if !domains.contains(&lowered) {
                domains.push(lowered);
            }
        }
        Ok(domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_hosts_only() {
        for url in [
            "https://idp.example.com",
            "http://127.0.0.1:9000",
            "http://localhost/realms/x",
            "http://[::1]:8080",
        ] {
            assert!(https_or_loopback(url), "{url}");
        }
        for url in [
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://localhost@idp.example.com",
            "http://idp.example.com",
            "ftp://127.0.0.1",
            "https://",
        ] {
            assert!(!https_or_loopback(url), "{url}");
        }
    }

    #[test]
    fn a_webhook_url_is_never_printed_whole() {
        let raw = RawWebhook {
            url: "https://hooks.slack.com/services/T000/B000/sEcReTtOkEn".into(),
            secret_file: None,
            secret_env: None,
        };
        let shown = format!("{raw:?}");
        assert!(!shown.contains("sEcReTtOkEn"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
    }

    const MINIMAL: &str = r#"
listen = "127.0.0.1:8443"
data_dir = "data"
[[oidc]]
name = "corp"
issuer = "https://idp.example.com"
client_id = "jit-ssh"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/jit")).map_err(|e| match e {
            ParseError::Syntax(m) | ParseError::Invalid(m) => m,
        })
    }

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
    fn nonce_rules_are_per_issuer_and_bounded() {
        let config = parse(&format!(
            "{MINIMAL}require_nonce = false\nnonce_session = \"2h\"\n"
        ))
        .expect("valid");
        let nonce = config.issuers[0].nonce;
        assert!(!nonce.required);
        assert_eq!(nonce.session, Duration::from_secs(7200));
        for bad in ["0s", "721h", "soon"] {
            let err = parse(&format!("{MINIMAL}nonce_session = \"{bad}\"\n")).expect_err(bad);
            assert!(
                err.contains("[[oidc]] corp") && err.contains("nonce_session"),
                "{err}"
            );
        }
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

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse(&format!("{MINIMAL}\nmax_ttl = \"5m\"\n")).expect_err("unknown key");
        assert!(err.contains("max_ttl"), "{err}");
        let err = parse(&MINIMAL.replace("client_id", "clientid")).expect_err("unknown key");
        assert!(err.contains("clientid"), "{err}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let err = parse(&MINIMAL.replace("127.0.0.1:8443", "0.0.0.0:8443")).expect_err("public");
        assert!(err.contains("[tls]"), "{err}");
        let with_tls = format!("{MINIMAL}\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
            .replace("127.0.0.1:8443", "0.0.0.0:8443");
        assert!(parse(&with_tls).is_ok());
    }

    #[test]
    fn metrics_listen_is_its_own_socket() {
        let with = |line: &str| parse(&MINIMAL.replace("data_dir", &format!("{line}\ndata_dir")));
        let config = with("metrics_listen = \"10.0.0.5:9100\"").expect("valid");
        assert_eq!(config.metrics_listen.to_string(), "10.0.0.5:9100");
        for overlapping in [
            "metrics_listen = \"127.0.0.1:8443\"",
            "metrics_listen = \"0.0.0.0:8443\"",
        ] {
            let err = with(overlapping).expect_err(overlapping);
            assert!(err.contains("metrics_listen"), "{err}");
        }
        // Another address on the same port is another socket; port 0 picks
        // a free port for each.
        assert!(with("metrics_listen = \"127.0.0.2:8443\"").is_ok());
        let both_free = MINIMAL
            .replace("127.0.0.1:8443", "127.0.0.1:0")
            .replace("data_dir", "metrics_listen = \"127.0.0.1:0\"\ndata_dir");
        assert!(parse(&both_free).is_ok());
    }

    #[test]
    fn webhook_secret_is_read_from_a_file_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hook.secret"), "s3cret-value\n").expect("write");
        let text = format!(
            "{MINIMAL}\n[[webhook]]\nurl = \"https://hooks.example.com/x\"\nsecret_file = \"hook.secret\"\n"
        );
        let config = Config::parse(&text, dir.path())
            .map_err(|_| "parse")
            .expect("valid");
        assert_eq!(config.webhooks.len(), 1);
        assert_eq!(config.webhooks[0].url, "https://hooks.example.com/x");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn an_email_named_issuer_must_list_its_domains() {
        let email = MINIMAL.replace(
            "client_id = \"jit-ssh\"",
            "client_id = \"jit-ssh\"\nusername_claim = \"email\"",
        );
        let err = parse(&email).expect_err("no email_domains");
        assert!(
            err.contains("[[oidc]] corp: username_claim = \"email\" needs email_domains"),
            "{err}"
        );
        let listed = format!("{email}email_domains = [\"Corp.Example\", \"contractor.example\"]\n");
        let config = parse(&listed).expect("valid");
        assert_eq!(
            config.issuers[0].email_domains,
            ["corp.example", "contractor.example"]
        );
        for bad in [
            "\"*.corp.example\"",
            "\"@corp.example\"",
            "\"corp\"",
            "\"a..b\"",
            "\"-a.example\"",
        ] {
            let err = parse(&format!("{email}email_domains = [{bad}]\n")).expect_err(bad);
            assert!(err.contains("is not a domain name"), "{bad}: {err}");
        }
        let err = parse(&format!("{email}email_domains = []\n")).expect_err("empty");
        assert!(err.contains("needs email_domains"), "{err}");
        let err = parse(&format!("{MINIMAL}email_domains = [\"corp.example\"]\n"))
            .expect_err("not an email-named issuer");
        assert!(
            err.contains("only with username_claim = \"email\""),
            "{err}"
        );
        assert!(parse(MINIMAL).expect("valid").issuers[0]
            .email_domains
            .is_empty());
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
