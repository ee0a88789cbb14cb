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

/// A certificate serial: 64-bit, unique among all issued ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serial(pub u64);

/// Hands out serials that increase with issuance time: the microsecond of
/// issuance, moved past the last one handed out when two fall in the same
/// microsecond (or the clock stepped back).
///
/// Increasing serials keep the database's serial index append-only, where
/// random ones dirtied a random index page per certificate
/// (docs/benchmarks.md). Nothing relies on serials being
/// unpredictable: the signed bytes of every certificate begin with a 32-byte
/// random nonce, which is what defeats chosen-prefix attacks on the signature.
/// A serial that is taken anyway (a clock set back across a restart) is
/// refused by the store and the issuer asks for the next one.
#[derive(Debug, Default)]
pub struct SerialSource {
    last: std::sync::atomic::AtomicU64,
}

impl SerialSource {
    /// A source that continues after `last`, the last serial on record.
    pub fn starting_after(last: u64) -> SerialSource {
        SerialSource {
            last: std::sync::atomic::AtomicU64::new(last),
        }
    }

    /// The next serial for a certificate issued at `now_micros` (Unix time in
    /// microseconds); never 0, which OpenSSH treats as "no serial".
    pub fn next(&self, now_micros: u64) -> Serial {
        use std::sync::atomic::Ordering::Relaxed;
        let advance = |last: u64| now_micros.max(last.wrapping_add(1)).max(1);
        let previous = self
            .last
            .fetch_update(Relaxed, Relaxed, |last| Some(advance(last)))
            .unwrap_or_else(|last| last);
        Serial(advance(previous))
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

/// Builds and signs a user certificate. Its nonce comes from the kernel
/// (`getrandom`). aws-lc's DRBG would save that call, but once a process has
/// drawn from it, aws-lc's Ed25519 verification in that process is slower,
/// by far more than the call costs (docs/benchmarks.md).
pub fn sign_user_certificate(
    signer: &CaSigner,
    spec: &CertificateSpec<'_>,
) -> Result<Certificate, ssh_key::Error> {
    let valid_after = spec.now.saturating_sub(spec.backdate.as_secs());
    let valid_before = spec.now.saturating_add(spec.grant.ttl.as_secs());
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
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
    fn serials_increase_with_time_and_never_repeat() {
        let source = SerialSource::default();
        assert_eq!(source.next(1_000), Serial(1_000));
        assert_eq!(source.next(1_000), Serial(1_001), "same microsecond");
        assert_eq!(source.next(500), Serial(1_002), "clock stepped back");
        assert_eq!(source.next(9_000), Serial(9_000));
        assert_eq!(
            SerialSource::default().next(0),
            Serial(1),
            "0 means no serial"
        );
        assert_eq!(SerialSource::starting_after(5_000).next(10), Serial(5_001));
    }

    #[test]
    fn concurrent_serials_are_distinct() {
        let source = SerialSource::default();
        let serials: Vec<u64> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..1000).map(|_| source.next(7).0).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("thread"))
                .collect()
        });
        let distinct: std::collections::HashSet<_> = serials.iter().collect();
        assert_eq!(distinct.len(), 4000);
    }

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
            notes: Vec::new(),
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
        let cert = sign_user_certificate(&signer, &spec).expect("signed");
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
        // The same request signed again differs in its random nonce.
        let again = sign_user_certificate(&signer, &spec).expect("signed");
        assert_ne!(again.nonce(), cert.nonce());
        assert_eq!(again.nonce().len(), 32);
    }
}
