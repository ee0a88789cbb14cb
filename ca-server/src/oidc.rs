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
//!
//! EdDSA signatures are checked with ed25519-dalek in the shared
//! [`Ed25519Batcher`], where [`TokenVerifier::prepare`] and
//! [`TokenVerifier::finish`] let a caller batch them with its own checks;
//! every other algorithm goes through `jsonwebtoken` (aws-lc).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use jit_ssh_common::error_chain;
use jit_ssh_common::http::{read_capped, OidcHttp};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::CoreProviderMetadata;
use openidconnect::IssuerUrl;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::{IssuerConfig, UsernameClaim};
use crate::ed25519_batch::{verify_one, Ed25519Batcher, Ed25519Check};
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
    ed25519_batch: Arc<Ed25519Batcher>,
}

/// A token checked up to its signature by [`TokenVerifier::prepare`]: its
/// header, its issuer and the key it must be signed with are settled, and
/// its signature is verified unless it is an Ed25519 one left for a batch.
pub(crate) struct PreparedToken<'t> {
    token: &'t str,
    issuer: Arc<TrustedIssuer>,
    signature: TokenSignature,
}

enum TokenSignature {
    /// Verified; these are the signed claims.
    Verified(Claims),
    /// An Ed25519 signature over `payload` still to check: `check` until it is
    /// taken for a batch.
    Ed25519 {
        check: Option<Ed25519Check>,
        payload: Vec<u8>,
    },
}

impl PreparedToken<'_> {
    /// Takes the Ed25519 signature check left for a batch, if any; pass its
    /// verdict to [`TokenVerifier::finish`].
    pub(crate) fn take_ed25519_check(&mut self) -> Option<Ed25519Check> {
        match &mut self.signature {
            TokenSignature::Verified(_) => None,
            TokenSignature::Ed25519 { check, .. } => check.take(),
        }
    }
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
    /// The point of an Ed25519 key, decompressed once (never a small-order
    /// one); `Some` exactly for keys of the EdDSA family.
    ed25519: Option<VerifyingKey>,
}

/// The parts of a compact JWS.
struct Jws<'t> {
    token: &'t str,
    /// `header.payload`, the signed bytes.
    signing_input: &'t str,
    signature: &'t str,
    /// The payload, decoded.
    payload: Vec<u8>,
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
            ed25519_batch: Arc::default(),
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
        let (verified, _) = self
            .verify_inner(token, Some(expected_nonce), now, None)
            .await?;
        Ok(verified)
    }

    /// [`TokenVerifier::verify`], with `also`, another Ed25519 signature the
    /// caller needs (an Ed25519 proof of possession), checked in the same
    /// batch as the token's signature: one wait for both. Its verdict comes
    /// with the verified token.
    pub async fn verify_with(
        &self,
        token: &str,
        expected_nonce: &str,
        now: UnixTime,
        also: Option<Ed25519Check>,
    ) -> Result<(VerifiedToken, Option<bool>), TokenError> {
        self.verify_inner(token, Some(expected_nonce), now, also)
            .await
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
        let (verified, _) = self.verify_inner(token, None, now, None).await?;
        Ok(verified)
    }

    async fn verify_inner(
        &self,
        token: &str,
        expected_nonce: Option<&str>,
        now: UnixTime,
        also: Option<Ed25519Check>,
    ) -> Result<(VerifiedToken, Option<bool>), TokenError> {
        let mut prepared = self.prepare(token).await?;
        let token_check = prepared.take_ed25519_check();
        let (has_token_check, has_also) = (token_check.is_some(), also.is_some());
        let checks = token_check.into_iter().chain(also).collect();
        let mut verdicts = self.ed25519_batch.verify_all(checks).await.into_iter();
        let token_verdict = has_token_check.then(|| verdicts.next() == Some(true));
        let also_verdict = has_also.then(|| verdicts.next() == Some(true));
        let verified = self.finish(prepared, token_verdict, expected_nonce, now)?;
        Ok((verified, also_verdict))
    }

    /// [`TokenVerifier::verify`] without the batcher: an EdDSA signature is
    /// checked alone, with aws-lc. What a token costs without batching; the
    /// issuance benchmark measures its raw limit with it.
    pub async fn verify_alone(
        &self,
        token: &str,
        expected_nonce: &str,
        now: UnixTime,
    ) -> Result<VerifiedToken, TokenError> {
        let mut prepared = self.prepare(token).await?;
        let verdict = prepared.take_ed25519_check().map(|check| check.verify());
        self.finish(prepared, verdict, Some(expected_nonce), now)
    }

    /// The first step of [`TokenVerifier::verify`]: every check up to the
    /// signature, the JWKS refresh on an unknown `kid`, and the signature
    /// itself unless it is an Ed25519 one, left for the caller to check in a
    /// batch ([`PreparedToken::take_ed25519_check`]).
    pub(crate) async fn prepare<'t>(
        &self,
        token: &'t str,
    ) -> Result<PreparedToken<'t>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long".into()));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not a compact JWS".into()));
        };
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header: Header = parse_json(&decode_base64(header)?)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let algorithm = accepted_algorithm(&header.alg)?;
        let payload = decode_base64(payload)?;
        let unverified: UnverifiedIssuer = parse_json(&payload)?;
        let issuer = unverified
            .iss
            .and_then(|iss| self.by_issuer_url.get(&iss))
            .ok_or(TokenError::UntrustedIssuer)?;
        let jws = Jws {
            token,
            signing_input,
            signature,
            payload,
        };
        let signature = issuer
            .verify_signature(&jws, header.kid.as_deref(), algorithm)
            .await?;
        Ok(PreparedToken {
            token,
            issuer: issuer.clone(),
            signature,
        })
    }

    /// The last step of [`TokenVerifier::verify`] (`expected_nonce` given)
    /// or [`TokenVerifier::verify_unbound`] (`None`): checks the claims.
    /// `ed25519_verdict` is the verdict on the check taken from `prepared`;
    /// a token whose Ed25519 check was never taken is refused. Crate-private:
    /// a verdict from anywhere else would skip the signature.
    pub(crate) fn finish(
        &self,
        prepared: PreparedToken<'_>,
        ed25519_verdict: Option<bool>,
        expected_nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<VerifiedToken, TokenError> {
        let claims = match prepared.signature {
            TokenSignature::Verified(claims) => claims,
            TokenSignature::Ed25519 {
                check: None,
                payload,
            } if ed25519_verdict == Some(true) => parse_json(&payload)?,
            TokenSignature::Ed25519 { .. } => return Err(TokenError::BadSignature),
        };
        prepared
            .issuer
            .check_claims(claims, expected_nonce, now, self.leeway, prepared.token)
    }
}

fn decode_base64(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("bad base64url".into()))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TokenError> {
    serde_json::from_slice(bytes).map_err(|e| TokenError::Malformed(e.to_string()))
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
        let client = OidcHttp::new(http, MAX_METADATA_LEN);
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
        jws: &Jws<'_>,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<TokenSignature, TokenError> {
        let generation = self.generation.load(Ordering::Acquire);
        match self.try_keys(jws, kid, algorithm) {
            Err(TokenError::UnknownKey) => {
                self.refresh_keys(generation).await?;
                self.try_keys(jws, kid, algorithm)
            }
            other => other,
        }
    }

    fn try_keys(
        &self,
        jws: &Jws<'_>,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<TokenSignature, TokenError> {
        let keys = self.keys.load();
        let mut candidates = keys.iter().filter(|k| {
            kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
                && k.algorithm.is_none_or(|a| a == algorithm)
                && k.key.family() == algorithm.family()
        });
        let Some(first) = candidates.next() else {
            return Err(TokenError::UnknownKey);
        };
        if algorithm == Algorithm::EdDSA {
            let keys = std::iter::once(first).chain(candidates);
            return ed25519_signature(jws, keys.filter_map(|k| k.ed25519).collect());
        }
        let token = jws.token;
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
        result
            .map(|data| TokenSignature::Verified(data.claims))
            .map_err(jwt_error)
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

fn jwt_error(error: jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
        jsonwebtoken::errors::ErrorKind::Json(e) => TokenError::Malformed(e.to_string()),
        _ => TokenError::BadSignature,
    }
}

/// The EdDSA signature of `jws` by one of `keys` (in JWKS order): left for a
/// batch when there is one key (the rule for tokens with a `kid`); else
/// tried with each key in turn here, so that the wrong keys' failures cannot
/// fail (and pause) the shared batches.
fn ed25519_signature(jws: &Jws<'_>, keys: Vec<VerifyingKey>) -> Result<TokenSignature, TokenError> {
    // The header checks jsonwebtoken makes for the other algorithms (it
    // refuses, for one, extra parameters that are not strings).
    jsonwebtoken::decode_header(jws.token).map_err(jwt_error)?;
    // Canonical unpadded base64url and 64 bytes, so that a signature has one
    // encoding and a token one digest (dalek and aws-lc refuse an `S` that is
    // not reduced, the other way to write the same signature).
    let signature = URL_SAFE_NO_PAD
        .decode(jws.signature)
        .ok()
        .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
        .ok_or(TokenError::BadSignature)?;
    let message = jws.signing_input.as_bytes();
    if let [key] = keys[..] {
        return Ok(TokenSignature::Ed25519 {
            check: Some(Ed25519Check {
                key,
                message: message.to_vec(),
                signature,
            }),
            payload: jws.payload.clone(),
        });
    }
    if keys.iter().any(|key| verify_one(key, message, &signature)) {
        return parse_json(&jws.payload).map(TokenSignature::Verified);
    }
    Err(TokenError::BadSignature)
}

/// The point of an Ed25519 JWK, decompressed (`None` for other key types);
/// an error for an OKP key that is not Ed25519, off the curve, or of small
/// order.
fn ed25519_key(jwk: &Jwk) -> Result<Option<VerifyingKey>, &'static str> {
    let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm else {
        return Ok(None);
    };
    if okp.curve != EllipticCurve::Ed25519 {
        return Err("an OKP key that is not Ed25519");
    }
    let point: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&okp.x)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("an Ed25519 key that is not 32 bytes of base64url")?;
    let key = VerifyingKey::from_bytes(&point).map_err(|_| "not an Ed25519 curve point")?;
    // Small-order keys verify signatures nobody needed a private key to
    // make, alone and in batches.
    if key.is_weak() {
        return Err("a small-order Ed25519 point");
    }
    Ok(Some(key))
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
    let body = read_capped(response, MAX_METADATA_LEN)
        .await
        .map_err(|e| e.to_string())?;
    parse_jwks(&body).map_err(|e| format!("JWKS at {url}: {e}"))
}

/// Parses a JWKS document into the keys this verifier can use. Keys it cannot
/// use (encryption keys, unknown types, symmetric keys, Ed25519 keys that are
/// not sound points) are skipped rather than failing the whole set.
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
            let ed25519 = ed25519_key(&jwk)
                .inspect_err(|reason| {
                    tracing::warn!(kid = ?jwk.common.key_id, reason, "skipping JWKS key");
                })
                .ok()?;
            Some(IssuerKey {
                kid: jwk.common.key_id,
                algorithm,
                key,
                ed25519,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
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

    const NOW: UnixTime = 1_800_000_000;

    fn verifier(jwks: Vec<Value>) -> TokenVerifier {
        TokenVerifier::with_known_issuer(
            issuer(UsernameClaim::PreferredUsername),
            "https://idp.example.com/jwks".into(),
            json!({ "keys": jwks }).to_string().as_bytes(),
            Duration::from_secs(60),
            reqwest::Client::new(),
            &Metrics::new(),
        )
        .expect("verifier")
    }

    fn ed25519_key() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    fn jwk(kid: Option<&str>, point: &[u8]) -> Value {
        let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point)});
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
        }
        jwk
    }

    fn payload(username: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            json!({"iss": "https://idp.example.com", "sub": username, "aud": "jit-ssh",
                "iat": NOW, "exp": NOW + 300, "nonce": "n", "preferred_username": username})
            .to_string(),
        )
    }

    /// A compact JWS of `header` and `payload` signed by `key`.
    fn signed(key: &SigningKey, header: Value, payload: &str) -> String {
        let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
        let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        format!("{input}.{signature}")
    }

    fn token(key: &SigningKey, kid: Option<&str>, username: &str) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "EdDSA", "typ": "JWT"}),
        };
        signed(key, header, &payload(username))
    }

    fn with_signature(token: &str, signature: &str) -> String {
        let (input, _) = token.rsplit_once('.').expect("compact JWS");
        format!("{input}.{signature}")
    }

    async fn username(verifier: &TokenVerifier, token: &str) -> Result<String, TokenError> {
        verifier
            .verify(token, "n", NOW)
            .await
            .map(|verified| verified.identity.username)
    }

    #[tokio::test]
    async fn eddsa_tokens_are_checked_in_a_batch() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let token = token(&key, Some("k1"), "alice");
        assert_eq!(username(&verifier, &token).await, Ok("alice".into()));
        let mut prepared = verifier.prepare(&token).await.expect("prepared");
        let check = prepared.take_ed25519_check().expect("left for a batch");
        assert!(check.verify());
        assert!(prepared.take_ed25519_check().is_none());
        let verified = verifier.finish(prepared, Some(true), Some("n"), NOW);
        assert_eq!(verified.expect("valid").identity.username, "alice");
    }

    #[tokio::test]
    async fn verify_with_answers_for_the_extra_check_only_with_a_valid_token() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let token = token(&key, Some("k1"), "alice");
        let other = ed25519_key();
        let extra = |message: &[u8], signer: &SigningKey| Ed25519Check {
            key: other.verifying_key(),
            message: message.to_vec(),
            signature: signer.sign(message),
        };
        for (check, verdict) in [
            (Some(extra(b"proof", &other)), Some(true)),
            (Some(extra(b"proof", &key)), Some(false)),
            (None, None),
        ] {
            let (verified, extra_verdict) = verifier
                .verify_with(&token, "n", NOW, check)
                .await
                .expect("valid token");
            assert_eq!(verified.identity.username, "alice");
            assert_eq!(extra_verdict, verdict);
        }
        let forged = with_signature(&token, &URL_SAFE_NO_PAD.encode([7u8; 64]));
        let result = verifier
            .verify_with(&forged, "n", NOW, Some(extra(b"proof", &other)))
            .await;
        assert_eq!(result.err(), Some(TokenError::BadSignature));
    }

    #[tokio::test]
    async fn verify_alone_checks_the_signature_itself() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let good = token(&key, Some("k1"), "alice");
        let verified = verifier.verify_alone(&good, "n", NOW).await;
        assert_eq!(verified.expect("valid").identity.username, "alice");
        let forged = token(&ed25519_key(), Some("k1"), "alice");
        let result = verifier.verify_alone(&forged, "n", NOW).await;
        assert_eq!(result.err(), Some(TokenError::BadSignature));
    }

    #[tokio::test]
    async fn an_eddsa_check_never_taken_or_failed_refuses_the_token() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let token = token(&key, Some("k1"), "alice");
        for verdict in [None, Some(true), Some(false)] {
            let prepared = verifier.prepare(&token).await.expect("prepared");
            let result = verifier.finish(prepared, verdict, Some("n"), NOW);
            assert_eq!(result.err(), Some(TokenError::BadSignature), "{verdict:?}");
        }
        let mut prepared = verifier.prepare(&token).await.expect("prepared");
        let _taken = prepared.take_ed25519_check();
        let result = verifier.finish(prepared, Some(false), Some("n"), NOW);
        assert_eq!(result.err(), Some(TokenError::BadSignature));
    }

    #[tokio::test]
    async fn forged_eddsa_tokens_are_refused() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let good = token(&key, Some("k1"), "alice");
        let (header, rest) = good.split_once('.').expect("JWS");
        let signature = rest.rsplit_once('.').expect("JWS").1;
        let signature_bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64");
        // The last of 86 characters carries 2 bits of the signature and 4
        // zero bits; setting one gives a second spelling of the same bytes.
        let last = signature.chars().last().expect("signature");
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).expect("base64url");
        let other_spelling = format!(
            "{}{}",
            &signature[..signature.len() - 1],
            &alphabet[index + 1..index + 2]
        );
        assert_eq!(index % 16, 0, "trailing bits are zero");
        let mut longer = signature_bytes.clone();
        longer.push(0);
        let cases = [
            (
                "tampered payload",
                format!("{header}.{}.{signature}", payload("root")),
            ),
            ("another key", token(&ed25519_key(), Some("k1"), "alice")),
            (
                "63 bytes",
                with_signature(&good, &URL_SAFE_NO_PAD.encode(&signature_bytes[..63])),
            ),
            (
                "65 bytes",
                with_signature(&good, &URL_SAFE_NO_PAD.encode(&longer)),
            ),
            (
                "non-canonical base64url",
                with_signature(&good, &other_spelling),
            ),
            ("padded base64url", format!("{good}==")),
            (
                "standard base64",
                with_signature(&good, &signature.replace(['-', '_'], "+")),
            ),
            ("empty signature", with_signature(&good, "")),
        ];
        for (name, token) in cases {
            if name == "standard base64" && !signature.contains(['-', '_']) {
                continue;
            }
            assert_eq!(
                username(&verifier, &token).await,
                Err(TokenError::BadSignature),
                "{name}"
            );
        }
        // A signature with S + L (the other way to write S) is refused.
        let mut s_plus_l = signature_bytes;
        add_group_order(&mut s_plus_l[32..]);
        let malleated = with_signature(&good, &URL_SAFE_NO_PAD.encode(&s_plus_l));
        assert_eq!(
            username(&verifier, &malleated).await,
            Err(TokenError::BadSignature)
        );
        assert_eq!(username(&verifier, &good).await, Ok("alice".into()));
    }

    /// Adds the order of the Ed25519 group to a 32-byte little-endian scalar.
    fn add_group_order(scalar: &mut [u8]) {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, l) in scalar.iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
    }

    #[tokio::test]
    async fn eddsa_header_and_key_checks_match_the_other_algorithms() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let payload = payload("alice");
        let crit = signed(
            &key,
            json!({"alg": "EdDSA", "kid": "k1", "crit": ["b64"]}),
            &payload,
        );
        let odd_header = signed(
            &key,
            json!({"alg": "EdDSA", "kid": "k1", "b64": false}),
            &payload,
        );
        let unknown_kid = token(&key, Some("k2"), "alice");
        assert_eq!(
            username(&verifier, &crit).await,
            Err(TokenError::CriticalHeader)
        );
        assert!(matches!(
            username(&verifier, &odd_header).await,
            Err(TokenError::Malformed(_))
        ));
        // Refetching the JWKS waits MIN_JWKS_REFRESH after the last fetch.
        assert_eq!(
            username(&verifier, &unknown_kid).await,
            Err(TokenError::UnknownKey)
        );
        let bad_claims = signed(
            &key,
            json!({"alg": "EdDSA", "kid": "k1"}),
            &URL_SAFE_NO_PAD
                .encode(json!({"iss": "https://idp.example.com", "exp": "soon"}).to_string()),
        );
        assert!(matches!(
            username(&verifier, &bad_claims).await,
            Err(TokenError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn without_kid_each_ed25519_key_is_tried_in_turn() {
        let (first, second) = (ed25519_key(), ed25519_key());
        let verifier = verifier(vec![
            jwk(Some("a"), first.verifying_key().as_bytes()),
            jwk(Some("b"), second.verifying_key().as_bytes()),
        ]);
        let good = token(&second, None, "alice");
        let mut prepared = verifier.prepare(&good).await.expect("prepared");
        assert!(
            prepared.take_ed25519_check().is_none(),
            "checked here, not in a batch"
        );
        assert_eq!(username(&verifier, &good).await, Ok("alice".into()));
        let forged = token(&ed25519_key(), None, "alice");
        assert_eq!(
            username(&verifier, &forged).await,
            Err(TokenError::BadSignature)
        );
    }

    #[tokio::test]
    async fn a_batched_eddsa_token_is_refused_for_a_wrong_key_or_a_key_of_another_alg() {
        let key = ed25519_key();
        let mut rs256_labelled = jwk(Some("rsa"), key.verifying_key().as_bytes());
        rs256_labelled["alg"] = "RS256".into();
        let verifier = verifier(vec![
            jwk(Some("k1"), key.verifying_key().as_bytes()),
            rs256_labelled,
        ]);
        // Without a kid, one Ed25519 key: the signature goes to the batch.
        let forged = token(&ed25519_key(), None, "alice");
        let mut prepared = verifier.prepare(&forged).await.expect("prepared");
        assert!(prepared.take_ed25519_check().is_some(), "left for a batch");
        assert_eq!(
            username(&verifier, &forged).await,
            Err(TokenError::BadSignature)
        );
        // A kid naming a key whose JWK says RS256 is no EdDSA key.
        let confused = token(&key, Some("rsa"), "alice");
        assert_eq!(
            username(&verifier, &confused).await,
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn ed25519_keys_anyone_can_sign_for_are_skipped() {
        let good = ed25519_key().verifying_key();
        // The identity, a point of order 1, and one of order 4.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order_4 = [0u8; 32];
        order_4[31] = 0x80;
        let off_curve = (2u8..)
            .map(|y| {
                let mut point = [0u8; 32];
                point[0] = y;
                point
            })
            .find(|point| VerifyingKey::from_bytes(point).is_err())
            .expect("some y is on no curve point");
        let mut ed448 = jwk(Some("ed448"), good.as_bytes());
        ed448["crv"] = "Ed448".into();
        let jwks = json!({"keys": [
            jwk(Some("identity"), &identity),
            jwk(Some("order-4"), &[0u8; 32]),
            jwk(Some("order-4b"), &order_4),
            jwk(Some("off-curve"), &off_curve),
            jwk(Some("short"), &good.as_bytes()[..31]),
            ed448,
            jwk(Some("good"), good.as_bytes()),
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).expect("JWKS");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("good")]);
        assert_eq!(keys[0].ed25519, Some(good));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forged_token_in_a_batch_fails_alone() {
        use crate::subject_key::{ProofCheck, SubjectKey};
        use ssh_key::{HashAlg, LineEnding, PrivateKey};

        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let names = ["alice", "bob", "carol", "dave", "erin"];
        let tokens: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| match i {
                2 => token(&ed25519_key(), Some("k1"), name),
                _ => token(&key, Some("k1"), name),
            })
            .collect();
        let mut prepared = Vec::new();
        let mut checks = Vec::new();
        for compact in &tokens {
            let mut token = verifier.prepare(compact).await.expect("prepared");
            checks.push(token.take_ed25519_check().expect("EdDSA"));
            prepared.push(token);
            let user = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
                .expect("key");
            let subject =
                SubjectKey::parse(&user.public_key().to_openssh().expect("line")).expect("subject");
            let message = ca_proto::proof_message(compact, subject.blob());
            let proof = user
                .sign(ca_proto::PROOF_NAMESPACE, HashAlg::Sha512, &message)
                .expect("proof")
                .to_pem(LineEnding::LF)
                .expect("pem");
            match subject.proof_check(compact, &proof).expect("proof") {
                ProofCheck::Ed25519(check) => checks.push(*check),
                ProofCheck::Other(_) => panic!("Ed25519 proofs are left for a batch"),
            }
        }
        let verdicts = verifier.ed25519_batch.verify_all(checks).await;
        let expected: Vec<bool> = (0..10).map(|i| i != 4).collect();
        assert_eq!(verdicts, expected);
        for ((token, name), verdict) in prepared
            .into_iter()
            .zip(names)
            .zip(verdicts.iter().step_by(2))
        {
            let result = verifier.finish(token, Some(*verdict), Some("n"), NOW);
            match *verdict {
                true => assert_eq!(result.expect("valid").identity.username, name),
                false => assert_eq!(result.err(), Some(TokenError::BadSignature), "{name}"),
            }
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
