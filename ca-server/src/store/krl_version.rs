//! The KRL version: the number hosts compare to keep the newest KRL, so it
//! must name one revocation state and never go back.
//!
//! It is a counter in the database (`krl_version`, one row), counted in
//! microseconds of the clock. Every revoke and lift raises it, in its own
//! transaction, to the larger of one more than before and the start of the
//! change's second ([`VERSIONS_PER_SECOND`] per second): two changes in one
//! second get two versions, and a version runs ahead of the clock only when
//! more changes commit within a second than microseconds have passed in it.
//!
//! Publishing a KRL ([`publish_revoked_set`]) holds to two more promises:
//!
//! - One version, one list. The serving store remembers the version and a
//!   digest of the list it last published; when the list changes without a
//!   revoke or lift (a revoked certificate expires and leaves it), the
//!   counter is raised before it is published. Hosts can therefore refuse a
//!   KRL of the version in place with another list: it can only be an
//!   earlier KRL replayed.
//! - Never lower than before, even after a restore. A database restored
//!   from a backup holds the counter of the backup, lower than what hosts
//!   already have. So the first KRL a server publishes is raised to at least
//!   the moment its store opened, in microseconds: every version published
//!   before, by an earlier server on this database or on the one the backup
//!   was taken from, was given before that server stopped, hence before this
//!   store opened, and does not run ahead of its time. This holds as long as
//!   the CA host's clock does not go back. The same first raise covers what
//!   a restart may change in the KRL besides the revocations (the trusted CA
//!   keys, the encoding).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use sha2::{Digest as _, Sha256};

use super::revocations::{read_revoked_set, RevokedSet};
use super::schema::sqlite_error;
use super::StoreError;
use crate::UnixTime;

/// How many KRL versions each second of the clock spans.
pub(super) const VERSIONS_PER_SECOND: u64 = 1_000_000;

/// What the serving store remembers between the KRLs it publishes.
#[derive(Debug)]
pub(super) struct Publication {
    /// When the store opened, in microseconds since the Unix epoch: the
    /// least version of its first KRL.
    opened: u64,
    /// The last KRL published: its version and a digest of what it listed.
    last: Option<(u64, [u8; 32])>,
}

impl Publication {
    /// Nothing published yet by a store that opened at `opened_micros`.
    pub(super) fn new(opened_micros: u64) -> Publication {
        Publication {
            opened: opened_micros,
            last: None,
        }
    }
}

/// Raises the KRL version inside `tx` for a change made at `at`; returns the
/// new version.
pub(super) fn raise(tx: &Connection, at: UnixTime) -> rusqlite::Result<u64> {
    raise_to_at_least(tx, at.saturating_mul(VERSIONS_PER_SECOND))
}

/// The current KRL version.
pub(super) fn current(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT version FROM krl_version", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|v| v as u64)
}

/// The revocation state at `now`, under the version it is published with,
/// raising the version first where the module's promises need it; updates
/// `publication` once the version is committed.
pub(super) fn publish_revoked_set(
    conn: &mut Connection,
    publication: &mut Publication,
    now: UnixTime,
    path: &Path,
) -> Result<RevokedSet, StoreError> {
    let err = sqlite_error(path);
    // Immediate: the state and its version are read, and the version raised,
    // with no other writer (the admin CLI) in between.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let mut set = read_revoked_set(&tx, now, path)?;
    let contents = digest(&set);
    let this_second = now.saturating_mul(VERSIONS_PER_SECOND);
    let floor = match publication.last {
        None => Some(this_second.max(publication.opened)),
        // The database went back under a running server (a restore without
        // a restart): stay above what this server published.
        Some((version, _)) if version > set.version => Some(this_second.max(version + 1)),
        Some((version, digest)) if version == set.version && digest != contents => {
            Some(this_second)
        }
        Some(_) => None,
    };
    if let Some(floor) = floor {
        set.version = raise_to_at_least(&tx, floor).map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    publication.last = Some((set.version, contents));
    Ok(set)
}

/// Sets the version to the larger of one more than now and `floor`.
fn raise_to_at_least(tx: &Connection, floor: u64) -> rusqlite::Result<u64> {
    let floor = i64::try_from(floor).unwrap_or(i64::MAX);
    tx.query_row(
        "UPDATE krl_version SET version = max(version + 1, ?1) RETURNING version",
        [floor],
        |row| row.get::<_, i64>(0),
    )
    .map(|v| v as u64)
}

/// A digest of what a KRL built from `set` lists (its version aside).
fn digest(set: &RevokedSet) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((set.serials.len() as u64).to_be_bytes());
    for serial in &set.serials {
        hash.update(serial.to_be_bytes());
    }
    for fingerprint in &set.key_fingerprints {
        hash.update((fingerprint.len() as u64).to_be_bytes());
        hash.update(fingerprint.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{database_at_version, record, revocation};
    use crate::store::schema::open_connection;
    use crate::store::{backup, RevocationTarget, Store, DATABASE_FILE};

    const SECOND: u64 = VERSIONS_PER_SECOND;

    #[tokio::test]
    async fn changes_within_one_second_get_increasing_versions_in_its_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join(DATABASE_FILE), &Metrics::new()).expect("open");
        for (serial, digest) in [("1", 1), ("2", 2)] {
            store
                .record_issuance(record(serial, digest))
                .await
                .expect("issued");
        }
        let mut versions = Vec::new();
        for target in [
            RevocationTarget::Serial(1),
            RevocationTarget::Serial(2),
            RevocationTarget::Key("SHA256:abc".into()),
        ] {
            let done = store
                .revoke(revocation(target, 200))
                .await
                .expect("revoked");
            versions.push(done.krl_version);
        }
        let lifted = store
            .lift(revocation(RevocationTarget::Key("SHA256:abc".into()), 200))
            .await
            .expect("lifted");
        versions.push(lifted.krl_version);
        assert_eq!(
            versions,
            [
                200 * SECOND,
                200 * SECOND + 1,
                200 * SECOND + 2,
                200 * SECOND + 3
            ]
        );
        // A later second starts at its own range; a clock set back still
        // gets a higher version.
        let later = store
            .revoke(revocation(
                RevocationTarget::Identity("bob@corp".into()),
                201,
            ))
            .await
            .expect("revoked");
        assert_eq!(later.krl_version, 201 * SECOND);
        let earlier = store
            .lift(revocation(
                RevocationTarget::Identity("bob@corp".into()),
                150,
            ))
            .await
            .expect("lifted");
        assert_eq!(earlier.krl_version, 201 * SECOND + 1);
    }

    #[tokio::test]
    async fn a_published_version_names_one_revocation_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before_open = crate::unix_now_micros();
        let store = Store::open(&dir.path().join(DATABASE_FILE), &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        let revoked = store
            .revoke(revocation(RevocationTarget::Serial(1), 200))
            .await
            .expect("revoked");
        // The first KRL of this server: at least the moment it opened.
        let first = store.revoked_set(250).await.expect("set");
        assert_eq!(first.serials, [1]);
        assert!(first.version >= before_open && first.version > revoked.krl_version);
        // Nothing changed: the same version, however often it is asked.
        assert_eq!(store.revoked_set(260).await.expect("set"), first);
        // A change made after it is published under the change's version.
        let key = store
            .revoke(revocation(RevocationTarget::Key("SHA256:abc".into()), 270))
            .await
            .expect("revoked");
        assert_eq!(key.krl_version, first.version + 1);
        let with_key = store.revoked_set(270).await.expect("set");
        assert_eq!(with_key.version, key.krl_version);
        // The certificate expires (valid_before 400) and leaves the list:
        // other contents, so a higher version.
        let expired = store.revoked_set(400).await.expect("set");
        assert!(expired.serials.is_empty());
        assert_eq!(expired.version, with_key.version + 1);
        assert_eq!(store.revoked_set(401).await.expect("set"), expired);
    }

    #[tokio::test]
    async fn a_restored_backup_never_publishes_a_lower_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let saved = dir.path().join("backup.db");
        let published = {
            let store = Store::open(&path, &Metrics::new()).expect("open");
            store.record_issuance(record("1", 1)).await.expect("issued");
            store.record_issuance(record("2", 2)).await.expect("issued");
            store
                .revoke(revocation(RevocationTarget::Serial(1), 200))
                .await
                .expect("revoked");
            backup(&path, &saved).expect("backup");
            // After the backup: more changes and KRLs, in one second.
            store
                .revoke(revocation(RevocationTarget::Serial(2), 300))
                .await
                .expect("revoked");
            let mut last = 0;
            for target in ["SHA256:a", "SHA256:b", "SHA256:c"] {
                store
                    .revoke(revocation(RevocationTarget::Key(target.into()), 300))
                    .await
                    .expect("revoked");
                let version = store.revoked_set(300).await.expect("set").version;
                assert!(version > last);
                last = version;
            }
            last
        };
        // Restore: the backup replaces the database and its WAL.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::copy(&saved, &path).expect("restore");
        let restored = Store::open(&path, &Metrics::new()).expect("open");
        // The same second of the CA's clock as the last KRL before: above
        // it still, though the backup's counter is from before.
        let first = restored.revoked_set(300).await.expect("set");
        assert_eq!(first.serials, [1]);
        assert!(
            first.version > published,
            "{} after {published}",
            first.version
        );

        // The database going back under a running server (restored without
        // a restart) does not take its versions down either.
        let conn = open_connection(&path, false).expect("open");
        conn.execute("UPDATE krl_version SET version = ?1", params![5])
            .expect("set back");
        let after = restored.revoked_set(300).await.expect("set");
        assert_eq!(after.version, first.version + 1);
    }

    #[test]
    fn the_counter_starts_above_the_time_derived_versions_it_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = database_at_version(&path, 8);
            // Before: the KRL version was the second of the latest change.
            conn.execute(
                "INSERT INTO audit_events (at, kind, identity, issuer, client_addr, detail) \
                 VALUES (1800000000, 'revoked', 'carol@corp', 'corp', 'local', 'x')",
                [],
            )
            .expect("audit");
        }
        let conn = open_connection(&path, false).expect("migrated");
        assert_eq!(current(&conn).expect("version"), 1_800_000_000 * SECOND);
        let empty = dir.path().join("empty.db");
        let conn = open_connection(&empty, false).expect("created");
        assert_eq!(current(&conn).expect("version"), 0);
    }
}
