//! End-to-end: which keys an ID token without a nonce certifies, with real
//! tokens of the real test IdP (its authorization-code flow with and without
//! a nonce, and its refresh grant) and the real CA. Where the issuer
//! requires nonces (the default), such a token certifies only a key that
//! the same identity certified with a nonce-bound token within the issuer's
//! `nonce_session`, and only with that key's proof; an issuer with
//! `require_nonce = false` (workloads) lets it certify any key its bearer
//! proves. docs/security.md, *Key binding*.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_client::{nonce_for, CaClient};
use e2e::*;
use serde_json::Value;
use ssh_key::PrivateKey;

fn fresh_key() -> PrivateKey {
    PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap()
}

/// `user`'s tokens from the IdP's authorization-code flow, with `nonce`.
async fn login(idp: &Idp, user: &str, nonce: Option<&str>) -> Tokens {
    idp.login(user, "jit-ssh", nonce)
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()))
}

/// The claims of `token`.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A real ID token of `user` without a nonce, from the IdP's refresh grant
/// (of a sign-in that sent none, as a provider that drops the nonce on
/// refresh would give it).
async fn refreshed_without_nonce(idp: &Idp, user: &str) -> String {
    let refresh = login(idp, user, None).await.refresh_token.unwrap();
    let token = idp.refresh(&refresh, "jit-ssh").await.unwrap().id_token;
    assert!(claims(&token).get("nonce").is_none(), "{}", claims(&token));
    token
}

fn denials(setup: &CaSetup) -> Vec<Value> {
    setup
        .audit(&[])
        .into_iter()
        .filter(|e| e["event"] == "denied")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_less_token_of_a_nonce_requiring_issuer_is_refused_for_a_fresh_key() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("corp", &idp.issuer).build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = fresh_key();
    let token = login(&idp, "alice", None).await.id_token;
    assert!(claims(&token).get("nonce").is_none());

    let (status, code, message) = refusal(
        client
            .request_user_certificate(&token, &key, &[], None)
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (401, "nonce_required"),
        "{message}"
    );
    assert!(
        message.contains("no nonce") && message.contains("issuer corp"),
        "{message}"
    );
    // Recorded as a denial; nothing issued.
    let denied = denials(&setup);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(setup.audit(&[]).iter().all(|e| e["event"] != "issued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_less_refreshed_token_renews_only_the_key_certified_at_login() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("corp", &idp.issuer).build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = fresh_key();

    // Login: a token whose nonce names the key certifies it and binds it.
    let signed_in = login(&idp, "alice", Some(&nonce_for(&key).unwrap())).await;
    client
        .request_user_certificate(&signed_in.id_token, &key, &[], None)
        .await
        .unwrap();
    // The refresh grant of that sign-in renews it (this provider keeps the
    // nonce in refreshed ID tokens).
    let renewed = idp
        .refresh(signed_in.refresh_token.as_deref().unwrap(), "jit-ssh")
        .await
        .unwrap()
        .id_token;
    client
        .request_user_certificate(&renewed, &key, &[], None)
        .await
        .unwrap();

    // A refreshed token without a nonce is refused for any other key, even
    // with that key's proof, and the refusal spends nothing...
    let nonce_less = refreshed_without_nonce(&idp, "alice").await;
    let other_key = fresh_key();
    let (status, code, message) = refusal(
        client
            .request_user_certificate(&nonce_less, &other_key, &[], None)
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (401, "nonce_required"),
        "{message}"
    );
    // ...and renews the key certified at login, with that key's proof.
    let issued = client
        .request_user_certificate(&nonce_less, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["alice"]);

    // Another identity's nonce-less token does not renew alice's key.
    let bobs = refreshed_without_nonce(&idp, "bob").await;
    let (status, code, _) = refusal(
        client
            .request_user_certificate(&bobs, &key, &[], None)
            .await,
    );
    assert_eq!((status, code.as_str()), (401, "nonce_required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_renewed_without_a_nonce_only_within_the_nonce_session() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .issuer_setting("nonce_session = \"2s\"")
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = fresh_key();
    let token = login(&idp, "alice", Some(&nonce_for(&key).unwrap())).await;
    client
        .request_user_certificate(&token.id_token, &key, &[], None)
        .await
        .unwrap();
    let nonce_less = refreshed_without_nonce(&idp, "alice").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, code, _) = refusal(
        client
            .request_user_certificate(&nonce_less, &key, &[], None)
            .await,
    );
    assert_eq!((status, code.as_str()), (401, "nonce_required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_require_nonce_false_accepts_nonce_less_tokens() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .issuer_setting("require_nonce = false")
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let token = login(&idp, "alice", None).await.id_token;
    let issued = client
        .request_user_certificate(&token, &fresh_key(), &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["alice"]);
    // A nonce that is there must still name the key.
    let key = fresh_key();
    let for_another = login(&idp, "alice", Some(&nonce_for(&fresh_key()).unwrap())).await;
    let (status, code, message) = refusal(
        client
            .request_user_certificate(&for_another.id_token, &key, &[], None)
            .await,
    );
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    assert!(message.contains("nonce"), "{message}");
}
