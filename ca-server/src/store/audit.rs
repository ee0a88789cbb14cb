//! The audit trail: one `audit_events` row per act (issued, denied,
//! revoked, an access request's every step), written in the same transaction
//! as the act itself, and read back by `jit-ssh-ca audit` straight from the
//! database file. Each row names its actor twice: by display name, for
//! people, and by key (issuer URL and `sub`), which tells apart two people
//! who show one display name. Writing a row also remembers that the key was
//! seen with that display name (`identity_subjects`), which a ban by display
//! name resolves to keys (revocations.rs).

use std::path::Path;

use rusqlite::{params, OptionalExtension as _};
use serde::Serialize;

use super::schema::{cached, invalid_path, json_list, open_connection, sqlite_error};
use super::{Actor, StoreError};
use crate::identity::IdentityKey;
use crate::UnixTime;

/// One line of `jit-ssh-ca audit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: UnixTime,
    /// `issued`, `denied`, `revoked` or `unrevoked`.
    pub event: String,
    /// `username@issuer`.
    pub identity: String,
    /// Issuer short name.
    pub issuer: String,
    /// The issuer URL of the actor's key; absent for the operator and for
    /// rows written before keys were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    /// The `sub` of the actor's key; absent as `issuer_url` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Certificate serial, for issuances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Principals, for issuances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// Start of validity, for issuances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<UnixTime>,
    /// End of validity, for issuances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<UnixTime>,
    /// Subject key fingerprint, for issuances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Client address.
    pub client_addr: String,
    /// Key ID for issuances, reason for denials.
    pub detail: String,
    /// Policy rules that decided.
    pub rules: Vec<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries at or after this time.
    pub since: Option<UnixTime>,
    /// Only this identity: `alice` matches `alice@` any issuer, `alice@corp` exactly.
    pub identity: Option<String>,
}

/// Lists audit entries, oldest first, straight from the database file (works
/// while the server is down).
pub fn read_audit(path: &Path, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let err = sqlite_error(path);
    if !path.exists() {
        return Err(invalid_path(path));
    }
    let conn = open_connection(path, true)?;
    let has_schema: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE name = 'audit_events'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(&err)?;
    if has_schema.is_none() {
        return Ok(Vec::new());
    }
    let mut statement = conn
        .prepare(
            "SELECT e.at, e.kind, e.identity, e.issuer, e.serial, c.principals, c.valid_after, \
             c.valid_before, c.key_fingerprint, e.client_addr, e.detail, e.rules, \
             e.issuer_url, e.subject \
             FROM audit_events e LEFT JOIN certificates c ON c.serial = e.serial \
             WHERE e.at >= ?1 AND (?2 IS NULL OR e.identity = ?2 OR instr(e.identity, ?2 || '@') = 1) \
             ORDER BY e.at, e.id",
        )
        .map_err(&err)?;
    let since = filter.since.unwrap_or(0) as i64;
    let rows = statement
        .query_map(params![since, filter.identity], |row| {
            let principals: Option<String> = row.get(5)?;
            Ok(AuditEntry {
                at: row.get::<_, i64>(0)? as UnixTime,
                event: row.get(1)?,
                identity: row.get(2)?,
                issuer: row.get(3)?,
                issuer_url: row.get(12)?,
                subject: row.get(13)?,
                serial: row.get(4)?,
                principals: principals.and_then(|p| serde_json::from_str(&p).ok()),
                valid_after: row.get::<_, Option<i64>>(6)?.map(|v| v as UnixTime),
                valid_before: row.get::<_, Option<i64>>(7)?.map(|v| v as UnixTime),
                key_fingerprint: row.get(8)?,
                client_addr: row.get(9)?,
                detail: row.get(10)?,
                rules: serde_json::from_str(&row.get::<_, String>(11)?).unwrap_or_default(),
            })
        })
        .map_err(&err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&err)
}

/// One row of `audit_events`.
pub(super) struct AuditRow<'a> {
    pub(super) at: UnixTime,
    pub(super) kind: &'a str,
    pub(super) identity: &'a str,
    pub(super) key: Option<&'a IdentityKey>,
    pub(super) issuer: &'a str,
    pub(super) serial: Option<&'a str>,
    pub(super) client_addr: &'a str,
    pub(super) detail: &'a str,
    pub(super) rules: &'a [String],
}

impl<'a> AuditRow<'a> {
    /// Event `kind` by `actor`, naming no certificate.
    pub(super) fn by(actor: &'a Actor, kind: &'a str, detail: &'a str) -> AuditRow<'a> {
        AuditRow {
            at: actor.at,
            kind,
            identity: &actor.identity,
            key: actor.key.as_ref(),
            issuer: &actor.issuer,
            serial: None,
            client_addr: &actor.client_addr,
            detail,
            rules: &actor.rules,
        }
    }
}

/// Writes one audit event inside `tx`, and remembers its actor's key as
/// seen with its display name.
pub(super) fn insert_audit(
    tx: &rusqlite::Transaction<'_>,
    row: &AuditRow<'_>,
    path: &Path,
) -> Result<(), StoreError> {
    let err = sqlite_error(path);
    cached(
        tx,
        "INSERT INTO audit_events (at, kind, identity, issuer, serial, client_addr, detail, rules, \
         issuer_url, subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            row.at as i64,
            row.kind,
            row.identity,
            row.issuer,
            row.serial,
            row.client_addr,
            row.detail,
            json_list(row.rules),
            row.key.map(|k| k.issuer.as_str()),
            row.key.map(|k| k.subject.as_str())
        ],
    )
    .map_err(&err)?;
    if let Some(key) = row.key {
        // Most acts are by someone already seen under this name: a read of
        // a small, hot table, and no write.
        cached(
            tx,
            "INSERT INTO identity_subjects (identity, issuer, subject) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
            params![row.identity, key.issuer, key.subject],
        )
        .map_err(&err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{actor, record};
    use crate::store::{DenialRecord, Store, DATABASE_FILE};

    #[tokio::test]
    async fn audit_filters_by_identity_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        store
            .record_denial(DenialRecord {
                actor: actor("bob@corp", "contractors-no-root", 500),
                reason: "principal \"root\" is not granted".into(),
            })
            .await
            .expect("denied");
        let only = |identity: &str| AuditFilter {
            since: None,
            identity: Some(identity.into()),
        };
        assert_eq!(read_audit(&path, &only("alice")).expect("read").len(), 1);
        assert_eq!(
            read_audit(&path, &only("alice@corp")).expect("read").len(),
            1
        );
        assert_eq!(read_audit(&path, &only("ali")).expect("read").len(), 0);
        let bob = read_audit(&path, &only("bob")).expect("read");
        assert_eq!(bob[0].event, "denied");
        assert_eq!(bob[0].rules, ["contractors-no-root"]);
        let alice = read_audit(&path, &only("alice")).expect("read");
        assert_eq!(alice[0].rules, ["builtin-username"]);
        let recent = AuditFilter {
            since: Some(300),
            identity: None,
        };
        assert_eq!(read_audit(&path, &recent).expect("read").len(), 1);
    }
}
