//! The identity providers the CA trusts and their key sets. OpenID discovery
//! finds each issuer's JWKS at start-up; the set is refetched when a token
//! names a key it does not hold, by one request at a time and at most once
//! per [`MIN_JWKS_REFRESH`]. Keys the verifier cannot use soundly (encryption
//! and symmetric keys, Ed25519 points anyone can sign for) are skipped when
//! a set is read, never trusted.

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
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreProviderMetadata;
use openidconnect::IssuerUrl;
use serde::Deserialize;
use serde_json::Value;

use super::error::TokenError;
use super::signature::accepted_algorithm;
use crate::config::IssuerConfig;
use crate::metrics::Metrics;

/// Shortest time between two JWKS fetches of one issuer, so that a flood of
/// tokens with made-up `kid`s cannot turn the CA into a load generator
/// against the identity provider.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(30);
/// Largest discovery document or JWKS read from an issuer.
const MAX_METADATA_LEN: usize = 1024 * 1024;

/// An identity provider the CA trusts, with its current key set.
pub(super) struct TrustedIssuer {
    pub(super) config: IssuerConfig,
    metrics: Metrics,
    jwks_uri: String,
    pub(super) keys: ArcSwap<Vec<IssuerKey>>,
    /// Counts JWKS refreshes; read without a lock on every verification, so
    /// that a slow refresh holds up only the requests that wait for it.
    pub(super) generation: AtomicU64,
    refresh: tokio::sync::Mutex<RefreshState>,
    http: reqwest::Client,
    min_refresh: Duration,
}

struct RefreshState {
    last_fetch: Instant,
}

/// One usable key of an issuer's JWKS.
pub(super) struct IssuerKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Option<Algorithm>,
    pub(super) key: DecodingKey,
    /// The point of an Ed25519 key, decompressed once (never a small-order
    /// one); `Some` exactly for keys of the EdDSA family.
    pub(super) ed25519: Option<VerifyingKey>,
}

impl TrustedIssuer {
    /// Runs OpenID discovery for `config` and fetches the key set it names.
    pub(super) async fn discover(
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

    /// An issuer whose key set is already known.
    pub(super) fn new(
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

    /// Refetches the JWKS unless another request already did since
    /// `seen_generation`, or the last fetch was too recent.
    pub(super) async fn refresh_keys(&self, seen_generation: u64) -> Result<(), TokenError> {
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
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<IssuerKey>, String> {
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
    use serde_json::json;

    use super::*;
    use crate::oidc::testing::{ed25519_key, jwk};

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
}
