//! The identity providers the CA trusts and their key sets. OpenID discovery
//! finds each issuer's JWKS at start-up. The set is refetched on a schedule,
//! after the `max-age` of the provider's `Cache-Control` within the
//! configured [`JwksRefresh`] bounds (an hour when it gives none), so that a
//! key the provider withdraws stops being trusted; and when a token names a
//! key it does not hold, by one request at a time and at most once per
//! [`MIN_JWKS_REFRESH`]. A fetched set replaces the one before it whole,
//! even when it is empty; a failed fetch keeps it and is retried. Keys the
//! verifier cannot use soundly (encryption and symmetric keys, Ed25519
//! points anyone can sign for) are skipped when a set is read, never
//! trusted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
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
use reqwest::header::{HeaderMap, AGE, CACHE_CONTROL};
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
/// How long a fetched key set stays fresh when the provider's response
/// says nothing (no `Cache-Control` `max-age`), before the bounds apply.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// The bounds within which each issuer's JWKS is refetched on a schedule:
/// after the `max-age` of its `Cache-Control` (an hour when it gives none),
/// never sooner than `min` nor later than `max`. A key the provider
/// withdraws is trusted at most until the next refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    /// Shortest time between two scheduled fetches.
    pub min: Duration,
    /// Longest time a fetched set is trusted without a refetch.
    pub max: Duration,
}

impl JwksRefresh {
    /// The shortest `min` allowed for providers off loopback: the CA must
    /// not become a load generator against an identity provider.
    pub const FLOOR: Duration = Duration::from_secs(5 * 60);
    /// The longest `max` allowed.
    pub const CEILING: Duration = Duration::from_secs(24 * 60 * 60);
    /// The shortest `min` allowed when every issuer is on loopback (a test
    /// or development provider, which the CA cannot overload from afar).
    pub const LOOPBACK_FLOOR: Duration = Duration::from_secs(1);
}

impl Default for JwksRefresh {
    fn default() -> Self {
        JwksRefresh {
            min: JwksRefresh::FLOOR,
            max: JwksRefresh::CEILING,
        }
    }
}

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
    /// How long the last fetched set stays fresh, within the bounds.
    fresh_for: Duration,
}

/// A key set as fetched: its usable keys, and what the response said about
/// how long it stays fresh.
struct FetchedKeys {
    keys: Vec<IssuerKey>,
    max_age: Option<Duration>,
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
        schedule: JwksRefresh,
    ) -> Result<Self, String> {
        let url = IssuerUrl::new(config.issuer.clone()).map_err(|e| e.to_string())?;
        let client = OidcHttp::new(http, MAX_METADATA_LEN);
        let metadata = CoreProviderMetadata::discover_async(url, &client)
            .await
            .map_err(|e| error_chain(&e))?;
        let jwks_uri = metadata.jwks_uri().url().to_string();
        let fetched = fetch_jwks(http, &jwks_uri).await;
        let result = if fetched.is_ok() { "ok" } else { "error" };
        metrics
            .jwks_fetches
            .with_label_values(&[config.name.as_str(), result])
            .inc();
        let fetched = fetched?;
        if fetched.keys.is_empty() {
            return Err(format!("JWKS at {jwks_uri} has no usable signing key"));
        }
        let issuer = TrustedIssuer::new(
            config.clone(),
            jwks_uri,
            fetched.keys,
            http.clone(),
            metrics,
        );
        issuer.refresh.lock().await.fresh_for = freshness(fetched.max_age, schedule);
        Ok(issuer)
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
                fresh_for: DEFAULT_JWKS_MAX_AGE,
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
        match self.fetch_keys(&mut state).await {
            Ok(_) => Ok(()),
            Err(reason) => {
                tracing::warn!(issuer = %self.config.name, %reason, "JWKS refresh failed");
                Err(TokenError::IssuerUnavailable(self.config.name.clone()))
            }
        }
    }

    /// Refetches the key set on `issuer`'s schedule for as long as the
    /// issuer is in use (the task ends once only it holds the issuer): the
    /// first time when the set fetched at discovery stops being fresh, then
    /// whenever the last one does. A failed fetch keeps the set and is
    /// retried after [`MIN_JWKS_REFRESH`] (or `schedule.min`, when shorter).
    pub(super) fn keep_keys_fresh(issuer: &Arc<TrustedIssuer>, schedule: JwksRefresh) {
        let issuer: Weak<TrustedIssuer> = Arc::downgrade(issuer);
        tokio::spawn(async move {
            let mut wait = match issuer.upgrade() {
                Some(issuer) => issuer.refresh.lock().await.fresh_for,
                None => return,
            };
            loop {
                tokio::time::sleep(wait).await;
                let Some(issuer) = issuer.upgrade() else {
                    return;
                };
                let mut state = issuer.refresh.lock().await;
                wait = match issuer.fetch_keys(&mut state).await {
                    Ok(max_age) => freshness(max_age, schedule),
                    Err(reason) => {
                        tracing::warn!(issuer = %issuer.config.name, %reason,
                            "scheduled JWKS refresh failed; keeping the keys fetched before");
                        MIN_JWKS_REFRESH.min(schedule.min)
                    }
                };
                state.fresh_for = wait;
            }
        });
    }

    /// Fetches the key set now and, if that works, trusts exactly the keys
    /// fetched (none, if the provider publishes none this CA can use).
    /// Returns the `max-age` the response gave.
    async fn fetch_keys(&self, state: &mut RefreshState) -> Result<Option<Duration>, String> {
        state.last_fetch = Instant::now();
        let fetched = fetch_jwks(&self.http, &self.jwks_uri).await;
        let result = if fetched.is_ok() { "ok" } else { "error" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[self.config.name.as_str(), result])
            .inc();
        let FetchedKeys { keys, max_age } = fetched?;
        let kids = |keys: &[IssuerKey]| -> BTreeSet<String> {
            keys.iter()
                .map(|k| k.kid.clone().unwrap_or_default())
                .collect()
        };
        let (before, after) = (kids(&self.keys.load()), kids(&keys));
        if before != after {
            let added: Vec<_> = after.difference(&before).collect();
            let withdrawn: Vec<_> = before.difference(&after).collect();
            tracing::info!(issuer = %self.config.name, ?added, ?withdrawn, keys = keys.len(), "JWKS changed");
        } else {
            tracing::debug!(issuer = %self.config.name, keys = keys.len(), "JWKS unchanged");
        }
        if keys.is_empty() {
            tracing::warn!(issuer = %self.config.name, "the provider publishes no usable signing key; its tokens are refused");
        }
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(max_age)
    }
}

/// How long a key set stays fresh: the response's `max-age` (less its
/// `Age`), [`DEFAULT_JWKS_MAX_AGE`] when it gave none, within `schedule`.
fn freshness(max_age: Option<Duration>, schedule: JwksRefresh) -> Duration {
    max_age
        .unwrap_or(DEFAULT_JWKS_MAX_AGE)
        .clamp(schedule.min, schedule.max)
}

/// What a JWKS response's headers say about how long it stays fresh:
/// `Cache-Control` `max-age` less `Age`, zero for `no-store`, `no-cache`
/// or a `max-age` that is not a number (a response whose freshness cannot
/// be read is stale, RFC 9111 4.2.1), `None` when it says nothing.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Some(Duration::ZERO);
        };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let seconds = argument.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                max_age = Some(max_age.map_or(seconds, |m: u64| m.min(seconds)));
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
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

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<FetchedKeys, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let max_age = max_age(response.headers());
    let body = read_capped(response, MAX_METADATA_LEN)
        .await
        .map_err(|e| e.to_string())?;
    let keys = parse_jwks(&body).map_err(|e| format!("JWKS at {url}: {e}"))?;
    Ok(FetchedKeys { keys, max_age })
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
    use std::sync::Mutex;

    use axum::http::header::CACHE_CONTROL;
    use serde_json::json;

    use super::*;
    use crate::oidc::testing::{ed25519_key, issuer, jwk, payload_of, signed, NOW};
    use crate::oidc::{TokenVerifier, VerifiedToken};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    #[test]
    fn freshness_is_cache_control_max_age_less_age_within_the_bounds() {
        let secs = Duration::from_secs;
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Headers, Option<u64>); 10] = [
            (&[], None),
            (&[("cache-control", "public, max-age=600")], Some(600)),
            (
                &[("cache-control", "Max-Age=\"600\", must-revalidate")],
                Some(600),
            ),
            (
                &[("cache-control", "max-age=600"), ("age", "100")],
                Some(500),
            ),
            (&[("cache-control", "max-age=600"), ("age", "900")], Some(0)),
            (&[("cache-control", "max-age=600, max-age=60")], Some(60)),
            (&[("cache-control", "max-age=soon")], Some(0)),
            (&[("cache-control", "max-age=600, no-cache")], Some(0)),
            (&[("cache-control", "no-store")], Some(0)),
            (&[("age", "100")], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(max_age(&headers(pairs)), expected.map(secs), "{pairs:?}");
        }
        let bounds = JwksRefresh::default();
        assert_eq!(freshness(None, bounds), secs(3600));
        assert_eq!(freshness(Some(secs(0)), bounds), secs(300));
        assert_eq!(freshness(Some(secs(7200)), bounds), secs(7200));
        assert_eq!(freshness(Some(secs(7 * 86_400)), bounds), secs(86_400));
        let narrow = JwksRefresh {
            min: secs(600),
            max: secs(1800),
        };
        assert_eq!(freshness(None, narrow), secs(1800));
    }

    /// A provider on loopback whose JWKS (served with `Cache-Control:
    /// max-age=1`) a test can change; its issuer URL.
    async fn provider(jwks: Arc<Mutex<Value>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let metadata = json!({
            "issuer": url, "authorization_endpoint": format!("{url}/auth"),
            "jwks_uri": format!("{url}/jwks"), "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move {
                    let set = jwks.lock().expect("jwks").clone();
                    ([(CACHE_CONTROL, "max-age=1")], axum::Json(set))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_withdrawn_key_is_dropped_once_the_set_is_past_its_max_age() {
        let (old, new) = (ed25519_key(), ed25519_key());
        let jwks = Arc::new(Mutex::new(json!({"keys": [
            jwk(Some("old"), old.verifying_key().as_bytes()),
            jwk(Some("new"), new.verifying_key().as_bytes()),
        ]})));
        let url = provider(jwks.clone()).await;
        let mut config = issuer(crate::config::UsernameClaim::PreferredUsername);
        config.issuer = url.clone();
        // An hour at most: a refresh within seconds is the provider's max-age.
        let bounds = JwksRefresh {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        };
        let verifier = TokenVerifier::discover(
            &[config],
            Duration::from_secs(60),
            1,
            reqwest::Client::new(),
            &Metrics::new(),
            bounds,
        )
        .await
        .expect("discovered");
        let token = |key, kid: &str| {
            signed(
                key,
                json!({"alg": "EdDSA", "kid": kid}),
                &payload_of(&url, "alice"),
            )
        };
        let verify = |token: String| {
            let verifier = &verifier;
            async move {
                verifier
                    .verify(&token, "n", NOW)
                    .await
                    .map(|v: VerifiedToken| v.identity.username)
            }
        };
        assert_eq!(verify(token(&old, "old")).await, Ok("alice".into()));
        // The provider withdraws the old key; no token asks for a refetch.
        *jwks.lock().expect("jwks") =
            json!({"keys": [jwk(Some("new"), new.verifying_key().as_bytes())]});
        let deadline = Instant::now() + Duration::from_secs(20);
        while verify(token(&old, "old")).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the withdrawn key is still trusted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            verify(token(&old, "old")).await,
            Err(TokenError::UnknownKey)
        );
        assert_eq!(verify(token(&new, "new")).await, Ok("alice".into()));
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
}
