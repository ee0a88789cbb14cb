//! End-to-end: a CA whose database stops accepting writes (every write
//! past a file-size limit fails, as on a full disk) says so: `/readyz`
//! fails while it lasts, the log names SQLite's reason once rather than a
//! line per refused request, and both recover by themselves once writes
//! succeed again.
//!
//! The limit is RLIMIT_FSIZE, lowered and raised on the running CA with
//! `prlimit` (util-linux), which needs no privilege for one's own process.
//! A truly full filesystem would need a mount of its own (a small tmpfs in
//! a user namespace), which containers in CI often forbid; SQLite takes
//! both the same way, as a failed write (docs/deploy.md, "Readiness").

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use ca_client::{nonce_for, CaClient};
use e2e::*;
use ssh_key::PrivateKey;

/// What the CA logs when the database turns unwritable.
const UNWRITABLE: &str = "the database does not accept writes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_whether_the_database_accepts_writes() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    let ca = setup.start_ignoring_sigxfsz();
    let client = CaClient::new(&ca.url, None).unwrap();
    let http = http_client();
    let readyz = format!("{}/readyz", ca.metrics_url);
    let ready = || async {
        let response = http.get(&readyz).send().await.map_err(|e| e.to_string())?;
        Ok::<u16, String>(response.status().as_u16())
    };
    let issue = || async {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let token = idp
            .login("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()))
            .await
            .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()))
            .id_token;
        client
            .request_user_certificate(&token, &key, &[], None)
            .await
    };
    assert_eq!(ready().await.unwrap(), 200);
    issue().await.unwrap();

    // Every write past the first byte of any file now fails.
    let pid = ca.process.pid().to_string();
    prlimit(&pid, "1:unlimited");
    for _ in 0..3 {
        let (status, code, _) = refusal(issue().await);
        assert_eq!((status, code.as_str()), (503, "store_unavailable"));
    }
    assert_eq!(ready().await.unwrap(), 503);
    let log = ca.process.stderr.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(UNWRITABLE)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for the change, not one per request:\n{log}"
    );
    // SQLite's reason: a write refused with EFBIG is an I/O error to it
    // (a full disk, ENOSPC, reads "database or disk is full").
    assert!(lines[0].contains("disk I/O error"), "{}", lines[0]);
    assert!(!log.contains("the database writer has stopped"), "{log}");

    // Writes succeed again: ready again without a request, and issuing.
    prlimit(&pid, "unlimited:unlimited");
    eventually_async(Duration::from_secs(10), || async {
        match ready().await? {
            200 => Ok(()),
            other => Err(format!("/readyz {other}")),
        }
    })
    .await;
    ca.process
        .stderr
        .wait_for("the database accepts writes again", Duration::from_secs(5))
        .unwrap();
    issue().await.unwrap();
}

/// Sets the file-size limit (`soft:hard`, bytes) of the running process `pid`.
fn prlimit(pid: &str, limit: &str) {
    let (status, _, err) = run(
        Command::new("prlimit").args(["--pid", pid, &format!("--fsize={limit}")]),
        STARTUP,
    )
    .unwrap();
    assert!(status.success(), "prlimit: {err}");
}
