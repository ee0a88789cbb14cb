//! The durable record: one SQLite database (WAL, `synchronous=FULL`) in the
//! data directory.
//!
//! Writes go through a single writer thread that commits whatever requests are
//! waiting in one transaction (group commit): under load, hundreds of
//! issuances share one fsync, yet each caller is answered only after the
//! transaction holding its own rows has committed. An issuance writes the
//! certificate row, its audit event and the ID token's digest together, so a
//! token is spent if and only if its certificate is on record.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::UnixTime;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// How often spent-token digests past their expiry are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Schema migrations; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
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
];

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "jit-ssh-ca.db";

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The ID token was already used for a certificate.
    #[error("this ID token was already used")]
    Replayed,
    /// The random serial collided with an earlier one.
    #[error("serial already used")]
    DuplicateSerial,
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer jit-ssh-ca.
    #[error("database {0} has a newer schema than this jit-ssh-ca understands")]
    NewerSchema(PathBuf),
    /// The writer thread is gone.
    #[error("the database writer has stopped")]
    Closed,
}

/// One issued certificate, as recorded.
#[derive(Debug, Clone)]
pub struct IssuanceRecord {
    /// Serial, decimal.
    pub serial: String,
    /// Key ID in the certificate.
    pub key_id: String,
    /// Issuer short name.
    pub issuer: String,
    /// Token `sub`.
    pub subject: String,
    /// `username@issuer`.
    pub identity: String,
    /// Principals in the certificate.
    pub principals: Vec<String>,
    /// Start of validity.
    pub valid_after: UnixTime,
    /// End of validity.
    pub valid_before: UnixTime,
    /// SHA-256 fingerprint of the subject key.
    pub key_fingerprint: String,
    /// Client address as seen by the CA.
    pub client_addr: String,
    /// Deciding rules, comma-separated.
    pub rule: String,
    /// Signing time.
    pub issued_at: UnixTime,
    /// The certificate, one OpenSSH line.
    pub certificate: String,
    /// SHA-256 of the ID token that was spent.
    pub token_digest: [u8; 32],
    /// Until when that digest must be remembered.
    pub token_expires_at: UnixTime,
}

/// A refused request by an authenticated identity.
#[derive(Debug, Clone)]
pub struct DenialRecord {
    /// When.
    pub at: UnixTime,
    /// `username@issuer`.
    pub identity: String,
    /// Issuer short name.
    pub issuer: String,
    /// Client address.
    pub client_addr: String,
    /// Why.
    pub reason: String,
    /// Policy rules that decided (empty when no rule applied).
    pub rules: Vec<String>,
}

enum Job {
    Issue(Box<IssuanceRecord>, oneshot::Sender<Result<(), StoreError>>),
    Deny(DenialRecord, oneshot::Sender<Result<(), StoreError>>),
}

/// Handle to the database writer; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path` and
    /// starts its writer thread.
    pub fn open(path: &Path, metrics: &Metrics) -> Result<Store, StoreError> {
        let conn = open_connection(path, false)?;
        let (jobs, queue) = mpsc::channel();
        let path = path.to_path_buf();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("jit-ssh-ca-db".into())
            .spawn(move || {
                Writer {
                    conn,
                    path,
                    metrics,
                }
                .run(queue)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Store { jobs })
    }

    /// Records an issuance; returns once it is committed to disk.
    pub async fn record_issuance(&self, record: IssuanceRecord) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job::Issue(Box::new(record), done))
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Records a denial; returns once it is committed to disk.
    pub async fn record_denial(&self, record: DenialRecord) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job::Deny(record, done))
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the database; `read_only` connections neither create nor migrate.
pub fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let err = sqlite_error(path);
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
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
    // nor a power cut loses a certificate that was handed out.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
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

struct Writer {
    conn: Connection,
    path: PathBuf,
    metrics: Metrics,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut last_purge = std::time::Instant::now();
        loop {
            let first = match queue.recv_timeout(PURGE_INTERVAL) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.purge_spent_tokens();
                    last_purge = std::time::Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            if last_purge.elapsed() >= PURGE_INTERVAL {
                self.purge_spent_tokens();
                last_purge = std::time::Instant::now();
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let err = sqlite_error(&path);
        let mut results = Vec::with_capacity(batch.len());
        let outcome = (|| -> Result<(), StoreError> {
            let tx = self.conn.transaction().map_err(&err)?;
            for job in &batch {
                // Each job in its own savepoint: a replayed token rolls back
                // only its own rows, not its neighbours'.
                cached(&tx, "SAVEPOINT job", []).map_err(&err)?;
                let result = match job {
                    Job::Issue(record, _) => insert_issuance(&tx, record, &path),
                    Job::Deny(record, _) => insert_denial(&tx, record, &path),
                };
                if result.is_err() {
                    cached(&tx, "ROLLBACK TO job", []).map_err(&err)?;
                }
                cached(&tx, "RELEASE job", []).map_err(&err)?;
                results.push(result);
            }
            tx.commit().map_err(&err)
        })();
        if let Err(error) = &outcome {
            tracing::error!(%error, "database commit failed");
        }
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commit_batch_size.observe(batch.len() as f64);
        let mut results = results.into_iter();
        for job in batch {
            let result = match &outcome {
                Ok(()) => results.next().unwrap_or(Err(StoreError::Closed)),
                Err(_) => Err(StoreError::Closed),
            };
            let done = match job {
                Job::Issue(_, done) | Job::Deny(_, done) => done,
            };
            // The requester may have timed out; its record stands regardless.
            let _ = done.send(result);
        }
    }

    fn purge_spent_tokens(&self) {
        // Kept two minutes past expiry so that leeway on `exp` can never make
        // a forgotten token valid again.
        let cutoff = crate::unix_now().saturating_sub(120) as i64;
        if let Err(error) = self
            .conn
            .execute("DELETE FROM used_tokens WHERE expires_at < ?1", [cutoff])
        {
            tracing::warn!(%error, "purging spent token digests failed");
        }
    }
}

/// Runs `sql` through the connection's statement cache: the same few
/// statements run for every record, and parsing them each time showed in
/// profiles.
fn cached(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

fn insert_issuance(
    tx: &rusqlite::Transaction<'_>,
    r: &IssuanceRecord,
    path: &Path,
) -> Result<(), StoreError> {
    let err = sqlite_error(path);
    let inserted = cached(
        tx,
        "INSERT INTO used_tokens (digest, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![&r.token_digest[..], r.token_expires_at as i64],
    )
    .map_err(&err)?;
    if inserted == 0 {
        return Err(StoreError::Replayed);
    }
    let principals = serde_json::to_string(&r.principals).unwrap_or_default();
    let inserted = cached(
        tx,
        "INSERT INTO certificates (serial, key_id, issuer, subject, identity, principals, \
             valid_after, valid_before, key_fingerprint, client_addr, rule, issued_at, certificate) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING",
            params![
                r.serial,
                r.key_id,
                r.issuer,
                r.subject,
                r.identity,
                principals,
                r.valid_after as i64,
                r.valid_before as i64,
                r.key_fingerprint,
                r.client_addr,
                r.rule,
                r.issued_at as i64,
                r.certificate
            ],
    )
    .map_err(&err)?;
    if inserted == 0 {
        return Err(StoreError::DuplicateSerial);
    }
    cached(
        tx,
        "INSERT INTO audit_events (at, kind, identity, issuer, serial, client_addr, detail, rules) \
         VALUES (?1, 'issued', ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.issued_at as i64,
            r.identity,
            r.issuer,
            r.serial,
            r.client_addr,
            r.key_id,
            serde_json::to_string(&r.rule.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into())
        ],
    )
    .map_err(&err)?;
    Ok(())
}

fn insert_denial(
    tx: &rusqlite::Transaction<'_>,
    r: &DenialRecord,
    path: &Path,
) -> Result<(), StoreError> {
    cached(
        tx,
        "INSERT INTO audit_events (at, kind, identity, issuer, serial, client_addr, detail, rules) \
         VALUES (?1, 'denied', ?2, ?3, NULL, ?4, ?5, ?6)",
        params![
            r.at as i64,
            r.identity,
            r.issuer,
            r.client_addr,
            r.reason,
            serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into())
        ],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// Writes a consistent copy of the database at `path` to `out` while the CA
/// may be running (SQLite's online backup), refusing to overwrite `out`.
/// Returns the number of issued certificates in the copy.
pub fn backup(path: &Path, out: &Path) -> Result<u64, StoreError> {
    let err = sqlite_error(path);
    if out.exists() {
        return Err(StoreError::Sqlite {
            path: out.to_path_buf(),
            source: rusqlite::Error::InvalidPath(out.to_path_buf()),
        });
    }
    let source = open_connection(path, true)?;
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created 0600 before SQLite writes into it: the record names people.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|_| StoreError::Sqlite {
                path: out.to_path_buf(),
                source: rusqlite::Error::InvalidPath(out.to_path_buf()),
            })?;
    }
    let mut target = Connection::open(out).map_err(sqlite_error(out))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(&err)?;
        backup
            .run_to_completion(256, Duration::from_millis(5), None)
            .map_err(&err)?;
    }
    // The copy keeps no WAL: one self-contained file.
    target
        .execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(sqlite_error(out))?;
    let count: i64 = target
        .query_row("SELECT count(*) FROM certificates", [], |row| row.get(0))
        .map_err(sqlite_error(out))?;
    Ok(count as u64)
}

/// One line of `jit-ssh-ca audit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: UnixTime,
    /// `issued` or `denied`.
    pub event: String,
    /// `username@issuer`.
    pub identity: String,
    /// Issuer short name.
    pub issuer: String,
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
        return Err(StoreError::Sqlite {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
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
             c.valid_before, c.key_fingerprint, e.client_addr, e.detail, e.rules \
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(serial: &str, digest: u8) -> IssuanceRecord {
        IssuanceRecord {
            serial: serial.into(),
            key_id: format!("jit-ssh user=alice issuer=corp serial={serial}"),
            issuer: "corp".into(),
            subject: "user-alice".into(),
            identity: "alice@corp".into(),
            principals: vec!["alice".into()],
            valid_after: 100,
            valid_before: 400,
            key_fingerprint: "SHA256:abc".into(),
            client_addr: "127.0.0.1".into(),
            rule: "builtin-username".into(),
            issued_at: 160,
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
            token_digest: [digest; 32],
            token_expires_at: u64::MAX / 4,
        }
    }

    #[tokio::test]
    async fn issuances_are_on_disk_when_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store
            .record_issuance(record("1", 1))
            .await
            .expect("recorded");
        // A second, independent connection sees the committed row.
        let entries = read_audit(&path, &AuditFilter::default()).expect("read");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].serial.as_deref(), Some("1"));
        assert_eq!(
            entries[0].principals.as_deref(),
            Some(&["alice".to_string()][..])
        );
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

    #[tokio::test]
    async fn concurrent_requests_share_transactions_but_fail_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let store = store.clone();
            // Every 10th request reuses token 0: exactly one of those wins.
            let digest = if i % 10 == 0 { 0 } else { (i % 250) as u8 + 1 };
            let mut r = record(&format!("{}", i + 1), digest);
            r.token_digest[1] = (i / 250) as u8;
            tasks.push(tokio::spawn(async move { store.record_issuance(r).await }));
        }
        let mut ok = 0;
        for task in tasks {
            if task.await.expect("join").is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 200 - 19);
        assert_eq!(
            read_audit(&path, &AuditFilter::default())
                .expect("read")
                .len(),
            ok
        );
    }

    #[tokio::test]
    async fn backup_is_a_consistent_private_copy() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        store.record_issuance(record("2", 2)).await.expect("issued");
        let out = dir.path().join("backup.db");
        assert_eq!(backup(&path, &out).expect("backup"), 2);
        let mode = std::fs::metadata(&out).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read_audit(&out, &AuditFilter::default())
                .expect("read")
                .len(),
            2
        );
        assert!(backup(&path, &out).is_err(), "never overwrites");
    }

    #[tokio::test]
    async fn audit_filters_by_identity_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("issued");
        store
            .record_denial(DenialRecord {
                at: 500,
                identity: "bob@corp".into(),
                issuer: "corp".into(),
                client_addr: "127.0.0.1".into(),
                reason: "principal \"root\" is not granted".into(),
                rules: vec!["contractors-no-root".into()],
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
