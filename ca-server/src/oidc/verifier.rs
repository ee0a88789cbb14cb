//! The [`TokenVerifier`]: splits a compact JWS, checks its header and finds
//! its issuer, has its signature checked (an Ed25519 one in the shared
//! batch) and its claims read, in the order the [module documentation](super)
//! gives. [`TokenVerifier::prepare`] and [`TokenVerifier::finish`] are the two
//! halves between which a caller adds its own Ed25519 checks to the batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{DiscoveryError, TokenError};
use super::issuer::{parse_jwks, JwksRefresh, TrustedIssuer};
use super::signature::{accepted_algorithm, Jws, TokenSignature};
use crate::config::IssuerConfig;
use crate::ed25519_batch::{Ed25519Batcher, Ed25519Check};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::UnixTime;

/// Longest ID token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Who it names.
    pub identity: Identity,
    /// Its `exp`; its digest must be remembered at least this long.
    pub expires_at: UnixTime,
    /// What single use knows it by.
    pub digest: TokenDigest,
    /// How it is bound to the subject key it was verified for.
    pub key_binding: KeyBinding,
}

/// How a verified token is bound to the subject key it is to certify: by its
/// nonce, or, without one, by what its issuer's `require_nonce` allows. A
/// token without a nonce names no key, so whoever holds it first could have
/// it certify their own; where the issuer requires nonces, it certifies only
/// a key its identity bound with a nonce within the issuer's sign-in session
/// (a silent renewal through a refresh token), and the store decides that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBinding {
    /// Its nonce names the subject key. The key stays bound to the identity
    /// for `session`, in which a token without a nonce may certify it again.
    Nonce {
        /// The issuer's `nonce_session`.
        session: Duration,
    },
    /// No nonce, and the issuer requires one: it certifies only a key bound
    /// to the same identity by a nonce within that key's session.
    NonceMissing,
    /// No nonce is asked for: no subject key is involved (administrators'
    /// and requesters' calls), or the issuer has `require_nonce = false`.
    NotRequired,
}

/// What single use knows a token by: the digest of what its issuer signed,
/// never of how the signature happens to be written. ECDSA signatures come
/// in pairs (`(r, s)` and `(r, n - s)` both verify), RSA-PSS and ECDSA
/// issuers may sign one statement twice, and lax decoders read one
/// signature from several spellings; none of that reaches `signed`, so
/// every spelling of a statement is one token, spent once. The signature
/// is therefore neither refused nor rewritten for its form: about half of
/// the ECDSA signatures real providers make have a high `S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest {
    /// SHA-256 of the signing input `header.payload`, both base64url parts
    /// exactly as received: the bytes the signature covers, so a token
    /// whose signature verifies cannot differ in them. A token is spent
    /// under this digest.
    pub signed: [u8; 32],
    /// SHA-256 of the whole compact token: the digest releases before this
    /// one spent tokens under. Checked, never written, so that a token spent
    /// before an upgrade stays spent until it expires.
    pub whole: [u8; 32],
}

impl TokenDigest {
    /// The digests of `token`, whose signing input is `signing_input`.
    fn of(token: &str, signing_input: &str) -> TokenDigest {
        TokenDigest {
            signed: Sha256::digest(signing_input.as_bytes()).into(),
            whole: Sha256::digest(token.as_bytes()).into(),
        }
    }
}

/// Verifies ID tokens from the configured issuers.
pub struct TokenVerifier {
    by_issuer_url: HashMap<String, Arc<TrustedIssuer>>,
    issuers: Vec<Arc<TrustedIssuer>>,
    leeway: u64,
    ed25519_batch: Arc<Ed25519Batcher>,
}

impl TokenVerifier {
    /// Runs OpenID discovery and fetches the JWKS of every issuer, retrying
    /// each up to `attempts` times with backoff. Fails if any issuer stays
    /// unreachable: a CA that silently trusts fewer issuers than configured
    /// would lock people out with no clue why. Each issuer's key set is then
    /// refetched on a schedule within `jwks_refresh` (by a task of the
    /// current runtime, which ends with the verifier).
    pub async fn discover(
        issuers: &[IssuerConfig],
        leeway: Duration,
        attempts: u32,
        http: reqwest::Client,
        metrics: &Metrics,
        jwks_refresh: JwksRefresh,
    ) -> Result<TokenVerifier, DiscoveryError> {
        let mut trusted = Vec::new();
        for config in issuers {
            let mut delay = Duration::from_millis(250);
            let mut attempt = 1;
            let issuer = loop {
                match TrustedIssuer::discover(config, &http, metrics, jwks_refresh).await {
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
            let issuer = Arc::new(issuer);
            TrustedIssuer::keep_keys_fresh(&issuer, jwks_refresh);
            trusted.push(issuer);
        }
        Ok(TokenVerifier::from_issuers(trusted, leeway))
    }

    /// A verifier for one issuer whose metadata is known in-process (the dev
    /// mode's embedded provider): `jwks` is its current key set, `jwks_uri`
    /// where to refetch it on an unknown `kid`. No discovery request is made,
    /// and no refresh is scheduled: the provider's keys live as long as the
    /// process that holds them.
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
    /// checked alone (`ed25519_batch::verify_one`, by the batches' rule).
    /// What a token costs without batching; the
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
    pub(crate) async fn prepare(&self, token: &str) -> Result<PreparedToken, TokenError> {
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
        check_type(header.typ.as_deref())?;
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
            digest: TokenDigest::of(token, signing_input),
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
        prepared: PreparedToken,
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
            .check_claims(claims, expected_nonce, now, self.leeway, prepared.digest)
    }
}

/// A token checked up to its signature by [`TokenVerifier::prepare`]: its
/// header, its issuer and the key it must be signed with are settled, and
/// its signature is verified unless it is an Ed25519 one left for a batch.
pub(crate) struct PreparedToken {
    digest: TokenDigest,
    issuer: Arc<TrustedIssuer>,
    signature: TokenSignature,
}

impl PreparedToken {
    /// Takes the Ed25519 signature check left for a batch, if any; pass its
    /// verdict to [`TokenVerifier::finish`].
    pub(crate) fn take_ed25519_check(&mut self) -> Option<Ed25519Check> {
        match &mut self.signature {
            TokenSignature::Verified(_) => None,
            TokenSignature::Ed25519 { check, .. } => check.take(),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// Refuses a token whose `typ` says it is some other kind of JWT than an ID
/// token: an access token (RFC 9068's `at+jwt`) or any other explicitly
/// typed one, which its issuer signed for another reader. OpenID Connect
/// gives ID tokens no type of their own, so only none or the generic `JWT`
/// passes. Media types compare without case, `application/` optional.
fn check_type(typ: Option<&str>) -> Result<(), TokenError> {
    let Some(typ) = typ else {
        return Ok(());
    };
    let lower = typ.to_ascii_lowercase();
    let media_type = lower.strip_prefix("application/").unwrap_or(&lower);
    match media_type {
        "jwt" => Ok(()),
        t if t.ends_with("at+jwt") => Err(TokenError::AccessToken(shown(typ))),
        _ => Err(TokenError::NotAnIdToken(shown(typ))),
    }
}

/// At most 32 characters of a header value, for a refusal's message.
fn shown(value: &str) -> String {
    value.chars().take(32).collect()
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: Option<String>,
}

fn decode_base64(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("bad base64url".into()))
}

/// Reads the JSON of a token's header or payload; JSON that does not fit
/// `T` makes the token malformed.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TokenError> {
    serde_json::from_slice(bytes).map_err(|e| TokenError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::oidc::testing::*;

    #[tokio::test]
    async fn single_use_knows_a_token_by_what_its_issuer_signed() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let token = token(&key, Some("k1"), "alice");
        let verified = verifier.verify(&token, "n", NOW).await.expect("valid");
        let (signing_input, _) = token.rsplit_once('.').expect("JWS");
        let signed: [u8; 32] = Sha256::digest(signing_input.as_bytes()).into();
        let whole: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        assert_eq!(verified.digest, TokenDigest { signed, whole });
    }

    #[tokio::test]
    async fn a_token_without_a_nonce_is_marked_for_the_store_to_check() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let header = serde_json::json!({"alg": "EdDSA", "kid": "k1"});
        let with_nonce = signed(&key, header.clone(), &payload("alice"));
        let claims = serde_json::json!({"iss": "https://idp.example.com", "sub": "alice",
            "aud": "jit-ssh", "iat": NOW, "exp": NOW + 300, "preferred_username": "alice"});
        let without = signed(&key, header, &URL_SAFE_NO_PAD.encode(claims.to_string()));
        let binding = |token: &str, nonce: Option<&str>| {
            let token = token.to_string();
            let nonce = nonce.map(String::from);
            let verifier = &verifier;
            async move {
                let (verified, _) = verifier
                    .verify_inner(&token, nonce.as_deref(), NOW, None)
                    .await?;
                Ok::<_, TokenError>(verified.key_binding)
            }
        };
        let session = crate::config::DEFAULT_NONCE_SESSION;
        assert_eq!(
            binding(&with_nonce, Some("n")).await,
            Ok(KeyBinding::Nonce { session })
        );
        assert_eq!(
            binding(&with_nonce, Some("m")).await,
            Err(TokenError::NonceMismatch)
        );
        assert_eq!(
            binding(&without, Some("n")).await,
            Ok(KeyBinding::NonceMissing)
        );
        assert_eq!(
            binding(&with_nonce, None).await,
            Ok(KeyBinding::NotRequired)
        );
        assert_eq!(binding(&without, None).await, Ok(KeyBinding::NotRequired));
    }

    #[tokio::test]
    async fn tokens_typed_as_another_kind_of_jwt_are_refused() {
        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let access = |typ: &str| Err(TokenError::AccessToken(typ.into()));
        let other = |typ: &str| Err(TokenError::NotAnIdToken(typ.into()));
        let cases = [
            ("JWT", Ok("alice".to_string())),
            ("jwt", Ok("alice".into())),
            ("application/JWT", Ok("alice".into())),
            ("at+jwt", access("at+jwt")),
            ("AT+JWT", access("AT+JWT")),
            ("application/at+jwt", access("application/at+jwt")),
            ("Application/At+Jwt", access("Application/At+Jwt")),
            (
                "application/okta-internal-at+jwt",
                access("application/okta-internal-at+jwt"),
            ),
            ("logout+jwt", other("logout+jwt")),
            ("JOSE", other("JOSE")),
            ("", other("")),
            ("jwt; charset=utf-8", other("jwt; charset=utf-8")),
        ];
        for (typ, expected) in cases {
            let token = signed(
                &key,
                serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": typ}),
                &payload("alice"),
            );
            assert_eq!(username(&verifier, &token).await, expected, "{typ:?}");
        }
        let untyped = signed(
            &key,
            serde_json::json!({"alg": "EdDSA", "kid": "k1"}),
            &payload("alice"),
        );
        assert_eq!(username(&verifier, &untyped).await, Ok("alice".into()));
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
}
