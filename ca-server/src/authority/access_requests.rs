//! Access requests through the API: ask for principals, list one's own and
//! those one may decide, list unreviewed break-glass requests, and approve,
//! deny, end or review one; and the wire view of a request.
//!
//! Whose request it is, and who approved it, is decided by key `(iss, sub)`
//! (`AccessRequest::is_requester`), never by display name: another person
//! who shows the requester's `user@issuer` may approve it, cannot end it,
//! and its grant is not theirs.
//!
//! Every change spends the caller's ID token in the transaction that records
//! it; reading spends nothing, but refuses a spent token as every call does
//! (and a revoked identity reads nothing either). The rules of the state
//! machine are in `crate::access`, checked again by the store inside that
//! transaction.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ca_proto::{AccessApproval, AccessRequestCreate, AccessRequestDecision, AccessRequestView};
use jit_ssh_common::text::control_refusal;

use crate::access::{
    check_start, instant_approval, AccessRequest, CreateRefusal, InstantApproval, RequestError,
    RequestStatus,
};
use crate::secret::BearerToken;
use crate::store::{RequestChange, StoreError};
use crate::webhook::{Event as WebhookEvent, EventKind};
use crate::UnixTime;

use super::records::{self, Acting, Asked};
use super::{principals_problem, AuthError, Authenticated, Authority, MAX_REASON_LEN};

/// Shortest window an access request may ask for.
pub const MIN_ACCESS_WINDOW: Duration = Duration::from_secs(60);
/// How far back `GET /v1/requests` lists the caller's own requests.
pub const REQUEST_LIST_DAYS: u64 = 7;

/// Why an access request could not be made, listed or decided. Mapped to
/// HTTP in `crate::http`, once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The request body makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// A reason or comment holds a control character other than tab.
    #[error("{0}")]
    InvalidText(String),
    /// The caller could not act: token, replay, rate limit or revoked
    /// identity.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The policy lets nobody, or not this caller, ask for these principals.
    #[error("{0}")]
    NotRequestable(String),
    /// The caller is not an approver of the request's rules.
    #[error("{who} may not decide access request {id}: not an approver of its policy rules")]
    NotApprover {
        /// The caller.
        who: String,
        /// The request.
        id: u64,
    },
    /// Nobody decides their own request.
    #[error("you cannot decide your own access request (end it with `jit-ssh done`)")]
    OwnRequest,
    /// Only the requester (or an administrator) ends a request.
    #[error("only its requester or an administrator may end access request {0}")]
    NotRequester(u64),
    /// The request cannot be made as asked: break-glass where the policy
    /// does not allow it or without a reason, or a bad window start.
    #[error(transparent)]
    Refused(CreateRefusal),
    /// Only an approver of the request's rules or an administrator reviews
    /// a break-glass request.
    #[error("{who} may not review access request {id}: neither an approver of its policy rules nor an administrator")]
    NotReviewer {
        /// The caller.
        who: String,
        /// The request.
        id: u64,
    },
    /// No such request.
    #[error("no access request {0}")]
    Unknown(u64),
    /// The request's state does not allow this (expired, already decided,
    /// already approved by this approver, already ended).
    #[error(transparent)]
    Conflict(RequestError),
    /// The database failed.
    #[error("the access request could not be read or recorded")]
    Store(#[source] StoreError),
}

impl From<StoreError> for AccessError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Replayed => AccessError::Auth(AuthError::Replayed),
            StoreError::RevokedIdentity(who) => AccessError::Auth(AuthError::RevokedIdentity(who)),
            StoreError::Request(RequestError::OwnRequest) => AccessError::OwnRequest,
            StoreError::Request(RequestError::Unknown(id)) => AccessError::Unknown(id),
            StoreError::Request(other) => AccessError::Conflict(other),
            other => AccessError::Store(other),
        }
    }
}

/// What a caller does to an access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessVerb {
    /// Approve it.
    Approve,
    /// Deny it.
    Deny,
    /// End it (withdraw, or close the window early).
    Done,
    /// Mark a break-glass request reviewed.
    Review,
}

/// The wire form of `request` at `now`.
pub fn access_view(
    request: &AccessRequest,
    now: UnixTime,
    revoked: Vec<String>,
) -> AccessRequestView {
    AccessRequestView {
        id: request.id,
        requester: request.requester.clone(),
        principals: request.principals.clone(),
        reason: request.reason.clone(),
        window_seconds: request.window_secs,
        status: wire_status(request.status_at(now)),
        created_at: request.created_at,
        expires_at: request.expires_at,
        window_start: request.window_start,
        window_end: request.window_end,
        starts_at: request.starts_at,
        from_first_use: request.from_first_use,
        approvals: request
            .approvals
            .iter()
            .map(|a| AccessApproval {
                approver: a.approver.clone(),
                at: a.at,
                comment: a.comment.clone(),
            })
            .collect(),
        closed_by: request.closed_by.clone(),
        closed_reason: request.closed_reason.clone(),
        revoked_serials: revoked,
        break_glass: request.break_glass,
        needs_review: request.needs_review(),
        reviewed_by: request.review.as_ref().map(|r| r.by.clone()),
        reviewed_at: request.review.as_ref().map(|r| r.at),
        review_comment: request.review.as_ref().map(|r| r.comment.clone()),
    }
}

impl Authority {
    /// Records a new access request by the bearer of `token` (verified
    /// without nonce binding and spent with the request): the policy must let
    /// the caller ask for every principal, for at most its longest window.
    /// A retry with the token that created a request returns that request.
    pub async fn create_access_request(
        &self,
        token: &BearerToken,
        request: AccessRequestCreate,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<AccessRequestView, AccessError> {
        refuse_control("reason", Some(&request.reason))?;
        let principals: BTreeSet<String> = request.principals.iter().cloned().collect();
        let principals: Vec<String> = principals.into_iter().collect();
        if let Some(problem) = principals_problem(&principals, false) {
            return Err(AccessError::InvalidRequest(problem));
        }
        let from_first_use_asked = request.from_first_use;
        let start = asked_start(&request)?;
        let asked = asked_window(&request)?;
        let verified = self
            .verifier
            .verify_unbound(token.expose_secret(), now)
            .await
            .map_err(AuthError::Token)?;
        let caller = self.within_limits(verified)?;
        let acting = Acting::bearer(&caller, client_addr, now);
        // A retry with the token that created a request (its answer lost)
        // is answered with that request; any other spent token is refused
        // by the standing check below.
        let retry = records::retry(&caller, &acting);
        if let Some(created) = self.store.retried_request(retry).await? {
            tracing::info!(id = created.id, requester = %created.requester, "returned the access request a retry's ID token created");
            return Ok(access_view(&created, now, Vec::new()));
        }
        let caller = self.in_standing(caller, client_addr, now).await?;
        let terms = match self
            .policy
            .access_terms(&caller.token.identity, &principals, now)
        {
            Ok(terms) => terms,
            Err(reason) => {
                let reason_text = format!("access request refused: {reason}");
                self.store
                    .record_denial(records::denial(&acting, reason_text, Vec::new()))
                    .await?;
                return Err(AccessError::NotRequestable(reason));
            }
        };
        let window = asked.unwrap_or(terms.max_window);
        if window < MIN_ACCESS_WINDOW || window > terms.max_window {
            return Err(AccessError::InvalidRequest(format!(
                "for must be between {} and {} (max_window of rule {})",
                jit_ssh_common::duration::format_duration(MIN_ACCESS_WINDOW),
                jit_ssh_common::duration::format_duration(terms.max_window),
                terms.rules.join(", ")
            )));
        }
        let reason = checked_text("reason", Some(&request.reason), terms.reason_required)?;
        let starts_at = check_start(
            start.as_ref().map(|(at, _)| *at),
            start.as_ref().map_or("", |(_, text)| text.as_str()),
            from_first_use_asked,
            now,
        )
        .map_err(AccessError::Refused)?;
        // A rule's `window_from_first_use` is the default; an explicit start
        // replaces it.
        let from_first_use = from_first_use_asked || (terms.from_first_use && starts_at.is_none());
        let approval = instant_approval(
            request.break_glass,
            terms.break_glass,
            &reason,
            &terms.rules,
            &terms.auto_approved_by,
        )
        .map_err(AccessError::Refused)?;
        let asked = Asked {
            principals,
            reason,
            window_secs: window.as_secs(),
            rules: terms.rules,
            approved_under: terms.requirements,
            expires_at: starts_at.unwrap_or(now).max(now) + self.pending_secs,
            approval: approval.clone(),
            starts_at,
            from_first_use,
        };
        let created = self
            .store
            .create_request(records::new_request(acting, asked))
            .await?;
        let (kind, actor) = match &approval {
            None => {
                tracing::info!(id = created.id, requester = %created.requester, principals = ?created.principals, "access request created");
                (EventKind::Created, created.requester.clone())
            }
            Some(InstantApproval::BreakGlass) => {
                tracing::warn!(id = created.id, requester = %created.requester, principals = ?created.principals, reason = %created.reason, window_end = ?created.window_end, "BREAK-GLASS: access request approved by its requester; it needs review");
                (EventKind::BreakGlass, created.requester.clone())
            }
            Some(InstantApproval::Policy(rules)) => {
                tracing::info!(id = created.id, requester = %created.requester, principals = ?created.principals, rules = %rules.join(","), "access request approved by the policy");
                let actor = created
                    .approvals
                    .first()
                    .map(|a| a.approver.clone())
                    .unwrap_or_default();
                (EventKind::Approved, actor)
            }
        };
        self.webhooks
            .notify(WebhookEvent::new(kind, &created, &actor, "", now));
        Ok(access_view(&created, now, Vec::new()))
    }

    /// The caller's own access requests of the last week and, for an
    /// approver, the pending requests of others they may decide; newest
    /// first. Reading spends no token, but a spent one is refused.
    pub async fn list_access_requests(
        &self,
        token: &BearerToken,
        pending_only: bool,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Vec<AccessRequestView>, AccessError> {
        let Authenticated {
            token,
            name: me,
            key,
        } = self.authenticate(token, client_addr, now).await?;
        let identity = token.identity;
        let mut requests = self
            .store
            .requests(
                Some((key.clone(), me.clone())),
                now.saturating_sub(REQUEST_LIST_DAYS * 86_400),
            )
            .await?;
        // Pending by expiry, not by age: a scheduled request stays open for
        // decisions until its start plus the pending time.
        let others = self.store.pending_requests(now).await?;
        requests.extend(others.into_iter().filter(|r| {
            !r.is_requester(&key, &me)
                && r.status_at(now) == RequestStatus::Pending
                && self.policy.approval_rights(&identity, &r.rules).is_some()
        }));
        requests.sort_by_key(|r| std::cmp::Reverse(r.id));
        requests.dedup_by_key(|r| r.id);
        Ok(requests
            .iter()
            .filter(|r| !pending_only || r.status_at(now) == RequestStatus::Pending)
            .map(|r| access_view(r, now, Vec::new()))
            .collect())
    }

    /// Break-glass requests nobody has reviewed yet that the caller may
    /// review (as an approver of their rules, or an administrator), newest
    /// first. Reading spends no token, but a spent one is refused.
    pub async fn unreviewed_access_requests(
        &self,
        token: &BearerToken,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Vec<AccessRequestView>, AccessError> {
        let Authenticated {
            token,
            name: me,
            key,
        } = self.authenticate(token, client_addr, now).await?;
        let identity = token.identity;
        let admin = self.policy.admin(&identity).is_some();
        Ok(self
            .store
            .unreviewed_requests()
            .await?
            .iter()
            .filter(|r| {
                !r.is_requester(&key, &me)
                    && (admin || self.policy.approval_rights(&identity, &r.rules).is_some())
            })
            .map(|r| access_view(r, now, Vec::new()))
            .collect())
    }

    /// Approves, denies or ends access request `id` for the bearer of
    /// `token` (verified without nonce binding, spent with the change).
    /// Approvers are those of every policy rule the request was made under,
    /// as the policy reads now; only the requester or an administrator ends
    /// it, and ending it revokes the certificates issued under it.
    pub async fn decide_access_request(
        &self,
        token: &BearerToken,
        id: u64,
        verb: AccessVerb,
        body: AccessRequestDecision,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<AccessRequestView, AccessError> {
        refuse_control("comment", body.comment.as_deref())?;
        refuse_control("reason", body.reason.as_deref())?;
        let caller = self.authenticate(token, client_addr, now).await?;
        let acting = Acting::bearer(&caller, client_addr, now);
        let (identity, me, key) = (&caller.token.identity, &caller.name, &caller.key);
        let request = self
            .store
            .request(id)
            .await?
            .ok_or(AccessError::Unknown(id))?;
        let (change, rules) = match verb {
            AccessVerb::Approve | AccessVerb::Deny => {
                if request.is_requester(key, me) {
                    return Err(AccessError::OwnRequest);
                }
                let Some((required, rules_now)) =
                    self.policy.approver_terms(identity, &request.rules)
                else {
                    let reason = format!("not an approver of access request {id}");
                    self.store
                        .record_denial(records::denial(&acting, reason, request.rules.clone()))
                        .await?;
                    return Err(AccessError::NotApprover {
                        who: me.clone(),
                        id,
                    });
                };
                let change = if verb == AccessVerb::Approve {
                    // An approval counts only under the rules as they read
                    // now, and only while they ask no more than when the
                    // request was made.
                    let now_required = request
                        .rules_now(rules_now)
                        .map_err(AccessError::Conflict)?;
                    RequestChange::Approve {
                        required,
                        comment: checked_text("comment", body.comment.as_deref(), false)?,
                        seen: request.approved_under.clone(),
                        now: now_required,
                    }
                } else {
                    RequestChange::Deny {
                        reason: checked_text("reason", body.reason.as_deref(), true)?,
                    }
                };
                (change, request.rules.clone())
            }
            AccessVerb::Done => {
                let admin = self.policy.admin(identity);
                if !request.is_requester(key, me) && admin.is_none() {
                    return Err(AccessError::NotRequester(id));
                }
                let reason = checked_text("reason", body.reason.as_deref(), false)?;
                let reason = if reason.is_empty() {
                    "done".to_string()
                } else {
                    reason
                };
                (RequestChange::End { reason }, admin.into_iter().collect())
            }
            AccessVerb::Review => {
                if request.is_requester(key, me) {
                    return Err(AccessError::Conflict(RequestError::OwnReview));
                }
                let approver = self.policy.approval_rights(identity, &request.rules);
                let admin = self.policy.admin(identity);
                if approver.is_none() && admin.is_none() {
                    let reason = format!("not a reviewer of access request {id}");
                    self.store
                        .record_denial(records::denial(&acting, reason, request.rules.clone()))
                        .await?;
                    return Err(AccessError::NotReviewer {
                        who: me.clone(),
                        id,
                    });
                }
                let comment = checked_text("comment", body.comment.as_deref(), false)?;
                let rules = if approver.is_some() {
                    request.rules.clone()
                } else {
                    admin.into_iter().collect()
                };
                (RequestChange::Review { comment }, rules)
            }
        };
        let changed = self
            .store
            .change_request(records::request_action(id, change, acting, rules))
            .await?;
        if !changed.revoked.serials.is_empty() {
            self.krl_cache.forget();
        }
        tracing::info!(id, actor = %me, ?verb, status = %changed.request.status_at(now), revoked = changed.revoked.serials.len(), "access request changed");
        let event = match verb {
            AccessVerb::Approve if changed.request.status_at(now) == RequestStatus::Approved => {
                let comment = changed
                    .request
                    .approvals
                    .iter()
                    .rev()
                    .find(|a| a.is_by(key, me))
                    .map(|a| a.comment.clone())
                    .unwrap_or_default();
                Some((EventKind::Approved, comment))
            }
            AccessVerb::Approve => None,
            AccessVerb::Deny => Some((
                EventKind::Denied,
                changed.request.closed_reason.clone().unwrap_or_default(),
            )),
            AccessVerb::Done => Some((
                EventKind::Ended,
                changed.request.closed_reason.clone().unwrap_or_default(),
            )),
            AccessVerb::Review => None,
        };
        if let Some((kind, comment)) = event {
            self.webhooks
                .notify(WebhookEvent::new(kind, &changed.request, me, &comment, now));
        }
        Ok(access_view(&changed.request, now, changed.revoked.serials))
    }
}

fn wire_status(status: RequestStatus) -> ca_proto::RequestStatus {
    match status {
        RequestStatus::Pending => ca_proto::RequestStatus::Pending,
        RequestStatus::Approved => ca_proto::RequestStatus::Approved,
        RequestStatus::Denied => ca_proto::RequestStatus::Denied,
        RequestStatus::Expired => ca_proto::RequestStatus::Expired,
        RequestStatus::Ended => ca_proto::RequestStatus::Ended,
    }
}

/// Refuses `text`, the value of `field`, when it holds a control character
/// other than tab: checked before anything else, so it is refused before
/// anything is recorded or any token spent.
fn refuse_control(field: &str, text: Option<&str>) -> Result<(), AccessError> {
    match text.and_then(|text| control_refusal(field, text)) {
        Some(refusal) => Err(AccessError::InvalidText(refusal)),
        None => Ok(()),
    }
}

/// Free text trimmed: at most [`MAX_REASON_LEN`] characters, and present
/// when `required` (control characters, NUL among them, were refused
/// before, by [`refuse_control`]).
fn checked_text(field: &str, text: Option<&str>, required: bool) -> Result<String, AccessError> {
    let text = text.unwrap_or("").trim();
    if text.len() > MAX_REASON_LEN {
        return Err(AccessError::InvalidRequest(format!(
            "{field} must be at most {MAX_REASON_LEN} characters"
        )));
    }
    if required && text.is_empty() {
        return Err(AccessError::InvalidRequest(format!("{field} is required")));
    }
    Ok(text.to_string())
}

/// The window asked for: `window_seconds`, or the deprecated `for` string
/// of older clients; `None` when neither is given.
fn asked_window(request: &AccessRequestCreate) -> Result<Option<Duration>, AccessError> {
    match (request.window_seconds, request.deprecated_for.as_deref()) {
        (None, None) => Ok(None),
        (Some(seconds), None) => Ok(Some(Duration::from_secs(seconds))),
        (None, Some(text)) => jit_ssh_common::duration::parse_duration(text)
            .map(Some)
            .map_err(|e| AccessError::InvalidRequest(format!("for: {e}"))),
        (Some(_), Some(_)) => Err(AccessError::InvalidRequest(
            "give the window as window_seconds or as for (deprecated), not both".into(),
        )),
    }
}

/// The requested start, as Unix seconds and as given.
fn asked_start(request: &AccessRequestCreate) -> Result<Option<(UnixTime, String)>, AccessError> {
    let Some(text) = request.start.as_deref() else {
        return Ok(None);
    };
    let at: jiff::Timestamp = text.trim().parse().map_err(|_| {
        AccessError::InvalidRequest(format!(
            "start {:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z",
            text.chars().take(40).collect::<String>()
        ))
    })?;
    Ok(Some((
        u64::try_from(at.as_second()).unwrap_or(0),
        text.trim().to_string(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(window_seconds: Option<u64>, deprecated_for: Option<&str>) -> AccessRequestCreate {
        AccessRequestCreate {
            principals: vec!["root".into()],
            window_seconds,
            deprecated_for: deprecated_for.map(String::from),
            ..AccessRequestCreate::default()
        }
    }

    #[test]
    fn the_window_is_read_in_seconds_or_from_the_deprecated_string() {
        let half_hour = Some(Duration::from_secs(1800));
        assert_eq!(
            asked_window(&create(Some(1800), None)).ok(),
            Some(half_hour)
        );
        assert_eq!(
            asked_window(&create(None, Some("30m"))).ok(),
            Some(half_hour)
        );
        assert_eq!(asked_window(&create(None, None)).ok(), Some(None));
        for both_or_bad in [create(Some(1800), Some("30m")), create(None, Some("soon"))] {
            assert!(matches!(
                asked_window(&both_or_bad),
                Err(AccessError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn every_status_has_its_wire_name() {
        for status in [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::Expired,
            RequestStatus::Ended,
        ] {
            assert_eq!(wire_status(status).as_str(), status.as_str());
        }
    }
}
