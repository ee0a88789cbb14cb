//! The access request endpoints: token checks, the stable codes of every
//! refusal, expiry and break-glass review.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{code, fixture, fixture_with, user_token, ADA, ALICE, BOB, CAROL};

#[tokio::test]
async fn request_endpoints_check_the_token_first() {
    let f = fixture().await;
    let body = json!({"principals": ["root"], "reason": "x"});
    let decision = json!({"reason": "x"});
    for (method, path, body) in [
        ("POST", "/v1/requests", &body),
        ("GET", "/v1/requests", &body),
        ("POST", "/v1/requests/1/approve", &decision),
        ("POST", "/v1/requests/1/deny", &decision),
        ("POST", "/v1/requests/1/done", &decision),
        ("POST", "/v1/requests/1/review", &decision),
    ] {
        let missing = f.call(method, path, None, body.clone()).await;
        assert_eq!(
            code(&missing),
            (StatusCode::UNAUTHORIZED, "missing_token"),
            "{method} {path}"
        );
        let forged = user_token(
            &ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
            "n",
            "carol",
            &["sre-leads"],
        );
        let bad = f.call(method, path, Some(&forged), body.clone()).await;
        assert_eq!(
            code(&bad),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{method} {path}"
        );
    }
    // A token makes one change. Sent again, the create is answered with the
    // request it made, a retry whose first answer was lost (issue 16 item
    // 5), not with a second request; any other change with it is a replay.
    let token = f.token_of(BOB);
    let created = f
        .call("POST", "/v1/requests", Some(&token), body.clone())
        .await;
    assert_eq!(created.0, StatusCode::OK, "{}", created.1);
    let again = f.call("POST", "/v1/requests", Some(&token), body).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    assert_eq!(again.1["id"], created.1["id"], "no second request");
    let id = created.1["id"].as_u64().expect("id");
    let done = f
        .call(
            "POST",
            &format!("/v1/requests/{id}/done"),
            Some(&token),
            decision,
        )
        .await;
    assert_eq!(code(&done), (StatusCode::UNAUTHORIZED, "replayed_token"));
    // Ids are numbers; unknown ids are 404.
    let word = f
        .post_as(CAROL, "/v1/requests/seven/approve", json!({}))
        .await;
    assert_eq!(code(&word), (StatusCode::BAD_REQUEST, "invalid_request"));
    let unknown = f
        .post_as(CAROL, "/v1/requests/999/approve", json!({}))
        .await;
    assert_eq!(code(&unknown), (StatusCode::NOT_FOUND, "unknown_request"));
    let unknown_field = f
        .post_as(CAROL, "/v1/requests/1/approve", json!({"approve": true}))
        .await;
    assert_eq!(
        code(&unknown_field),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn create_approve_deny_and_done_answer_stable_codes() {
    let f = fixture().await;
    let refused = f.create(ALICE, json!({})).await;
    assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "not_requestable"));
    let no_reason = f.create(BOB, json!({"reason": ""})).await;
    assert_eq!(
        code(&no_reason),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let too_long = f.create(BOB, json!({"for": "2h"})).await;
    assert_eq!(
        code(&too_long),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let created = f.create(BOB, json!({"for": "30m"})).await;
    assert_eq!(created.0, StatusCode::OK, "{}", created.1);
    assert_eq!(created.1["status"], "pending");
    let id = created.1["id"].as_u64().expect("id");
    let at = |verb: &str| format!("/v1/requests/{id}/{verb}");
    // carol may decide it and sees it; alice does not.
    assert_eq!(f.list_as(CAROL, "?pending=true").await, [id]);
    assert!(f.list_as(ALICE, "").await.is_empty());
    assert_eq!(f.list_as(BOB, "").await, [id]);

    let not_approver = f.post_as(ALICE, &at("approve"), json!({})).await;
    assert_eq!(code(&not_approver), (StatusCode::FORBIDDEN, "not_approver"));
    let own = f.post_as(BOB, &at("approve"), json!({})).await;
    assert_eq!(code(&own), (StatusCode::FORBIDDEN, "own_request"));
    let no_deny_reason = f.post_as(CAROL, &at("deny"), json!({})).await;
    assert_eq!(
        code(&no_deny_reason),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let approved = f
        .post_as(CAROL, &at("approve"), json!({"comment": "ok"}))
        .await;
    assert_eq!(approved.0, StatusCode::OK, "{}", approved.1);
    assert_eq!(approved.1["status"], "approved");
    for (verb, body) in [("approve", json!({})), ("deny", json!({"reason": "no"}))] {
        let decided = f.post_as(CAROL, &at(verb), body).await;
        assert_eq!(
            code(&decided),
            (StatusCode::CONFLICT, "not_pending"),
            "{verb}"
        );
    }
    let not_requester = f.post_as(ALICE, &at("done"), json!({})).await;
    assert_eq!(
        code(&not_requester),
        (StatusCode::FORBIDDEN, "not_requester")
    );
    let done = f.post_as(BOB, &at("done"), json!({})).await;
    assert_eq!(done.0, StatusCode::OK, "{}", done.1);
    assert_eq!(done.1["status"], "ended");
    let closed = f.post_as(ADA, &at("done"), json!({})).await;
    assert_eq!(code(&closed), (StatusCode::CONFLICT, "request_closed"));

    // Denied by an approver: closed for everyone.
    let second = f.create(BOB, json!({})).await;
    let second = second.1["id"].as_u64().expect("id");
    let denied = f
        .post_as(
            CAROL,
            &format!("/v1/requests/{second}/deny"),
            json!({"reason": "use the runbook"}),
        )
        .await;
    assert_eq!(denied.1["status"], "denied");
    let late = f
        .post_as(CAROL, &format!("/v1/requests/{second}/approve"), json!({}))
        .await;
    assert_eq!(code(&late), (StatusCode::CONFLICT, "not_pending"));
}

#[tokio::test]
async fn an_expired_request_can_no_longer_be_decided() {
    let f = fixture_with(Duration::from_secs(1)).await;
    let created = f.create(BOB, json!({})).await;
    let id = created.1["id"].as_u64().expect("id");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = f
        .post_as(CAROL, &format!("/v1/requests/{id}/approve"), json!({}))
        .await;
    assert_eq!(code(&late), (StatusCode::CONFLICT, "not_pending"));
    assert!(late.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));
}

#[tokio::test]
async fn break_glass_review_answers_stable_codes() {
    let f = fixture().await;
    let no_reason = f
        .create(BOB, json!({"break_glass": true, "reason": " "}))
        .await;
    assert_eq!(
        code(&no_reason),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let glass = f
        .create(BOB, json!({"break_glass": true, "reason": "INC-9: down"}))
        .await;
    assert_eq!(glass.0, StatusCode::OK, "{}", glass.1);
    assert_eq!(glass.1["status"], "approved");
    assert_eq!(glass.1["needs_review"], true);
    let id = glass.1["id"].as_u64().expect("id");
    let review = format!("/v1/requests/{id}/review");
    // Approvers and admins see it; nobody else, not even its requester.
    assert_eq!(f.list_as(CAROL, "?needs_review=true").await, [id]);
    assert_eq!(f.list_as(ADA, "?needs_review=true").await, [id]);
    assert!(f.list_as(ALICE, "?needs_review=true").await.is_empty());
    assert!(f.list_as(BOB, "?needs_review=true").await.is_empty());

    let outsider = f.post_as(ALICE, &review, json!({})).await;
    assert_eq!(code(&outsider), (StatusCode::FORBIDDEN, "not_reviewer"));
    let own = f.post_as(BOB, &review, json!({})).await;
    assert_eq!(code(&own), (StatusCode::FORBIDDEN, "own_request"));
    let reviewed = f
        .post_as(ADA, &review, json!({"comment": "justified"}))
        .await;
    assert_eq!(reviewed.0, StatusCode::OK, "{}", reviewed.1);
    assert_eq!(reviewed.1["reviewed_by"], "ada@corp");
    let twice = f.post_as(CAROL, &review, json!({})).await;
    assert_eq!(code(&twice), (StatusCode::CONFLICT, "already_reviewed"));
    assert!(f.list_as(CAROL, "?needs_review=true").await.is_empty());

    let ordinary = f.create(BOB, json!({})).await;
    let ordinary = ordinary.1["id"].as_u64().expect("id");
    let nothing = f
        .post_as(CAROL, &format!("/v1/requests/{ordinary}/review"), json!({}))
        .await;
    assert_eq!(code(&nothing), (StatusCode::CONFLICT, "not_break_glass"));
    let start = f
        .create(BOB, json!({"start": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!(code(&start), (StatusCode::BAD_REQUEST, "invalid_request"));
}
