//! `jit-ssh`: get short-lived SSH certificates from a jit-ssh CA.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ca_client::CaClient;
use clap::{Parser, Subcommand};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "jit-ssh",
    version,
    about = "Short-lived SSH certificates from a jit-ssh CA"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exchange an ID token you already hold (e.g. a CI job's OIDC token) for a
    /// certificate on KEY, written to KEY-cert.pub.
    Issue {
        /// Base URL of the CA.
        #[arg(long, env = "JIT_SSH_CA")]
        ca: String,
        /// File holding the ID token.
        #[arg(long)]
        id_token_file: PathBuf,
        /// Private key to certify (OpenSSH, unencrypted); a new Ed25519 key is
        /// created there if the file does not exist.
        #[arg(long)]
        key: PathBuf,
        /// Principal to ask for (repeatable); default: all the policy grants.
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// Lifetime in seconds; default: the CA's.
        #[arg(long)]
        ttl: Option<u64>,
        /// PEM file of a private root that signed the CA's TLS certificate.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jit-ssh: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Issue {
            ca,
            id_token_file,
            key,
            principals,
            ttl,
            ca_cert,
        } => issue(
            &ca,
            &id_token_file,
            &key,
            &principals,
            ttl,
            ca_cert.as_deref(),
        ),
    }
}

fn issue(
    ca: &str,
    id_token_file: &Path,
    key_path: &Path,
    principals: &[String],
    ttl: Option<u64>,
    ca_cert: Option<&Path>,
) -> anyhow::Result<()> {
    let token = Zeroizing::new(
        std::fs::read_to_string(id_token_file)
            .with_context(|| format!("reading {}", id_token_file.display()))?,
    );
    let token = token.trim();
    if token.is_empty() {
        bail!("{} is empty", id_token_file.display());
    }
    let key = load_or_create_key(key_path)?;
    let root = match ca_cert {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let client = CaClient::new(ca, root.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let issued = runtime.block_on(client.request_user_certificate(
        token,
        &key,
        principals,
        ttl.map(Duration::from_secs),
    ))?;
    let mut cert_path = key_path.as_os_str().to_owned();
    cert_path.push("-cert.pub");
    let cert_path = PathBuf::from(cert_path);
    std::fs::write(&cert_path, format!("{}\n", issued.certificate))
        .with_context(|| format!("writing {}", cert_path.display()))?;
    eprintln!(
        "Certificate {} for {} written to {} (serial {}, valid for {}s)",
        issued.key_id,
        issued.principals.join(","),
        cert_path.display(),
        issued.serial,
        issued.valid_before.saturating_sub(ca_client_now()),
    );
    Ok(())
}

fn ca_client_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let key = PrivateKey::from_openssh(text.as_bytes())
            .with_context(|| format!("{} is not an OpenSSH private key", path.display()))?;
        if key.is_encrypted() {
            bail!(
                "{} is encrypted; use an unencrypted key for `issue`",
                path.display()
            );
        }
        return Ok(key);
    }
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)?;
    key.set_comment("jit-ssh");
    let pem = key.to_openssh(LineEnding::LF)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(
        PathBuf::from(pub_path),
        format!("{}\n", key.public_key().to_openssh()?),
    )?;
    Ok(key)
}
