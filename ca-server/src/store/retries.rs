//! Retries: a client whose answer was lost after the act was committed (a
//! timeout that fired while the writer committed, a dropped connection)
//! sends the same request again with the same ID token. For the two acts a
//! client makes on its own, a certificate and a new access request, the
//! retry is answered with what was recorded rather than refused as a
//! replay, so nobody is left without their certificate and without a way to
//! get it short of signing in again.
//!
//! A retry is told from a replay by the spent token itself: the serving
//! writer remembers what each token paid for (spent.rs). A certificate is
//! returned only for the same subject key (a token is not a licence to
//! fetch someone's certificate with another key), and neither while a
//! revocation bans the identity (or the key, or the certificate itself).
//! Each retry answered writes a `retried` audit event, naming the
//! certificate it returned; it issues and spends nothing.

use std::path::Path;

use rusqlite::OptionalExtension as _;

use super::access_requests::read_request;
use super::audit::{insert_audit, AuditRow};
use super::certificates::refuse_banned;
use super::schema::sqlite_error;
use super::spent::{Paid, SpentToken, WriteTx};
use super::standing::{refuse_revoked_bearer, PaidAct};
use super::{Actor, StoreError};
use crate::access::AccessRequest;

/// A request sent again with an ID token that was spent already.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Who retries, from where, when (the token's identity).
    pub actor: Actor,
    /// The token, which was spent already.
    pub spent_token: SpentToken,
}

/// A certificate on record, as a retry of its issuance is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCertificate {
    /// Serial, decimal.
    pub serial: String,
    /// The certificate, one OpenSSH line, as it was issued.
    pub certificate: String,
}

impl PaidAct for Retry {
    fn actor(&self) -> &Actor {
        &self.actor
    }
    fn spent_token(&self) -> Option<&SpentToken> {
        Some(&self.spent_token)
    }
}

/// The certificate `retry.spent_token` paid for, when it certified the key
/// `key_fingerprint`; [`StoreError::Replayed`] when the token paid for
/// something else, or for another key, or the certificate is revoked.
pub(super) fn retry_issuance_in(
    tx: &WriteTx<'_>,
    retry: &Retry,
    key_fingerprint: &str,
    path: &Path,
) -> Result<RecordedCertificate, StoreError> {
    let Some(Paid::Certificate(serial)) = tx.paid_for(&retry.spent_token.digest) else {
        return Err(StoreError::Replayed);
    };
    let serial = serial.to_string();
    let recorded: Option<(String, String, String)> = tx
        .query_row(
            "SELECT key_fingerprint, certificate, key_id FROM certificates WHERE serial = ?1",
            [&serial],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(sqlite_error(path))?;
    let Some((_, certificate, key_id)) = recorded.filter(|(key, _, _)| key == key_fingerprint)
    else {
        return Err(StoreError::Replayed);
    };
    refuse_banned(tx, &retry.actor, key_fingerprint, path)?;
    let revoked: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM revocations WHERE kind = 'serial' AND value = ?1 \
             AND lifted_at IS NULL",
            [&serial],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite_error(path))?;
    if revoked.is_some() {
        return Err(StoreError::Replayed);
    }
    insert_audit(
        tx,
        &AuditRow {
            serial: Some(&serial),
            ..AuditRow::by(&retry.actor, "retried", &key_id)
        },
        path,
    )?;
    Ok(RecordedCertificate {
        serial,
        certificate,
    })
}

/// The access request `retry.spent_token` paid for, if it paid for one
/// (`None` otherwise: the caller is then refused as the token's standing
/// says); refused while the identity is revoked.
pub(super) fn retry_request_in(
    tx: &WriteTx<'_>,
    retry: &Retry,
    path: &Path,
) -> Result<Option<AccessRequest>, StoreError> {
    let Some(Paid::Request(id)) = tx.paid_for(&retry.spent_token.digest) else {
        return Ok(None);
    };
    refuse_revoked_bearer(tx, retry, path)?;
    let Some(request) = read_request(tx, id, path)? else {
        return Ok(None);
    };
    insert_audit(
        tx,
        &AuditRow::by(
            &retry.actor,
            "retried",
            &format!("request {id}: its creation retried with the same ID token"),
        ),
        path,
    )?;
    Ok(Some(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{actor, new_request, record, token};
    use crate::store::{read_audit, AuditFilter, Store, DATABASE_FILE};

    fn retry(byte: u8) -> Retry {
        Retry {
            actor: actor("alice@corp", "builtin-username", 170),
            spent_token: token(byte, u64::MAX / 4),
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_recorded_certificate_for_the_same_key_only_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let first = record("7", 1);
        {
            let store = Store::open(&path, &Metrics::new()).expect("open");
            store.record_issuance(first.clone()).await.expect("issued");
        }
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        let again = store
            .retried_issuance(retry(1), first.key_fingerprint.clone())
            .await
            .expect("retry");
        assert_eq!(again.serial, "7");
        assert_eq!(again.certificate, first.certificate);
        for (byte, key) in [(1, "SHA256:other"), (2, first.key_fingerprint.as_str())] {
            assert!(matches!(
                store.retried_issuance(retry(byte), key.into()).await,
                Err(StoreError::Replayed)
            ));
        }
        let events: Vec<_> = read_audit(&path, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| (e.event, e.serial))
            .collect();
        assert_eq!(
            events,
            [
                ("issued".to_string(), Some("7".to_string())),
                ("retried".to_string(), Some("7".to_string()))
            ]
        );
    }

    #[tokio::test]
    async fn a_retry_gets_the_request_its_token_created_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut new = new_request(200);
        new.spent_token = Some(token(3, u64::MAX / 4));
        {
            let store = Store::open(&path, &Metrics::new()).expect("open");
            let created = store.create_request(new).await.expect("created");
            store.record_issuance(record("8", 4)).await.expect("issued");
            assert_eq!(created.id, 1);
        }
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        let again = store.retried_request(retry(3)).await.expect("retry");
        assert_eq!(again.map(|r| r.id), Some(1));
        // A token that paid for a certificate, and one never spent.
        for byte in [4, 5] {
            assert!(store
                .retried_request(retry(byte))
                .await
                .expect("lookup")
                .is_none());
        }
    }
}
