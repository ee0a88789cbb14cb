//! Claims as particular providers shape them, read so that nothing is
//! guessed: Microsoft Entra ID's user principal names (`user@domain` in
//! `preferred_username`) name a user only through an issuer's `upn_domains`,
//! and its groups overage (a `_claim_names` reference to the groups instead
//! of the groups, OpenID Connect Core §5.6.2) is refused, never read as a
//! user without groups, because a policy that grants by group would then
//! quietly decide on less than the user's standing.

use serde_json::{Map, Value};

use super::error::TokenError;
use crate::identity::login_name_from_claim;

/// The login name of a `preferred_username` that is a user principal name:
/// its local part, when its domain is one of `domains` (lower-cased). `None`
/// when it is no login name at all.
pub(super) fn upn_login_name(
    claims: &Map<String, Value>,
    domains: &[String],
) -> Result<Option<String>, TokenError> {
    let value = claims
        .get("preferred_username")
        .and_then(Value::as_str)
        .ok_or(TokenError::MissingClaim("preferred_username"))?;
    let Some((_, domain)) = value.rsplit_once('@') else {
        return Ok(None);
    };
    let domain = domain.to_ascii_lowercase();
    if !domains.contains(&domain) {
        return Err(TokenError::UpnDomainNotAccepted {
            domain: domain.chars().take(64).collect(),
            accepted: domains.join(", "),
        });
    }
    Ok(login_name_from_claim(value, true))
}

/// Refuses a token whose `groups_claim` is announced as held elsewhere
/// (`_claim_names` names it): the groups are not in the token.
pub(super) fn refuse_groups_overage(
    groups_claim: &str,
    claims: &Map<String, Value>,
) -> Result<(), TokenError> {
    let elsewhere = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(groups_claim));
    if elsewhere {
        return Err(TokenError::GroupsOverage(
            groups_claim.chars().take(64).collect(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_upn_names_its_local_part_in_a_listed_domain_only() {
        let domains = ["corp.example".to_string()];
        let named = upn_login_name(
            &claims(json!({"preferred_username": "Alice@Corp.Example"})),
            &domains,
        );
        assert_eq!(named, Ok(Some("alice".into())));
        assert!(matches!(
            upn_login_name(
                &claims(json!({"preferred_username": "alice@other.example"})),
                &domains
            ),
            Err(TokenError::UpnDomainNotAccepted { .. })
        ));
        assert_eq!(
            upn_login_name(&claims(json!({"preferred_username": "alice"})), &domains),
            Ok(None)
        );
    }

    #[test]
    fn an_overage_is_refused_and_other_distributed_claims_are_not() {
        let overage = claims(json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/me/getMemberObjects"}}
        }));
        assert_eq!(
            refuse_groups_overage("groups", &overage),
            Err(TokenError::GroupsOverage("groups".into()))
        );
        assert_eq!(refuse_groups_overage("roles", &overage), Ok(()));
        assert_eq!(
            refuse_groups_overage("groups", &claims(json!({"groups": ["a"]}))),
            Ok(())
        );
    }
}
