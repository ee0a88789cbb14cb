//! Reading `policy_dir`: every policy file's text and one fingerprint over
//! them all (names, sizes, modification times and contents), so the server
//! can tell whether anything changed before it parses anything, and whether a
//! change has held still since the last look.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Diagnostic;

/// Largest policy file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A policy file's text.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path shown in diagnostics.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// SHA-256 over the names, sizes, modification times and contents of the
/// files read.
pub type Fingerprint = [u8; 32];

/// Reads every `*.toml` directly in `dir` (not hidden ones), sorted by name.
/// A symlinked `dir` is resolved first, so an atomic symlink swap is read
/// entirely before or entirely after.
pub fn read_dir(dir: &Path) -> Result<(Vec<Source>, Fingerprint), Diagnostic> {
    let fail = |message: String| Diagnostic {
        location: None,
        message,
    };
    let real = std::fs::canonicalize(dir)
        .map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
    let entries =
        std::fs::read_dir(&real).map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".toml") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(fail(format!(
            "policy_dir {} has no *.toml policy files; the CA never runs without a policy \
             (see docs/policies.md, or copy the examples in policies/)",
            dir.display()
        )));
    }
    let mut hasher = Sha256::new();
    let mut sources = Vec::new();
    for name in names {
        let path = real.join(&name);
        let shown = dir.join(&name);
        let metadata =
            std::fs::metadata(&path).map_err(|e| fail(format!("{}: {e}", shown.display())))?;
        let size = metadata.len();
        // A file system without modification times still has sizes and
        // contents to compare.
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        if size > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                shown.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fail(format!("{}: {e}", shown.display())))?;
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(size.to_le_bytes());
        hasher.update(modified.to_le_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        sources.push(Source { path: shown, text });
    }
    Ok((sources, hasher.finalize().into()))
}
