//! The provider's HTML: a page head that says what this provider is, one
//! button per dev user, and refusals; every value shown is escaped.

use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::{DevUser, PREFIX};

/// Why an authorization request is refused before any redirect is allowed.
pub(super) fn bad_request(message: &str) -> Response {
    let page = format!(
        "<!doctype html><title>jit-ssh dev login</title><h1>Request refused</h1><p>{}</p>",
        escape(message)
    );
    (StatusCode::BAD_REQUEST, Html(page)).into_response()
}

/// One form per user, posting `user` and a hidden `carry` field to `path`.
pub(super) fn user_buttons(users: &[DevUser], path: &str, carry: (&str, &str)) -> String {
    let mut html = String::new();
    for user in users {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"{PREFIX}/{path}\">\
             <input type=\"hidden\" name=\"{}\" value=\"{}\">\
             <input type=\"hidden\" name=\"user\" value=\"{}\">\
             <button type=\"submit\">{}</button> <small>{}</small></form>",
            escape(carry.0),
            escape(carry.1),
            escape(&user.name),
            escape(&user.name),
            escape(&user.groups.join(", "))
        );
    }
    html
}

pub(super) fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}\
         form{{margin:.5em 0}}button{{min-width:8em}}</style>\
         <h1>{t}</h1><p><b>Development identity provider: no passwords, throw-away keys.</b></p>",
        t = escape(title)
    )
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
