//! The durable record: one SQLite database (WAL, `synchronous=FULL`) in the
//! data directory.
//!
//! Writes go through a single writer thread that commits whatever requests are
//! waiting in one transaction (group commit): under load, hundreds of
//! issuances share one fsync, yet each caller is answered only after the
//! transaction holding its own rows has committed. An issuance writes the
//! certificate row, its audit event and the ID token's digest together, so a
//! token is spent if and only if its certificate is on record.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::access::{
    policy_approver, AccessRequest, Approval, InstantApproval, RequestError, RequestStatus, Review,
};
use crate::metrics::Metrics;
use crate::UnixTime;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// Longest wait for more records to join a batch, once the previous batch
/// showed that requests arrive concurrently. Every commit costs an fsync and
/// rewrites the half-filled last page of each table, so under load a batch of
/// 30 costs far less per record than a batch of 10; an idle CA (batches of
/// one) does not wait at all.
const BATCH_LINGER: Duration = Duration::from_micros(800);
/// How long a lingering writer sleeps before it looks for more records.
const LINGER_NAP: Duration = Duration::from_micros(100);
/// A lingering batch is complete once it is as large as the previous one, or
/// this large.
const MIN_LINGER_BATCH: usize = 8;
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
    // random page each per certificate: most of the writer's disk traffic.
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
    /// The serial is on record already (a clock set back across a restart).
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
    /// A read-only reader found a database the server has not migrated yet.
    #[error("database {0} has an older schema; start the server once to migrate it")]
    OlderSchema(PathBuf),
    /// The writer thread is gone.
    #[error("the database writer has stopped")]
    Closed,
    /// A transaction without the serving writer's spent-token set (the
    /// admin CLI's offline changes) tried to spend a token: only the server
    /// can tell a replay.
    #[error("an ID token can only be spent by the server's database writer")]
    NoSpentTokens,
    /// Another server process writes this database.
    #[error("database {0} is in use by another jit-ssh-ca server (one server per database)")]
    InUse(PathBuf),
    /// The lock file beside the database could not be opened or locked.
    #[error("lock file {path}: {source}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    /// An access request transition the rules refuse.
    #[error(transparent)]
    Request(#[from] RequestError),
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
    /// Names of the deciding rules.
    pub rules: Vec<String>,
    /// Signing time.
    pub issued_at: UnixTime,
    /// The certificate, one OpenSSH line.
    pub certificate: String,
    /// SHA-256 of the ID token that was spent.
    pub token_digest: [u8; 32],
    /// Until when that digest must be remembered.
    pub token_expires_at: UnixTime,
    /// Approved access requests whose principals the certificate carries.
    pub request_ids: Vec<u64>,
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

/// A new access request, as recorded.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// `user@issuer` of the requester.
    pub requester: String,
    /// The requester's issuer short name.
    pub issuer: String,
    /// Principals asked for, never empty.
    pub principals: Vec<String>,
    /// Why.
    pub reason: String,
    /// Window length asked for, seconds.
    pub window_secs: u64,
    /// The policy rules whose approvers decide it.
    pub rules: Vec<String>,
    /// When.
    pub at: UnixTime,
    /// When it expires unless decided.
    pub expires_at: UnixTime,
    /// Client address.
    pub client_addr: String,
    /// The requester's ID token, spent in the same transaction.
    pub spent_token: Option<([u8; 32], UnixTime)>,
    /// Approved at once (break-glass or by the policy), or `None` to wait
    /// for approvers.
    pub approval: Option<InstantApproval>,
    /// The window opens no earlier than this.
    pub starts_at: Option<UnixTime>,
    /// The window opens with the first certificate under it.
    pub from_first_use: bool,
}

/// What is done to an existing access request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestChange {
    /// Adds an approval; the request is approved, and its window opens, once
    /// it has `required` approvals.
    Approve {
        /// Approvals needed (at least 1).
        required: u32,
        /// Optional comment.
        comment: String,
    },
    /// Denies it.
    Deny {
        /// Why.
        reason: String,
    },
    /// Withdraws it while pending, or closes its window early and revokes the
    /// certificates issued under it.
    End {
        /// Why.
        reason: String,
    },
    /// Marks a break-glass request reviewed.
    Review {
        /// Optional comment.
        comment: String,
    },
}

/// Who changes which access request, when.
#[derive(Debug, Clone)]
pub struct RequestAction {
    /// The request.
    pub id: u64,
    /// What.
    pub change: RequestChange,
    /// Who: `user@issuer`.
    pub actor: String,
    /// The actor's issuer short name.
    pub actor_issuer: String,
    /// Client address.
    pub client_addr: String,
    /// The policy rules that authorised it.
    pub rules: Vec<String>,
    /// When.
    pub at: UnixTime,
    /// The actor's ID token, spent in the same transaction.
    pub spent_token: Option<([u8; 32], UnixTime)>,
}

/// The outcome of a [`RequestAction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestChanged {
    /// The request after the change.
    pub request: AccessRequest,
    /// What ending it revoked (empty otherwise).
    pub revoked: Revoked,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type Work = Box<dyn FnOnce(&mut WriterDb, &Path) + Send>;
type ReadWork = Box<dyn FnOnce(&Connection, &Path) + Send>;

enum Job {
    /// Answered with the record itself, so that the serving thread that
    /// made its dozen allocations frees them: freed by the writer, glibc
    /// handed each back to that thread's arena under its lock, and the
    /// writer's share of malloc grew where the cores share no cache.
    Issue(Box<IssuanceRecord>, Reply<Box<IssuanceRecord>>),
    Deny(DenialRecord, Reply<()>),
    Revoke(Box<RevocationRecord>, Reply<Revoked>),
    Lift(Box<RevocationRecord>, Reply<Revoked>),
    RevokedSet(UnixTime, Reply<RevokedSet>),
    Certificate(String, Reply<Option<CertificateEntry>>),
    /// Any other work on the writer's connection; it answers for itself.
    Run(Work),
    /// A read of access requests only; it answers for itself.
    ReadRequests(ReadWork),
}

/// Handle to the database writer; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// No approved access request has a window open at or after this time.
    /// Every issuance asks for open grants; while none can exist (the usual
    /// case) the answer needs no trip to the database writer. Only ever
    /// raised, by approvals this process commits, so it can be stale only
    /// upwards (a needless read), never downwards.
    grants_until: Arc<AtomicU64>,
    /// The serial of the last certificate on record when the store opened.
    last_serial: u64,
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path` and
    /// starts its writer thread.
    pub fn open(path: &Path, metrics: &Metrics) -> Result<Store, StoreError> {
        let lock = lock_for_serving(path)?;
        let conn = open_connection(path, false)?;
        let spent = load_spent_tokens(&conn, path)?;
        let grants_until: i64 = conn
            .query_row(
                "SELECT coalesce(max(coalesce(window_end, expires_at + window_secs)), 0) \
                 FROM access_requests WHERE status = 'approved'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite_error(path))?;
        let grants_until = Arc::new(AtomicU64::new(grants_until.max(0) as u64));
        let last_serial: Option<String> = conn
            .query_row(
                "SELECT serial FROM certificates ORDER BY rowid DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error(path))?;
        let last_serial = last_serial.and_then(|s| s.parse().ok()).unwrap_or(0);
        let (jobs, queue) = mpsc::channel();
        let path = path.to_path_buf();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("jit-ssh-ca-db".into())
            .spawn(move || {
                Writer {
                    db: WriterDb { conn, spent },
                    _lock: lock,
                    path,
                    metrics,
                }
                .run(queue)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Store {
            jobs,
            grants_until,
            last_serial,
        })
    }

    /// The serial of the last certificate on record when the store opened
    /// (0 for none): new serials continue after it.
    pub fn last_serial(&self) -> u64 {
        self.last_serial
    }

    /// Records an issuance; returns once it is committed to disk.
    pub async fn record_issuance(&self, record: IssuanceRecord) -> Result<(), StoreError> {
        self.ask(|done| Job::Issue(Box::new(record), done))
            .await
            .map(drop)
    }

    /// Records a denial; returns once it is committed to disk.
    pub async fn record_denial(&self, record: DenialRecord) -> Result<(), StoreError> {
        self.ask(|done| Job::Deny(record, done)).await
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

    /// Records a new access request (spending the requester's token);
    /// returns it once committed.
    pub async fn create_request(&self, new: NewRequest) -> Result<AccessRequest, StoreError> {
        let request = self
            .run(move |db, path| {
                let tx = db.transaction().map_err(sqlite_error(path))?;
                let request = create_request_in(&tx, &new, path)?;
                tx.commit().map_err(sqlite_error(path))?;
                Ok(request)
            })
            .await?;
        if let Some(end) = request.latest_end() {
            self.grants_until.fetch_max(end, Ordering::SeqCst);
        }
        Ok(request)
    }

    /// Requests still pending at `now` (not expired), newest first.
    pub async fn pending_requests(&self, now: UnixTime) -> Result<Vec<AccessRequest>, StoreError> {
        self.read_requests(move |conn, path| {
            select_requests(
                conn,
                "status = 'pending' AND expires_at > ?1 ORDER BY id DESC",
                [now as i64],
                path,
            )
        })
        .await
    }

    /// Break-glass requests nobody has reviewed yet, newest first.
    pub async fn unreviewed_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        self.read_requests(|conn, path| {
            select_requests(
                conn,
                "break_glass = 1 AND reviewed_at IS NULL ORDER BY id DESC",
                [],
                path,
            )
        })
        .await
    }

    /// Applies `action` if the request's state allows it at `action.at`
    /// (checked inside the transaction that records it); returns the request
    /// after the change.
    pub async fn change_request(
        &self,
        action: RequestAction,
    ) -> Result<RequestChanged, StoreError> {
        let changed = self
            .run(move |db, path| {
                let tx = db.transaction().map_err(sqlite_error(path))?;
                let changed = change_request_in(&tx, &action, path)?;
                tx.commit().map_err(sqlite_error(path))?;
                Ok(changed)
            })
            .await?;
        if let Some(end) = changed.request.latest_end() {
            self.grants_until.fetch_max(end, Ordering::SeqCst);
        }
        Ok(changed)
    }

    /// The access request with this id.
    pub async fn request(&self, id: u64) -> Result<Option<AccessRequest>, StoreError> {
        self.read_requests(move |conn, path| read_request(conn, id, path))
            .await
    }

    /// Access requests made since `since`, newest first: those of
    /// `requester`, or everyone's when `None`.
    pub async fn requests(
        &self,
        requester: Option<String>,
        since: UnixTime,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        self.read_requests(move |conn, path| read_requests(conn, requester.as_deref(), since, path))
            .await
    }

    /// Approved access requests of `requester` whose window is open at `now`
    /// (or would open with a certificate issued now, from first use).
    pub async fn open_grants(
        &self,
        requester: String,
        now: UnixTime,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        if now >= self.grants_until.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.read_requests(move |conn, path| open_grants_in(conn, &requester, now, path))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WriterDb, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(move |done: Reply<T>| {
            Job::Run(Box::new(move |db, path| {
                // The caller may have timed out; what was committed stands.
                let _ = done.send(work(db, path));
            }))
        })
        .await
    }

    /// Like [`Store::run`] for work that only reads access requests and
    /// approvals: it runs without cutting the waiting group commit short.
    async fn read_requests<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(move |done: Reply<T>| {
            Job::ReadRequests(Box::new(move |conn, path| {
                let _ = done.send(work(conn, path));
            }))
        })
        .await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (done, result) = oneshot::channel();
        self.jobs.send(job(done)).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }
}

/// Approved access requests of `requester` whose window is open at `now`,
/// read directly from the database file (`jit-ssh-ca policy explain`), so
/// that an explanation counts the approvals the server would.
pub fn open_grants_offline(
    path: &Path,
    requester: &str,
    now: UnixTime,
) -> Result<Vec<AccessRequest>, StoreError> {
    let conn = open_connection(path, true)?;
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite_error(path))?;
    if version < MIGRATIONS.len() {
        return Err(StoreError::OlderSchema(path.to_path_buf()));
    }
    open_grants_in(&conn, requester, now, path)
}

fn open_grants_in(
    conn: &Connection,
    requester: &str,
    now: UnixTime,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests \
             WHERE requester = ?1 AND status = 'approved' AND (window_end > ?2 \
             OR (window_end IS NULL AND from_first_use = 1 AND expires_at > ?2))"
        ))
        .map_err(&err)?;
    let rows = statement
        .query_map(params![requester, now as i64], request_row)
        .map_err(&err)?;
    let open = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
    Ok(open
        .into_iter()
        .filter(|r| r.open_window(now).is_some())
        .collect())
}

/// Revokes directly in the database file (`jit-ssh-ca revoke` on the CA
/// host), safe while the server runs: SQLite serialises the writers.
pub fn revoke_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    let mut conn = open_connection(path, false)?;
    let tx = WriteTx::new(&mut conn, None).map_err(sqlite_error(path))?;
    let revoked = revoke_in(&tx, record, path)?;
    tx.commit().map_err(sqlite_error(path))?;
    Ok(revoked)
}

/// Lifts directly in the database file (`jit-ssh-ca unrevoke`).
pub fn lift_offline(path: &Path, record: &RevocationRecord) -> Result<Revoked, StoreError> {
    let mut conn = open_connection(path, false)?;
    let tx = WriteTx::new(&mut conn, None).map_err(sqlite_error(path))?;
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
    tx: &WriteTx<'_>,
    r: &RevocationRecord,
    path: &Path,
) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend(tx, r.spent_token, path)?;
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

fn lift_in(tx: &WriteTx<'_>, r: &RevocationRecord, path: &Path) -> Result<Revoked, StoreError> {
    let err = sqlite_error(path);
    spend(tx, r.spent_token, path)?;
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

fn create_request_in(
    tx: &WriteTx<'_>,
    new: &NewRequest,
    path: &Path,
) -> Result<AccessRequest, StoreError> {
    let err = sqlite_error(path);
    spend(tx, new.spent_token, path)?;
    tx.execute(
        "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
         rules, status, created_at, expires_at, starts_at, from_first_use) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?10)",
        params![
            new.requester,
            new.issuer,
            json_list(&new.principals),
            new.reason,
            new.window_secs as i64,
            json_list(&new.rules),
            new.at as i64,
            new.expires_at as i64,
            new.starts_at.map(|t| t as i64),
            new.from_first_use
        ],
    )
    .map_err(&err)?;
    let id = tx.last_insert_rowid() as u64;
    let detail = format!(
        "request {id}: principals {} for {}s: {}",
        new.principals.join(","),
        new.window_secs,
        new.reason
    );
    audit_request(
        tx,
        "request_created",
        (&new.requester, &new.issuer, &new.client_addr),
        new.at,
        &detail,
        &new.rules,
        path,
    )?;
    if let Some(approval) = &new.approval {
        let (approvers, kind, detail, break_glass) = match approval {
            InstantApproval::BreakGlass => (
                vec![(new.requester.clone(), "break-glass".to_string())],
                "request_break_glass",
                format!(
                    "request {id}: BREAK-GLASS: approved by its requester, needs review: {}",
                    new.reason
                ),
                true,
            ),
            InstantApproval::Policy(rules) => (
                rules
                    .iter()
                    .map(|rule| (policy_approver(rule), "auto-approved".to_string()))
                    .collect(),
                "request_approved",
                format!(
                    "request {id}: approved by the policy ({})",
                    rules
                        .iter()
                        .map(|r| policy_approver(r))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            ),
        };
        for (approver, comment) in &approvers {
            tx.execute(
                "INSERT INTO request_approvals (request_id, approver, at, comment) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![id as i64, approver, new.at as i64, comment],
            )
            .map_err(&err)?;
        }
        let created =
            read_request(tx, id, path)?.ok_or(StoreError::Request(RequestError::Unknown(id)))?;
        let (start, end, expires) = created.approved_window(new.at);
        tx.execute(
            "UPDATE access_requests SET status = 'approved', window_start = ?2, window_end = ?3, \
             expires_at = ?4, break_glass = ?5 WHERE id = ?1",
            params![
                id as i64,
                start.map(|t| t as i64),
                end.map(|t| t as i64),
                expires as i64,
                break_glass
            ],
        )
        .map_err(&err)?;
        let actor = approvers
            .first()
            .map(|(a, _)| a.clone())
            .unwrap_or_default();
        audit_request(
            tx,
            kind,
            (&actor, &new.issuer, &new.client_addr),
            new.at,
            &detail,
            &new.rules,
            path,
        )?;
    }
    read_request(tx, id, path)?.ok_or(StoreError::Request(RequestError::Unknown(id)))
}

fn change_request_in(
    tx: &WriteTx<'_>,
    a: &RequestAction,
    path: &Path,
) -> Result<RequestChanged, StoreError> {
    let err = sqlite_error(path);
    let request = read_request(tx, a.id, path)?.ok_or(RequestError::Unknown(a.id))?;
    let at = a.at as i64;
    let mut revoked = Revoked {
        serials: Vec::new(),
        krl_version: 0,
    };
    let (kind, detail) = match &a.change {
        RequestChange::Approve { required, comment } => {
            request.check_approval(&a.actor, a.at)?;
            tx.execute(
                "INSERT INTO request_approvals (request_id, approver, at, comment) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![a.id as i64, a.actor, at, comment],
            )
            .map_err(&err)?;
            let approvals = request.approvals.len() + 1;
            if approvals >= (*required).max(1) as usize {
                let (start, end, expires) = request.approved_window(a.at);
                tx.execute(
                    "UPDATE access_requests SET status = 'approved', window_start = ?2, \
                     window_end = ?3, expires_at = ?4 WHERE id = ?1",
                    params![
                        a.id as i64,
                        start.map(|t| t as i64),
                        end.map(|t| t as i64),
                        expires as i64
                    ],
                )
                .map_err(&err)?;
                (
                    "request_approved",
                    format!("request {}: approved: {comment}", a.id),
                )
            } else {
                (
                    "request_approval",
                    format!(
                        "request {}: approval {approvals} of {required}: {comment}",
                        a.id
                    ),
                )
            }
        }
        RequestChange::Deny { reason } => {
            request.check_denial(a.at)?;
            tx.execute(
                "UPDATE access_requests SET status = 'denied', closed_by = ?2, \
                 closed_reason = ?3 WHERE id = ?1",
                params![a.id as i64, a.actor, reason],
            )
            .map_err(&err)?;
            (
                "request_denied",
                format!("request {}: denied: {reason}", a.id),
            )
        }
        RequestChange::End { reason } => {
            request.check_end(a.at)?;
            // A window closed early ends now; a withdrawn request never opened.
            tx.execute(
                "UPDATE access_requests SET status = 'ended', closed_by = ?2, closed_reason = ?3, \
                 window_end = CASE WHEN window_end IS NULL THEN NULL ELSE min(window_end, ?4) END \
                 WHERE id = ?1",
                params![a.id as i64, a.actor, reason, at],
            )
            .map_err(&err)?;
            let serials: Vec<String> = {
                let mut statement = tx
                    .prepare("SELECT serial FROM request_certificates WHERE request_id = ?1")
                    .map_err(&err)?;
                let rows = statement
                    .query_map([a.id as i64], |row| row.get(0))
                    .map_err(&err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(&err)?
            };
            for serial in serials {
                let Ok(serial) = serial.parse() else { continue };
                let record = RevocationRecord {
                    target: RevocationTarget::Serial(serial),
                    reason: format!("access request {} ended: {reason}", a.id),
                    actor: a.actor.clone(),
                    actor_issuer: a.actor_issuer.clone(),
                    client_addr: a.client_addr.clone(),
                    rules: a.rules.clone(),
                    at: a.at,
                    spent_token: None,
                };
                let one = revoke_in(tx, &record, path)?;
                revoked.serials.extend(one.serials);
                revoked.krl_version = one.krl_version;
            }
            (
                "request_ended",
                format!(
                    "request {}: ended: {reason} ({} certificate(s) revoked)",
                    a.id,
                    revoked.serials.len()
                ),
            )
        }
        RequestChange::Review { comment } => {
            request.check_review(&a.actor)?;
            tx.execute(
                "UPDATE access_requests SET reviewed_by = ?2, reviewed_at = ?3, \
                 review_comment = ?4 WHERE id = ?1",
                params![a.id as i64, a.actor, at, comment],
            )
            .map_err(&err)?;
            (
                "request_reviewed",
                format!("request {}: break-glass reviewed: {comment}", a.id),
            )
        }
    };
    // Spent last: a refused change leaves the token unspent only because the
    // whole transaction rolls back anyway.
    spend(tx, a.spent_token, path)?;
    audit_request(
        tx,
        kind,
        (&a.actor, &a.actor_issuer, &a.client_addr),
        a.at,
        &detail,
        &a.rules,
        path,
    )?;
    let request = read_request(tx, a.id, path)?.ok_or(RequestError::Unknown(a.id))?;
    Ok(RequestChanged { request, revoked })
}

/// Checks, in an issuing transaction, that request `id`'s window is open for
/// a certificate issued at `at`; returns the window to record when this
/// certificate is its first use.
fn check_request_window(
    tx: &rusqlite::Transaction<'_>,
    id: u64,
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
    let window = request.open_window(at).ok_or_else(closed)?;
    Ok(request.window_start.is_none().then_some(window))
}

fn audit_request(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    (identity, issuer, client_addr): (&str, &str, &str),
    at: UnixTime,
    detail: &str,
    rules: &[String],
    path: &Path,
) -> Result<(), StoreError> {
    insert_audit(
        tx,
        &AuditRow {
            at,
            kind,
            identity,
            issuer,
            serial: None,
            client_addr,
            detail,
            rules,
        },
        path,
    )
}

/// One row of `audit_events`.
struct AuditRow<'a> {
    at: UnixTime,
    kind: &'a str,
    identity: &'a str,
    issuer: &'a str,
    serial: Option<&'a str>,
    client_addr: &'a str,
    detail: &'a str,
    rules: &'a [String],
}

fn insert_audit(
    tx: &rusqlite::Transaction<'_>,
    row: &AuditRow<'_>,
    path: &Path,
) -> Result<(), StoreError> {
    cached(
        tx,
        "INSERT INTO audit_events (at, kind, identity, issuer, serial, client_addr, detail, rules) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            row.at as i64,
            row.kind,
            row.identity,
            row.issuer,
            row.serial,
            row.client_addr,
            row.detail,
            json_list(row.rules)
        ],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// A list of names as the JSON array stored in the database.
fn json_list(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

const REQUEST_COLUMNS: &str = "id, requester, principals, reason, window_secs, status, \
     created_at, expires_at, window_start, window_end, closed_by, closed_reason, rules, \
     break_glass, reviewed_by, reviewed_at, review_comment, starts_at, from_first_use";

fn request_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccessRequest> {
    let principals: String = row.get(2)?;
    let status: String = row.get(5)?;
    let rules: String = row.get(12)?;
    Ok(AccessRequest {
        id: row.get::<_, i64>(0)? as u64,
        requester: row.get(1)?,
        principals: serde_json::from_str(&principals).unwrap_or_default(),
        reason: row.get(3)?,
        window_secs: row.get::<_, i64>(4)? as u64,
        // The CHECK constraint admits only names `parse` knows.
        status: RequestStatus::parse(&status).unwrap_or(RequestStatus::Ended),
        created_at: row.get::<_, i64>(6)? as u64,
        expires_at: row.get::<_, i64>(7)? as u64,
        window_start: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        window_end: row.get::<_, Option<i64>>(9)?.map(|t| t as u64),
        approvals: Vec::new(),
        closed_by: row.get(10)?,
        closed_reason: row.get(11)?,
        rules: serde_json::from_str(&rules).unwrap_or_default(),
        break_glass: row.get::<_, i64>(13)? != 0,
        review: match (
            row.get::<_, Option<String>>(14)?,
            row.get::<_, Option<i64>>(15)?,
        ) {
            (Some(by), Some(at)) => Some(Review {
                by,
                at: at as u64,
                comment: row.get::<_, Option<String>>(16)?.unwrap_or_default(),
            }),
            _ => None,
        },
        starts_at: row.get::<_, Option<i64>>(17)?.map(|t| t as u64),
        from_first_use: row.get::<_, i64>(18)? != 0,
    })
}

fn approvals_of(conn: &Connection, id: u64) -> rusqlite::Result<Vec<Approval>> {
    let mut statement = conn.prepare_cached(
        "SELECT approver, at, comment FROM request_approvals WHERE request_id = ?1 ORDER BY at",
    )?;
    let rows = statement.query_map([id as i64], |row| {
        Ok(Approval {
            approver: row.get(0)?,
            at: row.get::<_, i64>(1)? as u64,
            comment: row.get(2)?,
        })
    })?;
    rows.collect()
}

/// The access request with this id, with its approvals.
pub fn read_request(
    conn: &Connection,
    id: u64,
    path: &Path,
) -> Result<Option<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let Some(mut request) = read_request_row(conn, id).map_err(&err)? else {
        return Ok(None);
    };
    request.approvals = approvals_of(conn, id).map_err(&err)?;
    Ok(Some(request))
}

/// The request `id` without its approvals.
fn read_request_row(conn: &Connection, id: u64) -> rusqlite::Result<Option<AccessRequest>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = ?1"
    ))?
    .query_row([id as i64], request_row)
    .optional()
}

/// Access requests created at or after `since`, newest first: those of
/// `requester`, or everyone's.
pub fn read_requests(
    conn: &Connection,
    requester: Option<&str>,
    since: UnixTime,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    select_requests(
        conn,
        "(?1 IS NULL OR requester = ?1) AND created_at >= ?2 ORDER BY id DESC",
        params![requester, since as i64],
        path,
    )
}

/// The access requests matching `condition` (an SQL `WHERE` clause, with
/// its `ORDER BY`), each with its approvals.
fn select_requests(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
    path: &Path,
) -> Result<Vec<AccessRequest>, StoreError> {
    let err = sqlite_error(path);
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE {condition}"
        ))
        .map_err(&err)?;
    let rows = statement.query_map(params, request_row).map_err(&err)?;
    let mut requests = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
    for request in &mut requests {
        request.approvals = approvals_of(conn, request.id).map_err(&err)?;
    }
    Ok(requests)
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

/// Spends `token` in `tx`: refuses a replay, then appends its digest to
/// `spent_tokens`.
fn spend(
    tx: &WriteTx<'_>,
    token: Option<([u8; 32], UnixTime)>,
    path: &Path,
) -> Result<(), StoreError> {
    let Some((digest, expires_at)) = token else {
        return Ok(());
    };
    tx.spending.borrow_mut().spend(digest)?;
    cached(
        tx,
        "INSERT INTO spent_tokens (digest, expires_at) VALUES (?1, ?2)",
        params![&digest[..], expires_at as i64],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// A write transaction: SQLite's, and the tokens it spends, which stay in
/// the serving writer's spent set only if it commits.
pub(crate) struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    spending: RefCell<Spending<'c>>,
}

impl<'c> WriteTx<'c> {
    /// A transaction that can spend tokens against `spent`; with `None` (the
    /// admin CLI beside the server, whose changes spend no token) spending
    /// one fails.
    fn new(
        conn: &'c mut Connection,
        spent: Option<&'c mut SpentTokens>,
    ) -> rusqlite::Result<WriteTx<'c>> {
        Ok(WriteTx {
            tx: conn.transaction()?,
            spending: RefCell::new(Spending {
                spent,
                added: Vec::new(),
            }),
        })
    }

    /// Whether the token with this digest was spent.
    fn is_spent(&self, digest: &[u8; 32]) -> bool {
        let spending = self.spending.borrow();
        spending.spent.as_ref().is_some_and(|s| s.contains(digest))
    }

    fn commit(self) -> rusqlite::Result<()> {
        let WriteTx { tx, spending } = self;
        tx.commit()?;
        spending.into_inner().added.clear();
        Ok(())
    }
}

impl<'c> std::ops::Deref for WriteTx<'c> {
    type Target = rusqlite::Transaction<'c>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

/// The digests a [`WriteTx`] added to the spent set; they leave it again
/// unless the transaction commits.
struct Spending<'c> {
    spent: Option<&'c mut SpentTokens>,
    added: Vec<[u8; 32]>,
}

impl Spending<'_> {
    fn spend(&mut self, digest: [u8; 32]) -> Result<(), StoreError> {
        let spent = self.spent.as_mut().ok_or(StoreError::NoSpentTokens)?;
        if !spent.insert(&digest) {
            return Err(StoreError::Replayed);
        }
        self.added.push(digest);
        Ok(())
    }
}

impl Drop for Spending<'_> {
    fn drop(&mut self) {
        if let Some(spent) = &mut self.spent {
            for digest in &self.added {
                spent.remove(digest);
            }
        }
    }
}

/// The unexpired tokens spent through the serving writer, kept in its memory
/// so that a replay is refused without a lookup in the database: the
/// digests are random, and as a table keyed by them they dirtied a random
/// page per certificate. Each token is kept as the first 128 bits of its
/// SHA-256 digest (20 to 40 bytes of table each): equal digests have equal
/// prefixes, and two tokens sharing one by chance is out of reach (a chance
/// of 2^-65 after 2^32 tokens), so a replay is always refused and an honest
/// token never is.
#[derive(Debug, Default)]
struct SpentTokens(HashSet<u128>);

impl SpentTokens {
    fn prefix(digest: &[u8; 32]) -> u128 {
        let mut prefix = [0; 16];
        prefix.copy_from_slice(&digest[..16]);
        u128::from_le_bytes(prefix)
    }

    /// Adds a digest; false if it was there already.
    fn insert(&mut self, digest: &[u8; 32]) -> bool {
        self.0.insert(Self::prefix(digest))
    }

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.contains(&Self::prefix(digest))
    }

    fn remove(&mut self, digest: &[u8; 32]) {
        self.0.remove(&Self::prefix(digest));
    }
}

/// The serving writer's connection and its spent set.
struct WriterDb {
    conn: Connection,
    spent: SpentTokens,
}

impl WriterDb {
    fn transaction(&mut self) -> rusqlite::Result<WriteTx<'_>> {
        WriteTx::new(&mut self.conn, Some(&mut self.spent))
    }
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
            at: r.at,
            kind,
            identity: &r.actor,
            issuer: &r.actor_issuer,
            serial: serial.as_deref(),
            client_addr: &r.client_addr,
            detail,
            rules: &r.rules,
        },
        path,
    )
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

/// Takes the lock that one serving writer per database holds: the set of
/// spent tokens lives in its memory, so a second server on the same file
/// could accept a token the first one spent. The lock is on a file beside
/// the database, not the database itself, whose locks are SQLite's. Waits a
/// little for a writer that is still shutting down in this process.
fn lock_for_serving(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Named after the database's real place, so that two servers reaching
    // it through different spellings (relative, symlinked) meet at one lock.
    let real = std::fs::canonicalize(path)
        .or_else(|_| {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let name = path.file_name().unwrap_or_default();
            std::fs::canonicalize(dir.unwrap_or(Path::new("."))).map(|dir| dir.join(name))
        })
        .unwrap_or_else(|_| path.to_path_buf());
    let mut lock_path = real.into_os_string();
    lock_path.push("-serving.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| StoreError::LockFile {
            path: lock_path.clone().into(),
            source,
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::LockFile {
                    path: lock_path.into(),
                    source,
                })
            }
        }
    }
}

/// Forgets the spent tokens that expired long ago, then loads the digests
/// of the others: the set the serving writer refuses replays from.
fn load_spent_tokens(conn: &Connection, path: &Path) -> Result<SpentTokens, StoreError> {
    let err = sqlite_error(path);
    delete_spent_before(conn, spent_token_cutoff()).map_err(&err)?;
    let mut statement = conn
        .prepare("SELECT digest FROM spent_tokens")
        .map_err(&err)?;
    let mut spent = SpentTokens::default();
    for digest in statement
        .query_map([], |row| row.get::<_, [u8; 32]>(0))
        .map_err(&err)?
    {
        spent.insert(&digest.map_err(&err)?);
    }
    Ok(spent)
}

/// Forgets the tokens that expired before `cutoff`, on disk and then in
/// memory.
fn purge_spent_before(db: &mut WriterDb, cutoff: i64) -> rusqlite::Result<()> {
    for digest in delete_spent_before(&db.conn, cutoff)? {
        db.spent.remove(&digest);
    }
    Ok(())
}

/// Deletes the spent tokens that expired before `cutoff` (one statement,
/// so one transaction); their digests.
fn delete_spent_before(conn: &Connection, cutoff: i64) -> rusqlite::Result<Vec<[u8; 32]>> {
    conn.prepare("DELETE FROM spent_tokens WHERE expires_at < ?1 RETURNING digest")?
        .query_map([cutoff], |row| row.get(0))?
        .collect()
}

/// Spent tokens are kept two minutes past their expiry, so that leeway on
/// `exp` can never make a forgotten token valid again.
fn spent_token_cutoff() -> i64 {
    crate::unix_now().saturating_sub(120) as i64
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

struct Writer {
    db: WriterDb,
    /// Held while the writer runs (dropped after `conn`).
    _lock: std::fs::File,
    path: PathBuf,
    metrics: Metrics,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut last_purge = std::time::Instant::now();
        let mut last_batch = 0;
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
            let linger_until = (last_batch > 1).then(|| std::time::Instant::now() + BATCH_LINGER);
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Issue(..) | Job::Deny(..) => batch.push(job),
                    // Issuances and denials change no access request, so a
                    // read of them may run before the waiting batch commits;
                    // every issuance makes one, and flushing the batch for
                    // each would end group commit.
                    Job::ReadRequests(work) => work(&self.db.conn, &self.path),
                    other => {
                        if !batch.is_empty() {
                            self.commit_batch(std::mem::take(&mut batch));
                        }
                        self.other_job(other);
                    }
                }
                if batch.len() < MAX_BATCH {
                    // Waits only until as many records as last time have
                    // come: under steady load that is as long as it takes.
                    let linger = batch.len() < last_batch.max(MIN_LINGER_BATCH);
                    next = queue.try_recv().ok().or_else(|| {
                        if !linger {
                            return None;
                        }
                        // Naps rather than waits on the queue: waiting, the
                        // writer was woken (and each sender made a system
                        // call) for every record that joined the batch.
                        loop {
                            let left =
                                linger_until?.checked_duration_since(std::time::Instant::now())?;
                            std::thread::sleep(left.min(LINGER_NAP));
                            if let Ok(job) = queue.try_recv() {
                                return Some(job);
                            }
                        }
                    });
                }
            }
            last_batch = batch.len();
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
            let tx = self.db.transaction().map_err(&err)?;
            for job in &batch {
                let written_before = tx.total_changes();
                let result = match job {
                    Job::Issue(record, _) => insert_issuance(&tx, record, &path),
                    Job::Deny(record, _) => insert_denial(&tx, record, &path),
                    // `run` hands these to `other_job`, never to a batch.
                    Job::Revoke(..)
                    | Job::Lift(..)
                    | Job::RevokedSet(..)
                    | Job::Certificate(..)
                    | Job::Run(..)
                    | Job::ReadRequests(..) => Err(StoreError::Closed),
                };
                // A refusal wrote nothing (see `insert_issuance`); SQLite
                // failing part-way may have, and so would a refusal that a
                // later change let through after a write: the batch rolls
                // back whole rather than commit half a record.
                match result {
                    Err(error @ StoreError::Sqlite { .. }) => return Err(error),
                    Err(refusal) if tx.total_changes() != written_before => {
                        tracing::error!(%refusal, "a refused record had written rows");
                        return Err(StoreError::Closed);
                    }
                    result => results.push(result),
                }
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
            // The requester may have timed out; its record stands regardless.
            match job {
                Job::Issue(record, done) => drop(done.send(result.map(|()| record))),
                Job::Deny(_, done) => drop(done.send(result)),
                Job::Revoke(..)
                | Job::Lift(..)
                | Job::RevokedSet(..)
                | Job::Certificate(..)
                | Job::Run(..)
                | Job::ReadRequests(..) => {}
            }
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
                let _ = done.send(read_revoked_set(&self.db.conn, now, &path));
            }
            Job::Certificate(serial, done) => {
                let result = self
                    .db
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
            Job::Run(work) => work(&mut self.db, &path),
            Job::ReadRequests(work) => work(&self.db.conn, &path),
            Job::Issue(_, done) => drop(done.send(Err(StoreError::Closed))),
            Job::Deny(_, done) => drop(done.send(Err(StoreError::Closed))),
        }
    }

    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let err = sqlite_error(&path);
        let tx = self.db.transaction().map_err(&err)?;
        let value = work(&tx)?;
        tx.commit().map_err(&err)?;
        Ok(value)
    }

    fn purge_spent_tokens(&mut self) {
        if let Err(error) = purge_spent_before(&mut self.db, spent_token_cutoff()) {
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

/// Writes an issuance. Every check that can refuse it runs before its first
/// write, so a refused record leaves no rows behind and needs no savepoint;
/// an error after the first write is SQLite's, and fails the whole batch.
fn insert_issuance(tx: &WriteTx<'_>, r: &IssuanceRecord, path: &Path) -> Result<(), StoreError> {
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
    if tx.is_spent(&r.token_digest) {
        return Err(StoreError::Replayed);
    }
    // Checked in the issuing transaction, so that no certificate is issued
    // under a request that `done` ended after the policy looked.
    let mut first_uses = Vec::new();
    for &request_id in &r.request_ids {
        if let Some(window) = check_request_window(tx, request_id, r.issued_at, path)? {
            first_uses.push((request_id, window));
        }
    }
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
            json_list(&r.principals),
            r.valid_after as i64,
            r.valid_before as i64,
            r.key_fingerprint,
            r.client_addr,
            r.rules.join(","),
            r.issued_at as i64,
            r.certificate
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
    spend(tx, Some((r.token_digest, r.token_expires_at)), path)?;
    insert_audit(
        tx,
        &AuditRow {
            at: r.issued_at,
            kind: "issued",
            identity: &r.identity,
            issuer: &r.issuer,
            serial: Some(&r.serial),
            client_addr: &r.client_addr,
            detail: &r.key_id,
            rules: &r.rules,
        },
        path,
    )
}

fn insert_denial(
    tx: &rusqlite::Transaction<'_>,
    r: &DenialRecord,
    path: &Path,
) -> Result<(), StoreError> {
    insert_audit(
        tx,
        &AuditRow {
            at: r.at,
            kind: "denied",
            identity: &r.identity,
            issuer: &r.issuer,
            serial: None,
            client_addr: &r.client_addr,
            detail: &r.reason,
            rules: &r.rules,
        },
        path,
    )
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
            rules: vec!["builtin-username".into()],
            issued_at: 160,
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
            token_digest: [digest; 32],
            token_expires_at: u64::MAX / 4,
            request_ids: Vec::new(),
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
    async fn spent_tokens_stay_spent_across_restarts_and_endpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let store = Store::open(&path, &Metrics::new()).expect("open");
            store.record_issuance(record("1", 1)).await.expect("first");
            let mut request = new_request(200);
            request.spent_token = Some(([1; 32], u64::MAX / 4));
            assert!(matches!(
                store.create_request(request).await,
                Err(StoreError::Replayed)
            ));
            assert!(matches!(
                Store::open(&path, &Metrics::new()),
                Err(StoreError::InUse(_))
            ));
            let other_spelling = dir.path().join("link");
            std::os::unix::fs::symlink(dir.path(), &other_spelling).expect("symlink");
            assert!(matches!(
                Store::open(&other_spelling.join(DATABASE_FILE), &Metrics::new()),
                Err(StoreError::InUse(_))
            ));
        }
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        assert!(matches!(
            store.record_issuance(record("2", 1)).await,
            Err(StoreError::Replayed)
        ));
        store.record_issuance(record("3", 3)).await.expect("fresh");
    }

    fn writer_db(path: &Path) -> WriterDb {
        let conn = open_connection(path, false).expect("open");
        let spent = load_spent_tokens(&conn, path).expect("load");
        WriterDb { conn, spent }
    }

    fn spent_on_disk(db: &WriterDb) -> i64 {
        db.conn
            .query_row("SELECT count(*) FROM spent_tokens", [], |row| row.get(0))
            .expect("count")
    }

    #[test]
    fn a_purge_forgets_expired_digests_in_memory_and_on_disk_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut db = writer_db(&path);
        let tx = db.transaction().expect("tx");
        spend(&tx, Some(([1; 32], 100)), &path).expect("expired one");
        spend(&tx, Some(([2; 32], 10_000)), &path).expect("live one");
        tx.commit().expect("commit");
        purge_spent_before(&mut db, 1_000).expect("purge");
        assert_eq!(spent_on_disk(&db), 1);
        let tx = db.transaction().expect("tx");
        assert!(!tx.is_spent(&[1; 32]));
        assert!(matches!(
            spend(&tx, Some(([2; 32], 10_000)), &path),
            Err(StoreError::Replayed)
        ));
    }

    #[test]
    fn tokens_spent_in_a_transaction_that_does_not_commit_stay_unspent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut db = writer_db(&path);
        let tx = db.transaction().expect("tx");
        spend(&tx, Some(([1; 32], 10_000)), &path).expect("first");
        assert!(matches!(
            spend(&tx, Some(([1; 32], 10_000)), &path),
            Err(StoreError::Replayed)
        ));
        drop(tx);
        assert!(db.spent.0.is_empty());
        assert_eq!(spent_on_disk(&db), 0);
        let tx = db.transaction().expect("tx");
        spend(&tx, Some(([1; 32], 10_000)), &path).expect("unspent after the rollback");
        tx.commit().expect("commit");
        assert!(db.spent.contains(&[1; 32]));
        assert_eq!(spent_on_disk(&db), 1);
    }

    #[test]
    fn the_admin_cli_cannot_spend_a_token_beside_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut conn = open_connection(&path, false).expect("open");
        let tx = WriteTx::new(&mut conn, None).expect("tx");
        assert!(matches!(
            spend(&tx, Some(([1; 32], 10_000)), &path),
            Err(StoreError::NoSpentTokens)
        ));
    }

    #[tokio::test]
    async fn expired_spent_tokens_are_forgotten_when_the_store_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let expired = |serial| IssuanceRecord {
            token_expires_at: 1_000,
            ..record(serial, 1)
        };
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(expired("1")).await.expect("first");
        drop(store);
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        let spent: i64 = open_connection(&path, true)
            .expect("read")
            .query_row("SELECT count(*) FROM spent_tokens", [], |row| row.get(0))
            .expect("count");
        assert_eq!(spent, 0);
        // Its token is refused as expired before it reaches the store.
        store
            .record_issuance(expired("2"))
            .await
            .expect("forgotten");
    }

    #[tokio::test]
    async fn tokens_spent_before_migration_8_stay_spent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let conn = Connection::open(&path).expect("create");
        for migration in &MIGRATIONS[..7] {
            conn.execute_batch(migration).expect("migrate");
        }
        conn.execute_batch("PRAGMA user_version = 7")
            .expect("version");
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

    fn new_request(at: UnixTime) -> NewRequest {
        NewRequest {
            requester: "bob@corp".into(),
            issuer: "corp".into(),
            principals: vec!["root".into()],
            reason: "INC-1234: disk full".into(),
            window_secs: 1800,
            rules: vec!["sre-root-with-approval".into()],
            at,
            expires_at: at + 3600,
            client_addr: "127.0.0.1".into(),
            spent_token: Some(([9; 32], u64::MAX / 4)),
            approval: None,
            starts_at: None,
            from_first_use: false,
        }
    }

    fn action(id: u64, actor: &str, change: RequestChange, at: UnixTime) -> RequestAction {
        RequestAction {
            id,
            change,
            actor: actor.into(),
            actor_issuer: "corp".into(),
            client_addr: "127.0.0.1".into(),
            rules: vec!["sre-root-with-approval".into()],
            at,
            spent_token: None,
        }
    }

    fn approve(required: u32) -> RequestChange {
        RequestChange::Approve {
            required,
            comment: "ok".into(),
        }
    }

    #[tokio::test]
    async fn access_requests_move_through_approval_and_survive_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let created = store
            .create_request(new_request(100))
            .await
            .expect("created");
        assert_eq!(created.status, RequestStatus::Pending);
        assert_eq!(created.expires_at, 3700);
        // The requester's token is spent with it.
        assert!(matches!(
            store.create_request(new_request(101)).await,
            Err(StoreError::Replayed)
        ));
        let id = created.id;
        assert!(matches!(
            store
                .change_request(action(id, "bob@corp", approve(2), 110))
                .await,
            Err(StoreError::Request(RequestError::OwnRequest))
        ));
        let first = store
            .change_request(action(id, "carol@corp", approve(2), 120))
            .await
            .expect("first approval");
        assert_eq!(first.request.status, RequestStatus::Pending, "1 of 2");
        assert!(matches!(
            store
                .change_request(action(id, "carol@corp", approve(2), 121))
                .await,
            Err(StoreError::Request(RequestError::AlreadyApproved(_)))
        ));
        let second = store
            .change_request(action(id, "dave@corp", approve(2), 130))
            .await
            .expect("second approval");
        let r = &second.request;
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!((r.window_start, r.window_end), (Some(130), Some(1930)));
        assert_eq!(r.approvals.len(), 2);
        assert!(matches!(
            store
                .change_request(action(
                    id,
                    "erin@corp",
                    RequestChange::Deny {
                        reason: "no".into()
                    },
                    140
                ))
                .await,
            Err(StoreError::Request(RequestError::NotPending { .. }))
        ));
        assert_eq!(
            store
                .open_grants("bob@corp".into(), 1929)
                .await
                .expect("open")
                .len(),
            1
        );
        assert!(store
            .open_grants("bob@corp".into(), 1930)
            .await
            .expect("open")
            .is_empty());
        drop(store);
        // A restarted CA sees the same request, approvals and audit trail.
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        let again = store.request(id).await.expect("read").expect("exists");
        assert_eq!(&again, r);
        let kinds: Vec<String> = read_audit(&path, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(
            kinds,
            ["request_created", "request_approval", "request_approved"]
        );
        assert!(store.request(id + 1).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn expired_and_denied_requests_cannot_be_decided() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.spent_token = None;
        let expiring = store.create_request(new.clone()).await.expect("created");
        assert!(matches!(
            store
                .change_request(action(expiring.id, "carol@corp", approve(1), 3700))
                .await,
            Err(StoreError::Request(RequestError::NotPending {
                status: RequestStatus::Expired,
                ..
            }))
        ));
        let denied = store.create_request(new).await.expect("created");
        let deny = RequestChange::Deny {
            reason: "use the runbook".into(),
        };
        let changed = store
            .change_request(action(denied.id, "carol@corp", deny, 200))
            .await
            .expect("denied");
        assert_eq!(changed.request.status, RequestStatus::Denied);
        assert_eq!(
            changed.request.closed_reason.as_deref(),
            Some("use the runbook")
        );
        assert!(matches!(
            store
                .change_request(action(denied.id, "dave@corp", approve(1), 201))
                .await,
            Err(StoreError::Request(RequestError::NotPending {
                status: RequestStatus::Denied,
                ..
            }))
        ));
        assert!(matches!(
            store
                .change_request(action(99, "dave@corp", approve(1), 201))
                .await,
            Err(StoreError::Request(RequestError::Unknown(99)))
        ));
        let all = store
            .requests(Some("bob@corp".into()), 0)
            .await
            .expect("list");
        assert_eq!(all.len(), 2);
        assert!(store
            .requests(Some("alice@corp".into()), 0)
            .await
            .expect("list")
            .is_empty());
    }

    #[tokio::test]
    async fn ending_a_grant_revokes_the_certificates_issued_under_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.spent_token = None;
        let id = store.create_request(new).await.expect("created").id;
        store
            .change_request(action(id, "carol@corp", approve(1), 150))
            .await
            .expect("approved");
        let mut under = record("1", 1);
        under.identity = "bob@corp".into();
        under.request_ids = vec![id];
        store.record_issuance(under).await.expect("issued");
        let mut plain = record("2", 2);
        plain.identity = "bob@corp".into();
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
            .open_grants("bob@corp".into(), 201)
            .await
            .expect("open")
            .is_empty());
        assert!(matches!(
            store.change_request(action(id, "bob@corp", end, 201)).await,
            Err(StoreError::Request(RequestError::Closed { .. }))
        ));
        // An issuance the policy approved just before the end is refused in
        // its own transaction, leaving no row and its token unspent.
        let mut late = record("3", 3);
        late.identity = "bob@corp".into();
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
    async fn break_glass_opens_at_once_and_is_reviewed_once_by_someone_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.approval = Some(InstantApproval::BreakGlass);
        let r = store.create_request(new).await.expect("created");
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!((r.window_start, r.window_end), (Some(100), Some(1900)));
        assert!(r.break_glass && r.needs_review());
        assert_eq!(r.approvals[0].approver, "bob@corp");
        // The open window is seen by issuance at once (grants_until raised).
        assert_eq!(
            store
                .open_grants("bob@corp".into(), 150)
                .await
                .expect("open")
                .len(),
            1
        );
        let ordinary = {
            let mut n = new_request(101);
            n.spent_token = None;
            store.create_request(n).await.expect("created")
        };
        let unreviewed = store.unreviewed_requests().await.expect("list");
        assert_eq!(unreviewed.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id]);
        let review = |comment: &str| RequestChange::Review {
            comment: comment.into(),
        };
        assert!(matches!(
            store
                .change_request(action(r.id, "bob@corp", review("mine"), 200))
                .await,
            Err(StoreError::Request(RequestError::OwnReview))
        ));
        assert!(matches!(
            store
                .change_request(action(ordinary.id, "carol@corp", review("x"), 200))
                .await,
            Err(StoreError::Request(RequestError::NotBreakGlass(_)))
        ));
        let reviewed = store
            .change_request(action(r.id, "carol@corp", review("justified"), 300))
            .await
            .expect("reviewed");
        assert_eq!(
            reviewed.request.review,
            Some(Review {
                by: "carol@corp".into(),
                at: 300,
                comment: "justified".into()
            })
        );
        assert!(matches!(
            store
                .change_request(action(r.id, "dave@corp", review("again"), 301))
                .await,
            Err(StoreError::Request(RequestError::AlreadyReviewed { .. }))
        ));
        assert!(store.unreviewed_requests().await.expect("list").is_empty());
        let kinds: Vec<String> = read_audit(&path, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(
            kinds,
            [
                "request_created",
                "request_break_glass",
                "request_created",
                "request_reviewed"
            ]
        );
    }

    #[tokio::test]
    async fn a_policy_approval_is_recorded_as_approved_by_its_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let mut new = new_request(100);
        new.approval = Some(InstantApproval::Policy(vec![
            "sre-root-with-approval".into()
        ]));
        let r = store.create_request(new).await.expect("created");
        assert_eq!(r.status, RequestStatus::Approved);
        assert!(!r.break_glass && !r.needs_review());
        assert_eq!(r.approvals[0].approver, "policy:sre-root-with-approval");
        let events = read_audit(&path, &AuditFilter::default()).expect("audit");
        assert_eq!(events[1].event, "request_approved");
        assert_eq!(events[1].identity, "policy:sre-root-with-approval");
    }

    #[test]
    fn a_version_4_database_migrates_without_losing_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..4] {
                conn.execute_batch(migration).expect("migrate");
            }
            conn.pragma_update(None, "user_version", 4)
                .expect("version");
            conn.execute(
                "INSERT INTO access_requests (requester, issuer, principals, reason, window_secs, \
                 rules, status, created_at, expires_at) \
                 VALUES ('bob@corp', 'corp', '[\"root\"]', 'old', 60, '[]', 'pending', 1, 2)",
                [],
            )
            .expect("insert");
        }
        let conn = open_connection(&path, false).expect("migrated");
        let r = read_request(&conn, 1, &path).expect("read").expect("kept");
        assert_eq!(r.reason, "old");
        assert!(!r.break_glass && r.review.is_none());
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
            .open_grants("bob@corp".into(), 160)
            .await
            .expect("open");
        assert_eq!(open.len(), 1, "a grant nobody used yet is open");
        let mut first = record("1", 1);
        first.identity = "bob@corp".into();
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
            .open_grants("bob@corp".into(), 1960)
            .await
            .expect("open")
            .is_empty());
        let mut late = record("2", 2);
        late.identity = "bob@corp".into();
        late.request_ids = vec![id];
        late.issued_at = 1960;
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
            .open_grants("bob@corp".into(), 200 + 3600)
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
            .open_grants("bob@corp".into(), 999)
            .await
            .expect("open")
            .is_empty());
        assert_eq!(
            store
                .open_grants("bob@corp".into(), 1000)
                .await
                .expect("open")
                .len(),
            1
        );
        // Issued under it before the start (a policy that looked too early):
        // refused in the issuing transaction.
        let mut early = record("1", 1);
        early.identity = "bob@corp".into();
        early.request_ids = vec![id];
        early.issued_at = 999;
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
        let mut new = new_request(100);
        new.spent_token = None;
        let id = store.create_request(new).await.expect("created").id;
        store
            .change_request(action(id, "carol@corp", approve(1), 150))
            .await
            .expect("approved");
        let online = store
            .open_grants("bob@corp".into(), 200)
            .await
            .expect("open");
        let offline = open_grants_offline(&path, "bob@corp", 200).expect("offline");
        assert_eq!(offline, online);
        assert!(open_grants_offline(&path, "bob@corp", 1950)
            .expect("offline")
            .is_empty());
        assert!(open_grants_offline(&path, "alice@corp", 200)
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
            open_grants_offline(&old, "bob@corp", 200),
            Err(StoreError::OlderSchema(_))
        ));
    }
}
