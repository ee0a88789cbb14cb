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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand_core::RngCore as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::identity::is_login_name;
use crate::UnixTime;

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
        .route("/authorize", get(authorize).post(authorize_login))
        .route("/device_authorization", post(device_authorization))
        .route("/device", get(device_page).post(device_submit))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(idp);
    Router::new().nest(PREFIX, routes)
}

async fn discovery(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(idp.discovery())
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(idp.jwks())
}

/// Why an authorization request is refused before any redirect is allowed.
fn bad_request(message: &str) -> Response {
    let page = format!(
        "<!doctype html><title>jit-ssh dev login</title><h1>Request refused</h1><p>{}</p>",
        escape(message)
    );
    (StatusCode::BAD_REQUEST, Html(page)).into_response()
}

async fn authorize(
    State(idp): State<Arc<DevIdp>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::unix_now();
    let get = |name: &str| query.get(name).cloned();
    if get("client_id").as_deref() != Some(CLIENT_ID) {
        return bad_request("unknown client_id (the dev provider knows only \"jit-ssh\")");
    }
    let Some(redirect_uri) = get("redirect_uri").filter(|u| is_loopback_redirect(u)) else {
        return bad_request("redirect_uri must be http://127.0.0.1:PORT/... or http://localhost:PORT/... (RFC 8252)");
    };
    let state = get("state");
    let error = |code: &str, description: &str| {
        let mut params = vec![
            ("error", code.to_string()),
            ("error_description", description.to_string()),
        ];
        if let Some(state) = &state {
            params.push(("state", state.clone()));
        }
        redirect_with(&redirect_uri, &params)
    };
    if get("response_type").as_deref() != Some("code") {
        return error("unsupported_response_type", "only response_type=code");
    }
    let (Some(code_challenge), Some("S256")) = (
        get("code_challenge"),
        get("code_challenge_method").as_deref(),
    ) else {
        return error(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    };
    let scopes = match requested_scopes(get("scope").as_deref()) {
        Ok(scopes) => scopes,
        Err(message) => return error("invalid_scope", &message),
    };
    let request = AuthRequest {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        nonce: get("nonce"),
        code_challenge,
        scopes,
        expires_at: now + DEVICE_CODE_TTL,
    };
    if let Some(user) = idp.auto_login.clone() {
        return idp.issue_code(request, &user, now);
    }
    let request_id = random_token(16);
    {
        let mut sessions = idp.sessions();
        sessions.pending.retain(|_, r| r.expires_at > now);
        sessions.pending.insert(request_id.clone(), request);
    }
    let mut page = page_head("Sign in to jit-ssh (development)");
    page.push_str("<p>Pick a development user:</p>");
    page.push_str(&user_buttons(
        &idp.users,
        "authorize",
        ("request_id", &request_id),
    ));
    Html(page).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    request_id: String,
    user: String,
}

async fn authorize_login(State(idp): State<Arc<DevIdp>>, Form(form): Form<LoginForm>) -> Response {
    let now = crate::unix_now();
    if idp.user(&form.user).is_none() {
        return bad_request("unknown user");
    }
    let request = idp.sessions().pending.remove(&form.request_id);
    match request {
        Some(request) if request.expires_at > now => idp.issue_code(request, &form.user, now),
        _ => bad_request("this sign-in request is unknown or expired; start again from jit-ssh"),
    }
}

#[derive(Deserialize)]
struct DeviceAuthorizationForm {
    client_id: String,
    scope: Option<String>,
}

async fn device_authorization(
    State(idp): State<Arc<DevIdp>>,
    Form(form): Form<DeviceAuthorizationForm>,
) -> Response {
    let now = crate::unix_now();
    if form.client_id != CLIENT_ID {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let scopes = match requested_scopes(form.scope.as_deref()) {
        Ok(scopes) => scopes,
        Err(message) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &message),
    };
    let device_code = random_token(32);
    let user_code = user_code();
    let verification_uri = format!("{}/device", idp.issuer);
    {
        let mut sessions = idp.sessions();
        sessions.devices.retain(|_, d| d.expires_at > now);
        sessions.devices.insert(
            device_code.clone(),
            DeviceGrant {
                user_code: user_code.clone(),
                scopes,
                approved_by: idp.auto_login.clone(),
                last_poll: None,
                expires_at: now + DEVICE_CODE_TTL,
            },
        );
    }
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": DEVICE_CODE_TTL,
        "interval": DEVICE_POLL_INTERVAL,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct DeviceQuery {
    user_code: Option<String>,
}

async fn device_page(State(idp): State<Arc<DevIdp>>, Query(query): Query<DeviceQuery>) -> Response {
    match query.user_code {
        Some(code) => device_user_choice(&idp, &code),
        None => {
            let mut page = page_head("Connect a device to jit-ssh (development)");
            let _ = write!(
                page,
                "<form method=\"post\" action=\"{PREFIX}/device\">\
                 <label>Code shown by jit-ssh: <input name=\"user_code\" autofocus></label>\
                 <button type=\"submit\">Continue</button></form>"
            );
            Html(page).into_response()
        }
    }
}

fn device_user_choice(idp: &DevIdp, user_code: &str) -> Response {
    let user_code = normalize_user_code(user_code);
    let known = idp
        .sessions()
        .devices
        .values()
        .any(|d| d.user_code == user_code && d.expires_at > crate::unix_now());
    if !known {
        return bad_request("unknown or expired code; check the code jit-ssh printed");
    }
    let mut page = page_head("Connect a device to jit-ssh (development)");
    let _ = write!(
        page,
        "<p>Code <b>{}</b>. Pick a development user:</p>",
        escape(&user_code)
    );
    page.push_str(&user_buttons(
        &idp.users,
        "device",
        ("user_code", &user_code),
    ));
    Html(page).into_response()
}

#[derive(Deserialize)]
struct DeviceForm {
    user_code: String,
    user: Option<String>,
}

async fn device_submit(State(idp): State<Arc<DevIdp>>, Form(form): Form<DeviceForm>) -> Response {
    let Some(user) = form.user else {
        return device_user_choice(&idp, &form.user_code);
    };
    if idp.user(&user).is_none() {
        return bad_request("unknown user");
    }
    let user_code = normalize_user_code(&form.user_code);
    let now = crate::unix_now();
    let approved = idp
        .sessions()
        .devices
        .values_mut()
        .find(|d| d.user_code == user_code && d.expires_at > now)
        .map(|d| d.approved_by = Some(user.clone()))
        .is_some();
    if !approved {
        return bad_request("unknown or expired code; check the code jit-ssh printed");
    }
    let mut page = page_head("Device connected");
    let _ = write!(
        page,
        "<p id=\"device-success\">Signed in as <b>{}</b>. You can close this window; jit-ssh continues on its own.</p>",
        escape(&user)
    );
    Html(page).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    device_code: Option<String>,
}

async fn token(State(idp): State<Arc<DevIdp>>, Form(form): Form<TokenForm>) -> Response {
    let now = crate::unix_now();
    if form.client_id.as_deref() != Some(CLIENT_ID) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let invalid_grant =
        |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    match form.grant_type.as_str() {
        "authorization_code" => {
            let issued = form
                .code
                .as_ref()
                .and_then(|code| idp.sessions().codes.remove(code));
            let Some(issued) = issued.filter(|c| c.expires_at > now) else {
                return invalid_grant("unknown, used or expired code");
            };
            if form.redirect_uri.as_deref() != Some(issued.redirect_uri.as_str()) {
                return invalid_grant("redirect_uri differs from the authorization request");
            }
            let verifier = form.code_verifier.unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !bool::from(challenge.as_bytes().ct_eq(issued.code_challenge.as_bytes())) {
                return invalid_grant("PKCE code_verifier does not match the code_challenge");
            }
            idp.token_response(issued.session, now)
        }
        "refresh_token" => {
            // Refresh tokens rotate: the one presented is spent.
            let session = form
                .refresh_token
                .as_ref()
                .and_then(|token| idp.sessions().refresh.remove(token));
            match session.filter(|s| s.expires_at > now) {
                Some(session) => idp.token_response(session, now),
                None => invalid_grant("unknown, used, revoked or expired refresh token"),
            }
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let Some(device_code) = form.device_code else {
                return invalid_grant("device_code is required");
            };
            let mut sessions = idp.sessions();
            let Some(grant) = sessions.devices.get_mut(&device_code) else {
                return invalid_grant("unknown or used device_code");
            };
            if grant.expires_at <= now {
                sessions.devices.remove(&device_code);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "expired_token",
                    "the device code expired",
                );
            }
            let too_soon = grant
                .last_poll
                .is_some_and(|last| now < last + DEVICE_POLL_INTERVAL);
            grant.last_poll = Some(now);
            if too_soon {
                return oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast");
            }
            let Some(user) = grant.approved_by.clone() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "authorization_pending",
                    "the user has not signed in yet",
                );
            };
            let scopes = grant.scopes.clone();
            sessions.devices.remove(&device_code);
            drop(sessions);
            let session = Session {
                user,
                nonce: None,
                scopes,
                auth_time: now,
                expires_at: now + REFRESH_TTL,
            };
            idp.token_response(session, now)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code, refresh_token or device_code",
        ),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

async fn revoke(State(idp): State<Arc<DevIdp>>, Form(form): Form<RevokeForm>) -> StatusCode {
    // RFC 7009: unknown tokens are not an error.
    idp.sessions().refresh.remove(&form.token);
    StatusCode::OK
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
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

/// RFC 8252 loopback redirect: http, a loopback host, any port.
fn is_loopback_redirect(uri: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && url.fragment().is_none()
        && url.username().is_empty()
        && matches!(
            url.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        )
}

fn redirect_with(base: &str, params: &[(&str, String)]) -> Response {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            Redirect::to(url.as_str()).into_response()
        }
        Err(_) => bad_request("invalid redirect_uri"),
    }
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// Eight letters from an alphabet without look-alikes, shown as `ABCD-EFGH`.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let letters: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

fn normalize_user_code(code: &str) -> String {
    let letters: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if letters.len() == 8 {
        format!("{}-{}", &letters[..4], &letters[4..])
    } else {
        letters
    }
}

/// One form per user, posting `user` and a hidden `carry` field to `path`.
fn user_buttons(users: &[DevUser], path: &str, carry: (&str, &str)) -> String {
    let mut html = String::new();
    for user in users {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"{PREFIX}/{path}\">\
             <input type=\"hidden\" name=\"{}\" value=\"{}\">\
             <input type=\"hidden\" name=\"user\" value=\"{}\">\
             <button type=\"submit\">{}</button> <small>{}</small></form>",
            escape(carry.0),
            escape(carry.1),
            escape(&user.name),
            escape(&user.name),
            escape(&user.groups.join(", "))
        );
    }
    html
}

fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}\
         form{{margin:.5em 0}}button{{min-width:8em}}</style>\
         <h1>{t}</h1><p><b>Development identity provider: no passwords, throw-away keys.</b></p>",
        t = escape(title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
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
    fn redirects_must_be_loopback() {
        assert!(is_loopback_redirect("http://127.0.0.1:5555/callback"));
        assert!(is_loopback_redirect("http://localhost:1/cb"));
        for bad in [
            "https://127.0.0.1/cb",
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://user@127.0.0.1:1/cb",
            "http://127.0.0.1:1/cb#x",
            "not a url",
        ] {
            assert!(!is_loopback_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn user_codes_normalize() {
        let code = user_code();
        assert_eq!(
            normalize_user_code(&code.to_lowercase().replace('-', " ")),
            code
        );
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
