//! The `jit-ssh` command line: clap's definitions of every argument (their
//! doc comments are the `--help` text), and their conversion into what the
//! library's commands take: the CA target (`--ca`, `JIT_SSH_CA`,
//! `~/.config/jit-ssh/config.toml` or the remembered default CA, with
//! `--ca-cert` read), the sign-in flow,
//! and the ID token given in a file or a variable.

use std::path::PathBuf;
use std::time::Duration;

use ca_client::commands::{CaTarget, Flow, TokenSource};
use ca_client::error::{CliError, EXIT_CODES_HELP};
use ca_client::known_cas;
use ca_client::paths::Dirs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jit_ssh_common::duration::parse_duration;
use jit_ssh_common::Secret;

use crate::var;

#[derive(Parser)]
#[command(
    name = "jit-ssh",
    version,
    about = "Short-lived SSH certificates from a jit-ssh CA",
    long_about = "Short-lived SSH certificates from a jit-ssh CA.\n\n\
        `jit-ssh login` once; then `jit-ssh ssh-config --install` and plain `ssh` renews on demand.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub ca: CaArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct CaArgs {
    /// The CA: its base URL, or the name of a CA a login remembered (its host,
    /// plus `_PORT`); else JIT_SSH_CA, else `ca` in ~/.config/jit-ssh/config.toml,
    /// else the CA the first login remembered.
    #[arg(long, env = "JIT_SSH_CA", global = true)]
    pub ca: Option<String>,
    /// PEM file of a private root that signed the CA's (and IdP's) TLS certificate.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print nothing but errors, warnings and what you must do (where to sign in) on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FlowArg {
    /// Authorization code + PKCE, redirect to a loopback port.
    Browser,
    /// Device authorization (a code to enter on another device).
    Device,
}

#[derive(Args)]
pub struct InteractiveArgs {
    /// Sign-in flow; default: browser when a display is likely, else device.
    #[arg(long, value_enum)]
    pub flow: Option<FlowArg>,
    /// How long to wait for the sign-in to finish (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How commands that act as a user authenticate: `login` and the access
/// request commands alike.
#[derive(Args)]
pub struct UserAuthArgs {
    #[command(flatten)]
    pub interactive: InteractiveArgs,
    /// Identity provider name at the CA, when it trusts several.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Use the ID token in FILE instead of the sign-in session or signing in.
    #[arg(long, conflicts_with = "id_token_env")]
    pub id_token_file: Option<PathBuf>,
    /// Use the ID token in environment variable VAR instead.
    #[arg(long)]
    pub id_token_env: Option<String>,
}

impl UserAuthArgs {
    /// The issuer asked for, and where the ID token comes from.
    pub fn into_parts(self) -> Result<(Option<String>, TokenSource), CliError> {
        let source = match read_token(self.id_token_file, self.id_token_env)? {
            Some(token) => TokenSource::Given(token),
            None => TokenSource::Interactive {
                flow: default_flow(self.interactive.flow),
                timeout: self.interactive.timeout,
            },
        };
        Ok((self.issuer, source))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Sign in and load a fresh certificate into the ssh-agent.
    #[command(after_help = "Examples:\n  \
        jit-ssh login --ca https://ca.example.com\n  \
        jit-ssh login --flow device                 # on a machine without a browser\n  \
        jit-ssh login --principal deploy --ttl 10m\n  \
        jit-ssh login --id-token-env ACTIONS_ID_TOKEN --no-agent --json   # a CI job")]
    Login {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// Principal to ask for (repeatable); default: all the policy grants.
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// Lifetime to ask for (e.g. 10m); default: the CA's.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Write key and certificate under ~/.ssh/jit-ssh/<ca>/ instead of the agent.
        #[arg(long)]
        no_agent: bool,
        /// Make the agent ask for confirmation at each use of the key.
        #[arg(long)]
        confirm: bool,
        /// Trust this user-CA key (SHA256:… fingerprint, repeatable) although it replaces the
        /// keys pinned at the first login; only after the CA's operators confirm it.
        #[arg(long = "accept-ca-key", value_name = "FINGERPRINT")]
        accept_ca_keys: Vec<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 at once when a certificate valid for another minute is loaded;
    /// else renew silently; else sign in. Meant for `Match exec`.
    #[command(after_help = "Examples:\n  \
        jit-ssh ensure && ssh host\n  \
        jit-ssh ensure --no-login || echo 'sign in again with jit-ssh login'")]
    Ensure {
        #[command(flatten)]
        interactive: InteractiveArgs,
        /// Fail (exit 14) instead of starting an interactive sign-in.
        #[arg(long)]
        no_login: bool,
    },
    /// The jit-ssh certificates in the agent and on disk.
    #[command(
        after_help = "Examples:\n  jit-ssh status\n  jit-ssh status --json | jq '.[0].valid_before'"
    )]
    Status {
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print (or --install into ~/.ssh/config) the block that makes plain ssh
    /// renew on demand, for the hosts the CA serves only.
    #[command(
        after_help = "Examples:\n  jit-ssh ssh-config            # show what would be added\n  \
            jit-ssh ssh-config --install  # add it (idempotent; backs up ~/.ssh/config)\n  \
            jit-ssh ssh-config --install --hosts '*.corp.example,10.1.*'\n  \
            jit-ssh ssh-config --uninstall  # remove exactly what --install added"
    )]
    SshConfig {
        /// Add it to ~/.ssh/config (idempotent, original backed up) and the host CA to known_hosts.
        #[arg(long, conflicts_with = "uninstall")]
        install: bool,
        /// Remove the block and the known_hosts lines --install added.
        #[arg(long)]
        uninstall: bool,
        /// OpenSSH host patterns of the CA's hosts (comma-separated, repeatable);
        /// default: the patterns the CA publishes.
        #[arg(long, value_name = "PATTERNS")]
        hosts: Vec<String>,
    },
    /// `ensure`, then run ssh with these arguments.
    #[command(
        after_help = "Examples:\n  jit-ssh ssh alice@db1.example.com\n  jit-ssh ssh -p 2222 deploy@127.0.0.1 uptime"
    )]
    Ssh {
        /// Arguments for ssh.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove the certificate from the agent and disk, and end the sign-in session.
    #[command(after_help = "Example:\n  jit-ssh logout")]
    Logout {
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Ask for principals that need approval (an access request), and wait
    /// for the decision.
    ///
    /// The policy may approve it at once (`[rule.approval.auto]`), and under a
    /// rule with `break_glass = true` you may approve it yourself in an
    /// emergency with --break-glass: it is logged, announced to the webhooks
    /// and must be reviewed afterwards by an approver (`jit-ssh review`).
    #[command(after_help = "Examples:\n  \
        jit-ssh request --principal root --reason \"INC-1234: disk full\" --for 30m\n  \
        jit-ssh request --principal root --reason \"INC-1234\" --no-wait --json\n  \
        jit-ssh request --principal root --reason \"INC-99: site down, no approver awake\" --break-glass\n  \
        jit-ssh request --principal root --reason \"CHG-42: kernel upgrade\" --start 2026-12-01T22:00:00Z --for 2h\n  \
        jit-ssh request --principal root --reason \"INC-7\" --from-first-use --for 30m")]
    Request {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// Principal to ask for (repeatable, at least one).
        #[arg(long = "principal", required = true)]
        principals: Vec<String>,
        /// Why (the policy may require one).
        #[arg(long, default_value = "")]
        reason: String,
        /// Window length once approved (e.g. 30m); default: the policy's longest.
        #[arg(long = "for", value_parser = parse_duration)]
        window: Option<Duration>,
        /// Emergency: approve it yourself at once (only where the policy's
        /// rule sets break_glass; --reason required). Reviewed afterwards.
        #[arg(long)]
        break_glass: bool,
        /// Schedule the window: it opens at this RFC 3339 time (e.g.
        /// 2026-12-01T22:00:00Z), or at approval if that is later. At most
        /// 60 s in the past and 7 days ahead.
        #[arg(long, visible_alias = "at", conflicts_with = "from_first_use")]
        start: Option<String>,
        /// Open the window with your first certificate that uses it, not at
        /// approval; an approved grant you do not use lapses after the
        /// pending time (1h by default).
        #[arg(long)]
        from_first_use: bool,
        /// Return at once instead of waiting for the decision.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait for the decision.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        wait: Duration,
        /// Print the request as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Your access requests, and those you may approve.
    #[command(
        after_help = "Examples:\n  jit-ssh requests\n  jit-ssh requests --pending --json\n  jit-ssh requests --needs-review"
    )]
    Requests {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// Only pending requests.
        #[arg(long, conflicts_with = "needs_review")]
        pending: bool,
        /// Only break-glass requests that await your review (as an approver
        /// of their rule, or an administrator).
        #[arg(long)]
        needs_review: bool,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Approve an access request (as one of its approvers).
    #[command(after_help = "Example:\n  jit-ssh approve 42 --comment \"go ahead\"")]
    Approve {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// The request id.
        id: u64,
        /// A comment recorded with the approval.
        #[arg(long)]
        comment: Option<String>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Mark a break-glass access request reviewed (as an approver of its
    /// rule, or an administrator; never your own). Recorded in the audit log.
    #[command(after_help = "Example:\n  jit-ssh review 42 --comment \"justified: INC-99\"")]
    Review {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// The request id.
        id: u64,
        /// A comment recorded with the review.
        #[arg(long)]
        comment: Option<String>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Deny an access request (as one of its approvers).
    #[command(after_help = "Example:\n  jit-ssh deny 42 --reason \"use the runbook\"")]
    Deny {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// The request id.
        id: u64,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// End your access request: later certificates lack its principals and
    /// those issued under it are revoked.
    #[command(after_help = "Example:\n  jit-ssh done 42")]
    Done {
        #[command(flatten)]
        auth: UserAuthArgs,
        /// The request id.
        id: u64,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Commands for the hosts that accept jit-ssh certificates.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        jit-ssh completions bash > ~/.local/share/bash-completion/completions/jit-ssh\n  \
        jit-ssh completions zsh > \"${fpath[1]}/_jit-ssh\"\n  \
        jit-ssh completions fish > ~/.config/fish/completions/jit-ssh.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum HostCommand {
    /// Fetch the CA's KRL (revoked certificates) for sshd's `RevokedKeys`:
    /// checked and signature-verified before it atomically replaces the file;
    /// on any failure the last good file stays (docs/hosts.md).
    #[command(after_help = "Examples:\n  \
        jit-ssh host sync-krl --ca https://ca.example.com --out /etc/ssh/jit-ssh.krl \\\n      \
        --trusted-ca-keys /etc/ssh/jit-ssh-user-ca.pub")]
    SyncKrl {
        /// The KRL file sshd's `RevokedKeys` names.
        #[arg(long)]
        out: PathBuf,
        /// Verify the KRL's signature with these user-CA keys (e.g. the file
        /// `TrustedUserCAKeys` names); default: the keys the CA publishes.
        #[arg(long)]
        trusted_ca_keys: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl CaArgs {
    /// The CA to talk to: `--ca` (a URL, or the name of a remembered CA),
    /// else `JIT_SSH_CA`, else the config file, else the CA the first
    /// login remembered; refused unless it may carry tokens (https, or http
    /// on loopback). A remembered CA brings the TLS root its login was given.
    pub fn target(&self, dirs: &Dirs) -> Result<CaTarget, CliError> {
        let given = match &self.ca {
            Some(given) => given.clone(),
            None => match config_file_ca(dirs)? {
                Some(url) => url,
                None => {
                    let known = known_cas::default_ca(dirs).map_err(CliError::other)?;
                    let known = known.ok_or_else(|| {
                        CliError::other(
                            "no CA given: sign in once with `jit-ssh login --ca URL` (it is \
                             remembered), or pass --ca URL, set JIT_SSH_CA, or put `ca = \"URL\"` \
                             in ~/.config/jit-ssh/config.toml",
                        )
                    })?;
                    known.url
                }
            },
        };
        let url = if given.contains("://") {
            given
        } else {
            match known_cas::find(dirs, &given).map_err(CliError::other)? {
                Some(known) => known.url,
                None => return Err(not_a_ca_url(dirs, &given)),
            }
        };
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| CliError::other(format!("CA URL {url:?} is not a URL: {e}")))?;
        if !ca_client::ca::may_carry_tokens(&parsed) {
            return Err(CliError::other(format!(
                "CA URL {url} must be https:// (plain http only on loopback): \
                 ID tokens must not cross the network unencrypted"
            )));
        }
        let root_pem = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                CliError::other(format!("cannot read --ca-cert {}: {e}", path.display()))
            })?),
            None => remembered_root(dirs, &url)?,
        };
        Ok(CaTarget { url, root_pem })
    }
}

/// The TLS root remembered for the CA at `url`, when its login had one.
fn remembered_root(dirs: &Dirs, url: &str) -> Result<Option<Vec<u8>>, CliError> {
    let Ok(slug) = ca_client::paths::CaSlug::from_url(url) else {
        return Ok(None);
    };
    Ok(known_cas::find(dirs, &slug.0)
        .map_err(CliError::other)?
        .filter(|known| known.url == url.trim_end_matches('/'))
        .and_then(|known| known.root_pem))
}

/// The error for a `--ca` that is neither a URL nor a remembered CA's name:
/// a bare `host:port` most likely lacks its `https://`.
fn not_a_ca_url(dirs: &Dirs, given: &str) -> CliError {
    let known: Vec<String> = known_cas::all(dirs).into_iter().map(|c| c.name).collect();
    let known = if known.is_empty() {
        String::new()
    } else {
        format!(" (remembered CAs: {})", known.join(", "))
    };
    CliError::other(format!(
        "--ca {given:?} is neither a URL nor the name of a remembered CA{known}: \
         a CA URL starts with its scheme, e.g. --ca https://{given}"
    ))
}

/// `ca` in `config.toml`; `None` when the file or the key is absent.
fn config_file_ca(dirs: &Dirs) -> Result<Option<String>, CliError> {
    #[derive(serde::Deserialize)]
    struct File {
        ca: Option<String>,
    }
    let path = dirs.config_file();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let file: File =
        toml::from_str(&text).map_err(|e| CliError::other(format!("{}: {e}", path.display())))?;
    Ok(file.ca)
}

/// The flow asked for, else the browser when a display is likely.
pub fn default_flow(choice: Option<FlowArg>) -> Flow {
    match choice {
        Some(FlowArg::Browser) => Flow::Browser,
        Some(FlowArg::Device) => Flow::Device,
        None if var("BROWSER").is_some()
            || var("DISPLAY").is_some()
            || var("WAYLAND_DISPLAY").is_some()
            || cfg!(target_os = "macos") =>
        {
            Flow::Browser
        }
        None => Flow::Device,
    }
}

/// The ID token in `file` or in the variable `env_var`, when one is given.
fn read_token(file: Option<PathBuf>, env_var: Option<String>) -> Result<Option<Secret>, CliError> {
    let text = match (file, env_var) {
        (Some(path), _) => std::fs::read_to_string(&path).map_err(|e| {
            CliError::other(format!("cannot read the ID token {}: {e}", path.display()))
        })?,
        (None, Some(name)) => std::env::var(&name).map_err(|_| {
            CliError::other(format!("environment variable {name} holds no ID token"))
        })?,
        (None, None) => return Ok(None),
    };
    let token = Secret::new(text.trim().to_string());
    if token.expose_secret().is_empty() {
        return Err(CliError::other("the ID token is empty"));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn argument_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
