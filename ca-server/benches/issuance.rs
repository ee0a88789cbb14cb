//! Micro-benchmarks of the per-certificate work: building and signing a
//! certificate, verifying an ID token, verifying the proof of possession.
//! The whole-server load benchmark is `scripts/bench-issuance`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_proto::{proof_message, PROOF_NAMESPACE};
use ca_server::ca_keys::CaSigner;
use ca_server::cert::{sign_user_certificate, CertificateSpec, Serial};
use ca_server::config::{IssuerConfig, UsernameClaim};
use ca_server::ed25519_batch::{Ed25519Batcher, Ed25519Check};
use ca_server::identity::Identity;
use ca_server::oidc::TokenVerifier;
use ca_server::policy::{Grant, DEFAULT_EXTENSIONS};
use ca_server::subject_key::{ProofCheck, SubjectKey};
use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::Signer as _;
use serde_json::json;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey};

fn identity() -> Identity {
    Identity {
        issuer_name: "bench".into(),
        issuer: "http://127.0.0.1:1".into(),
        subject: "bench-alice".into(),
        username: "alice".into(),
        email: None,
        groups: vec!["eng".into()],
        claims: Default::default(),
    }
}

fn certificate_signing(c: &mut Criterion) {
    let user = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap();
    let subject = SubjectKey::parse(&user.public_key().to_openssh().unwrap()).unwrap();
    let identity = identity();
    let grant = Grant {
        principals: vec!["alice".into()],
        ttl: Duration::from_secs(300),
        extensions: DEFAULT_EXTENSIONS.map(String::from).to_vec(),
        critical_options: vec![],
        rules: vec!["bench".into()],
        request_ids: Vec::new(),
        notes: Vec::new(),
    };
    for (name, algorithm) in [
        ("ed25519", Algorithm::Ed25519),
        (
            "ecdsa-p256",
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ),
    ] {
        let ca =
            CaSigner::new(PrivateKey::random(&mut rand_core::OsRng, algorithm).unwrap()).unwrap();
        let mut serial = 0;
        c.bench_function(&format!("certificate build+sign ({name} CA)"), |b| {
            b.iter(|| {
                serial += 1;
                let spec = CertificateSpec {
                    subject: &subject,
                    identity: &identity,
                    grant: &grant,
                    serial: Serial(serial),
                    now: 1_800_000_000,
                    backdate: Duration::from_secs(60),
                };
                sign_user_certificate(&ca, &spec).unwrap()
            })
        });
    }
}

fn token_verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let issuer_key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let issuer = "http://127.0.0.1:1";
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(issuer_key.verifying_key().as_bytes())}]});
    let verifier = TokenVerifier::with_known_issuer(
        IssuerConfig {
            name: "bench".into(),
            issuer: issuer.into(),
            client_id: "jit-ssh".into(),
            username_claim: UsernameClaim::PreferredUsername,
            groups_claim: "groups".into(),
            email_domains: Vec::new(),
            scopes: vec!["openid".into()],
            nonce: ca_server::config::NonceRule::default(),
            provider: ca_server::config::ProviderSettings::default(),
        },
        format!("{issuer}/jwks"),
        jwks.to_string().as_bytes(),
        Duration::from_secs(60),
        reqwest::Client::new(),
        &ca_server::metrics::Metrics::new(),
    )
    .unwrap();
    let now = ca_server::unix_now();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": "k1"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": issuer, "sub": "s", "aud": "jit-ssh", "iat": now, "exp": now + 3600,
               "nonce": "n", "preferred_username": "alice", "groups": ["eng"]})
        .to_string(),
    );
    let input = format!("{header}.{claims}");
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(issuer_key.sign(input.as_bytes()).to_bytes())
    );
    // A lone token: its signature is a batch of one, checked alone
    // (`ed25519_batch::verify_one`).
    c.bench_function("ID token verification (EdDSA)", |b| {
        b.iter(|| runtime.block_on(verifier.verify(&token, "n", now)).unwrap())
    });

    let (subject, proof) = subject_with_proof(&token);
    c.bench_function("proof of possession verification (Ed25519)", |b| {
        b.iter(|| subject.verify_proof(&token, &proof).unwrap())
    });

    // The server checks concurrent proofs together (ca_server::ed25519_batch);
    // per-signature cost of batches of 16 such proofs, each by its own key.
    let batch = 16;
    let proofs: Vec<(SubjectKey, String)> =
        (0..batch).map(|_| subject_with_proof(&token)).collect();
    let batcher = std::sync::Arc::new(Ed25519Batcher::default());
    let mut group = c.benchmark_group("proof of possession verification (Ed25519)");
    group.throughput(criterion::Throughput::Elements(batch));
    group.bench_function("batches of 16", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let checks = proofs.iter().map(|(subject, proof)| {
                    let batcher = batcher.clone();
                    let check = left_for_batch(subject.proof_check(&token, proof).unwrap());
                    tokio::spawn(async move { batcher.verify(check).await })
                });
                let tasks: Vec<_> = checks.collect();
                for task in tasks {
                    assert!(task.await.unwrap());
                }
            })
        })
    });
    group.finish();

    // What issuance does: each request's token and proof submitted together,
    // 16 requests at once (32 signatures), per request.
    let verifier = std::sync::Arc::new(verifier);
    let mut group = c.benchmark_group("token + proof verified together (EdDSA, Ed25519)");
    group.throughput(criterion::Throughput::Elements(batch));
    group.bench_function("batches of 16", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let requests = proofs.iter().map(|(subject, proof)| {
                    let verifier = verifier.clone();
                    let (token, proof) = (token.clone(), proof.clone());
                    let subject = subject.clone();
                    tokio::spawn(async move {
                        let proof_check =
                            left_for_batch(subject.proof_check(&token, &proof).unwrap());
                        let (_, proof_verdict) = verifier
                            .verify_with(&token, "n", now, Some(proof_check))
                            .await
                            .unwrap();
                        assert_eq!(proof_verdict, Some(true));
                    })
                });
                let tasks: Vec<_> = requests.collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    group.finish();
}

/// The signature check an Ed25519 proof leaves for a batch.
fn left_for_batch(proof: ProofCheck) -> Ed25519Check {
    match proof {
        ProofCheck::Ed25519(check) => *check,
        ProofCheck::Other(_) => unreachable!("Ed25519 keys are batched"),
    }
}

/// A fresh Ed25519 subject key and its armored proof of possession for `token`.
fn subject_with_proof(token: &str) -> (SubjectKey, String) {
    let user = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap();
    let blob = user.public_key().to_bytes().unwrap();
    let proof = user
        .sign(
            PROOF_NAMESPACE,
            HashAlg::Sha256,
            &proof_message(token, &blob),
        )
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    let subject = SubjectKey::parse(&user.public_key().to_openssh().unwrap()).unwrap();
    (subject, proof)
}

criterion_group!(benches, certificate_signing, token_verification);
criterion_main!(benches);
