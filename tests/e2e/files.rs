//! End-to-end file modes of the CA host: the real `jit-ssh-ca` binary
//! refuses to start on a data directory or a passphrase file that group or
//! others may open, saying what to run, and creates its database and the
//! database's WAL and shared-memory files 0600 whatever its umask, checked
//! with `stat` after start and after the first issuance.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ca_client::{nonce_for, CaClient};
use e2e::client::mode;
use e2e::*;

/// `chmod MODE PATH`, as the operator would run it.
fn chmod(mode: &str, path: &Path) {
    let (status, _, err) = run(Command::new("chmod").arg(mode).arg(path), STARTUP).unwrap();
    assert!(status.success(), "chmod {mode} {}: {err}", path.display());
}

/// The database and the WAL and shared-memory files SQLite keeps beside it.
fn database_files(setup: &CaSetup) -> [PathBuf; 3] {
    let db = setup.data_dir.join("jit-ssh-ca.db").display().to_string();
    ["", "-wal", "-shm"].map(|suffix| PathBuf::from(format!("{db}{suffix}")))
}

#[test]
fn serve_refuses_a_passphrase_file_or_data_directory_open_to_others() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .passphrase_file(PASSPHRASE)
        .build();
    let passphrase = setup.dir.path().join("passphrase");

    chmod("644", &passphrase);
    let err = setup.expect_start_failure();
    assert!(
        err.contains(&passphrase.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    chmod("640", &passphrase);
    let err = setup.expect_start_failure();
    assert!(err.contains("chmod 600"), "{err}");
    chmod("600", &passphrase);

    chmod("755", &setup.data_dir);
    let err = setup.expect_start_failure();
    assert!(
        err.contains(&setup.data_dir.display().to_string()) && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    chmod("710", &setup.data_dir);
    assert!(setup.expect_start_failure().contains("chmod 700"));
    // Refusing changed nothing: the modes are the operator's to fix.
    assert_eq!(mode(&setup.data_dir), 0o710);
    assert!(!database_files(&setup)[0].exists(), "no database was made");

    chmod("700", &setup.data_dir);
    let _ca = setup.start();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_and_shm_files_are_created_0600() {
    let idp = Idp::start();
    let setup = CaSetup::trusting(&idp);
    // A umask that would leave new files readable by everyone.
    let mut ca = setup.start_with_umask("022");
    let files = database_files(&setup);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} after start", file.display());
    }

    let dir = tempfile::tempdir().unwrap();
    let (_, key) = ssh_keygen(dir.path(), "alice", &["-t", "ed25519"]);
    let tokens = idp
        .login("alice", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", idp.log()));
    CaClient::new(&ca.url, None)
        .unwrap()
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", ca.process.stderr.text()));
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} after issuance", file.display());
    }
    assert_eq!(mode(&setup.data_dir), 0o700);

    // A database file another tool loosened is refused, not used.
    ca.process.terminate();
    ca.process
        .wait_exit(std::time::Duration::from_secs(20))
        .unwrap();
    chmod("644", &files[0]);
    let err = setup.expect_start_failure();
    assert!(
        err.contains(&files[0].display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    chmod("600", &files[0]);
    let _ca = setup.start();
}
