//! End-to-end: the CA certifies only keys OpenSSH reads. A compressed ECDSA
//! point (even with a valid proof), a point off its curve, the all-zero
//! point, and RSA keys whose public exponent is 0, 1, 2 or even are refused
//! when the key is parsed, before the ID token is looked at: a garbage token
//! gets the key's refusal, and a real token sent with a bad key stays
//! unspent. Every certificate the CA issues for an ECDSA key (P-256, P-384,
//! P-521) is read by `ssh-keygen -L`.

#![allow(clippy::unwrap_used, missing_docs)]

use ca_client::sign_proof;
use ca_proto::{proof_message, PROOF_NAMESPACE};
use e2e::*;
use serde_json::{json, Value};
use ssh_key::public::{EcdsaPublicKey, KeyData, RsaPublicKey};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, Mpint, PrivateKey, PublicKey, SshSig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_openssh_cannot_read_are_refused_at_parsing_and_spend_nothing() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .issuer_setting("require_nonce = false")
        .build();
    let ca = setup.start();
    let dir = tempfile::tempdir().unwrap();
    // Without a nonce, so that one token could certify any of the keys.
    let token = idp.login("alice", "jit-ssh", None).await.unwrap().id_token;

    for (what, line, proof, code) in bad_keys(dir.path(), &token) {
        let body = json!({"public_key": line, "proof": proof});
        let (status, refused) = ca
            .call("/v1/certs/user", Some("not-a-token"), Some(body.clone()))
            .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some(code)),
            "{what}, with a garbage token: refused before the token is looked at: {refused}"
        );
        let (status, refused) = ca.call("/v1/certs/user", Some(&token), Some(body)).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some(code)),
            "{what}: {refused}"
        );
    }
    // None of them spent the token.
    let (_, good) = ssh_keygen(dir.path(), "good", &["-t", "ed25519"]);
    let (status, issued) = issue(&ca, &token, &good).await;
    assert_eq!(status, 200, "{issued}");
    let issued = setup.audit(&["--identity", "alice"]);
    assert_eq!(
        issued.iter().filter(|e| e["event"] == "issued").count(),
        1,
        "{issued:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_keygen_reads_every_certificate_issued_for_an_ecdsa_key() {
    let idp = Idp::start();
    let ca = CaSetup::trusting(&idp).start();
    let dir = tempfile::tempdir().unwrap();
    for (bits, curve) in [
        ("256", EcdsaCurve::NistP256),
        ("384", EcdsaCurve::NistP384),
        ("521", EcdsaCurve::NistP521),
    ] {
        let key = ecdsa_key(curve);
        let path = dir.path().join(format!("ecdsa-{bits}"));
        let nonce = ca_client::nonce_for(&key).unwrap();
        let token = idp
            .login("alice", "jit-ssh", Some(&nonce))
            .await
            .unwrap()
            .id_token;
        let (status, issued) = issue(&ca, &token, &key).await;
        assert_eq!(status, 200, "P-{bits}: {issued}");
        let cert = write_certificate(dir.path(), &path, issued["certificate"].as_str().unwrap());
        let listed = ssh_keygen_list(&cert);
        assert!(
            listed.contains("ECDSA-CERT SHA256:") && listed.contains("alice"),
            "P-{bits}: {listed}"
        );
    }
}

/// Keys OpenSSH does not read, each with a proof and the code it is refused
/// with.
fn bad_keys(
    dir: &std::path::Path,
    token: &str,
) -> Vec<(&'static str, String, String, &'static str)> {
    let p256 = ecdsa_key(EcdsaCurve::NistP256);
    let p384 = ecdsa_key(EcdsaCurve::NistP384);
    let (_, rsa) = ssh_keygen(dir, "rsa", &["-t", "rsa", "-b", "2048"]);
    let KeyData::Ecdsa(EcdsaPublicKey::NistP256(point)) = p256.public_key().key_data() else {
        panic!("ssh-keygen made no P-256 key");
    };
    let compressed =
        KeyData::Ecdsa(EcdsaPublicKey::from_sec1_bytes(point.compress().as_bytes()).unwrap());
    // The compressed key's own proof, signed by its private half: before
    // keys were checked, the CA certified it.
    let proof = {
        let blob = PublicKey::new(compressed.clone(), "").to_bytes().unwrap();
        let signed = p256
            .sign(
                PROOF_NAMESPACE,
                HashAlg::Sha512,
                &proof_message(token, &blob),
            )
            .unwrap();
        SshSig::new(
            compressed.clone(),
            PROOF_NAMESPACE,
            HashAlg::Sha512,
            signed.signature().clone(),
        )
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
    };
    let mut keys = vec![(
        "a compressed P-256 point with a valid proof",
        line(&compressed),
        proof,
        "invalid_key",
    )];

    let other_proof = sign_proof(&p256, token).unwrap();
    let mut off_curve = point.as_bytes().to_vec();
    *off_curve.last_mut().unwrap() ^= 1;
    let KeyData::Ecdsa(p384_point) = p384.public_key().key_data() else {
        panic!("ssh-keygen made no P-384 key");
    };
    let mut p384_off_curve = p384_point.as_sec1_bytes().to_vec();
    *p384_off_curve.last_mut().unwrap() ^= 1;
    let mut all_zero = vec![0u8; 65];
    all_zero[0] = 4;
    for (what, point) in [
        ("a P-256 point off the curve", off_curve),
        ("a P-384 point off the curve", p384_off_curve),
        ("the all-zero P-256 point", all_zero),
    ] {
        let key = KeyData::Ecdsa(EcdsaPublicKey::from_sec1_bytes(&point).unwrap());
        keys.push((what, line(&key), other_proof.clone(), "invalid_key"));
    }

    let KeyData::Rsa(rsa) = rsa.public_key().key_data() else {
        panic!("ssh-keygen made no RSA key");
    };
    for (what, e) in [
        ("an RSA key with e = 0", 0u8),
        ("an RSA key with e = 1", 1),
        ("an RSA key with e = 2", 2),
        ("an RSA key with an even e", 4),
    ] {
        let key = KeyData::Rsa(RsaPublicKey {
            e: Mpint::from_positive_bytes(&[e]).unwrap(),
            n: rsa.n.clone(),
        });
        keys.push((what, line(&key), other_proof.clone(), "weak_key"));
    }
    keys
}

/// A fresh ECDSA key on `curve`, made here: ssh-key 0.6 cannot read every
/// ECDSA private key file ssh-keygen writes.
fn ecdsa_key(curve: EcdsaCurve) -> PrivateKey {
    PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ecdsa { curve }).unwrap()
}

fn line(key: &KeyData) -> String {
    PublicKey::new(key.clone(), "bad").to_openssh().unwrap()
}

/// `POST /v1/certs/user` for `key` with `token` and a proof made for them.
async fn issue(ca: &Ca, token: &str, key: &PrivateKey) -> (u16, Value) {
    let body = json!({
        "public_key": key.public_key().to_openssh().unwrap(),
        "proof": sign_proof(key, token).unwrap(),
    });
    ca.call("/v1/certs/user", Some(token), Some(body)).await
}
