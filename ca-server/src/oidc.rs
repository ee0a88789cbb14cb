//! ID token verification: the security core of the CA.
//!
//! OpenID discovery (through the `openidconnect` crate) finds each trusted
//! issuer's JWKS at start-up. A token is then accepted only if, in this order:
//! its header names an asymmetric algorithm (`none` and HMAC are refused before
//! any key is looked at); its `iss` is exactly a configured issuer; its
//! signature verifies with a key from that issuer's JWKS (the set is refetched
//! on an unknown `kid`, at most once per [`MIN_JWKS_REFRESH`]); `aud` contains
//! the configured `client_id` (and `azp` equals it when present or when there
//! are several audiences); `exp`, `nbf` and `iat` hold within the configured
//! leeway; a `nonce`, when present, equals the one derived from the subject
//! key; and the username claim yields a Unix login name (an `email` only when
//! `email_verified` is true). Single use is enforced by the store, which
//! records [`VerifiedToken::digest`] in the same transaction as the certificate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::CoreProviderMetadata;
use openidconnect::IssuerUrl;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::{IssuerConfig, UsernameClaim};
use crate::identity::{is_workload_name, login_name_from_claim, Identity};
use crate::metrics::Metrics;
use crate::UnixTime;

/// Shortest time between two JWKS fetches of one issuer, so that a flood of
/// tokens with made-up `kid`s cannot turn the CA into a load generator
/// against the identity provider.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(30);
/// Longest ID token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest discovery document or JWKS read from an issuer.
const MAX_METADATA_LEN: usize = 1024 * 1024;

/// Why a token was refused. Messages are safe to return to the caller: they
/// never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, or claims of the wrong type.
    #[error("ID token is malformed: {0}")]
    Malformed(String),
    /// `alg: none`.
    #[error("ID token is unsigned (alg \"none\")")]
    Unsigned,
    /// HS256 and friends: the "key" would be a shared secret or a public key
    /// misused as one.
    #[error("ID token uses a symmetric algorithm ({0}); only RS*, PS*, ES256/384 and EdDSA are accepted")]
    SymmetricAlgorithm(String),
    /// Any other algorithm name.
    #[error("ID token algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// A `crit` header this verifier cannot honour.
    #[error("ID token has critical header parameters, which are not supported")]
    CriticalHeader,
    /// `iss` is not a configured issuer.
    #[error("ID token issuer is not trusted by this CA")]
    UntrustedIssuer,
    /// No key of the issuer matches the token's `kid` and algorithm.
    #[error("ID token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("ID token signature is invalid")]
    BadSignature,
    /// `exp` is past.
    #[error("ID token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("ID token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("ID token was issued in the future; check clocks")]
    IssuedInFuture,
    /// `aud` does not contain the client ID.
    #[error("ID token audience does not include this CA's client_id")]
    WrongAudience,
    /// `azp` is not the client ID.
    #[error("ID token authorized party (azp) is not this CA's client_id")]
    WrongAuthorizedParty,
    /// The `nonce` was made for another key.
    #[error("ID token nonce does not match the public key (it was obtained for another key)")]
    NonceMismatch,
    /// A required claim is absent.
    #[error("ID token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// `email` is the username claim but is not verified.
    #[error("ID token email is not verified (email_verified must be true)")]
    EmailNotVerified,
    /// The username claim is not usable as a login name.
    #[error("the username claim cannot name a user (preferred_username and email must be Unix login names: letters, digits, '.', '_', '-', at most 32)")]
    InvalidUsername,
    /// The issuer's keys cannot be fetched right now.
    #[error("identity provider {0} is unavailable")]
    IssuerUnavailable(String),
}

/// Why start-up discovery failed.
#[derive(Debug, thiserror::Error)]
#[error("OpenID discovery for issuer {name} ({issuer}) failed after {attempts} attempts: {reason}")]
pub struct DiscoveryError {
    name: String,
    issuer: String,
    attempts: u32,
    reason: String,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Who it names.
    pub identity: Identity,
    /// Its `exp`; its digest must be remembered at least this long.
    pub expires_at: UnixTime,
    /// SHA-256 of the compact token, the key of single use.
    pub digest: [u8; 32],
}

/// Verifies ID tokens from the configured issuers.
pub struct TokenVerifier {
    by_issuer_url: HashMap<String, Arc<TrustedIssuer>>,
    issuers: Vec<Arc<TrustedIssuer>>,
    leeway: u64,
}

struct TrustedIssuer {
    config: IssuerConfig,
    metrics: Metrics,
    jwks_uri: String,
    keys: ArcSwap<Vec<IssuerKey>>,
    /// Counts JWKS refreshes; read without a lock on every verification, so
    /// that a slow refresh holds up only the requests that wait for it.
    generation: AtomicU64,
    refresh: tokio::sync::Mutex<RefreshState>,
    http: reqwest::Client,
    min_refresh: Duration,
}

struct RefreshState {
    last_fetch: Instant,
}

struct IssuerKey {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Option<Audience>,
    azp: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    nonce: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl TokenVerifier {
    /// Runs OpenID discovery and fetches the JWKS of every issuer, retrying
    /// each up to `attempts` times with backoff. Fails if any issuer stays
    /// unreachable: a CA that silently trusts fewer issuers than configured
    /// would lock people out with no clue why.
    pub async fn discover(
        issuers: &[IssuerConfig],
        leeway: Duration,
        attempts: u32,
        http: reqwest::Client,
        metrics: &Metrics,
    ) -> Result<TokenVerifier, DiscoveryError> {
        let mut trusted = Vec::new();
        for config in issuers {
            let mut delay = Duration::from_millis(250);
            let mut attempt = 1;
            let issuer = loop {
                match TrustedIssuer::discover(config, &http, metrics).await {
                    Ok(issuer) => break issuer,
                    Err(reason) if attempt >= attempts => {
                        return Err(DiscoveryError {
                            name: config.name.clone(),
                            issuer: config.issuer.clone(),
                            attempts,
                            reason,
                        })
                    }
                    Err(reason) => {
                        tracing::warn!(issuer = %config.name, attempt, %reason, "OpenID discovery failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(4));
                        attempt += 1;
                    }
                }
            };
            tracing::info!(issuer = %config.name, url = %config.issuer, keys = issuer.keys.load().len(), "trusting OpenID provider");
            trusted.push(Arc::new(issuer));
        }
        Ok(TokenVerifier::from_issuers(trusted, leeway))
    }

    /// A verifier for one issuer whose metadata is known in-process (the dev
    /// mode's embedded provider): `jwks` is its current key set, `jwks_uri`
    /// where to refetch it on an unknown `kid`. No discovery request is made.
    pub fn with_known_issuer(
        config: IssuerConfig,
        jwks_uri: String,
        jwks: &[u8],
        leeway: Duration,
        http: reqwest::Client,
        metrics: &Metrics,
    ) -> Result<TokenVerifier, String> {
        let issuer = TrustedIssuer::new(config, jwks_uri, parse_jwks(jwks)?, http, metrics);
        Ok(TokenVerifier::from_issuers(vec![Arc::new(issuer)], leeway))
    }

    fn from_issuers(issuers: Vec<Arc<TrustedIssuer>>, leeway: Duration) -> TokenVerifier {
        TokenVerifier {
            by_issuer_url: issuers
                .iter()
                .map(|i| (i.config.issuer.clone(), i.clone()))
                .collect(),
            issuers,
            leeway: leeway.as_secs(),
        }
    }

    /// The trusted issuers, in configuration order.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerConfig> {
        self.issuers.iter().map(|i| &i.config)
    }

    /// Verifies `token` at time `now` for a subject key whose nonce is
    /// `expected_nonce`.
    pub async fn verify(
        &self,
        token: &str,
        expected_nonce: &str,
        now: UnixTime,
    ) -> Result<VerifiedToken, TokenError> {
        self.verify_inner(token, Some(expected_nonce), now).await
    }

    /// Verifies `token` at time `now` where no subject key is involved (admin
    /// calls): every check of [`TokenVerifier::verify`] except the nonce,
    /// which binds a token to the key it was obtained for and so says nothing
    /// here. Callers must spend the token (single use) with their action, so
    /// that a token seen once cannot be replayed.
    pub async fn verify_unbound(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<VerifiedToken, TokenError> {
        self.verify_inner(token, None, now).await
    }

    async fn verify_inner(
        &self,
        token: &str,
        expected_nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long".into()));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not a compact JWS".into()));
        };
        let header: Header = decode_segment(header)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let algorithm = accepted_algorithm(&header.alg)?;
        let unverified: UnverifiedIssuer = decode_segment(payload)?;
        let issuer = unverified
            .iss
            .and_then(|iss| self.by_issuer_url.get(&iss))
            .ok_or(TokenError::UntrustedIssuer)?;
        let claims = issuer
            .verify_signature(token, header.kid.as_deref(), algorithm)
            .await?;
        issuer.check_claims(claims, expected_nonce, now, self.leeway, token)
    }
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("bad base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(e.to_string()))
}

fn accepted_algorithm(name: &str) -> Result<Algorithm, TokenError> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        n if n.eq_ignore_ascii_case("none") => Err(TokenError::Unsigned),
        n if n.starts_with("HS") => Err(TokenError::SymmetricAlgorithm(n.into())),
        n => Err(TokenError::UnsupportedAlgorithm(
            n.chars().take(16).collect(),
        )),
    }
}

impl TrustedIssuer {
    async fn discover(
        config: &IssuerConfig,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let url = IssuerUrl::new(config.issuer.clone()).map_err(|e| e.to_string())?;
        let client = |request| oidc_http(http, request);
        let metadata = CoreProviderMetadata::discover_async(url, &client)
            .await
            .map_err(|e| error_chain(&e))?;
        let jwks_uri = metadata.jwks_uri().url().to_string();
        let keys = fetch_jwks(http, &jwks_uri).await;
        let result = if keys.is_ok() { "ok" } else { "error" };
        metrics
            .jwks_fetches
            .with_label_values(&[config.name.as_str(), result])
            .inc();
        let keys = keys?;
        if keys.is_empty() {
            return Err(format!("JWKS at {jwks_uri} has no usable signing key"));
        }
        Ok(TrustedIssuer::new(
            config.clone(),
            jwks_uri,
            keys,
            http.clone(),
            metrics,
        ))
    }

    fn new(
        config: IssuerConfig,
        jwks_uri: String,
        keys: Vec<IssuerKey>,
        http: reqwest::Client,
        metrics: &Metrics,
    ) -> Self {
        TrustedIssuer {
            metrics: metrics.clone(),
            config,
            jwks_uri,
            keys: ArcSwap::from_pointee(keys),
            generation: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_fetch: Instant::now(),
            }),
            http,
            min_refresh: MIN_JWKS_REFRESH,
        }
    }

    async fn verify_signature(
        &self,
        token: &str,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Claims, TokenError> {
        let generation = self.generation.load(Ordering::Acquire);
        match self.try_keys(token, kid, algorithm) {
            Err(TokenError::UnknownKey) => {
                self.refresh_keys(generation).await?;
                self.try_keys(token, kid, algorithm)
            }
            other => other,
        }
    }

    fn try_keys(
        &self,
        token: &str,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Claims, TokenError> {
        let keys = self.keys.load();
        let mut candidates = keys.iter().filter(|k| {
            kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
                && k.algorithm.is_none_or(|a| a == algorithm)
                && k.key.family() == algorithm.family()
        });
        let Some(first) = candidates.next() else {
            return Err(TokenError::UnknownKey);
        };
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut result = jsonwebtoken::decode::<Claims>(token, &first.key, &validation);
        // Without a `kid`, every key of the right type is a candidate.
        for key in candidates {
            if result.is_ok() {
                break;
            }
            result = jsonwebtoken::decode::<Claims>(token, &key.key, &validation);
        }
        result.map(|data| data.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::Json(e) => TokenError::Malformed(e.to_string()),
            _ => TokenError::BadSignature,
        })
    }

    /// Refetches the JWKS unless another request already did since
    /// `seen_generation`, or the last fetch was too recent.
    async fn refresh_keys(&self, seen_generation: u64) -> Result<(), TokenError> {
        let mut state = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return Ok(());
        }
        if state.last_fetch.elapsed() < self.min_refresh {
            return Err(TokenError::UnknownKey);
        }
        state.last_fetch = Instant::now();
        let fetched = fetch_jwks(&self.http, &self.jwks_uri).await;
        let result = if fetched.is_ok() { "ok" } else { "error" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[self.config.name.as_str(), result])
            .inc();
        match fetched {
            Ok(keys) if !keys.is_empty() => {
                tracing::info!(issuer = %self.config.name, keys = keys.len(), "refreshed JWKS");
                self.keys.store(Arc::new(keys));
                self.generation.fetch_add(1, Ordering::Release);
                Ok(())
            }
            Ok(_) => Err(TokenError::UnknownKey),
            Err(reason) => {
                tracing::warn!(issuer = %self.config.name, %reason, "JWKS refresh failed");
                Err(TokenError::IssuerUnavailable(self.config.name.clone()))
            }
        }
    }

    fn check_claims(
        &self,
        claims: Claims,
        expected_nonce: Option<&str>,
        now: UnixTime,
        leeway: u64,
        token: &str,
    ) -> Result<VerifiedToken, TokenError> {
        let config = &self.config;
        if claims.iss != config.issuer {
            return Err(TokenError::UntrustedIssuer);
        }
        let audiences = match claims.aud {
            Some(Audience::One(aud)) => vec![aud],
            Some(Audience::Many(auds)) => auds,
            None => return Err(TokenError::MissingClaim("aud")),
        };
        if !audiences.contains(&config.client_id) {
            return Err(TokenError::WrongAudience);
        }
        match claims.azp {
            Some(azp) if azp != config.client_id => return Err(TokenError::WrongAuthorizedParty),
            None if audiences.len() > 1 => return Err(TokenError::WrongAuthorizedParty),
            _ => {}
        }
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let leeway = i64::try_from(leeway).unwrap_or(0);
        let exp = claims.exp.ok_or(TokenError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        let iat = claims.iat.ok_or(TokenError::MissingClaim("iat"))?;
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if let (Some(nonce), Some(expected_nonce)) = (&claims.nonce, expected_nonce) {
            if !bool::from(nonce.as_bytes().ct_eq(expected_nonce.as_bytes())) {
                return Err(TokenError::NonceMismatch);
            }
        }
        Ok(VerifiedToken {
            identity: identity_from_claims(config, claims.sub, claims.other)?,
            expires_at: u64::try_from(exp).unwrap_or(0),
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }
}

/// Maps the claims of a token already verified to be from `config`'s issuer
/// to an [`Identity`]: `sub`, the username (a Unix login name, from
/// `preferred_username` or a verified `email`), email and groups. `claims`
/// holds every claim but the registered ones. `policy explain` uses the same
/// mapping, so it decides exactly as the server would.
pub fn identity_from_claims(
    config: &IssuerConfig,
    subject: Option<String>,
    claims: Map<String, Value>,
) -> Result<Identity, TokenError> {
    let subject = subject
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .map(String::from);
    let username = match &config.username_claim {
        UsernameClaim::PreferredUsername => {
            let value = claims
                .get("preferred_username")
                .and_then(Value::as_str)
                .ok_or(TokenError::MissingClaim("preferred_username"))?;
            login_name_from_claim(value, false)
        }
        UsernameClaim::Email => {
            let value = email.as_deref().ok_or(TokenError::MissingClaim("email"))?;
            if claims.get("email_verified") != Some(&Value::Bool(true)) {
                return Err(TokenError::EmailNotVerified);
            }
            login_name_from_claim(value, true)
        }
        UsernameClaim::Claim(name) => {
            let value = claims
                .get(name.as_str())
                .and_then(Value::as_str)
                .ok_or(TokenError::MissingClaim("username_claim"))?;
            is_workload_name(value).then(|| value.to_string())
        }
    }
    .ok_or(TokenError::InvalidUsername)?;
    let groups = match claims.get(&config.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Ok(Identity {
        issuer_name: config.name.clone(),
        issuer: config.issuer.clone(),
        subject,
        username,
        email,
        groups,
        claims,
    })
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Vec<IssuerKey>, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let body = read_limited(response).await?;
    parse_jwks(&body).map_err(|e| format!("JWKS at {url}: {e}"))
}

/// Parses a JWKS document into the keys this verifier can use. Keys it cannot
/// use (encryption keys, unknown types, symmetric keys) are skipped rather
/// than failing the whole set.
fn parse_jwks(body: &[u8]) -> Result<Vec<IssuerKey>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|jwk| {
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| accepted_algorithm(&a.to_string()).ok());
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            if matches!(key.family(), jsonwebtoken::AlgorithmFamily::Hmac) {
                return None;
            }
            Some(IssuerKey {
                kid: jwk.common.key_id,
                algorithm,
                key,
            })
        })
        .collect())
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_METADATA_LEN {
            return Err("response too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Adapts reqwest to the HTTP client interface of `openidconnect`.
async fn oidc_http(
    http: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(error_chain(&e)))?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = read_limited(response).await.map_err(HttpError)?;
    builder.body(body).map_err(|e| HttpError(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer(username_claim: UsernameClaim) -> IssuerConfig {
        IssuerConfig {
            name: "corp".into(),
            issuer: "https://idp.example.com".into(),
            client_id: "jit-ssh".into(),
            username_claim,
            groups_claim: "groups".into(),
            scopes: vec!["openid".into()],
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn preferred_username_must_be_a_login_name() {
        let config = issuer(UsernameClaim::PreferredUsername);
        let identity = identity_from_claims(
            &config,
            Some("u1".into()),
            claims(json!({"preferred_username": "Alice", "groups": ["eng", 3, "sre"]})),
        )
        .expect("valid");
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.groups, ["eng", "sre"]);
        assert_eq!(identity.display_name(), "alice@corp");
        for bad in [
            json!({"preferred_username": "alice@corp"}),
            json!({"preferred_username": "a b"}),
            json!({}),
        ] {
            assert!(identity_from_claims(&config, Some("u1".into()), claims(bad)).is_err());
        }
        assert_eq!(
            identity_from_claims(
                &config,
                None,
                claims(json!({"preferred_username": "alice"}))
            )
            .map(|i| i.username),
            Err(TokenError::MissingClaim("sub"))
        );
    }

    #[test]
    fn email_needs_email_verified_true() {
        let config = issuer(UsernameClaim::Email);
        let ok = identity_from_claims(
            &config,
            Some("u1".into()),
            claims(
                json!({"email": "Bob.Smith@example.com", "email_verified": true, "groups": "ops"}),
            ),
        )
        .expect("valid");
        assert_eq!(ok.username, "bob.smith");
        assert_eq!(ok.groups, ["ops"]);
        for verified in [json!(false), json!("true"), Value::Null] {
            let result = identity_from_claims(
                &config,
                Some("u1".into()),
                claims(json!({"email": "bob@example.com", "email_verified": verified})),
            );
            assert_eq!(
                result.map(|i| i.username),
                Err(TokenError::EmailNotVerified)
            );
        }
    }

    #[test]
    fn workloads_are_named_by_their_claim() {
        let config = issuer(UsernameClaim::Claim("repository".into()));
        let github = claims(json!({"repository": "acme/app", "ref": "refs/heads/main"}));
        let identity = identity_from_claims(
            &config,
            Some("repo:acme/app:ref:refs/heads/main".into()),
            github,
        )
        .expect("valid");
        assert_eq!(identity.display_name(), "acme/app@corp");
        assert_eq!(identity.claims["ref"], "refs/heads/main");
        for bad in [
            json!({"repository": "acme app"}),
            json!({"repository": ""}),
            json!({"repository": 7}),
        ] {
            assert!(identity_from_claims(&config, Some("s".into()), claims(bad)).is_err());
        }
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert_eq!(accepted_algorithm("RS256"), Ok(Algorithm::RS256));
        assert_eq!(accepted_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
        assert_eq!(accepted_algorithm("none"), Err(TokenError::Unsigned));
        assert_eq!(accepted_algorithm("NONE"), Err(TokenError::Unsigned));
        assert!(matches!(
            accepted_algorithm("HS256"),
            Err(TokenError::SymmetricAlgorithm(_))
        ));
        assert!(matches!(
            accepted_algorithm("ES512"),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
    }
}
