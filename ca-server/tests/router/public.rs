//! The endpoints anyone may call, and the answers every endpoint shares:
//! JSON errors with stable codes for unknown routes, missing tokens and bad
//! bodies.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ca_server::http::MAX_BODY_BYTES;

use crate::support::{error_code, fixture, get, send, ISSUER};

#[tokio::test]
async fn public_endpoints_answer() {
    let f = fixture().await;
    let (status, _, body) = send(&f.router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, _, body) = send(&f.router, get("/v1/config")).await;
    assert_eq!(status, StatusCode::OK);
    let config: ca_proto::CaConfig = serde_json::from_slice(&body).expect("config");
    assert_eq!(config.issuers[0].issuer, ISSUER);
    assert_eq!(config.user_ca_keys.len(), 1);
    let (status, headers, body) = send(&f.router, get("/v1/ca/user.pub")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/plain"));
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        config.user_ca_keys[0]
    );
    let (status, _, body) = send(&f.router, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("jit_ssh_ca_build_info"));
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let f = fixture().await;
    let (status, _, body) = send(&f.router, get("/v1/nope")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let post = |body: String, bearer: bool| {
        let mut request =
            Request::post("/v1/certs/user").header("content-type", "application/json");
        if bearer {
            request = request.header("authorization", "Bearer x.y.z");
        }
        request.body(Body::from(body)).expect("request")
    };
    let (status, headers, body) = send(&f.router, post("{}".into(), false)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let huge = format!("{{\"public_key\":\"{}\"}}", "A".repeat(MAX_BODY_BYTES));
    let (status, _, body) = send(&f.router, post(huge, true)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let (status, _, body) = send(&f.router, post("{\"public_key\":1}".into(), true)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}
