//! Issuance load benchmark (run through `scripts/bench-issuance`).
//!
//! Starts the real `jit-ssh-ca` binary over TLS with a real SQLite store on
//! disk, trusting a loopback OpenID issuer with a real discovery document and
//! JWKS (served by this program). Pre-mints unique ID tokens, subject keys and
//! proofs outside the measured window, then drives C keep-alive HTTPS clients
//! against `POST /v1/certs/user` for T seconds. In the same run it measures
//! the raw single-core limit of the work each certificate needs (token
//! verification, proof verification, certificate signing) and reports
//! issuance rate ÷ (raw limit × server cores). The last line of output is one
//! JSON object.
//!
//! With `--slow N` it is the soak: N slow connections (`slow.rs`) are held
//! open against the CA for the whole measured window, and the normal
//! clients' latency shows what they cost everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use ca_proto::{proof_message, UserCertRequest, PROOF_NAMESPACE};
use ca_server::ca_keys::CaSigner;
use ca_server::cert::{sign_user_certificate, CertificateSpec, Serial};
use ca_server::config::{IssuerConfig, UsernameClaim};
use ca_server::identity::Identity;
use ca_server::oidc::TokenVerifier;
use ca_server::policy::{Grant, DEFAULT_EXTENSIONS};
use ca_server::subject_key::SubjectKey;
use ed25519_dalek::Signer as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::HeaderValue;
use http_body_util::{BodyExt as _, Full};
use rustls_pki_types::pem::PemObject as _;
use serde_json::{json, Value};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

mod slow;

const PASSPHRASE: &str = "benchmark passphrase";

struct Args {
    duration: u64,
    concurrency: usize,
    slow: usize,
    tokens: Option<usize>,
    server: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: 20,
        concurrency: 64,
        slow: 0,
        tokens: None,
        server: PathBuf::from("target/release/jit-ssh-ca"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => args.duration = value().parse().expect("--duration SECS"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--slow" => args.slow = value().parse().expect("--slow N"),
            "--tokens" => args.tokens = Some(value().parse().expect("--tokens N")),
            "--server" => args.server = PathBuf::from(value()),
            other => panic!("unknown argument {other}; use --duration SECS --concurrency N [--slow N] [--tokens N] [--server PATH]"),
        }
    }
    args
}

/// A loopback OpenID issuer: discovery + JWKS over HTTP, tokens minted here.
struct Issuer {
    url: String,
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl Issuer {
    fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
        }]})
    }

    fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "authorization_endpoint": format!("{}/authorize", self.url),
            "token_endpoint": format!("{}/token", self.url),
            "jwks_uri": format!("{}/jwks", self.url),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        })
    }

    fn mint(&self, user: &str, nonce: &str, now: u64) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": self.url, "sub": format!("bench-{user}"), "aud": "jit-ssh",
            "iat": now, "exp": now + 900, "nonce": nonce,
            "preferred_username": user, "groups": ["eng"],
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

fn start_issuer(runtime: &tokio::runtime::Runtime) -> Arc<Issuer> {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Arc::new(Issuer {
        url,
        key: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
        kid: "bench-1".into(),
    });
    let served = issuer.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get({
                let i = served.clone();
                move || async move { axum::Json(i.discovery()) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || async move { axum::Json(served.jwks()) }),
        );
    runtime.spawn(async move { axum::serve(listener, app).await });
    issuer
}

struct Prepared {
    authorization: HeaderValue,
    body: Bytes,
}

/// Keys, tokens and proofs for `count` requests, made on all cores before
/// the measured window.
fn prepare(issuer: &Issuer, count: usize) -> Vec<Prepared> {
    let now = ca_server::unix_now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
                                .unwrap();
                            let blob = key.public_key().to_bytes().unwrap();
                            let user = format!("u{}", (t * per_thread + i) % 1000);
                            let token = issuer.mint(&user, &ca_proto::nonce_for_key(&blob), now);
                            let proof = key
                                .sign(
                                    PROOF_NAMESPACE,
                                    HashAlg::Sha256,
                                    &proof_message(&token, &blob),
                                )
                                .unwrap()
                                .to_pem(LineEnding::LF)
                                .unwrap();
                            let request = UserCertRequest {
                                public_key: key.public_key().to_openssh().unwrap(),
                                principals: vec![],
                                ttl: None,
                                proof,
                            };
                            Prepared {
                                authorization: HeaderValue::try_from(format!("Bearer {token}"))
                                    .unwrap(),
                                body: serde_json::to_vec(&request).unwrap().into(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .take(count)
            .collect()
    })
}

/// Starts the CA; returns it, its API URL, its metrics URL and its pid.
fn start_server(
    server: &Path,
    dir: &Path,
    issuer: &Issuer,
) -> (std::process::Child, String, String, u32) {
    let data_dir = dir.join("data");
    let status = Command::new(server)
        .args(["init", "--data-dir"])
        .arg(&data_dir)
        .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "jit-ssh-ca init failed");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    // Rate limits are off: the load generator is one address whose 1,000
    // users each ask far more often than a person would.
    let config = format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         data_dir = {:?}\nmax_in_flight = 4096\n\
         rate_limit_per_identity = 0\nrate_limit_per_address = 0\n\
         [tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\n\
         [[oidc]]\nname = \"bench\"\nissuer = {:?}\nclient_id = \"jit-ssh\"\n",
        data_dir.display().to_string(),
        issuer.url
    );
    std::fs::write(dir.join("ca.toml"), config).unwrap();
    // Every benchmark user gets its own login: one rule, as small a policy as
    // a real one (the policy benchmark measures large ones).
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/bench.toml"),
        "[[rule]]\nname = \"bench-own-login\"\nprincipals = [\"{username}\"]\n\
         [rule.match]\nissuer = [\"bench\"]\n",
    )
    .unwrap();
    let mut child = Command::new(server)
        .arg("serve")
        .arg("--config")
        .arg(dir.join("ca.toml"))
        .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Logged as deployed (one info line per certificate); the lines are drained.
    // The metrics listener is announced first, then the API's.
    let mut metrics_url = None;
    let url = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("metrics listener on ").nth(1) {
            metrics_url = rest.split_whitespace().next().map(String::from);
        }
        if let Some(url) = line.split("listening on ").nth(1) {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let metrics_url = metrics_url.expect("the metrics listener is announced before the API's");
    (child, url, metrics_url, pid)
}

/// A keep-alive HTTP/1.1 connection over TLS to `authority` (`ip:port`).
async fn connect(
    authority: &str,
    tls: Arc<rustls::ClientConfig>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let ip = authority.rsplit_once(':').unwrap().0;
    let name = rustls_pki_types::ServerName::try_from(ip.to_string()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 after "state".
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Busy and total ticks of the whole machine (all cores), from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields[3] + fields[4];
    let total: u64 = fields.iter().take(8).sum();
    (total - idle, total)
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A memory figure of `pid` from /proc (`VmHWM:` the peak resident set,
/// `VmRSS:` the resident set now), in MB.
fn memory_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `op` on one core for about `window`; returns operations per second.
fn rate(window: Duration, mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < window {
        for _ in 0..50 {
            op(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Single-core rates of the three operations every certificate needs.
fn raw_limits(runtime: &tokio::runtime::Runtime, issuer: &Issuer) -> (f64, f64, f64) {
    let window = Duration::from_secs(2);
    let ca = CaSigner::new(PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap())
        .unwrap();
    let user_key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).unwrap();
    let subject = SubjectKey::parse(&user_key.public_key().to_openssh().unwrap()).unwrap();
    let identity = Identity {
        issuer_name: "bench".into(),
        issuer: issuer.url.clone(),
        subject: "bench-u1".into(),
        username: "u1".into(),
        email: None,
        groups: vec![],
        claims: Default::default(),
    };
    let grant = Grant {
        principals: vec!["u1".into()],
        ttl: Duration::from_secs(300),
        extensions: DEFAULT_EXTENSIONS.map(String::from).to_vec(),
        critical_options: vec![],
        rules: vec!["bench".into()],
        request_ids: Vec::new(),
        notes: Vec::new(),
    };
    let now = ca_server::unix_now();
    let signing = rate(window, |i| {
        let spec = CertificateSpec {
            subject: &subject,
            identity: &identity,
            grant: &grant,
            serial: Serial(i as u64 + 1),
            now,
            backdate: Duration::from_secs(60),
        };
        sign_user_certificate(&ca, &spec).unwrap();
    });
    let verifier = TokenVerifier::with_known_issuer(
        IssuerConfig {
            name: "bench".into(),
            issuer: issuer.url.clone(),
            client_id: "jit-ssh".into(),
            username_claim: UsernameClaim::PreferredUsername,
            groups_claim: "groups".into(),
            email_domains: Vec::new(),
            scopes: vec!["openid".into()],
            nonce: ca_server::config::NonceRule::default(),
            provider: ca_server::config::ProviderSettings::default(),
        },
        format!("{}/jwks", issuer.url),
        issuer.jwks().to_string().as_bytes(),
        Duration::from_secs(60),
        reqwest::Client::new(),
        &ca_server::metrics::Metrics::new(),
    )
    .unwrap();
    let nonce = subject.expected_nonce();
    let token = issuer.mint("u1", &nonce, now);
    // One token alone, its signature checked by aws-lc: what a token costs
    // without batching (the server batches EdDSA signatures under load).
    let verifying = rate(window, |_| {
        runtime
            .block_on(verifier.verify_alone(&token, &nonce, now))
            .unwrap();
    });
    let blob = user_key.public_key().to_bytes().unwrap();
    let proof = user_key
        .sign(
            PROOF_NAMESPACE,
            HashAlg::Sha256,
            &proof_message(&token, &blob),
        )
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    let proving = rate(window, |_| subject.verify_proof(&token, &proof).unwrap());
    (signing, verifying, proving)
}

/// Round trip of a cache line between two threads, in nanoseconds: the
/// cost of every hand-over between cores. On a virtual machine it can change
/// from one run to the next, as the host places the virtual CPUs in one cache
/// domain or in several, and the server is slower when it is high while the
/// single-core rates stay the same; taken before and after the load, it says
/// which state a run was in (docs/benchmarks.md).
fn core_to_core_ns() -> f64 {
    use std::sync::atomic::AtomicU64;
    // Spins read the clock only now and then: a clock read in every spin
    // added its own cost to each round trip.
    const SPINS_PER_CLOCK_READ: u32 = 4096;
    let turn = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(300);
    let other = {
        let turn = turn.clone();
        std::thread::spawn(move || {
            let mut expected = 1;
            let mut spins = 0u32;
            // Answers each odd value with the next even one until told to stop.
            loop {
                match turn.load(Ordering::Acquire) {
                    u64::MAX => return,
                    value if value == expected => {
                        turn.store(value + 1, Ordering::Release);
                        expected += 2;
                    }
                    _ => std::hint::spin_loop(),
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPINS_PER_CLOCK_READ) && Instant::now() >= deadline {
                    return;
                }
            }
        })
    };
    let start = Instant::now();
    let mut trips = 0u64;
    'trips: while Instant::now() < deadline {
        for _ in 0..1000 {
            let sent = 2 * trips + 1;
            turn.store(sent, Ordering::Release);
            let mut spins = 0u32;
            while turn.load(Ordering::Acquire) != sent + 1 {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPINS_PER_CLOCK_READ) && Instant::now() >= deadline {
                    break 'trips;
                }
                std::hint::spin_loop();
            }
            trips += 1;
        }
    }
    let elapsed = start.elapsed();
    turn.store(u64::MAX, Ordering::Release);
    other.join().unwrap();
    elapsed.as_nanos() as f64 / trips.max(1) as f64
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

fn main() {
    let args = parse_args();
    assert!(
        args.server.exists(),
        "{} not found: build it with `cargo build --release --bin jit-ssh-ca`",
        args.server.display()
    );
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let issuer = start_issuer(&runtime);
    let dir = tempfile::tempdir().unwrap();

    let core_to_core_before = core_to_core_ns();
    eprintln!("measuring raw single-core limits...");
    let (signing, verifying, proving) = raw_limits(&runtime, &issuer);
    let raw_per_core = 1.0 / (1.0 / signing + 1.0 / verifying + 1.0 / proving);

    // Enough for 0.7 of the raw limit over the whole run, more than runs
    // reach (docs/benchmarks.md; a run that uses them all says so), within
    // memory (~1.5 kB each) and the two minutes the whole benchmark may take.
    let count = args.tokens.unwrap_or(
        ((raw_per_core * cores as f64 * args.duration as f64 * 0.7) as usize).min(1_000_000)
            + args.concurrency,
    );
    eprintln!("pre-minting {count} unique tokens, keys and proofs...");
    let prepared = Arc::new(prepare(&issuer, count));

    let (mut server, url, metrics_url, pid) = start_server(&args.server, dir.path(), &issuer);
    // One keep-alive HTTP/1.1-over-TLS connection per client, driven with
    // hyper directly: the load generator shares the cores with the CA, so
    // its own work per request must stay small, and reqwest's pool and
    // per-request work cost more (docs/benchmarks.md).
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.path().join("tls.crt")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let authority = url.trim_start_matches("https://").to_string();
    let host = HeaderValue::try_from(authority.as_str()).unwrap();
    let connections: Vec<_> = runtime.block_on(async {
        let mut connections = Vec::new();
        for _ in 0..args.concurrency {
            connections.push(connect(&authority, tls.clone()).await);
        }
        connections
    });
    let slow = (args.slow > 0).then(|| {
        let _entered = runtime.enter();
        let clients = slow::SlowClients::start(args.slow, authority.parse().unwrap(), tls.clone());
        eprintln!("holding {} slow connections...", args.slow);
        clients
    });
    if slow.is_some() {
        // Every slow client connected and started its slow part.
        runtime.block_on(async { tokio::time::sleep(Duration::from_secs(3)).await });
    }
    let rss_before = memory_mb(pid, "VmRSS:");
    let ticks_before = cpu_ticks(pid);
    let own_before = cpu_ticks(std::process::id());
    let machine_before = machine_ticks();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let results: Vec<(Vec<u32>, usize, usize)> = runtime.block_on(async {
        let workers: Vec<_> = connections
            .into_iter()
            .map(|mut connection| {
                let host = host.clone();
                let prepared = prepared.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let (mut ok, mut failed) = (0, 0);
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = prepared.get(i) else { break };
                        let sent = Instant::now();
                        let request = http::Request::post("/v1/certs/user")
                            .header(HOST, host.clone())
                            .header(AUTHORIZATION, item.authorization.clone())
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::new(item.body.clone()))
                            .unwrap();
                        let answer = async {
                            connection.ready().await?;
                            let response = connection.send_request(request).await?;
                            let status = response.status();
                            let body = response.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>((status, body))
                        };
                        match answer.await {
                            Ok((status, _)) if status.is_success() => {
                                ok += 1;
                                latencies.push(sent.elapsed().as_micros() as u32);
                            }
                            Ok((status, body)) => {
                                if failed == 0 {
                                    eprintln!("error: {status} {}", String::from_utf8_lossy(&body));
                                }
                                failed += 1;
                            }
                            Err(e) => {
                                if failed == 0 {
                                    eprintln!("error: {e}");
                                }
                                failed += 1;
                                break;
                            }
                        }
                    }
                    (latencies, ok, failed)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.push(w.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ticks_after = cpu_ticks(pid);
    let own_after = cpu_ticks(std::process::id());
    let machine_after = machine_ticks();
    let rss = memory_mb(pid, "VmHWM:");
    let rss_under_load = memory_mb(pid, "VmRSS:");
    let closed_slow = slow
        .map(|slow| {
            let closed = slow.closed_by_server.load(Ordering::Relaxed);
            slow.stop();
            closed
        })
        .unwrap_or(0);
    let exhausted = next.load(Ordering::Relaxed) >= prepared.len();

    let mut latencies: Vec<u32> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    latencies.sort_unstable();
    let issued: usize = results.iter().map(|r| r.1).sum();
    let failed: usize = results.iter().map(|r| r.2).sum();
    let certs_per_sec = issued as f64 / elapsed;
    let cpu_secs = (ticks_after - ticks_before) as f64 / clock_ticks_per_sec() as f64;
    let cpu_us_per_cert = if issued > 0 {
        cpu_secs * 1e6 / issued as f64
    } else {
        0.0
    };
    let load_ticks = own_after - own_before;
    let load_us_per_cert = if issued > 0 {
        load_ticks as f64 / clock_ticks_per_sec() as f64 * 1e6 / issued as f64
    } else {
        0.0
    };
    // What the rest of the machine took meanwhile: a build or another
    // benchmark running beside this one shows here and lowers the rate.
    let machine_busy = machine_after.0 - machine_before.0;
    let machine_total = (machine_after.1 - machine_before.1).max(1);
    let other_share = machine_busy.saturating_sub(ticks_after - ticks_before + load_ticks) as f64
        / machine_total as f64;

    // How the group commit batched: commits and records per commit.
    // From the monitoring listener, in plain HTTP: the API does not serve it.
    let metrics = runtime
        .block_on(async {
            reqwest::get(format!("{metrics_url}/metrics"))
                .await?
                .text()
                .await
        })
        .unwrap_or_default();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let commits = metric("jit_ssh_ca_db_commit_batch_size_count");
    let mean_batch = metric("jit_ssh_ca_db_commit_batch_size_sum") / commits.max(1.0);
    let mean_commit_ms =
        metric("jit_ssh_ca_db_commit_duration_seconds_sum") * 1e3 / commits.max(1.0);

    // Every certificate a client received must be on record.
    let core_to_core_after = core_to_core_ns();
    let _ = server.kill();
    let _ = server.wait();
    let db = rusqlite::Connection::open(dir.path().join("data/jit-ssh-ca.db")).unwrap();
    let recorded: i64 = db
        .query_row("SELECT count(*) FROM certificates", [], |row| row.get(0))
        .unwrap();
    assert!(
        recorded as usize >= issued,
        "{issued} certificates returned but only {recorded} recorded"
    );

    let raw_limit = raw_per_core * cores as f64;
    eprintln!(
        "\nissued {issued} certificates in {elapsed:.1}s with {} clients over TLS ({failed} failed{}), all {recorded} on record",
        args.concurrency,
        if exhausted { "; pre-minted tokens ran out: raise --tokens" } else { "" }
    );
    eprintln!(
        "cpu per certificate: server {cpu_us_per_cert:.0} µs, load generator {load_us_per_cert:.0} µs; \
         the machine was {:.0} % busy, other processes {:.0} %",
        machine_busy as f64 / machine_total as f64 * 100.0,
        other_share * 100.0
    );
    eprintln!(
        "database: {commits:.0} commits, {mean_batch:.1} records and {mean_commit_ms:.2} ms per commit"
    );
    eprintln!(
        "core-to-core round trip: {core_to_core_before:.0} ns before the load, {core_to_core_after:.0} ns after"
    );
    eprintln!(
        "raw single-core rates: sign {signing:.0}/s, token verify {verifying:.0}/s, proof verify {proving:.0}/s -> {raw_per_core:.0} certs/s per core"
    );
    let summary = json!({
        "certs_per_sec": (certs_per_sec * 10.0).round() / 10.0,
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "p999_ms": percentile(&latencies, 0.999),
        "server_cpu_us_per_cert": cpu_us_per_cert.round(),
        "loadgen_cpu_us_per_cert": load_us_per_cert.round(),
        "other_cpu_share": (other_share * 1000.0).round() / 1000.0,
        "records_per_commit": (mean_batch * 10.0).round() / 10.0,
        "peak_rss_mb": (rss * 10.0).round() / 10.0,
        "raw_limit_per_sec": raw_limit.round(),
        "ratio": ((certs_per_sec / raw_limit) * 1000.0).round() / 1000.0,
        "cores": cores,
        "core_to_core_ns": [core_to_core_before.round(), core_to_core_after.round()],
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "failed": failed,
        "slow_connections": args.slow,
        "slow_closed_by_server": closed_slow,
        "rss_mb_before_after": [(rss_before * 10.0).round() / 10.0, (rss_under_load * 10.0).round() / 10.0],
        "synchronous": "FULL",
    });
    println!("{summary}");
}
