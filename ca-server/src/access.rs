//! Access requests: the state machine behind just-in-time elevation.
//!
//! A request asks for principals for a window of time, with a reason. It is
//! `pending` until enough approvers approve it (`approved`), one denies it
//! (`denied`), its pending time runs out (`expired`) or the requester ends it
//! (`ended`). The window opens at approval, or at the requested start if that
//! is later (scheduled), or with the first certificate that uses it (from
//! first use; an approved grant nobody uses lapses, `expired`, after the
//! pending time). An approved request ends by itself when its window does, or
//! earlier with `done`.
//!
//! `expired`, and `ended` at the window's end, are never written: they follow
//! from the stored times and [`AccessRequest::status_at`] derives them, so no
//! background job is needed and a restarted CA agrees with the one before.
//! Everything here is pure; the store checks these rules inside the
//! transaction that records the change, so two racing decisions cannot both
//! pass.

use serde::Serialize;

use crate::identity::IdentityKey;
use crate::policy::{ApprovedAccess, HowApproved, RuleRequirement};
use crate::UnixTime;

/// How long a request waits for a decision unless configured otherwise.
pub const DEFAULT_PENDING_SECS: u64 = 3600;
/// How far in the past a requested start may be (clock skew, typing time).
pub const START_SKEW_SECS: u64 = 60;
/// How far ahead a window may be scheduled.
pub const MAX_START_AHEAD_SECS: u64 = 7 * 86_400;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved; the window is open.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Nobody decided before the pending time ran out.
    Expired,
    /// The window closed, or the requester ended it early.
    Ended,
}

impl RequestStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
            RequestStatus::Ended => "ended",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<RequestStatus> {
        Some(match name {
            "pending" => RequestStatus::Pending,
            "approved" => RequestStatus::Approved,
            "denied" => RequestStatus::Denied,
            "expired" => RequestStatus::Expired,
            "ended" => RequestStatus::Ended,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// `user@issuer`, or `policy:<rule>`.
    pub approver: String,
    /// The approver's key; `None` for the policy, and for approvals
    /// recorded before keys were.
    #[serde(skip)]
    pub approver_key: Option<IdentityKey>,
    /// When.
    pub at: UnixTime,
    /// Optional comment.
    pub comment: String,
}

impl Approval {
    /// Whether the person with `key`, showing `display`, gave it: by key; an
    /// approval recorded before keys were, by display name.
    pub fn is_by(&self, key: &IdentityKey, display: &str) -> bool {
        match &self.approver_key {
            Some(approver) => approver == key,
            None => self.approver == display,
        }
    }
}

/// An access request as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRequest {
    /// Identifier, unique in this CA.
    pub id: u64,
    /// `user@issuer` of the requester.
    pub requester: String,
    /// The requester's key, which decides whose request it is; `None` for
    /// a request recorded before keys were ([`AccessRequest::is_requester`]).
    #[serde(skip)]
    pub requester_key: Option<IdentityKey>,
    /// The principals asked for.
    pub principals: Vec<String>,
    /// Why.
    pub reason: String,
    /// Length of the window asked for, in seconds.
    pub window_secs: u64,
    /// The status as stored; see [`AccessRequest::status_at`].
    pub status: RequestStatus,
    /// When it was made.
    pub created_at: UnixTime,
    /// When it expires unless decided.
    pub expires_at: UnixTime,
    /// Start of the window, once approved.
    pub window_start: Option<UnixTime>,
    /// End of the window, once approved (moved earlier by `done`).
    pub window_end: Option<UnixTime>,
    /// Approvals so far.
    pub approvals: Vec<Approval>,
    /// Who denied or ended it.
    pub closed_by: Option<String>,
    /// Why it was denied or ended.
    pub closed_reason: Option<String>,
    /// The policy rules whose approvers decide it, fixed when it was made.
    pub rules: Vec<String>,
    /// What each of `rules` required when it was made, and again at each
    /// approval (the last one recorded is what its approvals were counted
    /// under); `None` for a request recorded before this was, which grants
    /// nothing and can no longer be approved.
    #[serde(skip)]
    pub approved_under: Option<Vec<RuleRequirement>>,
    /// Approved by its requester alone, under a rule with `break_glass`.
    pub break_glass: bool,
    /// The window opens no earlier than this (scheduled).
    pub starts_at: Option<UnixTime>,
    /// The window opens with the first certificate that uses it.
    pub from_first_use: bool,
    /// Review of a break-glass request, once done.
    pub review: Option<Review>,
}

/// An approver's or administrator's review of a break-glass request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// `user@issuer` of the reviewer.
    pub by: String,
    /// When.
    pub at: UnixTime,
    /// Optional comment.
    pub comment: String,
}

/// How a request is approved the moment it is made, without waiting for
/// approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstantApproval {
    /// The requester approves it themselves (break-glass); it is flagged for
    /// review.
    BreakGlass,
    /// The policy approves it: these rules' `[rule.approval.auto]`
    /// conditions hold. Recorded as approvals by `policy:<rule>`.
    Policy(Vec<String>),
}

/// Approver name recorded for an approval by the policy under `rule`.
pub fn policy_approver(rule: &str) -> String {
    format!("policy:{rule}")
}

/// Why a request cannot be made the way it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateRefusal {
    /// Break-glass asked for under rules that do not allow it.
    #[error("break-glass is not allowed for these principals (rules {0}); ask an approver instead (drop --break-glass)")]
    BreakGlassNotAllowed(String),
    /// Break-glass always needs a reason.
    #[error("a break-glass request needs a reason (--reason): it is reviewed afterwards")]
    BreakGlassReason,
    /// A start more than a minute ago.
    #[error("start {0} is in the past; give a time from now on (RFC 3339, e.g. 2026-12-01T09:00:00Z), or leave --start out")]
    StartInPast(String),
    /// A start more than a week ahead.
    #[error("start {0} is more than 7 days ahead; ask closer to the time")]
    StartTooFar(String),
    /// A scheduled start and a window from first use exclude each other.
    #[error("a window opens either at --start or at first use (--from-first-use), not both")]
    StartAndFirstUse,
}

/// Checks a requested window start (`start`, Unix seconds, shown as `text`)
/// at `now`: at most [`START_SKEW_SECS`] in the past, at most
/// [`MAX_START_AHEAD_SECS`] ahead, and not together with a window from first
/// use.
pub fn check_start(
    start: Option<UnixTime>,
    text: &str,
    from_first_use: bool,
    now: UnixTime,
) -> Result<Option<UnixTime>, CreateRefusal> {
    let Some(start) = start else {
        return Ok(None);
    };
    if from_first_use {
        return Err(CreateRefusal::StartAndFirstUse);
    }
    if start.saturating_add(START_SKEW_SECS) < now {
        return Err(CreateRefusal::StartInPast(text.to_string()));
    }
    if start > now.saturating_add(MAX_START_AHEAD_SECS) {
        return Err(CreateRefusal::StartTooFar(text.to_string()));
    }
    Ok(Some(start))
}

/// Decides at creation whether a request is approved at once: by its
/// requester when they ask for break-glass (`break_glass_allowed` by every
/// rule, and a reason given, whatever `reason_required` says), else by the
/// policy when `auto_rules` (the rules whose auto-approval conditions hold,
/// empty unless all of them do) is not empty.
pub fn instant_approval(
    break_glass_asked: bool,
    break_glass_allowed: bool,
    reason: &str,
    rules: &[String],
    auto_rules: &[String],
) -> Result<Option<InstantApproval>, CreateRefusal> {
    if break_glass_asked {
        if !break_glass_allowed {
            return Err(CreateRefusal::BreakGlassNotAllowed(rules.join(", ")));
        }
        if reason.trim().is_empty() {
            return Err(CreateRefusal::BreakGlassReason);
        }
        return Ok(Some(InstantApproval::BreakGlass));
    }
    if !auto_rules.is_empty() {
        return Ok(Some(InstantApproval::Policy(auto_rules.to_vec())));
    }
    Ok(None)
}

/// A transition the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No request with this id.
    #[error("no access request {0}")]
    Unknown(u64),
    /// Only pending requests can be decided.
    #[error("access request {id} is {status}, not pending")]
    NotPending {
        /// The request.
        id: u64,
        /// Its status now.
        status: RequestStatus,
    },
    /// Nobody approves their own request.
    #[error("you cannot decide your own access request (end it with `jit-ssh done`)")]
    OwnRequest,
    /// One approval per approver.
    #[error("you already approved access request {0}")]
    AlreadyApproved(u64),
    /// Only pending or approved requests can be ended.
    #[error("access request {id} is already {status}")]
    Closed {
        /// The request.
        id: u64,
        /// Its status now.
        status: RequestStatus,
    },
    /// Only break-glass requests are reviewed.
    #[error("access request {0} is not a break-glass request; there is nothing to review")]
    NotBreakGlass(u64),
    /// A review is done once.
    #[error("access request {id} was already reviewed by {by}")]
    AlreadyReviewed {
        /// The request.
        id: u64,
        /// The reviewer.
        by: String,
    },
    /// Nobody reviews their own break-glass access.
    #[error("you cannot review your own break-glass access; an approver of its rule or an administrator must")]
    OwnReview,
    /// The rules it was made under have changed so that approvals given
    /// under them would no longer count.
    #[error("access request {id} can no longer be approved: {why}; the requester must ask again")]
    RulesChanged {
        /// The request.
        id: u64,
        /// Which rule changed, and how.
        why: String,
    },
}

impl AccessRequest {
    /// The status at `now`: a pending request past its expiry is `expired`,
    /// an approved one past its window's end is `ended`.
    pub fn status_at(&self, now: UnixTime) -> RequestStatus {
        match self.status {
            RequestStatus::Pending if now >= self.expires_at => RequestStatus::Expired,
            RequestStatus::Approved if self.window_end.is_some_and(|end| now >= end) => {
                RequestStatus::Ended
            }
            // Approved from first use, never used: it lapses.
            RequestStatus::Approved if self.window_end.is_none() && now >= self.expires_at => {
                RequestStatus::Expired
            }
            status => status,
        }
    }

    /// The window that is open at `now`, start and end: the approved one once
    /// its start has come, or, for an approved grant from first use nobody
    /// has used yet, the one a certificate issued now would open.
    pub fn open_window(&self, now: UnixTime) -> Option<(UnixTime, UnixTime)> {
        if self.status_at(now) != RequestStatus::Approved {
            return None;
        }
        match (self.window_start, self.window_end) {
            (Some(start), Some(end)) if start <= now && now < end => Some((start, end)),
            (None, None) if self.from_first_use => {
                Some((now, now.saturating_add(self.window_secs)))
            }
            _ => None,
        }
    }

    /// What the policy sees of it at `now`: the principals it grants and
    /// until when, while its window is open.
    pub fn as_approved(&self, now: UnixTime) -> Option<ApprovedAccess> {
        let (_, end) = self.open_window(now)?;
        Some(ApprovedAccess {
            id: self.id,
            principals: self.principals.clone(),
            window_end: end,
            approved_under: self.approved_under.clone(),
            how: HowApproved {
                window_secs: self.window_secs,
                break_glass: self.break_glass,
                by_policy: self
                    .approvals
                    .iter()
                    .any(|a| a.approver_key.is_none() && a.approver.starts_with("policy:")),
            },
        })
    }

    /// The end of the open window that grants `principal` at `now`, if any.
    #[cfg(test)]
    fn grants(&self, principal: &str, now: UnixTime) -> Option<UnixTime> {
        if !self.principals.iter().any(|p| p == principal) {
            return None;
        }
        self.open_window(now).map(|(_, end)| end)
    }

    /// What approval at `at` sets: the window's start and end, and the new
    /// expiry. A scheduled window opens at its start if that is later; one
    /// from first use stays unopened (`None`), and the approved grant lapses
    /// unless used within the pending time, counted again from approval.
    pub fn approved_window(&self, at: UnixTime) -> (Option<UnixTime>, Option<UnixTime>, UnixTime) {
        if self.from_first_use {
            let pending = self.expires_at.saturating_sub(self.created_at);
            return (None, None, at.saturating_add(pending));
        }
        let start = self.starts_at.map_or(at, |s| s.max(at));
        (
            Some(start),
            Some(start.saturating_add(self.window_secs)),
            self.expires_at,
        )
    }

    /// The latest time a window of this request could end: its end once
    /// known, else (approved from first use) the last moment it may open plus
    /// its length.
    pub fn latest_end(&self) -> Option<UnixTime> {
        match (self.status, self.window_end) {
            (_, Some(end)) => Some(end),
            (RequestStatus::Approved, None) => {
                Some(self.expires_at.saturating_add(self.window_secs))
            }
            _ => None,
        }
    }

    /// Whether the person with `key`, showing `display`, made this request:
    /// by key. A request recorded before keys were is taken to be
    /// everyone's who shows its display name, which errs towards refusing
    /// (a self-approval) and lets its likely owner end it.
    pub fn is_requester(&self, key: &IdentityKey, display: &str) -> bool {
        match &self.requester_key {
            Some(requester) => requester == key,
            None => self.requester == display,
        }
    }

    /// Checks that the person with `key`, showing `display`, may add an
    /// approval at `now` (the policy has already said they are an approver
    /// for these principals): not their own request, and not approved by
    /// them before. Both compare keys, so another person who shows the
    /// requester's display name may approve, once.
    pub fn check_approval(
        &self,
        key: &IdentityKey,
        display: &str,
        now: UnixTime,
    ) -> Result<(), RequestError> {
        self.check_pending(now)?;
        if self.is_requester(key, display) {
            return Err(RequestError::OwnRequest);
        }
        if self.approvals.iter().any(|a| a.is_by(key, display)) {
            return Err(RequestError::AlreadyApproved(self.id));
        }
        Ok(())
    }

    /// Checks that approvals given now would still count under the rules
    /// the request was made under: `current` is what each of
    /// [`AccessRequest::rules`] requires now (`None`: gone). Each must ask
    /// no more than what was recorded ([`RuleRequirement::beyond`]);
    /// returns what to record with the approval.
    pub fn rules_now(
        &self,
        current: Vec<Option<RuleRequirement>>,
    ) -> Result<Vec<RuleRequirement>, RequestError> {
        let changed = |why: String| RequestError::RulesChanged { id: self.id, why };
        let Some(recorded) = &self.approved_under else {
            return Err(changed(
                "it was made before approvals were bound to their rules".into(),
            ));
        };
        let how = HowApproved {
            window_secs: self.window_secs,
            break_glass: false,
            by_policy: false,
        };
        let mut now = Vec::with_capacity(current.len());
        for (name, requirement) in self.rules.iter().zip(current) {
            let requirement = requirement.ok_or_else(|| {
                changed(format!(
                    "rule {name}, under which it was made, is gone (removed, renamed or without [rule.approval])"
                ))
            })?;
            let then = recorded
                .iter()
                .find(|r| &r.rule == name)
                .ok_or_else(|| changed(format!("nothing was recorded for rule {name}")))?;
            if let Some(more) = requirement.beyond(then, how) {
                return Err(changed(format!("rule tightened: {more}")));
            }
            now.push(requirement);
        }
        Ok(now)
    }

    /// Checks that the request may be denied at `now`.
    pub fn check_denial(&self, now: UnixTime) -> Result<(), RequestError> {
        self.check_pending(now)
    }

    /// Checks that the request may be ended at `now`: withdrawn while
    /// pending, or its window closed early while approved.
    pub fn check_end(&self, now: UnixTime) -> Result<(), RequestError> {
        match self.status_at(now) {
            RequestStatus::Pending | RequestStatus::Approved => Ok(()),
            status => Err(RequestError::Closed {
                id: self.id,
                status,
            }),
        }
    }

    /// Whether it is a break-glass request nobody has reviewed yet.
    pub fn needs_review(&self) -> bool {
        self.break_glass && self.review.is_none()
    }

    /// Checks that `reviewer` (already known to be an approver of its rules
    /// or an administrator) may mark it reviewed: a break-glass request, not
    /// reviewed yet, not their own. Its status does not matter: an ended
    /// emergency still needs its look afterwards.
    pub fn check_review(&self, key: &IdentityKey, reviewer: &str) -> Result<(), RequestError> {
        if !self.break_glass {
            return Err(RequestError::NotBreakGlass(self.id));
        }
        if let Some(review) = &self.review {
            return Err(RequestError::AlreadyReviewed {
                id: self.id,
                by: review.by.clone(),
            });
        }
        if self.is_requester(key, reviewer) {
            return Err(RequestError::OwnReview);
        }
        Ok(())
    }

    fn check_pending(&self, now: UnixTime) -> Result<(), RequestError> {
        match self.status_at(now) {
            RequestStatus::Pending => Ok(()),
            status => Err(RequestError::NotPending {
                id: self.id,
                status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the person shown as `display` in these tests (one each).
    fn key(display: &str) -> IdentityKey {
        IdentityKey {
            issuer: "https://corp.example".into(),
            subject: format!("sub-{display}"),
        }
    }

    fn pending() -> AccessRequest {
        AccessRequest {
            id: 7,
            requester: "bob@corp".into(),
            requester_key: Some(key("bob@corp")),
            principals: vec!["root".into()],
            reason: "INC-1".into(),
            window_secs: 1800,
            status: RequestStatus::Pending,
            created_at: 1000,
            expires_at: 1000 + DEFAULT_PENDING_SECS,
            window_start: None,
            window_end: None,
            approvals: Vec::new(),
            closed_by: None,
            closed_reason: None,
            rules: vec!["sre-root-with-approval".into()],
            approved_under: None,
            break_glass: false,
            review: None,
            starts_at: None,
            from_first_use: false,
        }
    }

    fn approved_at(at: UnixTime) -> AccessRequest {
        AccessRequest {
            status: RequestStatus::Approved,
            window_start: Some(at),
            window_end: Some(at + 1800),
            approvals: vec![Approval {
                approver: "carol@corp".into(),
                approver_key: Some(key("carol@corp")),
                at,
                comment: String::new(),
            }],
            ..pending()
        }
    }

    #[test]
    fn pending_expires_on_its_own() {
        let r = pending();
        assert_eq!(r.status_at(4599), RequestStatus::Pending);
        assert_eq!(r.status_at(4600), RequestStatus::Expired);
    }

    #[test]
    fn approval_after_expiry_is_refused() {
        assert_eq!(
            pending().check_approval(&key("carol@corp"), "carol@corp", 4600),
            Err(RequestError::NotPending {
                id: 7,
                status: RequestStatus::Expired
            })
        );
        assert_eq!(
            pending().check_denial(4600),
            Err(RequestError::NotPending {
                id: 7,
                status: RequestStatus::Expired
            })
        );
    }

    #[test]
    fn requester_never_approves_own_request() {
        assert_eq!(
            pending().check_approval(&key("bob@corp"), "bob@corp", 1001),
            Err(RequestError::OwnRequest)
        );
        // Same user name at another issuer is another person.
        assert_eq!(
            pending().check_approval(&key("bob@other"), "bob@other", 1001),
            Ok(())
        );
    }

    #[test]
    fn whose_request_and_whose_approval_is_decided_by_key_not_display_name() {
        let other_bob = IdentityKey {
            subject: "sub-another-bob".into(),
            ..key("bob@corp")
        };
        // Another person shown as bob@corp is not bob: may approve, once.
        let r = pending();
        assert!(!r.is_requester(&other_bob, "bob@corp"));
        assert_eq!(r.check_approval(&other_bob, "bob@corp", 1001), Ok(()));
        let mut approved_once = pending();
        approved_once.approvals.push(Approval {
            approver: "bob@corp".into(),
            approver_key: Some(other_bob.clone()),
            at: 1001,
            comment: String::new(),
        });
        assert_eq!(
            approved_once.check_approval(&other_bob, "bob@corp", 1002),
            Err(RequestError::AlreadyApproved(7))
        );
        // bob under another display name is still bob.
        assert_eq!(
            r.check_approval(&key("bob@corp"), "robert@corp", 1001),
            Err(RequestError::OwnRequest)
        );
        // A request recorded before keys belongs to its display name:
        // refusing its self-approval errs on the safe side.
        let legacy = AccessRequest {
            requester_key: None,
            ..pending()
        };
        assert!(legacy.is_requester(&other_bob, "bob@corp"));
        assert_eq!(
            legacy.check_approval(&other_bob, "bob@corp", 1001),
            Err(RequestError::OwnRequest)
        );
        assert!(!legacy.is_requester(&key("bob@corp"), "robert@corp"));
    }

    #[test]
    fn one_approval_per_approver() {
        let mut r = pending();
        r.approvals.push(Approval {
            approver: "carol@corp".into(),
            approver_key: Some(key("carol@corp")),
            at: 1001,
            comment: String::new(),
        });
        assert_eq!(
            r.check_approval(&key("carol@corp"), "carol@corp", 1002),
            Err(RequestError::AlreadyApproved(7))
        );
        assert_eq!(
            r.check_approval(&key("dave@corp"), "dave@corp", 1002),
            Ok(())
        );
    }

    #[test]
    fn decided_requests_cannot_be_decided_again() {
        let approved = approved_at(2000);
        assert!(matches!(
            approved.check_approval(&key("dave@corp"), "dave@corp", 2001),
            Err(RequestError::NotPending {
                status: RequestStatus::Approved,
                ..
            })
        ));
        let denied = AccessRequest {
            status: RequestStatus::Denied,
            ..pending()
        };
        assert!(denied.check_denial(1001).is_err());
        assert!(denied.check_end(1001).is_err());
    }

    #[test]
    fn approved_window_grants_listed_principals_until_its_end() {
        let r = approved_at(2000);
        assert_eq!(r.grants("root", 2000), Some(3800));
        assert_eq!(r.grants("root", 3799), Some(3800));
        assert_eq!(r.grants("admin", 2500), None);
        assert_eq!(r.grants("root", 3800), None);
        assert_eq!(r.status_at(3800), RequestStatus::Ended);
        assert_eq!(pending().grants("root", 1001), None);
    }

    #[test]
    fn end_applies_to_pending_and_open_windows_only() {
        assert_eq!(pending().check_end(1001), Ok(()));
        assert_eq!(approved_at(2000).check_end(2001), Ok(()));
        assert_eq!(
            approved_at(2000).check_end(3800),
            Err(RequestError::Closed {
                id: 7,
                status: RequestStatus::Ended
            })
        );
        assert!(pending().check_end(4600).is_err());
    }

    #[test]
    fn break_glass_needs_permission_and_a_reason() {
        let rules = vec!["root".to_string()];
        assert_eq!(
            instant_approval(true, true, "INC-7: site down", &rules, &[]),
            Ok(Some(InstantApproval::BreakGlass))
        );
        assert_eq!(
            instant_approval(true, false, "INC-7", &rules, &[]),
            Err(CreateRefusal::BreakGlassNotAllowed("root".into()))
        );
        assert_eq!(
            instant_approval(true, true, "  ", &rules, &[]),
            Err(CreateRefusal::BreakGlassReason)
        );
        // Allowed but not asked for: an ordinary request.
        assert_eq!(instant_approval(false, true, "", &rules, &[]), Ok(None));
    }

    #[test]
    fn auto_approval_applies_when_its_rules_agree() {
        let rules = vec!["root".to_string()];
        assert_eq!(
            instant_approval(false, false, "", &rules, &rules),
            Ok(Some(InstantApproval::Policy(rules.clone())))
        );
        // Break-glass asked for explicitly stays break-glass.
        assert_eq!(
            instant_approval(true, true, "INC-8", &rules, &rules),
            Ok(Some(InstantApproval::BreakGlass))
        );
        assert_eq!(policy_approver("root"), "policy:root");
    }

    #[test]
    fn only_others_review_a_break_glass_request_once() {
        let mut r = AccessRequest {
            break_glass: true,
            ..approved_at(2000)
        };
        assert!(r.needs_review());
        assert_eq!(
            r.check_review(&key("bob@corp"), "bob@corp"),
            Err(RequestError::OwnReview)
        );
        assert_eq!(r.check_review(&key("carol@corp"), "carol@corp"), Ok(()));
        r.review = Some(Review {
            by: "carol@corp".into(),
            at: 2100,
            comment: String::new(),
        });
        assert!(!r.needs_review());
        assert_eq!(
            r.check_review(&key("dave@corp"), "dave@corp"),
            Err(RequestError::AlreadyReviewed {
                id: 7,
                by: "carol@corp".into()
            })
        );
        assert_eq!(
            approved_at(2000).check_review(&key("carol@corp"), "carol@corp"),
            Err(RequestError::NotBreakGlass(7))
        );
        // Reviewing does not depend on the window: an ended one still needs it.
        let ended = AccessRequest {
            break_glass: true,
            ..approved_at(2000)
        };
        assert_eq!(ended.status_at(5000), RequestStatus::Ended);
        assert_eq!(ended.check_review(&key("carol@corp"), "carol@corp"), Ok(()));
    }

    #[test]
    fn a_scheduled_window_opens_at_its_start_even_when_approved_earlier() {
        let scheduled = AccessRequest {
            starts_at: Some(5000),
            ..pending()
        };
        let (start, end, expires) = scheduled.approved_window(2000);
        assert_eq!((start, end, expires), (Some(5000), Some(6800), 4600));
        let approved = AccessRequest {
            status: RequestStatus::Approved,
            window_start: start,
            window_end: end,
            ..scheduled.clone()
        };
        assert_eq!(approved.status_at(3000), RequestStatus::Approved);
        assert_eq!(approved.grants("root", 4999), None, "not before its start");
        assert_eq!(approved.grants("root", 5000), Some(6800));
        assert_eq!(approved.grants("root", 6800), None);
        // Approved after the start: opens at approval.
        assert_eq!(
            scheduled.approved_window(5500),
            (Some(5500), Some(7300), 4600)
        );
    }

    #[test]
    fn a_window_from_first_use_opens_with_the_first_certificate_or_lapses() {
        let first_use = AccessRequest {
            from_first_use: true,
            ..pending()
        };
        // Approved at 2000: unopened, and usable for the pending time again.
        let (start, end, expires) = first_use.approved_window(2000);
        assert_eq!((start, end, expires), (None, None, 5600));
        let approved = AccessRequest {
            status: RequestStatus::Approved,
            expires_at: expires,
            ..first_use
        };
        assert_eq!(approved.open_window(3000), Some((3000, 4800)));
        assert_eq!(approved.grants("root", 3000), Some(4800));
        assert_eq!(approved.latest_end(), Some(5600 + 1800));
        assert_eq!(approved.status_at(5599), RequestStatus::Approved);
        assert_eq!(approved.status_at(5600), RequestStatus::Expired);
        assert_eq!(approved.grants("root", 5600), None, "unused, it lapses");
        // Once used, an ordinary window.
        let used = AccessRequest {
            window_start: Some(3000),
            window_end: Some(4800),
            ..approved
        };
        assert_eq!(used.status_at(4700), RequestStatus::Approved);
        assert_eq!(used.status_at(4800), RequestStatus::Ended);
        assert_eq!(used.open_window(6000), None);
    }

    #[test]
    fn starts_are_checked_against_now() {
        let now = 1_000_000;
        assert_eq!(check_start(None, "", false, now), Ok(None));
        assert_eq!(
            check_start(Some(now - 60), "t", false, now),
            Ok(Some(now - 60))
        );
        assert_eq!(
            check_start(Some(now - 61), "t", false, now),
            Err(CreateRefusal::StartInPast("t".into()))
        );
        let week = MAX_START_AHEAD_SECS;
        assert_eq!(
            check_start(Some(now + week), "t", false, now),
            Ok(Some(now + week))
        );
        assert_eq!(
            check_start(Some(now + week + 1), "t", false, now),
            Err(CreateRefusal::StartTooFar("t".into()))
        );
        assert_eq!(
            check_start(Some(now + 10), "t", true, now),
            Err(CreateRefusal::StartAndFirstUse)
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::Expired,
            RequestStatus::Ended,
        ] {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RequestStatus::parse("open"), None);
    }
}
