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
    /// The identity is revoked: no certificate may be issued to it.
    #[error("identity {0} is revoked")]
    RevokedIdentity(String),
    /// The subject key is revoked: no certificate may be issued for it.
    #[error("key {0} is revoked")]
    RevokedKey(String),
    /// No certificate with this serial was issued here.
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownCertificate(String),
    /// Nothing to lift: the target is not revoked.
    #[error("{0} is not revoked")]
    NotRevoked(String),
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    /// One certificate.
    Serial(u64),
    /// Every certificate of `user@issuer`, and future issuance to it.
    Identity(String),
    /// Every certificate for the key with this `SHA256:...` fingerprint, and
    /// future issuance for it.
    Key(String),
}

impl RevocationTarget {
    /// `serial`, `identity` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            RevocationTarget::Serial(_) => "serial",
            RevocationTarget::Identity(_) => "identity",
            RevocationTarget::Key(_) => "key",
        }
    }

    /// The serial (decimal), identity or fingerprint.
    pub fn value(&self) -> String {
        match self {
            RevocationTarget::Serial(serial) => serial.to_string(),
            RevocationTarget::Identity(v) | RevocationTarget::Key(v) => v.clone(),
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
    /// Who: `user@issuer`, or `operator@local` for the CLI on the CA host.
    pub actor: String,
    /// The actor's issuer short name (`local` for the CLI).
    pub actor_issuer: String,
    /// Client address (`local` for the CLI).
    pub client_addr: String,
    /// The admin rule that authorised it (empty for owners and the CLI).
    pub rules: Vec<String>,
    /// When.
    pub at: UnixTime,
    /// The admin's ID token, spent in the same transaction (single use).
    pub spent_token: Option<([u8; 32], UnixTime)>,
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
    /// Increases with every revocation and lift.
    pub version: u64,
    /// Revoked serials of certificates not yet expired.
    pub serials: Vec<u64>,
    /// `SHA256:...` fingerprints of revoked keys.
    pub key_fingerprints: Vec<String>,
}

/// A recorded certificate, as owner revocation needs it.
#[derive(Debug, Clone)]
pub struct CertificateEntry {
    /// `user@issuer`.
    pub identity: String,
    /// Issuer short name.
    pub issuer: String,
    /// The certificate, one OpenSSH line.
    pub certificate: String,
    /// End of validity.
    pub valid_before: UnixTime,
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

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Issue(Box<IssuanceRecord>, Reply<()>),
    Deny(DenialRecord, Reply<()>),
    Revoke(Box<RevocationRecord>, Reply<Revoked>),
    Lift(Box<RevocationRecord>, Reply<Revoked>),
    RevokedSet(UnixTime, Reply<RevokedSet>),
    Certificate(String, Reply<Option<CertificateEntry>>),
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

    /// Revokes `record.target`; returns once committed.
    pub async fn revoke(&self, record: RevocationRecord) -> Result<Revoked, StoreError> {
        self.ask(|done| Job::Revoke(Box::new(record), done)).await
    }

    /// Lifts the revocation of `record.target`; returns once committed.
    pub async fn lift(&self, record: RevocationRecord) -> Result<Revoked, StoreError> {
        self.ask(|done| Job::Lift(Box::new(record), done)).await
    }

    /// The current revocation state, without certificates expired at `now`.
    pub async fn revoked_set(&self, now: UnixTime) -> Result<RevokedSet, StoreError> {
        self.ask(|done| Job::RevokedSet(now, done)).await
    }

    /// The recorded certificate with this serial.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateEntry>, StoreError> {
        self.ask(|done| Job::Certificate(serial.to_string(), done))
            .await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (done, result) = oneshot::channel();
        self.jobs.send(job(done)).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }
}

/// Revokes directly in the database file (`jit-ssh-ca revoke` on the CA
/// host), safe while the server runs: SQLite serialises the writers.
pub fn revoke_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    let mut conn = open_connection(path, false)?;
    let tx = conn.transaction().map_err(sqlite_error(path))?;
    let revoked = revoke_in(&tx, record, path)?;
    tx.commit().map_err(sqlite_error(path))?;
    Ok(revoked)
}

/// Lifts directly in the database file (`jit-ssh-ca unrevoke`).
pub fn lift_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    let mut conn = open_connection(path, false)?;
    let tx = conn.transaction().map_err(sqlite_error(path))?;
    let lifted = lift_in(&tx, record, path)?;
    tx.commit().map_err(sqlite_error(path))?;
    Ok(lifted)
}

fn krl_version(conn: &Connection) -> rusqlite::Result<u64> {
    // The time of the latest revoke or lift: it grows with every change made
    // in a later second, and, unlike a counter, keeps growing after the
    // database is restored from a backup, so hosts (which refuse a KRL older
    // than theirs) accept the first change made after a restore.
    conn.query_row(
        "SELECT coalesce(max(at), 0) FROM audit_events WHERE kind IN ('revoked', 'unrevoked')",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|v| v as u64)
}

/// Revokes `r.target` inside `tx`: lists the certificate(s) in the KRL,
/// bans an identity or key from issuance, spends `r.spent_token`, and writes
/// the `revoked` audit event, all or nothing with the rest of `tx`. Ending an
/// access grant early (`jit-ssh done`) calls this once per serial issued under
/// the grant, in the same transaction that ends it; a serial already revoked
/// or expired is accepted and lists nothing new.
pub(crate) fn revoke_in(
    tx: &rusqlite::Transaction<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend_token(tx, r, path)?;
    let at = r.at as i64;
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
        RevocationTarget::Identity(identity) => {
            unexpired(tx, "identity", identity, at).map_err(&err)?
        }
        RevocationTarget::Key(fingerprint) => {
            unexpired(tx, "key_fingerprint", fingerprint, at).map_err(&err)?
        }
    };
    let insert =
        "INSERT INTO revocations (kind, value, reason, revoked_by, revoked_at, expires_at) \
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING";
    let mut serials = Vec::new();
    // An expired certificate needs no listing: sshd refuses it anyway.
    for (serial, valid_before) in certificates.iter().filter(|(_, until)| *until > at) {
        let inserted = tx
            .execute(
                insert,
                params!["serial", serial, r.reason, r.actor, at, valid_before],
            )
            .map_err(&err)?;
        if inserted > 0 {
            serials.push(serial.clone());
        }
    }
    if !matches!(r.target, RevocationTarget::Serial(_)) {
        tx.execute(
            insert,
            params![
                r.target.kind(),
                r.target.value(),
                r.reason,
                r.actor,
                at,
                None::<i64>
            ],
        )
        .map_err(&err)?;
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
        krl_version: krl_version(tx).map_err(&err)?,
    })
}

fn lift_in(
    tx: &rusqlite::Transaction<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend_token(tx, r, path)?;
    let lifted = tx
        .execute(
            "UPDATE revocations SET lifted_by = ?1, lifted_at = ?2 \
             WHERE kind = ?3 AND value = ?4 AND lifted_at IS NULL",
            params![r.actor, r.at as i64, r.target.kind(), r.target.value()],
        )
        .map_err(&err)?;
    if lifted == 0 {
        return Err(StoreError::NotRevoked(r.target.to_string()));
    }
    let detail = format!("{}: {}", r.target, r.reason);
    audit_revocation(tx, "unrevoked", r, &detail, path)?;
    Ok(Revoked {
        serials: Vec::new(),
        krl_version: krl_version(tx).map_err(&err)?,
    })
}

fn unexpired(
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

fn spend_token(
    tx: &rusqlite::Transaction<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<(), StoreError> {
    let Some((digest, expires_at)) = r.spent_token else {
        return Ok(());
    };
    let inserted = tx
        .execute(
            "INSERT INTO used_tokens (digest, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![&digest[..], expires_at as i64],
        )
        .map_err(sqlite_error(path))?;
    if inserted == 0 {
        return Err(StoreError::Replayed);
    }
    Ok(())
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
    tx.execute(
        "INSERT INTO audit_events (at, kind, identity, issuer, serial, client_addr, detail, rules) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            r.at as i64,
            kind,
            r.actor,
            r.actor_issuer,
            serial,
            r.client_addr,
            detail,
            serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into())
        ],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// The revocation state at `now`, read from `conn`.
pub fn read_revoked_set(
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
        version: krl_version(conn).map_err(&err)?,
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
            // Issuances and denials are group-committed; the rare revocation
            // jobs run alone, in order with the batches around them.
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Issue(..) | Job::Deny(..) => batch.push(job),
                    other => {
                        if !batch.is_empty() {
                            self.commit_batch(std::mem::take(&mut batch));
                        }
                        self.other_job(other);
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
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
                    // `run` hands these to `other_job`, never to a batch.
                    Job::Revoke(..)
                    | Job::Lift(..)
                    | Job::RevokedSet(..)
                    | Job::Certificate(..) => Err(StoreError::Closed),
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
                Job::Revoke(..) | Job::Lift(..) | Job::RevokedSet(..) | Job::Certificate(..) => {
                    continue
                }
            };
            // The requester may have timed out; its record stands regardless.
            let _ = done.send(result);
        }
    }

    fn other_job(&mut self, job: Job) {
        let path = self.path.clone();
        let err = sqlite_error(&path);
        match job {
            Job::Revoke(record, done) => {
                let result = self.in_transaction(|tx| revoke_in(tx, &record, &path));
                let _ = done.send(result);
            }
            Job::Lift(record, done) => {
                let result = self.in_transaction(|tx| lift_in(tx, &record, &path));
                let _ = done.send(result);
            }
            Job::RevokedSet(now, done) => {
                let _ = done.send(read_revoked_set(&self.conn, now, &path));
            }
            Job::Certificate(serial, done) => {
                let result = self
                    .conn
                    .query_row(
                        "SELECT identity, issuer, certificate, valid_before FROM certificates \
                         WHERE serial = ?1",
                        [&serial],
                        |row| {
                            Ok(CertificateEntry {
                                identity: row.get(0)?,
                                issuer: row.get(1)?,
                                certificate: row.get(2)?,
                                valid_before: row.get::<_, i64>(3)? as UnixTime,
                            })
                        },
                    )
                    .optional()
                    .map_err(&err);
                let _ = done.send(result);
            }
            Job::Issue(_, done) | Job::Deny(_, done) => {
                let _ = done.send(Err(StoreError::Closed));
            }
        }
    }

    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let err = sqlite_error(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        let value = work(&tx)?;
        tx.commit().map_err(&err)?;
        Ok(value)
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
    // Checked in the issuing transaction, so that no certificate slips out
    // between a revocation's commit and this one.
    let banned: Option<String> = tx
        .prepare_cached(
            "SELECT kind FROM revocations WHERE lifted_at IS NULL AND \
             ((kind = 'identity' AND value = ?1) OR (kind = 'key' AND value = ?2)) LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![r.identity, r.key_fingerprint], |row| row.get(0))
                .optional()
        })
        .map_err(&err)?;
    match banned.as_deref() {
        Some("identity") => return Err(StoreError::RevokedIdentity(r.identity.clone())),
        Some(_) => return Err(StoreError::RevokedKey(r.key_fingerprint.clone())),
        None => {}
    }
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
    /// `issued`, `denied`, `revoked` or `unrevoked`.
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

    fn revocation(target: RevocationTarget, at: UnixTime) -> RevocationRecord {
        RevocationRecord {
            target,
            reason: "test".into(),
            actor: "carol@corp".into(),
            actor_issuer: "corp".into(),
            client_addr: "127.0.0.1".into(),
            rules: vec!["admins".into()],
            at,
            spent_token: None,
        }
    }

    #[tokio::test]
    async fn revocations_list_serials_until_expiry_and_ban_until_lifted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
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
        assert_eq!(set.version, all.krl_version);
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
        assert_eq!(expired.krl_version, 400, "the time of the latest change");
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
        r.spent_token = Some(([7; 32], u64::MAX / 4));
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
