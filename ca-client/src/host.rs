//! `jit-ssh host sync-krl`: keeps a host's `RevokedKeys` file in step with
//! the CA's KRL.
//!
//! sshd refuses every public key login when its `RevokedKeys` file is
//! missing or unreadable, so the file is only ever replaced, never removed
//! or truncated: the new KRL is fetched, parsed, its CA signature checked,
//! refused when older than the file in place or of the same version with
//! other contents (the CA never publishes two states under one version, so
//! that is a replay of an earlier one), written to a temporary file in the
//! same directory, fsynced, renamed over the old one, and the directory
//! fsynced. Any failure leaves the last good file exactly as it was.

use std::path::{Path, PathBuf};

use serde::Serialize;
use ssh_key::{PublicKey, SshSig};

use ca_proto::krl::{self, KRL_SIGNATURE_NAMESPACE};

use crate::commands::CaTarget;
use crate::error::{CliError, Failure};
use crate::paths::write_atomic;

/// What `sync-krl` did; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct SyncedKrl {
    /// The file written (or left unchanged).
    pub path: PathBuf,
    /// KRL version now in the file.
    pub version: u64,
    /// Certificate serials it lists (per CA key).
    pub serials: usize,
    /// Revoked keys it lists.
    pub keys: usize,
    /// Whether the file changed.
    pub changed: bool,
    /// Fingerprint of the CA key whose signature verified.
    pub signed_by: String,
}

/// Fetches the KRL from `target` and installs it at `out`. The signature
/// must verify with one of `trusted_keys` (OpenSSH lines; the host's
/// `TrustedUserCAKeys` file is the natural choice), or, when none are given,
/// with one of the user-CA keys the CA publishes at `/v1/config`.
pub fn sync_krl(
    target: &CaTarget,
    out: &Path,
    trusted_keys: Option<&str>,
) -> Result<SyncedKrl, CliError> {
    let unchanged = |e: CliError| CliError {
        message: format!("{}; {} left unchanged", e.message, out.display()),
        failure: e.failure,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("starting the runtime: {e}")))
        .map_err(unchanged)?;
    let ca = target.client().map_err(unchanged)?;
    let (bytes, signature, published) = runtime
        .block_on(async {
            let (bytes, signature) = ca.krl().await?;
            let published = match trusted_keys {
                Some(_) => Vec::new(),
                None => ca.config().await?.user_ca_keys,
            };
            Ok::<_, CliError>((bytes, signature, published))
        })
        .map_err(unchanged)?;
    let lines: Vec<String> = match trusted_keys {
        Some(text) => text.lines().map(str::to_string).collect(),
        None => published,
    };
    install_krl(&bytes, signature.as_deref(), &lines, out).map_err(unchanged)
}

/// Installs downloaded KRL `bytes` at `out` if they parse, `signature`
/// (armored SSHSIG) verifies with one of `trusted_lines` (OpenSSH public key
/// lines), and the version is newer than the file in place, or the same with
/// the same contents. On any error the file in place is untouched.
pub fn install_krl(
    bytes: &[u8],
    signature: Option<&str>,
    trusted_lines: &[String],
    out: &Path,
) -> Result<SyncedKrl, CliError> {
    let refused = |why: String| CliError::new(Failure::CaRefused, why);
    let summary =
        krl::parse(bytes).map_err(|e| refused(format!("the CA sent no valid KRL ({e})")))?;
    let keys: Vec<PublicKey> = trusted_lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect();
    if keys.is_empty() {
        return Err(refused(
            "no trusted user-CA key to check the KRL's signature with".into(),
        ));
    }
    let signature =
        signature.ok_or_else(|| refused("the KRL came without the CA's signature".into()))?;
    let signature = SshSig::from_pem(signature.trim())
        .map_err(|e| refused(format!("the KRL's signature is unreadable ({e})")))?;
    let signer = keys
        .iter()
        .find(|k| k.verify(KRL_SIGNATURE_NAMESPACE, bytes, &signature).is_ok())
        .ok_or_else(|| {
            refused("the KRL's signature does not verify with a trusted user-CA key".into())
        })?;
    let current = std::fs::read(out).ok();
    // A KRL is regenerated on every fetch; only its generated_date differs
    // when nothing else changed, and then the file is left alone.
    let changed = current
        .as_deref()
        .is_none_or(|old| without_date(old) != without_date(bytes));
    if let Some(old) = current.as_deref().and_then(|b| krl::parse(b).ok()) {
        if old.version > summary.version {
            return Err(refused(format!(
                "the CA sent KRL version {}, older than version {} in place",
                summary.version, old.version
            )));
        }
        if old.version == summary.version && changed {
            return Err(refused(format!(
                "the CA sent KRL version {}, the version in place, with other contents \
                 (a replayed earlier KRL, or a CA that reuses versions)",
                summary.version
            )));
        }
    }
    if changed {
        write_atomic(out, bytes, 0o644)
            .and_then(|()| sync_dir(out))
            .map_err(|e| CliError::other(format!("writing {}: {e}", out.display())))?;
    }
    Ok(SyncedKrl {
        path: out.to_path_buf(),
        version: summary.version,
        serials: summary.serials.len() / summary.certificate_sections.max(1),
        keys: summary.keys,
        changed,
        signed_by: signer.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    })
}

/// The KRL with its `generated_date` field (bytes 20..28) blanked.
fn without_date(krl: &[u8]) -> Vec<u8> {
    let mut copy = krl.to_vec();
    if let Some(date) = copy.get_mut(20..28) {
        date.fill(0);
    }
    copy
}

/// Makes the rename durable.
fn sync_dir(file: &Path) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_proto::krl::KrlContents;
    use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

    fn signed(
        key: &PrivateKey,
        version: u64,
        generated: u64,
        serials: &[u64],
    ) -> (Vec<u8>, String) {
        let bytes = KrlContents {
            version,
            generated,
            ca_keys: vec![key.public_key().to_bytes().expect("blob")],
            serials: serials.to_vec(),
            ..KrlContents::default()
        }
        .encode();
        let signature = key
            .sign(KRL_SIGNATURE_NAMESPACE, HashAlg::Sha512, &bytes)
            .expect("sign")
            .to_pem(LineEnding::LF)
            .expect("pem");
        (bytes, signature)
    }

    #[test]
    fn installs_verified_krls_and_refuses_rollback_and_forgery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("jit-ssh.krl");
        let ca = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).expect("key");
        let other = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).expect("key");
        let trusted = vec![ca.public_key().to_openssh().expect("line")];

        let (v2, sig2) = signed(&ca, 2, 100, &[5]);
        let done = install_krl(&v2, Some(&sig2), &trusted, &out).expect("installed");
        assert!(done.changed);
        assert_eq!((done.version, done.serials), (2, 1));
        assert_eq!(std::fs::read(&out).expect("read"), v2);

        // The same content generated later: the file is not rewritten.
        let (v2_later, sig) = signed(&ca, 2, 160, &[5]);
        assert!(
            !install_krl(&v2_later, Some(&sig), &trusted, &out)
                .expect("ok")
                .changed
        );
        assert_eq!(std::fs::read(&out).expect("read"), v2);

        // Older, the same version with other contents, forged, unsigned,
        // garbage: refused, file untouched.
        let (v1, sig1) = signed(&ca, 1, 200, &[]);
        let (v2_other, sig2_other) = signed(&ca, 2, 200, &[5, 6]);
        let (forged, forged_sig) = signed(&other, 3, 200, &[]);
        let refusals = [
            install_krl(&v1, Some(&sig1), &trusted, &out),
            install_krl(&v2_other, Some(&sig2_other), &trusted, &out),
            install_krl(&forged, Some(&forged_sig), &trusted, &out),
            install_krl(&v2, None, &trusted, &out),
            install_krl(&v2, Some(&sig1), &trusted, &out),
            install_krl(b"garbage", Some(&sig2), &trusted, &out),
            install_krl(&v2, Some(&sig2), &[], &out),
        ];
        for (i, refused) in refusals.into_iter().enumerate() {
            assert!(refused.is_err(), "case {i} accepted");
            assert_eq!(std::fs::read(&out).expect("read"), v2, "case {i}");
        }
        // A newer one replaces it, leaving no temporary file behind.
        let (v3, sig3) = signed(&ca, 3, 300, &[5, 6]);
        assert!(
            install_krl(&v3, Some(&sig3), &trusted, &out)
                .expect("ok")
                .changed
        );
        assert_eq!(std::fs::read(&out).expect("read"), v3);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
