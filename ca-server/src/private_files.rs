//! Files and directories that only the CA's own user may open: the data
//! directory, the database with its WAL and shared-memory files, and the
//! passphrase file.
//!
//! The CA creates the ones it makes with these modes at open time (the data
//! directory 0700, the database 0600). It never loosens or tightens modes
//! it finds: whoever made a file open to group or others had a reason or
//! made a mistake, and either way the operator should know, so the check
//! refuses and says which `chmod` to run.

use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Why a private file or directory is not fit for use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModeError {
    /// Group or others may open it.
    #[error(
        "{what} open to group or others: {} (mode {mode:04o}): run `chmod {wanted:o} {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// What it is, for the message ("data directory", ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to give it.
        wanted: u32,
    },
    /// It could not be created or opened, or its mode read.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What it is.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Refuses the directory at `path` unless group and others have no access
/// to it (0700 or stricter).
pub fn check_dir(what: &'static str, path: &Path) -> Result<(), ModeError> {
    let metadata = std::fs::metadata(path).map_err(|source| ModeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    check(what, path, &metadata)
}

/// Refuses the file or directory at `path`, whose `metadata` is given (read
/// from an open handle where there is one), unless group and others have no
/// access to it.
pub fn check(what: &'static str, path: &Path, metadata: &Metadata) -> Result<(), ModeError> {
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(ModeError::TooOpen {
        what,
        path: path.to_path_buf(),
        mode,
        wanted: if metadata.is_dir() { 0o700 } else { 0o600 },
    })
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use super::*;

    #[test]
    fn group_or_other_bits_are_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("write");
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o602, false)] {
            std::fs::set_permissions(&file, Permissions::from_mode(mode)).expect("chmod");
            let metadata = std::fs::metadata(&file).expect("stat");
            let result = check("passphrase file", &file, &metadata);
            assert_eq!(result.is_ok(), ok, "{mode:o}");
            if let Err(e) = result {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("chmod 600 {}", file.display())),
                    "{text}"
                );
                assert!(text.contains(&format!("mode {mode:04o}")), "{text}");
            }
        }
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o750)).expect("chmod");
        let text = check_dir("data directory", dir.path())
            .expect_err("0750")
            .to_string();
        assert!(
            text.starts_with("data directory open to group or others"),
            "{text}"
        );
        assert!(text.contains("chmod 700"), "{text}");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).expect("chmod");
        check_dir("data directory", dir.path()).expect("0700");
        assert!(matches!(
            check_dir("data directory", &dir.path().join("missing")),
            Err(ModeError::Io { .. })
        ));
    }
}
