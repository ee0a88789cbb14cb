//! End-to-end: what an operator relies on. Metrics count what happened, every
//! request has an id in its logs, logs never hold a secret even at trace
//! level, one flooding identity is limited without slowing others, and
//! SIGTERM in the middle of a load loses no record.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ca_client::{nonce_for, CaClient, ClientError};
use e2e::*;
use ssh_key::{Algorithm, PrivateKey};

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap()
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
        .get(format!("{}/metrics", ca.url))
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
    let log = ca.process.stderr.text();
    let issued = log
        .lines()
        .find(|l| l.contains("issued user certificate"))
        .unwrap();
    assert!(issued.contains("request{id="), "{issued}");
    assert!(issued.contains("identity=alice@corp"), "{issued}");
    assert!(issued.contains("serial="), "{issued}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens_keys_or_the_passphrase() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    // Trace level, as JSON: the most a log pipeline could ever see.
    let ca = setup
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
    // A replay and a tampered token go through the error paths.
    let _ = client
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await;
    let tampered = format!("{}x", tokens.id_token);
    let _ = client
        .request_user_certificate(&tampered, &key, &[], None)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = ca.process.stderr.text();
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "not all JSON:\n{log}"
    );
    let signature = tokens.id_token.rsplit('.').next().unwrap();
    let payload = tokens.id_token.split('.').nth(1).unwrap();
    let subject_pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
    let subject_secret_line = subject_pem.lines().nth(1).unwrap();
    let ca_key = std::fs::read_to_string(setup.data_dir.join("keys/user-ca-1")).unwrap();
    for (what, secret) in [
        ("ID token signature", signature),
        ("ID token payload", payload),
        ("passphrase", PASSPHRASE),
        ("subject private key", subject_secret_line),
        ("CA key file", ca_key.lines().nth(1).unwrap()),
    ] {
        assert!(!log.contains(secret), "{what} leaked into the log");
    }
    assert!(log.contains("issued user certificate"));
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
