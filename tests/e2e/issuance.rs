//! End-to-end: real ID tokens from a real OpenID provider become certificates
//! that real OpenSSH accepts, every bad input is refused without side effects,
//! and every certificate handed out is on record even if the CA is killed.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_client::{nonce_for, sign_proof, CaClient, ClientError};
use ca_proto::UserCertRequest;
use e2e::*;
use serde_json::Value;
use ssh_key::PrivateKey;

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures/keys").join(name)
}

fn refused_code(result: Result<ca_proto::UserCertResponse, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn issued_count(setup: &CaSetup) -> usize {
    setup
        .audit(&[])
        .iter()
        .filter(|e| e["event"] == "issued")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_tokens_get_certificates_that_openssh_accepts() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();

    // The published CA keys are what a host puts in TrustedUserCAKeys.
    let config = client.config().await.unwrap();
    assert_eq!(config.issuers[0].issuer, idp.issuer);
    assert_eq!(config.issuers[0].client_id, "jit-ssh");
    let user_ca = http_client()
        .get(format!("{}/v1/ca/user.pub", ca.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(user_ca.trim(), config.user_ca_keys[0]);
    let host_ca = http_client()
        .get(format!("{}/v1/ca/host.pub", ca.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(user_ca, host_ca);

    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = ssh_keygen(dir.path(), "alice", &["-t", "ed25519"]);
    let tokens = idp
        .login("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()));
    let issued = client
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", ca.process.stderr.text()));
    assert_eq!(issued.principals, ["alice"]);
    let lifetime = issued.valid_before - issued.valid_after;
    assert_eq!(lifetime, 300 + 60, "default 5m plus 60s backdate");
    let cert_path = write_certificate(dir.path(), &key_path, &issued.certificate);

    let listing = ssh_keygen_list(&cert_path);
    assert!(listing.contains("user certificate"), "{listing}");
    assert!(
        listing.contains(&format!("Serial: {}", issued.serial)),
        "{listing}"
    );
    assert!(listing.contains("user=alice issuer=corp"), "{listing}");
    assert!(listing.contains("permit-pty"), "{listing}");
    assert!(!listing.contains("forever"), "{listing}");

    // A real sshd trusting the CA lets alice in, and only as a principal she carries.
    let sshd = Sshd::start(&user_ca, &["alice"]);
    let (ok, err) = sshd.login(&key_path, &cert_path);
    assert!(ok, "sshd refused alice: {err}\n{}", sshd.log());
    assert!(sshd.log().contains(&format!("serial {}", issued.serial)));

    let only_bob = Sshd::start(&user_ca, &["bob"]);
    let (ok, _) = only_bob.login(&key_path, &cert_path);
    assert!(
        !ok,
        "sshd must refuse a principal the certificate does not carry"
    );

    // A certificate from another CA is refused by the same sshd.
    let other_ca = Sshd::start(&host_ca, &["alice"]);
    assert!(!other_ca.login(&key_path, &cert_path).0);

    // Short TTL: accepted now, refused once expired.
    let (short_path, short_key) = ssh_keygen(dir.path(), "short", &["-t", "ed25519"]);
    let tokens = idp
        .login("alice", "jit-ssh", Some(&nonce_for(&short_key).unwrap()))
        .await
        .unwrap();
    let short = client
        .request_user_certificate(
            &tokens.id_token,
            &short_key,
            &["alice".into()],
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert!(short.valid_before <= now() + 2);
    let short_cert = write_certificate(dir.path(), &short_path, &short.certificate);
    let (ok, err) = sshd.login(&short_path, &short_cert);
    assert!(ok, "fresh short certificate refused: {err}");
    // Waits, on purpose, for the certificate's lifetime to run out (plus a
    // second of clock granularity on each side).
    let wait = short.valid_before.saturating_sub(now()) + 2;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (ok, _) = sshd.login(&short_path, &short_cert);
    assert!(!ok, "sshd accepted an expired certificate");
    assert!(sshd.log().contains("expired"), "{}", sshd.log());

    // Every certificate returned is on record.
    let audit = setup.audit(&["--identity", "alice"]);
    let serials: Vec<&str> = audit.iter().filter_map(|e| e["serial"].as_str()).collect();
    assert_eq!(serials, [issued.serial.as_str(), short.serial.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_algorithm_of_the_idp_is_verified_against_its_jwks() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let claims = idp.claims("bob", "jit-ssh", Some(&nonce_for(&key).unwrap()), now());
        let token = idp.sign(alg, &claims);
        let issued = client
            .request_user_certificate(&token, &key, &[], None)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(issued.principals, ["bob"], "{alg}");
    }
    // Subject keys of the other accepted types, with proofs made by real
    // OpenSSH (`ssh-keygen -Y sign`).
    let http = http_client();
    for name in ["rsa2048", "ecdsa521"] {
        let public_line = std::fs::read_to_string(fixture(&format!("{name}.pub"))).unwrap();
        let public = ssh_key::PublicKey::from_openssh(public_line.trim()).unwrap();
        let blob = public.to_bytes().unwrap();
        let claims = idp.claims(
            "carol",
            "jit-ssh",
            Some(&ca_proto::nonce_for_key(&blob)),
            now(),
        );
        let token = idp.sign("RS256", &claims);
        let proof = ssh_keygen_sign(
            &fixture(name),
            ca_proto::PROOF_NAMESPACE,
            &ca_proto::proof_message(&token, &blob),
        );
        let request = UserCertRequest {
            public_key: public_line,
            principals: vec![],
            ttl: None,
            proof,
        };
        let response = http
            .post(format!("{}/v1/certs/user", ca.url))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{name}: {}",
            response.text().await.unwrap()
        );
        let issued: ca_proto::UserCertResponse = response.json().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = write_certificate(dir.path(), &fixture(name), &issued.certificate);
        let listing = ssh_keygen_list(&cert);
        assert!(
            listing.lines().any(|l| l.trim() == "carol"),
            "{name}: {listing}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_and_change_nothing() {
    let idp = Idp::start();
    let untrusted = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let nonce = nonce_for(&key).unwrap();
    let t = now();

    let mut cases: Vec<(&str, String)> = Vec::new();
    // A real token from another (untrusted) provider.
    let foreign = untrusted
        .login("alice", "jit-ssh", Some(&nonce))
        .await
        .unwrap();
    cases.push(("untrusted issuer", foreign.id_token));
    // A real token issued to another client.
    let other_app = idp.login("alice", "other-app", Some(&nonce)).await.unwrap();
    cases.push(("wrong audience", other_app.id_token));
    // Signed by the real issuer key, but expired beyond the 60 s leeway.
    let mut expired = idp.claims("alice", "jit-ssh", Some(&nonce), t - 4000);
    expired["exp"] = Value::from(t - 61);
    cases.push(("expired", idp.sign("RS256", &expired)));
    // Not valid yet, and issued in the future.
    let mut future = idp.claims("alice", "jit-ssh", Some(&nonce), t);
    future["nbf"] = Value::from(t + 600);
    cases.push(("nbf in future", idp.sign("RS256", &future)));
    let future_iat = idp.claims("alice", "jit-ssh", Some(&nonce), t + 600);
    cases.push(("iat in future", idp.sign("ES256", &future_iat)));
    // Claims an issuer it is not signed by.
    let mut wrong_iss = idp.claims("alice", "jit-ssh", Some(&nonce), t);
    wrong_iss["iss"] = Value::from(untrusted.issuer.clone());
    cases.push(("iss of another provider", idp.sign("RS256", &wrong_iss)));
    // Several audiences without azp.
    let mut multi_aud = idp.claims("alice", "jit-ssh", Some(&nonce), t);
    multi_aud["aud"] = serde_json::json!(["jit-ssh", "other-app"]);
    cases.push(("several audiences, no azp", idp.sign("RS256", &multi_aud)));
    // An authorized party that is another client.
    let mut other_azp = idp.claims("alice", "jit-ssh", Some(&nonce), t);
    other_azp["azp"] = Value::from("other-app");
    cases.push(("azp of another client", idp.sign("RS256", &other_azp)));
    // Signed, but missing a claim the CA requires.
    for claim in ["exp", "aud", "sub"] {
        let mut missing = idp.claims("alice", "jit-ssh", Some(&nonce), t);
        missing.as_object_mut().unwrap().remove(claim);
        cases.push((claim, idp.sign("RS256", &missing)));
    }
    // Signed, but longer than any ID token the CA reads (16 KiB).
    let mut huge = idp.claims("alice", "jit-ssh", Some(&nonce), t);
    huge["padding"] = Value::from("x".repeat(17 * 1024));
    cases.push(("oversized", idp.sign("RS256", &huge)));
    // Nonce minted for another key.
    let other_key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let wrong_nonce = idp.claims("alice", "jit-ssh", Some(&nonce_for(&other_key).unwrap()), t);
    cases.push(("nonce of another key", idp.sign("RS256", &wrong_nonce)));
    // A real token with its payload changed (alice -> root) after signing.
    let real = idp
        .login("alice", "jit-ssh", Some(&nonce))
        .await
        .unwrap()
        .id_token;
    let parts: Vec<&str> = real.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["preferred_username"] = Value::from("root");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    cases.push(("tampered payload", tampered));
    // alg none, with and without a signature part.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims_b64 = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&idp.claims("alice", "jit-ssh", Some(&nonce), t)).unwrap());
    cases.push(("alg none", format!("{none_header}.{claims_b64}.")));
    // HS256 keyed with the issuer's public JWKS (the classic confusion attack).
    let jwks = http_client()
        .get(format!("{}/jwks", idp.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &idp.claims("alice", "jit-ssh", Some(&nonce), t),
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    cases.push(("HS256", hs));
    // A made-up kid.
    let mut unknown_kid = idp.sign("RS256", &idp.claims("alice", "jit-ssh", Some(&nonce), t));
    let mut header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(unknown_kid.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"] = Value::from("no-such-kid");
    let rest: Vec<&str> = unknown_kid.splitn(2, '.').collect();
    unknown_kid = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        rest[1]
    );
    cases.push(("unknown kid", unknown_kid));
    cases.push(("garbage", "not-a-jwt".into()));

    for (name, token) in &cases {
        let (status, code) = refused_code(
            client
                .request_user_certificate(token, &key, &[], None)
                .await,
        );
        assert_eq!((status, code.as_str()), (401, "invalid_token"), "{name}");
    }
    assert_eq!(issued_count(&setup), 0, "a refused token must not issue");

    // A real token works once: sent again for the same key it is a retry,
    // answered with the same certificate (issue 16 item 5), never a second.
    let first = client
        .request_user_certificate(&real, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(first.principals, ["alice"]);
    let again = client
        .request_user_certificate(&real, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(
        (again.serial, again.certificate),
        (first.serial.clone(), first.certificate.clone())
    );
    assert_eq!(issued_count(&setup), 1, "a retry issues nothing");
    // Even for a different key (its nonce would not match either).
    let (status, _) = refused_code(
        client
            .request_user_certificate(&real, &other_key, &[], None)
            .await,
    );
    assert_eq!(status, 401);

    // Asking for a principal nobody granted: 403 naming it, and on record.
    let token = idp
        .login("alice", "jit-ssh", Some(&nonce))
        .await
        .unwrap()
        .id_token;
    let refused = client
        .request_user_certificate(&token, &key, &["root".into()], None)
        .await;
    match refused {
        Err(ClientError::Refused {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (403, "denied"));
            assert!(message.contains("\"root\""), "{message}");
        }
        other => panic!("root must be denied: {other:?}"),
    }
    let audit = setup.audit(&[]);
    let events: Vec<&str> = audit.iter().map(|e| e["event"].as_str().unwrap()).collect();
    // The retry is on record as such, not as a second issuance.
    assert_eq!(events, ["issued", "retried", "denied"], "{audit:?}");
    // The CA log never contains a token.
    let log = ca.process.stderr.text();
    assert!(!log.contains(&real[..40]), "token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_proofs_and_bodies_are_refused() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let http = http_client();
    let url = format!("{}/v1/certs/user", ca.url);
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    // Bound to `key` by its nonce, as a person's token is: the issuer
    // requires one (docs/security.md, *Key binding*).
    let token = idp.sign(
        "RS256",
        &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );

    let post = |body: Value, bearer: Option<String>| {
        let mut request = http.post(&url).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let expect = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 10,
            "{body}"
        );
    };
    let body_for = |public_key: String| {
        serde_json::to_value(UserCertRequest {
            public_key,
            principals: vec![],
            ttl: None,
            proof: sign_proof(&key, &token).unwrap(),
        })
        .unwrap()
    };
    let fixture_line = |name: &str| std::fs::read_to_string(fixture(name)).unwrap();

    let cases = [
        (fixture_line("dsa.pub"), "weak_key"),
        (fixture_line("rsa1024.pub"), "weak_key"),
        // The identity point: a small-order Ed25519 key anyone can sign for.
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .to_string(),
            "weak_key",
        ),
        (fixture_line("certified-cert.pub"), "certificate_offered"),
        ("ssh-ed25519 AAAAnotbase64!!".to_string(), "invalid_key"),
        (String::new(), "invalid_key"),
    ];
    for (line, code) in cases {
        expect(
            post(body_for(line), Some(token.clone())).await.unwrap(),
            400,
            code,
        )
        .await;
    }
    let good_line = key.public_key().to_openssh().unwrap();
    // Unknown field.
    let mut unknown = body_for(good_line.clone());
    unknown["force_command"] = Value::from("/bin/sh");
    expect(
        post(unknown, Some(token.clone())).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // ttl 0 and a principal that is not a login name.
    let mut zero = body_for(good_line.clone());
    zero["ttl"] = Value::from(0);
    expect(
        post(zero, Some(token.clone())).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let mut bad_principal = body_for(good_line.clone());
    bad_principal["principals"] = serde_json::json!(["root; rm -rf /"]);
    expect(
        post(bad_principal, Some(token.clone())).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // No bearer token.
    expect(
        post(body_for(good_line.clone()), None).await.unwrap(),
        401,
        "missing_token",
    )
    .await;
    // Proof by another key / over another token.
    let other = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let mut stolen = body_for(good_line.clone());
    stolen["proof"] = Value::from(sign_proof(&other, &token).unwrap());
    expect(
        post(stolen, Some(token.clone())).await.unwrap(),
        401,
        "invalid_proof",
    )
    .await;
    let mut stale = body_for(good_line.clone());
    stale["proof"] = Value::from(sign_proof(&key, "another-token").unwrap());
    expect(
        post(stale, Some(token.clone())).await.unwrap(),
        401,
        "invalid_proof",
    )
    .await;
    // Oversized body. The CA answers 413 without reading it and closes that
    // connection, so this request gets a client of its own.
    let huge = http_client()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"public_key\":\"{}\"}}", "A".repeat(200 * 1024)))
        .send()
        .await
        .unwrap();
    expect(huge, 413, "body_too_large").await;
    // Malformed JSON.
    let malformed = http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect(malformed, 400, "invalid_request").await;
    let missing = http
        .get(format!("{}/v1/nope", ca.url))
        .send()
        .await
        .unwrap();
    expect(missing, 404, "not_found").await;

    assert_eq!(issued_count(&setup), 0);
    // The same token still works: none of the refusals spent it.
    let client = CaClient::new(&ca.url, None).unwrap();
    client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued_count(&setup), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_returned_certificate_survives_kill_9() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let mut ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let mut serials = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let token = idp.sign(
            "RS256",
            &idp.claims(user, "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
        );
        let issued = client
            .request_user_certificate(&token, &key, &[], None)
            .await
            .unwrap();
        serials.push(issued.serial);
    }
    // Killed right after the last response, with no chance to flush anything.
    ca.process.kill_hard();
    let recorded: Vec<String> = setup
        .audit(&[])
        .iter()
        .filter_map(|e| e["serial"].as_str().map(String::from))
        .collect();
    assert_eq!(recorded, serials);
    // And the restarted CA still refuses those tokens' replays: the spent
    // digests were committed with the certificates.
    let _ca = setup.start();
}

#[test]
fn startup_refuses_bad_setups_with_one_clear_line() {
    let idp = Idp::start();

    let corp = || CaSetup::builder().issuer("corp", &idp.issuer);

    let unknown_key = corp().top_level_line("max_ttl = \"5m\"").build();
    let err = unknown_key.expect_start_failure();
    assert!(err.contains("unknown field `max_ttl`"), "{err}");

    let loose = CaSetup::trusting(&idp);
    let key = loose.data_dir.join("keys/user-ca-1");
    let (status, _, err) = run(Command::new("chmod").arg("640").arg(&key), STARTUP).unwrap();
    assert!(status.success(), "{err}");
    let err = loose.expect_start_failure();
    assert!(err.contains("chmod 600"), "{err}");

    let wrong_pass = corp().passphrase_file("not the passphrase\n").build();
    let err = wrong_pass.expect_start_failure();
    assert!(err.contains("wrong passphrase"), "{err}");

    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let no_idp = CaSetup::builder().issuer("corp", &unreachable).build();
    let err = no_idp.expect_start_failure();
    assert!(err.contains("OpenID discovery for issuer corp"), "{err}");
    assert!(err.contains("after 2 attempts"), "{err}");

    let public = corp().listen("0.0.0.0:0").build();
    let err = public.expect_start_failure();
    assert!(err.contains("[tls]"), "{err}");

    for err in [
        unknown_key.expect_start_failure(),
        loose.expect_start_failure(),
    ] {
        let error_lines = err.lines().filter(|l| l.contains("error")).count();
        assert_eq!(error_lines, 1, "{err}");
    }

    // init refuses to overwrite existing keys.
    let (status, _, err) = run(
        Command::new(bin("jit-ssh-ca"))
            .args(["init", "--data-dir"])
            .arg(&loose.data_dir)
            .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE),
        STARTUP,
    )
    .unwrap();
    assert!(!status.success());
    assert!(err.contains("refusing to overwrite"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_rustls() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("corp", &idp.issuer).tls().build();
    let ca = setup.start();
    assert!(ca.url.starts_with("https://127.0.0.1:"), "{}", ca.url);
    let root = std::fs::read(setup.tls_root.as_ref().unwrap()).unwrap();
    let client = CaClient::new(&ca.url, Some(&root)).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let token = idp.sign(
        "EdDSA",
        &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );
    let issued = client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["alice"]);
    // Without the private root, the client refuses the server.
    let untrusting = CaClient::new(&ca.url, None).unwrap();
    assert!(matches!(
        untrusting.config().await,
        Err(ClientError::Tls { .. })
    ));
}

/// docs/api.md shows how to make the proof of possession with OpenSSH alone;
/// this runs that snippet exactly as printed, so the documentation cannot rot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_shell_proof_of_possession_works() {
    let api_doc = std::fs::read_to_string(repo_root().join("docs/api.md")).unwrap();
    let snippet = api_doc
        .split("With OpenSSH alone:")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/api.md has the OpenSSH proof snippet");
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = ssh_keygen(dir.path(), "key", &["-t", "ed25519"]);
    let token = idp.sign(
        "RS256",
        &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );
    let (status, _, err) = run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", snippet])
            .current_dir(dir.path())
            .env("TOKEN", &token),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(status.success(), "the documented snippet failed: {err}");
    let proof = std::fs::read_to_string(dir.path().join("message.sig")).unwrap();
    let response = http_client()
        .post(format!("{}/v1/certs/user", ca.url))
        .bearer_auth(&token)
        .json(&UserCertRequest {
            public_key: std::fs::read_to_string(dir.path().join("key.pub")).unwrap(),
            principals: vec![],
            ttl: None,
            proof,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}
