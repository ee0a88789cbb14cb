//! The CA's user-CA keys, pinned at the first login the way ssh pins a host
//! key in `known_hosts`: a later answer at the same CA URL whose signing key
//! changed outside a published rotation is refused loudly, so a server
//! impersonating the CA (or a CA whose key was replaced behind its
//! operators' backs) cannot have its certificates stored.
//!
//! A rotation is published the way `docs/deploy.md` runs it: the new key
//! first appears in `/v1/config` beside the signing key (the first one), and
//! only later signs. So a key this client saw announced in an earlier answer
//! becomes trusted when it becomes the signing key; a key that signs without
//! having been announced is a change the person must accept deliberately
//! (`jit-ssh login --accept-ca-key SHA256:…`). Keys the CA stops publishing
//! stop being trusted.
//!
//! [`evaluate`] decides from the pinned state and the published keys and
//! changes nothing; [`CaTrust::commit`] writes the new state (0600, in a
//! 0700 directory), once the certificate it vouched for passed its checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssh_key::public::KeyData;
use ssh_key::PublicKey;

use crate::check::fingerprint;
use crate::paths::{create_private_dir, write_private};

/// Why the CA's published keys cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The CA publishes no user-CA key.
    #[error("the CA at {ca} publishes no user-CA key")]
    NoKeys {
        /// The CA's URL.
        ca: String,
    },
    /// A published key does not parse.
    #[error("the CA at {ca} publishes an unreadable user-CA key: {message}")]
    Unreadable {
        /// The CA's URL.
        ca: String,
        /// Why.
        message: String,
    },
    /// The signing key changed outside a published rotation.
    #[error(
        "WARNING: THE CA'S USER-CA KEY HAS CHANGED: the CA at {ca} now signs with {new}, which it \
         never announced; the keys pinned at your first login are {pinned}. Someone may be \
         impersonating the CA, or its key was replaced without a rotation. Nothing was stored. \
         Ask the CA's operators; if they confirm {new}, accept it with `jit-ssh login \
         --accept-ca-key {new}` (pins: {file})"
    )]
    Changed {
        /// The CA's URL.
        ca: String,
        /// Fingerprint of the new signing key.
        new: String,
        /// Fingerprints of the pinned keys.
        pinned: String,
        /// The pin file.
        file: String,
    },
    /// `--accept-ca-key` names a key the CA does not publish.
    #[error(
        "--accept-ca-key {fingerprint}: the CA at {ca} publishes no such user-CA key (it \
         publishes {published})"
    )]
    NotPublished {
        /// The CA's URL.
        ca: String,
        /// The fingerprint given.
        fingerprint: String,
        /// What it publishes.
        published: String,
    },
    /// The pin file cannot be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// What is kept per CA: OpenSSH key lines without comments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// Keys whose certificates this client accepts.
    pub trusted: Vec<String>,
    /// Keys the CA published beside its signing key, not yet trusted: each
    /// becomes trusted once the CA signs with it (a published rotation).
    #[serde(default)]
    pub announced: Vec<String>,
}

/// The pin file of one CA.
#[derive(Debug, Clone)]
pub struct PinFile {
    path: PathBuf,
}

impl PinFile {
    /// The pins at `path`.
    pub fn new(path: PathBuf) -> PinFile {
        PinFile { path }
    }

    /// Where they are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pinned state; `None` before the first login.
    pub fn load(&self) -> Result<Option<Pinned>, PinError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e.to_string())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.error(format!("unreadable ({e}); delete it to pin the CA again")))
    }

    fn save(&self, pinned: &Pinned) -> Result<(), PinError> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|e| self.error(e.to_string()))?;
        }
        let mut json = serde_json::to_vec_pretty(pinned).map_err(|e| self.error(e.to_string()))?;
        json.push(b'\n');
        write_private(&self.path, &json).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> PinError {
        PinError::File {
            path: self.path.display().to_string(),
            message,
        }
    }
}

/// The keys a certificate from the CA may be signed by, and the pinned
/// state to keep once one is accepted.
#[derive(Debug, Clone)]
pub struct CaTrust {
    /// Trusted user-CA keys the CA publishes now.
    pub signers: Vec<KeyData>,
    /// The CA's longest certificate lifetime, seconds (`/v1/config`).
    pub max_ttl: u64,
    file: PinFile,
    next: Pinned,
    changed: bool,
    notes: Vec<String>,
}

impl CaTrust {
    /// Writes the pinned state when it changed; returns what to tell the
    /// person about it (first pins with their fingerprints, rotations).
    pub fn commit(&self) -> Result<&[String], PinError> {
        if self.changed {
            self.file.save(&self.next)?;
        }
        Ok(&self.notes)
    }
}

/// Decides which of the keys the CA at `ca` publishes (`published`, the
/// signing key first) to trust, given the `pinned` state (`None`: first
/// use) and the fingerprints the person accepted with `--accept-ca-key`.
pub fn evaluate(
    ca: &str,
    file: PinFile,
    pinned: Option<Pinned>,
    published: &[String],
    max_ttl: u64,
    accepted: &[String],
) -> Result<CaTrust, PinError> {
    let keys = published
        .iter()
        .map(|line| {
            PublicKey::from_openssh(line.trim())
                .map(|k| k.key_data().clone())
                .map_err(|e| PinError::Unreadable {
                    ca: ca.to_string(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(signing) = keys.first() else {
        return Err(PinError::NoKeys { ca: ca.to_string() });
    };
    let fingerprints =
        |keys: &[KeyData]| keys.iter().map(fingerprint).collect::<Vec<_>>().join(", ");
    if let Some(unknown) = accepted
        .iter()
        .find(|fp| !keys.iter().any(|k| &fingerprint(k) == *fp))
    {
        return Err(PinError::NotPublished {
            ca: ca.to_string(),
            fingerprint: unknown.clone(),
            published: fingerprints(&keys),
        });
    }
    let Some(previous) = pinned else {
        let next = Pinned {
            trusted: keys.iter().map(line).collect(),
            announced: Vec::new(),
        };
        let notes = vec![format!(
            "Pinned the user-CA key(s) of the CA at {ca} on first use: {}. A later change outside \
             a published rotation will be refused.",
            described(&keys)
        )];
        return Ok(CaTrust {
            signers: keys,
            max_ttl,
            file,
            next,
            changed: true,
            notes,
        });
    };
    let was = |list: &[String], key: &KeyData| list.contains(&line(key));
    let is_accepted = |key: &KeyData| accepted.contains(&fingerprint(key));
    let mut notes = Vec::new();
    if !was(&previous.trusted, signing) {
        if is_accepted(signing) {
            notes.push(format!(
                "Accepted the CA's new user-CA key {} as you asked.",
                described(std::slice::from_ref(signing))
            ));
        } else if was(&previous.announced, signing) {
            notes.push(format!(
                "The CA at {ca} rotated to the user-CA key it announced earlier: {}.",
                described(std::slice::from_ref(signing))
            ));
        } else {
            let pinned: Vec<KeyData> = previous
                .trusted
                .iter()
                .filter_map(|l| PublicKey::from_openssh(l).ok())
                .map(|k| k.key_data().clone())
                .collect();
            return Err(PinError::Changed {
                ca: ca.to_string(),
                new: fingerprint(signing),
                pinned: fingerprints(&pinned),
                file: file.path.display().to_string(),
            });
        }
    }
    let mut next = Pinned::default();
    let mut signers = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if i == 0 || was(&previous.trusted, key) || is_accepted(key) {
            next.trusted.push(line(key));
            signers.push(key.clone());
        } else {
            if !was(&previous.announced, key) {
                notes.push(format!(
                    "The CA at {ca} announces a new user-CA key, {}: it will be trusted once the \
                     CA signs with it.",
                    described(std::slice::from_ref(key))
                ));
            }
            next.announced.push(line(key));
        }
    }
    Ok(CaTrust {
        signers,
        max_ttl,
        changed: next != previous,
        file,
        next,
        notes,
    })
}

/// The comment-free OpenSSH line of `key`.
fn line(key: &KeyData) -> String {
    PublicKey::new(key.clone(), "")
        .to_openssh()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `SHA256:… (ssh-ed25519)` for each key.
fn described(keys: &[KeyData]) -> String {
    keys.iter()
        .map(|k| format!("{} ({})", fingerprint(k), k.algorithm()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand_core::OsRng;
    use ssh_key::{Algorithm, PrivateKey};

    use super::*;

    fn key() -> KeyData {
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .key_data()
            .clone()
    }

    fn published(keys: &[&KeyData]) -> Vec<String> {
        keys.iter()
            .map(|k| {
                PublicKey::new((*k).clone(), "user-ca")
                    .to_openssh()
                    .unwrap()
            })
            .collect()
    }

    fn step(
        dir: &Path,
        keys: &[&KeyData],
        accepted: &[String],
    ) -> Result<(CaTrust, Vec<String>), PinError> {
        let file = PinFile::new(dir.join("ca").join("user_ca_keys.json"));
        let pinned = file.load()?;
        let trust = evaluate("https://ca", file, pinned, &published(keys), 3600, accepted)?;
        let notes = trust.commit()?.to_vec();
        Ok((trust, notes))
    }

    #[test]
    fn a_published_rotation_is_followed_and_a_sudden_swap_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, rogue) = (key(), key(), key());
        let (trust, notes) = step(dir.path(), &[&old], &[]).unwrap();
        assert_eq!(trust.signers, vec![old.clone()]);
        assert!(notes[0].contains(&fingerprint(&old)), "{notes:?}");
        // Announced beside the signing key: not yet trusted.
        let (trust, notes) = step(dir.path(), &[&old, &new], &[]).unwrap();
        assert_eq!(trust.signers, vec![old.clone()]);
        assert!(notes[0].contains("announces"), "{notes:?}");
        // Then signing: trusted, and the old key with it while published.
        let (trust, _) = step(dir.path(), &[&new, &old], &[]).unwrap();
        assert_eq!(trust.signers, vec![new.clone(), old.clone()]);
        let (trust, _) = step(dir.path(), &[&new], &[]).unwrap();
        assert_eq!(trust.signers, vec![new.clone()]);
        // A retired key that comes back is a change like any other.
        let error = step(dir.path(), &[&old], &[]).unwrap_err();
        assert!(matches!(error, PinError::Changed { .. }), "{error}");
        let error = step(dir.path(), &[&rogue, &new], &[]).unwrap_err();
        assert!(error.to_string().contains(&fingerprint(&rogue)), "{error}");
        // Accepting it deliberately.
        let (trust, _) = step(dir.path(), &[&rogue], &[fingerprint(&rogue)]).unwrap();
        assert_eq!(trust.signers, vec![rogue.clone()]);
        step(dir.path(), &[&rogue], &[]).unwrap();
    }

    #[test]
    fn nothing_is_written_until_commit_and_pins_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = PinFile::new(dir.path().join("ca").join("user_ca_keys.json"));
        let trust = evaluate(
            "https://ca",
            file.clone(),
            None,
            &published(&[&key()]),
            60,
            &[],
        )
        .unwrap();
        assert!(!file.path().exists());
        trust.commit().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), 0o600);
        assert_eq!(mode(file.path().parent().unwrap()), 0o700);
    }

    #[test]
    fn accepting_a_key_the_ca_does_not_publish_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = step(dir.path(), &[&key()], &["SHA256:nope".into()]).unwrap_err();
        assert!(matches!(error, PinError::NotPublished { .. }), "{error}");
    }
}
