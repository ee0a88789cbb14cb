//! Access requests on record: their creation, every decision on them
//! (approve, deny, end, review), and reading them back with their approvals.
//!
//! Each change is checked against the request's state inside the
//! transaction that records it ([`crate::access`] holds the rules), so two
//! racing decisions cannot both pass; it spends the actor's token and writes
//! its audit event in that same transaction. Ending an approved request
//! revokes, in that transaction too, the certificates issued under it.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::audit::{insert_audit, AuditRow};
use super::revocations::{revoke_in, RevocationRecord, RevocationTarget, Revoked};
use super::schema::{json_list, sqlite_error};
use super::spent::{spend, spend_for, Paid, SpentToken, WriteTx};
use super::{Actor, StoreError};
use crate::access::{
    policy_approver, AccessRequest, Approval, InstantApproval, RequestError, RequestStatus, Review,
};
use crate::identity::IdentityKey;
use crate::policy::RuleRequirement;
use crate::UnixTime;

/// A new access request, as recorded.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Who asks, from where, and when; its rules are the policy rules whose
    /// approvers decide the request.
    pub requester: Actor,
    /// Principals asked for, never empty.
    pub principals: Vec<String>,
    /// Why.
    pub reason: String,
    /// Window length asked for, seconds.
    pub window_secs: u64,
    /// When it expires unless decided.
    pub expires_at: UnixTime,
    /// The requester's ID token, spent in the same transaction.
    pub spent_token: Option<SpentToken>,
    /// Approved at once (break-glass or by the policy), or `None` to wait
    /// for approvers.
    pub approval: Option<InstantApproval>,
    /// The window opens no earlier than this.
    pub starts_at: Option<UnixTime>,
    /// The window opens with the first certificate under it.
    pub from_first_use: bool,
    /// What each of the requester's rules requires now.
    pub approved_under: Vec<RuleRequirement>,
}

/// What is done to an existing access request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestChange {
    /// Adds an approval; the request is approved, and its window opens, once
    /// it has `required` approvals.
    Approve {
        /// Approvals needed (at least 1).
        required: u32,
        /// Optional comment.
        comment: String,
        /// What the request's rules required as the approver's check read
        /// them on record; the approval is refused if that record changed
        /// since.
        seen: Option<Vec<RuleRequirement>>,
        /// What they require now (no more than `seen`), recorded with it.
        now: Vec<RuleRequirement>,
    },
    /// Denies it.
    Deny {
        /// Why.
        reason: String,
    },
    /// Withdraws it while pending, or closes its window early and revokes the
    /// certificates issued under it.
    End {
        /// Why.
        reason: String,
    },
    /// Marks a break-glass request reviewed.
    Review {
        /// Optional comment.
        comment: String,
    },
}

/// Who changes which access request, when.
#[derive(Debug, Clone)]
pub struct RequestAction {
    /// The request.
    pub id: u64,
    /// What.
    pub change: RequestChange,
    /// Who, from where, when, and the policy rules that authorised it.
    pub actor: Actor,
    /// The actor's ID token, spent in the same transaction.
    pub spent_token: Option<SpentToken>,
}

/// The outcome of a [`RequestAction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestChanged {
    /// The request after the change.
    pub request: AccessRequest,
    /// What ending it revoked (empty otherwise).
    pub revoked: Revoked,
}

/// Writes a new access request inside `tx`, spending the requester's token,
/// and approves it at once when `new.approval` says so.
pub(super) fn create_request_in(
    tx: &WriteTx<'_>,
    new: &NewRequest,
    path: &Path,
) -> Result<AccessRequest, StoreError> {
    let err = sqlite_error(path);
    // Refused as a replay before the first write; spent after it, when the
    // id a retry is answered with is known.
    if new.spent_token.is_some_and(|t| tx.is_spent(&t.digest)) {
        return Err(StoreError::Replayed);
    }
    tx.execute(
        "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
         rules, status, created_at, expires_at, starts_at, from_first_use, requester_issuer, \
         requester_subject, approved_under) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            new.requester.identity,
            new.requester.issuer,
            json_list(&new.principals),
            new.reason,
            new.window_secs as i64,
            json_list(&new.requester.rules),
            new.requester.at as i64,
            new.expires_at as i64,
            new.starts_at.map(|t| t as i64),
            new.from_first_use,
            new.requester.key.as_ref().map(|k| k.issuer.as_str()),
            new.requester.key.as_ref().map(|k| k.subject.as_str()),
            requirements_json(&new.approved_under)
        ],
    )
    .map_err(&err)?;
    let id = tx.last_insert_rowid() as u64;
    spend_for(tx, new.spent_token, Paid::Request(id), path)?;
    let detail = format!(
        "request {id}: principals {} for {}s{}: {}",
        new.principals.join(","),
        new.window_secs,
        under(&new.approved_under),
        new.reason
    );
    insert_audit(
        tx,
        &AuditRow::by(&new.requester, "request_created", &detail),
        path,
    )?;
    if let Some(approval) = &new.approval {
        let (approvers, kind, detail, break_glass) = match approval {
            InstantApproval::BreakGlass => (
                vec![(
                    new.requester.identity.clone(),
                    new.requester.key.as_ref(),
                    "break-glass".to_string(),
                )],
                "request_break_glass",
                format!(
                    "request {id}: BREAK-GLASS: approved by its requester, needs review: {}",
                    new.reason
                ),
                true,
            ),
            InstantApproval::Policy(rules) => (
                rules
                    .iter()
                    .map(|rule| (policy_approver(rule), None, "auto-approved".to_string()))
                    .collect(),
                "request_approved",
                format!(
                    "request {id}: approved by the policy ({})",
                    rules
                        .iter()
                        .map(|r| policy_approver(r))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            ),
        };
        for (approver, key, comment) in &approvers {
            insert_approval(tx, id, approver, *key, new.requester.at, comment).map_err(&err)?;
        }
        let created =
            read_request(tx, id, path)?.ok_or(StoreError::Request(RequestError::Unknown(id)))?;
        let (start, end, expires) = created.approved_window(new.requester.at);
        tx.execute(
            "UPDATE access_requests SET status = 'approved', window_start = ?2, window_end = ?3, \
             expires_at = ?4, break_glass = ?5 WHERE id = ?1",
            params![
                id as i64,
                start.map(|t| t as i64),
                end.map(|t| t as i64),
                expires as i64,
                break_glass
            ],
        )
        .map_err(&err)?;
        let (actor, key) = approvers
            .first()
            .map(|(a, key, _)| (a.clone(), *key))
            .unwrap_or_default();
        insert_audit(
            tx,
            &AuditRow {
                identity: &actor,
                key,
                ..AuditRow::by(&new.requester, kind, &detail)
            },
            path,
        )?;
    }
    read_request(tx, id, path)?.ok_or(StoreError::Request(RequestError::Unknown(id)))
}

/// Applies `a` inside `tx` if the request's state allows it at `a.actor.at`.
pub(super) fn change_request_in(
    tx: &WriteTx<'_>,
    a: &RequestAction,
    path: &Path,
) -> Result<RequestChanged, StoreError> {
    let err = sqlite_error(path);
    let request = read_request(tx, a.id, path)?.ok_or(RequestError::Unknown(a.id))?;
    let at = a.actor.at as i64;
    let mut revoked = Revoked {
        serials: Vec::new(),
        krl_version: 0,
    };
    let (kind, detail) = match &a.change {
        RequestChange::Approve {
            required,
            comment,
            seen,
            now,
        } => {
            // Only bearers of ID tokens decide requests, and they have keys;
            // an actor without one is refused rather than compared by name.
            let key = a.actor.key.as_ref().ok_or(RequestError::OwnRequest)?;
            request.check_approval(key, &a.actor.identity, a.actor.at)?;
            // Another approval under another reading of the rules came
            // first: this one was checked against a record that is gone.
            if request.approved_under != *seen {
                return Err(RequestError::RulesChanged {
                    id: a.id,
                    why: "what its rules require was recorded again while you approved".into(),
                }
                .into());
            }
            tx.execute(
                "UPDATE access_requests SET approved_under = ?2 WHERE id = ?1",
                params![a.id as i64, requirements_json(now)],
            )
            .map_err(&err)?;
            insert_approval(tx, a.id, &a.actor.identity, Some(key), a.actor.at, comment)
                .map_err(&err)?;
            let approvals = request.approvals.len() + 1;
            if approvals >= (*required).max(1) as usize {
                let (start, end, expires) = request.approved_window(a.actor.at);
                tx.execute(
                    "UPDATE access_requests SET status = 'approved', window_start = ?2, \
                     window_end = ?3, expires_at = ?4 WHERE id = ?1",
                    params![
                        a.id as i64,
                        start.map(|t| t as i64),
                        end.map(|t| t as i64),
                        expires as i64
                    ],
                )
                .map_err(&err)?;
                (
                    "request_approved",
                    format!("request {}: approved{}: {comment}", a.id, under(now)),
                )
            } else {
                (
                    "request_approval",
                    format!(
                        "request {}: approval {approvals} of {required}{}: {comment}",
                        a.id,
                        under(now)
                    ),
                )
            }
        }
        RequestChange::Deny { reason } => {
            request.check_denial(a.actor.at)?;
            tx.execute(
                "UPDATE access_requests SET status = 'denied', closed_by = ?2, \
                 closed_reason = ?3 WHERE id = ?1",
                params![a.id as i64, a.actor.identity, reason],
            )
            .map_err(&err)?;
            (
                "request_denied",
                format!("request {}: denied: {reason}", a.id),
            )
        }
        RequestChange::End { reason } => {
            request.check_end(a.actor.at)?;
            // A window closed early ends now; a withdrawn request never opened.
            tx.execute(
                "UPDATE access_requests SET status = 'ended', closed_by = ?2, closed_reason = ?3, \
                 window_end = CASE WHEN window_end IS NULL THEN NULL ELSE min(window_end, ?4) END \
                 WHERE id = ?1",
                params![a.id as i64, a.actor.identity, reason, at],
            )
            .map_err(&err)?;
            let serials: Vec<String> = {
                let mut statement = tx
                    .prepare("SELECT serial FROM request_certificates WHERE request_id = ?1")
                    .map_err(&err)?;
                let rows = statement
                    .query_map([a.id as i64], |row| row.get(0))
                    .map_err(&err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(&err)?
            };
            for serial in serials {
                let Ok(serial) = serial.parse() else { continue };
                let record = RevocationRecord {
                    target: RevocationTarget::Serial(serial),
                    reason: format!("access request {} ended: {reason}", a.id),
                    actor: a.actor.clone(),
                    spent_token: None,
                };
                let one = revoke_in(tx, &record, path)?;
                revoked.serials.extend(one.serials);
                revoked.krl_version = one.krl_version;
            }
            (
                "request_ended",
                format!(
                    "request {}: ended: {reason} ({} certificate(s) revoked)",
                    a.id,
                    revoked.serials.len()
                ),
            )
        }
        RequestChange::Review { comment } => {
            let key = a.actor.key.as_ref().ok_or(RequestError::OwnReview)?;
            request.check_review(key, &a.actor.identity)?;
            tx.execute(
                "UPDATE access_requests SET reviewed_by = ?2, reviewed_at = ?3, \
                 review_comment = ?4 WHERE id = ?1",
                params![a.id as i64, a.actor.identity, at, comment],
            )
            .map_err(&err)?;
            (
                "request_reviewed",
                format!("request {}: break-glass reviewed: {comment}", a.id),
            )
        }
    };
    // Spent last: a refused change leaves the token unspent only because the
    // whole transaction rolls back anyway.
    spend(tx, a.spent_token, path)?;
    insert_audit(tx, &AuditRow::by(&a.actor, kind, &detail), path)?;
    let request = read_request(tx, a.id, path)?.ok_or(RequestError::Unknown(a.id))?;
    Ok(RequestChanged { request, revoked })
}

/// Requests still pending at `now` (not expired), newest first.
pub(super) fn pending_requests_in(
    conn: &Connection,
    now: UnixTime,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    select_requests(
        conn,
        "status = 'pending' AND expires_at > ?1 ORDER BY id DESC",
        [now as i64],
        path,
    )
}

/// Break-glass requests nobody has reviewed yet, newest first.
pub(super) fn unreviewed_requests_in(
    conn: &Connection,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    select_requests(
        conn,
        "break_glass = 1 AND reviewed_at IS NULL ORDER BY id DESC",
        [],
        path,
    )
}

/// The access request with this id, with its approvals.
pub(super) fn read_request(
    conn: &Connection,
    id: u64,
    path: &Path,
) -> Result<Option<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let Some(mut request) = read_request_row(conn, id).map_err(&err)? else {
        return Ok(None);
    };
    request.approvals = approvals_of(conn, id).map_err(&err)?;
    Ok(Some(request))
}

/// Access requests created at or after `since`, newest first: those of
/// the requester with this key and display name (one recorded before keys
/// by its display name), or everyone's.
pub(super) fn read_requests(
    conn: &Connection,
    requester: Option<&(IdentityKey, String)>,
    since: UnixTime,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    let Some((key, display)) = requester else {
        return select_requests(
            conn,
            "created_at >= ?1 ORDER BY id DESC",
            params![since as i64],
            path,
        );
    };
    select_requests(
        conn,
        "((requester_issuer = ?1 AND requester_subject = ?2) \
          OR (requester_issuer IS NULL AND requester = ?3)) AND created_at >= ?4 ORDER BY id DESC",
        params![key.issuer, key.subject, display, since as i64],
        path,
    )
}

pub(super) const REQUEST_COLUMNS: &str = "id, requester, principals, reason, window_secs, status, \
     created_at, expires_at, window_start, window_end, closed_by, closed_reason, rules, \
     break_glass, reviewed_by, reviewed_at, review_comment, starts_at, from_first_use, \
     requester_issuer, requester_subject, approved_under";

/// An `access_requests` row selected with [`REQUEST_COLUMNS`], without its
/// approvals.
pub(super) fn request_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccessRequest> {
    let principals: String = row.get(2)?;
    let status: String = row.get(5)?;
    let rules: String = row.get(12)?;
    Ok(AccessRequest {
        id: row.get::<_, i64>(0)? as u64,
        requester: row.get(1)?,
        requester_key: key_columns(row.get(19)?, row.get(20)?),
        principals: serde_json::from_str(&principals).unwrap_or_default(),
        reason: row.get(3)?,
        window_secs: row.get::<_, i64>(4)? as u64,
        // The CHECK constraint admits only names `parse` knows.
        status: RequestStatus::parse(&status).unwrap_or(RequestStatus::Ended),
        created_at: row.get::<_, i64>(6)? as u64,
        expires_at: row.get::<_, i64>(7)? as u64,
        window_start: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        window_end: row.get::<_, Option<i64>>(9)?.map(|t| t as u64),
        approvals: Vec::new(),
        closed_by: row.get(10)?,
        closed_reason: row.get(11)?,
        rules: serde_json::from_str(&rules).unwrap_or_default(),
        break_glass: row.get::<_, i64>(13)? != 0,
        review: match (
            row.get::<_, Option<String>>(14)?,
            row.get::<_, Option<i64>>(15)?,
        ) {
            (Some(by), Some(at)) => Some(Review {
                by,
                at: at as u64,
                comment: row.get::<_, Option<String>>(16)?.unwrap_or_default(),
            }),
            _ => None,
        },
        starts_at: row.get::<_, Option<i64>>(17)?.map(|t| t as u64),
        from_first_use: row.get::<_, i64>(18)? != 0,
        // Unreadable counts as absent, which fails closed.
        approved_under: row
            .get::<_, Option<String>>(21)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

/// The rules and requirement digests an audit detail names:
/// ` under sre-root (requirement 3f0c…)`, in the 16 leading hex digits
/// `policy explain` shows too.
fn under(requirements: &[RuleRequirement]) -> String {
    if requirements.is_empty() {
        return String::new();
    }
    let rules: Vec<String> = requirements
        .iter()
        .map(|r| format!("{} (requirement {})", r.rule, &r.digest()[..16]))
        .collect();
    format!(" under {}", rules.join(", "))
}

/// Requirements as stored: their JSON list.
fn requirements_json(requirements: &[RuleRequirement]) -> String {
    serde_json::to_string(requirements).unwrap_or_else(|_| "[]".into())
}

/// The request `id` without its approvals.
pub(super) fn read_request_row(
    conn: &Connection,
    id: u64,
) -> rusqlite::Result<Option<AccessRequest>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = ?1"
    ))?
    .query_row([id as i64], request_row)
    .optional()
}

/// The access requests matching `condition` (an SQL `WHERE` clause, with
/// its `ORDER BY`), each with its approvals.
fn select_requests(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE {condition}"
        ))
        .map_err(&err)?;
    let rows = statement.query_map(params, request_row).map_err(&err)?;
    let mut requests = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
    for request in &mut requests {
        request.approvals = approvals_of(conn, request.id).map_err(&err)?;
    }
    Ok(requests)
}

/// A key from its two nullable columns: `None` for a row written before
/// keys were (or for the policy's approvals).
fn key_columns(issuer: Option<String>, subject: Option<String>) -> Option<IdentityKey> {
    Some(IdentityKey {
        issuer: issuer?,
        subject: subject?,
    })
}

/// Records `approver`'s (with `key`) approval of request `id`.
fn insert_approval(
    tx: &rusqlite::Transaction<'_>,
    id: u64,
    approver: &str,
    key: Option<&IdentityKey>,
    at: UnixTime,
    comment: &str,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO request_approvals \
         (request_id, approver, approver_issuer, approver_subject, at, comment) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id as i64,
            approver,
            key.map(|k| k.issuer.as_str()),
            key.map(|k| k.subject.as_str()),
            at as i64,
            comment
        ],
    )
}

pub(super) fn approvals_of(conn: &Connection, id: u64) -> rusqlite::Result<Vec<Approval>> {
    let mut statement = conn.prepare_cached(
        "SELECT approver, at, comment, approver_issuer, approver_subject FROM request_approvals \
         WHERE request_id = ?1 ORDER BY at, rowid",
    )?;
    let rows = statement.query_map([id as i64], |row| {
        Ok(Approval {
            approver: row.get(0)?,
            approver_key: key_columns(row.get(3)?, row.get(4)?),
            at: row.get::<_, i64>(1)? as u64,
            comment: row.get(2)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{action, approve, key_of, new_request};
    use crate::store::{read_audit, AuditFilter, Store, DATABASE_FILE};

    #[tokio::test]
    async fn access_requests_move_through_approval_and_survive_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let created = store
            .create_request(new_request(100))
            .await
            .expect("created");
        assert_eq!(created.status, RequestStatus::Pending);
        assert_eq!(created.expires_at, 3700);
        // The requester's token is spent with it.
        assert!(matches!(
            store.create_request(new_request(101)).await,
            Err(StoreError::Replayed)
        ));
        let id = created.id;
        assert!(matches!(
            store
                .change_request(action(id, "bob@corp", approve(2), 110))
                .await,
            Err(StoreError::Request(RequestError::OwnRequest))
        ));
        let first = store
            .change_request(action(id, "carol@corp", approve(2), 120))
            .await
            .expect("first approval");
        assert_eq!(first.request.status, RequestStatus::Pending, "1 of 2");
        assert!(matches!(
            store
                .change_request(action(id, "carol@corp", approve(2), 121))
                .await,
            Err(StoreError::Request(RequestError::AlreadyApproved(_)))
        ));
        let second = store
            .change_request(action(id, "dave@corp", approve(2), 130))
            .await
            .expect("second approval");
        let r = &second.request;
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!((r.window_start, r.window_end), (Some(130), Some(1930)));
        assert_eq!(r.approvals.len(), 2);
        assert!(matches!(
            store
                .change_request(action(
                    id,
                    "erin@corp",
                    RequestChange::Deny {
                        reason: "no".into()
                    },
                    140
                ))
                .await,
            Err(StoreError::Request(RequestError::NotPending { .. }))
        ));
        assert_eq!(
            store
                .open_grants(key_of("bob@corp"), 1929)
                .await
                .expect("open")
                .len(),
            1
        );
        assert!(store
            .open_grants(key_of("bob@corp"), 1930)
            .await
            .expect("open")
            .is_empty());
        drop(store);
        // A restarted CA sees the same request, approvals and audit trail.
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        let again = store.request(id).await.expect("read").expect("exists");
        assert_eq!(&again, r);
        let kinds: Vec<String> = read_audit(&path, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(
            kinds,
            ["request_created", "request_approval", "request_approved"]
        );
        assert!(store.request(id + 1).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn expired_and_denied_requests_cannot_be_decided() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.spent_token = None;
        let expiring = store.create_request(new.clone()).await.expect("created");
        assert!(matches!(
            store
                .change_request(action(expiring.id, "carol@corp", approve(1), 3700))
                .await,
            Err(StoreError::Request(RequestError::NotPending {
                status: RequestStatus::Expired,
                ..
            }))
        ));
        let denied = store.create_request(new).await.expect("created");
        let deny = RequestChange::Deny {
            reason: "use the runbook".into(),
        };
        let changed = store
            .change_request(action(denied.id, "carol@corp", deny, 200))
            .await
            .expect("denied");
        assert_eq!(changed.request.status, RequestStatus::Denied);
        assert_eq!(
            changed.request.closed_reason.as_deref(),
            Some("use the runbook")
        );
        assert!(matches!(
            store
                .change_request(action(denied.id, "dave@corp", approve(1), 201))
                .await,
            Err(StoreError::Request(RequestError::NotPending {
                status: RequestStatus::Denied,
                ..
            }))
        ));
        assert!(matches!(
            store
                .change_request(action(99, "dave@corp", approve(1), 201))
                .await,
            Err(StoreError::Request(RequestError::Unknown(99)))
        ));
        let all = store
            .requests(Some((key_of("bob@corp"), "bob@corp".into())), 0)
            .await
            .expect("list");
        assert_eq!(all.len(), 2);
        assert!(store
            .requests(Some((key_of("alice@corp"), "alice@corp".into())), 0)
            .await
            .expect("list")
            .is_empty());
    }

    #[tokio::test]
    async fn break_glass_opens_at_once_and_is_reviewed_once_by_someone_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.approval = Some(InstantApproval::BreakGlass);
        let r = store.create_request(new).await.expect("created");
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!((r.window_start, r.window_end), (Some(100), Some(1900)));
        assert!(r.break_glass && r.needs_review());
        assert_eq!(r.approvals[0].approver, "bob@corp");
        // The open window is seen by issuance at once (grants_until raised).
        assert_eq!(
            store
                .open_grants(key_of("bob@corp"), 150)
                .await
                .expect("open")
                .len(),
            1
        );
        let ordinary = {
            let mut n = new_request(101);
            n.spent_token = None;
            store.create_request(n).await.expect("created")
        };
        let unreviewed = store.unreviewed_requests().await.expect("list");
        assert_eq!(unreviewed.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id]);
        let review = |comment: &str| RequestChange::Review {
            comment: comment.into(),
        };
        assert!(matches!(
            store
                .change_request(action(r.id, "bob@corp", review("mine"), 200))
                .await,
            Err(StoreError::Request(RequestError::OwnReview))
        ));
        assert!(matches!(
            store
                .change_request(action(ordinary.id, "carol@corp", review("x"), 200))
                .await,
            Err(StoreError::Request(RequestError::NotBreakGlass(_)))
        ));
        let reviewed = store
            .change_request(action(r.id, "carol@corp", review("justified"), 300))
            .await
            .expect("reviewed");
        assert_eq!(
            reviewed.request.review,
            Some(Review {
                by: "carol@corp".into(),
                at: 300,
                comment: "justified".into()
            })
        );
        assert!(matches!(
            store
                .change_request(action(r.id, "dave@corp", review("again"), 301))
                .await,
            Err(StoreError::Request(RequestError::AlreadyReviewed { .. }))
        ));
        assert!(store.unreviewed_requests().await.expect("list").is_empty());
        let kinds: Vec<String> = read_audit(&path, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(
            kinds,
            [
                "request_created",
                "request_break_glass",
                "request_created",
                "request_reviewed"
            ]
        );
    }

    #[tokio::test]
    async fn a_policy_approval_is_recorded_as_approved_by_its_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.approval = Some(InstantApproval::Policy(vec![
            "sre-root-with-approval".into()
        ]));
        let r = store.create_request(new).await.expect("created");
        assert_eq!(r.status, RequestStatus::Approved);
        assert!(!r.break_glass && !r.needs_review());
        assert_eq!(r.approvals[0].approver, "policy:sre-root-with-approval");
        let events = read_audit(&path, &AuditFilter::default()).expect("audit");
        assert_eq!(events[1].event, "request_approved");
        assert_eq!(events[1].identity, "policy:sre-root-with-approval");
    }
}
