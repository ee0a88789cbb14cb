//! `jit-ssh ensure`, run before each `ssh` connection (`Match exec`): answer
//! at once, without the network, when a certificate from this CA stays
//! valid for at least [`RENEW_MARGIN`]; else renew silently with the stored
//! refresh token; else sign in interactively (unless `--no-login`, which
//! fails with exit 14 instead).

use std::time::Duration;

use ssh_key::Certificate;

use super::certify::{certify_and_store, Issued};
use super::login::{login_async, LoginOptions};
use super::{fetch_config, runtime, unix_now, CaTarget, Env, Flow, TokenSource};
use crate::agent::Agent;
use crate::error::{CliError, Failure};
use crate::oidc::Provider;
use crate::paths::CaSlug;
use crate::session::{SessionFiles, Storage};

/// A certificate with less than this left is renewed by `ensure`.
pub const RENEW_MARGIN: u64 = 60;

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
