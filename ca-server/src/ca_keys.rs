//! The CA's own keys: creating them (`init`), loading them at start-up, and
//! signing with them.
//!
//! A data directory holds two key sets, one for user certificates and one for
//! host certificates, described by `keys.toml`:
//!
//! ```toml
//! [user]
//! active = "user-ca-1"            # signs new certificates
//! trusted = ["user-ca-1"]         # published to hosts; may list retired keys
//! [host]
//! active = "host-ca-1"
//! trusted = ["host-ca-1"]
//! ```
//!
//! Each name is a pair of files under `keys/`: `NAME` (an OpenSSH private key,
//! encrypted with the CA passphrase, mode 0600) and `NAME.pub`. Only the
//! active key's private half is ever decrypted; a trusted-only key needs just
//! its `.pub`, so a retired key's private half can be destroyed. Rotation is
//! described in `docs/deploy.md`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::secret::{Passphrase, MIN_PASSPHRASE_LEN};

/// File name of the key-set manifest inside the data directory.
pub const MANIFEST: &str = "keys.toml";
/// Directory of key files inside the data directory.
pub const KEY_DIR: &str = "keys";

/// Errors creating or loading CA keys; each renders as one line saying what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `init` found keys already there.
    #[error("{0} already exists: refusing to overwrite CA keys (use another --data-dir, or rotate as docs/deploy.md describes)")]
    AlreadyExists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A private key file can be read by group or others.
    #[error("{path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The passphrase does not decrypt the key.
    #[error("cannot decrypt {0}: wrong passphrase?")]
    WrongPassphrase(PathBuf),
    /// The private key is stored unencrypted.
    #[error("{0} is not encrypted: CA keys must be encrypted at rest (ssh-keygen -p -f {0})")]
    NotEncrypted(PathBuf),
    /// A file is not the kind of key expected.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The passphrase is too weak to protect a CA key.
    #[error("the CA key passphrase must be at least {MIN_PASSPHRASE_LEN} characters")]
    WeakPassphrase,
    /// Key generation or encryption failed.
    #[error("key generation failed: {0}")]
    Crypto(String),
}

/// Which algorithm new CA keys use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaKeyType {
    /// Ed25519: fast, small, supported by every current OpenSSH.
    #[default]
    Ed25519,
    /// ECDSA on NIST P-256, for environments that require FIPS curves.
    EcdsaP256,
}

/// Which of the two CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// Signs user certificates.
    User,
    /// Signs host certificates.
    Host,
}

impl CaRole {
    fn prefix(self) -> &'static str {
        match self {
            CaRole::User => "user-ca",
            CaRole::Host => "host-ca",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    user: KeySetEntry,
    host: KeySetEntry,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetEntry {
    active: String,
    trusted: Vec<String>,
}

/// Creates a user CA and a host CA key in `data_dir`, encrypted with
/// `passphrase`, plus `keys.toml`. Refuses to touch existing keys.
pub fn init(data_dir: &Path, key_type: CaKeyType, passphrase: &Passphrase) -> Result<(), KeyError> {
    if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_LEN {
        return Err(KeyError::WeakPassphrase);
    }
    let manifest_path = data_dir.join(MANIFEST);
    if manifest_path.exists() {
        return Err(KeyError::AlreadyExists(manifest_path));
    }
    create_private_dir(data_dir)?;
    let key_dir = data_dir.join(KEY_DIR);
    create_private_dir(&key_dir)?;
    let mut entries = Vec::new();
    for role in [CaRole::User, CaRole::Host] {
        let name = format!("{}-1", role.prefix());
        write_new_key(&key_dir, &name, key_type, passphrase)?;
        entries.push(KeySetEntry {
            active: name.clone(),
            trusted: vec![name],
        });
    }
    let host = entries.pop();
    let user = entries.pop();
    let (Some(user), Some(host)) = (user, host) else {
        unreachable!("two entries were pushed above");
    };
    let manifest = Manifest { user, host };
    let text = format!(
        "# CA key sets. `active` signs; every key in `trusted` is published to hosts.\n\
         # To rotate: add a key to `trusted`, deploy it to hosts, then make it `active`.\n{}",
        toml::to_string(&manifest).map_err(|e| KeyError::Crypto(e.to_string()))?
    );
    write_new_file(&manifest_path, text.as_bytes(), 0o644)
}

/// Generates one key pair and writes `NAME` (encrypted, 0600) and `NAME.pub`.
pub fn write_new_key(
    key_dir: &Path,
    name: &str,
    key_type: CaKeyType,
    passphrase: &Passphrase,
) -> Result<(), KeyError> {
    let algorithm = match key_type {
        CaKeyType::Ed25519 => Algorithm::Ed25519,
        CaKeyType::EcdsaP256 => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    };
    let mut rng = rand_core::OsRng;
    let mut key =
        PrivateKey::random(&mut rng, algorithm).map_err(|e| KeyError::Crypto(e.to_string()))?;
    key.set_comment(name);
    let encrypted = key
        .encrypt(&mut rng, passphrase.expose_secret())
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    let pem = encrypted
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    write_new_file(&key_dir.join(name), pem.as_bytes(), 0o600)?;
    write_new_file(
        &key_dir.join(format!("{name}.pub")),
        format!("{public}\n").as_bytes(),
        0o644,
    )
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Creates `path` with `mode` at open time; fails if it exists.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let io_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists(path.to_path_buf())
        } else {
            KeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// A CA's trusted public keys, with the active one able to sign.
#[derive(Debug)]
pub struct CaKeySet {
    signer: CaSigner,
    trusted: Vec<PublicKey>,
}

impl CaKeySet {
    /// The key that signs new certificates.
    pub fn signer(&self) -> &CaSigner {
        &self.signer
    }

    /// Every trusted public key, the active one first.
    pub fn trusted(&self) -> &[PublicKey] {
        &self.trusted
    }

    /// Trusted keys as OpenSSH lines, the active one first.
    pub fn trusted_lines(&self) -> Vec<String> {
        self.trusted
            .iter()
            .map(|k| k.to_openssh().unwrap_or_default())
            .collect()
    }
}

/// Both CAs of a data directory.
#[derive(Debug)]
pub struct CaKeys {
    /// Signs user certificates.
    pub user: CaKeySet,
    /// Signs host certificates.
    pub host: CaKeySet,
}

/// Loads both key sets from `data_dir`, decrypting each active key.
pub fn load(data_dir: &Path, passphrase: &Passphrase) -> Result<CaKeys, KeyError> {
    let manifest_path = data_dir.join(MANIFEST);
    let text = fs::read_to_string(&manifest_path).map_err(|source| KeyError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| KeyError::Invalid {
        path: manifest_path.clone(),
        message: e.message().to_string(),
    })?;
    let key_dir = data_dir.join(KEY_DIR);
    Ok(CaKeys {
        user: load_set(&key_dir, &manifest.user, passphrase, &manifest_path)?,
        host: load_set(&key_dir, &manifest.host, passphrase, &manifest_path)?,
    })
}

fn load_set(
    key_dir: &Path,
    entry: &KeySetEntry,
    passphrase: &Passphrase,
    manifest_path: &Path,
) -> Result<CaKeySet, KeyError> {
    for name in std::iter::once(&entry.active).chain(&entry.trusted) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !name.starts_with('.');
        if !ok {
            return Err(KeyError::Invalid {
                path: manifest_path.to_path_buf(),
                message: format!("key name {name:?} must be a plain file name"),
            });
        }
    }
    let signer = load_private(&key_dir.join(&entry.active), passphrase)?;
    let mut trusted = vec![signer.public_key().clone()];
    for name in &entry.trusted {
        let public = load_public(&key_dir.join(format!("{name}.pub")))?;
        if !trusted.iter().any(|k| k.key_data() == public.key_data()) {
            trusted.push(public);
        }
    }
    Ok(CaKeySet { signer, trusted })
}

fn load_public(path: &Path) -> Result<PublicKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PublicKey::from_openssh(text.trim()).map_err(|e| KeyError::Invalid {
        path: path.to_path_buf(),
        message: format!("not an OpenSSH public key: {e}"),
    })
}

fn load_private(path: &Path, passphrase: &Passphrase) -> Result<CaSigner, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = fs::metadata(path).map_err(io_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err)?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| KeyError::Invalid {
        path: path.to_path_buf(),
        message: format!("not an OpenSSH private key: {e}"),
    })?;
    if !key.is_encrypted() {
        return Err(KeyError::NotEncrypted(path.to_path_buf()));
    }
    let key = key
        .decrypt(passphrase.expose_secret())
        .map_err(|_| KeyError::WrongPassphrase(path.to_path_buf()))?;
    CaSigner::new(key).map_err(|message| KeyError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// A decrypted CA private key, ready to sign certificates.
///
/// Ed25519 keys are held as an aws-lc key pair, prepared once: ssh-key's own
/// signer rebuilds a dalek key on every signature, and aws-lc signs in under
/// half the time of a prepared dalek key (measured in docs/benchmarks.md).
/// aws-lc wipes the key when the pair is dropped.
pub struct CaSigner {
    public: PublicKey,
    kind: SignerKind,
}

enum SignerKind {
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    Other(Box<PrivateKey>),
}

impl CaSigner {
    /// Wraps a decrypted private key; refuses algorithms ssh-key cannot sign
    /// certificates with.
    pub fn new(key: PrivateKey) -> Result<Self, String> {
        let public = key.public_key().clone();
        let kind = match key.key_data() {
            KeypairData::Ed25519(pair) => {
                // The seed copy is wiped once the key pair is built.
                let seed = Zeroizing::new(pair.private.to_bytes());
                let prepared = aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(
                    &seed[..],
                    pair.public.as_ref(),
                )
                .map_err(|_| {
                    "the Ed25519 CA key's public half does not match its seed".to_string()
                })?;
                SignerKind::Ed25519(prepared)
            }
            KeypairData::Ecdsa(_) => SignerKind::Other(Box::new(key)),
            _ => {
                return Err(format!(
                    "CA keys must be Ed25519 or ECDSA, not {}",
                    key.algorithm()
                ))
            }
        };
        Ok(CaSigner { public, kind })
    }

    /// The CA public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// SHA-256 fingerprint of the CA public key.
    pub fn fingerprint(&self) -> String {
        self.public.fingerprint(HashAlg::Sha256).to_string()
    }
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSigner")
            .field("public", &self.fingerprint())
            .field("private", &"[redacted]")
            .finish()
    }
}

impl signature::Signer<ssh_key::Signature> for CaSigner {
    fn try_sign(&self, message: &[u8]) -> signature::Result<ssh_key::Signature> {
        match &self.kind {
            SignerKind::Ed25519(key) => {
                let signature = key.sign(message);
                ssh_key::Signature::new(Algorithm::Ed25519, signature.as_ref().to_vec())
                    .map_err(signature::Error::from_source)
            }
            SignerKind::Other(key) => key.try_sign(message),
        }
    }
}

impl From<&CaSigner> for KeyData {
    fn from(signer: &CaSigner) -> KeyData {
        signer.public.key_data().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase() -> Passphrase {
        Passphrase::new("test passphrase 123".into())
    }

    #[test]
    fn init_then_load_round_trips_and_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        init(&data, CaKeyType::Ed25519, &passphrase()).expect("init");
        let mode = fs::metadata(data.join("keys/user-ca-1"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = fs::read_to_string(data.join("keys/user-ca-1")).expect("read");
        assert!(PrivateKey::from_openssh(&text)
            .expect("parse")
            .is_encrypted());
        let keys = load(&data, &passphrase()).expect("load");
        assert_eq!(keys.user.trusted().len(), 1);
        assert_ne!(
            keys.user.signer().public_key().key_data(),
            keys.host.signer().public_key().key_data(),
            "user and host CA must be separate keys"
        );
        assert!(format!("{:?}", keys.user.signer()).contains("[redacted]"));
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), CaKeyType::Ed25519, &passphrase()).expect("init");
        let before = fs::read(dir.path().join("keys/user-ca-1")).expect("read");
        let err = init(dir.path(), CaKeyType::Ed25519, &passphrase()).expect_err("overwrite");
        assert!(matches!(err, KeyError::AlreadyExists(_)), "{err}");
        assert_eq!(
            before,
            fs::read(dir.path().join("keys/user-ca-1")).expect("read")
        );
    }

    #[test]
    fn load_refuses_wrong_passphrase_and_loose_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), CaKeyType::EcdsaP256, &passphrase()).expect("init");
        let wrong = Passphrase::new("not the passphrase".into());
        assert!(matches!(
            load(dir.path(), &wrong),
            Err(KeyError::WrongPassphrase(_))
        ));
        let key = dir.path().join("keys/host-ca-1");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = load(dir.path(), &passphrase()).expect_err("loose mode");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn short_passphrase_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = init(
            dir.path(),
            CaKeyType::Ed25519,
            &Passphrase::new("short".into()),
        );
        assert!(matches!(err, Err(KeyError::WeakPassphrase)));
        assert!(!dir.path().join(MANIFEST).exists());
    }

    #[test]
    fn trusted_keys_include_retired_public_only_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), CaKeyType::Ed25519, &passphrase()).expect("init");
        let key_dir = dir.path().join(KEY_DIR);
        write_new_key(&key_dir, "user-ca-2", CaKeyType::Ed25519, &passphrase()).expect("key");
        fs::remove_file(key_dir.join("user-ca-1")).expect("retire private half");
        let manifest = fs::read_to_string(dir.path().join(MANIFEST)).expect("read");
        let manifest = manifest
            .replace("active = \"user-ca-1\"", "active = \"user-ca-2\"")
            .replace(
                "trusted = [\"user-ca-1\"]",
                "trusted = [\"user-ca-2\", \"user-ca-1\"]",
            );
        fs::write(dir.path().join(MANIFEST), manifest).expect("write");
        let keys = load(dir.path(), &passphrase()).expect("load");
        let lines = keys.user.trusted_lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("user-ca-2"));
    }
}
