//! Grants: approved access requests whose window is open, as issuance sees
//! them.
//!
//! The policy asks for the open grants of every identity it decides for;
//! the issuing transaction checks again that each grant a certificate uses
//! is still open (and opens a window from first use), so a request ended
//! while the policy looked grants nothing. [`GrantHorizon`] spares the
//! database writer that question while no grant can be open, the usual case.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection};

use super::access_requests::{approvals_of, read_request_row, request_row, REQUEST_COLUMNS};
use super::schema::{open_current_read_only, sqlite_error};
use super::StoreError;
use crate::access::{AccessRequest, RequestError, RequestStatus};
use crate::identity::IdentityKey;
use crate::UnixTime;

/// Approved access requests of the requester with key `requester` whose
/// window is open at `now`, read directly from the database file
/// (`jit-ssh-ca policy explain`), so that an explanation counts the
/// approvals the server would.
pub fn open_grants_offline(
    path: &Path,
    requester: &IdentityKey,
    now: UnixTime,
) -> Result<Vec<AccessRequest>, StoreError> {
    let conn = open_current_read_only(path)?;
    open_grants_in(&conn, requester, now, path)
}

/// No approved access request has a window open at or after this time.
/// Every issuance asks for open grants; while none can exist (the usual
/// case) the answer needs no trip to the database writer. Only ever raised,
/// by approvals this process commits, so it can be stale only upwards (a
/// needless read), never downwards.
#[derive(Debug, Clone)]
pub(super) struct GrantHorizon(Arc<AtomicU64>);

impl GrantHorizon {
    /// The horizon of the grants on record.
    pub(super) fn load(conn: &Connection, path: &Path) -> Result<GrantHorizon, StoreError> {
        let grants_until: i64 = conn
            .query_row(
                "SELECT coalesce(max(coalesce(window_end, expires_at + window_secs)), 0) \
                 FROM access_requests WHERE status = 'approved'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite_error(path))?;
        Ok(GrantHorizon(Arc::new(AtomicU64::new(
            grants_until.max(0) as u64
        ))))
    }

    /// Whether no grant can be open at `now`.
    pub(super) fn passed(&self, now: UnixTime) -> bool {
        now >= self.0.load(Ordering::SeqCst)
    }

    /// Raises the horizon to the end of `request`'s window, if it has one.
    pub(super) fn include(&self, request: &AccessRequest) {
        if let Some(end) = request.latest_end() {
            self.0.fetch_max(end, Ordering::SeqCst);
        }
    }
}

/// Approved access requests of the requester with key `requester` whose
/// window is open at `now` (or would open with a certificate issued now,
/// from first use), with their approvals. Compared by key: another person
/// who shows the same display name holds none of them, and a request
/// recorded before keys grants nobody.
pub(super) fn open_grants_in(
    conn: &Connection,
    requester: &IdentityKey,
    now: UnixTime,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests \
             WHERE requester_issuer = ?1 AND requester_subject = ?2 AND status = 'approved' \
             AND (window_end > ?3 OR (window_end IS NULL AND from_first_use = 1 AND expires_at > ?3))"
        ))
        .map_err(&err)?;
    let rows = statement
        .query_map(
            params![requester.issuer, requester.subject, now as i64],
            request_row,
        )
        .map_err(&err)?;
    let open = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
    let mut open: Vec<AccessRequest> = open
        .into_iter()
        .filter(|r| r.open_window(now).is_some())
        .collect();
    // Who approved decides what of its rules must still hold (an approval
    // by the policy needs `[rule.approval.auto]` unchanged).
    for request in &mut open {
        request.approvals = approvals_of(conn, request.id).map_err(&err)?;
    }
    Ok(open)
}

/// Checks, in an issuing transaction, that request `id` is the request of
/// `requester` (the certificate's key) and its window is open for a
/// certificate issued at `at`; returns the window to record when this
/// certificate is its first use.
pub(super) fn check_request_window(
    tx: &rusqlite::Transaction<'_>,
    id: u64,
    requester: Option<&IdentityKey>,
    at: UnixTime,
    path: &Path,
) -> Result<Option<(UnixTime, UnixTime)>, StoreError> {
    let closed = || {
        StoreError::Request(RequestError::Closed {
            id,
            status: RequestStatus::Ended,
        })
    };
    // The window needs no approvals: the row alone, on every issuance that
    // uses a grant.
    let request = read_request_row(tx, id)
        .map_err(sqlite_error(path))?
        .ok_or_else(closed)?;
    if requester.is_none() || request.requester_key.as_ref() != requester {
        return Err(closed());
    }
    let window = request.open_window(at).ok_or_else(closed)?;
    Ok(request.window_start.is_none().then_some(window))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::identity::IdentityKey;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{action, approve, key_of, new_request, record, record_as};
    use crate::store::schema::MIGRATIONS;
    use crate::store::{RequestChange, Store, StoreError, DATABASE_FILE};

    /// bob's request for root, approved by carol at 150 (window 150 to 1950).
    async fn approved_request(store: &Store) -> u64 {
        let mut new = new_request(100);
        new.spent_token = None;
        let id = store.create_request(new).await.expect("created").id;
        store
            .change_request(action(id, "carol@corp", approve(1), 150))
            .await
            .expect("approved");
        id
    }

    #[tokio::test]
    async fn ending_a_grant_revokes_the_certificates_issued_under_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let id = approved_request(&store).await;
        let mut under = record_as("1", 1, "bob@corp");
        under.request_ids = vec![id];
        store.record_issuance(under).await.expect("issued");
        let plain = record_as("2", 2, "bob@corp");
        store.record_issuance(plain).await.expect("issued");
        let end = RequestChange::End {
            reason: "fixed".into(),
        };
        let changed = store
            .change_request(action(id, "bob@corp", end.clone(), 200))
            .await
            .expect("ended");
        assert_eq!(changed.request.status, RequestStatus::Ended);
        assert_eq!(changed.request.window_end, Some(200));
        assert_eq!(
            changed.revoked.serials,
            ["1"],
            "only the one issued under it"
        );
        assert_eq!(
            store.revoked_set(200).await.expect("set").serials,
            [1],
            "listed in the KRL"
        );
        assert!(store
            .open_grants(key_of("bob@corp"), 201)
            .await
            .expect("open")
            .is_empty());
        assert!(matches!(
            store.change_request(action(id, "bob@corp", end, 201)).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
        // An issuance the policy approved just before the end is refused in
        // its own transaction, leaving no row and its token unspent.
        let mut late = record_as("3", 3, "bob@corp");
        late.request_ids = vec![id];
        assert!(matches!(
            store.record_issuance(late).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
        store
            .record_issuance(record("4", 3))
            .await
            .expect("token 3 unspent");
        assert!(store.certificate("3").await.expect("read").is_none());
    }

    #[tokio::test]
    async fn a_window_from_first_use_opens_with_the_first_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.spent_token = None;
        new.from_first_use = true;
        let id = store.create_request(new.clone()).await.expect("created").id;
        let approved = store
            .change_request(action(id, "carol@corp", approve(1), 150))
            .await
            .expect("approved")
            .request;
        assert_eq!(approved.status, RequestStatus::Approved);
        assert_eq!((approved.window_start, approved.window_end), (None, None));
        assert_eq!(approved.expires_at, 150 + 3600, "usable for an hour");
        let open = store
            .open_grants(key_of("bob@corp"), 160)
            .await
            .expect("open");
        assert_eq!(open.len(), 1, "a grant nobody used yet is open");
        let mut first = record_as("1", 1, "bob@corp");
        first.request_ids = vec![id];
        store.record_issuance(first).await.expect("issued");
        let used = store.request(id).await.expect("read").expect("exists");
        assert_eq!(
            (used.window_start, used.window_end),
            (Some(160), Some(160 + 1800)),
            "the first certificate opens the window"
        );
        // After the window, nothing; a later certificate under it is refused.
        assert!(store
            .open_grants(key_of("bob@corp"), 1960)
            .await
            .expect("open")
            .is_empty());
        let mut late = record_as("2", 2, "bob@corp");
        late.request_ids = vec![id];
        late.actor.at = 1960;
        assert!(matches!(
            store.record_issuance(late).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));

        // Approved and never used: it lapses after the pending time.
        let unused = store.create_request(new).await.expect("created").id;
        let r = store
            .change_request(action(unused, "carol@corp", approve(1), 200))
            .await
            .expect("approved")
            .request;
        assert_eq!(r.status_at(200 + 3599), RequestStatus::Approved);
        assert_eq!(r.status_at(200 + 3600), RequestStatus::Expired);
        assert!(store
            .open_grants(key_of("bob@corp"), 200 + 3600)
            .await
            .expect("open")
            .is_empty());
    }

    #[tokio::test]
    async fn a_scheduled_window_grants_nothing_before_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.spent_token = None;
        new.starts_at = Some(1000);
        new.expires_at = 1000 + 3600;
        let id = store.create_request(new).await.expect("created").id;
        // Approvers find it by its expiry, however long ago it was made.
        let pending: Vec<u64> = store
            .pending_requests(4000)
            .await
            .expect("pending")
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(pending, [id]);
        assert!(store
            .pending_requests(4600)
            .await
            .expect("pending")
            .is_empty());
        let r = store
            .change_request(action(id, "carol@corp", approve(1), 150))
            .await
            .expect("approved")
            .request;
        assert_eq!((r.window_start, r.window_end), (Some(1000), Some(2800)));
        assert!(store
            .open_grants(key_of("bob@corp"), 999)
            .await
            .expect("open")
            .is_empty());
        assert_eq!(
            store
                .open_grants(key_of("bob@corp"), 1000)
                .await
                .expect("open")
                .len(),
            1
        );
        // Issued under it before the start (a policy that looked too early):
        // refused in the issuing transaction.
        let mut early = record_as("1", 1, "bob@corp");
        early.request_ids = vec![id];
        early.actor.at = 999;
        assert!(matches!(
            store.record_issuance(early).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
    }

    #[tokio::test]
    async fn held_approvals_are_read_offline_like_the_server_reads_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        approved_request(&store).await;
        let online = store
            .open_grants(key_of("bob@corp"), 200)
            .await
            .expect("open");
        let offline = open_grants_offline(&path, &key_of("bob@corp"), 200).expect("offline");
        assert_eq!(offline, online);
        assert!(open_grants_offline(&path, &key_of("bob@corp"), 1950)
            .expect("offline")
            .is_empty());
        assert!(open_grants_offline(&path, &key_of("alice@corp"), 200)
            .expect("offline")
            .is_empty());

        let old = dir.path().join("old.db");
        {
            let conn = Connection::open(&old).expect("open");
            for migration in &MIGRATIONS[..4] {
                conn.execute_batch(migration).expect("migrate");
            }
            conn.pragma_update(None, "user_version", 4)
                .expect("version");
        }
        assert!(matches!(
            open_grants_offline(&old, &key_of("bob@corp"), 200),
            Err(StoreError::OlderSchema(_))
        ));
    }

    #[tokio::test]
    async fn a_grant_is_its_requesters_by_key_and_one_recorded_before_keys_grants_nobody() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let id = approved_request(&store).await;
        // Another person who also shows bob@corp holds none of it...
        let other_bob = IdentityKey {
            subject: "user-bob-2".into(),
            ..key_of("bob@corp")
        };
        assert!(store
            .open_grants(other_bob.clone(), 200)
            .await
            .expect("open")
            .is_empty());
        // ...and cannot certify under it, even naming it.
        let mut under = record("1", 1);
        under.actor.identity = "bob@corp".into();
        under.actor.key = Some(other_bob);
        under.request_ids = vec![id];
        assert!(matches!(
            store.record_issuance(under).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
        // A request recorded before keys (its key columns empty) grants
        // nobody, its display name's owner included.
        drop(store);
        Connection::open(&path)
            .expect("open")
            .execute(
                "UPDATE access_requests SET requester_issuer = NULL, requester_subject = NULL",
                [],
            )
            .expect("forget the key");
        let store = Store::open(&path, &Metrics::new()).expect("open");
        assert!(store
            .open_grants(key_of("bob@corp"), 200)
            .await
            .expect("open")
            .is_empty());
        let mut legacy = record_as("2", 2, "bob@corp");
        legacy.request_ids = vec![id];
        assert!(matches!(
            store.record_issuance(legacy).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
    }
}

#[cfg(test)]
mod binding_tests {
    use crate::access::{RequestError, RequestStatus};
    use crate::metrics::Metrics;
    use crate::policy::RuleRequirement;
    use crate::store::fixtures::{action, database_at_version, new_request};
    use crate::store::{RequestChange, Store, StoreError, DATABASE_FILE};

    fn requirement(min_approvals: u32) -> RuleRequirement {
        RuleRequirement {
            rule: "sre-root-with-approval".into(),
            min_approvals,
            approver_groups: vec!["sre-leads".into()],
            approver_issuers: vec!["corp".into()],
            approver_users: Vec::new(),
            max_window_secs: 3600,
            break_glass: false,
            auto: None,
            requester: "{}".into(),
        }
    }

    fn approve_seen(seen: Option<Vec<RuleRequirement>>, now: RuleRequirement) -> RequestChange {
        RequestChange::Approve {
            required: now.min_approvals,
            comment: "ok".into(),
            seen,
            now: vec![now],
        }
    }

    #[tokio::test]
    async fn an_approval_records_the_requirement_it_was_counted_under_unless_the_record_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.approved_under = vec![requirement(2)];
        let id = store.create_request(new).await.expect("created").id;
        let read = store.request(id).await.expect("read").expect("there");
        assert_eq!(read.approved_under, Some(vec![requirement(2)]));
        // Checked against a record that is not the one on file: refused,
        // nothing recorded.
        let stale = approve_seen(Some(vec![requirement(3)]), requirement(2));
        assert!(matches!(
            store
                .change_request(action(id, "carol@corp", stale, 110))
                .await,
            Err(StoreError::Request(RequestError::RulesChanged { .. }))
        ));
        let read = store.request(id).await.expect("read").expect("there");
        assert!(read.approvals.is_empty());
        // Checked against the record on file: counted, and the rule as it
        // read then (loosened to one approval) is what it is now bound to.
        let fresh = approve_seen(Some(vec![requirement(2)]), requirement(1));
        let changed = store
            .change_request(action(id, "carol@corp", fresh, 120))
            .await
            .expect("approved");
        assert_eq!(changed.request.status, RequestStatus::Approved);
        assert_eq!(changed.request.approved_under, Some(vec![requirement(1)]));
        // The audit names the rule and the digest of what it required.
        let details: Vec<String> = crate::store::read_audit(&path, &Default::default())
            .expect("audit")
            .into_iter()
            .map(|e| e.detail)
            .collect();
        let digest = |r: RuleRequirement| r.digest()[..16].to_string();
        assert!(
            details[0].contains(&format!(
                "under sre-root-with-approval (requirement {})",
                digest(requirement(2))
            )),
            "{details:?}"
        );
        assert!(
            details.last().expect("an event").contains(&format!(
                "approved under sre-root-with-approval (requirement {})",
                digest(requirement(1))
            )),
            "{details:?}"
        );
    }

    #[tokio::test]
    async fn requests_from_before_migration_14_record_no_requirement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = database_at_version(&path, 13);
            conn.execute_batch(
                "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
                 rules, status, created_at, expires_at, window_start, window_end, \
                 requester_issuer, requester_subject) \
                 VALUES ('bob@corp', 'corp', '[\"root\"]', 'old', 3600, \
                 '[\"sre-root-with-approval\"]', 'approved', 1, 99999, 2, 99999, \
                 'https://corp.example', 'sub-bob');",
            )
            .expect("a row of version 13");
        }
        let store = Store::open(&path, &Metrics::new()).expect("migrated");
        let request = store.request(1).await.expect("read").expect("kept");
        assert_eq!(request.approved_under, None);
        let access = request.as_approved(100).expect("its window is open");
        assert_eq!(access.approved_under, None, "which grants nothing");
        assert!(matches!(
            request.rules_now(vec![Some(requirement(1))]),
            Err(RequestError::RulesChanged { .. })
        ));
    }
}
