//! Certificates: the record of each issued certificate and of each refused
//! request, and the lookups revocation needs.
//!
//! An issuance writes the certificate row, its audit event and the ID
//! token's digest together (and, when the token's nonce named the key, the
//! key's binding to the identity), so a token is spent if and only if its
//! certificate is on record. Whatever can refuse it (a revoked identity or
//! key, a replayed token, a token without a nonce for a key not bound, a
//! closed access window, a serial already on record) is checked inside the issuing transaction, before its first
//! write, so that no certificate slips out past a change committed just
//! before and a refusal leaves no rows behind.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::audit::{insert_audit, AuditRow};
use super::grants::check_request_window;
use super::key_bindings::{check_binding, write_binding, NonceBinding};
use super::schema::{cached, json_list, sqlite_error};
use super::spent::{spend_for, Paid, SpentToken, WriteTx};
use super::standing::refuse_revoked;
use super::{Actor, StoreError};
use crate::identity::IdentityKey;
use crate::UnixTime;

/// One issued certificate, as recorded.
#[derive(Debug, Clone)]
pub struct IssuanceRecord {
    /// The identity the certificate was issued to (`username@issuer`), its
    /// address, the deciding rules, and the signing time.
    pub actor: Actor,
    /// Serial, decimal.
    pub serial: String,
    /// Key ID in the certificate.
    pub key_id: String,
    /// Principals in the certificate.
    pub principals: Vec<String>,
    /// Start of validity.
    pub valid_after: UnixTime,
    /// End of validity.
    pub valid_before: UnixTime,
    /// SHA-256 fingerprint of the subject key.
    pub key_fingerprint: String,
    /// The certificate, one OpenSSH line.
    pub certificate: String,
    /// The ID token that was spent.
    pub spent_token: SpentToken,
    /// Approved access requests whose principals the certificate carries.
    pub request_ids: Vec<u64>,
    /// Whether the token bound the key by its nonce, or needs it bound
    /// before (key_bindings.rs).
    pub nonce_binding: NonceBinding,
}

impl IssuanceRecord {
    /// The token's `sub`, as the owner's key names it (an issuance always
    /// has an owner with a key; the empty string never matches one).
    pub fn subject(&self) -> &str {
        self.actor.key.as_ref().map_or("", |k| k.subject.as_str())
    }

    /// The issuer's URL, as the owner's key names it.
    pub fn issuer_url(&self) -> Option<&str> {
        self.actor.key.as_ref().map(|k| k.issuer.as_str())
    }
}

/// A refused request by an authenticated identity.
#[derive(Debug, Clone)]
pub struct DenialRecord {
    /// Who was refused, from where, when, and the policy rules that decided
    /// (empty when no rule applied).
    pub actor: Actor,
    /// Why.
    pub reason: String,
}

/// A recorded certificate, as owner revocation needs it.
#[derive(Debug, Clone)]
pub struct CertificateEntry {
    /// `user@issuer`.
    pub identity: String,
    /// Its identity's key; `None` for a certificate recorded before keys.
    pub key: Option<IdentityKey>,
    /// Issuer short name.
    pub issuer: String,
    /// The certificate, one OpenSSH line.
    pub certificate: String,
    /// End of validity.
    pub valid_before: UnixTime,
}

/// Writes an issuance. Every check that can refuse it runs before its first
/// write, so a refused record leaves no rows behind and needs no savepoint;
/// an error after the first write is SQLite's, and fails the whole batch.
pub(super) fn insert_issuance(
    tx: &WriteTx<'_>,
    r: &IssuanceRecord,
    path: &Path,
) -> Result<(), StoreError> {
    let err = sqlite_error(path);
    // Checked in the issuing transaction, so that no certificate slips out
    // between a revocation's commit and this one.
    refuse_banned(tx, &r.actor, &r.key_fingerprint, path)?;
    if tx.is_spent(&r.spent_token.digest) {
        return Err(StoreError::Replayed);
    }
    check_binding(tx, r, path)?;
    // Checked in the issuing transaction, so that no certificate is issued
    // under a request that `done` ended after the policy looked.
    let mut first_uses = Vec::new();
    for &request_id in &r.request_ids {
        if let Some(window) =
            check_request_window(tx, request_id, r.actor.key.as_ref(), r.actor.at, path)?
        {
            first_uses.push((request_id, window));
        }
    }
    let inserted = cached(
        tx,
        "INSERT INTO certificates (serial, key_id, issuer, subject, identity, principals, \
             valid_after, valid_before, key_fingerprint, client_addr, rule, issued_at, certificate, \
             issuer_url) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT DO NOTHING",
        params![
            r.serial,
            r.key_id,
            r.actor.issuer,
            r.subject(),
            r.actor.identity,
            json_list(&r.principals),
            r.valid_after as i64,
            r.valid_before as i64,
            r.key_fingerprint,
            r.actor.client_addr,
            r.actor.rules.join(","),
            r.actor.at as i64,
            r.certificate,
            r.issuer_url()
        ],
    )
    .map_err(&err)?;
    if inserted == 0 {
        return Err(StoreError::DuplicateSerial);
    }
    for (request_id, (start, end)) in first_uses {
        tx.execute(
            "UPDATE access_requests SET window_start = ?2, window_end = ?3 \
             WHERE id = ?1 AND window_start IS NULL",
            params![request_id as i64, start as i64, end as i64],
        )
        .map_err(&err)?;
    }
    for request_id in &r.request_ids {
        cached(
            tx,
            "INSERT INTO request_certificates (request_id, serial) VALUES (?1, ?2)",
            params![*request_id as i64, r.serial],
        )
        .map_err(&err)?;
    }
    write_binding(tx, r, path)?;
    let serial = r.serial.parse().map_or(Paid::Other, Paid::Certificate);
    spend_for(tx, Some(r.spent_token), serial, path)?;
    insert_audit(
        tx,
        &AuditRow {
            serial: Some(&r.serial),
            ..AuditRow::by(&r.actor, "issued", &r.key_id)
        },
        path,
    )
}

/// Refuses an issuance to `actor` (their key or display name banned, as
/// `standing` decides) or for the key `key_fingerprint` while an unlifted
/// revocation bans it.
pub(super) fn refuse_banned(
    tx: &WriteTx<'_>,
    actor: &Actor,
    key_fingerprint: &str,
    path: &Path,
) -> Result<(), StoreError> {
    refuse_revoked(tx, &actor.identity, actor.key.as_ref(), path)?;
    let banned_key: Option<i64> = tx
        .prepare_cached(
            "SELECT 1 FROM revocations WHERE lifted_at IS NULL AND kind = 'key' AND value = ?1",
        )
        .and_then(|mut s| s.query_row([key_fingerprint], |row| row.get(0)).optional())
        .map_err(sqlite_error(path))?;
    match banned_key {
        Some(_) => Err(StoreError::RevokedKey(key_fingerprint.to_string())),
        None => Ok(()),
    }
}

/// Writes a denial: its audit event.
pub(super) fn insert_denial(
    tx: &WriteTx<'_>,
    r: &DenialRecord,
    path: &Path,
) -> Result<(), StoreError> {
    insert_audit(tx, &AuditRow::by(&r.actor, "denied", &r.reason), path)
}

/// The recorded certificate with this serial.
pub(super) fn read_certificate(
    conn: &Connection,
    serial: &str,
    path: &Path,
) -> Result<Option<CertificateEntry>, StoreError> {
    conn.query_row(
        "SELECT identity, issuer, certificate, valid_before, issuer_url, subject \
         FROM certificates WHERE serial = ?1",
        [serial],
        |row| {
            Ok(CertificateEntry {
                identity: row.get(0)?,
                key: row
                    .get::<_, Option<String>>(4)?
                    .map(|issuer| -> rusqlite::Result<IdentityKey> {
                        Ok(IdentityKey {
                            issuer,
                            subject: row.get(5)?,
                        })
                    })
                    .transpose()?,
                issuer: row.get(1)?,
                certificate: row.get(2)?,
                valid_before: row.get::<_, i64>(3)? as UnixTime,
            })
        },
    )
    .optional()
    .map_err(sqlite_error(path))
}

/// The serial of the last certificate on record (0 for none).
pub(super) fn last_serial(conn: &Connection, path: &Path) -> Result<u64, StoreError> {
    let last_serial: Option<String> = conn
        .query_row(
            "SELECT serial FROM certificates ORDER BY rowid DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite_error(path))?;
    Ok(last_serial.and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// The serials and ends of validity of the certificates not yet expired at
/// `now` whose `column` (`identity` or `key_fingerprint`) is `value`.
pub(super) fn unexpired(
    tx: &rusqlite::Transaction<'_>,
    column: &str,
    value: &str,
    now: i64,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut statement = tx.prepare(&format!(
        "SELECT serial, valid_before FROM certificates WHERE {column} = ?1 AND valid_before > ?2"
    ))?;
    let rows = statement.query_map(params![value, now], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::record;
    use crate::store::schema::open_connection;
    use crate::store::{read_audit, AuditFilter, Store, DATABASE_FILE};

    #[test]
    fn unexpired_certificates_are_found_through_the_validity_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_connection(&dir.path().join("ca.db"), false).expect("open");
        for column in ["identity", "key_fingerprint"] {
            let plan: String = conn
                .query_row(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT serial, valid_before FROM certificates \
                         WHERE {column} = ?1 AND valid_before > ?2"
                    ),
                    params!["x", 0],
                    |row| row.get(3),
                )
                .expect("plan");
            assert!(
                plan.contains("certificates_valid_before"),
                "{column}: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn replayed_token_and_duplicate_serial_leave_no_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("first");
        assert!(matches!(
            store.record_issuance(record("2", 1)).await,
            Err(StoreError::Replayed)
        ));
        assert!(matches!(
            store.record_issuance(record("1", 2)).await,
            Err(StoreError::DuplicateSerial)
        ));
        // The failed duplicate-serial job must not have spent token 2.
        store
            .record_issuance(record("3", 2))
            .await
            .expect("token 2 unspent");
        let serials: Vec<_> = read_audit(&path, &AuditFilter::default())
            .expect("read")
            .into_iter()
            .filter_map(|e| e.serial)
            .collect();
        assert_eq!(serials, ["1", "3"]);
    }
}
