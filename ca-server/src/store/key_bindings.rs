//! Keys bound by a nonce: which keys an identity certified with an ID token
//! whose nonce named the key, and until when a token without a nonce may
//! certify them again (docs/security.md, *Key binding*).
//!
//! Identity providers leave the nonce out of some ID tokens they issue on a
//! refresh grant, so a silent renewal may carry a token that names no key.
//! Where the issuer requires nonces, such a token certifies only a key that
//! the same `(issuer, sub)` bound with a nonce during the same sign-in
//! session, which this table remembers: one row per bound key, written in
//! the transaction of the nonce-bound issuance, with the end of the session.
//! The check runs in the issuing transaction too, before its first write, so
//! a refusal leaves no rows and its token unspent. Rows past their end are
//! deleted by the writer's upkeep; they would refuse nothing anyway.
//!
//! Every nonce-bound issuance writes a row, so the table is shaped for the
//! write: rows are appended in the order they are bound, with an index on
//! their end alone, and no index keyed by identity or key, whose random
//! order would dirty a page of its own in every certificate's commit. The
//! look-up, which only a token without a nonce needs, reads the bindings
//! whose session is still open and picks the one for its key. A key bound
//! again gets a second row with the later end.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::certificates::IssuanceRecord;
use super::schema::{cached, sqlite_error};
use super::spent::WriteTx;
use super::StoreError;
use crate::UnixTime;

/// What an issuance does with the bond between its identity and its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceBinding {
    /// The token's nonce named the key: bind it to the identity until
    /// `until` (a new nonce-bound issuance of the key starts its session
    /// again).
    Bind {
        /// The end of the sign-in session.
        until: UnixTime,
    },
    /// The token has no nonce and its issuer requires one: the key must be
    /// bound to the identity, with a session not yet over, or the issuance
    /// is refused ([`StoreError::UnboundKey`]).
    Required,
    /// No nonce is asked for (the issuer has `require_nonce = false`).
    NotRequired,
}

/// Refuses `r` when its token has no nonce and its key is not bound to its
/// identity at `r.actor.at`. Runs before the issuance's first write.
pub(super) fn check_binding(
    tx: &WriteTx<'_>,
    r: &IssuanceRecord,
    path: &Path,
) -> Result<(), StoreError> {
    if r.nonce_binding != NonceBinding::Required {
        return Ok(());
    }
    let bound: Option<i64> = tx
        .prepare_cached(
            "SELECT 1 FROM nonce_bound_keys WHERE issuer = ?1 AND subject = ?2 \
             AND key_fingerprint = ?3 AND expires_at > ?4",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    r.issuer_url(),
                    r.subject(),
                    r.key_fingerprint,
                    r.actor.at as i64
                ],
                |row| row.get(0),
            )
            .optional()
        })
        .map_err(sqlite_error(path))?;
    match bound {
        Some(_) => Ok(()),
        None => Err(StoreError::UnboundKey {
            identity: r.actor.identity.clone(),
            issuer: r.actor.issuer.clone(),
        }),
    }
}

/// Binds `r`'s key to its identity when its token's nonce named the key.
/// Runs in the issuance's transaction, after its checks.
pub(super) fn write_binding(
    tx: &WriteTx<'_>,
    r: &IssuanceRecord,
    path: &Path,
) -> Result<(), StoreError> {
    let NonceBinding::Bind { until } = r.nonce_binding else {
        return Ok(());
    };
    cached(
        tx,
        "INSERT INTO nonce_bound_keys (issuer, subject, key_fingerprint, bound_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            r.issuer_url(),
            r.subject(),
            r.key_fingerprint,
            r.actor.at as i64,
            until as i64
        ],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// The issuer of `r`'s identity by its URL, the issuer half of its key
/// (identity.rs); `None`, which binds and matches nothing, for an actor
/// without a key.
/// Deletes the bindings whose session ended before `now`.
pub(super) fn purge_ended(conn: &Connection, now: UnixTime) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM nonce_bound_keys WHERE expires_at <= ?1",
        [now as i64],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::record;
    use crate::store::{Store, DATABASE_FILE};

    fn issued(serial: &str, digest: u8, at: UnixTime, binding: NonceBinding) -> IssuanceRecord {
        let mut r = record(serial, digest);
        r.actor.at = at;
        r.nonce_binding = binding;
        r
    }

    #[tokio::test]
    async fn a_token_without_a_nonce_certifies_only_a_key_bound_within_its_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let unbound = |r: Result<(), StoreError>| matches!(r, Err(StoreError::UnboundKey { .. }));

        // Nothing bound yet: refused, and the refusal spent nothing.
        let first = issued("1", 1, 100, NonceBinding::Required);
        assert!(unbound(store.record_issuance(first.clone()).await));
        store
            .record_issuance(issued("2", 2, 100, NonceBinding::Bind { until: 200 }))
            .await
            .expect("bound by a nonce");
        store.record_issuance(first).await.expect("now bound");
        // Another key, another subject or another issuer: not bound.
        let mut other_key = issued("3", 3, 150, NonceBinding::Required);
        other_key.key_fingerprint = "SHA256:other".into();
        assert!(unbound(store.record_issuance(other_key).await));
        let mut other_subject = issued("4", 4, 150, NonceBinding::Required);
        other_subject.actor.key.as_mut().expect("a key").subject = "user-mallory".into();
        assert!(unbound(store.record_issuance(other_subject).await));
        let mut other_issuer = issued("5", 5, 150, NonceBinding::Required);
        other_issuer.actor.key = Some(crate::identity::IdentityKey {
            issuer: "https://ci.example".into(),
            subject: other_issuer.subject().to_string(),
        });
        assert!(unbound(store.record_issuance(other_issuer).await));
        // The session ends at its bound; renewals do not stretch it.
        assert!(unbound(
            store
                .record_issuance(issued("6", 6, 200, NonceBinding::Required))
                .await
        ));
        // Issuers that do not require nonces never look.
        store
            .record_issuance(issued("7", 7, 300, NonceBinding::NotRequired))
            .await
            .expect("not required");
        drop(store);

        let conn = Connection::open(&path).expect("open");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM nonce_bound_keys", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
        assert_eq!(purge_ended(&conn, 199).expect("purge"), 0);
        assert_eq!(purge_ended(&conn, 200).expect("purge"), 1);
    }

    #[tokio::test]
    async fn a_key_bound_again_gets_a_new_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let unbound = |r: Result<(), StoreError>| matches!(r, Err(StoreError::UnboundKey { .. }));

        store
            .record_issuance(issued("1", 1, 100, NonceBinding::Bind { until: 200 }))
            .await
            .expect("bound");
        store
            .record_issuance(issued("2", 2, 150, NonceBinding::Bind { until: 400 }))
            .await
            .expect("bound again");
        // The first session is over at 200; the second holds until 400.
        store
            .record_issuance(issued("3", 3, 300, NonceBinding::Required))
            .await
            .expect("within the second session");
        assert!(unbound(
            store
                .record_issuance(issued("4", 4, 400, NonceBinding::Required))
                .await
        ));
    }
}
