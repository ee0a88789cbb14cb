//! What a token says, once its signature holds: issuer, audience and
//! authorized party, `exp`, `nbf` and `iat` within the leeway, the nonce that
//! binds it to the subject key (or, when it has none, what its issuer's
//! `require_nonce` lets it certify: [`KeyBinding`]), and the identity its
//! claims name.
//!
//! An identity named by its email is named by a verified address in one of
//! the issuer's `email_domains`: the login name is the local part, so two
//! domains' `alice@` would otherwise be one user. A `preferred_username`
//! must already be a login name: the CA folds no case and rewrites nothing,
//! so `Alice` is refused rather than made one with `alice`. (The local part
//! of a verified address is lower-cased: a mailbox at the issuer's own
//! domains is one mailbox however its name is cased.)
//!
//! Policy sees every claim but those no condition could sensibly read
//! ([`UNMATCHED_CLAIMS`]: the issuer has its own condition, times and the
//! nonce differ on every sign-in); `sub`, `aud` and `azp` stay matchable,
//! as workload policies (GitHub Actions) are written on `sub`.

use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::error::TokenError;
use super::issuer::TrustedIssuer;
use super::verifier::{KeyBinding, TokenDigest, VerifiedToken};
use crate::config::{IssuerConfig, UsernameClaim};
use crate::identity::{is_login_name, is_workload_name, login_name_from_claim, Identity};
use crate::UnixTime;

/// Registered claims that never reach policy conditions or templates: `iss`
/// (rules name issuers with `issuer`), the times and the nonce.
pub const UNMATCHED_CLAIMS: [&str; 5] = ["iss", "exp", "iat", "nbf", "nonce"];

/// Maps the claims of a token already verified to be from `config`'s issuer
/// to an [`Identity`]: `sub`, the username (a Unix login name, from
/// `preferred_username` or a verified `email`), email and groups. `claims`
/// holds every claim but [`UNMATCHED_CLAIMS`] (`sub` is put back from
/// `subject`). `policy explain` uses the same mapping, so it decides exactly
/// as the server would.
pub fn identity_from_claims(
    config: &IssuerConfig,
    subject: Option<String>,
    mut claims: Map<String, Value>,
) -> Result<Identity, TokenError> {
    let subject = subject
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    claims.insert("sub".into(), Value::String(subject.clone()));
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .map(String::from);
    let username = match &config.username_claim {
        UsernameClaim::PreferredUsername if !config.provider.upn_domains.is_empty() => {
            super::shapes::upn_login_name(&claims, &config.provider.upn_domains)?
        }
        UsernameClaim::PreferredUsername => {
            let value = claims
                .get("preferred_username")
                .and_then(Value::as_str)
                .ok_or(TokenError::MissingClaim("preferred_username"))?;
            is_login_name(value).then(|| value.to_string())
        }
        UsernameClaim::Email => {
            let value = email.as_deref().ok_or(TokenError::MissingClaim("email"))?;
            if claims.get("email_verified") != Some(&Value::Bool(true)) {
                return Err(TokenError::EmailNotVerified);
            }
            let domain = value
                .rsplit_once('@')
                .map(|(_, domain)| domain.to_ascii_lowercase())
                .ok_or(TokenError::InvalidUsername)?;
            if !config.email_domains.contains(&domain) {
                return Err(TokenError::EmailDomainNotAccepted {
                    domain: domain.chars().take(64).collect(),
                    accepted: config.email_domains.join(", "),
                });
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
    super::shapes::refuse_groups_overage(&config.groups_claim, &claims)?;
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

/// The claims of a token whose signature holds.
#[derive(Deserialize)]
pub(super) struct Claims {
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

impl TrustedIssuer {
    /// Checks `claims` of `token` against this issuer's configuration at
    /// `now`: issuer, audience and authorized party, `exp`, `nbf` and `iat`
    /// within `leeway`, and the nonce when one is expected (a token without
    /// one comes back as [`KeyBinding::NonceMissing`] when this issuer
    /// requires nonces: only the store can tell whether its key was bound
    /// earlier). `digest` is what single use will know the token by.
    pub(super) fn check_claims(
        &self,
        claims: Claims,
        expected_nonce: Option<&str>,
        now: UnixTime,
        leeway: u64,
        digest: TokenDigest,
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
        match &claims.azp {
            Some(azp) if *azp != config.client_id => return Err(TokenError::WrongAuthorizedParty),
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
        let key_binding = match (expected_nonce, &claims.nonce) {
            (None, _) => KeyBinding::NotRequired,
            (Some(expected_nonce), Some(nonce)) => {
                if !bool::from(nonce.as_bytes().ct_eq(expected_nonce.as_bytes())) {
                    return Err(TokenError::NonceMismatch);
                }
                KeyBinding::Nonce {
                    session: config.nonce.session,
                }
            }
            (Some(_), None) if config.nonce.required => KeyBinding::NonceMissing,
            (Some(_), None) => KeyBinding::NotRequired,
        };
        // The audience and authorized party reach policy as the token has
        // them (they were checked above).
        let mut other = claims.other;
        let aud: Vec<Value> = audiences.into_iter().map(Value::String).collect();
        other.insert(
            "aud".into(),
            match <[Value; 1]>::try_from(aud) {
                Ok([one]) => one,
                Err(many) => Value::Array(many),
            },
        );
        if let Some(azp) = claims.azp {
            other.insert("azp".into(), Value::String(azp));
        }
        Ok(VerifiedToken {
            identity: identity_from_claims(config, claims.sub, other)?,
            expires_at: u64::try_from(exp).unwrap_or(0),
            digest,
            key_binding,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::oidc::testing::issuer;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn preferred_username_must_be_a_login_name() {
        let config = issuer(UsernameClaim::PreferredUsername);
        let identity = identity_from_claims(
            &config,
            Some("u1".into()),
            claims(json!({"preferred_username": "alice", "groups": ["eng", 3, "sre"]})),
        )
        .expect("valid");
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.groups, ["eng", "sre"]);
        assert_eq!(identity.display_name(), "alice@corp");
        // Not folded: `Alice` is no login name, so it names nobody (rather
        // than being made one with `alice`).
        for bad in [
            json!({"preferred_username": "Alice"}),
            json!({"preferred_username": "ALICE"}),
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
        let outside = identity_from_claims(
            &config,
            Some("u2".into()),
            claims(json!({"email": "bob.smith@Contractor.Example", "email_verified": true})),
        );
        assert_eq!(
            outside.map(|i| i.username),
            Err(TokenError::EmailDomainNotAccepted {
                domain: "contractor.example".into(),
                accepted: "example.com".into()
            })
        );
        // The domain is compared whole: a subdomain or a look-alike suffix
        // is another domain.
        for email in [
            "bob@sub.example.com",
            "bob@badexample.com",
            "bob@example.com.evil",
        ] {
            let result = identity_from_claims(
                &config,
                Some("u3".into()),
                claims(json!({"email": email, "email_verified": true})),
            );
            assert!(
                matches!(result, Err(TokenError::EmailDomainNotAccepted { .. })),
                "{email}"
            );
        }
        let upper = identity_from_claims(
            &config,
            Some("u4".into()),
            claims(json!({"email": "Bob@EXAMPLE.com", "email_verified": true})),
        );
        assert_eq!(upper.map(|i| i.username).as_deref(), Ok("bob"));
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
    fn sub_reaches_policy_and_unmatched_claims_do_not() {
        let config = issuer(UsernameClaim::Claim("repository".into()));
        let identity = identity_from_claims(
            &config,
            Some("repo:acme/app:ref:refs/heads/main".into()),
            claims(json!({"repository": "acme/app"})),
        )
        .expect("valid");
        assert_eq!(identity.claims["sub"], "repo:acme/app:ref:refs/heads/main");
    }

    #[tokio::test]
    async fn aud_and_azp_reach_policy_as_the_token_has_them() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;

        use crate::oidc::testing::{ed25519_key, jwk, signed, verifier, NOW};

        let key = ed25519_key();
        let verifier = verifier(vec![jwk(Some("k1"), key.verifying_key().as_bytes())]);
        let payload = URL_SAFE_NO_PAD.encode(
            json!({"iss": "https://idp.example.com", "sub": "u1", "aud": ["jit-ssh", "other"],
                "azp": "jit-ssh", "iat": NOW, "exp": NOW + 300, "nonce": "n",
                "preferred_username": "alice"})
            .to_string(),
        );
        let token = signed(
            &key,
            json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
            &payload,
        );
        let identity = verifier
            .verify(&token, "n", NOW)
            .await
            .expect("valid")
            .identity;
        assert_eq!(identity.claims["aud"], json!(["jit-ssh", "other"]));
        assert_eq!(identity.claims["azp"], "jit-ssh");
        assert_eq!(identity.claims["sub"], "u1");
        for unmatched in UNMATCHED_CLAIMS {
            assert!(!identity.claims.contains_key(unmatched), "{unmatched}");
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
}
