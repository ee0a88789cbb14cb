//! The CA's secrets that must never reach a log: the CA key passphrase and
//! bearer tokens.
//!
//! Both are built on [`jit_ssh_common::Secret`]: they print `[redacted]`,
//! have no `Serialize`, are wiped from memory on drop, and are read only
//! through `expose_secret()`, which makes every use easy to find in review.
//! The passphrase adds where it is read from and how long a new one must be.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use jit_ssh_common::Secret;
use zeroize::Zeroizing;

/// Name of the environment variable holding the CA key passphrase.
pub const PASSPHRASE_ENV: &str = "JIT_SSH_CA_PASSPHRASE";

/// Shortest passphrase accepted when creating keys.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// An ID token as received in `Authorization: Bearer`.
pub type BearerToken = Secret;

/// The passphrase that encrypts the CA private keys at rest.
#[derive(Clone)]
pub struct Passphrase(Secret);

impl Passphrase {
    /// Wraps a passphrase; trailing newlines (as left by `echo` into a file) are
    /// not part of it.
    pub fn new(text: String) -> Self {
        Passphrase(Secret::new_trimmed(text))
    }

    /// The passphrase itself. Never log or format the result.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Reads the passphrase from `file` when given, else from
    /// [`PASSPHRASE_ENV`].
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let passphrase = match file {
            Some(path) => {
                let mut text = Zeroizing::new(String::new());
                std::fs::File::open(path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .map_err(|e| format!("cannot read passphrase file {}: {e}", path.display()))?;
                Passphrase::new(std::mem::take(&mut *text))
            }
            None => match std::env::var(PASSPHRASE_ENV) {
                Ok(text) => Passphrase::new(text),
                Err(_) => {
                    return Err(format!(
                        "no CA key passphrase: set {PASSPHRASE_ENV} or give a passphrase file"
                    ))
                }
            },
        };
        if passphrase.expose_secret().is_empty() {
            return Err("the CA key passphrase is empty".into());
        }
        Ok(passphrase)
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_redacted() {
        let p = Passphrase::new("correct horse battery staple\n".into());
        assert_eq!(format!("{p:?}"), "[redacted]");
        assert_eq!(p.expose_secret(), "correct horse battery staple");
        let t = BearerToken::new("eyJhbGciOi.x.y".into());
        assert_eq!(format!("{t:?}"), "[redacted]");
    }

    #[test]
    fn passphrase_file_is_read_without_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pass");
        std::fs::write(&path, "from-a-file-123\n").expect("write");
        let p = Passphrase::load(Some(&path)).expect("load");
        assert_eq!(p.expose_secret(), "from-a-file-123");
        std::fs::write(&path, "\n").expect("write");
        assert!(Passphrase::load(Some(&path)).is_err());
    }
}
