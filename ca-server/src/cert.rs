//! Building and signing SSH user certificates from a [`Grant`].
//!
//! Validity is always bounded: `valid_after` is "now" minus a small backdate
//! for clients whose clocks run slow, `valid_before` is "now" plus the granted
//! lifetime. The key ID names the identity, issuer, serial and deciding rule,
//! so the `ID ...` that sshd logs on every login leads to the issuance record.

use std::time::Duration;

use ssh_key::certificate::{Builder, CertType};
use ssh_key::Certificate;

use crate::ca_keys::CaSigner;
use crate::identity::Identity;
use crate::policy::Grant;
use crate::subject_key::SubjectKey;
use crate::UnixTime;

/// A certificate serial: random, 64-bit, unique among all issued ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serial(pub u64);

impl Serial {
    /// A fresh random serial (never 0, which OpenSSH treats as "no serial").
    pub fn random(rng: &mut impl rand_core::RngCore) -> Serial {
        loop {
            let serial = rng.next_u64();
            if serial != 0 {
                return Serial(serial);
            }
        }
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The key ID written into a certificate; `rules` are the policy rules that
/// decided, comma-separated.
pub fn key_id(identity: &Identity, serial: Serial, rules: &[String]) -> String {
    format!(
        "jit-ssh user={} issuer={} serial={serial} rule={}",
        identity.username,
        identity.issuer_name,
        rules.join(",")
    )
}

/// Key comment of issued certificates; the client finds its own keys in the
/// agent by it.
pub fn comment(identity: &Identity) -> String {
    format!("jit-ssh:{}", identity.display_name())
}

/// Everything that goes into one certificate.
#[derive(Debug)]
pub struct CertificateSpec<'a> {
    /// Key to certify.
    pub subject: &'a SubjectKey,
    /// Who it is for.
    pub identity: &'a Identity,
    /// What it carries.
    pub grant: &'a Grant,
    /// Its serial.
    pub serial: Serial,
    /// Signing time.
    pub now: UnixTime,
    /// How far before `now` validity starts.
    pub backdate: Duration,
}

/// Builds and signs a user certificate.
pub fn sign_user_certificate(
    signer: &CaSigner,
    spec: &CertificateSpec<'_>,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<Certificate, ssh_key::Error> {
    let valid_after = spec.now.saturating_sub(spec.backdate.as_secs());
    let valid_before = spec.now.saturating_add(spec.grant.ttl.as_secs());
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let mut builder = Builder::new(
        nonce,
        spec.subject.public_key().key_data().clone(),
        valid_after,
        valid_before,
    )?;
    builder
        .serial(spec.serial.0)?
        .cert_type(CertType::User)?
        .key_id(key_id(spec.identity, spec.serial, &spec.grant.rules))?
        .comment(comment(spec.identity))?;
    for principal in &spec.grant.principals {
        builder.valid_principal(principal.clone())?;
    }
    for (name, value) in &spec.grant.critical_options {
        builder.critical_option(name.clone(), value.clone())?;
    }
    for extension in &spec.grant.extensions {
        builder.extension(extension.clone(), "")?;
    }
    builder.sign(signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DEFAULT_EXTENSIONS;
    use ssh_key::{Algorithm, HashAlg, PrivateKey};

    #[test]
    fn certificate_carries_grant_and_validates_against_ca() {
        let ca_key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).expect("key");
        let signer = CaSigner::new(ca_key).expect("signer");
        let user_key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).expect("key");
        let subject =
            SubjectKey::parse(&user_key.public_key().to_openssh().expect("line")).expect("key");
        let identity = Identity {
            issuer_name: "corp".into(),
            issuer: "https://idp".into(),
            subject: "u1".into(),
            username: "alice".into(),
            email: None,
            groups: vec![],
            claims: Default::default(),
        };
        let grant = Grant {
            principals: vec!["alice".into()],
            ttl: Duration::from_secs(300),
            extensions: DEFAULT_EXTENSIONS.map(String::from).to_vec(),
            critical_options: vec![],
            rules: vec!["eng-own-login".into(), "second-rule".into()],
            request_ids: Vec::new(),
        };
        let now = 1_800_000_000;
        let spec = CertificateSpec {
            subject: &subject,
            identity: &identity,
            grant: &grant,
            serial: Serial(42),
            now,
            backdate: Duration::from_secs(60),
        };
        let cert = sign_user_certificate(&signer, &spec, &mut rand_core::OsRng).expect("signed");
        assert_eq!(cert.valid_after(), now - 60);
        assert_eq!(cert.valid_before(), now + 300);
        assert_eq!(cert.valid_principals(), ["alice"]);
        assert_eq!(cert.serial(), 42);
        assert!(cert
            .key_id()
            .ends_with("user=alice issuer=corp serial=42 rule=eng-own-login,second-rule"));
        let ca_fp = signer.public_key().fingerprint(HashAlg::Sha256);
        cert.validate_at(now, &[ca_fp]).expect("valid now");
        assert!(cert.validate_at(now + 301, &[ca_fp]).is_err());
    }
}
