//! The login session kept between commands while the identity provider gave
//! a refresh token: the refresh token and the session key (both 0600) and a
//! small non-secret `session.json`. Renewals re-certify the session key,
//! because refreshed ID tokens repeat the nonce of the first login, which is
//! bound to that key. Without a refresh token nothing is kept.

use std::path::{Path, PathBuf};

use jit_ssh_common::Secret;
use serde::{Deserialize, Serialize};
use ssh_key::{LineEnding, PrivateKey};
use zeroize::Zeroizing;

use crate::paths::{create_private_dir, write_atomic, write_private};

/// Where certificates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// The running ssh-agent.
    Agent,
    /// Files under `~/.ssh/jit-ssh/<ca>/`.
    Files,
}

/// The non-secret part of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The CA's base URL.
    pub ca_url: String,
    /// Issuer name at the CA.
    pub issuer_name: String,
    /// Issuer URL.
    pub issuer: String,
    /// OAuth client ID.
    pub client_id: String,
    /// The issuer's public-client secret (not confidential: the CA
    /// publishes it to everyone), which its token endpoint requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Where renewals put the certificate.
    pub storage: Storage,
    /// `--confirm` was asked.
    pub confirm: bool,
    /// Principals asked for at login (empty: all granted).
    pub principals: Vec<String>,
    /// Lifetime asked for at login, seconds.
    pub ttl: Option<u64>,
}

/// A stored session.
pub struct Session {
    /// Non-secret facts.
    pub info: SessionInfo,
    /// The refresh token.
    pub refresh_token: Secret,
    /// The key every renewal certifies.
    pub key: PrivateKey,
}

/// Files of a session directory.
pub struct SessionFiles {
    dir: PathBuf,
}

impl SessionFiles {
    /// The session in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        SessionFiles { dir }
    }

    fn info_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }
    fn token_path(&self) -> PathBuf {
        self.dir.join("refresh_token")
    }
    fn key_path(&self) -> PathBuf {
        self.dir.join("session_key")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a session is stored.
    pub fn exists(&self) -> bool {
        self.token_path().exists()
    }

    /// Loads the session; `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<Session>, String> {
        if !self.exists() {
            return Ok(None);
        }
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let info: SessionInfo = serde_json::from_str(&read(self.info_path())?)
            .map_err(|e| format!("{}: {e}", self.info_path().display()))?;
        let token = read(self.token_path())?;
        let key = PrivateKey::from_openssh(read(self.key_path())?.as_bytes())
            .map_err(|e| format!("{}: {e}", self.key_path().display()))?;
        Ok(Some(Session {
            info,
            refresh_token: Secret::new(token.trim().to_string()),
            key,
        }))
    }

    /// Stores a new session (replacing any).
    pub fn save(
        &self,
        info: &SessionInfo,
        refresh_token: &Secret,
        key: &PrivateKey,
    ) -> Result<(), String> {
        create_private_dir(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| format!("encoding the session key: {e}"))?;
        write_private(&self.key_path(), pem.as_bytes())
            .map_err(|e| format!("writing {}: {e}", self.key_path().display()))?;
        self.save_refresh_token(refresh_token)?;
        let json = serde_json::to_vec_pretty(info).map_err(|e| e.to_string())?;
        write_atomic(&self.info_path(), &json, 0o600)
            .map_err(|e| format!("writing {}: {e}", self.info_path().display()))
    }

    /// Replaces the refresh token (they rotate: the old one is spent).
    pub fn save_refresh_token(&self, refresh_token: &Secret) -> Result<(), String> {
        write_private(&self.token_path(), refresh_token.expose_secret().as_bytes())
            .map_err(|e| format!("writing {}: {e}", self.token_path().display()))
    }

    /// Deletes the session; returns whether there was one.
    pub fn delete(&self) -> Result<bool, String> {
        if !self.dir.exists() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| format!("removing {}: {e}", self.dir.display()))?;
        Ok(true)
    }
}
