//! Revocations: what is revoked (a certificate, every certificate of an
//! identity, every certificate for a key), by whom and why, and the
//! revocation state a KRL is made from.
//!
//! A serial stays listed until its certificate expires; an identity or key
//! is banned from issuance (and a key listed in the KRL) until the ban is
//! lifted. Every revoke and lift writes its audit event and raises the KRL
//! version (krl_version.rs) in the same transaction.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::audit::{insert_audit, AuditRow};
use super::certificates::unexpired;
use super::krl_version;
use super::schema::{open_connection, sqlite_error};
use super::spent::{spend, SpentToken, WriteTx};
use super::{Actor, StoreError};
use crate::identity::IdentityKey;
use crate::UnixTime;

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    /// One certificate.
    Serial(u64),
    /// Every certificate of `user@issuer`, and everything it would do: of
    /// whoever shows this display name, and of every key the CA has seen
    /// showing it, whatever they show later.
    Identity(String),
    /// Every certificate of one person, and everything they would do:
    /// `sub:<sub>@<issuer>` (`spelled`), which resolves to `key`.
    Subject {
        /// The key it covers.
        key: IdentityKey,
        /// As named, `sub:<sub>@<issuer short name>`.
        spelled: String,
    },
    /// Every certificate for the key with this `SHA256:...` fingerprint, and
    /// future issuance for it.
    Key(String),
}

impl RevocationTarget {
    /// `serial`, `identity`, `subject` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            RevocationTarget::Serial(_) => "serial",
            RevocationTarget::Identity(_) => "identity",
            RevocationTarget::Subject { .. } => "subject",
            RevocationTarget::Key(_) => "key",
        }
    }

    /// The serial (decimal), identity, subject form or fingerprint.
    pub fn value(&self) -> String {
        match self {
            RevocationTarget::Serial(serial) => serial.to_string(),
            RevocationTarget::Identity(v) | RevocationTarget::Key(v) => v.clone(),
            RevocationTarget::Subject { spelled, .. } => spelled.clone(),
        }
    }
}

impl std::fmt::Display for RevocationTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// Who revokes or lifts what, and why.
#[derive(Debug, Clone)]
pub struct RevocationRecord {
    /// What.
    pub target: RevocationTarget,
    /// Why.
    pub reason: String,
    /// Who, from where, when, and the admin rule that authorised it (no
    /// rule for owners and the CLI).
    pub actor: Actor,
    /// The admin's ID token, spent in the same transaction (single use).
    pub spent_token: Option<SpentToken>,
}

/// What a revocation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serials newly listed in the KRL.
    pub serials: Vec<String>,
    /// KRL version after the change.
    pub krl_version: u64,
}

/// The revocation state a KRL is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedSet {
    /// The KRL version: raised by every revocation and lift, and whenever
    /// the listed state changes otherwise; never the same for two different
    /// states, never lower than a version published before.
    pub version: u64,
    /// Revoked serials of certificates not yet expired.
    pub serials: Vec<u64>,
    /// `SHA256:...` fingerprints of revoked keys.
    pub key_fingerprints: Vec<String>,
}

/// Revokes directly in the database file (`jit-ssh-ca revoke` on the CA
/// host), safe while the server runs: SQLite serialises the writers.
pub fn revoke_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    offline(path, record, revoke_in)
}

/// Lifts directly in the database file (`jit-ssh-ca unrevoke`).
pub fn lift_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    offline(path, record, lift_in)
}

/// Runs `change` in its own transaction on the database file, beside a
/// running server or without one.
fn offline(
    path: &Path,
    record: &RevocationRecord,
    change: fn(&WriteTx<'_>, &RevocationRecord, &Path) -> Result<Revoked, StoreError>,
) -> Result<Revoked, StoreError> {
    let mut conn = open_connection(path, false)?;
    let tx = WriteTx::new(&mut conn, None).map_err(sqlite_error(path))?;
    let done = change(&tx, record, path)?;
    tx.commit().map_err(sqlite_error(path))?;
    Ok(done)
}

/// Revokes `r.target` inside `tx`: lists the certificate(s) in the KRL,
/// bans an identity or key from issuance, spends `r.spent_token`, and writes
/// the `revoked` audit event, all or nothing with the rest of `tx`. Ending an
/// access grant early (`jit-ssh done`) calls this once per serial issued under
/// the grant, in the same transaction that ends it; a serial already revoked
/// or expired is accepted and lists nothing new.
pub(super) fn revoke_in(
    tx: &WriteTx<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend(tx, r.spent_token, path)?;
    let at = r.actor.at as i64;
    let insert =
        "INSERT INTO revocations (kind, value, reason, revoked_by, revoked_at, expires_at) \
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING";
    // The certificates this revocation lists: one serial, or every unexpired
    // certificate of the identity or key.
    let certificates: Vec<(String, i64)> = match &r.target {
        RevocationTarget::Serial(serial) => {
            let serial = serial.to_string();
            let found: Option<i64> = tx
                .query_row(
                    "SELECT valid_before FROM certificates WHERE serial = ?1",
                    [&serial],
                    |row| row.get(0),
                )
                .optional()
                .map_err(&err)?;
            match found {
                Some(valid_before) => vec![(serial, valid_before)],
                None => return Err(StoreError::UnknownCertificate(serial)),
            }
        }
        RevocationTarget::Identity(_) | RevocationTarget::Subject { .. } => {
            tx.execute(
                insert,
                params![
                    r.target.kind(),
                    r.target.value(),
                    r.reason,
                    r.actor.identity,
                    at,
                    None::<i64>
                ],
            )
            .map_err(&err)?;
            ban_identity(tx, &r.target, at).map_err(&err)?
        }
        RevocationTarget::Key(fingerprint) => {
            tx.execute(
                insert,
                params![
                    "key",
                    fingerprint,
                    r.reason,
                    r.actor.identity,
                    at,
                    None::<i64>
                ],
            )
            .map_err(&err)?;
            unexpired(tx, "key_fingerprint", fingerprint, at).map_err(&err)?
        }
    };
    let mut serials = Vec::new();
    // An expired certificate needs no listing: sshd refuses it anyway.
    for (serial, valid_before) in certificates.iter().filter(|(_, until)| *until > at) {
        let inserted = tx
            .execute(
                insert,
                params![
                    "serial",
                    serial,
                    r.reason,
                    r.actor.identity,
                    at,
                    valid_before
                ],
            )
            .map_err(&err)?;
        if inserted > 0 {
            serials.push(serial.clone());
        }
    }
    let detail = format!(
        "{}: {} ({} certificate(s) newly listed)",
        r.target,
        r.reason,
        serials.len()
    );
    audit_revocation(tx, "revoked", r, &detail, path)?;
    Ok(Revoked {
        serials,
        krl_version: krl_version::raise(tx, r.actor.at).map_err(&err)?,
    })
}

/// Lifts the revocation of `r.target` inside `tx`, spending `r.spent_token`
/// and writing the `unrevoked` audit event.
pub(super) fn lift_in(
    tx: &WriteTx<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend(tx, r.spent_token, path)?;
    let lifted = tx
        .execute(
            "UPDATE revocations SET lifted_by = ?1, lifted_at = ?2 \
             WHERE kind = ?3 AND value = ?4 AND lifted_at IS NULL",
            params![
                r.actor.identity,
                r.actor.at as i64,
                r.target.kind(),
                r.target.value()
            ],
        )
        .map_err(&err)?;
    if lifted == 0 {
        return Err(StoreError::NotRevoked(r.target.to_string()));
    }
    let detail = format!("{}: {}", r.target, r.reason);
    audit_revocation(tx, "unrevoked", r, &detail, path)?;
    Ok(Revoked {
        serials: Vec::new(),
        krl_version: krl_version::raise(tx, r.actor.at).map_err(&err)?,
    })
}

/// Records which keys the active ban of `target` (an identity or subject,
/// its row just written or already there) covers, and returns the unexpired
/// certificates it revokes at `now`. A ban by display name covers every key
/// the CA has seen showing that name (`identity_subjects`, kept by every
/// audited act), so the person stays banned under another name later, and
/// lists the certificates of those keys and of the display name; a ban by
/// subject covers its one key and lists that key's certificates only.
fn ban_identity(
    tx: &rusqlite::Transaction<'_>,
    target: &RevocationTarget,
    now: i64,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let id: i64 = tx.query_row(
        "SELECT id FROM revocations WHERE kind = ?1 AND value = ?2 AND lifted_at IS NULL",
        params![target.kind(), target.value()],
        |row| row.get(0),
    )?;
    let display = match target {
        RevocationTarget::Identity(display) => {
            tx.execute(
                "INSERT INTO revoked_identities (revocation_id, issuer, subject) \
                 SELECT ?1, issuer, subject FROM identity_subjects WHERE identity = ?2 \
                 ON CONFLICT DO NOTHING",
                params![id, display],
            )?;
            Some(display.as_str())
        }
        RevocationTarget::Subject { key, .. } => {
            tx.execute(
                "INSERT INTO revoked_identities (revocation_id, issuer, subject) \
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![id, key.issuer, key.subject],
            )?;
            None
        }
        RevocationTarget::Serial(_) | RevocationTarget::Key(_) => return Ok(Vec::new()),
    };
    let mut statement = tx.prepare(
        "SELECT serial, valid_before FROM certificates c WHERE valid_before > ?1 AND \
         ((?2 IS NOT NULL AND identity = ?2) OR EXISTS (SELECT 1 FROM revoked_identities ri \
           WHERE ri.revocation_id = ?3 AND ri.issuer = c.issuer_url AND ri.subject = c.subject))",
    )?;
    let rows = statement.query_map(params![now, display, id], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

/// The revocation state at `now`, read from `conn`, with the current KRL
/// version (which publishing may still raise: krl_version.rs).
pub(super) fn read_revoked_set(
    conn: &Connection,
    now: UnixTime,
    path: &Path,
) -> Result<RevokedSet, StoreError> {
    let err = sqlite_error(path);
    let mut statement = conn
        .prepare_cached(
            "SELECT kind, value FROM revocations WHERE lifted_at IS NULL \
             AND (kind = 'key' OR (kind = 'serial' AND expires_at > ?1)) ORDER BY kind, value",
        )
        .map_err(&err)?;
    let rows = statement
        .query_map([now as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(&err)?;
    let mut set = RevokedSet {
        version: krl_version::current(conn).map_err(&err)?,
        ..RevokedSet::default()
    };
    for row in rows {
        let (kind, value) = row.map_err(&err)?;
        if kind == "key" {
            set.key_fingerprints.push(value);
        } else if let Ok(serial) = value.parse() {
            set.serials.push(serial);
        }
    }
    Ok(set)
}

fn audit_revocation(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    r: &RevocationRecord,
    detail: &str,
    path: &Path,
) -> Result<(), StoreError> {
    let serial = match &r.target {
        RevocationTarget::Serial(serial) => Some(serial.to_string()),
        _ => None,
    };
    insert_audit(
        tx,
        &AuditRow {
            serial: serial.as_deref(),
            ..AuditRow::by(&r.actor, kind, detail)
        },
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{key_of, record, revocation, token};
    use crate::store::{read_audit, AuditFilter, IssuanceRecord, Store, DATABASE_FILE};

    #[tokio::test]
    async fn revocations_list_serials_until_expiry_and_ban_until_lifted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let opened = crate::unix_now_micros();
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        store.record_issuance(record("2", 2)).await.expect("issued");
        assert!(matches!(
            store
                .revoke(revocation(RevocationTarget::Serial(9), 200))
                .await,
            Err(StoreError::UnknownCertificate(s)) if s == "9"
        ));
        let one = store
            .revoke(revocation(RevocationTarget::Serial(1), 200))
            .await
            .expect("revoked");
        assert_eq!(one.serials, ["1"]);
        // The identity: the remaining unexpired certificate, and a ban.
        let all = store
            .revoke(revocation(
                RevocationTarget::Identity("alice@corp".into()),
                210,
            ))
            .await
            .expect("revoked");
        assert_eq!(all.serials, ["2"]);
        assert!(all.krl_version > one.krl_version, "versions increase");
        let set = store.revoked_set(300).await.expect("set");
        assert_eq!(set.serials, [1, 2]);
        // This server's first KRL: at least the moment the store opened
        // (krl_version.rs says why), so above every change before it.
        assert!(set.version >= opened && set.version > all.krl_version);
        // Expired certificates (valid_before 400) drop out of the KRL.
        assert!(store
            .revoked_set(400)
            .await
            .expect("set")
            .serials
            .is_empty());
        // Banned: no issuance, and the token is not spent.
        assert!(matches!(
            store.record_issuance(record("3", 3)).await,
            Err(StoreError::RevokedIdentity(who)) if who == "alice@corp"
        ));
        assert!(matches!(
            store
                .lift(revocation(
                    RevocationTarget::Identity("bob@corp".into()),
                    220
                ))
                .await,
            Err(StoreError::NotRevoked(_))
        ));
        store
            .lift(revocation(
                RevocationTarget::Identity("alice@corp".into()),
                220,
            ))
            .await
            .expect("lifted");
        store
            .record_issuance(record("3", 3))
            .await
            .expect("token 3 unspent");
        // A key ban lists the key and refuses it.
        store
            .revoke(revocation(RevocationTarget::Key("SHA256:abc".into()), 230))
            .await
            .expect("revoked");
        assert_eq!(
            store.revoked_set(300).await.expect("set").key_fingerprints,
            ["SHA256:abc"]
        );
        assert!(matches!(
            store.record_issuance(record("4", 4)).await,
            Err(StoreError::RevokedKey(_))
        ));
        let expired = store
            .revoke(revocation(RevocationTarget::Serial(3), 400))
            .await
            .expect("accepted");
        assert!(expired.serials.is_empty(), "expired: nothing to list");
        let published = store.revoked_set(400).await.expect("set").version;
        assert!(expired.krl_version > set.version && published >= expired.krl_version);
        // Every change is audited under the actor, with the deciding rule.
        let events: Vec<_> = read_audit(&path, &AuditFilter::default())
            .expect("read")
            .into_iter()
            .filter(|e| e.event.contains("revoked"))
            .map(|e| (e.event, e.identity, e.rules))
            .collect();
        assert_eq!(events.len(), 5);
        assert!(events
            .iter()
            .all(|(_, who, rules)| who == "carol@corp" && rules == &["admins"]));
    }

    #[tokio::test]
    async fn an_admin_token_is_spent_with_its_revocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        let mut r = revocation(RevocationTarget::Serial(1), 200);
        r.spent_token = Some(token(7, u64::MAX / 4));
        store.revoke(r.clone()).await.expect("revoked");
        assert!(matches!(store.revoke(r).await, Err(StoreError::Replayed)));
        // Nor can it then get a certificate.
        assert!(matches!(
            store.record_issuance(record("2", 7)).await,
            Err(StoreError::Replayed)
        ));
        // The CLI path writes the same rows through its own connection.
        let offline = revoke_offline(
            &path,
            &revocation(RevocationTarget::Identity("bob@corp".into()), 300),
        )
        .expect("offline");
        assert!(offline.serials.is_empty());
        assert!(lift_offline(
            &path,
            &revocation(RevocationTarget::Identity("bob@corp".into()), 301)
        )
        .is_ok());
    }

    /// alice's record as another person who also shows `alice@corp`
    /// (`sub` `user-alice-2`), or as alice under another display name.
    fn issued_as(serial: &str, digest: u8, identity: &str, subject: &str) -> IssuanceRecord {
        let mut r = record(serial, digest);
        r.actor.identity = identity.into();
        r.actor.key = Some(IdentityKey {
            subject: subject.into(),
            ..key_of("alice@corp")
        });
        r
    }

    #[tokio::test]
    async fn a_ban_by_display_name_follows_its_people_and_a_ban_by_subject_one_person() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::RevokedIdentity(_)));
        store
            .record_issuance(issued_as("1", 1, "alice@corp", "user-alice"))
            .await
            .expect("alice");
        store
            .record_issuance(issued_as("2", 2, "alice@corp", "user-alice-2"))
            .await
            .expect("the other alice@corp");
        // By subject: the one person, her certificate, her standing.
        let subject = RevocationTarget::Subject {
            key: IdentityKey {
                subject: "user-alice-2".into(),
                ..key_of("alice@corp")
            },
            spelled: "sub:user-alice-2@corp".into(),
        };
        let one = store
            .revoke(revocation(subject.clone(), 200))
            .await
            .expect("revoked");
        assert_eq!(one.serials, ["2"]);
        assert!(refused(
            store
                .record_issuance(issued_as("3", 3, "alice@corp", "user-alice-2"))
                .await
        ));
        // ...whatever name she shows.
        assert!(refused(
            store
                .record_issuance(issued_as("3", 3, "alice.b@corp", "user-alice-2"))
                .await
        ));
        store
            .record_issuance(issued_as("3", 3, "alice@corp", "user-alice"))
            .await
            .expect("alice is someone else");
        store
            .lift(revocation(subject, 210))
            .await
            .expect("lifted by its spelling");
        // By display name: everyone showing it, and every key seen with it,
        // also once they show another name.
        let display = store
            .revoke(revocation(
                RevocationTarget::Identity("alice@corp".into()),
                220,
            ))
            .await
            .expect("revoked");
        assert_eq!(display.serials, ["1", "3"], "2 was listed before");
        for (identity, subject) in [
            ("alice@corp", "user-alice-3"),
            ("alice.smith@corp", "user-alice"),
            ("alice.b@corp", "user-alice-2"),
        ] {
            assert!(
                refused(
                    store
                        .record_issuance(issued_as("4", 4, identity, subject))
                        .await
                ),
                "{identity} {subject}"
            );
            assert!(matches!(
                store
                    .check_standing(
                        identity.into(),
                        IdentityKey {
                            subject: subject.into(),
                            ..key_of("alice@corp")
                        },
                        token(40, u64::MAX / 4)
                    )
                    .await,
                Err(StoreError::RevokedIdentity(_))
            ));
        }
        store
            .record_issuance(issued_as("4", 4, "bob@corp", "user-bob"))
            .await
            .expect("bob was never alice@corp");
    }
}
