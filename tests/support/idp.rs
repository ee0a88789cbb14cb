//! The test OpenID provider: `tests/idp/idp.mjs`, a real `oidc-provider`
//! instance on a loopback port. Tests log users in through its real
//! authorization-code flow, or sign tokens with its real keys to shape claims
//! a login cannot produce.

use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::process::{repo_root, Running, STARTUP};
use crate::{http_client, rand_bytes};

/// Redirect URI the tests register (no listener needed: the code is read
/// from the redirect's `Location`).
pub const REDIRECT_URI: &str = "http://127.0.0.1:45678/callback";

/// A signing key of the test IdP, for forging tokens signed by its real keys.
#[derive(Debug, Clone, Deserialize)]
pub struct IdpKey {
    pub kid: String,
    pub alg: String,
    pub private_pem: String,
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub refresh_token: Option<String>,
}

/// A running test IdP.
pub struct Idp {
    pub issuer: String,
    pub keys: Vec<IdpKey>,
    process: Running,
    _dir: TempDir,
}

impl Idp {
    /// Starts an IdP on a random loopback port.
    pub fn start() -> Idp {
        Idp::start_on(0)
    }

    /// Starts an IdP on loopback `port` (0: a random one), with fresh keys:
    /// started on the port of one that stopped, it is that provider after
    /// a key rotation (same issuer, and none of its old keys published).
    pub fn start_on(port: u16) -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let keys_path = dir.path().join("keys.json");
        let idp_dir = repo_root().join("tests/idp");
        assert!(
            idp_dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        // The IdP exits when its stdin closes, i.e. even when this test dies
        // without dropping it.
        let process = Running::spawn_tied(
            Command::new("node")
                .arg(idp_dir.join("idp.mjs"))
                .args(["--port", &port.to_string(), "--keys-out"])
                .arg(&keys_path),
        )
        .expect("node must be installed (scripts/test installs it)");
        let ready = process
            .stdout
            .wait_for("issuer", STARTUP)
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
        let pkce = Pkce::new();
        let state = URL_SAFE_NO_PAD.encode(rand_bytes::<16>());
        let mut query = vec![
            ("client_id", client_id.to_string()),
            ("response_type", "code".into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", "openid email profile groups offline_access".into()),
            // OIDC Core §11: without it the provider ignores offline_access.
            ("prompt", "consent".into()),
            ("state", state.clone()),
            ("code_challenge", pkce.challenge.clone()),
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
        let code = authorization_code(&self.location(&callback)?, &state)?;
        let response = http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("client_id", client_id),
                ("code_verifier", &pkce.verifier),
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

    /// Signs `user` in (client `jit-ssh`, a nonce for a fresh key) and asks
    /// `ca` to certify that key for `principals` (none: whatever the policy
    /// grants). A failed sign-in fails the test.
    pub async fn certify(
        &self,
        ca: &ca_client::CaClient,
        user: &str,
        principals: &[&str],
    ) -> Result<ca_proto::UserCertResponse, ca_client::ClientError> {
        let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .expect("an Ed25519 key");
        let nonce = ca_client::nonce_for(&key).expect("a nonce for the key");
        let tokens = self
            .login(user, "jit-ssh", Some(&nonce))
            .await
            .unwrap_or_else(|e| panic!("login {user}: {e}\n{}", self.log()));
        let principals: Vec<String> = principals.iter().map(|p| p.to_string()).collect();
        ca.request_user_certificate(&tokens.id_token, &key, &principals, None)
            .await
    }

    /// Redeems a refresh token for fresh tokens.
    pub async fn refresh(&self, refresh_token: &str, client_id: &str) -> anyhow::Result<Tokens> {
        let response = http_client()
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

    /// The loopback port the IdP listens on.
    pub fn port(&self) -> u16 {
        let port = self.issuer.rsplit(':').next().unwrap();
        port.parse().unwrap()
    }

    /// The IdP's private key for `alg` (RS256, ES256, ES384 or EdDSA).
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
        self.sign_with_typ(alg, Some("JWT"), claims)
    }

    /// [`Idp::sign`] with the header's `typ` set to `typ` (or left out).
    pub fn sign_with_typ(&self, alg: &str, typ: Option<&str>, claims: &Value) -> String {
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
            "ES384" => (
                jsonwebtoken::Algorithm::ES384,
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
        header.typ = typ.map(String::from);
        jsonwebtoken::encode(&header, claims, &encoding).unwrap()
    }

    /// The IdP's stderr so far, for failure messages.
    pub fn log(&self) -> String {
        self.process.stderr.text()
    }
}

#[derive(Deserialize)]
struct KeysFile {
    keys: Vec<IdpKey>,
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
pub(crate) struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes::<32>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The `code` of an authorization response redirect, after checking that it
/// carries back the `state` the request sent.
pub(crate) fn authorization_code(redirect: &str, state: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(redirect)?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    if param("state").as_deref() != Some(state) {
        bail!("state not returned: {redirect}");
    }
    param("code").ok_or_else(|| anyhow!("no code in {redirect}"))
}
