//! Fixtures for the tests of token verification: an issuer, a verifier that
//! trusts given JWKs, and EdDSA tokens signed by given keys.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{json, Value};

use super::{TokenError, TokenVerifier};
use crate::config::{IssuerConfig, UsernameClaim};
use crate::metrics::Metrics;
use crate::UnixTime;

/// The issuer `corp` at `https://idp.example.com`, audience `jit-ssh`
/// (with `username_claim = "email"`, for addresses at `example.com`).
pub(super) fn issuer(username_claim: UsernameClaim) -> IssuerConfig {
    IssuerConfig {
        name: "corp".into(),
        issuer: "https://idp.example.com".into(),
        client_id: "jit-ssh".into(),
        email_domains: match username_claim {
            UsernameClaim::Email => vec!["example.com".into()],
            _ => Vec::new(),
        },
        username_claim,
        groups_claim: "groups".into(),
        scopes: vec!["openid".into()],
        nonce: crate::config::NonceRule::default(),
        provider: crate::config::ProviderSettings::default(),
    }
}

/// The instant every test token is checked at.
pub(super) const NOW: UnixTime = 1_800_000_000;

/// A verifier trusting [`issuer`] with the key set `jwks`.
pub(super) fn verifier(jwks: Vec<Value>) -> TokenVerifier {
    TokenVerifier::with_known_issuer(
        issuer(UsernameClaim::PreferredUsername),
        "https://idp.example.com/jwks".into(),
        json!({ "keys": jwks }).to_string().as_bytes(),
        Duration::from_secs(60),
        reqwest::Client::new(),
        &Metrics::new(),
    )
    .expect("verifier")
}

/// A fresh Ed25519 signing key.
pub(super) fn ed25519_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The Ed25519 JWK of `point`, named `kid` when given.
pub(super) fn jwk(kid: Option<&str>, point: &[u8]) -> Value {
    let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(point)});
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    jwk
}

/// The base64url claims of a valid token for `username`, nonce `n`.
pub(super) fn payload(username: &str) -> String {
    payload_of("https://idp.example.com", username)
}

/// [`payload`] for the issuer `iss`.
pub(super) fn payload_of(iss: &str, username: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        json!({"iss": iss, "sub": username, "aud": "jit-ssh",
            "iat": NOW, "exp": NOW + 300, "nonce": "n", "preferred_username": username})
        .to_string(),
    )
}

/// A compact JWS of `header` and `payload` signed by `key`.
pub(super) fn signed(key: &SigningKey, header: Value, payload: &str) -> String {
    let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
    format!("{input}.{signature}")
}

/// A valid EdDSA token for `username`, signed by `key`.
pub(super) fn token(key: &SigningKey, kid: Option<&str>, username: &str) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
        None => json!({"alg": "EdDSA", "typ": "JWT"}),
    };
    signed(key, header, &payload(username))
}

/// `token` with its signature segment replaced by `signature`.
pub(super) fn with_signature(token: &str, signature: &str) -> String {
    let (input, _) = token.rsplit_once('.').expect("compact JWS");
    format!("{input}.{signature}")
}

/// The username `verifier` finds in `token`, or why it refuses it.
pub(super) async fn username(verifier: &TokenVerifier, token: &str) -> Result<String, TokenError> {
    verifier
        .verify(token, "n", NOW)
        .await
        .map(|verified| verified.identity.username)
}
