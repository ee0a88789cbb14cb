//! Whose signature a token carries: which algorithms are accepted at all,
//! which of the issuer's keys may have signed it, and the check itself. An
//! EdDSA signature with a single candidate key is left for the shared batch;
//! every other signature is checked here, with `jsonwebtoken` (aws-lc), or
//! with ed25519-dalek one candidate at a time when several Ed25519 keys
//! could have signed.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::{Algorithm, Validation};

use super::claims::Claims;
use super::error::TokenError;
use super::issuer::TrustedIssuer;
use super::verifier::parse_json;
use crate::ed25519_batch::{verify_one, Ed25519Check};

/// The algorithm a token's `alg` names, if it is one the CA accepts:
/// asymmetric ones only, refused before any key is looked at.
pub(super) fn accepted_algorithm(name: &str) -> Result<Algorithm, TokenError> {
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

/// The parts of a compact JWS.
pub(super) struct Jws<'t> {
    pub(super) token: &'t str,
    /// `header.payload`, the signed bytes.
    pub(super) signing_input: &'t str,
    pub(super) signature: &'t str,
    /// The payload, decoded.
    pub(super) payload: Vec<u8>,
}

/// A token's signature as [`TrustedIssuer::verify_signature`] leaves it.
pub(super) enum TokenSignature {
    /// Verified; these are the signed claims.
    Verified(Claims),
    /// An Ed25519 signature over `payload` still to check: `check` until it is
    /// taken for a batch.
    Ed25519 {
        check: Option<Ed25519Check>,
        payload: Vec<u8>,
    },
}

impl TrustedIssuer {
    /// The signature of `jws` by the issuer's key named `kid` (any key of
    /// the right type without one) for `algorithm`, refetching the key set
    /// once when no key matches.
    pub(super) async fn verify_signature(
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
}

/// A `jsonwebtoken` failure as the reason a token is refused.
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
    // Canonical unpadded base64url and 64 bytes, as strict as jsonwebtoken
    // is with the other algorithms' signatures (and the Ed25519 checks refuse
    // an `S` that is not reduced). Single use does not rest on this: a
    // token is spent by what its issuer signed, however the signature reads.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::oidc::testing::*;

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
