//! What every router test shares: a CA assembled as `serve` does it (keys,
//! database, policy, a trusted issuer whose key the tests hold) behind
//! `app()`, ID tokens, and requests sent with `oneshot`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_server::access::DEFAULT_PENDING_SECS;
use ca_server::ca_keys::{self, CaKeyType};
use ca_server::config::{Config, IssuerConfig, UsernameClaim};
use ca_server::http::{app, monitoring_app, AppState};
use ca_server::metrics::Metrics;
use ca_server::oidc::TokenVerifier;
use ca_server::policy::{cli, ReloadablePolicy};
use ca_server::secret::Passphrase;
use ca_server::server::{assemble, CaParts};
use ca_server::store::{Store, DATABASE_FILE};
use ed25519_dalek::Signer as _;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

pub const ISSUER: &str = "http://127.0.0.1:9/idp";

/// A CA with fresh keys and database, the policy [`POLICY`], and an issuer
/// whose signing key the tests hold; its router answers as if called from
/// 127.0.0.1.
pub struct Fixture {
    /// `app()` over the CA.
    pub router: Router,
    /// `monitoring_app()` over the same CA: where `/metrics` is served.
    pub monitoring: Router,
    /// The state the router serves.
    pub state: AppState,
    /// Signs ID tokens the CA trusts.
    pub issuer_key: ed25519_dalek::SigningKey,
    _dir: tempfile::TempDir,
}

/// The fixture with the default configuration.
pub async fn fixture() -> Fixture {
    fixture_with(Duration::from_secs(DEFAULT_PENDING_SECS)).await
}

/// Users' own login names for everyone of `corp`; `root` by access
/// request for `sre` members, approved by `sre-leads` (break-glass
/// allowed); `admins` are administrators.
pub const POLICY: &str = r#"
[[rule]]
name = "own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "sre-root"
principals = ["root"]
[rule.approval]
approver_groups = ["sre-leads"]
break_glass = true
[rule.match]
groups_any = ["sre"]

[[admin]]
name = "admins"
[admin.match]
groups_any = ["admins"]
"#;

/// The fixture whose access requests wait `pending` for a decision.
pub async fn fixture_with(pending: Duration) -> Fixture {
    configured_fixture(|config| config.access_request_pending = pending).await
}

/// The fixture with the default configuration changed by `configure`.
pub async fn configured_fixture(configure: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let passphrase = Passphrase::new("router test passphrase".into());
    ca_keys::init(dir.path(), CaKeyType::Ed25519, &passphrase).expect("init");
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).expect("mkdir");
    std::fs::write(policy_dir.join("own.toml"), POLICY).expect("policy");
    let issuer = IssuerConfig {
        name: "corp".into(),
        issuer: ISSUER.into(),
        client_id: "jit-ssh".into(),
        username_claim: UsernameClaim::PreferredUsername,
        groups_claim: "groups".into(),
        email_domains: Vec::new(),
        scopes: vec!["openid".into()],
        nonce: ca_server::config::NonceRule::default(),
        provider: ca_server::config::ProviderSettings::default(),
    };
    let mut config = Config::with_defaults(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.path().to_path_buf(),
        policy_dir.clone(),
        vec![issuer.clone()],
    );
    configure(&mut config);
    let issuer_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(issuer_key.verifying_key().as_bytes())}]});
    let metrics = Metrics::new();
    let state = assemble(
        CaParts {
            verifier: TokenVerifier::with_known_issuer(
                issuer,
                format!("{ISSUER}/jwks"),
                jwks.to_string().as_bytes(),
                config.token_leeway,
                reqwest::Client::new(),
                &metrics,
            )
            .expect("verifier"),
            policy: Arc::new(
                ReloadablePolicy::load(&policy_dir, cli::context(Some(&config))).expect("policy"),
            ),
            keys: ca_keys::load(dir.path(), &passphrase).expect("keys"),
            store: Store::open(&dir.path().join(DATABASE_FILE), &metrics).expect("store"),
            metrics,
        },
        &config,
    );
    let router =
        app(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let monitoring = monitoring_app(state.clone());
    Fixture {
        router,
        monitoring,
        state,
        issuer_key,
        _dir: dir,
    }
}

/// An ID token of alice (no groups) with `nonce`.
pub fn token(key: &ed25519_dalek::SigningKey, nonce: &str) -> String {
    user_token(key, nonce, "alice", &[])
}

/// An ID token of `user` in `groups`; `nonce` makes it unique (each
/// change spends its token).
pub fn user_token(
    key: &ed25519_dalek::SigningKey,
    nonce: &str,
    user: &str,
    groups: &[&str],
) -> String {
    let now = ca_server::unix_now();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": "k1"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISSUER, "sub": format!("u-{user}"), "aud": "jit-ssh", "iat": now,
               "exp": now + 300, "nonce": nonce, "preferred_username": user,
               "groups": groups})
        .to_string(),
    );
    let input = format!("{header}.{claims}");
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
    )
}

/// Runs `request` through `router`: status, headers and body.
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, body.to_vec())
}

/// A GET of `path` with no body.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// The `error.code` of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).expect("JSON error body");
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// People of the request tests, by name: (user, groups).
pub const BOB: (&str, &[&str]) = ("bob", &["sre"]);
pub const ALICE: (&str, &[&str]) = ("alice", &["eng"]);
pub const CAROL: (&str, &[&str]) = ("carol", &["sre-leads"]);
pub const ADA: (&str, &[&str]) = ("ada", &["admins"]);

impl Fixture {
    /// A fresh token of `who` (unique, so that each may be spent).
    pub fn token_of(&self, who: (&str, &[&str])) -> String {
        user_token(&self.issuer_key, &unique_nonce(), who.0, who.1)
    }

    /// Sends `method path` with `body` (none for GET) and, when given, the
    /// bearer token; the status and the JSON answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if method == "GET" {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let (status, _, bytes) = send(&self.router, request.body(body).expect("request")).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs `body` to `path` with a fresh token of `who`; the status and
    /// the JSON answer.
    pub async fn post_as(
        &self,
        who: (&str, &[&str]),
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let token = self.token_of(who);
        self.call("POST", path, Some(&token), body).await
    }

    /// The ids `GET /v1/requests{query}` lists for `who`.
    pub async fn list_as(&self, who: (&str, &[&str]), query: &str) -> Vec<u64> {
        let token = self.token_of(who);
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/requests{query}"),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| r["id"].as_u64().expect("id"))
            .collect()
    }

    /// `who` asks for root, with `extra` fields merged into the body.
    pub async fn create(&self, who: (&str, &[&str]), extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"principals": ["root"], "reason": "INC-1"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.post_as(who, "/v1/requests", body).await
    }
}

/// The status and `error.code` of an answer.
pub fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (
        answer.0,
        answer.1["error"]["code"].as_str().unwrap_or_default(),
    )
}

/// A value no other token of the run carries, so that each token may be spent.
pub fn unique_nonce() -> String {
    format!(
        "{:016x}",
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    )
}

/// `POST /v1/certs/user` by `who` for `user`'s key, asking for `principals`:
/// a token bound to the key and a good proof of possession.
pub fn certificate_request(
    f: &Fixture,
    user: &ssh_key::PrivateKey,
    who: (&str, &[&str]),
    principals: &[&str],
) -> Request<Body> {
    let blob = user.public_key().to_bytes().expect("blob");
    let token = user_token(&f.issuer_key, &ca_proto::nonce_for_key(&blob), who.0, who.1);
    let body = serde_json::to_string(&ca_proto::UserCertRequest {
        public_key: user.public_key().to_openssh().expect("line"),
        principals: principals.iter().map(|p| p.to_string()).collect(),
        ttl: None,
        proof: proof_of(user, &token),
    })
    .expect("json");
    Request::post("/v1/certs/user")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body))
        .expect("request")
}

/// `user`'s proof of possession for `token`.
pub fn proof_of(user: &ssh_key::PrivateKey, token: &str) -> String {
    let blob = user.public_key().to_bytes().expect("blob");
    user.sign(
        ca_proto::PROOF_NAMESPACE,
        ssh_key::HashAlg::Sha512,
        &ca_proto::proof_message(token, &blob),
    )
    .expect("sign")
    .to_pem(ssh_key::LineEnding::LF)
    .expect("pem")
}
