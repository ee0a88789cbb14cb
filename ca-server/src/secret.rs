//! Secrets that must never reach a log: the CA key passphrase and bearer tokens.
//!
//! They have no `Debug` derive (their `Debug` prints `[redacted]`), no
//! `Serialize`, are wiped from memory on drop, and are read only through
//! `expose_secret()`, which makes every use easy to find in review.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Name of the environment variable holding the CA key passphrase.
pub const PASSPHRASE_ENV: &str = "JIT_SSH_CA_PASSPHRASE";

/// Shortest passphrase accepted when creating keys.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// The passphrase that encrypts the CA private keys at rest.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase; trailing newlines (as left by `echo` into a file) are
    /// not part of it.
    pub fn new(mut text: String) -> Self {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        Passphrase(text)
    }

    /// The passphrase itself. Never log or format the result.
    pub fn expose_secret(&self) -> &str {
        &self.0
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
        if passphrase.0.is_empty() {
            return Err("the CA key passphrase is empty".into());
        }
        Ok(passphrase)
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An ID token as received in `Authorization: Bearer`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        BearerToken(token)
    }

    /// The compact JWT. Never log or format the result.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
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
