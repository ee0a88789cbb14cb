//! The `jit-ssh` commands as library functions, one file per command family:
//! [`login`] (sign in, certify a fresh key), [`ensure`] (keep a certificate
//! loaded, renewing silently when it can), [`status`], [`logout`],
//! [`ssh_config`] (the `~/.ssh/config` block) and [`exec_ssh`] (`jit-ssh
//! ssh`). `certify` is the step login and renewal share: ask the CA for a
//! certificate and put it into the agent or key files.
//!
//! `main.rs` only parses arguments and calls these with an [`Env`]
//! (directories, `$BROWSER`, `SSH_AUTH_SOCK`), so nothing here reads the
//! process environment on its own. This file holds what every command
//! shares: the [`Env`], the [`CaTarget`], the sign-in choices, the clock, and
//! the async runtime the network steps run on.

mod certify;
mod ensure;
mod login;
mod logout;
mod ssh;
mod ssh_config;
mod status;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ca::{CaClient, FetchedConfig};
use crate::error::CliError;
use crate::paths::{CaSlug, Dirs};
use crate::pins::{self, CaTrust, PinFile};
use crate::ui::Ui;
use jit_ssh_common::Secret;

pub use certify::{describe, Issued};
pub use ensure::{
    ensure, fresh_certificate, remove_expired_from_agent, EnsureOptions, Ensured, RENEW_MARGIN,
};
pub use login::{login, LoginOptions};
pub use logout::{describe_logged_out, logout, LoggedOut};
pub use ssh::{exec_ssh, ssh_command};
pub use ssh_config::{
    host_patterns, install_block, ssh_config, ssh_config_block, stable_program, uninstall_block,
    SshConfigAction,
};
pub use status::{describe_status, status, Status, StatusCa, StatusEntry};

/// Clock difference with the CA that earns a warning.
pub const SKEW_WARNING: u64 = 30;

/// What the commands get from the outside world.
#[derive(Debug, Clone)]
pub struct Env {
    /// Directories.
    pub dirs: Dirs,
    /// `$BROWSER`.
    pub browser: Option<String>,
    /// `SSH_AUTH_SOCK`.
    pub auth_sock: Option<PathBuf>,
    /// Output.
    pub ui: Ui,
}

/// How to reach the CA.
#[derive(Debug, Clone)]
pub struct CaTarget {
    /// Base URL.
    pub url: String,
    /// Extra TLS root (PEM).
    pub root_pem: Option<Vec<u8>>,
}

impl CaTarget {
    /// The CA's directory name.
    pub fn slug(&self) -> Result<CaSlug, CliError> {
        CaSlug::from_url(&self.url).map_err(CliError::other)
    }

    pub(crate) fn client(&self) -> Result<CaClient, CliError> {
        Ok(CaClient::new(&self.url, self.root_pem.as_deref())?)
    }
}

/// Which interactive flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code + PKCE via a loopback redirect.
    Browser,
    /// RFC 8628 device flow.
    Device,
}

/// Where the ID token comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// Sign in interactively.
    Interactive {
        /// The flow.
        flow: Flow,
        /// How long to wait for the person.
        timeout: Duration,
    },
    /// A token the platform issued (workloads).
    Given(Secret),
}

/// Current Unix time.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The clock-skew warning, if the CA's clock is more than
/// [`SKEW_WARNING`] seconds from ours.
pub fn skew_warning(server: Option<SystemTime>, local: SystemTime) -> Option<String> {
    let server = server?;
    let (ahead, by) = match server.duration_since(local) {
        Ok(d) => ("ahead of", d),
        Err(e) => ("behind", e.duration()),
    };
    (by.as_secs() > SKEW_WARNING).then(|| {
        format!(
            "the CA's clock is {}s {ahead} this machine's: certificates may look not yet valid or \
             expired early; fix this machine's time (NTP)",
            by.as_secs()
        )
    })
}

/// The runtime a command's network steps run on: single-threaded, because
/// they run one after another.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the async runtime: {e}")))
}

/// The CA's published configuration, warning on the way when the CA's clock
/// disagrees with ours.
async fn fetch_config(ca: &CaClient, env: &Env) -> Result<FetchedConfig, CliError> {
    let fetched = ca.fetch_config().await?;
    if let Some(warning) = skew_warning(fetched.server_date, SystemTime::now()) {
        env.ui.warn(&warning);
    }
    Ok(fetched)
}

/// Which of the user-CA keys the CA publishes in `config` this client
/// trusts, against the keys pinned for it (`accepted`: the fingerprints of
/// `--accept-ca-key`). Refuses a signing key that changed outside a
/// published rotation; writes nothing (see [`CaTrust::commit`]).
fn ca_trust(
    env: &Env,
    target: &CaTarget,
    slug: &CaSlug,
    config: &ca_proto::CaConfig,
    accepted: &[String],
) -> Result<CaTrust, CliError> {
    let file = PinFile::new(env.dirs.pinned_keys_file(slug));
    let pinned = file.load()?;
    Ok(pins::evaluate(
        &target.url,
        file,
        pinned,
        &config.user_ca_keys,
        config.max_ttl,
        accepted,
    )?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Commands' surroundings inside `home`, quiet, with `auth_sock` as the
    /// agent.
    pub(super) fn env_in(home: &Path, auth_sock: Option<PathBuf>) -> Env {
        Env {
            dirs: Dirs {
                ssh: home.join(".ssh"),
                config: home.join(".config").join("jit-ssh"),
                data: home.join(".local").join("share").join("jit-ssh"),
            },
            browser: None,
            auth_sock,
            ui: Ui {
                quiet: true,
                tty: false,
            },
        }
    }

    #[test]
    fn skew_is_reported_both_ways_beyond_thirty_seconds() {
        let local = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(skew_warning(Some(local + Duration::from_secs(10)), local).is_none());
        assert!(skew_warning(Some(local + Duration::from_secs(31)), local)
            .unwrap()
            .contains("31s ahead"));
        assert!(skew_warning(Some(local - Duration::from_secs(300)), local)
            .unwrap()
            .contains("300s behind"));
        assert!(skew_warning(None, local).is_none());
    }
}
