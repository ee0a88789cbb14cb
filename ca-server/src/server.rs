//! Start-up and serving: turns a checked [`Config`] into a running CA.
//!
//! Start-up fails with one clear line rather than serving in a half-working
//! state: keys that cannot be decrypted or are readable by others, a data
//! directory, database or passphrase file that group or others may open, a
//! database that cannot be opened, an issuer whose discovery keeps failing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use jit_ssh_common::http::client_builder;
use tokio::sync::Semaphore;

use crate::authority::Authority;
use crate::ca_keys::{self, CaKeys};
use crate::config::{Config, TlsFiles};
use crate::http::{app, monitoring_app, AppState, SharedState};
use crate::metrics::Metrics;
use crate::oidc::TokenVerifier;
use crate::policy::{cli as policy_cli, reload, ReloadablePolicy};
use crate::rate_limit::RateLimits;
use crate::secret::Passphrase;
use crate::store::{Store, DATABASE_FILE};
use crate::webhook::Notifier;

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
    #[error("cannot listen on {addr}: {source}")]
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
    let ready = state.ready.clone();
    let served = serve_router(listener, config.tls.as_ref(), app(state), ready, shutdown).await;
    monitoring.stop();
    served
}

/// The monitoring listener, serving until [`Monitoring::stop`].
pub struct Monitoring {
    handle: axum_server::Handle,
    /// Where it listens (the port chosen when it was given as 0).
    pub local: SocketAddr,
}

impl Monitoring {
    /// Stops serving; a scrape in flight is cut, which Prometheus retries.
    pub fn stop(&self) {
        self.handle.shutdown();
    }
}

/// Serves `router` (see [`monitoring_app`]) on `listener` from a task of the
/// current runtime, in plain HTTP: what it serves carries no credential, and
/// it listens where the operator chose to let scrapers in. Logs
/// `metrics listener on http://ADDRESS` before it returns, so the line
/// precedes the API's `listening on`.
pub fn spawn_monitoring(
    listener: std::net::TcpListener,
    router: Router,
) -> Result<Monitoring, ServerError> {
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener).handle(handle.clone());
    tokio::spawn(async move {
        if let Err(error) = server.serve(router.into_make_service()).await {
            tracing::error!(%error, "metrics listener on {local} stopped");
        }
    });
    tracing::info!("metrics listener on http://{local} (/metrics, /healthz, /readyz)");
    Ok(Monitoring { handle, local })
}

/// Longest time requests in flight get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds a listening socket ready for [`serve_router`].
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen_err = |source| ServerError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    Ok(listener)
}

/// Serves `router` on `listener` (HTTPS when `tls` is given) until
/// `shutdown` completes. Then `ready` turns false (so `/readyz` fails), new
/// connections are refused, and requests in flight, with their database
/// commits, get up to [`DRAIN_TIMEOUT`] to finish.
///
/// Each core has a serving thread with a single-threaded runtime, and all of
/// them accept from `listener`: a connection, with its buffers and TLS
/// state, stays on the thread that accepted it. Under tokio's work-stealing
/// scheduler connections moved between cores, their data with them, which
/// every request paid for, most where the cores share no cache
/// (docs/benchmarks.md).
/// Ed25519 batches still spread over the cores (`crate::ed25519_batch`).
pub async fn serve_router(
    listener: std::net::TcpListener,
    tls: Option<&TlsFiles>,
    router: Router,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let listen_err = |source| ServerError::Listen {
        addr: local,
        source,
    };
    let rustls = match tls {
        Some(tls) => Some(
            RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| ServerError::Tls(format!("{}: {e}", tls.cert.display())))?,
        ),
        None => None,
    };
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    // One handle for all threads: a shutdown reaches every one, and each
    // waits until the connections of all have ended.
    let handle = axum_server::Handle::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut servers = Vec::with_capacity(threads);
    for index in 0..threads {
        let listener = listener.try_clone().map_err(listen_err)?;
        let (service, rustls, handle) = (service.clone(), rustls.clone(), handle.clone());
        let server = std::thread::Builder::new()
            .name(format!("jit-ssh-ca-http-{index}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            match rustls {
                                Some(rustls) => {
                                    axum_server::from_tcp_rustls(listener, rustls)
                                        .handle(handle.clone())
                                        .serve(service)
                                        .await
                                }
                                None => {
                                    axum_server::from_tcp(listener)
                                        .handle(handle.clone())
                                        .serve(service)
                                        .await
                                }
                            }
                        })
                    });
                // A thread that stopped serving (an error) stops the others.
                handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
                served
            })
            .map_err(listen_err)?;
        servers.push(server);
    }
    let scheme = if rustls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{local}");
    tokio::spawn(async move {
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
        tracing::info!("shutting down: finishing requests in flight");
        handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
    });
    let served = tokio::task::spawn_blocking(move || {
        let mut served = Ok(());
        for server in servers {
            let ended = server
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
            served = served.and(ended);
        }
        served
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    served.map_err(listen_err)
}
