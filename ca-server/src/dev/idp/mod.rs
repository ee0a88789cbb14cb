//! The development OpenID provider of `jit-ssh-ca dev`.
//!
//! A small but real OpenID provider, served under [`PREFIX`] on the CA's own
//! loopback listener, so that `jit-ssh login` runs exactly the code it runs
//! against Okta or Keycloak: discovery, JWKS, authorization code with PKCE
//! (S256 only) to a loopback redirect, device authorization (RFC 8628) with
//! `slow_down`, refresh tokens that rotate and keep the original `nonce`, and
//! token revocation (RFC 7009). ID tokens are ES256, signed with a key made at
//! start and never written anywhere.
//!
//! It has no passwords: its login page lists the dev users to click on, and
//! with `--auto-login USER` every request is signed in as USER with no page at
//! all. It is reachable only through `jit-ssh-ca dev`; nothing in the
//! production configuration can enable it, and a build without the
//! `dev-idp` feature does not contain it.
//!
//! `code` serves the browser sign-in (authorization code with PKCE),
//! `device` the device flow, `token` the token and revocation endpoints, and
//! `pages` the HTML they show; this file holds the provider itself: its key,
//! users, sessions and the tokens it signs.

mod code;
mod device;
mod pages;
mod token;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand_core::RngCore as _;
use serde_json::{json, Value};

use crate::identity::is_login_name;
use crate::UnixTime;
use code::redirect_with;

/// Path prefix of the provider on the CA's listener.
pub const PREFIX: &str = "/dev-idp";
/// The one client the provider knows.
pub const CLIENT_ID: &str = "jit-ssh";
const ID_TOKEN_TTL: u64 = 600;
const CODE_TTL: u64 = 60;
const DEVICE_CODE_TTL: u64 = 600;
const DEVICE_POLL_INTERVAL: u64 = 2;
const REFRESH_TTL: u64 = 12 * 3600;
const SUPPORTED_SCOPES: [&str; 5] = ["openid", "email", "profile", "groups", "offline_access"];

/// A dev user: a login name and groups, written `alice:eng,sre`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    /// Login name, also `preferred_username`.
    pub name: String,
    /// Values of the `groups` claim.
    pub groups: Vec<String>,
}

impl FromStr for DevUser {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, groups) = text.split_once(':').unwrap_or((text, ""));
        if !is_login_name(name) {
            return Err(format!(
                "dev user {name:?} is not a login name (lower-case letters, digits, '.', '_', '-')"
            ));
        }
        let groups = groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
        Ok(DevUser {
            name: name.to_string(),
            groups,
        })
    }
}

/// The default dev users, matching the example policies.
pub fn default_users() -> Vec<DevUser> {
    ["alice:eng", "bob:eng,sre", "carol:sre-leads"]
        .iter()
        .filter_map(|u| u.parse().ok())
        .collect()
}

/// The provider: its key, users and in-memory sessions.
pub struct DevIdp {
    issuer: String,
    key: SigningKey,
    kid: String,
    users: Vec<DevUser>,
    auto_login: Option<String>,
    state: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, IssuedCode>,
    refresh: HashMap<String, Session>,
    devices: HashMap<String, DeviceGrant>,
}

#[derive(Clone)]
struct AuthRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    expires_at: UnixTime,
}

#[derive(Clone)]
struct Session {
    user: String,
    nonce: Option<String>,
    scopes: Vec<String>,
    auth_time: UnixTime,
    expires_at: UnixTime,
}

struct IssuedCode {
    session: Session,
    redirect_uri: String,
    code_challenge: String,
    expires_at: UnixTime,
}

struct DeviceGrant {
    user_code: String,
    scopes: Vec<String>,
    approved_by: Option<String>,
    last_poll: Option<UnixTime>,
    expires_at: UnixTime,
}

impl DevIdp {
    /// A provider at `issuer` (e.g. `http://127.0.0.1:8443/dev-idp`).
    pub fn new(
        issuer: String,
        users: Vec<DevUser>,
        auto_login: Option<String>,
    ) -> Result<DevIdp, String> {
        if users.is_empty() {
            return Err("at least one dev user is needed".into());
        }
        if let Some(user) = &auto_login {
            if !users.iter().any(|u| &u.name == user) {
                return Err(format!("--auto-login {user:?} is not one of the dev users"));
            }
        }
        let key = SigningKey::random(&mut rand_core::OsRng);
        Ok(DevIdp {
            issuer,
            key,
            kid: format!("dev-{}", random_token(6)),
            users,
            auto_login,
            state: Mutex::new(Sessions::default()),
        })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The dev users.
    pub fn users(&self) -> &[DevUser] {
        &self.users
    }

    /// The public key set, as served at `jwks_uri`.
    pub fn jwks(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| {
            c.map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
                .unwrap_or_default()
        };
        json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": coordinate(point.x()),
                "y": coordinate(point.y()),
                "kid": self.kid,
                "alg": "ES256",
                "use": "sig",
            }]
        })
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    fn discovery(&self) -> Value {
        let at = |path: &str| format!("{}{path}", self.issuer);
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": at("/authorize"),
            "token_endpoint": at("/token"),
            "device_authorization_endpoint": at("/device_authorization"),
            "revocation_endpoint": at("/revoke"),
            "jwks_uri": self.jwks_uri(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code"
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": SUPPORTED_SCOPES,
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce",
                "preferred_username", "name", "email", "email_verified", "groups"
            ],
        })
    }

    fn user(&self, name: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.name == name)
    }

    fn id_token(&self, session: &Session, now: UnixTime) -> String {
        let user = self.user(&session.user);
        let groups = user.map(|u| u.groups.clone()).unwrap_or_default();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": format!("dev-{}", session.user),
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + ID_TOKEN_TTL,
            // Unique per token: two refreshes in the same second must not
            // yield the same (single-use) token.
            "jti": random_token(12),
            "auth_time": session.auth_time,
            "preferred_username": session.user,
            "name": session.user,
            "email": format!("{}@dev.jit-ssh.invalid", session.user),
            "email_verified": true,
            "groups": groups,
        });
        if let Some(nonce) = &session.nonce {
            claims["nonce"] = Value::from(nonce.clone());
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave the maps inconsistent in
        // a way that matters for a dev provider; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn issue_code(&self, request: AuthRequest, user: &str, now: UnixTime) -> Response {
        let code = random_token(24);
        let session = Session {
            user: user.to_string(),
            nonce: request.nonce.clone(),
            scopes: request.scopes.clone(),
            auth_time: now,
            expires_at: now + REFRESH_TTL,
        };
        self.sessions().codes.insert(
            code.clone(),
            IssuedCode {
                session,
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                expires_at: now + CODE_TTL,
            },
        );
        let mut params = vec![("code", code), ("iss", self.issuer.clone())];
        if let Some(state) = request.state {
            params.push(("state", state));
        }
        redirect_with(&request.redirect_uri, &params)
    }

    fn token_response(&self, session: Session, now: UnixTime) -> Response {
        let id_token = self.id_token(&session, now);
        let mut body = json!({
            "access_token": random_token(24),
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_TTL,
            "id_token": id_token,
            "scope": session.scopes.join(" "),
        });
        if session.scopes.iter().any(|s| s == "offline_access") {
            let refresh = random_token(32);
            self.sessions().refresh.insert(refresh.clone(), session);
            body["refresh_token"] = Value::from(refresh);
        }
        ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    }
}

/// The provider's routes, all under [`PREFIX`].
pub fn router(idp: Arc<DevIdp>) -> Router {
    let routes = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .merge(code::routes())
        .merge(device::routes())
        .merge(token::routes())
        .with_state(idp);
    Router::new().nest(PREFIX, routes)
}

async fn discovery(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(idp.discovery())
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(idp.jwks())
}

fn requested_scopes(scope: Option<&str>) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = scope
        .unwrap_or("openid")
        .split_whitespace()
        .map(String::from)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err("the openid scope is required".into());
    }
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !SUPPORTED_SCOPES.contains(&s.as_str()))
    {
        return Err(format!("unsupported scope {unknown:?}"));
    }
    Ok(scopes)
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_users_parse() {
        assert_eq!(
            "bob:eng,sre".parse::<DevUser>(),
            Ok(DevUser {
                name: "bob".into(),
                groups: vec!["eng".into(), "sre".into()]
            })
        );
        assert_eq!("dan".parse::<DevUser>().map(|u| u.groups), Ok(vec![]));
        assert!("Bob:eng".parse::<DevUser>().is_err());
        assert!("root;x".parse::<DevUser>().is_err());
    }
    #[test]
    fn id_tokens_verify_with_the_published_key() {
        let idp =
            DevIdp::new("http://127.0.0.1:1/dev-idp".into(), default_users(), None).expect("idp");
        let session = Session {
            user: "bob".into(),
            nonce: Some("n1".into()),
            scopes: vec!["openid".into()],
            auth_time: 1,
            expires_at: 2,
        };
        let token = idp.id_token(&session, crate::unix_now());
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(idp.jwks()).expect("jwks");
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&["http://127.0.0.1:1/dev-idp"]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies");
        assert_eq!(data.claims["nonce"], "n1");
        assert_eq!(data.claims["groups"], json!(["eng", "sre"]));
    }
}
