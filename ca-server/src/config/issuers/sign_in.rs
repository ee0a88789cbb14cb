//! What an `[[oidc]]` issuer tells clients about signing in, and the checks
//! particular to well-known providers.
//!
//! Refresh tokens: OpenID Connect Core §11 lets a provider ignore
//! `offline_access` unless the authorization request carries
//! `prompt=consent` (npm oidc-provider does so as shipped), and Google
//! grants one only for `access_type=offline` with `prompt=consent`. So the
//! default sends `prompt=consent` everywhere but on Microsoft Entra ID, which
//! grants refresh tokens for `offline_access` alone and where a forced
//! consent prompt can demand an administrator's approval; `prompt = ""`
//! sends none. Parameters the client sets itself cannot be overridden.
//!
//! Entra ID: its multi-tenant endpoints (`common`, `organizations`,
//! `consumers`) and the `{tenantid}` template of their discovery documents
//! are refused, because every tenant's tokens carry that tenant's own
//! issuer: only one tenant's exact issuer is trusted. Its `preferred_username`
//! is a user principal name (`user@domain`), so the login name must be
//! configured explicitly (`upn_domains`, or another `username_claim`).

use std::collections::BTreeMap;

use super::RawIssuer;

/// The `prompt` values a browser sign-in may send (`none` would forbid the
/// sign-in the person is there to make).
const PROMPTS: &[&str] = &["login", "consent", "select_account"];

/// Google's issuer (as its ID tokens carry it).
const GOOGLE: &str = "https://accounts.google.com";
/// Microsoft Entra ID's sign-in host.
const ENTRA_HOST: &str = "login.microsoftonline.com";

/// The published authorization parameters: `auth_params` as written, plus
/// `prompt` (its default by provider when not written) and, for Google,
/// `access_type=offline` unless written otherwise.
pub(super) fn auth_params(raw: &RawIssuer) -> Result<BTreeMap<String, String>, String> {
    let name = &raw.name;
    let mut params = BTreeMap::new();
    for (key, value) in &raw.auth_params {
        if key == "prompt" || ca_proto::CLIENT_AUTH_PARAMS.contains(&key.as_str()) {
            let hint = if key == "prompt" {
                " (set prompt = \"...\" in the [[oidc]] table instead)"
            } else {
                " (the client sets it itself)"
            };
            return Err(format!(
                "[[oidc]] {name}: auth_params cannot set {key:?}{hint}"
            ));
        }
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !printable(key) || !printable(value) {
            return Err(format!(
                "[[oidc]] {name}: auth_params {key:?}: keys and values are 1-256 printable characters"
            ));
        }
        params.insert(key.clone(), value.clone());
    }
    let google = raw.issuer.trim_end_matches('/') == GOOGLE;
    if google && !params.contains_key("access_type") {
        params.insert("access_type".into(), "offline".into());
    }
    let prompt = match &raw.prompt {
        Some(prompt) => prompt.clone(),
        None if is_entra(&raw.issuer) => String::new(),
        None => "consent".into(),
    };
    if !prompt.is_empty() {
        if let Some(bad) = prompt.split(' ').find(|p| !PROMPTS.contains(p)) {
            return Err(format!(
                "[[oidc]] {name}: prompt value {bad:?} is not one of {} \
                 (space-separated; \"\" sends no prompt)",
                PROMPTS.join(", ")
            ));
        }
        params.insert("prompt".into(), prompt);
    }
    Ok(params)
}

/// The scopes a provider needs instead of the usual default: Google refuses
/// scopes it does not know (`groups`, `offline_access`; its refresh tokens
/// come with `access_type=offline`).
pub(super) fn default_scopes(issuer: &str) -> Option<Vec<String>> {
    (issuer.trim_end_matches('/') == GOOGLE)
        .then(|| ["openid", "email", "profile"].map(String::from).to_vec())
}

/// `public_client_secret`: non-empty and printable when given.
pub(super) fn public_client_secret(raw: &RawIssuer) -> Result<Option<String>, String> {
    match &raw.public_client_secret {
        Some(secret) if secret.is_empty() || secret.len() > 256 || secret.chars().any(|c| c.is_control() || c == ' ') => {
            Err(format!(
                "[[oidc]] {}: public_client_secret must be 1-256 printable characters without spaces",
                raw.name
            ))
        }
        other => Ok(other.clone()),
    }
}

/// Entra ID issuers: one tenant, by its ID, and an explicit login name.
pub(super) fn check_entra(raw: &RawIssuer) -> Result<(), String> {
    let name = &raw.name;
    if raw.issuer.contains('{') || raw.issuer.contains('}') {
        return Err(format!(
            "[[oidc]] {name}: issuer {:?} is a template: write your tenant's own issuer, \
             e.g. https://login.microsoftonline.com/<tenant-id>/v2.0",
            raw.issuer
        ));
    }
    if !is_entra(&raw.issuer) {
        return Ok(());
    }
    let path = raw
        .issuer
        .split_once(ENTRA_HOST)
        .map_or("", |(_, path)| path);
    let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if !is_tenant_id(tenant) {
        return Err(format!(
            "[[oidc]] {name}: issuer {:?} does not name one Entra ID tenant by its ID: \
             each tenant's tokens carry their own issuer, so write exactly \
             https://login.microsoftonline.com/<tenant-id>/v2.0 (the tenant ID is a GUID; \
             \"common\", \"organizations\", \"consumers\" and domain names are refused)",
            raw.issuer
        ));
    }
    let explicit = raw.username_claim.is_some() || !raw.upn_domains.is_empty();
    if !explicit {
        return Err(format!(
            "[[oidc]] {name}: Entra ID's preferred_username is a user principal name \
             (user@domain), not a login name: set upn_domains = [\"corp.example\"] to use its \
             local part for users of those domains, or name another username_claim"
        ));
    }
    Ok(())
}

fn is_entra(issuer: &str) -> bool {
    issuer
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|host| host.eq_ignore_ascii_case(ENTRA_HOST))
}

/// A GUID as Entra ID writes tenant IDs: 8-4-4-4-12 hexadecimal digits.
fn is_tenant_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{parse, MINIMAL};

    const TENANT: &str =
        "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";

    fn with_issuer(issuer: &str, extra: &str) -> String {
        let swapped = MINIMAL
            .lines()
            .map(|line| {
                if line.starts_with("issuer = ") {
                    format!("issuer = \"{issuer}\"")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        format!("{swapped}\n{extra}")
    }

    #[test]
    fn prompt_defaults_by_provider() {
        let plain = parse(MINIMAL).expect("valid");
        assert_eq!(plain.issuers[0].provider.auth_params["prompt"], "consent");
        let google = parse(&with_issuer("https://accounts.google.com", "")).expect("valid");
        assert_eq!(google.issuers[0].provider.auth_params["prompt"], "consent");
        assert_eq!(
            google.issuers[0].provider.auth_params["access_type"],
            "offline"
        );
        let entra =
            parse(&with_issuer(TENANT, "upn_domains = [\"corp.example\"]\n")).expect("valid");
        assert!(entra.issuers[0].provider.auth_params.is_empty());
        let none = parse(&format!("{MINIMAL}prompt = \"\"\n")).expect("valid");
        assert!(none.issuers[0].provider.auth_params.is_empty());
    }

    #[test]
    fn bad_sign_in_parameters_are_refused() {
        for (extra, needle) in [
            ("prompt = \"none\"\n", "is not one of"),
            (
                "auth_params = { redirect_uri = \"http://evil\" }\n",
                "cannot set \"redirect_uri\"",
            ),
            ("auth_params = { prompt = \"consent\" }\n", "set prompt ="),
            ("auth_params = { x = \"\" }\n", "printable"),
            ("public_client_secret = \"\"\n", "public_client_secret"),
        ] {
            let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn entra_needs_one_tenant_and_an_explicit_login_name() {
        for issuer in [
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            "https://login.microsoftonline.com/common/v2.0",
            "https://login.microsoftonline.com/organizations/v2.0",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
        ] {
            let err = parse(&with_issuer(issuer, "upn_domains = [\"corp.example\"]\n"))
                .expect_err(issuer);
            assert!(err.contains("tenant"), "{issuer}: {err}");
        }
        let err = parse(&with_issuer(TENANT, "")).expect_err("implicit UPN");
        assert!(err.contains("user principal name"), "{err}");
        let err = parse(&with_issuer(TENANT, "username_claim = \"email\"\nemail_domains = [\"corp.example\"]\nupn_domains = [\"corp.example\"]\n"))
            .expect_err("upn_domains with email");
        assert!(err.contains("upn_domains applies only"), "{err}");
    }
}
