//! Start-up and serving: turns a checked [`Config`] into a running CA.
//!
//! Start-up fails with one clear line rather than serving in a half-working
//! state: keys that cannot be decrypted or are readable by others, a data
//! directory, database or passphrase file that group or others may open, a
//! database that cannot be opened, an issuer whose discovery keeps failing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use jit_ssh_common::http::client_builder;
use tokio::sync::Semaphore;

use crate::authority::Authority;
use crate::ca_keys::{self, CaKeys};
use crate::config::Config;
use crate::http::{app, monitoring_app, AppState, SharedState};
use crate::metrics::Metrics;
use crate::oidc::TokenVerifier;
use crate::policy::{cli as policy_cli, reload, ReloadablePolicy};
use crate::rate_limit::RateLimits;
use crate::secret::Passphrase;
use crate::store::{Store, DATABASE_FILE};
use crate::webhook::Notifier;

mod connections;
mod serve;

pub use serve::{bind, serve_router, spawn_monitoring, Monitoring, DRAIN_TIMEOUT};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The passphrase could not be read.
    #[error("{0}")]
    Passphrase(String),
    /// The data directory is open to group or others, or unreadable.
    #[error(transparent)]
    DataDir(#[from] crate::private_files::ModeError),
    /// CA keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] ca_keys::KeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An issuer could not be discovered.
    #[error(transparent)]
    Discovery(#[from] crate::oidc::DiscoveryError),
    /// TLS files could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Listening failed.
    #[error("cannot listen on {addr} (`listen` or `metrics_listen` in the config)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client for the identity providers could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// The policy files are missing or invalid.
    #[error("policy: {0}")]
    Policy(String),
}

/// The HTTP client the CA uses towards identity providers: bounded in time,
/// never following redirects (discovery and JWKS URLs are taken literally).
pub fn idp_http_client() -> Result<reqwest::Client, ServerError> {
    client_builder(concat!("jit-ssh-ca/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ServerError::HttpClient(e.to_string()))
}

/// Loads policy and keys, opens the store and discovers issuers: everything
/// but the socket. The `passphrase` is read by the caller, before the
/// runtime starts ([`Passphrase::load`] says why).
pub async fn build_state(config: &Config, passphrase: Passphrase) -> Result<AppState, ServerError> {
    // The policy first: a broken one should fail start-up before anything slow.
    let policy = load_policy(config)?;
    crate::private_files::check_dir("data directory", &config.data_dir)?;
    let keys = ca_keys::load(&config.data_dir, &passphrase)?;
    drop(passphrase);
    let metrics = Metrics::new();
    let store = Store::open(&config.data_dir.join(DATABASE_FILE), &metrics)?;
    let verifier = TokenVerifier::discover(
        &config.issuers,
        config.token_leeway,
        config.discovery_attempts,
        idp_http_client()?,
        &metrics,
        config.jwks_refresh,
    )
    .await?;
    Ok(assemble(
        CaParts {
            verifier,
            policy,
            keys,
            store,
            metrics,
        },
        config,
    ))
}

/// Loads the policy directory of `config`; refuses a broken or empty one.
pub fn load_policy(config: &Config) -> Result<Arc<ReloadablePolicy>, ServerError> {
    let context = policy_cli::context(Some(config));
    let policy = ReloadablePolicy::load(&config.policy_dir, context).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        ServerError::Policy(lines.join("; "))
    })?;
    let current = policy.current();
    tracing::info!(
        dir = %config.policy_dir.display(),
        rules = current.allow_rules().len() + current.deny_rules().len(),
        "loaded policy"
    );
    Ok(Arc::new(policy))
}

/// What `serve` and `dev` each set up their own way.
pub struct CaParts {
    /// Verifies ID tokens.
    pub verifier: TokenVerifier,
    /// Decides grants; reloaded when its files change.
    pub policy: Arc<ReloadablePolicy>,
    /// The CA keys.
    pub keys: CaKeys,
    /// The durable record.
    pub store: Store,
    /// Shared by every part that counts.
    pub metrics: Metrics,
}

/// Wires the parts into the handlers' state, and starts the policy watcher
/// and the rate-limit sweeper (so it must run inside the runtime).
pub fn assemble(parts: CaParts, config: &Config) -> AppState {
    tracing::info!(
        user_ca = %parts.keys.user.signer().fingerprint(),
        host_ca = %parts.keys.host.signer().fingerprint(),
        "loaded CA keys"
    );
    reload::spawn_watcher(
        parts.policy.clone(),
        reload::POLL_INTERVAL,
        parts.metrics.clone(),
    );
    let rate_limits = Arc::new(RateLimits::new(
        config.rate_limit_per_identity,
        config.rate_limit_per_address,
    ));
    spawn_rate_limit_sweeper(rate_limits.clone());
    let authority = Authority::new(
        parts.verifier,
        parts.policy,
        parts.keys,
        parts.store,
        config.certs,
    )
    .with_rate_limits(rate_limits.clone())
    .with_access_request_pending(config.access_request_pending)
    .with_ssh_hosts(config.client.ssh_hosts.clone())
    .with_webhooks(Notifier::start(
        config.webhooks.clone(),
        parts.metrics.clone(),
    ));
    AppState::new(SharedState {
        authority: Arc::new(authority),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        request_timeout: config.request_timeout,
        connections: config.connections,
        metrics: Arc::new(parts.metrics),
        ready: Arc::new(AtomicBool::new(true)),
        rate_limits,
    })
}

/// Forgets idle rate-limit keys once a minute so memory stays bounded.
fn spawn_rate_limit_sweeper(limits: Arc<RateLimits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.forget_idle();
        }
    });
}

/// Serves the API on `listen` and the monitoring endpoints on
/// `metrics_listen` until `shutdown` completes, then drains requests in
/// flight.
pub async fn serve(
    config: &Config,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = bind(config.listen)?;
    let monitoring = spawn_monitoring(bind(config.metrics_listen)?, monitoring_app(state.clone()))?;
    let served = serve_router(
        listener,
        config.tls.as_ref(),
        app(state.clone()),
        &state,
        shutdown,
    )
    .await;
    monitoring.stop();
    served
}
