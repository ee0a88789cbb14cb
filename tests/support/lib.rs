//! Test harness for the end-to-end tests: the real `jit-ssh-ca` binary, the
//! real `oidc-provider` test IdP (tests/idp), and real OpenSSH (`ssh-keygen`,
//! `sshd`, `ssh-agent`, `ssh`), all on 127.0.0.1.
//!
//! One module per party: [`process`] (children and their output), [`wait`]
//! (bounded waits), [`idp`], [`ca`] (set-up builder, the running CA and its
//! command line), [`openssh`], [`tls`], [`http_stub`] (a stand-in HTTP
//! server), [`jws`] (other spellings of a real token), [`markdown`] and
//! [`doc_sandbox`] (the commands in the docs), [`client`] (the
//! `jit-ssh` binary), [`fake_ca`] (a CA that answers bad certificates on
//! purpose) and [`dev`] (`jit-ssh-ca dev`).
//! Every process started here is killed when its handle drops, and every
//! wait is bounded by a deadline, so a failing test cannot hang CI or leak
//! servers.

#![allow(clippy::unwrap_used, missing_docs)]

pub mod ca;
pub mod client;
pub mod dev;
pub mod doc_sandbox;
pub mod fake_ca;
pub mod http_stub;
pub mod idp;
pub mod jws;
pub mod markdown;
pub mod openssh;
pub mod process;
pub mod tls;
pub mod wait;

pub use ca::{Ca, CaBuilder, CaSetup, BREAK_GLASS_POLICY, PASSPHRASE};
pub use idp::{Idp, IdpKey, Tokens, REDIRECT_URI};
pub use openssh::{
    free_port, ssh_keygen, ssh_keygen_list, ssh_keygen_revoked, ssh_keygen_sign, write_certificate,
    Sshd,
};
pub use process::{bin, repo_root, run, Lines, Running, STARTUP};
pub use tls::{tls_files, TlsFiles};
pub use wait::{eventually, eventually_async};

/// Random bytes from the OS.
pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes
}

/// Current Unix time.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How long one HTTP exchange of a test may take before it fails.
pub const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An HTTP client for talking to the CA or the IdP directly: every exchange
/// is bounded by [`HTTP_TIMEOUT`], and no redirect is followed (a test that
/// meets one reads it).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with a timeout and no redirects")
}

/// The status, error code and message of a request the CA refused, as the
/// client library reports them; fails the test on anything else.
pub fn refusal<T: std::fmt::Debug>(
    result: Result<T, ca_client::ClientError>,
) -> (u16, String, String) {
    match result {
        Err(ca_client::ClientError::Refused {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
