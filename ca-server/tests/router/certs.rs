//! `POST /v1/certs/user`: a certificate for a good request, and the codes
//! of refused ones.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ca_proto::UserCertRequest;

use crate::support::{
    certificate_request, error_code, fixture, get, proof_of, send, token, Fixture, BOB,
};

#[tokio::test]
async fn a_valid_request_gets_a_certificate_and_readyz_follows_shutdown() {
    let f = fixture().await;
    let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .expect("key");
    let blob = user.public_key().to_bytes().expect("blob");
    let token = token(&f.issuer_key, &ca_proto::nonce_for_key(&blob));
    let proof = proof_of(&user, &token);
    let body = serde_json::to_string(&UserCertRequest {
        public_key: user.public_key().to_openssh().expect("line"),
        principals: vec![],
        ttl: Some(120),
        proof,
    })
    .expect("json");
    let request = Request::post("/v1/certs/user")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "router-test-1")
        .body(Body::from(body))
        .expect("request");
    let (status, headers, body) = send(&f.router, request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-request-id"], "router-test-1");
    let issued: ca_proto::UserCertResponse = serde_json::from_slice(&body).expect("response");
    assert_eq!(issued.principals, ["alice"]);
    assert_eq!(issued.valid_before - issued.valid_after, 120 + 60);

    let (status, _, _) = send(&f.router, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    f.state.ready.store(false, Ordering::SeqCst);
    let (status, _, _) = send(&f.router, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A request's token and proof signatures are checked in one batch; a
/// forged token is still refused as a token when its proof is bad too.
#[tokio::test]
async fn a_forged_token_is_refused_as_a_token_whatever_its_proof() {
    let f = fixture().await;
    let algorithms = [
        ssh_key::Algorithm::Ed25519,
        ssh_key::Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        },
    ];
    for algorithm in algorithms {
        forged_token_refused_as_token(&f, algorithm).await;
    }
}

async fn forged_token_refused_as_token(f: &Fixture, algorithm: ssh_key::Algorithm) {
    let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, algorithm).expect("key");
    let blob = user.public_key().to_bytes().expect("blob");
    let nonce = ca_proto::nonce_for_key(&blob);
    let good = token(&f.issuer_key, &nonce);
    let forged = token(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]), &nonce);
    let proof_for = |token: &str| proof_of(&user, token);
    let cases = [
        (&forged, proof_for(&forged), "invalid_token"),
        (&forged, proof_for(&good), "invalid_token"),
        (&forged, "not a proof".to_string(), "invalid_token"),
        (&good, proof_for(&forged), "invalid_proof"),
    ];
    for (token, proof, code) in cases {
        let body = serde_json::to_string(&UserCertRequest {
            public_key: user.public_key().to_openssh().expect("line"),
            principals: vec![],
            ttl: None,
            proof,
        })
        .expect("json");
        let request = Request::post("/v1/certs/user")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .expect("request");
        let (status, _, body) = send(&f.router, request).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::UNAUTHORIZED, code)
        );
    }
}

#[tokio::test]
async fn a_principal_needing_approval_is_approval_required_not_denied() {
    let f = fixture().await;
    let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .expect("key");
    let ask = |principals: &[&str]| certificate_request(&f, &user, BOB, principals);
    let (status, _, body) = send(&f.router, ask(&["root"])).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "approval_required")
    );
    let message = String::from_utf8_lossy(&body).to_string();
    assert!(
        message.contains("jit-ssh request --principal root --reason"),
        "{message}"
    );
    // Another principal that nothing grants makes it a plain denial.
    let (status, _, body) = send(&f.router, ask(&["root", "postgres"])).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "denied")
    );
    // The metric counts it under its own code.
    let (_, _, metrics) = send(&f.monitoring, get("/metrics")).await;
    assert!(
        String::from_utf8_lossy(&metrics).contains("approval_required"),
        "metrics lack the code"
    );
}
