//! What the HTTP edge answers before (or instead of) the domain: the order
//! of the caller's checks (address rate limit, in-flight limit, bearer
//! token, body), the in-flight limit answering at once, and the request
//! timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hyper::body::Frame;
use serde_json::json;

use crate::support::{code, configured_fixture, error_code, get, send, BOB};

fn post_without_token(path: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request")
}

#[tokio::test]
async fn the_in_flight_limit_answers_overloaded_at_once_before_the_token() {
    let f = configured_fixture(|config| config.max_in_flight = 1).await;
    let held = f
        .state
        .in_flight
        .clone()
        .try_acquire_owned()
        .expect("the only permit");
    for path in ["/v1/certs/user", "/v1/requests", "/v1/revocations"] {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            send(&f.router, post_without_token(path)),
        )
        .await
        .expect("answered at once, not queued");
        let (status, _, body) = answer;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            "{path}"
        );
    }
    // Endpoints that need no permit still answer.
    let (status, _, _) = send(&f.router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    drop(held);
    let (status, _, body) = send(&f.router, post_without_token("/v1/certs/user")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
}

#[tokio::test]
async fn the_address_rate_limit_fires_before_the_in_flight_limit() {
    let f = configured_fixture(|config| {
        config.max_in_flight = 1;
        config.rate_limit_per_address = 1;
    })
    .await;
    let _held = f
        .state
        .in_flight
        .clone()
        .try_acquire_owned()
        .expect("the only permit");
    let (status, _, body) = send(&f.router, post_without_token("/v1/certs/user")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "overloaded")
    );
    let (status, headers, body) = send(&f.router, post_without_token("/v1/certs/user")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
}

/// A request body that never arrives.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn a_request_outliving_the_timeout_answers_503_timeout() {
    let timeout = Duration::from_millis(300);
    let f = configured_fixture(|config| config.request_timeout = timeout).await;
    let request = Request::post("/v1/certs/user")
        .header("content-type", "application/json")
        .header("authorization", "Bearer x.y.z")
        .body(Body::new(Stalled))
        .expect("request");
    let started = Instant::now();
    let (status, _, body) = send(&f.router, request).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout")
    );
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn the_window_travels_in_seconds_and_the_old_for_still_works() {
    let f = configured_fixture(|_| {}).await;
    let created = f.create(BOB, json!({"window_seconds": 1800})).await;
    assert_eq!(created.0, StatusCode::OK, "{}", created.1);
    assert_eq!(created.1["window_seconds"], 1800);
    let old = f.create(BOB, json!({"for": "20m"})).await;
    assert_eq!(old.0, StatusCode::OK, "{}", old.1);
    assert_eq!(old.1["window_seconds"], 1200);
    for refused in [
        json!({"window_seconds": 7200}),
        json!({"window_seconds": 30}),
        json!({"window_seconds": 1800, "for": "30m"}),
    ] {
        assert_eq!(
            code(&f.create(BOB, refused.clone()).await),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{refused}"
        );
    }
}
