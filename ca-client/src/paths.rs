//! Where jit-ssh keeps things. Directories come from the environment given
//! to [`Dirs::from_env`] (`XDG_CONFIG_HOME`, `HOME`), never from globals, so
//! tests isolate a run by setting them.
//!
//! Layout, per CA (`<ca>` is the CA's host, plus `_<port>` when not the default):
//! - `~/.config/jit-ssh/config.toml`: optional, `ca = "https://..."`.
//! - `~/.config/jit-ssh/<ca>/`: the login session while it has a refresh token:
//!   `refresh_token` and `session_key` (both 0600), `session.json`.
//! - `~/.ssh/jit-ssh/<ca>/id_ed25519` (0600) and `id_ed25519-cert.pub` when the
//!   certificate goes to files instead of the agent.
//! - `~/.local/share/jit-ssh/<ca>/user_ca_keys.json` (0600, directory 0700):
//!   the CA's user-CA keys pinned at the first login. Kept apart from the
//!   session because `logout` deletes the session and must not forget the
//!   pins, as ssh keeps `known_hosts` (`$XDG_DATA_HOME` moves it).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The directories jit-ssh uses.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `$XDG_CONFIG_HOME/jit-ssh` or `$HOME/.config/jit-ssh`.
    pub config: PathBuf,
    /// `$HOME/.ssh`.
    pub ssh: PathBuf,
    /// `$XDG_DATA_HOME/jit-ssh` or `$HOME/.local/share/jit-ssh`.
    pub data: PathBuf,
}

impl Dirs {
    /// From `XDG_CONFIG_HOME`, `XDG_DATA_HOME` and `HOME` as given by `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Dirs, String> {
        let home = var("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or("HOME is not set")?;
        let config = match var("XDG_CONFIG_HOME").filter(|v| Path::new(v).is_absolute()) {
            Some(xdg) => PathBuf::from(xdg).join("jit-ssh"),
            None => home.join(".config").join("jit-ssh"),
        };
        let data = match var("XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
            Some(xdg) => PathBuf::from(xdg).join("jit-ssh"),
            None => home.join(".local").join("share").join("jit-ssh"),
        };
        Ok(Dirs {
            config,
            ssh: home.join(".ssh"),
            data,
        })
    }

    /// The session directory of one CA.
    pub fn session_dir(&self, ca: &CaSlug) -> PathBuf {
        self.config.join(&ca.0)
    }

    /// The directory of `--no-agent` key and certificate files of one CA.
    pub fn files_dir(&self, ca: &CaSlug) -> PathBuf {
        self.ssh.join("jit-ssh").join(&ca.0)
    }

    /// The CA's pinned user-CA keys (`jit-ssh login` pins them at first use).
    pub fn pinned_keys_file(&self, ca: &CaSlug) -> PathBuf {
        self.data.join(&ca.0).join("user_ca_keys.json")
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }
}

/// A file-system-safe name for a CA: its host, plus `_<port>` when explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSlug(pub String);

impl CaSlug {
    /// From the CA's base URL.
    pub fn from_url(url: &str) -> Result<CaSlug, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("CA URL {url:?}: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("CA URL {url:?} has no host"))?;
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(CaSlug(match parsed.port() {
            Some(port) => format!("{host}_{port}"),
            None => host,
        }))
    }
}

impl std::fmt::Display for CaSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates `dir` (and parents) with mode 0700 for the parts it creates.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

use std::os::unix::fs::DirBuilderExt as _;

/// Writes `bytes` to `path` through a new file created 0600 at open time,
/// then renamed over `path`, so the content is never readable by others and
/// never half-written.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Like [`write_private`] with another mode (public files: 0644).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut random = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` is readable by group or others.
pub fn is_loose(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_host_and_port() {
        assert_eq!(
            CaSlug::from_url("https://ca.example.com").unwrap().0,
            "ca.example.com"
        );
        assert_eq!(
            CaSlug::from_url("http://127.0.0.1:8443/").unwrap().0,
            "127.0.0.1_8443"
        );
        assert!(CaSlug::from_url("not a url").is_err());
    }

    #[test]
    fn xdg_config_home_wins_over_home() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/a".to_string()),
            "XDG_CONFIG_HOME" => Some("/x".to_string()),
            _ => None,
        };
        let dirs = Dirs::from_env(env).unwrap();
        assert_eq!(dirs.config, PathBuf::from("/x/jit-ssh"));
        assert_eq!(dirs.ssh, PathBuf::from("/home/a/.ssh"));
        let dirs = Dirs::from_env(|k| (k == "HOME").then(|| "/home/a".to_string())).unwrap();
        assert_eq!(dirs.config, PathBuf::from("/home/a/.config/jit-ssh"));
        assert_eq!(dirs.data, PathBuf::from("/home/a/.local/share/jit-ssh"));
    }

    #[test]
    fn private_files_are_0600_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert!(!is_loose(&path));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }
}
