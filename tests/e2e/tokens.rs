//! End-to-end: which ID tokens buy an act, with real tokens from the real
//! test IdP and the real CA. A token is spent by what its issuer signed, so
//! no other spelling of a spent token (the ECDSA twin `(r, n - s)`, or a
//! re-encoded signature) buys a second certificate or a second admin act;
//! an access token (`typ: at+jwt`) is never taken for an ID token; and a key
//! the provider withdraws stops being trusted once the CA refetches the key
//! set, on its schedule.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_client::{nonce_for, CaClient};
use ca_proto::UserCertResponse;
use e2e::jws::{ecdsa_twin, re_encodings};
use e2e::*;
use serde_json::{json, Value};
use ssh_key::PrivateKey;

const ADMIN_RULE: &str =
    "[[admin]]\nname = \"test-admins\"\n[admin.match]\ngroups_any = [\"sre-leads\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_a_spent_tokens_other_spellings_buy_nothing() {
    other_spellings_buy_nothing("RS256", "jit-ssh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_a_spent_tokens_twin_is_refused_as_replayed() {
    other_spellings_buy_nothing("ES256", "jit-ssh-es256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es384_a_spent_tokens_twin_is_refused_as_replayed() {
    other_spellings_buy_nothing("ES384", "jit-ssh-es384").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_a_spent_tokens_other_spellings_buy_nothing() {
    other_spellings_buy_nothing("EdDSA", "jit-ssh-eddsa").await;
}

/// Spends a real `alg` token of the IdP's `client_id` on a certificate and
/// another on a revocation, then presents every other spelling of each: to
/// certify the same key again (with a proof made for that spelling) and to
/// lift the revocation. Nothing more is issued or lifted: a spelling that
/// verifies is the same token, so for the same key it is a retry and gets
/// the very certificate already issued (issue 16 item 5), and for the lift
/// it is refused as replayed; every other spelling is refused.
async fn other_spellings_buy_nothing(alg: &str, client_id: &str) {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer_for_client("corp", &idp.issuer, client_id)
        .policy_file("admins.toml", ADMIN_RULE)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();

    // Issuance: alice's token, bound to her key, buys one certificate.
    let token = login(&idp, "alice", client_id, Some(&nonce_for(&key).unwrap())).await;
    let jwk = issuer_key(&idp, &token).await;
    assert_eq!(header(&token)["alg"], alg);
    let first = client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{alg}: {e}\n{}", ca.process.stderr.text()));
    for (spelling, other, replay) in spellings(&token, alg, &jwk) {
        let result = client
            .request_user_certificate(&other, &key, &[], None)
            .await;
        if replay {
            let again = result.unwrap_or_else(|e| panic!("{alg}: {spelling}: {e}"));
            assert_eq!(
                (again.serial, again.certificate),
                (first.serial.clone(), first.certificate.clone()),
                "{alg}: {spelling} buys no second certificate"
            );
            continue;
        }
        let (status, code, _) = refusal(result);
        assert_refused(alg, spelling, replay, (status, code));
    }
    let issued = setup.audit(&["--identity", "alice"]);
    let issued = issued.iter().filter(|e| e["event"] == "issued").count();
    assert_eq!(issued, 1, "{alg}: one token, one certificate");

    // Admin: carol's token buys one revocation; no spelling of it lifts it.
    let revoked = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let target = json!({
        "key_fingerprint": revoked.public_key().fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        "reason": "test",
    });
    let carol = login(&idp, "carol", client_id, None).await;
    let (status, body) = post(&ca, "/v1/revocations", &carol, &target).await;
    assert_eq!(status, 200, "{alg}: {body}");
    for (spelling, other, replay) in spellings(&carol, alg, &jwk) {
        let (status, body) = post(&ca, "/v1/revocations/lift", &other, &target).await;
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_refused(alg, spelling, replay, (status, code));
    }
    let lifted = setup.audit(&[]);
    assert!(
        lifted.iter().all(|e| e["event"] != "unrevoked"),
        "{alg}: a spelling of a spent token lifted the revocation"
    );
    // The revocation is still in place: a fresh token of carol's lifts it.
    let fresh = login(&idp, "carol", client_id, None).await;
    let (status, body) = post(&ca, "/v1/revocations/lift", &fresh, &target).await;
    assert_eq!(status, 200, "{alg}: {body}");
}

/// Other spellings of the spent `token`: the same bytes again and, for
/// ECDSA, the twin `(r, n - s)`, both of which verify and so must be
/// refused as replayed (`true`); then the re-encodings a strict decoder
/// refuses outright (`false`), which must not buy anything either.
fn spellings(token: &str, alg: &str, jwk: &Value) -> Vec<(&'static str, String, bool)> {
    let mut spellings = vec![("the same bytes", token.to_string(), true)];
    if alg.starts_with("ES") {
        let twin = ecdsa_twin(token);
        assert_ne!(twin, token);
        assert!(verifies(&twin, alg, jwk), "the (r, n - s) twin verifies");
        spellings.push(("the (r, n - s) twin", twin, true));
    }
    for (spelling, other) in re_encodings(token, alg, jwk) {
        assert!(!verifies(&other, alg, jwk), "{spelling} is not a valid JWS");
        spellings.push((spelling, other, false));
    }
    spellings
}

/// A spelling that verifies is refused as `replayed_token`; one that does
/// not may be refused as an invalid token or as a replay, but refused.
fn assert_refused(alg: &str, spelling: &str, replay: bool, (status, code): (u16, String)) {
    if replay {
        assert_eq!(
            (status, code.as_str()),
            (401, "replayed_token"),
            "{alg}: {spelling}"
        );
    } else {
        assert!(
            status == 401 && (code == "invalid_token" || code == "replayed_token"),
            "{alg}: {spelling}: {status} {code}"
        );
    }
}

/// Whether `token` verifies with `jwk` by jsonwebtoken's own check: a
/// verifier independent of the CA's, so the twins' validity is a fact of
/// the algorithm, not of the code under test.
fn verifies(token: &str, alg: &str, jwk: &Value) -> bool {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let alg: jsonwebtoken::Algorithm = alg.parse().unwrap();
    jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_are_refused_as_id_tokens() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy_file("admins.toml", ADMIN_RULE)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let claims = idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now());
    // RFC 9068 access tokens, signed by the IdP's real key with claims that
    // are otherwise a valid ID token's; media types compare without case.
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/At+JWT",
    ] {
        let token = idp.sign_with_typ("RS256", Some(typ), &claims);
        let result = client
            .request_user_certificate(&token, &key, &[], None)
            .await;
        let (status, code, message) = refusal(result);
        assert_eq!((status, code.as_str()), (401, "invalid_token"), "{typ}");
        assert!(message.contains("access token"), "{typ}: {message}");
        let carol = idp.claims("carol", "jit-ssh", None, now());
        let token = idp.sign_with_typ("ES256", Some(typ), &carol);
        let target = json!({"identity": "alice@corp", "reason": "test"});
        let (status, body) = post(&ca, "/v1/revocations", &token, &target).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("invalid_token")),
            "{typ}: {body}"
        );
    }
    assert!(
        setup.audit(&[]).is_empty(),
        "an access token changed something"
    );
    // The same claims as an ID token (typ JWT, or none) are fine.
    for typ in [Some("JWT"), None] {
        let token = idp.sign_with_typ("RS256", typ, &claims);
        let issued = client
            .request_user_certificate(&token, &key, &[], None)
            .await;
        assert_eq!(issued.unwrap().principals, ["alice"], "{typ:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_withdraws_stops_being_trusted_at_the_next_refresh() {
    let idp = Idp::start();
    // The provider sends no Cache-Control on its JWKS, so the CA would
    // refetch it hourly; this CA, trusting only a loopback provider, may
    // refetch every second instead.
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .top_level_line("jwks_refresh_min = \"1s\"")
        .top_level_line("jwks_refresh_max = \"1s\"")
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let nonce = nonce_for(&key).unwrap();
    let old_token = login(&idp, "alice", "jit-ssh", Some(&nonce)).await;
    let old_kid = header(&old_token)["kid"].as_str().unwrap().to_string();

    // The provider rotates: the same issuer, none of the old keys published.
    let port = idp.port();
    drop(idp);
    let idp = Idp::start_on(port);
    let new_kid = idp.key("RS256").kid.clone();
    assert_ne!(new_kid, old_kid);
    // The CA takes in the new set on its schedule, with no token asking.
    eventually_async(Duration::from_secs(30), || async {
        let log = ca.process.stderr.text();
        if log.contains(&new_kid) {
            Ok(())
        } else {
            Err("no refresh naming the new key in the CA's log")
        }
    })
    .await;
    let result = client
        .request_user_certificate(&old_token, &key, &[], None)
        .await;
    let (status, code, message) = refusal(result);
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    assert!(message.contains("does not publish"), "{message}");
    // The provider's new key is trusted.
    let new_token = login(&idp, "alice", "jit-ssh", Some(&nonce)).await;
    let issued: UserCertResponse = client
        .request_user_certificate(&new_token, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["alice"]);
}

/// A real ID token of `user` from `client_id`'s authorization-code flow.
async fn login(idp: &Idp, user: &str, client_id: &str, nonce: Option<&str>) -> String {
    idp.login(user, client_id, nonce)
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()))
        .id_token
}

/// The JOSE header of `token`.
fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The public JWK the IdP publishes for `token`'s `kid`.
async fn issuer_key(idp: &Idp, token: &str) -> Value {
    let jwks: Value = http_client()
        .get(format!("{}/jwks", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header(token)["kid"].clone();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"))
}

/// POSTs `body` to `path` with `token`; returns the status and JSON body.
async fn post(ca: &Ca, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}{path}", ca.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
