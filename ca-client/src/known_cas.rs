//! The CAs this user has signed in to, remembered so that later commands
//! need no `--ca`: one directory per CA beside its pinned keys
//! (`~/.local/share/jit-ssh/<name>/ca.json`, and `tls_root.pem` when the
//! login was given `--ca-cert`), and `default_ca` naming the one used when
//! no CA is given. A CA's name is its directory name, the host of its URL
//! plus `_<port>` when the URL has one ([`CaSlug`]), so `--ca NAME` and
//! `--ca URL` pick the same CA. The first successful login sets the default;
//! `logout` keeps what is remembered, as it keeps the pins. Files 0600,
//! directories 0700.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::paths::{create_private_dir, write_private, CaSlug, Dirs};

/// One remembered CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCa {
    /// Its name: [`CaSlug`] of the URL.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// The private TLS root given with `--ca-cert` at login, when one was.
    pub root_pem: Option<Vec<u8>>,
    /// Whether it is the default CA.
    pub default: bool,
}

/// What `ca.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    url: String,
}

/// What [`remember`] changed, for the one line a login says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// Known before, nothing new.
    Already,
    /// Newly remembered, and now the default (the first CA).
    AsDefault,
    /// Newly remembered beside an existing default.
    Beside,
}

/// The remembered CA called `name`, if any.
pub fn find(dirs: &Dirs, name: &str) -> Result<Option<KnownCa>, String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Ok(None);
    }
    let file = record_path(dirs, name);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(None);
    };
    let record: Record =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let root = dirs.data.join(name).join("tls_root.pem");
    let root_pem = match std::fs::read(&root) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", root.display())),
    };
    Ok(Some(KnownCa {
        name: name.to_string(),
        url: record.url,
        root_pem,
        default: default_name(dirs).as_deref() == Some(name),
    }))
}

/// The default CA, if one is remembered.
pub fn default_ca(dirs: &Dirs) -> Result<Option<KnownCa>, String> {
    match default_name(dirs) {
        Some(name) => find(dirs, &name),
        None => Ok(None),
    }
}

/// Every remembered CA, by name.
pub fn all(dirs: &Dirs) -> Vec<KnownCa> {
    let Ok(entries) = std::fs::read_dir(&dirs.data) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("ca.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|name| find(dirs, name).ok().flatten())
        .collect()
}

/// Remembers the CA at `url` (with the TLS root it was reached with), and
/// makes it the default when there is none yet.
pub fn remember(dirs: &Dirs, url: &str, root_pem: Option<&[u8]>) -> Result<Remembered, String> {
    let name = CaSlug::from_url(url)?.0;
    let dir = dirs.data.join(&name);
    let before = find(dirs, &name)?;
    create_private_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let record = serde_json::to_vec_pretty(&Record {
        url: url.trim_end_matches('/').to_string(),
    })
    .map_err(|e| e.to_string())?;
    let file = record_path(dirs, &name);
    write_private(&file, &record).map_err(|e| format!("writing {}: {e}", file.display()))?;
    if let Some(pem) = root_pem {
        let root = dir.join("tls_root.pem");
        write_private(&root, pem).map_err(|e| format!("writing {}: {e}", root.display()))?;
    }
    let has_default = default_ca(dirs)?.is_some();
    if !has_default {
        let path = default_path(dirs);
        write_private(&path, format!("{name}\n").as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(match (before, has_default) {
        (Some(_), true) => Remembered::Already,
        (_, false) => Remembered::AsDefault,
        (None, true) => Remembered::Beside,
    })
}

fn record_path(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.data.join(name).join("ca.json")
}

fn default_path(dirs: &Dirs) -> PathBuf {
    dirs.data.join("default_ca")
}

fn default_name(dirs: &Dirs) -> Option<String> {
    std::fs::read_to_string(default_path(dirs))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::paths::is_loose;

    fn dirs(home: &std::path::Path) -> Dirs {
        Dirs::from_env(|k| (k == "HOME").then(|| home.display().to_string())).unwrap()
    }

    #[test]
    fn the_first_ca_becomes_the_default_and_others_are_kept_apart_by_name() {
        let home = tempfile::tempdir().unwrap();
        let dirs = dirs(home.path());
        assert!(default_ca(&dirs).unwrap().is_none());
        assert_eq!(
            remember(&dirs, "https://ca.example.com/", Some(b"PEM")).unwrap(),
            Remembered::AsDefault
        );
        assert_eq!(
            remember(&dirs, "http://127.0.0.1:8443", None).unwrap(),
            Remembered::Beside
        );
        assert_eq!(
            remember(&dirs, "https://ca.example.com", None).unwrap(),
            Remembered::Already
        );
        let default = default_ca(&dirs).unwrap().unwrap();
        assert_eq!(default.name, "ca.example.com");
        assert_eq!(default.url, "https://ca.example.com");
        assert_eq!(default.root_pem.as_deref(), Some(&b"PEM"[..]));
        let other = find(&dirs, "127.0.0.1_8443").unwrap().unwrap();
        assert_eq!(other.url, "http://127.0.0.1:8443");
        assert!(!other.default && other.root_pem.is_none());
        let names: Vec<String> = all(&dirs).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["127.0.0.1_8443", "ca.example.com"]);
        assert!(find(&dirs, "../etc").unwrap().is_none());
        for file in [
            "ca.example.com/ca.json",
            "ca.example.com/tls_root.pem",
            "default_ca",
        ] {
            assert!(!is_loose(&dirs.data.join(file)), "{file}");
        }
        assert!(!is_loose(&dirs.data.join("ca.example.com")));
    }
}
