//! TLS material for a CA served over HTTPS: a private root and a leaf for
//! 127.0.0.1, made by the real `openssl` command line, so the test trusts
//! nothing the CA itself produced.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::run;

/// The files [`tls_files`] writes.
pub struct TlsFiles {
    /// The private root, in PEM: what a client is told to trust.
    pub root: PathBuf,
    /// The leaf certificate for 127.0.0.1, signed by the root.
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
}

/// Writes a private certificate authority and a leaf for 127.0.0.1 into
/// `dir` (`root.crt`, `tls.crt`, `tls.key`).
pub fn tls_files(dir: &Path) -> TlsFiles {
    let root_key = dir.join("root.key");
    let root = dir.join("root.crt");
    let key = dir.join("tls.key");
    let csr = dir.join("tls.csr");
    let cert = dir.join("tls.crt");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: Vec<Vec<String>> = vec![
        format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=jit-ssh-test-root -keyout {} -out {}", root_key.display(), root.display()),
        format!("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout {} -out {}", key.display(), csr.display()),
        format!("x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {}", csr.display(), root.display(), root_key.display(), ext.display(), cert.display()),
    ]
    .into_iter()
    .map(|s| s.split(' ').map(String::from).collect())
    .collect();
    for args in steps {
        let (status, _, err) =
            run(Command::new("openssl").args(&args), Duration::from_secs(30)).unwrap();
        assert!(status.success(), "openssl {args:?}: {err}");
    }
    TlsFiles { root, cert, key }
}
