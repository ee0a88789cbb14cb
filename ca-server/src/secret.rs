//! The CA's secrets that must never reach a log: the CA key passphrase and
//! bearer tokens.
//!
//! Both are built on [`jit_ssh_common::Secret`]: they print `[redacted]`,
//! have no `Serialize`, are wiped from memory on drop, and are read only
//! through `expose_secret()`, which makes every use easy to find in review.
//! The passphrase adds where it is read from and how long a new one must be:
//! a passphrase file that group or others may open is refused, and a
//! passphrase taken from the environment is removed from it once read
//! (docs/security.md says what that does and does not protect against).

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use jit_ssh_common::Secret;
use zeroize::Zeroizing;

use crate::private_files;

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

    /// Reads the passphrase from `file` when given, refusing a file that
    /// group or others may open; else from [`PASSPHRASE_ENV`], which is then
    /// removed from the environment. Call it before any thread that may
    /// read the environment starts (the async runtime's): changing the
    /// environment while another thread reads it is undefined behaviour in
    /// C libraries.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let passphrase = match file {
            Some(path) => read_file(path)?,
            None => take_from_env(PASSPHRASE_ENV)?,
        };
        if passphrase.expose_secret().is_empty() {
            return Err("the CA key passphrase is empty".into());
        }
        Ok(passphrase)
    }
}

/// The passphrase in the file at `path`, whose mode is checked on the
/// handle the passphrase is read from.
fn read_file(path: &Path) -> Result<Passphrase, String> {
    let unreadable =
        |e: std::io::Error| format!("cannot read passphrase file {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    private_files::check("passphrase file", path, &metadata).map_err(|e| e.to_string())?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(unreadable)?;
    Ok(Passphrase::new(std::mem::take(&mut *text)))
}

/// The passphrase in the environment variable `name`, which is removed, so
/// that neither a child process nor code that reads or logs the environment
/// later finds it there.
fn take_from_env(name: &str) -> Result<Passphrase, String> {
    let text = std::env::var(name).map_err(|_| {
        format!("no CA key passphrase: set {PASSPHRASE_ENV} or give a passphrase file")
    })?;
    std::env::remove_var(name);
    Ok(Passphrase::new(text))
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

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
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let p = Passphrase::load(Some(&path)).expect("load");
        assert_eq!(p.expose_secret(), "from-a-file-123");
        std::fs::write(&path, "\n").expect("write");
        assert!(Passphrase::load(Some(&path)).is_err());
    }

    #[test]
    fn a_passphrase_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pass");
        std::fs::write(&path, "from-a-file-123\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Passphrase::load(Some(&path)).expect_err("0644");
        assert!(
            err.contains("passphrase file open to group or others"),
            "{err}"
        );
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_passphrase_from_the_environment_leaves_it() {
        // A name of this test's own: the variable the CA reads may be set
        // for the process running the tests.
        let name = "JIT_SSH_CA_TEST_PASSPHRASE_TAKEN";
        std::env::set_var(name, "from-the-environment-123");
        let p = take_from_env(name).expect("read");
        assert_eq!(p.expose_secret(), "from-the-environment-123");
        assert!(std::env::var_os(name).is_none(), "still in the environment");
        assert!(take_from_env(name).is_err(), "gone");
    }
}
