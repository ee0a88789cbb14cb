//! The key a certificate is issued for: parsing the OpenSSH line a client sends,
//! refusing keys too weak to trust, and checking the client holds its private half.
//!
//! A key is accepted only if OpenSSH would read it, so that no certificate
//! is issued that sshd and ssh-keygen refuse: an ECDSA key is an
//! uncompressed point on its curve, not the point at infinity, with
//! coordinates as OpenSSH's `sshkey_ec_validate_public` wants them (each
//! longer than half the group order, and below the order minus one); an RSA
//! key has an odd public exponent of at least 3 (and at most 2^33 - 1, the
//! largest the verifier accepts) and a modulus of 2048 to 8192 bits. Each
//! of these is refused here, before the ID token is looked at, so a bad key
//! spends nothing. The curve checks are the p256/p384/p521 crates'.

use ca_proto::{proof_message, PROOF_NAMESPACE};
use p256::elliptic_curve::bigint::ArrayEncoding as _;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize};
use ssh_key::public::{EcdsaPublicKey, KeyData, RsaPublicKey};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PublicKey, SshSig};

use crate::ed25519_batch::Ed25519Check;

/// Shortest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// Longest RSA modulus accepted: bigger keys only cost the CA verification time.
pub const MAX_RSA_BITS: usize = 8192;
/// Longest OpenSSH public key line accepted.
const MAX_LINE_LEN: usize = 4096;
/// Longest RSA public exponent accepted, in bits: the RSA verifier refuses
/// larger ones, so a proof by such a key could never verify.
const MAX_RSA_EXPONENT_BITS: usize = 33;

/// Why a subject key or its proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    /// Not an OpenSSH public key line.
    #[error("public_key is not an OpenSSH public key line ({0})")]
    Malformed(String),
    /// A certificate was sent where a plain key belongs.
    #[error(
        "public_key is a certificate; send the plain public key (the .pub file, not -cert.pub)"
    )]
    CertificateOffered,
    /// An Ed25519 key that is not a point of the curve's large subgroup.
    #[error("Ed25519 public key is a small-order point, for which anyone can make signatures; generate a real key (ssh-keygen -t ed25519)")]
    WeakEd25519,
    /// DSA keys are broken and disabled in OpenSSH.
    #[error("DSA keys are not accepted; use Ed25519 (ssh-keygen -t ed25519)")]
    Dsa,
    /// RSA modulus outside the accepted range.
    #[error("RSA key of {bits} bits is not accepted: RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")]
    RsaSize {
        /// The key's modulus size.
        bits: usize,
    },
    /// An ECDSA key OpenSSH would not read: a compressed point, or one that
    /// is not a valid point of its curve.
    #[error("ECDSA public key {0}; OpenSSH reads only uncompressed points on the curve (generate one with ssh-keygen -t ecdsa)")]
    EcdsaPoint(&'static str),
    /// An RSA public exponent that is even, below 3, or too large.
    #[error("RSA public exponent {0}: it must be odd, at least 3 and below 2^33 (ssh-keygen uses 65537)")]
    RsaExponent(&'static str),
    /// An algorithm this CA does not certify.
    #[error("{0} keys are not accepted; use Ed25519, ECDSA or RSA (2048+ bits)")]
    Unsupported(String),
    /// The proof of possession is not a valid SSH signature.
    #[error("proof is not an armored SSH signature ({0})")]
    ProofMalformed(String),
    /// The proof was made by another key.
    #[error("proof was signed by a different key than public_key")]
    ProofWrongKey,
    /// The proof is for another namespace.
    #[error("proof has namespace {0:?}, expected {PROOF_NAMESPACE:?}")]
    ProofWrongNamespace(String),
    /// The signature does not verify over the expected message.
    #[error("proof does not verify: it must sign the message bound to this token and key (see docs/api.md)")]
    ProofInvalid,
}

/// A public key accepted for certification.
#[derive(Debug, Clone)]
pub struct SubjectKey {
    key: PublicKey,
    blob: Vec<u8>,
    /// Ed25519 keys, decompressed once for proof verification.
    ed25519: Option<ed25519_dalek::VerifyingKey>,
}

impl SubjectKey {
    /// Parses and vets one OpenSSH public key line.
    pub fn parse(line: &str) -> Result<SubjectKey, KeyRejection> {
        let line = line.trim();
        if line.len() > MAX_LINE_LEN {
            return Err(KeyRejection::Malformed("line too long".into()));
        }
        let kind = line.split_whitespace().next().unwrap_or_default();
        if kind.ends_with("-cert-v01@openssh.com") {
            return Err(KeyRejection::CertificateOffered);
        }
        if kind == "ssh-dss" {
            return Err(KeyRejection::Dsa);
        }
        let key =
            PublicKey::from_openssh(line).map_err(|e| KeyRejection::Malformed(e.to_string()))?;
        let mut ed25519 = None;
        match key.key_data() {
            KeyData::Ed25519(point) => {
                let prepared = ed25519_dalek::VerifyingKey::from_bytes(&point.0)
                    .map_err(|_| KeyRejection::Malformed("not an Ed25519 curve point".into()))?;
                // Small-order keys verify signatures nobody needed a private
                // key to make; sshd would accept them as well.
                if prepared.is_weak() {
                    return Err(KeyRejection::WeakEd25519);
                }
                ed25519 = Some(prepared);
            }
            KeyData::Ecdsa(ecdsa) => check_ecdsa(ecdsa)?,
            KeyData::Rsa(rsa) => check_rsa(rsa)?,
            KeyData::Dsa(_) => return Err(KeyRejection::Dsa),
            other => {
                return Err(KeyRejection::Unsupported(other.algorithm().to_string()));
            }
        }
        let blob = key
            .to_bytes()
            .map_err(|e| KeyRejection::Malformed(e.to_string()))?;
        Ok(SubjectKey { key, blob, ed25519 })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The key in SSH wire format, the input of the nonce and the proof.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The OIDC nonce a token for this key must carry.
    pub fn expected_nonce(&self) -> String {
        ca_proto::nonce_for_key(&self.blob)
    }

    /// `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The algorithm, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Checks `armored_proof` is this key's signature over the proof message
    /// for `id_token`.
    pub fn verify_proof(&self, id_token: &str, armored_proof: &str) -> Result<(), KeyRejection> {
        match self.proof_check(id_token, armored_proof)? {
            ProofCheck::Ed25519(check) if check.verify() => Ok(()),
            ProofCheck::Ed25519(_) => Err(KeyRejection::ProofInvalid),
            ProofCheck::Other(proof) => proof.verify(),
        }
    }

    /// Checks everything about `armored_proof` but its signature, which is
    /// returned to be checked: an Ed25519 one in a batch
    /// ([`crate::ed25519_batch`]), another key's when the caller is ready to
    /// pay for it (after the ID token, so that a forged token never costs an
    /// RSA or ECDSA verification).
    pub fn proof_check(
        &self,
        id_token: &str,
        armored_proof: &str,
    ) -> Result<ProofCheck<'_>, KeyRejection> {
        let proof = SshSig::from_pem(armored_proof.trim())
            .map_err(|e| KeyRejection::ProofMalformed(e.to_string()))?;
        if proof.public_key() != self.key.key_data() {
            return Err(KeyRejection::ProofWrongKey);
        }
        if proof.namespace() != PROOF_NAMESPACE {
            return Err(KeyRejection::ProofWrongNamespace(proof.namespace().into()));
        }
        let message = proof_message(id_token, &self.blob);
        let Some(key) = self.ed25519 else {
            return Ok(ProofCheck::Other(Box::new(OtherProof {
                key: &self.key,
                message,
                proof,
            })));
        };
        if proof.algorithm() != Algorithm::Ed25519 {
            return Err(KeyRejection::ProofInvalid);
        }
        let signature = ed25519_dalek::Signature::from_slice(proof.signature_bytes())
            .map_err(|_| KeyRejection::ProofInvalid)?;
        let signed = SshSig::signed_data(PROOF_NAMESPACE, proof.hash_alg(), &message)
            .map_err(|e| KeyRejection::ProofMalformed(e.to_string()))?;
        Ok(ProofCheck::Ed25519(Box::new(Ed25519Check {
            key,
            message: signed,
            signature,
        })))
    }
}

/// What is left of a proof check after [`SubjectKey::proof_check`]: the
/// signature.
#[derive(Debug)]
#[must_use]
pub enum ProofCheck<'k> {
    /// An Ed25519 signature.
    Ed25519(Box<Ed25519Check>),
    /// The signature of an RSA or ECDSA key: [`OtherProof::verify`].
    Other(Box<OtherProof<'k>>),
}

/// A proof by an RSA or ECDSA key, checked but for its signature.
#[derive(Debug)]
#[must_use]
pub struct OtherProof<'k> {
    key: &'k PublicKey,
    message: Vec<u8>,
    proof: SshSig,
}

impl OtherProof<'_> {
    /// Verifies the signature.
    pub fn verify(&self) -> Result<(), KeyRejection> {
        self.key
            .verify(PROOF_NAMESPACE, &self.message, &self.proof)
            .map_err(|_| KeyRejection::ProofInvalid)
    }
}

/// Refuses an ECDSA key OpenSSH would not read.
fn check_ecdsa(key: &EcdsaPublicKey) -> Result<(), KeyRejection> {
    let point = key.as_sec1_bytes();
    if point.first() != Some(&0x04) {
        return Err(KeyRejection::EcdsaPoint("is not an uncompressed point"));
    }
    match key.curve() {
        EcdsaCurve::NistP256 => check_point::<p256::NistP256>(point),
        EcdsaCurve::NistP384 => check_point::<p384::NistP384>(point),
        EcdsaCurve::NistP521 => check_point::<p521::NistP521>(point),
    }
}

/// Refuses an uncompressed SEC1 `point` that is not on curve `C` (the
/// crate's check: on the curve, not the identity), or whose coordinates
/// OpenSSH refuses: each must be longer than half the group order, and
/// below the order minus one.
fn check_point<C>(point: &[u8]) -> Result<(), KeyRejection>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
{
    p256::elliptic_curve::PublicKey::<C>::from_sec1_bytes(point)
        .map_err(|_| KeyRejection::EcdsaPoint("is not a point of its curve"))?;
    let order = C::ORDER.to_be_byte_array();
    let coordinates = &point[1..];
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    // The order is wider than a coordinate for P-521 (a whole number of
    // limbs); its leading bytes are zero.
    let order = &order[order.len() - x.len()..];
    let order_bits = mpint_bits(order);
    // The order is prime, so odd: minus one only clears its lowest bit.
    let mut order_minus_one = order.to_vec();
    if let Some(last) = order_minus_one.last_mut() {
        *last &= !1;
    }
    let acceptable = |c: &[u8]| mpint_bits(c) > order_bits / 2 && c < &order_minus_one[..];
    if !acceptable(x) || !acceptable(y) {
        return Err(KeyRejection::EcdsaPoint(
            "has a coordinate OpenSSH refuses (too short, or not below the group order minus one)",
        ));
    }
    Ok(())
}

/// Refuses an RSA key whose modulus is out of range or whose exponent is
/// not odd, at least 3 and at most [`MAX_RSA_EXPONENT_BITS`] long.
fn check_rsa(key: &RsaPublicKey) -> Result<(), KeyRejection> {
    let bits = mpint_bits(key.n.as_positive_bytes().unwrap_or_default());
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyRejection::RsaSize { bits });
    }
    let e = key.e.as_positive_bytes().unwrap_or_default();
    let e_bits = mpint_bits(e);
    if e_bits < 2 {
        return Err(KeyRejection::RsaExponent("is below 3"));
    }
    if e.last().is_some_and(|low| low & 1 == 0) {
        return Err(KeyRejection::RsaExponent("is even"));
    }
    if e_bits > MAX_RSA_EXPONENT_BITS {
        return Err(KeyRejection::RsaExponent("is too large"));
    }
    Ok(())
}

fn mpint_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{LineEnding, PrivateKey};

    fn random(algorithm: Algorithm) -> PrivateKey {
        PrivateKey::random(&mut rand_core::OsRng, algorithm).expect("keygen")
    }

    fn sign_proof(key: &PrivateKey, token: &str, namespace: &str) -> String {
        let blob = key.public_key().to_bytes().expect("blob");
        key.sign(namespace, HashAlg::Sha512, &proof_message(token, &blob))
            .expect("sign")
            .to_pem(LineEnding::LF)
            .expect("pem")
    }

    #[test]
    fn accepts_ed25519_and_ecdsa() {
        for algorithm in [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
        ] {
            let key = random(algorithm);
            let line = key.public_key().to_openssh().expect("line");
            let subject = SubjectKey::parse(&line).expect("accepted");
            assert!(subject.fingerprint().starts_with("SHA256:"));
        }
    }

    /// The OpenSSH line of an ECDSA key with the SEC1 `point`.
    fn ecdsa_line(point: &[u8]) -> String {
        let key = ssh_key::public::EcdsaPublicKey::from_sec1_bytes(point).expect("sec1");
        PublicKey::new(KeyData::Ecdsa(key), "")
            .to_openssh()
            .expect("line")
    }

    #[test]
    fn refuses_ecdsa_points_openssh_cannot_read_on_every_curve() {
        for curve in [
            EcdsaCurve::NistP256,
            EcdsaCurve::NistP384,
            EcdsaCurve::NistP521,
        ] {
            let key = random(Algorithm::Ecdsa { curve });
            let KeyData::Ecdsa(ecdsa) = key.public_key().key_data() else {
                panic!("an ECDSA key");
            };
            let point = ecdsa.as_sec1_bytes();
            let mut off_curve = point.to_vec();
            if let Some(last) = off_curve.last_mut() {
                *last ^= 1;
            }
            let mut zero = vec![0; point.len()];
            zero[0] = 4;
            for bad in [off_curve, zero] {
                assert_eq!(
                    SubjectKey::parse(&ecdsa_line(&bad)).map(|_| ()),
                    Err(KeyRejection::EcdsaPoint("is not a point of its curve")),
                    "{curve:?}"
                );
            }
            let compressed = match ecdsa {
                ssh_key::public::EcdsaPublicKey::NistP256(p) => p.compress().as_bytes().to_vec(),
                ssh_key::public::EcdsaPublicKey::NistP384(p) => p.compress().as_bytes().to_vec(),
                ssh_key::public::EcdsaPublicKey::NistP521(p) => p.compress().as_bytes().to_vec(),
            };
            assert_eq!(
                SubjectKey::parse(&ecdsa_line(&compressed)).map(|_| ()),
                Err(KeyRejection::EcdsaPoint("is not an uncompressed point")),
                "{curve:?}"
            );
        }
    }

    #[test]
    fn refuses_rsa_exponents_openssh_and_the_verifier_refuse() {
        let line = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/keys/rsa2048.pub"
        ))
        .expect("fixture");
        let key = PublicKey::from_openssh(&line).expect("key");
        let KeyData::Rsa(rsa) = key.key_data() else {
            panic!("an RSA key");
        };
        let with_e = |e: &[u8]| {
            let key = ssh_key::public::RsaPublicKey {
                e: ssh_key::Mpint::from_positive_bytes(e).expect("mpint"),
                n: rsa.n.clone(),
            };
            SubjectKey::parse(
                &PublicKey::new(KeyData::Rsa(key), "")
                    .to_openssh()
                    .expect("line"),
            )
            .map(|_| ())
        };
        for (e, verdict) in [
            (&[0][..], Err(KeyRejection::RsaExponent("is below 3"))),
            (&[1], Err(KeyRejection::RsaExponent("is below 3"))),
            (&[2], Err(KeyRejection::RsaExponent("is even"))),
            (&[1, 0, 0], Err(KeyRejection::RsaExponent("is even"))),
            (&[3], Ok(())),
            (&[1, 0, 1], Ok(())),
            (&[1, 255, 255, 255, 255], Ok(())),
            (
                &[2, 0, 0, 0, 1],
                Err(KeyRejection::RsaExponent("is too large")),
            ),
        ] {
            assert_eq!(with_e(e), verdict, "e = {e:?}");
        }
    }

    #[test]
    fn refuses_garbage_certificates_and_dsa() {
        assert!(matches!(
            SubjectKey::parse("not a key"),
            Err(KeyRejection::Malformed(_))
        ));
        assert!(matches!(
            SubjectKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBROKEN"),
            Err(KeyRejection::Malformed(_))
        ));
        assert!(matches!(
            SubjectKey::parse("ssh-ed25519-cert-v01@openssh.com AAAA x"),
            Err(KeyRejection::CertificateOffered)
        ));
        assert!(matches!(
            SubjectKey::parse("ssh-dss AAAAB3NzaC1kc3M= x"),
            Err(KeyRejection::Dsa)
        ));
        assert!(SubjectKey::parse(&"A".repeat(5000)).is_err());
    }

    #[test]
    fn refuses_small_order_ed25519_keys() {
        // The identity point and a point of order 8: anyone can "sign" for them.
        let mut order_eight = [0u8; 32];
        order_eight[31] = 0x80;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for point in [identity, order_eight] {
            let key = PublicKey::from(KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(point)));
            let line = key.to_openssh().expect("line");
            assert_eq!(
                SubjectKey::parse(&line).err(),
                Some(KeyRejection::WeakEd25519)
            );
        }
    }

    #[test]
    fn proofs_are_checked_but_for_the_signature_left_to_the_caller() {
        for algorithm in [
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ed25519,
        ] {
            let key = random(algorithm.clone());
            let subject =
                SubjectKey::parse(&key.public_key().to_openssh().expect("line")).expect("key");
            let proof = sign_proof(&key, "token-1", PROOF_NAMESPACE);
            let check = subject.proof_check("token-1", &proof).expect("check");
            match (algorithm, check) {
                (Algorithm::Ed25519, ProofCheck::Ed25519(check)) => assert!(check.verify()),
                (Algorithm::Ecdsa { .. }, ProofCheck::Other(proof)) => {
                    assert_eq!(proof.verify(), Ok(()));
                }
                (algorithm, check) => panic!("{algorithm}: {check:?}"),
            }
            let forged = subject.proof_check("token-2", &proof);
            assert!(
                matches!(forged, Err(KeyRejection::ProofInvalid))
                    || matches!(forged, Ok(ProofCheck::Ed25519(ref c)) if !c.verify())
                    || matches!(forged, Ok(ProofCheck::Other(ref p))
                        if p.verify() == Err(KeyRejection::ProofInvalid))
            );
        }
    }

    #[test]
    fn proof_of_possession_binds_key_token_and_namespace() {
        let key = random(Algorithm::Ed25519);
        let subject =
            SubjectKey::parse(&key.public_key().to_openssh().expect("line")).expect("key");
        let good = sign_proof(&key, "token-1", PROOF_NAMESPACE);
        assert_eq!(subject.verify_proof("token-1", &good), Ok(()));
        assert_eq!(
            subject.verify_proof("token-2", &good),
            Err(KeyRejection::ProofInvalid)
        );
        let other_ns = sign_proof(&key, "token-1", "git");
        assert!(matches!(
            subject.verify_proof("token-1", &other_ns),
            Err(KeyRejection::ProofWrongNamespace(_))
        ));
        let other_key = random(Algorithm::Ed25519);
        let stolen = sign_proof(&other_key, "token-1", PROOF_NAMESPACE);
        assert_eq!(
            subject.verify_proof("token-1", &stolen),
            Err(KeyRejection::ProofWrongKey)
        );
        assert!(matches!(
            subject.verify_proof("token-1", "garbage"),
            Err(KeyRejection::ProofMalformed(_))
        ));
    }

    #[test]
    fn rsa_bit_count() {
        assert_eq!(mpint_bits(&[0x01, 0x00]), 9);
        assert_eq!(mpint_bits(&[0x80; 256]), 2048);
        assert_eq!(mpint_bits(&[0x00, 0x7f]), 7);
    }
}
