//! Test harness for the end-to-end tests: the real `jit-ssh-ca` binary, the
//! real `oidc-provider` test IdP (tests/idp), and real OpenSSH (`ssh-keygen`,
//! `sshd`, `ssh`), all on 127.0.0.1.
//!
//! Every process started here is killed when its handle drops, and every wait
//! is bounded by a deadline, so a failing test cannot hang CI or leak servers.

#![allow(clippy::unwrap_used, missing_docs)]

pub mod client;

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub mod dev;

/// Passphrase the test CAs are created with.
pub const PASSPHRASE: &str = "e2e test passphrase";
/// How long any one process gets to become ready.
pub const STARTUP: Duration = Duration::from_secs(30);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a workspace binary (built by `cargo build --workspace`, which
/// `scripts/test` runs before the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        path.display()
    );
    path
}

/// Output lines of a child process, collected by a background reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Starts draining `stream` into the collection; returns a channel that
    /// sees each line as it arrives.
    pub(crate) fn drain(stream: impl Read + Send + 'static) -> (Lines, mpsc::Receiver<String>) {
        let lines = Lines::default();
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        (lines, rx)
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Waits for a line containing `needle`, up to `timeout`.
pub fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("timed out waiting for {needle:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("process exited before printing {needle:?}")
            }
        }
    }
}

/// Waits for `child` to exit, killing it after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion with a deadline; returns (status, stdout, stderr).
pub fn run(
    command: &mut Command,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    let (out, _) = Lines::drain(child.stdout.take().unwrap());
    let (err, _) = Lines::drain(child.stderr.take().unwrap());
    let status = wait_with_timeout(&mut child, timeout)?;
    // Let the reader threads finish the pipes.
    std::thread::sleep(Duration::from_millis(50));
    Ok((status, out.text(), err.text()))
}

/// A running child that is killed on drop.
pub struct Running {
    pub(crate) child: Child,
    /// Its stderr, as read so far.
    pub stderr: Lines,
}

impl Running {
    /// Takes over `child`, whose stderr must be piped, draining its stderr;
    /// the channel sees each line as it arrives.
    pub fn new(mut child: Child) -> (Running, mpsc::Receiver<String>) {
        let (stderr, lines) = Lines::drain(child.stderr.take().expect("stderr piped"));
        (Running { child, stderr }, lines)
    }

    /// Sends SIGTERM, as a service manager stopping the process would.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

// ---------------------------------------------------------------------------
// The test OpenID provider.

/// A signing key of the test IdP, for forging tokens signed by its real keys.
#[derive(Debug, Clone, Deserialize)]
pub struct IdpKey {
    pub kid: String,
    pub alg: String,
    pub private_pem: String,
}

#[derive(Deserialize)]
struct KeysFile {
    keys: Vec<IdpKey>,
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub refresh_token: Option<String>,
}

/// The test IdP (`tests/idp/idp.mjs`), an `oidc-provider` instance.
pub struct Idp {
    pub issuer: String,
    pub keys: Vec<IdpKey>,
    process: Running,
    _dir: TempDir,
}

/// Redirect URI the tests register (no listener needed: the code is read
/// from the redirect's `Location`).
pub const REDIRECT_URI: &str = "http://127.0.0.1:45678/callback";

impl Idp {
    /// Starts an IdP on a random loopback port.
    pub fn start() -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let keys_path = dir.path().join("keys.json");
        let idp_dir = repo_root().join("tests/idp");
        assert!(
            idp_dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(idp_dir.join("idp.mjs"))
            .args(["--port", "0", "--keys-out"])
            .arg(&keys_path)
            // The IdP exits when its stdin closes, i.e. when this test dies.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node must be installed (scripts/test installs it)");
        let (_, out) = Lines::drain(child.stdout.take().unwrap());
        let (stderr, _) = Lines::drain(child.stderr.take().unwrap());
        let process = Running { child, stderr };
        let ready = wait_for_line(&out, "issuer", STARTUP)
            .unwrap_or_else(|e| panic!("IdP did not start: {e}\n{}", process.stderr.text()));
        let ready: Value = serde_json::from_str(&ready).unwrap();
        let keys: KeysFile =
            serde_json::from_str(&std::fs::read_to_string(&keys_path).unwrap()).unwrap();
        Idp {
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            keys: keys.keys,
            process,
            _dir: dir,
        }
    }

    /// Logs `user` in through the real authorization-code + PKCE flow of
    /// `client_id`, exactly as a browser would, and redeems the code.
    pub async fn login(
        &self,
        user: &str,
        client_id: &str,
        nonce: Option<&str>,
    ) -> anyhow::Result<Tokens> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes::<32>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = URL_SAFE_NO_PAD.encode(rand_bytes::<16>());
        let mut query = vec![
            ("client_id", client_id.to_string()),
            ("response_type", "code".into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", "openid email profile groups offline_access".into()),
            ("state", state.clone()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".into()),
        ];
        if let Some(nonce) = nonce {
            query.push(("nonce", nonce.to_string()));
        }
        let auth = http
            .get(format!("{}/auth", self.issuer))
            .query(&query)
            .send()
            .await?;
        let interaction = self.location(&auth)?;
        let uid = interaction
            .rsplit('/')
            .next()
            .ok_or_else(|| anyhow!("no interaction uid in {interaction}"))?;
        let login = http
            .post(format!("{}/interaction/{uid}/login", self.issuer))
            .form(&[("login", user)])
            .send()
            .await?;
        let resume = self.location(&login)?;
        let callback = http.get(&resume).send().await?;
        let callback = self.location(&callback)?;
        let url = reqwest::Url::parse(&callback)?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())
        };
        if param("state").as_deref() != Some(state.as_str()) {
            bail!("state mismatch in {callback}");
        }
        let code = param("code").ok_or_else(|| anyhow!("no code in {callback}"))?;
        let response = http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("client_id", client_id),
                ("code_verifier", &verifier),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "token endpoint: {} {}",
                response.status(),
                response.text().await?
            );
        }
        Ok(response.json().await?)
    }

    /// Redeems a refresh token for fresh tokens.
    pub async fn refresh(&self, refresh_token: &str, client_id: &str) -> anyhow::Result<Tokens> {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("refresh: {} {}", response.status(), response.text().await?);
        }
        Ok(response.json().await?)
    }

    fn location(&self, response: &reqwest::Response) -> anyhow::Result<String> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .ok_or_else(|| anyhow!("expected a redirect, got {}", response.status()))?
            .to_str()?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.issuer)
        } else {
            location.to_string()
        })
    }

    /// The IdP's private key for `alg` (RS256, ES256 or EdDSA).
    pub fn key(&self, alg: &str) -> &IdpKey {
        self.keys
            .iter()
            .find(|k| k.alg == alg)
            .unwrap_or_else(|| panic!("IdP has no {alg} key"))
    }

    /// Standard claims of a token for `user` as this IdP would issue it.
    pub fn claims(&self, user: &str, aud: &str, nonce: Option<&str>, now: u64) -> Value {
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "sub": format!("user-{user}"),
            "aud": aud,
            "iat": now,
            "exp": now + 600,
            "preferred_username": user,
            "email": format!("{user}@example.com"),
            "email_verified": true,
            "groups": ["eng"],
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        claims
    }

    /// Signs `claims` with the IdP's real `alg` key.
    pub fn sign(&self, alg: &str, claims: &Value) -> String {
        let key = self.key(alg);
        let (algorithm, encoding) = match alg {
            "RS256" => (
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
            ),
            "ES256" => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap(),
            ),
            "EdDSA" => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_pem(key.private_pem.as_bytes()).unwrap(),
            ),
            other => panic!("unknown alg {other}"),
        };
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &encoding).unwrap()
    }

    /// The IdP's stderr so far, for failure messages.
    pub fn log(&self) -> String {
        self.process.stderr.text()
    }
}

/// Random bytes from the OS.
pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes
}

/// Current Unix time.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// The CA.

/// A CA data directory with keys, and a config file for it.
pub struct CaSetup {
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
}

impl CaSetup {
    /// Runs `jit-ssh-ca init` and writes a config trusting `issuers`
    /// (`(name, issuer URL)`) with client_id `jit-ssh`, plus `extra` TOML
    /// (top-level keys first, then tables).
    pub fn new(issuers: &[(&str, &str)], extra_top: &str, extra_tables: &str) -> CaSetup {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let (status, out, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .args(["init", "--data-dir"])
                .arg(&data_dir)
                .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE),
            STARTUP,
        )
        .unwrap();
        assert!(status.success(), "init failed: {out}\n{err}");
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ndiscovery_attempts = 2\n{extra_top}\n",
            data_dir.display().to_string()
        );
        for (name, issuer) in issuers {
            config.push_str(&format!(
                "[[oidc]]\nname = {name:?}\nissuer = {issuer:?}\nclient_id = \"jit-ssh\"\n"
            ));
        }
        config.push_str(extra_tables);
        // The CA refuses to start without a policy. Unless a test points
        // `policy_dir` elsewhere (tests/e2e/policy.rs uses the shipped
        // policies/), every identity of the configured issuers gets its own
        // login, as the issuance tests expect.
        let issuer_names: Vec<String> = issuers.iter().map(|(n, _)| format!("{n:?}")).collect();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("policies/test-own-login.toml"),
            format!(
                "[[rule]]\nname = \"test-own-login\"\nprincipals = [\"{{username}}\"]\n\
                 default_ttl = \"5m\"\nmax_ttl = \"60m\"\n[rule.match]\nissuer = [{}]\n",
                issuer_names.join(", ")
            ),
        )
        .unwrap();
        let config_path = dir.path().join("jit-ssh-ca.toml");
        std::fs::write(&config_path, config).unwrap();
        CaSetup {
            dir,
            data_dir,
            config_path,
        }
    }

    /// Starts `jit-ssh-ca serve`; panics with its log if it does not come up.
    pub fn start(&self) -> Ca {
        self.try_start()
            .unwrap_or_else(|(e, log)| panic!("CA did not start: {e}\n{log}"))
    }

    /// Starts `jit-ssh-ca serve`; on failure returns the error and its log.
    pub fn try_start(&self) -> Result<Ca, (anyhow::Error, String)> {
        self.try_start_with(&[], "info")
    }

    /// Starts `jit-ssh-ca [GLOBAL_ARGS] serve` with `RUST_LOG=log_filter`.
    pub fn try_start_with(
        &self,
        global_args: &[&str],
        log_filter: &str,
    ) -> Result<Ca, (anyhow::Error, String)> {
        let mut child = Command::new(bin("jit-ssh-ca"))
            .args(global_args)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stderr, rx) = Lines::drain(child.stderr.take().unwrap());
        let process = Running { child, stderr };
        match wait_for_line(&rx, "listening on ", STARTUP) {
            Ok(line) => {
                // Text or JSON log line: the URL ends at a space or quote.
                let url = line
                    .split("listening on ")
                    .nth(1)
                    .unwrap()
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap()
                    .to_string();
                Ok(Ca { url, process })
            }
            Err(e) => Err((e, process.stderr.text())),
        }
    }

    /// Runs `jit-ssh-ca serve` expecting it to refuse to start; returns its stderr.
    pub fn expect_start_failure(&self) -> String {
        let (status, _, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .arg("serve")
                .arg("--config")
                .arg(&self.config_path)
                .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE),
            STARTUP,
        )
        .unwrap();
        assert!(
            !status.success(),
            "serve should have refused to start:\n{err}"
        );
        err
    }

    /// `jit-ssh-ca audit --json` (reads the database directly).
    pub fn audit(&self, args: &[&str]) -> Vec<Value> {
        let (status, out, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .args(["audit", "--json", "--config"])
                .arg(&self.config_path)
                .args(args),
            STARTUP,
        )
        .unwrap();
        assert!(status.success(), "audit failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("audit output: {e}\n{out}"))
    }
}

/// A policy where sre members may break the glass for root, and those on
/// call get it approved by the policy.
pub const BREAK_GLASS_POLICY: &str = r#"
[[rule]]
name = "own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "sre-root"
principals = ["root"]
max_ttl = "10m"
[rule.approval]
approver_groups = ["sre-leads"]
break_glass = true
reason_required = false
[rule.approval.auto]
groups = ["oncall"]
[rule.match]
groups_any = ["sre"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]
"#;

/// Writes `text` as the only policy file of `dir/policies`; returns the
/// `policy_dir = ...` config line.
pub fn policy_dir(dir: &Path, text: &str) -> String {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("10-test.toml"), text).unwrap();
    policy_dir_line(&policies)
}

/// The repository's example policies (`policies/`), which the tests load.
pub fn shipped_policies() -> PathBuf {
    repo_root().join("policies")
}

/// The `policy_dir = ...` config line for `dir`.
pub fn policy_dir_line(dir: &Path) -> String {
    format!("policy_dir = {:?}", dir.display().to_string())
}

/// A running CA.
pub struct Ca {
    pub url: String,
    pub process: Running,
}

// ---------------------------------------------------------------------------
// OpenSSH.

/// Writes a fresh Ed25519 key pair with `ssh-keygen` and loads the private key.
pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, ssh_key::PrivateKey) {
    let path = dir.join(name);
    let (status, _, err) = run(
        Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(args),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(status.success(), "ssh-keygen failed: {err}");
    let key = ssh_key::PrivateKey::read_openssh_file(&path).unwrap();
    (path, key)
}

/// `ssh-keygen -L -f CERT` output.
pub fn ssh_keygen_list(cert_path: &Path) -> String {
    let (status, out, err) = run(
        Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(cert_path),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        status.success(),
        "ssh-keygen -L refused the certificate: {err}"
    );
    out
}

/// A real `sshd` on 127.0.0.1 that trusts a CA for logins as the current user.
pub struct Sshd {
    pub port: u16,
    pub user: String,
    process: Running,
    _dir: TempDir,
}

impl Sshd {
    /// Starts sshd trusting `ca_keys` (OpenSSH lines) and mapping the current
    /// user to `principals` (`AuthorizedPrincipalsFile`).
    pub fn start(ca_keys: &str, principals: &[&str]) -> Sshd {
        Sshd::start_with(ca_keys, principals, "")
    }

    /// [`Sshd::start`] with `extra_config` lines appended to sshd_config
    /// (e.g. `RevokedKeys /path/to.krl`).
    pub fn start_with(ca_keys: &str, principals: &[&str], extra_config: &str) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd must be installed (scripts/test installs openssh-server)");
        let dir = tempfile::tempdir().unwrap();
        let (host_key, _) = ssh_keygen(dir.path(), "host_ed25519", &["-t", "ed25519"]);
        std::fs::write(dir.path().join("trusted_ca.pub"), ca_keys).unwrap();
        let user = current_user();
        std::fs::create_dir(dir.path().join("principals")).unwrap();
        std::fs::write(
            dir.path().join("principals").join(&user),
            principals.join("\n") + "\n",
        )
        .unwrap();
        if nix_is_root() {
            // sshd's privilege separation needs this directory when run as root.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "ListenAddress 127.0.0.1:{port}\n\
                 HostKey {host}\n\
                 PidFile none\n\
                 TrustedUserCAKeys {dir}/trusted_ca.pub\n\
                 AuthorizedPrincipalsFile {dir}/principals/%u\n\
                 AuthorizedKeysFile none\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 LogLevel VERBOSE\n\
                 {extra_config}\n",
                host = host_key.display(),
                dir = dir.path().display()
            );
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, config).unwrap();
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (stderr, rx) = Lines::drain(child.stderr.take().unwrap());
            let process = Running { child, stderr };
            if wait_for_line(&rx, "Server listening on", STARTUP).is_ok() {
                return Sshd {
                    port,
                    user,
                    process,
                    _dir: dir,
                };
            }
        }
        panic!("sshd did not start");
    }

    /// Runs `ssh user@127.0.0.1 echo jit-ssh-ok` with exactly this key and
    /// certificate; returns whether the login worked and ssh's stderr.
    pub fn login(&self, key: &Path, cert: &Path) -> (bool, String) {
        let (status, out, err) = run(
            Command::new("ssh")
                .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ])
                .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
                .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
                .arg("-i")
                .arg(key)
                .arg("-o")
                .arg(format!("CertificateFile={}", cert.display()))
                .args(["-p", &self.port.to_string()])
                .arg(format!("{}@127.0.0.1", self.user))
                .arg("echo jit-ssh-ok"),
            Duration::from_secs(30),
        )
        .unwrap();
        (status.success() && out.contains("jit-ssh-ok"), err)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.process.stderr.text()
    }
}

fn current_user() -> String {
    let (_, out, _) = run(Command::new("id").arg("-un"), Duration::from_secs(5)).unwrap();
    out.trim().to_string()
}

fn nix_is_root() -> bool {
    let (_, out, _) = run(Command::new("id").arg("-u"), Duration::from_secs(5)).unwrap();
    out.trim() == "0"
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Signs `message` with `ssh-keygen -Y sign` (real OpenSSH) in `namespace`;
/// returns the armored signature.
pub fn ssh_keygen_sign(key: &Path, namespace: &str, message: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let message_path = dir.path().join("message");
    std::fs::write(&message_path, message).unwrap();
    // ssh-keygen refuses private keys readable by others, and a git checkout
    // leaves fixtures 0644: sign with a 0600 copy.
    let private_copy = dir.path().join("key");
    std::fs::copy(key, &private_copy).unwrap();
    std::fs::set_permissions(
        &private_copy,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (status, _, err) = run(
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&private_copy)
            .arg(&message_path),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(status.success(), "ssh-keygen -Y sign: {err}");
    std::fs::read_to_string(dir.path().join("message.sig")).unwrap()
}

/// Writes a private certificate authority and a leaf for 127.0.0.1 with
/// `openssl`; returns (root PEM path, leaf cert path, leaf key path).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root_key = dir.join("root.key");
    let root = dir.join("root.crt");
    let key = dir.join("tls.key");
    let csr = dir.join("tls.csr");
    let cert = dir.join("tls.crt");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: Vec<Vec<String>> = vec![
        format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=jit-ssh-test-root -keyout {} -out {}", root_key.display(), root.display()),
        format!("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout {} -out {}", key.display(), csr.display()),
        format!("x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {}", csr.display(), root.display(), root_key.display(), ext.display(), cert.display()),
    ]
    .into_iter()
    .map(|s| s.split(' ').map(String::from).collect())
    .collect();
    for args in steps {
        let (status, _, err) =
            run(Command::new("openssl").args(&args), Duration::from_secs(30)).unwrap();
        assert!(status.success(), "openssl {args:?}: {err}");
    }
    (root, cert, key)
}
