//! The browser sign-in: authorization code with PKCE (S256 only) to a
//! loopback redirect (RFC 8252), through a page that lists the dev users, or
//! none with `--auto-login`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::pages::{bad_request, page_head, user_buttons};
use super::{random_token, requested_scopes, AuthRequest, DevIdp, CLIENT_ID, DEVICE_CODE_TTL};

/// `/authorize`: the sign-in page, and the answer to it.
pub(super) fn routes() -> Router<Arc<DevIdp>> {
    Router::new().route("/authorize", get(authorize).post(authorize_login))
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

pub(super) fn redirect_with(base: &str, params: &[(&str, String)]) -> Response {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            Redirect::to(url.as_str()).into_response()
        }
        Err(_) => bad_request("invalid redirect_uri"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
