//! Proofs of possession: the armored SSH signature (SSHSIG) a client sends
//! with its key. [`check`] hands any text to `SubjectKey::proof_check` and
//! `SubjectKey::verify_proof`, for the key the proof names (as a client
//! sends it) and for another key, and asserts that nothing panics, that the
//! two ways to check a proof agree, that another key's proof is never
//! accepted, and that the signature text round-trips through ssh-key.

use std::sync::LazyLock;

use ssh_key::{LineEnding, PublicKey, SshSig};

use ca_server::subject_key::{ProofCheck, SubjectKey};

/// The ID token the proofs are checked against; seeds are signed over its
/// proof message (`ca_proto::proof_message`).
pub const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJl";

/// Asserts that `data`, as a proof, is refused or accepted consistently.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let other = &*OTHER_KEY;
    let parsed = SshSig::from_pem(text.trim());
    let named = parsed.as_ref().ok().and_then(|proof| {
        let line = PublicKey::from(proof.public_key().clone())
            .to_openssh()
            .ok()?;
        SubjectKey::parse(&line).ok()
    });
    for subject in named.iter().chain([other]) {
        let accepted = subject.verify_proof(TOKEN, text).is_ok();
        let checked = match subject.proof_check(TOKEN, text) {
            Ok(ProofCheck::Ed25519(check)) => check.verify(),
            Ok(ProofCheck::Other(proof)) => proof.verify().is_ok(),
            Err(_) => false,
        };
        assert_eq!(accepted, checked, "verify_proof and proof_check disagree");
        if std::ptr::eq(subject, other) {
            assert!(!accepted, "a proof by another key was accepted");
        }
    }
    if let Ok(proof) = parsed {
        let written = proof
            .to_pem(LineEnding::LF)
            .expect("a parsed proof can be written");
        assert_eq!(
            SshSig::from_pem(&written).expect("written proof parses"),
            proof
        );
    }
}

/// An Ed25519 key nobody signs proofs with.
static OTHER_KEY: LazyLock<SubjectKey> = LazyLock::new(|| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let public = ssh_key::public::Ed25519PublicKey(key.verifying_key().to_bytes());
    let line = PublicKey::from(public).to_openssh().expect("line");
    SubjectKey::parse(&line).expect("a good key")
});
