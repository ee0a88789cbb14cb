//! `jit-ssh login`: pick the identity provider the CA trusts, make a fresh
//! Ed25519 key, obtain an ID token bound to it (interactively, or one the
//! platform gave), have it certified and stored, and keep a sign-in session
//! for silent renewals when the provider gave a refresh token. A login
//! without a refresh token deletes any older session, whose key it replaced.

use std::time::Duration;

use ssh_key::{Algorithm, PrivateKey};

use super::certify::{certify_and_store, Issued, NotCertified};
use super::{ca_trust, fetch_config, runtime, CaTarget, Env, Flow, TokenSource};
use crate::agent::Agent;
use crate::error::{CliError, Failure};
use crate::known_cas::{self, Remembered};
use crate::oidc::{Provider, Tokens};
use crate::session::{SessionFiles, SessionInfo, Storage};

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
    /// `--accept-ca-key`: fingerprints of user-CA keys to trust although
    /// they replace the pinned ones outside a published rotation.
    pub accept_ca_keys: Vec<String>,
}

/// `jit-ssh login`.
pub fn login(env: &Env, target: &CaTarget, options: LoginOptions) -> Result<Issued, CliError> {
    runtime()?.block_on(login_async(env, target, options))
}

/// `login` on a runtime the caller already has (`ensure` falls back to it).
pub(super) async fn login_async(
    env: &Env,
    target: &CaTarget,
    options: LoginOptions,
) -> Result<Issued, CliError> {
    let slug = target.slug()?;
    let ca = target.client()?;
    let config = fetch_config(&ca, env).await?.config;
    // Before the sign-in: a CA whose key changed is refused before the
    // person spends any effort on it.
    let trust = ca_trust(env, target, &slug, &config, &options.accept_ca_keys)?;
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
    let origin = match &options.source {
        TokenSource::Given(_) => Origin::Given,
        TokenSource::Interactive {
            flow: Flow::Device, ..
        } => Origin::Device,
        TokenSource::Interactive { .. } => Origin::Browser,
    };
    let tokens = match options.source {
        TokenSource::Given(id_token) => Tokens {
            id_token,
            refresh_token: None,
        },
        TokenSource::Interactive { flow, timeout } => {
            let provider = Provider::discover(ca.http(), &issuer.issuer, &issuer.client_id)
                .await?
                .with_sign_in(issuer)?;
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
        client_secret: issuer.public_client_secret.clone(),
        storage,
        confirm: options.confirm,
        principals: options.principals.clone(),
        ttl: options.ttl.map(|t| t.as_secs()),
    };
    let mut issued = certify_and_store(env, &ca, &slug, &key, &tokens.id_token, &info, &trust)
        .await
        .map_err(|refusal| match refusal {
            NotCertified::NonceRequired => nonce_required(origin, &issuer.name),
            NotCertified::Failed(error) => error,
        })?;
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
            if !matches!(origin, Origin::Given) {
                env.ui.warn(&crate::oidc::renewal_off_note(issuer));
            }
        }
    }
    say_remembered(env, target, &slug);
    Ok(issued)
}

/// Remembers the CA of a successful login, so later commands need no
/// `--ca`, and says so the first time. Failing to remember is a warning:
/// the certificate is stored already.
fn say_remembered(env: &Env, target: &CaTarget, slug: &crate::paths::CaSlug) {
    match known_cas::remember(&env.dirs, &target.url, target.root_pem.as_deref()) {
        Ok(Remembered::AsDefault) => env.ui.info(&format!(
            "Remembered {} as your default CA (name {slug}): later commands need no --ca.",
            target.url
        )),
        Ok(Remembered::Beside) => env.ui.info(&format!(
            "Remembered {} as CA {slug}: pick it with --ca {slug}.",
            target.url
        )),
        Ok(Remembered::Already) => {}
        Err(e) => env.ui.warn(&format!("could not remember the CA: {e}")),
    }
}

/// Where a login's ID token came from: what to do about a token without a
/// nonce depends on it.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Browser,
    Device,
    Given,
}

/// The one line for a CA that refused this login's ID token for having no
/// nonce (`nonce_required`): a fresh key is bound to nothing yet, so only a
/// token whose nonce names it, or an issuer that needs none, can certify it.
fn nonce_required(origin: Origin, issuer: &str) -> CliError {
    let message = match origin {
        Origin::Device => format!(
            "the identity provider left the nonce out of the device-flow ID token, and the CA \
             requires ID tokens of issuer {issuer} bound to the key by one: sign in with the \
             browser flow (`jit-ssh login --flow browser`), or ask the CA's operators to set \
             require_nonce = false for {issuer}"
        ),
        Origin::Given => format!(
            "the ID token has no nonce for this login's fresh key, and the CA requires one for \
             issuer {issuer}: workload tokens carry none, so the CA's operators set \
             require_nonce = false on a workload issuer; a person signs in with `jit-ssh login`"
        ),
        Origin::Browser => format!(
            "the identity provider left the nonce out of the ID token, and the CA requires one \
             for issuer {issuer}: run `jit-ssh login` again, and contact the CA's operators if it \
             persists"
        ),
    };
    CliError::new(Failure::CaRefused, message)
}

/// The issuer names the CA trusts, for error messages.
fn names(config: &ca_proto::CaConfig) -> String {
    config
        .issuers
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The agent when one answers and `--no-agent` was not given, else files.
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
