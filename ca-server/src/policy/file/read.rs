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
/// entirely before or entirely after. Fails with every file it could not
/// read, not only the first.
pub fn read_dir(dir: &Path) -> Result<(Vec<Source>, Fingerprint), Vec<Diagnostic>> {
    let read = read_each(dir)?;
    if read.unreadable.is_empty() {
        Ok((read.sources, read.fingerprint))
    } else {
        Err(read.unreadable)
    }
}

/// What [`read_each`] found: the files it read, and a problem for each one it
/// could not.
pub(super) struct Read {
    pub(super) sources: Vec<Source>,
    pub(super) fingerprint: Fingerprint,
    pub(super) unreadable: Vec<Diagnostic>,
}

/// Reads what it can of `dir`; only a directory it cannot list (or one with
/// no policy file) fails outright.
pub(super) fn read_each(dir: &Path) -> Result<Read, Vec<Diagnostic>> {
    let fail = |message: String| Diagnostic {
        location: None,
        message,
    };
    let real = std::fs::canonicalize(dir)
        .map_err(|e| vec![fail(format!("policy_dir {}: {e}", dir.display()))])?;
    let entries = std::fs::read_dir(&real)
        .map_err(|e| vec![fail(format!("policy_dir {}: {e}", dir.display()))])?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| vec![fail(format!("policy_dir {}: {e}", dir.display()))])?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".toml") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(vec![fail(format!(
            "policy_dir {} has no *.toml policy files; the CA never runs without a policy \
             (see docs/policies.md, or copy the examples in policies/)",
            dir.display()
        ))]);
    }
    let mut hasher = Sha256::new();
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for name in names {
        let path = real.join(&name);
        let shown = dir.join(&name);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) => {
                unreadable.push(fail(format!("{}: {e}", shown.display())));
                continue;
            }
        };
        let size = metadata.len();
        if size > MAX_FILE_BYTES {
            unreadable.push(fail(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                shown.display()
            )));
            continue;
        }
        // A file system without modification times still has sizes and
        // contents to compare.
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                unreadable.push(fail(format!("{}: {e}", shown.display())));
                continue;
            }
        };
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(size.to_le_bytes());
        hasher.update(modified.to_le_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        sources.push(Source { path: shown, text });
    }
    Ok(Read {
        sources,
        fingerprint: hasher.finalize().into(),
        unreadable,
    })
}
