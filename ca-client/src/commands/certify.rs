//! The step `login` and a silent renewal share: ask the CA to certify a key
//! with an ID token, then put key and certificate where the session says,
//! into the ssh-agent with a lifetime (replacing this CA's previous entry)
//! or into key files under `~/.ssh/jit-ssh/<ca>/`. The private key is
//! written 0600; nothing is stored before the CA has answered, and nothing
//! at all unless the certificate passes [`crate::check`] against the keys
//! [`crate::pins`] trusts (the pins are updated only then).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ca_proto::ErrorCode;
use serde::Serialize;
use ssh_key::{Certificate, LineEnding, PrivateKey};

use super::{unix_now, Env};
use crate::agent::{comment_for, Added, Agent};
use crate::ca::CaClient;
use crate::check::{check_certificate, Expected};
use crate::error::{CliError, Failure};
use crate::paths::{create_private_dir, write_atomic, write_private, CaSlug};
use crate::pins::CaTrust;
use crate::session::{SessionInfo, Storage};
use jit_ssh_common::duration::format_seconds;
use jit_ssh_common::Secret;

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
    /// What the CA asked to be told: principals it grants but left out of
    /// this certificate, and how to ask for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    // "for bob,deploy" read as two identities: say what they are.
    let principals = match issued.principals.as_slice() {
        [one] => format!("principal {one}"),
        many => format!("principals {}", many.join(", ")),
    };
    let mut text = format!(
        "Certificate for {principals} (serial {}, valid {left}) {place}{}",
        issued.serial,
        if issued.renewable {
            "; renewed silently by `jit-ssh ensure`"
        } else {
            ""
        }
    );
    for note in &issued.notes {
        text.push_str("\nNote: ");
        text.push_str(note);
    }
    text
}

/// Why [`certify_and_store`] stored nothing.
#[derive(Debug)]
pub(super) enum NotCertified {
    /// The CA refused the ID token because it has no nonce, the issuer
    /// requires one, and the key is not bound to the identity by a sign-in
    /// with a nonce (`nonce_required`): what to do depends on where the
    /// token came from, which the caller knows.
    NonceRequired,
    /// Any other failure, worded already.
    Failed(CliError),
}

impl From<CliError> for NotCertified {
    fn from(error: CliError) -> NotCertified {
        NotCertified::Failed(error)
    }
}

impl From<crate::agent::AgentError> for NotCertified {
    fn from(error: crate::agent::AgentError) -> NotCertified {
        NotCertified::Failed(error.into())
    }
}

/// Certifies `key` with `id_token` under the session's wishes (principals,
/// lifetime, storage, confirm), checks the certificate against what was
/// asked and the CA keys in `trust`, and stores it. `renewable` is left
/// false: whether a refresh token is kept is the caller's to say.
pub(super) async fn certify_and_store(
    env: &Env,
    ca: &CaClient,
    slug: &CaSlug,
    key: &PrivateKey,
    id_token: &Secret,
    info: &SessionInfo,
    trust: &CaTrust,
) -> Result<Issued, NotCertified> {
    let response = ca
        .request_user_certificate(
            id_token.expose_secret(),
            key,
            &info.principals,
            info.ttl.map(Duration::from_secs),
        )
        .await
        .map_err(|error| match error.refusal_code() {
            Some(ErrorCode::NonceRequired) => NotCertified::NonceRequired,
            _ => NotCertified::Failed(error.into()),
        })?;
    let now = unix_now();
    let max_lifetime = info.ttl.map_or(trust.max_ttl, |ttl| ttl.min(trust.max_ttl));
    let certificate = check_certificate(
        &response,
        &Expected {
            subject: key.public_key().key_data(),
            signers: &trust.signers,
            principals: &info.principals,
            max_lifetime,
            now,
        },
    )
    .map_err(CliError::from)?;
    for note in trust.commit().map_err(CliError::from)? {
        env.ui.info(note);
    }
    if let Some(note) = lifetime_cap(info.ttl, &certificate, now) {
        env.ui.info(&note);
    }
    let mut issued = Issued {
        serial: certificate.serial().to_string(),
        key_id: certificate.key_id().to_string(),
        principals: certificate.valid_principals().to_vec(),
        valid_after: certificate.valid_after(),
        valid_before: certificate.valid_before(),
        stored: info.storage,
        agent_lifetime: None,
        key_path: None,
        certificate_path: None,
        renewable: false,
        notes: response.notes.clone(),
    };
    match info.storage {
        Storage::Agent => {
            let sock = env
                .auth_sock
                .as_deref()
                .ok_or_else(|| CliError::new(Failure::Agent, "SSH_AUTH_SOCK is not set"))?;
            let mut agent = Agent::connect(sock)?;
            agent.remove_stale(slug, now, true)?;
            // The certificate's own end, never the JSON's: the two were
            // checked to agree, and only the certificate binds sshd.
            let lifetime =
                Duration::from_secs(certificate.valid_before().saturating_sub(now).max(1));
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

/// The line saying the certificate is shorter than the lifetime asked for
/// (`--ttl`), and which rule capped it (the key ID's `rule=`); `None` when
/// it is as long as asked. A minute of slack covers the CA's backdating
/// and the time the request took.
fn lifetime_cap(asked: Option<u64>, certificate: &Certificate, now: u64) -> Option<String> {
    let asked = asked?;
    let granted = certificate.valid_before().saturating_sub(now);
    if granted + 60 >= asked {
        return None;
    }
    let rule = certificate
        .key_id()
        .split_whitespace()
        .find_map(|field| field.strip_prefix("rule="))
        .map(|rule| format!(" (policy rule {rule})"))
        .unwrap_or_default();
    Some(format!(
        "Asked for --ttl {}; the CA capped the certificate at {}{rule}, the longest it gives you.",
        format_seconds(asked),
        format_seconds(granted)
    ))
}

/// Writes `id_ed25519` (0600), its `.pub` and its `-cert.pub` into `dir`;
/// returns the key's and the certificate's paths.
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
