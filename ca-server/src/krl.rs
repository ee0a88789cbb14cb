//! The CA's key revocation list: the revocation state of the store turned
//! into an OpenSSH KRL ([`ca_proto::krl`]) for every trusted user-CA key, and
//! a detached SSHSIG signature over its bytes by the active user-CA key.
//!
//! Serials are listed under every trusted user-CA key: the record does not
//! keep which key signed a certificate, and serials are unique across all of
//! the CA's keys (one increasing sequence, `cert::SerialSource`, which the
//! store keeps from repeating), so listing one under a key that never used it
//! revokes nothing else. Revoked keys are listed by SHA-256 hash, which OpenSSH applies to
//! the key and every certificate for it.

use std::str::FromStr as _;

use ca_proto::krl::{KrlContents, KRL_SIGNATURE_NAMESPACE};
use ssh_key::{Fingerprint, HashAlg, PublicKey, SshSig};

use crate::ca_keys::CaSigner;
use crate::store::RevokedSet;
use crate::UnixTime;

/// A generated KRL and its signature.
#[derive(Debug, Clone)]
pub struct SignedKrl {
    /// The KRL bytes, as `RevokedKeys` reads them.
    pub bytes: Vec<u8>,
    /// Armored SSHSIG over `bytes` in [`KRL_SIGNATURE_NAMESPACE`].
    pub signature: String,
    /// The KRL version.
    pub version: u64,
    /// When it was generated.
    pub generated: UnixTime,
}

/// The raw SHA-256 hash of a `SHA256:...` fingerprint.
pub fn fingerprint_hash(fingerprint: &str) -> Option<[u8; 32]> {
    Fingerprint::from_str(fingerprint)
        .ok()
        .and_then(|f| f.sha256())
}

/// Encodes `set` as a KRL for `ca_keys`, generated at `now`.
pub fn build(set: &RevokedSet, ca_keys: &[PublicKey], now: UnixTime) -> Vec<u8> {
    KrlContents {
        version: set.version,
        generated: now,
        comment: format!("jit-ssh-ca KRL version {}", set.version),
        ca_keys: ca_keys.iter().filter_map(|k| k.to_bytes().ok()).collect(),
        serials: set.serials.clone(),
        key_hashes: set
            .key_fingerprints
            .iter()
            .filter_map(|f| fingerprint_hash(f))
            .collect(),
    }
    .encode()
}

/// Builds the KRL and signs it with `signer`.
pub fn build_signed(
    set: &RevokedSet,
    ca_keys: &[PublicKey],
    signer: &CaSigner,
    now: UnixTime,
) -> Result<SignedKrl, ssh_key::Error> {
    let bytes = build(set, ca_keys, now);
    let signature = SshSig::sign(signer, KRL_SIGNATURE_NAMESPACE, HashAlg::Sha512, &bytes)?;
    Ok(SignedKrl {
        signature: signature.to_pem(ssh_key::LineEnding::LF)?,
        bytes,
        version: set.version,
        generated: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn keygen(dir: &Path, args: &[&str]) -> std::process::Output {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
        out
    }

    /// `ssh-keygen -Q -f krl cert`: Some(true) revoked, Some(false) ok.
    fn query(dir: &Path, krl: &str, cert: &str) -> bool {
        let out = Command::new("ssh-keygen")
            .args(["-Q", "-f", krl, cert])
            .current_dir(dir)
            .output()
            .expect("ssh-keygen runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("REVOKED") {
            assert!(!out.status.success());
            true
        } else {
            assert!(
                out.status.success() && text.contains(": ok"),
                "ssh-keygen -Q failed: {out:?}"
            );
            false
        }
    }

    #[test]
    fn ssh_keygen_judges_our_krl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in ["ca", "other_ca", "user1", "user2", "user3"] {
            keygen(d, &["-q", "-t", "ed25519", "-N", "", "-f", name]);
        }
        let sign = |ca: &str, user: &str, serial: &str| {
            keygen(
                d,
                &[
                    "-q",
                    "-s",
                    ca,
                    "-I",
                    "test",
                    "-n",
                    "alice",
                    "-z",
                    serial,
                    "-V",
                    "+1h",
                    &format!("{user}.pub"),
                ],
            );
        };
        sign("ca", "user1", "18446744073709551615");
        sign("ca", "user2", "42");
        sign("other_ca", "user3", "7");
        let read_key = |name: &str| {
            PublicKey::read_openssh_file(&d.join(format!("{name}.pub"))).expect("public key")
        };
        let ca = read_key("ca");
        let user3 = read_key("user3");
        let empty = build(&RevokedSet::default(), std::slice::from_ref(&ca), 1);
        std::fs::write(d.join("empty.krl"), &empty).expect("write");
        assert!(!query(d, "empty.krl", "user1-cert.pub"));
        let set = RevokedSet {
            version: 3,
            serials: vec![u64::MAX, 5],
            key_fingerprints: vec![user3.fingerprint(HashAlg::Sha256).to_string()],
        };
        let krl = build(&set, std::slice::from_ref(&ca), 1_800_000_000);
        std::fs::write(d.join("jit.krl"), &krl).expect("write");
        assert!(query(d, "jit.krl", "user1-cert.pub"), "serial revoked");
        assert!(!query(d, "jit.krl", "user2-cert.pub"), "other serial fine");
        assert!(query(d, "jit.krl", "user3-cert.pub"), "revoked key's cert");
        assert!(query(d, "jit.krl", "user3.pub"), "revoked plain key");
        assert!(
            !query(d, "jit.krl", "user1.pub"),
            "plain key of a revoked cert"
        );
        // The same serial under another CA is not revoked.
        let other = build(
            &RevokedSet {
                serials: vec![7],
                ..RevokedSet::default()
            },
            std::slice::from_ref(&ca),
            1,
        );
        std::fs::write(d.join("other.krl"), &other).expect("write");
        assert!(!query(d, "other.krl", "user3-cert.pub"));
        // Our parser accepts what ssh-keygen -k writes, too.
        std::fs::write(d.join("spec"), "serial: 42\nid: someone\n").expect("write");
        keygen(d, &["-k", "-f", "keygen.krl", "-s", "ca.pub", "spec"]);
        assert!(query(d, "keygen.krl", "user2-cert.pub"));
        let theirs = std::fs::read(d.join("keygen.krl")).expect("read");
        ca_proto::krl::parse(&theirs).expect("ssh-keygen's KRL parses");
        assert_eq!(&theirs[..12], &krl[..12], "same magic and format version");
    }

    #[test]
    fn signature_verifies_with_the_user_ca_key() {
        let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .expect("key");
        let public = key.public_key().clone();
        let signer = CaSigner::new(key).expect("signer");
        let set = RevokedSet {
            version: 1,
            serials: vec![1, 2],
            key_fingerprints: vec![],
        };
        let signed = build_signed(&set, std::slice::from_ref(&public), &signer, 5).expect("sign");
        let sig = SshSig::from_pem(&signed.signature).expect("sshsig");
        public
            .verify(KRL_SIGNATURE_NAMESPACE, &signed.bytes, &sig)
            .expect("verifies");
        let mut tampered = signed.bytes.clone();
        tampered[20] ^= 1;
        assert!(public
            .verify(KRL_SIGNATURE_NAMESPACE, &tampered, &sig)
            .is_err());
    }
}
