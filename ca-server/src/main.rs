//! `jit-ssh-ca`: parses arguments, sets up logging, and calls the library.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use ca_server::authority::{HostRevocation, RevocationChange};
use ca_server::ca_keys::{self, CaKeyType};
use ca_server::config::Config;
#[cfg(feature = "dev-idp")]
use ca_server::dev::DevOptions;
use ca_server::secret::Passphrase;
use ca_server::store::{self, read_audit, AuditFilter, DATABASE_FILE};
use ca_server::{audit, server, unix_now};
use clap::{Parser, Subcommand, ValueEnum};
use jit_ssh_common::duration::parse_duration;
use jit_ssh_common::text::{escape_control, escape_control_lines};

#[derive(Parser)]
#[command(
    name = "jit-ssh-ca",
    version,
    about = "SSH certificate authority for just-in-time access"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::Args)]
#[group(skip)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["serial", "identity", "key_fingerprint"])
))]
struct RevocationArgs {
    /// The TOML configuration file (for its data_dir and its issuers).
    #[arg(long)]
    config: PathBuf,
    /// One certificate, by serial (decimal, as in `jit-ssh-ca audit`).
    #[arg(long)]
    serial: Option<String>,
    /// Every certificate of an identity, and everything it may do at the CA:
    /// user@issuer as in `jit-ssh-ca audit`, for an [[oidc]] issuer's name
    /// (everyone showing that name, and every subject seen with it), or
    /// sub:<sub>@<issuer> for exactly one person (the sub the audit shows).
    #[arg(long)]
    identity: Option<String>,
    /// Every certificate for a key, by SHA256:... fingerprint.
    #[arg(long)]
    key_fingerprint: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the user and host CA keys (encrypted) and an example config.
    #[command(after_help = "Examples:\n  \
        JIT_SSH_CA_PASSPHRASE=... jit-ssh-ca init --data-dir /var/lib/jit-ssh-ca\n  \
        jit-ssh-ca init --data-dir /var/lib/jit-ssh-ca --passphrase-file /etc/jit-ssh-ca/passphrase --key-type ecdsa-p256")]
    Init {
        /// Directory for keys and the database (created 0700).
        #[arg(long)]
        data_dir: PathBuf,
        /// Algorithm of the CA keys.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::Ed25519)]
        key_type: KeyTypeArg,
        /// Read the passphrase from this file instead of JIT_SSH_CA_PASSPHRASE.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Run a throw-away CA with a built-in identity provider, for trying
    /// jit-ssh and for tests. Loopback only; never for real access.
    #[cfg(feature = "dev-idp")]
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca dev\n  \
        jit-ssh-ca dev --listen 127.0.0.1:9000 --user dana:eng,sre --user erin:release-managers\n  \
        jit-ssh-ca dev --auto-login alice       # no login page: for demos and scripts\n  \
        jit-ssh-ca dev --data-dir /tmp/jit-dev   # keep keys, records and policies")]
    Dev {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Loopback address for /metrics (default: a free port, shown in
        /// the banner).
        #[arg(long, default_value = "127.0.0.1:0")]
        metrics_listen: std::net::SocketAddr,
        /// Keep keys and database here (default: a temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A dev user and its groups, e.g. `alice:eng,sre` (repeatable;
        /// default: alice:eng, bob:eng,sre, carol:sre-leads).
        #[arg(long = "user")]
        users: Vec<ca_server::dev::idp::DevUser>,
        /// Sign every login in as this user with no page (demos, scripts).
        #[arg(long)]
        auto_login: Option<String>,
        /// Policy directory (default: the example policies, copied into the
        /// data directory where edits are reloaded).
        #[arg(long)]
        policy_dir: Option<PathBuf>,
    },
    // `dev` in a build without it: not listed, so production help offers no
    // mode that is not there, but still taken (with whatever follows) so
    // that someone following the README learns why it is missing rather
    // than reading "unrecognized subcommand".
    #[cfg(not(feature = "dev-idp"))]
    #[command(
        hide = true,
        disable_help_flag = true,
        about = "Not in this build: it was built without the `dev-idp` feature"
    )]
    Dev {
        // Whatever followed `dev`; never looked at.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ignored: Vec<std::ffi::OsString>,
    },
    /// Run the CA.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca serve --config /etc/jit-ssh-ca/jit-ssh-ca.toml\n  \
        jit-ssh-ca --log-format json serve --config /etc/jit-ssh-ca/jit-ssh-ca.toml\n\n\
        SIGHUP reloads the policy; SIGTERM drains requests in flight and exits 0.")]
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a consistent copy of the database while the CA runs.
    #[command(
        after_help = "Example:\n  jit-ssh-ca backup --config /etc/jit-ssh-ca/jit-ssh-ca.toml --out /backup/jit-ssh-ca-$(date +%F).db"
    )]
    Backup {
        /// The TOML configuration file (for its data_dir).
        #[arg(long)]
        config: PathBuf,
        /// Where to write the copy (must not exist; created 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// List issued certificates and denials from the database.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca audit --config /etc/jit-ssh-ca/jit-ssh-ca.toml --since 1h\n  \
        jit-ssh-ca audit --config /etc/jit-ssh-ca/jit-ssh-ca.toml --identity alice --json")]
    Audit {
        /// The TOML configuration file (for its data_dir).
        #[arg(long)]
        config: PathBuf,
        /// Only events newer than this, e.g. "1h", "30m".
        #[arg(long)]
        since: Option<String>,
        /// Only this identity ("alice" or "alice@corp").
        #[arg(long)]
        identity: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate, an identity or a key (listed in the KRL at
    /// GET /v1/krl; a key also gets no new certificates, and an identity can
    /// do nothing at the CA, until `unrevoke`). Writes the database directly,
    /// audited as operator@local.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca revoke --config /etc/jit-ssh-ca/jit-ssh-ca.toml --serial 1783332000482917 --reason \"laptop stolen\"\n  \
        jit-ssh-ca revoke --config /etc/jit-ssh-ca/jit-ssh-ca.toml --identity bob@corp --reason \"left the company\"\n  \
        jit-ssh-ca revoke --config /etc/jit-ssh-ca/jit-ssh-ca.toml --identity 'sub:00u1a2b3c4@corp' --reason \"account taken over\"\n  \
        jit-ssh-ca revoke --config /etc/jit-ssh-ca/jit-ssh-ca.toml --key-fingerprint SHA256:abc... --reason \"key leaked\"")]
    Revoke {
        #[command(flatten)]
        target: RevocationArgs,
    },
    /// Lift a revocation: an identity or key may get certificates again
    /// (certificates revoked with it stay revoked); a serial leaves the KRL.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca unrevoke --config /etc/jit-ssh-ca/jit-ssh-ca.toml --identity bob@corp --reason \"back from leave\"")]
    Unrevoke {
        #[command(flatten)]
        target: RevocationArgs,
    },
    /// Check policy files, or explain a decision (see docs/policies.md).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse and validate every policy file as the server would.
    /// Exit 0 when valid, 1 when not.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca policy check --config /etc/jit-ssh-ca/jit-ssh-ca.toml\n  \
        jit-ssh-ca policy check --policy-dir ./policies")]
    Check {
        /// The TOML configuration file (its policy_dir, issuers and lifetimes).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Check this directory instead of the config's policy_dir.
        #[arg(long)]
        policy_dir: Option<PathBuf>,
    },
    /// Print the decision and its trace for a token's claims, without signing.
    /// Exit 0 when allowed, 3 when denied, 1 on error.
    ///
    /// Approved access requests of the identity whose windows are open at the
    /// time are read from the CA's database (the config's data_dir, or
    /// --database), so the answer matches the server's.
    #[command(after_help = "Examples:\n  \
        jit-ssh-ca policy explain --config jit-ssh-ca.toml --claims bob.json --principal deploy --at 2026-12-01T18:55:00+01:00\n  \
        jit-ssh-ca policy explain --config jit-ssh-ca.toml --claims bob.json --principal root --database /backup/jit-ssh-ca.db")]
    Explain {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Use this directory instead of the config's policy_dir.
        #[arg(long)]
        policy_dir: Option<PathBuf>,
        /// JSON file with the ID token's claims (its decoded payload).
        #[arg(long)]
        claims: PathBuf,
        /// A principal to ask for (repeatable); none asks for everything granted.
        #[arg(long)]
        principal: Vec<String>,
        /// Lifetime to ask for, e.g. "10m".
        #[arg(long)]
        ttl: Option<String>,
        /// Evaluate at this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// The client address the request comes from.
        #[arg(long, default_value = "127.0.0.1")]
        from: std::net::IpAddr,
        /// Read held approvals from this database instead of the config's
        /// data_dir (read-only).
        #[arg(long)]
        database: Option<PathBuf>,
    },
}

/// Ends the process with this exit code, after the command printed its output.
#[derive(Debug)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Clone, Copy, ValueEnum)]
enum KeyTypeArg {
    Ed25519,
    EcdsaP256,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines are written by a background thread, many per write(2) (see
    // `log_writer`); the guard writes what is left on exit.
    let (stderr, flush_on_exit) = match ca_server::log_writer::gathered_lines(std::io::stderr()) {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("jit-ssh-ca: error: cannot start the log writer thread: {error}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let result = run(cli);
    // Log lines first, then the error that ended the run.
    drop(flush_on_exit);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(Exit(code)) = error.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("jit-ssh-ca: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            data_dir,
            key_type,
            passphrase_file,
        } => init(&data_dir, key_type, passphrase_file.as_deref()),
        #[cfg(feature = "dev-idp")]
        Command::Dev {
            listen,
            metrics_listen,
            data_dir,
            users,
            auto_login,
            policy_dir,
        } => dev(DevOptions {
            listen,
            metrics_listen,
            data_dir,
            users,
            auto_login,
            policy_dir,
        }),
        #[cfg(not(feature = "dev-idp"))]
        Command::Dev { .. } => bail!("{DEV_LEFT_OUT}"),
        Command::Serve { config } => serve(&config),
        Command::Audit {
            config,
            since,
            identity,
            json,
        } => audit(&config, since.as_deref(), identity, json),
        Command::Backup { config, out } => backup(&config, &out),
        Command::Revoke { target } => revocation(target, RevocationChange::Revoke),
        Command::Unrevoke { target } => revocation(target, RevocationChange::Lift),
        Command::Policy { command } => policy(command),
    }
}

fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    use ca_server::policy::{cli, load_dir, CertRequest, Decision};
    match command {
        PolicyCommand::Check { config, policy_dir } => {
            let config = config.as_deref().map(Config::load).transpose()?;
            let dir = match (policy_dir, &config) {
                (Some(dir), _) => dir,
                (None, Some(config)) => config.policy_dir.clone(),
                (None, None) => bail!("give --config FILE (or --policy-dir DIR)"),
            };
            let report = cli::check(&dir, &cli::context(config.as_ref()));
            if report.ok {
                print!("{}", report.text);
                Ok(())
            } else {
                eprint!("{}", report.text);
                Err(Exit(1).into())
            }
        }
        PolicyCommand::Explain {
            config,
            policy_dir,
            claims,
            principal,
            ttl,
            at,
            from,
            database,
        } => {
            let config = Config::load(&config)?;
            let dir = policy_dir.unwrap_or_else(|| config.policy_dir.clone());
            let (set, _) = load_dir(&dir, &cli::context(Some(&config))).map_err(|diagnostics| {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                anyhow::anyhow!(
                    "the policy is invalid (run `policy check`):\n{}",
                    lines.join("\n")
                )
            })?;
            let text = std::fs::read_to_string(&claims)
                .with_context(|| format!("reading {}", claims.display()))?;
            let claims_json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", claims.display()))?;
            let identity = cli::identity_from_claims(&config.issuers, &claims_json)
                .map_err(anyhow::Error::msg)?;
            let mut principals: Vec<String> = principal;
            principals.sort();
            principals.dedup();
            if let Some(bad) = principals
                .iter()
                .find(|p| !ca_server::identity::is_login_name(p))
            {
                bail!("--principal {bad:?} is not a valid login name");
            }
            let ttl = ttl
                .map(|t| cli::parse_ttl(&t).map_err(anyhow::Error::msg))
                .transpose()?;
            let now = match at {
                Some(at) => cli::parse_at(&at).map_err(anyhow::Error::msg)?,
                None => unix_now(),
            };
            // The approvals the server would count: open windows only, of
            // requests by this (iss, sub); without a `sub` the claims name
            // no one whose requests they could be.
            let db = database.unwrap_or_else(|| config.data_dir.join(DATABASE_FILE));
            let has_subject = claims_json
                .get("sub")
                .is_some_and(serde_json::Value::is_string);
            let approved = if !has_subject {
                eprintln!(
                    "note: the claims have no sub; held approvals, which belong to an issuer's sub, are not counted"
                );
                Vec::new()
            } else if db.exists() {
                store::open_grants_offline(&db, &identity.key(), now)
                    .with_context(|| format!("reading held approvals from {}", db.display()))?
                    .iter()
                    .filter_map(|r| r.as_approved(now))
                    .collect()
            } else {
                eprintln!(
                    "note: no database at {}; held approvals are not counted (--database FILE)",
                    db.display()
                );
                Vec::new()
            };
            let request = CertRequest {
                principals,
                ttl,
                client_addr: from,
                approved,
            };
            let (decision, text) = cli::explain(&set, &identity, &request, now);
            print!("{}", escape_control_lines(&text));
            match decision {
                Decision::Allow(_) => Ok(()),
                Decision::Deny(_) => Err(Exit(3).into()),
            }
        }
    }
}

fn init(
    data_dir: &Path,
    key_type: KeyTypeArg,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<()> {
    let passphrase = Passphrase::load(passphrase_file).map_err(anyhow::Error::msg)?;
    let key_type = match key_type {
        KeyTypeArg::Ed25519 => CaKeyType::Ed25519,
        KeyTypeArg::EcdsaP256 => CaKeyType::EcdsaP256,
    };
    ca_keys::init(data_dir, key_type, &passphrase)?;
    let data_dir = std::fs::canonicalize(data_dir).context("resolving the data directory")?;
    let example = data_dir.join("jit-ssh-ca.example.toml");
    if !example.exists() {
        std::fs::write(&example, example_config(&data_dir, passphrase_file))
            .with_context(|| format!("writing {}", example.display()))?;
    }
    let policies = data_dir.join("policies");
    ca_server::policy::write_examples(&policies, &[])
        .with_context(|| format!("writing example policies to {}", policies.display()))?;
    let user_pub = std::fs::read_to_string(data_dir.join("keys/user-ca-1.pub"))?;
    println!("Created CA keys in {}", data_dir.display());
    println!("  user CA: {}", user_pub.trim());
    println!("Example config: {}", example.display());
    println!(
        "Example policies: {} (edit them: see docs/policies.md)",
        policies.display()
    );
    println!("Hosts trust the user CA with:  TrustedUserCAKeys <file with the line above>");
    Ok(())
}

fn example_config(data_dir: &Path, passphrase_file: Option<&Path>) -> String {
    let passphrase = match passphrase_file {
        Some(path) => format!("passphrase_file = {:?}", path.display().to_string()),
        None => "# passphrase_file = \"/run/secrets/jit-ssh-ca-passphrase\"   # else env JIT_SSH_CA_PASSPHRASE".into(),
    };
    format!(
        r#"# jit-ssh-ca configuration (see docs/deploy.md). Start with:
#   jit-ssh-ca serve --config THIS_FILE

# Plain HTTP is allowed only on loopback; anything else needs [tls].
listen = "127.0.0.1:8443"
# metrics_listen = "127.0.0.1:9464"   # /metrics (and /healthz, /readyz): plain HTTP, no
#                                     # authentication; keep it on loopback or a private address
data_dir = {data_dir:?}
policy_dir = "policies"
{passphrase}
# token_leeway = "60s"      # clock skew allowed on exp/nbf/iat (at most 60s)
# request_timeout = "10s"
# max_in_flight = 1024      # more concurrent requests are answered 429
# access_request_pending = "1h"   # an undecided access request expires after this
# reserved_logins = ["jenkins", "svc-*"]   # added to the built-in accounts (root, system and
#                                          # cloud-image accounts) templates never expand to

# [tls]
# cert = "/etc/jit-ssh-ca/tls.crt"
# key  = "/etc/jit-ssh-ca/tls.key"

# [client]
# ssh_hosts = ["*.corp.example"]   # hosts that trust this CA: `jit-ssh ssh-config --install`
#                                  # runs jit-ssh before ssh to these only

# [certs]
# default_ttl = "5m"        # when the client does not ask
# max_ttl = "60m"           # never more than this (hard ceiling 60m)
# backdate = "60s"          # valid_after = now - backdate, for slow client clocks

# One block per trusted OpenID provider.
[[oidc]]
name = "corp"
issuer = "https://idp.example.com"
client_id = "jit-ssh"                     # the audience ID tokens must carry
username_claim = "preferred_username"     # or "email" (then email_verified must be true,
# email_domains = ["corp.example"]        # and email_domains is required: an address of any
#                                         # other domain is refused, never made the same user)
groups_claim = "groups"
scopes = ["openid", "email", "profile", "groups", "offline_access"]
# require_nonce = true      # a certificate needs an ID token whose nonce names its key; a token
#                           # without one renews only a key signed in with one (docs/security.md)
# nonce_session = "12h"     # ...for this long after that sign-in

# A workload issuer: its tokens carry no nonce, so it must not require one.
# [[oidc]]
# name = "github"
# issuer = "https://token.actions.githubusercontent.com"
# client_id = "jit-ssh"
# username_claim = "repository"
# require_nonce = false
"#,
        data_dir = data_dir.display().to_string()
    )
}

fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    // Before the runtime's threads exist: reading it from the environment
    // removes it there.
    let passphrase =
        Passphrase::load(config.passphrase_file.as_deref()).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let state = server::build_state(&config, passphrase).await?;
        server::serve(&config, state, shutdown_signal()).await?;
        Ok(())
    })
}

/// What a build without the `dev-idp` feature says when asked for `dev`.
#[cfg(not(feature = "dev-idp"))]
const DEV_LEFT_OUT: &str = "this jit-ssh-ca was built without the `dev-idp` feature (production \
    builds leave it out with --no-default-features), so it has no dev mode; for `jit-ssh-ca dev`, \
    build with the default features: cargo build --release --locked";

#[cfg(feature = "dev-idp")]
fn dev(options: DevOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(ca_server::dev::run(
        options,
        |banner| println!("{banner}"),
        shutdown_signal(),
    ))?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn audit(
    config_path: &Path,
    since: Option<&str>,
    identity: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let since = match since {
        Some(text) => {
            let age = parse_duration(text)
                .map_err(anyhow::Error::msg)
                .context("--since")?;
            Some(unix_now().saturating_sub(age.as_secs()))
        }
        None => None,
    };
    let db = config.data_dir.join(DATABASE_FILE);
    if !db.exists() {
        bail!("no database at {} (has the CA run yet?)", db.display());
    }
    let entries = read_audit(&db, &AuditFilter { since, identity })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", audit::render_table(&entries));
    }
    Ok(())
}

fn revocation(args: RevocationArgs, change: RevocationChange) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let request = ca_proto::RevocationRequest {
        serial: args.serial,
        identity: args.identity,
        key_fingerprint: args.key_fingerprint,
        reason: args.reason,
    };
    let revocation = HostRevocation::new(&request, change, &config.issuers, unix_now())?;
    let db = config.data_dir.join(DATABASE_FILE);
    if !db.exists() {
        bail!("no database at {} (has the CA run yet?)", db.display());
    }
    let target = revocation.target().clone();
    let done = revocation.write(&db)?;
    match change {
        RevocationChange::Lift => println!(
            "Lifted the revocation of {} (KRL version {}).",
            escape_control(&target.to_string()),
            done.krl_version
        ),
        RevocationChange::Revoke => {
            println!(
                "Revoked {}: {} unexpired certificate(s) newly listed in the KRL (version {}){}.",
                escape_control(&target.to_string()),
                done.serials.len(),
                done.krl_version,
                match target {
                    store::RevocationTarget::Serial(_) => "",
                    store::RevocationTarget::Key(_) => {
                        "; no new certificates until `jit-ssh-ca unrevoke`"
                    }
                    store::RevocationTarget::Identity(_)
                    | store::RevocationTarget::Subject { .. } => {
                        "; it can do nothing at the CA until `jit-ssh-ca unrevoke`"
                    }
                }
            );
            println!("Hosts refuse them once `jit-ssh host sync-krl` has run (docs/hosts.md).");
        }
    }
    Ok(())
}

fn backup(config_path: &Path, out: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let db = config.data_dir.join(DATABASE_FILE);
    if !db.exists() {
        bail!("no database at {} (has the CA run yet?)", db.display());
    }
    if out.exists() {
        bail!("{} exists: refusing to overwrite it", out.display());
    }
    let certificates = store::backup(&db, out)?;
    println!(
        "Backed up {} ({certificates} certificates) to {}",
        db.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// The subcommands `--help` lists.
    fn listed() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .filter(|command| !command.is_hide_set())
            .map(|command| command.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[cfg(feature = "dev-idp")]
    #[test]
    fn dev_mode_is_listed_and_taken_when_built_in() {
        assert!(listed().contains(&"dev".to_string()), "{:?}", listed());
        let cli = Cli::try_parse_from([
            "jit-ssh-ca",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "dana:eng",
        ])
        .expect("dev parses");
        assert!(matches!(cli.command, Command::Dev { .. }));
    }

    #[cfg(not(feature = "dev-idp"))]
    #[test]
    fn a_build_without_dev_mode_does_not_list_it_and_says_why_when_asked() {
        assert!(!listed().contains(&"dev".to_string()), "{:?}", listed());
        assert!(listed().contains(&"serve".to_string()), "{:?}", listed());
        for args in [
            vec!["jit-ssh-ca", "dev"],
            vec!["jit-ssh-ca", "dev", "--listen", "127.0.0.1:0", "--help"],
        ] {
            let cli = Cli::try_parse_from(&args).expect("dev is still taken");
            let error = run(cli).expect_err("there is no dev mode in this build");
            let message = format!("{error:#}");
            assert!(
                message.contains("built without the `dev-idp` feature")
                    && message.contains("no dev mode"),
                "{message}"
            );
        }
    }
}
