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
    let (status, _, body) = send(&f.monitoring, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("jit_ssh_ca_build_info"));
}

/// Metrics name the issuers and count issuances and refusals: the API's
/// listener does not serve them, only the monitoring listener
/// (`metrics_listen`), which also answers health and readiness probes.
#[tokio::test]
async fn metrics_are_served_only_by_the_monitoring_router() {
    let f = fixture().await;
    let (status, _, body) = send(&f.router, get("/metrics")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(!String::from_utf8_lossy(&body).contains("jit_ssh_ca_"));
    let (status, headers, body) = send(&f.monitoring, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    assert!(String::from_utf8_lossy(&body).contains("jit_ssh_ca_build_info"));
    for probe in ["/healthz", "/readyz"] {
        let (status, _, _) = send(&f.monitoring, get(probe)).await;
        assert_eq!(status, StatusCode::OK, "{probe}");
    }
    // Nothing of the API is reachable there.
    for api in ["/v1/config", "/v1/krl", "/v1/ca/user.pub"] {
        let (status, _, body) = send(&f.monitoring, get(api)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{api}"
        );
    }
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
