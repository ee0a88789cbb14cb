//! What the client checks in a certificate the CA sent before it stores
//! anything: the CA is trusted to decide, not to be obeyed blindly, and a
//! certificate that is not what was asked for must not reach the agent or
//! the disk (a compromised or impersonated CA, or a bug in one).
//!
//! [`check_certificate`] accepts a certificate only when its subject key is
//! the key this client made, it is a user certificate, it is signed (and the
//! signature verifies, through ssh-key) by a user-CA key this client
//! trusts, it names at least one principal and none beyond those asked for,
//! it is valid now within [`CLOCK_SKEW`] and for no longer than the lifetime
//! the CA may give, and the JSON answer says the same as the certificate.
//! Every refusal is one [`CertificateError`] naming what is wrong.

use ca_proto::UserCertResponse;
use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg};

use jit_ssh_common::duration::format_seconds;

/// How far this machine's clock may be from the CA's before a certificate
/// counts as not yet valid (or as too long): the CA backdates `valid_after`
/// by a minute by default, and a clock another minute off still works.
/// Beyond 30 s the client already warns about the clock.
pub const CLOCK_SKEW: u64 = 120;

/// What the certificate must match.
#[derive(Debug)]
pub struct Expected<'a> {
    /// The key this client made and asked the CA to certify.
    pub subject: &'a KeyData,
    /// The user-CA keys this client trusts (published and pinned).
    pub signers: &'a [KeyData],
    /// The principals asked for; empty means "all the policy grants", so
    /// the certificate is then held to the principals the answer lists.
    pub principals: &'a [String],
    /// The longest lifetime the CA may give this request, in seconds: its
    /// published maximum, or the lifetime asked for when shorter.
    pub max_lifetime: u64,
    /// This machine's clock, Unix seconds.
    pub now: u64,
}

/// Why a certificate from the CA was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Not an OpenSSH certificate.
    #[error("the CA returned an unreadable certificate: {0}")]
    Unreadable(String),
    /// The certificate is for a key this client did not make.
    #[error("the CA certified another key ({certified}), not the key this client made ({ours})")]
    OtherKey {
        /// Fingerprint of the certified key.
        certified: String,
        /// Fingerprint of the key sent.
        ours: String,
    },
    /// A host certificate (or another type).
    #[error("the CA returned a host certificate, not a user certificate")]
    NotUser,
    /// Signed by a key this client does not trust.
    #[error(
        "the certificate is signed by {signer}, which is not one of the CA's user-CA keys this \
         client trusts ({trusted})"
    )]
    UntrustedSigner {
        /// Fingerprint of the signing key.
        signer: String,
        /// Fingerprints of the trusted keys.
        trusted: String,
    },
    /// The signature does not verify.
    #[error("the certificate's signature does not verify against its CA key {signer}")]
    BadSignature {
        /// Fingerprint of the signing key.
        signer: String,
    },
    /// No principals: OpenSSH before 10.3 reads that as "any user".
    #[error("the certificate names no principal, which OpenSSH reads as valid for every user")]
    NoPrincipals,
    /// A principal that was not asked for.
    #[error("the certificate names principal {principal:?}, which was not asked for ({asked})")]
    UnaskedPrincipal {
        /// The principal.
        principal: String,
        /// What was asked (or granted, when nothing was asked).
        asked: String,
    },
    /// Validity ends before it begins.
    #[error("the certificate's validity ends before it begins")]
    EmptyValidity,
    /// Already expired.
    #[error("the certificate expired {ago} ago")]
    Expired {
        /// How long ago, formatted.
        ago: String,
    },
    /// Not valid yet.
    #[error(
        "the certificate is not valid until {ahead} from now (more than the {skew} of clock \
         difference allowed)"
    )]
    NotYetValid {
        /// How far ahead, formatted.
        ahead: String,
        /// [`CLOCK_SKEW`], formatted.
        skew: String,
    },
    /// Valid for longer than the CA may give.
    #[error(
        "the certificate is valid for another {lifetime}, longer than the {max} the CA may give \
         this request"
    )]
    TooLong {
        /// Time left on the certificate, formatted.
        lifetime: String,
        /// The maximum, formatted.
        max: String,
    },
    /// The JSON answer and the certificate disagree.
    #[error("the CA's answer says {field} {answer} but its certificate says {certificate}")]
    Disagrees {
        /// Which field.
        field: &'static str,
        /// What the JSON says.
        answer: String,
        /// What the certificate says.
        certificate: String,
    },
}

/// Reads the certificate of `answer` and checks it against `expected`.
pub fn check_certificate(
    answer: &UserCertResponse,
    expected: &Expected<'_>,
) -> Result<Certificate, CertificateError> {
    let certificate = Certificate::from_openssh(answer.certificate.trim())
        .map_err(|e| CertificateError::Unreadable(e.to_string()))?;
    if certificate.public_key() != expected.subject {
        return Err(CertificateError::OtherKey {
            certified: fingerprint(certificate.public_key()),
            ours: fingerprint(expected.subject),
        });
    }
    if certificate.cert_type() != CertType::User {
        return Err(CertificateError::NotUser);
    }
    // ssh-key's builder never makes one; a hand-made one must not reach
    // the signature check, which looks at a moment inside the validity.
    if certificate.valid_before() <= certificate.valid_after() {
        return Err(CertificateError::EmptyValidity);
    }
    check_signer(&certificate, expected.signers)?;
    check_principals(&certificate, answer, expected.principals)?;
    check_validity(&certificate, expected)?;
    check_agreement(&certificate, answer)?;
    Ok(certificate)
}

/// `SHA256:…` of `key`.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn check_signer(certificate: &Certificate, signers: &[KeyData]) -> Result<(), CertificateError> {
    let signer = certificate.signature_key();
    if !signers.contains(signer) {
        return Err(CertificateError::UntrustedSigner {
            signer: fingerprint(signer),
            trusted: signers
                .iter()
                .map(fingerprint)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    // ssh-key's validation verifies the signature; validity times are
    // checked apart, with the clock skew, so its own time check is given a
    // moment inside the certificate's validity.
    let inside = certificate.valid_after();
    let trusted = signer.fingerprint(HashAlg::Sha256);
    certificate
        .validate_at(inside, [&trusted])
        .map_err(|_| CertificateError::BadSignature {
            signer: fingerprint(signer),
        })
}

fn check_principals(
    certificate: &Certificate,
    answer: &UserCertResponse,
    asked: &[String],
) -> Result<(), CertificateError> {
    let named = certificate.valid_principals();
    if named.is_empty() {
        return Err(CertificateError::NoPrincipals);
    }
    let (allowed, what) = if asked.is_empty() {
        (&answer.principals[..], "granted")
    } else {
        (asked, "asked")
    };
    match named.iter().find(|p| !allowed.contains(p)) {
        Some(principal) => Err(CertificateError::UnaskedPrincipal {
            principal: principal.clone(),
            asked: format!("{what}: {}", quoted(allowed)),
        }),
        None => Ok(()),
    }
}

fn check_validity(
    certificate: &Certificate,
    expected: &Expected<'_>,
) -> Result<(), CertificateError> {
    let (after, before, now) = (
        certificate.valid_after(),
        certificate.valid_before(),
        expected.now,
    );
    if before <= now {
        return Err(CertificateError::Expired {
            ago: format_seconds(now - before),
        });
    }
    if after > now.saturating_add(CLOCK_SKEW) {
        return Err(CertificateError::NotYetValid {
            ahead: format_seconds(after - now),
            skew: format_seconds(CLOCK_SKEW),
        });
    }
    if before - now > expected.max_lifetime.saturating_add(CLOCK_SKEW) {
        return Err(CertificateError::TooLong {
            lifetime: format_seconds(before - now),
            max: format_seconds(expected.max_lifetime),
        });
    }
    Ok(())
}

/// The JSON fields repeat the certificate for convenience; a CA whose two
/// accounts differ is not believed on either.
fn check_agreement(
    certificate: &Certificate,
    answer: &UserCertResponse,
) -> Result<(), CertificateError> {
    let disagrees = |field, answer: String, certificate: String| {
        Err(CertificateError::Disagrees {
            field,
            answer,
            certificate,
        })
    };
    if answer.serial != certificate.serial().to_string() {
        return disagrees(
            "serial",
            format!("{:?}", answer.serial),
            certificate.serial().to_string(),
        );
    }
    if answer.key_id != certificate.key_id() {
        return disagrees(
            "key_id",
            format!("{:?}", answer.key_id),
            format!("{:?}", certificate.key_id()),
        );
    }
    let mut listed = answer.principals.clone();
    let mut named = certificate.valid_principals().to_vec();
    listed.sort();
    named.sort();
    if listed != named {
        return disagrees("principals", quoted(&listed), quoted(&named));
    }
    if answer.valid_after != certificate.valid_after() {
        return disagrees(
            "valid_after",
            answer.valid_after.to_string(),
            certificate.valid_after().to_string(),
        );
    }
    if answer.valid_before != certificate.valid_before() {
        return disagrees(
            "valid_before",
            answer.valid_before.to_string(),
            certificate.valid_before().to_string(),
        );
    }
    Ok(())
}

/// Principals as `"a", "b"`, escaped: they come from the CA.
fn quoted(principals: &[String]) -> String {
    if principals.is_empty() {
        return "none".into();
    }
    principals
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand_core::OsRng;
    use ssh_key::certificate::Builder;
    use ssh_key::{Algorithm, PrivateKey};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    struct Case {
        ca: PrivateKey,
        key: PrivateKey,
    }

    impl Case {
        fn new() -> Case {
            let random = || PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
            Case {
                ca: random(),
                key: random(),
            }
        }

        /// An answer for a certificate `edit` shapes, signed by the CA.
        fn answer(&self, edit: impl FnOnce(&mut Builder)) -> UserCertResponse {
            let mut builder = Builder::new_with_random_nonce(
                &mut OsRng,
                self.key.public_key(),
                NOW - 60,
                NOW + 300,
            )
            .unwrap();
            builder.serial(7).unwrap().key_id("alice").unwrap();
            builder.cert_type(CertType::User).unwrap();
            builder.valid_principal("alice").unwrap();
            edit(&mut builder);
            let certificate = builder.sign(&self.ca).unwrap();
            UserCertResponse {
                certificate: certificate.to_openssh().unwrap(),
                serial: certificate.serial().to_string(),
                key_id: certificate.key_id().to_string(),
                principals: certificate.valid_principals().to_vec(),
                valid_after: certificate.valid_after(),
                valid_before: certificate.valid_before(),
                notes: Vec::new(),
            }
        }

        fn check(&self, answer: &UserCertResponse, asked: &[&str]) -> Result<(), CertificateError> {
            let asked: Vec<String> = asked.iter().map(|p| p.to_string()).collect();
            let signers = [self.ca.public_key().key_data().clone()];
            check_certificate(
                answer,
                &Expected {
                    subject: self.key.public_key().key_data(),
                    signers: &signers,
                    principals: &asked,
                    max_lifetime: 3600,
                    now: NOW,
                },
            )
            .map(|_| ())
        }
    }

    #[test]
    fn a_certificate_as_asked_passes() {
        let case = Case::new();
        case.check(&case.answer(|_| {}), &["alice"]).unwrap();
        case.check(&case.answer(|_| {}), &[]).unwrap();
    }

    #[test]
    fn the_clock_skew_allowance_holds_at_both_ends() {
        let case = Case::new();
        let at = |after: u64, before: u64| {
            case.check(
                &case.answer(|b| {
                    *b = Builder::new_with_random_nonce(
                        &mut OsRng,
                        case.key.public_key(),
                        after,
                        before,
                    )
                    .unwrap();
                    b.cert_type(CertType::User).unwrap();
                    b.valid_principal("alice").unwrap();
                }),
                &["alice"],
            )
        };
        at(NOW + CLOCK_SKEW, NOW + 600).unwrap();
        assert!(matches!(
            at(NOW + CLOCK_SKEW + 1, NOW + 600),
            Err(CertificateError::NotYetValid { .. })
        ));
        at(NOW, NOW + 3600 + CLOCK_SKEW).unwrap();
        assert!(matches!(
            at(NOW, NOW + 3600 + CLOCK_SKEW + 1),
            Err(CertificateError::TooLong { .. })
        ));
        assert!(matches!(
            at(NOW - 600, NOW),
            Err(CertificateError::Expired { .. })
        ));
    }

    #[test]
    fn principals_granted_are_the_limit_when_none_were_asked() {
        let case = Case::new();
        let mut answer = case.answer(|b| {
            b.valid_principal("root").unwrap();
        });
        case.check(&answer, &[]).unwrap();
        assert!(matches!(
            case.check(&answer, &["alice"]),
            Err(CertificateError::UnaskedPrincipal { principal, .. }) if principal == "root"
        ));
        answer.principals = vec!["alice".into()];
        assert!(matches!(
            case.check(&answer, &[]),
            Err(CertificateError::UnaskedPrincipal { principal, .. }) if principal == "root"
        ));
    }

    #[test]
    fn a_forged_signature_is_refused_even_from_a_trusted_key() {
        let case = Case::new();
        let mut answer = case.answer(|_| {});
        // The same certificate with its serial changed after signing.
        let mut bytes = Certificate::from_openssh(&answer.certificate)
            .unwrap()
            .to_bytes()
            .unwrap();
        let original = Certificate::from_bytes(&bytes).unwrap();
        let serial = 7u64.to_be_bytes();
        let at = bytes
            .windows(8)
            .position(|w| w == serial)
            .expect("the serial is in the encoding");
        bytes[at + 7] = 8;
        let forged = Certificate::from_bytes(&bytes).unwrap();
        assert_eq!(forged.serial(), 8);
        assert_ne!(original.serial(), forged.serial());
        answer.certificate = forged.to_openssh().unwrap();
        answer.serial = "8".into();
        assert!(matches!(
            case.check(&answer, &["alice"]),
            Err(CertificateError::BadSignature { .. })
        ));
    }
}
