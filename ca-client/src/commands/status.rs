//! `jit-ssh status`: every jit-ssh certificate in the agent and on disk,
//! whichever CA it came from, the CAs a login remembered (and which is the
//! default), and the CAs with a sign-in session that can renew without a
//! browser. It only reads: nothing is removed or renewed, and an
//! unreachable agent is reported, not an error. An expired certificate
//! that no valid one of its CA replaces gets a hint, and
//! [`Status::needs_login`] makes the command exit 14.

use std::path::PathBuf;

use serde::Serialize;
use ssh_key::Certificate;

use super::{unix_now, Env};
use crate::agent::Agent;
use crate::known_cas;
use crate::session::Storage;
use jit_ssh_common::duration::format_seconds;

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

/// A CA a login remembered.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCa {
    /// Its name (`--ca NAME`).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Whether commands without `--ca` use it.
    pub default: bool,
}

/// `status` result.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Certificates.
    pub certificates: Vec<StatusEntry>,
    /// The CAs a login remembered.
    pub cas: Vec<StatusCa>,
    /// CAs with a renewable sign-in session.
    pub sessions: Vec<String>,
    /// Whether an agent answered.
    pub agent: bool,
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
    let cas = known_cas::all(&env.dirs)
        .into_iter()
        .map(|known| StatusCa {
            name: known.name,
            url: known.url,
            default: known.default,
        })
        .collect();
    Status {
        certificates,
        cas,
        sessions,
        agent: agent_ok,
    }
}

impl Status {
    /// The CAs whose every certificate here has expired.
    pub fn expired_cas(&self) -> Vec<String> {
        let mut expired: Vec<String> = Vec::new();
        for c in &self.certificates {
            let ca = c.ca.clone().unwrap_or_default();
            let replaced = self
                .certificates
                .iter()
                .any(|o| o.ca == c.ca && o.seconds_left > 0);
            if c.seconds_left == 0 && !replaced && !expired.contains(&ca) {
                expired.push(ca);
            }
        }
        expired
    }

    /// Whether a certificate expired with no valid one of its CA beside
    /// it: `status` then exits 14, as `ensure --no-login` does.
    pub fn needs_login(&self) -> bool {
        !self.expired_cas().is_empty()
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
    for ca in status.expired_cas() {
        let hint = if status.sessions.contains(&ca) {
            format!("`jit-ssh --ca {ca} ensure` renews it without a browser")
        } else {
            format!("run `jit-ssh --ca {ca} login` for a new one")
        };
        out.push_str(&format!(
            "The certificate from CA {ca} has expired: {hint}.\n"
        ));
    }
    for ca in &status.cas {
        out.push_str(&format!(
            "CA {} at {}{}\n",
            ca.name,
            ca.url,
            if ca.default {
                " (default: used when no --ca is given)"
            } else {
                ""
            }
        ));
    }
    for s in &status.sessions {
        out.push_str(&format!(
            "Sign-in session for CA {s}: renewals need no browser.\n"
        ));
    }
    out
}

/// The value of `field=` in a key ID the CA wrote (`jit-ssh user=.. issuer=..`).
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_id_fields() {
        let id = "jit-ssh user=alice issuer=test serial=1 rule=builtin-username";
        assert_eq!(key_id_field(id, "issuer").as_deref(), Some("test"));
        assert_eq!(key_id_field(id, "nope"), None);
    }
}
