//! A fake CA, the adversary of the client's certificate checks: a loopback
//! HTTP server that publishes `/v1/config` like the real CA (naming the real
//! test IdP) and answers `POST /v1/certs/user` with a real certificate,
//! made and signed with ssh-key, shaped the way a test chooses: correct, or
//! wrong in one way ([`Answer`]). It never checks the ID token: it stands
//! for a CA that is broken or not the CA. A test can change the keys it
//! publishes between logins. It stops when its handle drops.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use ca_proto::{CaConfig, IssuerInfo, UserCertRequest, UserCertResponse};
use rand_core::OsRng;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};

/// The longest lifetime the fake CA publishes (`max_ttl`).
pub const MAX_TTL: u64 = 3600;

/// How the fake CA answers a certificate request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A certificate as asked, signed by the first published key.
    Good,
    /// For a fresh key, not the one in the request.
    OtherKey,
    /// With `root` added to the principals.
    ExtraRoot,
    /// Signed by a key the CA does not publish.
    UnpublishedSigner,
    /// Ended an hour ago.
    Expired,
    /// Valid only from tomorrow.
    FromTomorrow,
    /// Valid for ten years.
    TenYears,
    /// A host certificate.
    HostCertificate,
    /// No principals at all.
    NoPrincipals,
    /// A JSON `valid_before` an hour after the certificate's.
    JsonValidBefore,
}

impl Answer {
    /// Every wrong answer.
    pub const BAD: [Answer; 9] = [
        Answer::OtherKey,
        Answer::ExtraRoot,
        Answer::UnpublishedSigner,
        Answer::Expired,
        Answer::FromTomorrow,
        Answer::TenYears,
        Answer::HostCertificate,
        Answer::NoPrincipals,
        Answer::JsonValidBefore,
    ];
}

struct Shared {
    issuer: String,
    /// Published user-CA keys; the first signs.
    keys: Vec<PrivateKey>,
    answer: Answer,
    requests: usize,
}

/// A running fake CA.
pub struct FakeCa {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A fresh Ed25519 key.
pub fn random_key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
}

/// `SHA256:…` of `key`'s public half.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

impl FakeCa {
    /// Starts a fake CA trusting the IdP at `issuer` (name `test`, client
    /// `jit-ssh`), publishing one fresh user-CA key and answering
    /// [`Answer::Good`].
    pub fn start(issuer: &str) -> FakeCa {
        let shared = Arc::new(Mutex::new(Shared {
            issuer: issuer.to_string(),
            keys: vec![random_key()],
            answer: Answer::Good,
            requests: 0,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/config", get(config))
            .route("/v1/certs/user", post(certify))
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FakeCa {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Answers the next certificate requests with `answer`.
    pub fn answer_with(&self, answer: Answer) {
        self.shared.lock().unwrap().answer = answer;
    }

    /// Publishes `keys` as the user-CA keys from now on; the first signs.
    pub fn publish(&self, keys: &[&PrivateKey]) {
        self.shared.lock().unwrap().keys = keys.iter().map(|k| (*k).clone()).collect();
    }

    /// The published keys, the signing one first.
    pub fn keys(&self) -> Vec<PrivateKey> {
        self.shared.lock().unwrap().keys.clone()
    }

    /// How many certificate requests reached it.
    pub fn requests(&self) -> usize {
        self.shared.lock().unwrap().requests
    }
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn config(State(shared): State<Arc<Mutex<Shared>>>) -> Json<CaConfig> {
    let shared = shared.lock().unwrap();
    Json(CaConfig {
        issuers: vec![IssuerInfo {
            name: "test".into(),
            issuer: shared.issuer.clone(),
            client_id: "jit-ssh".into(),
            scopes: ["openid", "email", "profile", "groups", "offline_access"]
                .map(String::from)
                .to_vec(),
            // As the real CA publishes by default: without it the test IdP,
            // as shipped, grants no refresh token.
            auth_params: [("prompt".to_string(), "consent".to_string())].into(),
            public_client_secret: None,
        }],
        user_ca_keys: shared.keys.iter().map(line).collect(),
        host_ca_keys: vec![line(&random_key())],
        proof_namespace: ca_proto::PROOF_NAMESPACE.into(),
        default_ttl: 300,
        max_ttl: MAX_TTL,
        ssh_hosts: Vec::new(),
    })
}

async fn certify(
    State(shared): State<Arc<Mutex<Shared>>>,
    Json(request): Json<UserCertRequest>,
) -> Json<UserCertResponse> {
    let (signer, answer) = {
        let mut shared = shared.lock().unwrap();
        shared.requests += 1;
        (shared.keys[0].clone(), shared.answer)
    };
    let asked = PublicKey::from_openssh(&request.public_key).unwrap();
    let subject = match answer {
        Answer::OtherKey => random_key().public_key().clone(),
        _ => asked,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = request.ttl.unwrap_or(300);
    let (after, before) = match answer {
        Answer::Expired => (now - 7200, now - 3600),
        Answer::FromTomorrow => (now + 86_400, now + 86_400 + ttl),
        Answer::TenYears => (now - 60, now + 10 * 365 * 86_400),
        _ => (now - 60, now + ttl),
    };
    let mut builder = Builder::new_with_random_nonce(&mut OsRng, &subject, after, before).unwrap();
    let serial = rand_core::RngCore::next_u64(&mut OsRng);
    builder.serial(serial).unwrap().key_id("fake-ca").unwrap();
    builder
        .cert_type(match answer {
            Answer::HostCertificate => CertType::Host,
            _ => CertType::User,
        })
        .unwrap();
    let mut principals = match request.principals.as_slice() {
        [] => vec!["alice".to_string()],
        asked => asked.to_vec(),
    };
    match answer {
        Answer::ExtraRoot => principals.push("root".into()),
        Answer::NoPrincipals => principals.clear(),
        _ => {}
    }
    if principals.is_empty() {
        builder.all_principals_valid().unwrap();
    }
    for principal in &principals {
        builder.valid_principal(principal.clone()).unwrap();
    }
    let signing = match answer {
        Answer::UnpublishedSigner => random_key(),
        _ => signer,
    };
    let certificate = builder.sign(&signing).unwrap();
    let valid_before = match answer {
        Answer::JsonValidBefore => before + 3600,
        _ => before,
    };
    Json(UserCertResponse {
        certificate: certificate.to_openssh().unwrap(),
        serial: serial.to_string(),
        key_id: "fake-ca".into(),
        principals,
        valid_after: after,
        valid_before,
        notes: Vec::new(),
    })
}

fn line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}
