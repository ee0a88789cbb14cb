//! End-to-end: retries never lose a certificate or an access request. A
//! request sent again with the ID token that paid for a certificate, for
//! the same key, gets that certificate byte for byte (also after a restart
//! of the CA, and when the first answer was a 503 timeout that fired while
//! the database was still committing); with another key it is a replay.
//! A retried `POST /v1/requests` returns the request it created. Real
//! tokens from the test IdP, the real CA; the timeout is made real by
//! delaying the CA's fsyncs with strace, as a slow disk would.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use ca_client::{nonce_for, sign_proof, CaClient};
use e2e::*;
use serde_json::{json, Value};
use ssh_key::PrivateKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_same_certificate_also_after_a_restart_and_another_key_is_replayed() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .issuer_setting("require_nonce = false")
        .build();
    let ca = setup.start();
    let key = new_key();
    // Without a nonce, so that the token could certify any key: only the
    // spent token keeps it from certifying a second one.
    let token = login(&idp, "alice", None).await;
    let (status, first) = issue(&ca, &token, &key).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = issue(&ca, &token, &key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the same certificate, byte for byte");

    let other = new_key();
    let (status, refused) = issue(&ca, &token, &other).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("replayed_token")),
        "{refused}"
    );

    // A retry is not counted as an issuance.
    let metrics = http_client()
        .get(format!("{}/metrics", ca.metrics_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("jit_ssh_ca_certificates_issued_total 1\n"),
        "{metrics}"
    );

    drop(ca);
    let ca = setup.start();
    let (status, after_restart) = issue(&ca, &token, &key).await;
    assert_eq!(status, 200, "{after_restart}");
    assert_eq!(after_restart, first, "the same certificate after a restart");
    let (status, refused) = issue(&ca, &token, &other).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("replayed_token"))
    );

    let events = setup.audit(&["--identity", "alice"]);
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["serial"].as_str()))
        .collect();
    let serial = first["serial"].as_str();
    assert_eq!(
        kinds,
        [
            ("issued", serial),
            ("retried", serial),
            ("denied", None),
            ("retried", serial),
            ("denied", None)
        ],
        "one issuance, its retries, and the other key's refusals: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_access_request_returns_the_request_it_created() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let token = login(&idp, "bob", None).await;
    let body = json!({"principals": ["root"], "reason": "INC-7: disk full", "window_seconds": 600});
    let (status, created) = ca
        .call("/v1/requests", Some(&token), Some(body.clone()))
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, again) = ca
        .call("/v1/requests", Some(&token), Some(body.clone()))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["reason"], created["reason"]);
    // Reading with the spent token is refused as before: only the two
    // creates are idempotent.
    let (status, refused) = ca.call("/v1/requests", Some(&token), None).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("replayed_token"))
    );
    // A token spent on a certificate creates no request.
    let key = new_key();
    let spent = login(&idp, "bob", Some(&nonce_for(&key).unwrap())).await;
    let (status, issued) = issue(&ca, &spent, &key).await;
    assert_eq!(status, 200, "{issued}");
    let (status, refused) = ca.call("/v1/requests", Some(&spent), Some(body)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("replayed_token"))
    );

    let events = setup.audit(&["--identity", "bob"]);
    let created_events = events
        .iter()
        .filter(|e| e["event"] == "request_created")
        .count();
    let retried = events.iter().filter(|e| e["event"] == "retried").count();
    assert_eq!((created_events, retried), (1, 1), "{events:?}");
}

/// The case the reliability probe found: the database's fsync is slow, the
/// CA answers `503 timeout` while its writer still commits the certificate.
/// The retry with the same token gets that certificate; so does the client
/// library, which retries a 503 once by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_committed_after_a_timeout_is_returned_to_the_retry() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .top_level_line("request_timeout = \"1s\"")
        .build();
    let ca = setup.start();
    let key = new_key();
    let token = login(&idp, "alice", Some(&nonce_for(&key).unwrap())).await;

    let slow_disk = SlowDisk::attach(&ca, Duration::from_secs(3));
    let (status, timed_out) = issue(&ca, &token, &key).await;
    assert_eq!(
        (status, timed_out["error"]["code"].as_str()),
        (503, Some("timeout")),
        "{timed_out}"
    );
    // The writer commits once the slow fsync returns.
    let issued = eventually(Duration::from_secs(20), || {
        let events = setup.audit(&["--identity", "alice"]);
        match events.iter().find(|e| e["event"] == "issued") {
            Some(event) => Ok(event.clone()),
            None => Err(format!("not committed yet: {events:?}")),
        }
    });
    drop(slow_disk);
    let (status, retried) = issue(&ca, &token, &key).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["serial"], issued["serial"]);
    let certificate =
        ssh_key::Certificate::from_openssh(retried["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(certificate.public_key(), key.public_key().key_data());

    // The client library: the first answer is a 503 timeout, its one
    // retry (a second later) finds the certificate committed.
    let key = new_key();
    let token = login(&idp, "alice", Some(&nonce_for(&key).unwrap())).await;
    let slow_disk = SlowDisk::attach_first(&ca, Duration::from_millis(1500));
    let client = CaClient::new(&ca.url, None).unwrap();
    let answer = client
        .request_user_certificate(&token, &key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ca.process.stderr.text()));
    drop(slow_disk);
    let events = setup.audit(&["--identity", "alice"]);
    let on_record: Vec<_> = events
        .iter()
        .filter(|e| e["serial"].as_str() == Some(answer.serial.as_str()))
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(on_record, ["issued", "retried"], "{events:?}");
}

/// strace attached to the CA, delaying its fsyncs as a slow disk would;
/// detached when dropped.
struct SlowDisk(Running);

impl SlowDisk {
    /// Delays every fsync by `delay`.
    fn attach(ca: &Ca, delay: Duration) -> SlowDisk {
        SlowDisk::attach_when(ca, delay, "")
    }

    /// Delays only the first fsync of each of the CA's threads by `delay`.
    fn attach_first(ca: &Ca, delay: Duration) -> SlowDisk {
        SlowDisk::attach_when(ca, delay, ":when=1")
    }

    fn attach_when(ca: &Ca, delay: Duration, when: &str) -> SlowDisk {
        let inject = format!(
            "inject=fsync,fdatasync:delay_enter={}{when}",
            delay.as_micros()
        );
        let strace = Running::spawn(
            Command::new("strace")
                .args([
                    "-f",
                    "-qq",
                    "-e",
                    "trace=fsync,fdatasync",
                    "-e",
                    &inject,
                    "-o",
                    "/dev/null",
                ])
                .arg("-p")
                .arg(ca.process.pid().to_string()),
        )
        .unwrap();
        // Attached once strace itself has stopped announcing: wait until
        // the CA's threads are all traced.
        eventually(Duration::from_secs(10), || {
            let tasks = std::fs::read_dir(format!("/proc/{}/task", ca.process.pid()))
                .map_err(|e| e.to_string())?;
            for task in tasks {
                let status =
                    std::fs::read_to_string(task.map_err(|e| e.to_string())?.path().join("status"))
                        .map_err(|e| e.to_string())?;
                let traced = status
                    .lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0");
                if !traced {
                    return Err("a thread is not traced yet".to_string());
                }
            }
            Ok(())
        });
        SlowDisk(strace)
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        self.0.terminate();
        let _ = self.0.wait_exit(Duration::from_secs(10));
    }
}

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap()
}

async fn login(idp: &Idp, user: &str, nonce: Option<&str>) -> String {
    idp.login(user, "jit-ssh", nonce)
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()))
        .id_token
}

/// `POST /v1/certs/user` for `key` with `token` and a proof made for them.
async fn issue(ca: &Ca, token: &str, key: &PrivateKey) -> (u16, Value) {
    let body = json!({
        "public_key": key.public_key().to_openssh().unwrap(),
        "proof": sign_proof(key, token).unwrap(),
    });
    ca.call("/v1/certs/user", Some(token), Some(body)).await
}
