//! The `jit-ssh` commands as library functions: `login`, `ensure`, `status`,
//! `logout`, `ssh-config`. `main.rs` only parses arguments and calls these
//! with an [`Env`] (directories, `$BROWSER`, `SSH_AUTH_SOCK`), so nothing
//! here reads the process environment on its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jit_ssh_common::duration::format_seconds;
use jit_ssh_common::Secret;
use serde::Serialize;
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};

use crate::agent::{comment_for, Added, Agent};
use crate::ca::{CaClient, FetchedConfig};
use crate::error::{CliError, Failure};
use crate::oidc::{Provider, Tokens};
use crate::paths::{create_private_dir, write_atomic, write_private, CaSlug, Dirs};
use crate::session::{SessionFiles, SessionInfo, Storage};
use crate::ui::Ui;

/// A certificate with less than this left is renewed by `ensure`.
pub const RENEW_MARGIN: u64 = 60;
/// Clock difference with the CA that earns a warning.
pub const SKEW_WARNING: u64 = 30;

/// What the commands get from the outside world.
#[derive(Debug, Clone)]
pub struct Env {
    /// Directories.
    pub dirs: Dirs,
    /// `$BROWSER`.
    pub browser: Option<String>,
    /// `SSH_AUTH_SOCK`.
    pub auth_sock: Option<PathBuf>,
    /// Output.
    pub ui: Ui,
}

/// How to reach the CA.
#[derive(Debug, Clone)]
pub struct CaTarget {
    /// Base URL.
    pub url: String,
    /// Extra TLS root (PEM).
    pub root_pem: Option<Vec<u8>>,
}

impl CaTarget {
    /// The CA's directory name.
    pub fn slug(&self) -> Result<CaSlug, CliError> {
        CaSlug::from_url(&self.url).map_err(CliError::other)
    }

    pub(crate) fn client(&self) -> Result<CaClient, CliError> {
        Ok(CaClient::new(&self.url, self.root_pem.as_deref())?)
    }
}

/// Which interactive flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code + PKCE via a loopback redirect.
    Browser,
    /// RFC 8628 device flow.
    Device,
}

/// Where the ID token comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// Sign in interactively.
    Interactive {
        /// The flow.
        flow: Flow,
        /// How long to wait for the person.
        timeout: Duration,
    },
    /// A token the platform issued (workloads).
    Given(Secret),
}

/// `login` options.
#[derive(Debug)]
pub struct LoginOptions {
    /// `--issuer`.
    pub issuer: Option<String>,
    /// Where the token comes from.
    pub source: TokenSource,
    /// `--principal`.
    pub principals: Vec<String>,
    /// `--ttl`.
    pub ttl: Option<Duration>,
    /// `--no-agent`.
    pub no_agent: bool,
    /// `--confirm`.
    pub confirm: bool,
}

/// What `login` (and a renewal) did; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// Certificate serial.
    pub serial: String,
    /// Key ID.
    pub key_id: String,
    /// Principals.
    pub principals: Vec<String>,
    /// Start of validity.
    pub valid_after: u64,
    /// End of validity.
    pub valid_before: u64,
    /// `agent` or `files`.
    pub stored: Storage,
    /// Whether the agent holds it with a lifetime constraint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_lifetime: Option<bool>,
    /// Key file (files storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// Certificate file (files storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_path: Option<PathBuf>,
    /// Whether silent renewal is possible (a refresh token is kept).
    pub renewable: bool,
}

/// Current Unix time.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the async runtime: {e}")))
}

/// The clock-skew warning, if the CA's clock is more than
/// [`SKEW_WARNING`] seconds from ours.
pub fn skew_warning(server: Option<SystemTime>, local: SystemTime) -> Option<String> {
    let server = server?;
    let (ahead, by) = match server.duration_since(local) {
        Ok(d) => ("ahead of", d),
        Err(e) => ("behind", e.duration()),
    };
    (by.as_secs() > SKEW_WARNING).then(|| {
        format!(
            "the CA's clock is {}s {ahead} this machine's: certificates may look not yet valid or \
             expired early; fix this machine's time (NTP)",
            by.as_secs()
        )
    })
}

async fn fetch_config(ca: &CaClient, env: &Env) -> Result<FetchedConfig, CliError> {
    let fetched = ca.fetch_config().await?;
    if let Some(warning) = skew_warning(fetched.server_date, SystemTime::now()) {
        env.ui.warn(&warning);
    }
    Ok(fetched)
}

/// `jit-ssh login`.
pub fn login(env: &Env, target: &CaTarget, options: LoginOptions) -> Result<Issued, CliError> {
    runtime()?.block_on(login_async(env, target, options))
}

async fn login_async(
    env: &Env,
    target: &CaTarget,
    options: LoginOptions,
) -> Result<Issued, CliError> {
    let slug = target.slug()?;
    let ca = target.client()?;
    let config = fetch_config(&ca, env).await?.config;
    let issuer = match &options.issuer {
        Some(name) => config
            .issuers
            .iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| {
                CliError::other(format!(
                    "the CA trusts no issuer named {name:?}; it trusts: {}",
                    names(&config)
                ))
            })?,
        None => match config.issuers.as_slice() {
            [only] => only,
            [] => return Err(CliError::other("the CA publishes no identity provider")),
            _ => {
                return Err(CliError::other(format!(
                    "the CA trusts several identity providers: pick one with --issuer ({})",
                    names(&config)
                )))
            }
        },
    };
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| CliError::other(format!("generating a key: {e}")))?;
    key.set_comment("jit-ssh");
    let nonce = crate::nonce_for(&key)?;
    let tokens = match options.source {
        TokenSource::Given(id_token) => Tokens {
            id_token,
            refresh_token: None,
        },
        TokenSource::Interactive { flow, timeout } => {
            let provider = Provider::discover(ca.http(), &issuer.issuer, &issuer.client_id).await?;
            let scopes = provider.scopes(&issuer.scopes);
            let browser = env.browser.as_deref();
            match flow {
                Flow::Browser => {
                    provider
                        .browser_login(&scopes, &nonce, browser, timeout, &env.ui)
                        .await?
                }
                Flow::Device => {
                    provider
                        .device_login(&scopes, &nonce, browser, timeout, &env.ui)
                        .await?
                }
            }
        }
    };
    let storage = choose_storage(env, options.no_agent);
    let info = SessionInfo {
        ca_url: target.url.clone(),
        issuer_name: issuer.name.clone(),
        issuer: issuer.issuer.clone(),
        client_id: issuer.client_id.clone(),
        storage,
        confirm: options.confirm,
        principals: options.principals.clone(),
        ttl: options.ttl.map(|t| t.as_secs()),
    };
    let mut issued = certify_and_store(env, &ca, &slug, &key, &tokens.id_token, &info).await?;
    let session = SessionFiles::new(env.dirs.session_dir(&slug));
    match &tokens.refresh_token {
        Some(refresh) => {
            session
                .save(&info, refresh, &key)
                .map_err(CliError::other)?;
            issued.renewable = true;
        }
        None => {
            // A previous login's session belongs to a key that is now replaced.
            session.delete().map_err(CliError::other)?;
        }
    }
    Ok(issued)
}

fn names(config: &ca_proto::CaConfig) -> String {
    config
        .issuers
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn choose_storage(env: &Env, no_agent: bool) -> Storage {
    if no_agent {
        return Storage::Files;
    }
    match &env.auth_sock {
        Some(sock) if Agent::connect(sock).is_ok() => Storage::Agent,
        _ => {
            env.ui
                .info("No ssh-agent reachable (SSH_AUTH_SOCK): writing key files instead.");
            Storage::Files
        }
    }
}

async fn certify_and_store(
    env: &Env,
    ca: &CaClient,
    slug: &CaSlug,
    key: &PrivateKey,
    id_token: &Secret,
    info: &SessionInfo,
) -> Result<Issued, CliError> {
    let response = ca
        .request_user_certificate(
            id_token.expose_secret(),
            key,
            &info.principals,
            info.ttl.map(Duration::from_secs),
        )
        .await?;
    let certificate = Certificate::from_openssh(&response.certificate)
        .map_err(|e| CliError::other(format!("the CA returned an unreadable certificate: {e}")))?;
    let mut issued = Issued {
        serial: response.serial.clone(),
        key_id: response.key_id.clone(),
        principals: response.principals.clone(),
        valid_after: response.valid_after,
        valid_before: response.valid_before,
        stored: info.storage,
        agent_lifetime: None,
        key_path: None,
        certificate_path: None,
        renewable: false,
    };
    let now = unix_now();
    match info.storage {
        Storage::Agent => {
            let sock = env
                .auth_sock
                .as_deref()
                .ok_or_else(|| CliError::new(Failure::Agent, "SSH_AUTH_SOCK is not set"))?;
            let mut agent = Agent::connect(sock)?;
            agent.remove_stale(slug, now, true)?;
            let lifetime = Duration::from_secs(response.valid_before.saturating_sub(now).max(1));
            let user_at = certificate.comment().to_string();
            let user_at = user_at.strip_prefix("jit-ssh:").unwrap_or(&user_at);
            let added = agent.add(
                key,
                &certificate,
                &comment_for(user_at, slug),
                lifetime,
                info.confirm,
            )?;
            if added == Added::WithoutLifetime {
                env.ui.warn(
                    "the ssh-agent refused a lifetime constraint: the key was added without one; \
                     `jit-ssh ensure` and `jit-ssh logout` remove it once expired",
                );
            }
            issued.agent_lifetime = Some(added == Added::WithLifetime);
        }
        Storage::Files => {
            let (key_path, cert_path) = write_files(&env.dirs.files_dir(slug), key, &certificate)?;
            issued.key_path = Some(key_path);
            issued.certificate_path = Some(cert_path);
        }
    }
    Ok(issued)
}

fn write_files(
    dir: &Path,
    key: &PrivateKey,
    certificate: &Certificate,
) -> Result<(PathBuf, PathBuf), CliError> {
    let io = |path: &Path, e: std::io::Error| {
        CliError::other(format!("writing {}: {e}", path.display()))
    };
    create_private_dir(dir).map_err(|e| io(dir, e))?;
    let key_path = dir.join("id_ed25519");
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| CliError::other(format!("encoding the key: {e}")))?;
    write_private(&key_path, pem.as_bytes()).map_err(|e| io(&key_path, e))?;
    let pub_path = dir.join("id_ed25519.pub");
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| CliError::other(e.to_string()))?;
    write_atomic(&pub_path, format!("{public}\n").as_bytes(), 0o644)
        .map_err(|e| io(&pub_path, e))?;
    let cert_path = dir.join("id_ed25519-cert.pub");
    let cert = certificate
        .to_openssh()
        .map_err(|e| CliError::other(e.to_string()))?;
    write_atomic(&cert_path, format!("{cert}\n").as_bytes(), 0o644)
        .map_err(|e| io(&cert_path, e))?;
    Ok((key_path, cert_path))
}

/// One line per `login`/renewal for people.
pub fn describe(issued: &Issued, now: u64) -> String {
    let left = format_seconds(issued.valid_before.saturating_sub(now));
    let place = match (&issued.stored, &issued.key_path) {
        (Storage::Files, Some(key)) => format!(
            "written to {} (use: ssh -i {} host)",
            issued
                .certificate_path
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display(),
            key.display()
        ),
        _ if issued.agent_lifetime == Some(false) => "loaded into ssh-agent (no lifetime)".into(),
        _ => format!("loaded into ssh-agent for {left}"),
    };
    format!(
        "Certificate for {} (serial {}, valid {left}) {place}{}",
        issued.principals.join(","),
        issued.serial,
        if issued.renewable {
            "; renewed silently by `jit-ssh ensure`"
        } else {
            ""
        }
    )
}

/// What `ensure` found or did.
#[derive(Debug)]
pub enum Ensured {
    /// A certificate valid for at least [`RENEW_MARGIN`] is loaded.
    Fresh,
    /// Renewed with the refresh token.
    Renewed(Issued),
    /// Renewed through an interactive login.
    LoggedIn(Issued),
}

/// `ensure` options.
#[derive(Debug, Clone)]
pub struct EnsureOptions {
    /// Never start an interactive login.
    pub no_login: bool,
    /// The interactive flow, when needed.
    pub flow: Flow,
    /// How long to wait for the person.
    pub timeout: Duration,
}

/// The network-free check: is a certificate from this CA, valid for at least
/// [`RENEW_MARGIN`] more seconds, in the agent or on disk? Also removes
/// expired jit-ssh certificates from the agent (those added without a
/// lifetime).
pub fn fresh_certificate(env: &Env, slug: &CaSlug, now: u64) -> bool {
    if let Some(sock) = &env.auth_sock {
        if let Ok(mut agent) = Agent::connect(sock) {
            if let Ok(entries) = agent.jit_entries() {
                let mut fresh = false;
                for entry in &entries {
                    let before = entry.certificate.valid_before();
                    if before <= now {
                        let _ = agent.remove(&entry.certificate);
                    } else if entry.is_from(slug) && before >= now + RENEW_MARGIN {
                        fresh = true;
                    }
                }
                if fresh {
                    return true;
                }
            }
        }
    }
    let cert_path = env.dirs.files_dir(slug).join("id_ed25519-cert.pub");
    std::fs::read_to_string(cert_path)
        .ok()
        .and_then(|text| Certificate::from_openssh(text.trim()).ok())
        .is_some_and(|c| c.valid_before() >= now + RENEW_MARGIN)
}

/// `jit-ssh ensure`.
pub fn ensure(env: &Env, target: &CaTarget, options: &EnsureOptions) -> Result<Ensured, CliError> {
    let slug = target.slug()?;
    if fresh_certificate(env, &slug, unix_now()) {
        return Ok(Ensured::Fresh);
    }
    let runtime = runtime()?;
    let session_files = SessionFiles::new(env.dirs.session_dir(&slug));
    let session = session_files.load().map_err(CliError::other)?;
    let mut login_defaults = (Vec::new(), None, false, None::<String>);
    if let Some(session) = session {
        login_defaults = (
            session.info.principals.clone(),
            session.info.ttl.map(Duration::from_secs),
            session.info.confirm,
            Some(session.info.issuer_name.clone()),
        );
        let renewed = runtime.block_on(async {
            let ca = target.client()?;
            fetch_config(&ca, env).await?;
            let provider =
                Provider::discover(ca.http(), &session.info.issuer, &session.info.client_id)
                    .await?;
            let tokens = match provider.refresh(&session.refresh_token).await {
                Ok(tokens) => tokens,
                Err(crate::oidc::OidcError::RefreshRefused(reason)) => {
                    env.ui.info(&format!(
                        "The sign-in session has ended ({reason}); signing in again."
                    ));
                    session_files.delete().map_err(CliError::other)?;
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            };
            // Refresh tokens rotate: the old one is spent, keep the new one now.
            if let Some(refresh) = &tokens.refresh_token {
                session_files
                    .save_refresh_token(refresh)
                    .map_err(CliError::other)?;
            }
            let mut info = session.info.clone();
            let agent_up = env
                .auth_sock
                .as_deref()
                .is_some_and(|s| Agent::connect(s).is_ok());
            if info.storage == Storage::Agent && !agent_up {
                info.storage = Storage::Files;
            }
            let mut issued =
                certify_and_store(env, &ca, &slug, &session.key, &tokens.id_token, &info).await?;
            issued.renewable = true;
            Ok::<_, CliError>(Some(issued))
        })?;
        if let Some(issued) = renewed {
            return Ok(Ensured::Renewed(issued));
        }
    }
    if options.no_login {
        return Err(CliError::new(
            Failure::NotLoggedIn,
            "no valid jit-ssh certificate and no sign-in session: run `jit-ssh login`",
        ));
    }
    let (principals, ttl, confirm, issuer) = login_defaults;
    let issued = runtime.block_on(login_async(
        env,
        target,
        LoginOptions {
            issuer,
            source: TokenSource::Interactive {
                flow: options.flow,
                timeout: options.timeout,
            },
            principals,
            ttl,
            no_agent: false,
            confirm,
        },
    ))?;
    Ok(Ensured::LoggedIn(issued))
}

/// One jit-ssh certificate found by `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// `agent` or `files`.
    pub stored: Storage,
    /// The CA (directory name).
    pub ca: Option<String>,
    /// Certificate file, for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_path: Option<PathBuf>,
    /// Key ID.
    pub key_id: String,
    /// Serial.
    pub serial: String,
    /// Principals.
    pub principals: Vec<String>,
    /// Issuer name from the key ID.
    pub issuer: Option<String>,
    /// End of validity.
    pub valid_before: u64,
    /// Seconds left (0 when expired).
    pub seconds_left: u64,
}

/// `status` result.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Certificates.
    pub certificates: Vec<StatusEntry>,
    /// CAs with a renewable sign-in session.
    pub sessions: Vec<String>,
    /// Whether an agent answered.
    pub agent: bool,
}

fn key_id_field(key_id: &str, field: &str) -> Option<String> {
    key_id
        .split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{field}=")))
        .map(str::to_string)
}

fn status_entry(
    certificate: &Certificate,
    stored: Storage,
    ca: Option<String>,
    path: Option<PathBuf>,
    now: u64,
) -> StatusEntry {
    StatusEntry {
        stored,
        ca,
        certificate_path: path,
        key_id: certificate.key_id().to_string(),
        serial: certificate.serial().to_string(),
        principals: certificate.valid_principals().to_vec(),
        issuer: key_id_field(certificate.key_id(), "issuer"),
        valid_before: certificate.valid_before(),
        seconds_left: certificate.valid_before().saturating_sub(now),
    }
}

/// `jit-ssh status`: every jit-ssh certificate in the agent and on disk.
pub fn status(env: &Env) -> Status {
    let now = unix_now();
    let mut certificates = Vec::new();
    let mut agent_ok = false;
    if let Some(sock) = &env.auth_sock {
        if let Ok(entries) = Agent::connect(sock).and_then(|mut a| a.jit_entries()) {
            agent_ok = true;
            for entry in entries {
                let ca = entry
                    .comment
                    .rsplit_once(" ca=")
                    .map(|(_, ca)| ca.to_string());
                certificates.push(status_entry(
                    &entry.certificate,
                    Storage::Agent,
                    ca,
                    None,
                    now,
                ));
            }
        }
    }
    let files_root = env.dirs.ssh.join("jit-ssh");
    let mut sessions = Vec::new();
    for (root, is_files) in [(&files_root, true), (&env.dirs.config, false)] {
        let Ok(dir) = std::fs::read_dir(root) else {
            continue;
        };
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let ca = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if is_files {
                let cert_path = path.join("id_ed25519-cert.pub");
                if let Some(cert) = std::fs::read_to_string(&cert_path)
                    .ok()
                    .and_then(|t| Certificate::from_openssh(t.trim()).ok())
                {
                    certificates.push(status_entry(
                        &cert,
                        Storage::Files,
                        ca,
                        Some(cert_path),
                        now,
                    ));
                }
            } else if path.join("refresh_token").exists() {
                sessions.extend(ca);
            }
        }
    }
    Status {
        certificates,
        sessions,
        agent: agent_ok,
    }
}

/// `status` for people.
pub fn describe_status(status: &Status) -> String {
    let mut out = String::new();
    if status.certificates.is_empty() {
        out.push_str("No jit-ssh certificates. Run `jit-ssh login`.\n");
    }
    for c in &status.certificates {
        let left = if c.seconds_left == 0 {
            "expired".to_string()
        } else {
            format!("{} left", format_seconds(c.seconds_left))
        };
        let place = match c.stored {
            Storage::Agent => "agent".to_string(),
            Storage::Files => c
                .certificate_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        out.push_str(&format!(
            "{}  principals {}  serial {}  issuer {}  CA {}  {left}\n",
            place,
            c.principals.join(","),
            c.serial,
            c.issuer.as_deref().unwrap_or("?"),
            c.ca.as_deref().unwrap_or("?"),
        ));
    }
    for s in &status.sessions {
        out.push_str(&format!(
            "Sign-in session for CA {s}: renewals need no browser.\n"
        ));
    }
    out
}

/// What `logout` did.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedOut {
    /// Certificates removed from the agent.
    pub agent_removed: usize,
    /// Files removed.
    pub files_removed: bool,
    /// A session (refresh token, key) was deleted.
    pub session_removed: bool,
    /// The refresh token was revoked at the identity provider.
    pub refresh_token_revoked: Option<bool>,
    /// Serials of this CA's unexpired certificates revoked at the CA.
    pub certificates_revoked: Vec<String>,
    /// Notes for the person (best-effort steps that did not happen).
    pub notes: Vec<String>,
}

/// `jit-ssh logout`.
pub fn logout(env: &Env, target: &CaTarget) -> Result<LoggedOut, CliError> {
    let slug = target.slug()?;
    let mut notes = Vec::new();
    // First, while the keys are still at hand: revoke this CA's unexpired
    // certificates at the CA, so that hosts refuse them once their KRL is
    // synced, instead of at expiry.
    let certificates_revoked = revoke_own_certificates(env, target, &slug, &mut notes);
    let mut agent_removed = 0;
    if let Some(sock) = &env.auth_sock {
        match Agent::connect(sock) {
            Ok(mut agent) => agent_removed = agent.remove_stale(&slug, unix_now(), true)?,
            Err(e) => notes.push(format!("agent not cleaned: {e}")),
        }
    }
    let files_dir = env.dirs.files_dir(&slug);
    let files_removed = files_dir.exists();
    if files_removed {
        std::fs::remove_dir_all(&files_dir)
            .map_err(|e| CliError::other(format!("removing {}: {e}", files_dir.display())))?;
        // ~/.ssh/jit-ssh itself, when no other CA's files are left.
        if let Some(parent) = files_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let session_files = SessionFiles::new(env.dirs.session_dir(&slug));
    let mut revoked = None;
    if let Ok(Some(session)) = session_files.load() {
        let result = runtime()?.block_on(async {
            let ca = target.client()?;
            let provider =
                Provider::discover(ca.http(), &session.info.issuer, &session.info.client_id)
                    .await?;
            Ok::<_, CliError>(provider.revoke(&session.refresh_token).await?)
        });
        match result {
            Ok(true) => revoked = Some(true),
            Ok(false) => notes.push("the identity provider offers no token revocation; the refresh token was deleted here".into()),
            Err(e) => {
                revoked = Some(false);
                notes.push(format!("could not revoke the refresh token ({e}); it was deleted here"));
            }
        }
    }
    let session_removed = session_files.delete().map_err(CliError::other)?;
    // ~/.config/jit-ssh itself, when nothing else (config.toml, other CAs) is left.
    let _ = std::fs::remove_dir(&env.dirs.config);
    Ok(LoggedOut {
        agent_removed,
        files_removed,
        session_removed,
        refresh_token_revoked: revoked,
        certificates_revoked,
        notes,
    })
}

/// Revokes, best effort, every unexpired certificate of this CA whose key
/// `logout` can sign with (the key files, or the session key for what the
/// agent holds). Returns the serials revoked; failures become notes.
fn revoke_own_certificates(
    env: &Env,
    target: &CaTarget,
    slug: &CaSlug,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let now = unix_now();
    let mut pairs: Vec<(Certificate, PrivateKey)> = Vec::new();
    let files_dir = env.dirs.files_dir(slug);
    let file_key = std::fs::read_to_string(files_dir.join("id_ed25519"))
        .ok()
        .and_then(|pem| PrivateKey::from_openssh(pem).ok());
    let file_cert = std::fs::read_to_string(files_dir.join("id_ed25519-cert.pub"))
        .ok()
        .and_then(|line| Certificate::from_openssh(line.trim()).ok());
    if let (Some(key), Some(cert)) = (file_key, file_cert) {
        pairs.push((cert, key));
    }
    let session_key = SessionFiles::new(env.dirs.session_dir(slug))
        .load()
        .ok()
        .flatten()
        .map(|s| s.key);
    if let Some(sock) = &env.auth_sock {
        if let Ok(entries) = Agent::connect(sock).and_then(|mut a| a.jit_entries()) {
            for entry in entries.into_iter().filter(|e| e.is_from(slug)) {
                let cert = entry.certificate;
                if cert.valid_before() <= now
                    || pairs.iter().any(|(c, _)| c.serial() == cert.serial())
                {
                    continue;
                }
                match &session_key {
                    Some(key) if key.public_key().key_data() == cert.public_key() => {
                        pairs.push((cert, key.clone()));
                    }
                    _ => notes.push(format!(
                        "certificate {} is held only by the agent: not revoked at the CA \
                         (it ends at its expiry)",
                        cert.serial()
                    )),
                }
            }
        }
    }
    pairs.retain(|(cert, _)| cert.valid_before() > now);
    if pairs.is_empty() {
        return Vec::new();
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let ca = target.client()?;
            let mut revoked = Vec::new();
            for (cert, key) in &pairs {
                let serial = cert.serial().to_string();
                match ca.revoke_own(&serial, key).await {
                    Ok(_) => revoked.push(serial),
                    Err(e) => notes.push(format!(
                        "could not revoke certificate {serial} at the CA ({e}); it ends at its expiry"
                    )),
                }
            }
            Ok::<_, CliError>(revoked)
        })
    });
    match result {
        Ok(revoked) => revoked,
        Err(e) => {
            notes.push(format!(
                "could not revoke at the CA ({e}); certificates end at their expiry"
            ));
            Vec::new()
        }
    }
}

/// Markers around the block `ssh-config --install` manages.
fn markers(slug: &CaSlug) -> (String, String) {
    (
        format!("# BEGIN jit-ssh {slug} (managed by `jit-ssh ssh-config --install`)"),
        format!("# END jit-ssh {slug}"),
    )
}

/// The `~/.ssh/config` block and the `known_hosts` lines for a CA.
pub fn ssh_config_block(
    exe: &Path,
    target: &CaTarget,
    slug: &CaSlug,
    files_dir: &Path,
    host_ca_keys: &[String],
) -> (String, Vec<String>) {
    let (begin, end) = markers(slug);
    let mut ensure = format!("{} ensure --quiet --ca {}", exe.display(), target.url);
    if target.root_pem.is_some() {
        ensure.push_str(" --ca-cert <FILE>");
    }
    let key = files_dir.join("id_ed25519");
    let block = format!(
        "{begin}\n\
         # Renews the certificate before each connection (no network when one is loaded).\n\
         Match exec \"{ensure}\"\n\
         \x20   # Used when the certificate went to files (--no-agent or no agent).\n\
         \x20   IdentityFile {key}\n\
         \x20   CertificateFile {key}-cert.pub\n\
         {end}\n",
        key = key.display()
    );
    let known_hosts = host_ca_keys
        .iter()
        .map(|k| format!("@cert-authority * {k}"))
        .collect();
    (block, known_hosts)
}

/// Puts `block` into `config` text: replaces an existing block of the same
/// CA, else appends. Returns the new text.
pub fn install_block(config: &str, block: &str, slug: &CaSlug) -> String {
    let (begin, end) = markers(slug);
    if let (Some(start), Some(stop)) = (config.find(&begin), config.find(&end)) {
        if stop > start {
            let after = stop + end.len();
            let after = if config[after..].starts_with('\n') {
                after + 1
            } else {
                after
            };
            return format!("{}{block}{}", &config[..start], &config[after..]);
        }
    }
    // `Match` applies to everything after it: append at the end.
    let mut out = config.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(block);
    out
}

/// `jit-ssh ssh-config [--install]`; returns what to print.
pub fn ssh_config(
    env: &Env,
    target: &CaTarget,
    exe: &Path,
    install: bool,
) -> Result<String, CliError> {
    let slug = target.slug()?;
    let config = runtime()?.block_on(async {
        let ca = target.client()?;
        Ok::<_, CliError>(fetch_config(&ca, env).await?.config)
    })?;
    let (block, known_hosts) = ssh_config_block(
        exe,
        target,
        &slug,
        &env.dirs.files_dir(&slug),
        &config.host_ca_keys,
    );
    if !install {
        let mut out = format!("# ~/.ssh/config\n{block}");
        if !known_hosts.is_empty() {
            out.push_str("\n# ~/.ssh/known_hosts\n");
            for line in &known_hosts {
                out.push_str(line);
                out.push('\n');
            }
        }
        return Ok(out);
    }
    let io = |path: &Path, e: std::io::Error| CliError::other(format!("{}: {e}", path.display()));
    create_private_dir(&env.dirs.ssh).map_err(|e| io(&env.dirs.ssh, e))?;
    let config_path = env.dirs.ssh.join("config");
    let old = std::fs::read_to_string(&config_path).unwrap_or_default();
    let new = install_block(&old, &block, &slug);
    let mut report = Vec::new();
    if new != old {
        if config_path.exists() {
            let backup = env.dirs.ssh.join("config.jit-ssh.bak");
            std::fs::copy(&config_path, &backup).map_err(|e| io(&backup, e))?;
            report.push(format!(
                "Backed up {} to {}",
                config_path.display(),
                backup.display()
            ));
        }
        write_atomic(&config_path, new.as_bytes(), 0o600).map_err(|e| io(&config_path, e))?;
        report.push(format!(
            "Added the jit-ssh block to {}",
            config_path.display()
        ));
    } else {
        report.push(format!(
            "{} already has the jit-ssh block",
            config_path.display()
        ));
    }
    if !known_hosts.is_empty() {
        let kh_path = env.dirs.ssh.join("known_hosts");
        let old = std::fs::read_to_string(&kh_path).unwrap_or_default();
        let missing: Vec<&String> = known_hosts
            .iter()
            .filter(|l| !old.lines().any(|o| o.trim() == l.as_str()))
            .collect();
        if !missing.is_empty() {
            let mut new = old.clone();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            for line in missing {
                new.push_str(line);
                new.push('\n');
            }
            write_atomic(&kh_path, new.as_bytes(), 0o644).map_err(|e| io(&kh_path, e))?;
            report.push(format!("Added the host CA to {}", kh_path.display()));
        }
    }
    Ok(report.join("\n") + "\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_reported_both_ways_beyond_thirty_seconds() {
        let local = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(skew_warning(Some(local + Duration::from_secs(10)), local).is_none());
        assert!(skew_warning(Some(local + Duration::from_secs(31)), local)
            .unwrap()
            .contains("31s ahead"));
        assert!(skew_warning(Some(local - Duration::from_secs(300)), local)
            .unwrap()
            .contains("300s behind"));
        assert!(skew_warning(None, local).is_none());
    }

    #[test]
    fn install_is_idempotent_and_replaces_its_own_block() {
        let slug = CaSlug("ca.example.com".into());
        let target = CaTarget {
            url: "https://ca.example.com".into(),
            root_pem: None,
        };
        let (block, _) = ssh_config_block(
            Path::new("/usr/bin/jit-ssh"),
            &target,
            &slug,
            Path::new("/h/.ssh/jit-ssh/ca.example.com"),
            &[],
        );
        let original = "Host a\n  User b\n";
        let once = install_block(original, &block, &slug);
        assert!(once.starts_with(original));
        assert!(once.contains(
            "Match exec \"/usr/bin/jit-ssh ensure --quiet --ca https://ca.example.com\""
        ));
        assert_eq!(install_block(&once, &block, &slug), once);
        let changed = block.replace("ensure", "ensure --no-login");
        let twice = install_block(&once, &changed, &slug);
        assert_eq!(twice.matches("# BEGIN jit-ssh").count(), 1);
        assert!(twice.contains("--no-login"));
    }

    #[test]
    fn key_id_fields() {
        let id = "jit-ssh user=alice issuer=test serial=1 rule=builtin-username";
        assert_eq!(key_id_field(id, "issuer").as_deref(), Some("test"));
        assert_eq!(key_id_field(id, "nope"), None);
    }
}
