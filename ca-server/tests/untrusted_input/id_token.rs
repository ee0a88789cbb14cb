//! ID tokens, as the CA reads them: a compact JWS whose header and claims are
//! decoded before any signature is checked. [`check`] hands a token to
//! `TokenVerifier::verify` (the path of every authenticated request) for an
//! issuer whose key set holds an Ed25519, an RSA and an ECDSA key, and
//! asserts that nothing panics and that a token accepted says what an
//! accepted token must: the configured issuer, this CA's audience, a time
//! window around now, the expected nonce. The fuzzer cannot sign, so tokens
//! also come as a header and claims that [`check`] signs with the issuer's
//! Ed25519 key: the claims checks and the identity mapping then see the
//! fuzzer's bytes, and the same token with another signature must fail.
//!
//! Input layout: `1`, header JSON, a zero byte, claims JSON (signed here);
//! any other first byte, then a compact token as it would arrive.

use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{json, Value};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, PrivateKey, PublicKey};

use ca_server::config::Config;
use ca_server::metrics::Metrics;
use ca_server::oidc::TokenVerifier;

/// The issuer the verifier trusts.
pub const ISSUER: &str = "https://idp.fuzz.example";
/// Its client ID, the audience.
pub const CLIENT_ID: &str = "jit-ssh";
/// The nonce tokens are checked against.
pub const NONCE: &str = "tFvZLTZ4hRZnJfcYHl0vaLG6AOSiZcXs4ZD08v4AvUk";
/// The time tokens are checked at.
pub const NOW: u64 = 1_750_000_000;
/// The leeway on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY: u64 = 60;
/// The Ed25519 key's `kid` in the key set.
pub const ED25519_KID: &str = "ed";

/// Asserts that `data`, as a token, is refused or accepted for good reasons.
pub fn check(data: &[u8]) {
    let fixture = &*FIXTURE;
    match data.split_first() {
        Some((1, rest)) => {
            let (header, claims) = match rest.iter().position(|b| *b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let token = fixture.sign(header, claims, b"");
            if fixture.verify(&token) {
                let forged = fixture.sign(header, claims, b"another message");
                assert!(!fixture.verify(&forged), "a wrong signature was accepted");
            }
        }
        Some((_, rest)) => {
            if let Ok(token) = std::str::from_utf8(rest) {
                fixture.verify(token);
            }
        }
        None => {}
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: TokenVerifier,
    issuer_key: SigningKey,
}

impl Fixture {
    /// `header.claims.signature`, signed over `header.claims` and `tail`.
    fn sign(&self, header: &[u8], claims: &[u8], tail: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signed = [signing_input.as_bytes(), tail].concat();
        let signature = self.issuer_key.sign(&signed);
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// Whether the verifier accepts `token`; if it does, that the token's
    /// claims hold what an accepted token must.
    fn verify(&self, token: &str) -> bool {
        let verified = self
            .runtime
            .block_on(self.verifier.verify(token, NONCE, NOW));
        let Ok(verified) = verified else {
            return false;
        };
        let claims: Value = token
            .split('.')
            .nth(1)
            .and_then(|claims| URL_SAFE_NO_PAD.decode(claims).ok())
            .and_then(|claims| serde_json::from_slice(&claims).ok())
            .expect("an accepted token has JSON claims");
        assert_eq!(claims["iss"], ISSUER, "{claims}");
        let audience = match &claims["aud"] {
            Value::Array(audiences) => audiences.contains(&json!(CLIENT_ID)),
            one => one == CLIENT_ID,
        };
        assert!(audience, "{claims}");
        let (now, leeway) = (NOW as i64, LEEWAY as i64);
        let exp = claims["exp"].as_i64().expect("exp");
        assert!(exp > now - leeway, "{claims}");
        assert_eq!(verified.expires_at, exp as u64);
        let iat = claims["iat"].as_i64().expect("iat");
        assert!(iat <= now + leeway, "{claims}");
        if let Some(nonce) = claims.get("nonce") {
            assert_eq!(nonce, NONCE, "{claims}");
        }
        true
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let issuer_key = SigningKey::from_bytes(&[42; 32]);
    let rsa = PublicKey::from_openssh(include_str!("../../../tests/fixtures/keys/rsa2048.pub"))
        .expect("fixture key");
    let KeyData::Rsa(rsa) = rsa.key_data() else {
        panic!("rsa2048.pub is not an RSA key");
    };
    let ecdsa = PrivateKey::random(
        &mut rand_core::OsRng,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    )
    .expect("P-256 key");
    let Some(ssh_key::public::EcdsaPublicKey::NistP256(point)) =
        ecdsa.public_key().key_data().ecdsa()
    else {
        panic!("not a P-256 key");
    };
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": ED25519_KID,
         "x": b64(issuer_key.verifying_key().as_bytes())},
        {"kty": "RSA", "alg": "RS256", "kid": "rsa",
         "n": b64(rsa.n.as_positive_bytes().expect("modulus")),
         "e": b64(rsa.e.as_positive_bytes().expect("exponent"))},
        {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ec",
         "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))},
    ]});
    // The CA's own config parser, so the issuer is configured as an operator
    // would configure it.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("ca.toml");
    let config = format!(
        "listen = \"127.0.0.1:8443\"\ndata_dir = \"data\"\npolicy_dir = \"policies\"\n\n\
         [[oidc]]\nname = \"fuzz\"\nissuer = \"{ISSUER}\"\nclient_id = \"{CLIENT_ID}\"\n"
    );
    std::fs::write(&path, config).expect("config file");
    let config = Config::load(&path).expect("config");
    // A key set refetch (on an unknown `kid`, at most every 30 s) goes to a
    // loopback port nobody listens on, and fails at once.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let verifier = runtime.block_on(async {
        TokenVerifier::with_known_issuer(
            config.issuers[0].clone(),
            format!("http://127.0.0.1:{closed_port}/jwks"),
            jwks.to_string().as_bytes(),
            Duration::from_secs(LEEWAY),
            reqwest::Client::new(),
            &Metrics::new(),
        )
        .expect("verifier")
    });
    Fixture {
        runtime,
        verifier,
        issuer_key,
    }
});
