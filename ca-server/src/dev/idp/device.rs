//! The device flow (RFC 8628): a device code for the client to poll with,
//! and a page where a person enters the user code and picks a dev user.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand_core::RngCore as _;
use serde::Deserialize;
use serde_json::json;

use super::pages::{bad_request, escape, page_head, user_buttons};
use super::token::oauth_error;
use super::{
    random_token, requested_scopes, DevIdp, DeviceGrant, CLIENT_ID, DEVICE_CODE_TTL,
    DEVICE_POLL_INTERVAL, PREFIX,
};

/// `/device_authorization` for the client, `/device` for the person.
pub(super) fn routes() -> Router<Arc<DevIdp>> {
    Router::new()
        .route("/device_authorization", post(device_authorization))
        .route("/device", get(device_page).post(device_submit))
}

#[derive(Deserialize)]
struct DeviceAuthorizationForm {
    client_id: String,
    scope: Option<String>,
}

async fn device_authorization(
    State(idp): State<Arc<DevIdp>>,
    Form(form): Form<DeviceAuthorizationForm>,
) -> Response {
    let now = crate::unix_now();
    if form.client_id != CLIENT_ID {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let scopes = match requested_scopes(form.scope.as_deref()) {
        Ok(scopes) => scopes,
        Err(message) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &message),
    };
    let device_code = random_token(32);
    let user_code = user_code();
    let verification_uri = format!("{}/device", idp.issuer);
    {
        let mut sessions = idp.sessions();
        sessions.devices.retain(|_, d| d.expires_at > now);
        sessions.devices.insert(
            device_code.clone(),
            DeviceGrant {
                user_code: user_code.clone(),
                scopes,
                approved_by: idp.auto_login.clone(),
                last_poll: None,
                expires_at: now + DEVICE_CODE_TTL,
            },
        );
    }
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": DEVICE_CODE_TTL,
        "interval": DEVICE_POLL_INTERVAL,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct DeviceQuery {
    user_code: Option<String>,
}

async fn device_page(State(idp): State<Arc<DevIdp>>, Query(query): Query<DeviceQuery>) -> Response {
    match query.user_code {
        Some(code) => device_user_choice(&idp, &code),
        None => {
            let mut page = page_head("Connect a device to jit-ssh (development)");
            let _ = write!(
                page,
                "<form method=\"post\" action=\"{PREFIX}/device\">\
                 <label>Code shown by jit-ssh: <input name=\"user_code\" autofocus></label>\
                 <button type=\"submit\">Continue</button></form>"
            );
            Html(page).into_response()
        }
    }
}

fn device_user_choice(idp: &DevIdp, user_code: &str) -> Response {
    let user_code = normalize_user_code(user_code);
    let known = idp
        .sessions()
        .devices
        .values()
        .any(|d| d.user_code == user_code && d.expires_at > crate::unix_now());
    if !known {
        return bad_request("unknown or expired code; check the code jit-ssh printed");
    }
    let mut page = page_head("Connect a device to jit-ssh (development)");
    let _ = write!(
        page,
        "<p>Code <b>{}</b>. Pick a development user:</p>",
        escape(&user_code)
    );
    page.push_str(&user_buttons(
        &idp.users,
        "device",
        ("user_code", &user_code),
    ));
    Html(page).into_response()
}

#[derive(Deserialize)]
struct DeviceForm {
    user_code: String,
    user: Option<String>,
}

async fn device_submit(State(idp): State<Arc<DevIdp>>, Form(form): Form<DeviceForm>) -> Response {
    let Some(user) = form.user else {
        return device_user_choice(&idp, &form.user_code);
    };
    if idp.user(&user).is_none() {
        return bad_request("unknown user");
    }
    let user_code = normalize_user_code(&form.user_code);
    let now = crate::unix_now();
    let approved = idp
        .sessions()
        .devices
        .values_mut()
        .find(|d| d.user_code == user_code && d.expires_at > now)
        .map(|d| d.approved_by = Some(user.clone()))
        .is_some();
    if !approved {
        return bad_request("unknown or expired code; check the code jit-ssh printed");
    }
    let mut page = page_head("Device connected");
    let _ = write!(
        page,
        "<p id=\"device-success\">Signed in as <b>{}</b>. You can close this window; jit-ssh continues on its own.</p>",
        escape(&user)
    );
    Html(page).into_response()
}

/// Eight letters from an alphabet without look-alikes, shown as `ABCD-EFGH`.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let letters: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

fn normalize_user_code(code: &str) -> String {
    let letters: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if letters.len() == 8 {
        format!("{}-{}", &letters[..4], &letters[4..])
    } else {
        letters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_normalize() {
        let code = user_code();
        assert_eq!(
            normalize_user_code(&code.to_lowercase().replace('-', " ")),
            code
        );
    }
}
