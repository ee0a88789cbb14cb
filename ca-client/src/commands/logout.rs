//! `jit-ssh logout`: first, while the keys are still at hand, revoke this
//! CA's unexpired certificates at the CA (so hosts refuse them once their
//! KRL is synced, not only at expiry); then remove this CA's entries from
//! the agent, its key files, and the sign-in session, revoking the refresh
//! token at the identity provider when it offers that. Network steps are
//! best effort and become notes; local clean-up always happens.

use serde::Serialize;
use ssh_key::{Certificate, PrivateKey};

use super::{runtime, unix_now, CaTarget, Env};
use crate::agent::Agent;
use crate::error::CliError;
use crate::oidc::Provider;
use crate::paths::CaSlug;
use crate::session::SessionFiles;

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
                    .await?
                    .with_client_secret(session.info.client_secret.as_deref());
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

/// `logout` for people: one line for what was removed, one for what the CA
/// revoked (when it did), and one per note.
pub fn describe_logged_out(out: &LoggedOut) -> Vec<String> {
    let mut lines = vec![format!(
        "Logged out: {} certificate(s) removed from the agent{}{}{}.",
        out.agent_removed,
        if out.files_removed {
            ", key files deleted"
        } else {
            ""
        },
        if out.session_removed {
            ", sign-in session deleted"
        } else {
            ""
        },
        match out.refresh_token_revoked {
            Some(true) => ", refresh token revoked at the identity provider",
            _ => "",
        }
    )];
    if !out.certificates_revoked.is_empty() {
        lines.push(format!(
            "Revoked at the CA: certificate(s) {}.",
            out.certificates_revoked.join(", ")
        ));
    }
    lines.extend(out.notes.iter().map(|note| format!("Note: {note}")));
    lines
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_lines_say_what_was_removed_revoked_and_noted() {
        let out = LoggedOut {
            agent_removed: 1,
            files_removed: false,
            session_removed: true,
            refresh_token_revoked: Some(true),
            certificates_revoked: vec!["7".into(), "9".into()],
            notes: vec!["agent not cleaned: gone".into()],
        };
        assert_eq!(
            describe_logged_out(&out),
            [
                "Logged out: 1 certificate(s) removed from the agent, sign-in session deleted, \
                 refresh token revoked at the identity provider.",
                "Revoked at the CA: certificate(s) 7, 9.",
                "Note: agent not cleaned: gone",
            ]
        );
        let nothing = LoggedOut {
            agent_removed: 0,
            files_removed: true,
            session_removed: false,
            refresh_token_revoked: Some(false),
            certificates_revoked: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(
            describe_logged_out(&nothing),
            ["Logged out: 0 certificate(s) removed from the agent, key files deleted."]
        );
    }
}
