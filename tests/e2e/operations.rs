//! End-to-end: what an operator relies on. Metrics count what happened and
//! are served on their own listener only, every request has an id in its
//! logs, logs never hold a secret even at trace level, one flooding identity
//! is limited without slowing others, and SIGTERM in the middle of a load
//! loses no record.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ca_client::{nonce_for, CaClient, ClientError};
use e2e::*;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap()
}

/// The status and stable error code of a refusal, as the client sees them.
#[track_caller]
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A secret the CA must never log, and the strings that betray it.
struct Secret {
    name: String,
    /// The secret as a careless log line would hold it.
    as_logged: String,
    /// Substrings of any rendering of it, each long and distinctive enough
    /// to appear in a log only if the secret does.
    needles: Vec<String>,
}

impl Secret {
    /// A secret that is logged, if ever, as it is (the passphrase).
    fn text(name: &str, value: &str) -> Secret {
        Secret {
            name: name.into(),
            as_logged: value.into(),
            needles: vec![value.into()],
        }
    }

    /// A JWT: the whole token, and its payload and signature apart (the
    /// header is the same in every token of the IdP's key, so it says
    /// nothing).
    fn token(name: &str, token: &str) -> Secret {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        Secret {
            name: name.into(),
            as_logged: token.into(),
            needles: vec![token.into(), parts[1].into(), parts[2].into()],
        }
    }

    /// A private key: the lines of its OpenSSH PEM body that carry key
    /// material, and for Ed25519 its 32-byte secret in hex and base64.
    fn private_key(name: &str, key: &PrivateKey) -> Secret {
        let pem = key.to_openssh(LineEnding::LF).unwrap().to_string();
        let other = PrivateKey::random(&mut rand_core::OsRng, key.algorithm()).unwrap();
        let mut needles = distinctive_lines(&pem, &other.to_openssh(LineEnding::LF).unwrap());
        if let Some(pair) = key.key_data().ed25519() {
            let secret = pair.private.to_bytes();
            needles.push(secret.iter().map(|b| format!("{b:02x}")).collect());
            needles.push(STANDARD_NO_PAD.encode(secret));
            needles.push(URL_SAFE_NO_PAD.encode(secret));
        }
        Secret {
            name: name.into(),
            as_logged: pem,
            needles,
        }
    }

    /// A passphrase-protected key file as stored: the lines of its body
    /// that carry this key's salt and ciphertext.
    fn encrypted_key_file(name: &str, text: &str) -> Secret {
        let other = new_key()
            .encrypt(&mut rand_core::OsRng, "another passphrase")
            .unwrap();
        Secret {
            name: name.into(),
            as_logged: text.into(),
            needles: distinctive_lines(text, &other.to_openssh(LineEnding::LF).unwrap()),
        }
    }
}

/// The body lines of the PEM `pem` that `other`, a PEM of the same kind,
/// does not share. A line every such PEM has (the format's preamble) is no
/// evidence of this one, so it is left out.
fn distinctive_lines(pem: &str, other: &str) -> Vec<String> {
    let lines: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !other.contains(*l))
        .map(String::from)
        .collect();
    assert!(lines.len() >= 2, "too few distinctive lines in\n{pem}");
    lines
}

/// The names of the `secrets` that `log` betrays.
fn leaked<'a>(secrets: &'a [Secret], log: &str) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| s.needles.iter().any(|n| log.contains(n.as_str())))
        .map(|s| s.name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_request_ids_describe_what_happened() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = new_key();
    let token = idp.sign(
        "RS256",
        &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );
    client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap();
    let refused = client
        .request_user_certificate("not-a-token", &key, &[], None)
        .await;
    assert!(matches!(
        refused,
        Err(ClientError::Refused { status: 401, .. })
    ));

    let http = http_client();
    let metrics = http
        .get(format!("{}/metrics", ca.metrics_url))
        .send()
        .await
        .unwrap();
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    for expected in [
        "jit_ssh_ca_certificates_issued_total 1",
        "jit_ssh_ca_requests_refused_total{code=\"invalid_token\"} 1",
        "jit_ssh_ca_jwks_fetches_total{issuer=\"corp\",result=\"ok\"} 1",
        "jit_ssh_ca_db_commit_duration_seconds_count",
        "jit_ssh_ca_request_duration_seconds_bucket{route=\"/v1/certs/user\",status=\"200\"",
        "jit_ssh_ca_build_info{version=",
    ] {
        assert!(text.contains(expected), "metrics lack {expected}:\n{text}");
    }

    // A plain request id is echoed; anything else is replaced.
    let echoed = http
        .get(format!("{}/readyz", ca.url))
        .header("x-request-id", "deploy-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.headers()["x-request-id"], "deploy-42");
    let replaced = http
        .get(format!("{}/healthz", ca.url))
        .header("x-request-id", "evil\tinjection with spaces")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 16, "{id}");
    // An online backup while the CA runs holds the issuance.
    let backup = setup.dir.path().join("backup.db");
    let (status, out, err) = setup.cli(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(status.success(), "{err}");
    assert!(out.contains("(1 certificates)"), "{out}");
    // The issuance log line carries its request id, serial and identity.
    // The log is written in batches: the line may follow the answer by a moment.
    let issued = ca
        .process
        .stderr
        .wait_for("issued user certificate", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", ca.process.stderr.text()));
    assert!(issued.contains("request{id="), "{issued}");
    assert!(issued.contains("identity=alice@corp"), "{issued}");
    assert!(issued.contains("serial="), "{issued}");
}

/// Metrics name the issuers and count issuances and refusals: the API's
/// listener does not serve them; the monitoring listener (`metrics_listen`)
/// does, with the health and readiness probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_metrics_listener_not_the_api() {
    let idp = Idp::start();
    let ca = CaSetup::trusting(&idp).start();
    let http = http_client();
    let public = http
        .get(format!("{}/metrics", ca.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let body = public.text().await.unwrap();
    assert!(body.contains("\"not_found\""), "{body}");
    assert!(!body.contains("jit_ssh_ca_"), "{body}");

    assert_ne!(ca.metrics_url, ca.url);
    let scraped = http
        .get(format!("{}/metrics", ca.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("jit_ssh_ca_build_info{version="), "{text}");
    for probe in ["/healthz", "/readyz"] {
        let answer = http
            .get(format!("{}{probe}", ca.metrics_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{probe}");
    }
    // The API stays on its own listener.
    let config = http
        .get(format!("{}/v1/config", ca.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens_keys_or_the_passphrase() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    // Trace level, as JSON: the most a log pipeline could ever see.
    let mut ca = setup
        .try_start_with(&["--log-format", "json"], "trace")
        .unwrap_or_else(|(e, log)| panic!("{e}\n{log}"));
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = new_key();
    let tokens = idp
        .login("bob", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap();
    client
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await
        .unwrap();
    // A retry (the spent token for the same key) goes through its own path;
    // a replay (the spent token for an access request) and a tampered token
    // go through the error paths, and are refused as such.
    client
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await
        .unwrap();
    let (status, replayed) = ca
        .call(
            "/v1/requests",
            Some(&tokens.id_token),
            Some(serde_json::json!({"principals": ["root"], "reason": "x"})),
        )
        .await;
    assert_eq!(
        (status, replayed["error"]["code"].as_str()),
        (401, Some("replayed_token"))
    );
    let tampered = format!("{}x", tokens.id_token);
    let refused = client
        .request_user_certificate(&tampered, &key, &[], None)
        .await;
    assert_eq!(refusal(refused), (401, "invalid_token".into()));

    // The whole log, shutdown included: the CA stopped and its output closed.
    ca.process.terminate();
    let status = ca.process.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "SIGTERM must end in exit 0, got {status}");
    ca.process.stderr.wait_closed(STARTUP).unwrap();
    let log = ca.process.stderr.text();
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "not all JSON:\n{log}"
    );
    assert!(log.contains("issued user certificate"));

    let mut secrets = vec![
        Secret::token("ID token", &tokens.id_token),
        Secret::token("tampered ID token", &tampered),
        Secret::text("passphrase", PASSPHRASE),
        Secret::private_key("subject private key", &key),
    ];
    for name in ["user-ca-1", "host-ca-1"] {
        let file = std::fs::read_to_string(setup.data_dir.join("keys").join(name)).unwrap();
        let ca_key = PrivateKey::from_openssh(&file)
            .unwrap()
            .decrypt(PASSPHRASE)
            .unwrap();
        secrets.push(Secret::encrypted_key_file(
            &format!("CA key file {name}"),
            &file,
        ));
        secrets.push(Secret::private_key(&format!("CA key {name}"), &ca_key));
    }
    // The search is not blind: each secret, written into a log line as a
    // careless `tracing` field would write it, is found.
    for secret in &secrets {
        for needle in &secret.needles {
            assert!(
                needle.len() >= 16,
                "{}: {needle:?} is too short",
                secret.name
            );
        }
        let line = serde_json::json!({ "fields": { "value": secret.as_logged } }).to_string();
        let found = leaked(&secrets, &line);
        assert!(found.contains(&secret.name.as_str()), "{found:?} in {line}");
    }
    let found = leaked(&secrets, &log);
    assert!(found.is_empty(), "leaked into the log: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_identity_is_limited_without_slowing_others() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .rate_limit_per_identity(5)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let mut limited = None;
    for _ in 0..8 {
        let key = new_key();
        let token = idp.sign(
            "RS256",
            &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
        );
        if let Err(e) = client
            .request_user_certificate(&token, &key, &[], None)
            .await
        {
            limited = Some(e);
            break;
        }
    }
    match limited {
        Some(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (429, "rate_limited"));
        }
        other => panic!("alice should be limited after 5 requests: {other:?}"),
    }
    // The raw response carries Retry-After.
    let key = new_key();
    let token = idp.sign(
        "RS256",
        &idp.claims("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );
    let response = http_client()
        .post(format!("{}/v1/certs/user", ca.url))
        .bearer_auth(&token)
        .json(&ca_proto::UserCertRequest {
            public_key: key.public_key().to_openssh().unwrap(),
            principals: vec![],
            ttl: None,
            proof: ca_client::sign_proof(&key, &token).unwrap(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Bob is unaffected, and alice's refused tokens were not spent.
    let key = new_key();
    let token = idp.sign(
        "RS256",
        &idp.claims("bob", "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
    );
    let started = std::time::Instant::now();
    client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_record() {
    let idp = Arc::new(Idp::start());
    let setup = CaSetup::trusting(&idp);
    let mut ca = setup.start();
    let url = ca.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (idp, url, stop, issued) = (idp.clone(), url.clone(), stop.clone(), issued.clone());
        workers.push(tokio::spawn(async move {
            let client = CaClient::new(&url, None).unwrap();
            let mut serials = Vec::new();
            let user = format!("user{worker}");
            // Bounded: at most 2,000 requests per worker.
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = new_key();
                let token = idp.sign(
                    "EdDSA",
                    &idp.claims(&user, "jit-ssh", Some(&nonce_for(&key).unwrap()), now()),
                );
                match client
                    .request_user_certificate(&token, &key, &[], None)
                    .await
                {
                    Ok(certificate) => {
                        serials.push(certificate.serial);
                        issued.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(ClientError::Refused { code, .. }) if code == "rate_limited" => {
                        // Backs off, as a client told 429 would, to keep
                        // the load up without spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => break, // the server is going away
                }
            }
            serials
        }));
    }
    // SIGTERM only once the load is established.
    eventually_async(Duration::from_secs(30), || async {
        match issued.load(Ordering::Relaxed) {
            n if n >= 20 => Ok(()),
            n => Err(format!("{n} certificates issued so far")),
        }
    })
    .await;
    let ready = http_client()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    ca.process.terminate();
    let status = ca.process.wait_exit(Duration::from_secs(20)).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "SIGTERM must end in exit 0, got {status}");
    let mut received = Vec::new();
    for worker in workers {
        received.extend(worker.await.unwrap());
    }
    assert!(
        !received.is_empty(),
        "no certificate was issued before SIGTERM"
    );
    let recorded: std::collections::HashSet<String> = setup
        .audit(&[])
        .iter()
        .filter_map(|e| e["serial"].as_str().map(String::from))
        .collect();
    for serial in &received {
        assert!(
            recorded.contains(serial),
            "certificate {serial} was returned but not recorded"
        );
    }
    assert!(ca.process.stderr.text().contains("shutting down"));
}
