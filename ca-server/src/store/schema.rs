//! The database's shape and the way into it: the schema migrations, opening
//! a connection (with the pragmas that make a commit durable), and the few
//! helpers the tables' SQL shares.
//!
//! `PRAGMA user_version` counts the migrations applied. A writable
//! connection brings the database to the newest schema before anything else
//! touches it; a read-only one never creates or migrates; no connection opens
//! a database that a newer jit-ssh-ca wrote.
//!
//! The database names people and what they were allowed, so only the CA's
//! user may open it: a writable connection creates a missing database file
//! 0600 before SQLite opens it (SQLite gives the WAL and shared-memory files
//! it creates beside it the database file's mode), and refuses a database,
//! WAL or shared-memory file that group or others may open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{DatabaseError, StoreError};
use crate::private_files;

/// Schema migrations; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE certificates (
    serial          TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    identity        TEXT NOT NULL,
    principals      TEXT NOT NULL,
    valid_after     INTEGER NOT NULL,
    valid_before    INTEGER NOT NULL,
    key_fingerprint TEXT NOT NULL,
    client_addr     TEXT NOT NULL,
    rule            TEXT NOT NULL,
    issued_at       INTEGER NOT NULL,
    certificate     TEXT NOT NULL
);
CREATE INDEX certificates_identity ON certificates (identity, issued_at);
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    identity    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    serial      TEXT REFERENCES certificates (serial),
    client_addr TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE TABLE used_tokens (
    digest     BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the policy rules that decided each event, as a JSON array.
    r#"
ALTER TABLE audit_events ADD COLUMN rules TEXT NOT NULL DEFAULT '[]';
"#,
    // 3: revocations. `kind` is serial, identity or key; a serial row lists
    // one certificate in the KRL until `expires_at` (its valid_before); an
    // identity or key row bans issuance (and a key row lists the key's hash
    // in the KRL) until lifted.
    r#"
CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('serial', 'identity', 'key')),
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    lifted_by   TEXT,
    lifted_at   INTEGER
);
CREATE UNIQUE INDEX revocations_active ON revocations (kind, value) WHERE lifted_at IS NULL;
CREATE INDEX certificates_key ON certificates (key_fingerprint);
"#,
    // 4: access requests. `status` holds what was decided; `expired`, and
    // `ended` at the window's end, follow from the times (crate::access).
    // `request_certificates` records which certificates carried principals
    // granted by which request, so that ending it early revokes them.
    r#"
CREATE TABLE access_requests (
    id            INTEGER PRIMARY KEY,
    requester     TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    principals    TEXT NOT NULL,
    reason        TEXT NOT NULL,
    window_secs   INTEGER NOT NULL,
    rules         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'ended')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    window_start  INTEGER,
    window_end    INTEGER,
    closed_by     TEXT,
    closed_reason TEXT
);
CREATE INDEX access_requests_requester ON access_requests (requester, created_at);
CREATE INDEX access_requests_status ON access_requests (status, expires_at);
CREATE TABLE request_approvals (
    request_id INTEGER NOT NULL REFERENCES access_requests (id),
    approver   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    comment    TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
) WITHOUT ROWID;
CREATE TABLE request_certificates (
    request_id INTEGER NOT NULL REFERENCES access_requests (id),
    serial     TEXT NOT NULL REFERENCES certificates (serial),
    PRIMARY KEY (request_id, serial)
) WITHOUT ROWID;
"#,
    // 5: break-glass requests (approved by their requester under a rule
    // with `break_glass`) and their review afterwards.
    r#"
ALTER TABLE access_requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_requests ADD COLUMN reviewed_by TEXT;
ALTER TABLE access_requests ADD COLUMN reviewed_at INTEGER;
ALTER TABLE access_requests ADD COLUMN review_comment TEXT;
CREATE INDEX access_requests_unreviewed ON access_requests (id)
    WHERE break_glass = 1 AND reviewed_at IS NULL;
"#,
    // 6: scheduled windows (open no earlier than `starts_at`) and windows
    // from first use (approved with no window; the first certificate under
    // the request sets window_start and window_end).
    r#"
ALTER TABLE access_requests ADD COLUMN starts_at INTEGER;
ALTER TABLE access_requests ADD COLUMN from_first_use INTEGER NOT NULL DEFAULT 0;
"#,
    // 7: certificates are looked up by identity or key only among the
    // unexpired ones (to revoke them), which an index on `valid_before`
    // serves. Indexes keyed by identity and by key fingerprint dirtied a
    // random page each per certificate.
    r#"
DROP INDEX certificates_identity;
DROP INDEX certificates_key;
CREATE INDEX certificates_valid_before ON certificates (valid_before);
"#,
    // 8: spent tokens are appended in the order they are spent. Their
    // digests are random, so a table keyed by digest dirtied a random page
    // per certificate; the serving writer now keeps the set of digests in
    // memory (loaded when the store opens; see `SpentTokens`) and refuses
    // a replay there.
    r#"
CREATE TABLE spent_tokens (
    digest     BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
INSERT INTO spent_tokens (digest, expires_at)
    SELECT digest, expires_at FROM used_tokens ORDER BY expires_at;
DROP TABLE used_tokens;
CREATE INDEX spent_tokens_expires_at ON spent_tokens (expires_at);
"#,
    // 9: the KRL version, a counter every revoke and lift raises in its own
    // transaction (see revocations.rs). It starts above every version the
    // time-derived scheme it replaces could have published: that scheme's
    // version was the second of the latest revoke or lift, and versions now
    // count a million per second.
    r#"
CREATE TABLE krl_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO krl_version (id, version)
    SELECT 1, coalesce(max(at), 0) * 1000000 FROM audit_events
    WHERE kind IN ('revoked', 'unrevoked');
"#,
    // 10: keys bound to an identity by a nonce, until the end of the sign-in
    // session in which a token without a nonce may certify them again
    // (key_bindings.rs).
    r#"
CREATE TABLE nonce_bound_keys (
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    bound_at        INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX nonce_bound_keys_expires_at ON nonce_bound_keys (expires_at);
"#,
    // 11: identities keyed by (issuer URL, sub) beside their display name
    // (identity.rs). Rows written before carry no key (NULL): an old
    // request grants nobody, and counts as its display name's for the
    // self-approval check and `done`; an old identity ban keeps matching the
    // display name. Approvals and revocations are rebuilt: two people with
    // one display name may both approve one request, and a revocation may
    // name a subject. `revoked_identities` lists the keys each identity ban
    // covers; `identity_subjects` every key seen with each display name.
    // Key bindings now name the issuer by its URL: those bound before name
    // it by its short name, match nothing, and are purged when they end.
    r#"
ALTER TABLE certificates ADD COLUMN issuer_url TEXT;
ALTER TABLE audit_events ADD COLUMN issuer_url TEXT;
ALTER TABLE audit_events ADD COLUMN subject TEXT;
ALTER TABLE access_requests ADD COLUMN requester_issuer TEXT;
ALTER TABLE access_requests ADD COLUMN requester_subject TEXT;
CREATE INDEX access_requests_requester_key
    ON access_requests (requester_issuer, requester_subject, created_at);
CREATE TABLE request_approvals_keyed (
    request_id       INTEGER NOT NULL REFERENCES access_requests (id),
    approver         TEXT NOT NULL,
    approver_issuer  TEXT,
    approver_subject TEXT,
    at               INTEGER NOT NULL,
    comment          TEXT NOT NULL
);
INSERT INTO request_approvals_keyed (request_id, approver, at, comment)
    SELECT request_id, approver, at, comment FROM request_approvals;
DROP TABLE request_approvals;
ALTER TABLE request_approvals_keyed RENAME TO request_approvals;
CREATE INDEX request_approvals_request ON request_approvals (request_id);
CREATE TABLE revocations_keyed (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('serial', 'identity', 'key', 'subject')),
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    lifted_by   TEXT,
    lifted_at   INTEGER
);
INSERT INTO revocations_keyed (id, kind, value, reason, revoked_by, revoked_at, expires_at,
    lifted_by, lifted_at)
    SELECT id, kind, value, reason, revoked_by, revoked_at, expires_at, lifted_by, lifted_at
    FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_keyed RENAME TO revocations;
CREATE UNIQUE INDEX revocations_active ON revocations (kind, value) WHERE lifted_at IS NULL;
CREATE TABLE revoked_identities (
    revocation_id INTEGER NOT NULL REFERENCES revocations (id),
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    PRIMARY KEY (revocation_id, issuer, subject)
) WITHOUT ROWID;
CREATE INDEX revoked_identities_key ON revoked_identities (issuer, subject);
CREATE TABLE identity_subjects (
    identity TEXT NOT NULL,
    issuer   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    PRIMARY KEY (identity, issuer, subject)
) WITHOUT ROWID;
"#,
    // 12: what a spent token paid for, when a retry with it is answered
    // with what was recorded (retries.rs): the certificate's serial or the
    // access request's id. Tokens spent before stay spent, paying for
    // nothing a retry returns.
    r#"
ALTER TABLE spent_tokens ADD COLUMN serial TEXT;
ALTER TABLE spent_tokens ADD COLUMN request_id INTEGER;
"#,
    // 13: one row the writer rewrites to learn whether the database accepts
    // writes again after a failed commit (writer.rs). It must change bytes
    // on disk: SQLite skips writing a row updated to its own value, so a
    // no-op update commits even on a full disk.
    r#"
CREATE TABLE writer_probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    writes INTEGER NOT NULL
);
"#,
    // 14: each access request records what the rules it was made under
    // required (policy/binding.rs), as a JSON list of requirements, when it
    // is made and at each approval. Rows from before hold NULL: they fail
    // closed, granting nothing and taking no more approvals (the requester
    // asks again).
    r#"
ALTER TABLE access_requests ADD COLUMN approved_under TEXT;
"#,
];

/// Opens the database; `read_only` connections neither create nor migrate.
pub(super) fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let err = sqlite_error(path);
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        create_private(path)?;
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let mut conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(&err)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema(path.to_path_buf()));
    }
    if read_only {
        return Ok(conn);
    }
    // FULL: a commit is on disk before the writer answers, so neither a crash
    // nor a power cut loses a certificate that was handed out. An 8 MB page
    // cache (the default is 2 MB) keeps the pages every commit touches: the
    // right edges of tables and indexes that grow in time order.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -8192;",
    )
    .map_err(&err)?;
    let tx = conn.transaction().map_err(&err)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(&err)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(conn)
}

/// Creates the database file at `path` 0600 if it is missing, and refuses
/// the database, WAL or shared-memory file if group or others may open it.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(private_files::ModeError::Io {
                what: "database file",
                path: path.to_path_buf(),
                source,
            }
            .into())
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        match std::fs::metadata(&file) {
            Ok(metadata) => private_files::check("database file", &file, &metadata)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(private_files::ModeError::Io {
                    what: "database file",
                    path: file,
                    source,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// Opens the database read-only, refusing one the server has not migrated
/// yet: an offline reader then answers exactly as the server would.
pub(super) fn open_current_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_connection(path, true)?;
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite_error(path))?;
    if version < MIGRATIONS.len() {
        return Err(StoreError::OlderSchema(path.to_path_buf()));
    }
    Ok(conn)
}

/// Turns SQLite's errors on the database at `path` into [`StoreError`]s.
pub(super) fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        path: path.to_path_buf(),
        source: DatabaseError(source),
    }
}

/// The error for a file that is missing, or present where it must not be.
pub(super) fn invalid_path(path: &Path) -> StoreError {
    sqlite_error(path)(rusqlite::Error::InvalidPath(path.to_path_buf()))
}

/// Runs `sql` through the connection's statement cache: the same few
/// statements run for every record, so each is parsed once per connection
/// rather than once per record.
pub(super) fn cached(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// A list of names as the JSON array stored in the database.
pub(super) fn json_list(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::access::RequestError;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{database_at_version, record, token};
    use crate::store::{access_requests, Store, DATABASE_FILE};

    #[test]
    fn a_version_4_database_migrates_without_losing_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = database_at_version(&path, 4);
            conn.execute(
                "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
                 rules, status, created_at, expires_at) \
                 VALUES ('bob@corp', 'corp', '[\"root\"]', 'old', 60, '[]', 'pending', 1, 2)",
                [],
            )
            .expect("insert");
        }
        let conn = open_connection(&path, false).expect("migrated");
        let r = access_requests::read_request(&conn, 1, &path)
            .expect("read")
            .expect("kept");
        assert_eq!(r.reason, "old");
        assert!(!r.break_glass && r.review.is_none());
    }

    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let files = ["", "-wal", "-shm"].map(|s| PathBuf::from(format!("{}{s}", path.display())));
        let mode =
            |file: &Path| std::fs::metadata(file).expect("stat").permissions().mode() & 0o777;
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        drop(store);
        // One that group or others may read is refused, and left as it is.
        for file in files.iter().filter(|f| f.exists()) {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            let err = open_connection(&path, false).expect_err("refused");
            assert!(
                matches!(&err, StoreError::FileMode(_))
                    && err
                        .to_string()
                        .contains(&format!("chmod 600 {}", file.display())),
                "{err}"
            );
            assert_eq!(mode(file), 0o640);
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        open_connection(&path, false).expect("private again");
        // Readers create nothing and check nothing.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        open_connection(&path, true).expect("read-only");
    }

    #[tokio::test]
    async fn tokens_spent_before_migration_8_stay_spent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let conn = database_at_version(&path, 7);
        conn.execute(
            "INSERT INTO used_tokens (digest, expires_at) VALUES (?1, ?2)",
            params![&[5u8; 32][..], i64::MAX / 4],
        )
        .expect("spend");
        drop(conn);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        assert!(matches!(
            store.record_issuance(record("1", 5)).await,
            Err(StoreError::Replayed)
        ));
        store.record_issuance(record("2", 6)).await.expect("fresh");
    }

    #[tokio::test]
    async fn rows_from_before_identity_keys_migrate_and_fail_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = database_at_version(&path, 10);
            conn.execute_batch(
                "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
                 rules, status, created_at, expires_at) \
                 VALUES ('bob@corp', 'corp', '[\"root\"]', 'old', 60, '[]', 'pending', 1, 99999); \
                 INSERT INTO request_approvals (request_id, approver, at, comment) \
                 VALUES (1, 'carol@corp', 2, 'ok'); \
                 INSERT INTO revocations (kind, value, reason, revoked_by, revoked_at) \
                 VALUES ('identity', 'alice@corp', 'old ban', 'operator@local', 3);",
            )
            .expect("rows of version 10");
        }
        let store = Store::open(&path, &Metrics::new()).expect("migrated");
        let request = store.request(1).await.expect("read").expect("kept");
        assert_eq!(request.requester_key, None);
        assert_eq!(request.approvals[0].approver_key, None);
        // The old ban still refuses its display name, whoever shows it.
        let alice = crate::store::fixtures::key_of("alice@corp");
        assert!(matches!(
            store
                .check_standing("alice@corp".into(), alice.clone(), token(1, u64::MAX / 4))
                .await,
            Err(StoreError::RevokedIdentity(_))
        ));
        // The old request is its display name's: anyone showing bob@corp
        // is refused as its requester, and carol's old approval as hers.
        let other_bob = crate::identity::IdentityKey {
            subject: "user-bob-2".into(),
            ..alice
        };
        assert_eq!(
            request.check_approval(&other_bob, "bob@corp", 10),
            Err(RequestError::OwnRequest)
        );
        assert_eq!(
            request.check_approval(&other_bob, "carol@corp", 10),
            Err(RequestError::AlreadyApproved(1))
        );
    }
}
