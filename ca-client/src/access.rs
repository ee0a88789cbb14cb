//! The access request commands: `request`, `requests`, `approve`, `deny`,
//! `done`, `review`. Each authenticates like `login`: an ID token given by the caller
//! (`--id-token-file`/`--id-token-env`), else one obtained silently with the
//! stored refresh token, else an interactive sign-in, which keeps its
//! sign-in session as `login` does, so an approver's next command needs no
//! browser. The CA spends each
//! token on one change and refuses a spent one on every call, reads
//! included, so every change gets a fresh one. A read spends nothing: one
//! given token serves `requests` and then one change, and a wait polls with
//! one token; but a given token cannot pay for a request and the wait for
//! its decision, which `request` says before it asks anything.

use std::time::{Duration, Instant};

use ca_proto::{
    AccessRequestCreate, AccessRequestDecision, AccessRequestView, ErrorCode, RequestStatus,
};
use jit_ssh_common::text::escape_control;

use crate::ca::CaClient;
use crate::commands::{Env, TokenSource};
use crate::error::{CliError, Failure};
use crate::oidc::Provider;
use crate::session::{SessionFiles, SessionInfo, Storage};
use jit_ssh_common::duration::format_seconds;
use jit_ssh_common::Secret;
use ssh_key::{Algorithm, PrivateKey};

/// How often `request` asks the CA whether its request was decided.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How the access commands get an ID token.
#[derive(Debug)]
pub struct Auth {
    /// `--issuer`.
    pub issuer: Option<String>,
    /// A given token, or the interactive flow to use when no sign-in session
    /// is stored.
    pub source: TokenSource,
}

/// What to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AccessCommand {
    /// `jit-ssh request`.
    Request {
        /// `--principal`.
        principals: Vec<String>,
        /// `--reason`.
        reason: String,
        /// `--for`.
        window: Option<Duration>,
        /// `--break-glass`: approve it at once as its requester.
        break_glass: bool,
        /// `--start`: RFC 3339 time the window opens at the earliest.
        start: Option<String>,
        /// `--from-first-use`: the window opens with the first certificate.
        from_first_use: bool,
        /// How long to wait for a decision; `None` returns at once.
        wait: Option<Duration>,
    },
    /// `jit-ssh requests`.
    List {
        /// `--pending`.
        pending: bool,
        /// `--needs-review`: unreviewed break-glass requests to review.
        needs_review: bool,
    },
    /// `jit-ssh review`.
    Review {
        /// The request.
        id: u64,
        /// `--comment`.
        comment: Option<String>,
    },
    /// `jit-ssh approve`.
    Approve {
        /// The request.
        id: u64,
        /// `--comment`.
        comment: Option<String>,
    },
    /// `jit-ssh deny`.
    Deny {
        /// The request.
        id: u64,
        /// `--reason`.
        reason: String,
    },
    /// `jit-ssh done`.
    Done {
        /// The request.
        id: u64,
        /// `--reason`.
        reason: Option<String>,
    },
}

/// Runs `command` against the CA at `target`; returns the requests to print.
pub fn run(
    env: &Env,
    target: &crate::commands::CaTarget,
    auth: Auth,
    command: AccessCommand,
) -> Result<Vec<AccessRequestView>, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(env, target, auth, command))
}

async fn run_async(
    env: &Env,
    target: &crate::commands::CaTarget,
    auth: Auth,
    command: AccessCommand,
) -> Result<Vec<AccessRequestView>, CliError> {
    let mut tokens = TokenMaker::new(env, target, auth)?;
    let ca = tokens.ca.clone();
    let decision =
        |comment: Option<String>, reason: Option<String>| AccessRequestDecision { comment, reason };
    let one = match command {
        AccessCommand::Request {
            principals,
            reason,
            window,
            break_glass,
            start,
            from_first_use,
            wait,
        } => {
            if wait.is_some() && !break_glass && tokens.token_is_given() {
                return Err(CliError::other(
                    "a given ID token (--id-token-file, --id-token-env) pays for one call, and \
                     waiting for the decision takes more: add --no-wait, then follow the request \
                     with `jit-ssh requests` and a fresh token",
                ));
            }
            let token = tokens.token().await?;
            let created = ca
                .create_access_request(
                    token.expose_secret(),
                    &AccessRequestCreate {
                        principals,
                        reason,
                        window_seconds: window.map(|w| w.as_secs()),
                        break_glass,
                        start,
                        from_first_use,
                        deprecated_for: None,
                    },
                )
                .await
                .map_err(refused)?;
            env.ui.info(&created_message(&created));
            match wait {
                // Approved at once (break-glass, or by the policy): no wait.
                Some(limit) if created.status == RequestStatus::Pending => {
                    wait_for_decision(env, &mut tokens, created, limit).await?
                }
                _ => created,
            }
        }
        AccessCommand::List {
            pending,
            needs_review,
        } => {
            let token = tokens.token().await?;
            let list = if needs_review {
                ca.unreviewed_access_requests(token.expose_secret()).await
            } else {
                ca.access_requests(token.expose_secret(), pending).await
            };
            return Ok(list.map_err(refused)?.requests);
        }
        AccessCommand::Review { id, comment } => {
            let token = tokens.token().await?;
            ca.decide_access_request(
                token.expose_secret(),
                id,
                "review",
                &decision(comment, None),
            )
            .await
            .map_err(refused)?
        }
        AccessCommand::Approve { id, comment } => {
            let token = tokens.token().await?;
            ca.decide_access_request(
                token.expose_secret(),
                id,
                "approve",
                &decision(comment, None),
            )
            .await
            .map_err(refused)?
        }
        AccessCommand::Deny { id, reason } => {
            let token = tokens.token().await?;
            ca.decide_access_request(
                token.expose_secret(),
                id,
                "deny",
                &decision(None, Some(reason)),
            )
            .await
            .map_err(refused)?
        }
        AccessCommand::Done { id, reason } => {
            let token = tokens.token().await?;
            ca.decide_access_request(token.expose_secret(), id, "done", &decision(None, reason))
                .await
                .map_err(refused)?
        }
    };
    Ok(vec![one])
}

async fn wait_for_decision(
    env: &Env,
    tokens: &mut TokenMaker<'_>,
    created: AccessRequestView,
    limit: Duration,
) -> Result<AccessRequestView, CliError> {
    let _spinner = env.ui.spinner(&format!(
        "Waiting for a decision on access request {}…",
        created.id
    ));
    let started = Instant::now();
    // Reading spends no token: one is reused until the CA refuses it.
    let mut token = tokens.token().await?;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let listed = match tokens
            .ca
            .access_requests(token.expose_secret(), false)
            .await
        {
            Ok(list) => list,
            Err(error) if error.refusal_code() == Some(ErrorCode::InvalidToken) => {
                token = tokens.token().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(now) = listed.requests.into_iter().find(|r| r.id == created.id) {
            if now.status != RequestStatus::Pending {
                return Ok(now);
            }
        }
        if started.elapsed() >= limit {
            return Err(CliError::new(
                Failure::TimedOut,
                format!(
                    "access request {} is still pending after {}; it stays open until it \
                     expires (`jit-ssh requests` shows it)",
                    created.id,
                    format_seconds(limit.as_secs())
                ),
            ));
        }
    }
}

/// What `request` says once the CA has recorded the request.
pub fn created_message(created: &AccessRequestView) -> String {
    let what = format!(
        "{} ({})",
        created.principals.join(", "),
        format_seconds(created.window_seconds)
    );
    if created.break_glass {
        return format!(
            "BREAK-GLASS: access request {} for {what} is approved by you; it is logged, \
             announced, and must be reviewed by an approver (`jit-ssh review {}`). \
             Run `jit-ssh login` now.",
            created.id, created.id
        );
    }
    if created.status == RequestStatus::Approved {
        let by: Vec<&str> = created
            .approvals
            .iter()
            .map(|a| a.approver.as_str())
            .collect();
        return format!(
            "Access request {} for {what} is approved by {}. {}",
            created.id,
            by.join(", "),
            when_usable(created, crate::commands::unix_now())
        );
    }
    format!(
        "Access request {} for {what} is pending; an approver runs `jit-ssh approve {}`.",
        created.id, created.id
    )
}

/// When an approved request's principals can be used.
fn when_usable(request: &AccessRequestView, now: u64) -> String {
    match (request.window_start, request.from_first_use) {
        (Some(start), _) if start > now => format!(
            "Its window opens in {}; run `jit-ssh login` then.",
            format_seconds(start - now)
        ),
        (None, true) => "Its window opens with your next `jit-ssh login`.".to_string(),
        _ => "Run `jit-ssh login` now.".to_string(),
    }
}

/// A refusal with the CA's words: for these commands the CA's message says
/// what is wrong (not an approver, expired, own request), turned toward the
/// person where the CA's words are the policy's: a missing reason names
/// the flag, a principal no rule offers says whom to ask.
fn refused(error: crate::ca::ClientError) -> CliError {
    match error {
        crate::ca::ClientError::Refused { code, message, .. }
            if ErrorCode::from(code.as_str()) == ErrorCode::NotRequestable =>
        {
            CliError::new(
                Failure::Denied,
                format!(
                    "you cannot ask for this: {message}. The CA's policy offers you no such \
                     principal by access request; ask the CA's operators which principals you \
                     may request and who approves them"
                ),
            )
        }
        crate::ca::ClientError::Refused {
            status, message, ..
        } if status == 403 || status == 409 || status == 404 => {
            CliError::new(Failure::Denied, message)
        }
        // Bad input (a missing reason, a window too long): the CA says which.
        crate::ca::ClientError::Refused {
            status: 400,
            message,
            ..
        } if message == "reason is required" => CliError::other(
            "the policy requires a reason for this request: add --reason \"...\" (say why, \
             e.g. the ticket it is for)",
        ),
        crate::ca::ClientError::Refused {
            status: 400,
            message,
            ..
        } => CliError::other(message),
        other => other.into(),
    }
}

/// One-line description of `request` at `now` for people, its control
/// characters escaped.
pub fn describe(request: &AccessRequestView, now: u64) -> String {
    let mut line = format!(
        "{}  {}  {}  principals {}  for {}  reason \"{}\"",
        request.id,
        request.status,
        request.requester,
        request.principals.join(","),
        format_seconds(request.window_seconds),
        request.reason
    );
    match (&request.status, request.window_end) {
        (RequestStatus::Pending, _) => line.push_str(&format!(
            "  expires in {}",
            format_seconds(request.expires_at.saturating_sub(now))
        )),
        (RequestStatus::Approved, Some(end)) => match request.window_start {
            Some(start) if start > now => line.push_str(&format!(
                "  window opens in {}",
                format_seconds(start - now)
            )),
            _ => line.push_str(&format!(
                "  window ends in {}",
                format_seconds(end.saturating_sub(now))
            )),
        },
        (RequestStatus::Approved, None) if request.from_first_use => line.push_str(&format!(
            "  window opens at first use (unused, it lapses in {})",
            format_seconds(request.expires_at.saturating_sub(now))
        )),
        _ => {}
    }
    if request.status == RequestStatus::Pending {
        if let Some(start) = request.starts_at.filter(|s| *s > now) {
            line.push_str(&format!(
                "  scheduled to open in {}",
                format_seconds(start - now)
            ));
        } else if request.from_first_use {
            line.push_str("  opens at first use");
        }
    }
    for approval in &request.approvals {
        line.push_str(&format!("  approved by {}", approval.approver));
    }
    if request.needs_review {
        line.push_str("  BREAK-GLASS, needs review");
    } else if let Some(by) = &request.reviewed_by {
        line.push_str(&format!("  break-glass reviewed by {by}"));
    }
    if let (Some(by), Some(why)) = (&request.closed_by, &request.closed_reason) {
        line.push_str(&format!("  closed by {by}: {why}"));
    }
    if !request.revoked_serials.is_empty() {
        line.push_str(&format!(
            "  revoked certificates {}",
            request.revoked_serials.join(",")
        ));
    }
    // Reasons, comments and names come from other people: a newline or an
    // escape sequence in them must not forge a line or drive the terminal.
    escape_control(&line).into_owned()
}

struct TokenMaker<'a> {
    env: &'a Env,
    ca: CaClient,
    slug: crate::paths::CaSlug,
    auth: Auth,
}

impl<'a> TokenMaker<'a> {
    fn new(env: &'a Env, target: &crate::commands::CaTarget, auth: Auth) -> Result<Self, CliError> {
        Ok(TokenMaker {
            env,
            ca: CaClient::new(&target.url, target.root_pem.as_deref())?,
            slug: target.slug()?,
            auth,
        })
    }

    /// Whether every token is the one given (`--id-token-file`,
    /// `--id-token-env`), which the CA accepts for one change only.
    fn token_is_given(&self) -> bool {
        matches!(self.auth.source, TokenSource::Given(_))
    }

    /// A fresh ID token: the given one, else from the stored sign-in
    /// session, else by signing in.
    async fn token(&mut self) -> Result<Secret, CliError> {
        let (flow, timeout) = match &self.auth.source {
            TokenSource::Given(token) => return Ok(token.clone()),
            TokenSource::Interactive { flow, timeout } => (*flow, *timeout),
        };
        let session_files = SessionFiles::new(self.env.dirs.session_dir(&self.slug));
        if let Some(session) = session_files.load().map_err(CliError::other)? {
            let provider = Provider::discover(
                self.ca.http(),
                &session.info.issuer,
                &session.info.client_id,
            )
            .await?
            .with_client_secret(session.info.client_secret.as_deref());
            match provider.refresh(&session.refresh_token).await {
                Ok(tokens) => {
                    // Refresh tokens rotate: keep the new one now.
                    if let Some(refresh) = &tokens.refresh_token {
                        session_files
                            .save_refresh_token(refresh)
                            .map_err(CliError::other)?;
                    }
                    return Ok(tokens.id_token);
                }
                Err(crate::oidc::OidcError::RefreshRefused(reason)) => {
                    // A refused refresh token renews nothing any more:
                    // forget it, so `status` stops promising silent renewals.
                    self.env.ui.info(&format!(
                        "The sign-in session has ended ({reason}); signing in again."
                    ));
                    session_files.delete().map_err(CliError::other)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let config = self.ca.config().await?;
        let issuer = match &self.auth.issuer {
            Some(name) => config.issuers.iter().find(|i| &i.name == name),
            None if config.issuers.len() == 1 => config.issuers.first(),
            None => None,
        }
        .ok_or_else(|| {
            CliError::other(
                "pick the identity provider with --issuer (or sign in once with `jit-ssh login`)",
            )
        })?;
        let provider = Provider::discover(self.ca.http(), &issuer.issuer, &issuer.client_id)
            .await?
            .with_sign_in(issuer)?;
        let scopes = provider.scopes(&issuer.scopes);
        // The token is bound to a fresh key by its nonce, as at `login`, so
        // that the sign-in session kept below is one `login` could have made.
        let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| CliError::other(format!("generating a key: {e}")))?;
        key.set_comment("jit-ssh");
        let nonce = crate::nonce_for(&key)?;
        let browser = self.env.browser.as_deref();
        let tokens = match flow {
            crate::commands::Flow::Browser => {
                provider
                    .browser_login(&scopes, &nonce, browser, timeout, &self.env.ui)
                    .await?
            }
            crate::commands::Flow::Device => {
                provider
                    .device_login(&scopes, &nonce, browser, timeout, &self.env.ui)
                    .await?
            }
        };
        // Keep the sign-in session, as `login` does: the next command (an
        // approver's `approve` after `requests`) renews it silently instead
        // of opening the browser again.
        if let Some(refresh) = &tokens.refresh_token {
            let agent_up = self
                .env
                .auth_sock
                .as_deref()
                .is_some_and(|s| crate::agent::Agent::connect(s).is_ok());
            let info = SessionInfo {
                ca_url: self.ca.base_url().to_string(),
                issuer_name: issuer.name.clone(),
                issuer: issuer.issuer.clone(),
                client_id: issuer.client_id.clone(),
                client_secret: issuer.public_client_secret.clone(),
                storage: if agent_up {
                    Storage::Agent
                } else {
                    Storage::Files
                },
                confirm: false,
                principals: Vec::new(),
                ttl: None,
            };
            session_files
                .save(&info, refresh, &key)
                .map_err(CliError::other)?;
        }
        Ok(tokens.id_token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(status: &str) -> AccessRequestView {
        AccessRequestView {
            id: 7,
            requester: "bob@corp".into(),
            principals: vec!["root".into()],
            reason: "INC-1".into(),
            window_seconds: 1800,
            status: status.into(),
            created_at: 1000,
            expires_at: 4600,
            window_start: Some(1100),
            window_end: Some(2900),
            approvals: Vec::new(),
            closed_by: None,
            closed_reason: None,
            revoked_serials: Vec::new(),
            break_glass: false,
            needs_review: false,
            reviewed_by: None,
            reviewed_at: None,
            review_comment: None,
            starts_at: None,
            from_first_use: false,
        }
    }

    #[test]
    fn describe_says_how_long_is_left() {
        let pending = describe(&view("pending"), 1600);
        assert!(
            pending.starts_with("7  pending  bob@corp  principals root"),
            "{pending}"
        );
        assert!(pending.contains("expires in 50m"), "{pending}");
        let approved = describe(&view("approved"), 2000);
        assert!(approved.contains("window ends in 15m"), "{approved}");
        assert!(!describe(&view("ended"), 2000).contains(" in "));
        let scheduled = AccessRequestView {
            window_start: Some(2600),
            window_end: Some(4400),
            starts_at: Some(2600),
            ..view("approved")
        };
        assert!(describe(&scheduled, 2000).contains("window opens in 10m"));
        let first_use = AccessRequestView {
            window_start: None,
            window_end: None,
            from_first_use: true,
            ..view("approved")
        };
        let line = describe(&first_use, 1600);
        assert!(
            line.contains("opens at first use (unused, it lapses in 50m"),
            "{line}"
        );
    }

    #[test]
    fn break_glass_is_loud_on_screen() {
        let glass = AccessRequestView {
            break_glass: true,
            needs_review: true,
            ..view("approved")
        };
        assert!(created_message(&glass).starts_with("BREAK-GLASS: access request 7"));
        assert!(describe(&glass, 2000).contains("BREAK-GLASS, needs review"));
        assert!(created_message(&view("pending")).contains("is pending"));
    }
}
