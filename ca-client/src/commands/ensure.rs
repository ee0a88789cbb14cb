//! `jit-ssh ensure`, run before each `ssh` connection (`Match exec`): answer
//! at once, without the network, when a certificate from this CA stays
//! valid for at least [`RENEW_MARGIN`]; else renew silently with the stored
//! refresh token; else sign in interactively (unless `--no-login`, which
//! fails with exit 14 instead).
//!
//! Two steps come first, kept apart: [`remove_expired_from_agent`] acts
//! (it deletes agent entries that outlived their certificate) and
//! [`fresh_certificate`] only reads. A caller that merely wants to know
//! whether a certificate is fresh changes nothing by asking.

use std::path::Path;
use std::time::Duration;

use ssh_key::Certificate;

use super::certify::{certify_and_store, Issued, NotCertified};
use super::login::{login_async, LoginOptions};
use super::{ca_trust, fetch_config, runtime, unix_now, CaTarget, Env, Flow, TokenSource};
use crate::agent::{Agent, AgentEntry};
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

/// Removes every expired jit-ssh certificate from the agent, whichever CA it
/// came from: an agent that refused a lifetime constraint keeps them past
/// their end, and sshd gives up after a few refused keys ("Too many
/// authentication failures"). Returns the jit-ssh entries that are not
/// expired, or `None` when no agent answers. A removal the agent refuses is
/// left for the next run: it must not stop the command.
pub fn remove_expired_from_agent(env: &Env, now: u64) -> Option<Vec<AgentEntry>> {
    let mut agent = Agent::connect(env.auth_sock.as_deref()?).ok()?;
    let entries = agent.jit_entries().ok()?;
    let (expired, live): (Vec<AgentEntry>, Vec<AgentEntry>) = entries
        .into_iter()
        .partition(|entry| entry.certificate.valid_before() <= now);
    for entry in &expired {
        let _ = agent.remove(&entry.certificate);
    }
    Some(live)
}

/// The network-free check: does a certificate from this CA stay valid for at
/// least [`RENEW_MARGIN`] more seconds, among the agent's entries (`None`:
/// no agent) or in `files_dir`? Reads only.
pub fn fresh_certificate(
    agent_entries: Option<&[AgentEntry]>,
    files_dir: &Path,
    slug: &CaSlug,
    now: u64,
) -> bool {
    let fresh_until = now + RENEW_MARGIN;
    let in_agent = agent_entries
        .unwrap_or_default()
        .iter()
        .any(|entry| entry.is_from(slug) && entry.certificate.valid_before() >= fresh_until);
    in_agent
        || std::fs::read_to_string(files_dir.join("id_ed25519-cert.pub"))
            .ok()
            .and_then(|text| Certificate::from_openssh(text.trim()).ok())
            .is_some_and(|c| c.valid_before() >= fresh_until)
}

/// `jit-ssh ensure`.
pub fn ensure(env: &Env, target: &CaTarget, options: &EnsureOptions) -> Result<Ensured, CliError> {
    let slug = target.slug()?;
    let now = unix_now();
    let agent_entries = remove_expired_from_agent(env, now);
    if fresh_certificate(
        agent_entries.as_deref(),
        &env.dirs.files_dir(&slug),
        &slug,
        now,
    ) {
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
            let config = fetch_config(&ca, env).await?.config;
            let trust = ca_trust(env, target, &slug, &config, &[])?;
            let provider =
                Provider::discover(ca.http(), &session.info.issuer, &session.info.client_id)
                    .await?
                    .with_client_secret(session.info.client_secret.as_deref());
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
            let mut issued = match certify_and_store(
                env,
                &ca,
                &slug,
                &session.key,
                &tokens.id_token,
                &info,
                &trust,
            )
            .await
            {
                Ok(issued) => issued,
                // The refreshed token has no nonce, and the CA's sign-in
                // session for this key (nonce_session) is over: only a
                // new sign-in binds a key again.
                Err(NotCertified::NonceRequired) => {
                    env.ui.info(
                        "The CA renews this sign-in's key only during its sign-in session, \
                         which has ended (the refreshed ID token carries no nonce); signing \
                         in again.",
                    );
                    session_files.delete().map_err(CliError::other)?;
                    return Ok(None);
                }
                Err(NotCertified::Failed(error)) => return Err(error),
            };
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
            accept_ca_keys: Vec::new(),
        },
    ))?;
    Ok(Ensured::LoggedIn(issued))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use rand_core::OsRng;
    use ssh_key::certificate::{Builder, CertType};
    use ssh_key::{Algorithm, PrivateKey};

    use super::*;
    use crate::agent::{comment_for, Added};
    use crate::commands::tests::env_in;

    const NOW: u64 = 1_700_000_000;

    /// A key and a user certificate for it that ends at `valid_before`.
    fn certified(valid_before: u64) -> (PrivateKey, Certificate) {
        let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let mut builder =
            Builder::new_with_random_nonce(&mut OsRng, key.public_key(), 0, valid_before).unwrap();
        builder.cert_type(CertType::User).unwrap();
        builder.key_id("jit-ssh user=alice issuer=test").unwrap();
        builder.valid_principal("alice").unwrap();
        (key, builder.sign(&ca).unwrap())
    }

    fn entry(valid_before: u64, ca: &CaSlug) -> AgentEntry {
        AgentEntry {
            certificate: certified(valid_before).1,
            comment: comment_for("alice@test", ca),
        }
    }

    fn slug(name: &str) -> CaSlug {
        CaSlug(name.into())
    }

    #[test]
    fn fresh_means_this_cas_certificate_outlives_the_renewal_margin() {
        let dir = tempfile::tempdir().unwrap();
        let ours = slug("ca.example.com");
        let theirs = slug("other.example.com");
        let fresh =
            |entries: &[AgentEntry]| fresh_certificate(Some(entries), dir.path(), &ours, NOW);
        assert!(fresh(&[entry(NOW + RENEW_MARGIN, &ours)]));
        assert!(!fresh(&[entry(NOW + RENEW_MARGIN - 1, &ours)]));
        assert!(!fresh(&[entry(NOW + 3600, &theirs)]));
        assert!(fresh(&[
            entry(NOW + 3600, &theirs),
            entry(NOW + 3600, &ours)
        ]));
        assert!(!fresh_certificate(None, dir.path(), &ours, NOW));
    }

    #[test]
    fn fresh_falls_back_to_the_certificate_file() {
        let dir = tempfile::tempdir().unwrap();
        let ours = slug("ca.example.com");
        let path = dir.path().join("id_ed25519-cert.pub");
        let write = |valid_before: u64| {
            let line = certified(valid_before).1.to_openssh().unwrap();
            std::fs::write(&path, format!("{line}\n")).unwrap();
        };
        write(NOW + RENEW_MARGIN);
        assert!(fresh_certificate(None, dir.path(), &ours, NOW));
        assert!(fresh_certificate(
            Some(&[entry(NOW + 1, &ours)]),
            dir.path(),
            &ours,
            NOW
        ));
        write(NOW + RENEW_MARGIN - 1);
        assert!(!fresh_certificate(None, dir.path(), &ours, NOW));
        std::fs::write(&path, "not a certificate\n").unwrap();
        assert!(!fresh_certificate(None, dir.path(), &ours, NOW));
    }

    /// A real `ssh-agent -D` on a socket of its own, killed on drop.
    struct TestAgent {
        child: Child,
        socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl TestAgent {
        fn start() -> TestAgent {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("agent.sock");
            let child = Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&socket)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ssh-agent must be installed (openssh-client)");
            let agent = TestAgent {
                child,
                socket,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Agent::connect(&agent.socket).is_err() {
                assert!(Instant::now() < deadline, "ssh-agent did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
            agent
        }
    }

    impl Drop for TestAgent {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What an agent that ignored the lifetime constraint would still hold:
    /// certificates already past their end, next to live ones.
    #[test]
    fn expired_agent_entries_of_every_ca_are_removed_and_live_ones_kept() {
        let test_agent = TestAgent::start();
        let home = tempfile::tempdir().unwrap();
        let env = env_in(home.path(), Some(test_agent.socket.clone()));
        let ours = slug("ca.example.com");
        let theirs = slug("other.example.com");
        let now = unix_now();
        let mut agent = Agent::connect(&test_agent.socket).unwrap();
        for (valid_before, ca) in [
            (now - 10, &ours),
            (now - 10, &theirs),
            (now + 3600, &ours),
            (now + 30, &theirs),
        ] {
            let (key, certificate) = certified(valid_before);
            let added = agent
                .add(
                    &key,
                    &certificate,
                    &comment_for("alice@test", ca),
                    Duration::from_secs(600),
                    false,
                )
                .unwrap();
            assert_eq!(added, Added::WithLifetime);
        }
        assert_eq!(agent.jit_entries().unwrap().len(), 4);

        let live = remove_expired_from_agent(&env, now).unwrap();
        let mut ends: Vec<u64> = live.iter().map(|e| e.certificate.valid_before()).collect();
        ends.sort_unstable();
        assert_eq!(ends, [now + 30, now + 3600]);
        let held = agent.jit_entries().unwrap();
        assert_eq!(held.len(), 2, "the expired entries left the agent");
        assert!(held.iter().all(|e| e.certificate.valid_before() > now));

        assert!(fresh_certificate(Some(&live), home.path(), &ours, now));
        assert!(!fresh_certificate(Some(&live), home.path(), &theirs, now));
        assert_eq!(
            agent.jit_entries().unwrap().len(),
            2,
            "asking whether a certificate is fresh removes nothing"
        );
    }

    #[test]
    fn no_agent_means_nothing_to_remove() {
        let home = tempfile::tempdir().unwrap();
        assert!(remove_expired_from_agent(&env_in(home.path(), None), NOW).is_none());
        let gone = home.path().join("no-agent.sock");
        assert!(remove_expired_from_agent(&env_in(home.path(), Some(gone)), NOW).is_none());
    }
}
