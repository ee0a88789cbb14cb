//! `jit-ssh-ca dev`: a complete CA in one process with nothing to prepare,
//! like `vault server -dev`, and loud about being unsafe.
//!
//! Fresh CA keys and a SQLite database in a temporary directory (or a kept
//! `--data-dir`), an embedded OpenID provider ([`idp`]) on the same loopback
//! listener, plain HTTP on loopback only. Everything else is the production
//! code path: the same verifier, policy, signer, store and routers, the
//! metrics on a monitoring listener of their own (a free loopback port by
//! default, shown in the banner). Both listeners answer only requests
//! addressed to them by a loopback name ([`host`]), so that a web page cannot
//! reach the password-less provider through DNS rebinding.
//!
//! All of it is behind ca-server's `dev-idp` cargo feature: on by default,
//! so that trying jit-ssh takes one command, and left out of production
//! builds with `--no-default-features` (docs/deploy.md).

pub mod host;
pub mod idp;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ca_keys::{self, CaKeyType};
use crate::config::{Config, IssuerConfig, NonceRule, UsernameClaim};
use crate::http::{app, monitoring_app};
use crate::metrics::Metrics;
use crate::oidc::TokenVerifier;
use crate::secret::Passphrase;
use crate::server::{
    assemble, bind, idp_http_client, load_policy, serve_router, spawn_monitoring, CaParts,
    ServerError,
};
use crate::store::{Store, DATABASE_FILE};
use idp::{DevIdp, DevUser};

/// File in a kept dev data directory holding its (throw-away) passphrase.
pub const DEV_PASSPHRASE_FILE: &str = "dev-passphrase";

/// What `jit-ssh-ca dev` was asked for.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Loopback address to listen on.
    pub listen: SocketAddr,
    /// Loopback address of the monitoring listener (`/metrics`).
    pub metrics_listen: SocketAddr,
    /// Keep keys and database here instead of a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Dev users; empty means [`idp::default_users`].
    pub users: Vec<DevUser>,
    /// Sign every login in as this user, with no page.
    pub auto_login: Option<String>,
    /// Policy directory; default: the example policies, copied into the data
    /// directory.
    pub policy_dir: Option<PathBuf>,
}

/// Why dev mode could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// A non-loopback listen address.
    #[error("dev mode listens on loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A port could not be bound (taken, most often): says the flag that
    /// picks another, and the OS's reason once.
    #[error("cannot listen on {addr}: {reason}; pick a free port with {flag} 127.0.0.1:PORT")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// The OS's reason (not a `source`: it is said once, here).
        reason: std::io::Error,
    },
    /// Starting or serving failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// [`bind`], its failure naming `flag`.
fn bind_flag(addr: SocketAddr, flag: &'static str) -> Result<std::net::TcpListener, DevError> {
    bind(addr).map_err(|error| match error {
        ServerError::Listen { addr, source } => DevError::Listen {
            addr,
            flag,
            reason: source,
        },
        other => DevError::Server(other),
    })
}

/// Runs the dev CA until `shutdown` completes. `on_ready` receives the banner
/// text once the listener is bound.
pub async fn run(
    options: DevOptions,
    on_ready: impl FnOnce(String),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DevError> {
    for address in [options.listen, options.metrics_listen] {
        if !address.ip().is_loopback() {
            return Err(DevError::NotLoopback(address));
        }
    }
    let users = if options.users.is_empty() {
        idp::default_users()
    } else {
        options.users.clone()
    };
    // Both ports first: a taken port must fail before a data directory
    // gets keys and a passphrase for a CA that never starts.
    let listener = bind_flag(options.listen, "--listen")?;
    let metrics_listener = bind_flag(options.metrics_listen, "--metrics-listen")?;
    let temporary;
    let (data_dir, kept) = match &options.data_dir {
        Some(dir) => (dir.clone(), true),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("jit-ssh-ca-dev-")
                .tempdir()
                .map_err(|e| {
                    DevError::Invalid(format!("cannot create a temporary directory: {e}"))
                })?;
            (temporary.path().to_path_buf(), false)
        }
    };
    let passphrase = dev_passphrase(&data_dir)?;
    let local = listener
        .local_addr()
        .map_err(|e| DevError::Invalid(e.to_string()))?;
    let ca_url = format!("http://{local}");
    let provider = Arc::new(
        DevIdp::new(
            format!("{ca_url}{}", idp::PREFIX),
            users,
            options.auto_login.clone(),
        )
        .map_err(DevError::Invalid)?,
    );

    // `corp`: the issuer the example policies name for people, whose part
    // the dev provider plays.
    let issuer = IssuerConfig {
        name: "corp".into(),
        issuer: provider.issuer().to_string(),
        client_id: idp::CLIENT_ID.into(),
        username_claim: UsernameClaim::PreferredUsername,
        groups_claim: "groups".into(),
        email_domains: Vec::new(),
        scopes: ["openid", "email", "profile", "groups", "offline_access"]
            .map(String::from)
            .to_vec(),
        // Its device flow, like RFC 8628, has no nonce, and anyone who can
        // reach this password-less provider signs in as anyone: a nonce
        // would protect nothing here (docs/security.md, *Key binding*).
        nonce: NonceRule {
            required: false,
            ..NonceRule::default()
        },
        provider: crate::config::ProviderSettings::default(),
    };
    let policy_dir = match &options.policy_dir {
        Some(dir) => dir.clone(),
        None => example_policy_dir(&data_dir)?,
    };
    let mut config =
        Config::with_defaults(local, data_dir.clone(), policy_dir, vec![issuer.clone()]);
    config.metrics_listen = metrics_listener
        .local_addr()
        .map_err(|e| DevError::Invalid(e.to_string()))?;
    // The dev CA's hosts are test sshds on this machine: `jit-ssh
    // ssh-config --install` scopes its block to them.
    config.client.ssh_hosts = vec!["127.0.0.1".into(), "localhost".into()];
    let policy = load_policy(&config)?;
    let keys = ca_keys::load(&data_dir, &passphrase).map_err(ServerError::from)?;
    let metrics = Metrics::new();
    let store = Store::open(&data_dir.join(DATABASE_FILE), &metrics).map_err(ServerError::from)?;
    let verifier = TokenVerifier::with_known_issuer(
        issuer,
        provider.jwks_uri(),
        provider.jwks().to_string().as_bytes(),
        config.token_leeway,
        idp_http_client()?,
        &metrics,
    )
    .map_err(DevError::Invalid)?;
    let banner = banner(
        &ca_url,
        &provider,
        &keys.user.trusted_lines(),
        &config,
        kept,
    );
    let state = assemble(
        CaParts {
            verifier,
            policy,
            keys,
            store,
            metrics,
        },
        &config,
    );
    let serving = state.clone();
    let monitoring = spawn_monitoring(
        metrics_listener,
        host::answer_only_for(monitoring_app(state.clone()), config.metrics_listen),
    )?;
    let router = host::answer_only_for(app(state).merge(idp::router(provider)), local);
    on_ready(banner);
    let served = serve_router(listener, None, router, &serving, shutdown).await;
    monitoring.stop();
    served.map_err(DevError::from)
}

/// `DATA_DIR/policies`, holding the example policies (written on first use,
/// then left alone: edit them there and dev mode reloads them).
fn example_policy_dir(data_dir: &Path) -> Result<PathBuf, DevError> {
    let dir = data_dir.join("policies");
    if dir.is_dir() {
        return Ok(dir);
    }
    let data_err = |message: String| DevError::DataDir {
        path: dir.clone(),
        message,
    };
    crate::policy::write_examples(&dir, NOT_FOR_DEV).map_err(|e| data_err(e.to_string()))?;
    Ok(dir)
}

/// Example policies left out of dev mode: the CI rule matches only tokens of
/// GitHub's issuer, which dev mode cannot trust, and its first line was a
/// warning that the rule never applies.
const NOT_FOR_DEV: &[&str] = &["40-ci.toml"];

/// Creates the CA keys on first use, protected by a random passphrase kept
/// beside them: dev keys are throw-away by definition.
fn dev_passphrase(data_dir: &Path) -> Result<Passphrase, DevError> {
    let data_err = |message: String| DevError::DataDir {
        path: data_dir.to_path_buf(),
        message,
    };
    let passphrase_path = data_dir.join(DEV_PASSPHRASE_FILE);
    if data_dir.join(ca_keys::MANIFEST).exists() {
        if !passphrase_path.exists() {
            return Err(data_err(
                "holds CA keys that are not from dev mode; dev mode never touches real keys".into(),
            ));
        }
        return Passphrase::load(Some(&passphrase_path)).map_err(data_err);
    }
    let mut bytes = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let passphrase = Passphrase::new(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ));
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(data_dir)
        .map_err(|e| data_err(e.to_string()))?;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&passphrase_path)
            .map_err(|e| data_err(e.to_string()))?;
        file.write_all(passphrase.expose_secret().as_bytes())
            .map_err(|e| data_err(e.to_string()))?;
    }
    ca_keys::init(data_dir, CaKeyType::Ed25519, &passphrase)
        .map_err(|e| data_err(e.to_string()))?;
    Ok(passphrase)
}

fn banner(
    ca_url: &str,
    provider: &DevIdp,
    user_ca_keys: &[String],
    config: &Config,
    kept: bool,
) -> String {
    let data_dir = &config.data_dir;
    let users: Vec<String> = provider
        .users()
        .iter()
        .map(|u| format!("{} [{}]", u.name, u.groups.join(",")))
        .collect();
    let storage = if kept {
        format!("{} (kept)", data_dir.display())
    } else {
        format!(
            "{} (deleted on exit; --data-dir keeps it)",
            data_dir.display()
        )
    };
    format!(
        "\n  jit-ssh-ca DEVELOPMENT MODE: throw-away CA keys and a built-in identity provider\n  \
         with no passwords. Never trust this CA on a machine that matters.\n\n  \
         CA                 {ca_url}\n  \
         Identity provider  {issuer}\n  \
         Metrics            http://{metrics}/metrics\n  \
         Users              {users}\n  \
         Data               {storage}\n  \
         Policies           {policies} (edits are reloaded)\n\n  \
         Log in:\n    jit-ssh login --ca {ca_url}\n\n  \
         Trust this CA in a test sshd (sshd_config: TrustedUserCAKeys FILE, FILE holding):\n    {keys}\n",
        issuer = provider.issuer(),
        metrics = config.metrics_listen,
        policies = config.policy_dir.display(),
        users = users.join(", "),
        keys = user_ca_keys.join("\n    ")
    )
}
