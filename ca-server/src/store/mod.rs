//! The durable record: the certificates issued and refused, what is revoked,
//! the access requests and their decisions, the spent ID tokens and the
//! audit trail. Today one SQLite database (WAL, `synchronous=FULL`) in the
//! data directory; this module is the store's whole public face.
//!
//! Writes go through a single writer thread that commits whatever requests are
//! waiting in one transaction (group commit): under load, many issuances
//! share one fsync, yet each caller is answered only after the
//! transaction holding its own rows has committed. An issuance writes the
//! certificate row, its audit event and the ID token's digest together, so a
//! token is spent if and only if its certificate is on record.
//!
//! # Where a second backend plugs in
//!
//! The operations below, with the record types, [`Actor`], [`SpentToken`]
//! and [`StoreError`], are everything the rest of the CA asks of the store.
//! No SQLite type appears in them, so another backend (PostgreSQL) can
//! provide the same operations, or a trait extracted from them, without a
//! change to the authority:
//!
//! - on the serving handle, [`Store`]: [`Store::open`] (the one
//!   backend-specific call: it takes the SQLite file, where PostgreSQL would
//!   take its connection settings), [`Store::last_serial`],
//!   [`Store::check_standing`]; [`Store::record_issuance`],
//!   [`Store::record_denial`],
//!   [`Store::certificate`]; [`Store::revoke`], [`Store::lift`],
//!   [`Store::revoked_set`]; [`Store::create_request`],
//!   [`Store::change_request`], [`Store::request`], [`Store::requests`],
//!   [`Store::pending_requests`], [`Store::unreviewed_requests`],
//!   [`Store::open_grants`];
//! - offline, for the admin CLI on the CA host, beside a running server or
//!   without one: [`revoke_offline`], [`lift_offline`],
//!   [`open_grants_offline`], [`read_audit`] and [`backup`]. They are part
//!   of the face too; their `&Path` names the SQLite file, and is where a
//!   PostgreSQL backend would take its connection settings.
//!
//! Whatever the backend, it keeps these promises (the unit tests in each
//! file pin them down): an operation answers once its change is durable; an
//! act's ID token is spent in the same transaction as its record, and a
//! replay is refused ([`StoreError::Replayed`]) across restarts and across
//! every operation that spends one, except that a retry with the token that
//! paid for a certificate (for the same key) or a new access request is
//! answered with what it paid for, also across restarts
//! ([`Store::retried_issuance`], [`Store::retried_request`]); a caller is refused at authentication
//! when an unlifted revocation names their identity or their token was spent,
//! and an act paid with an ID token is refused again in its transaction when
//! its actor's identity is revoked ([`StoreError::RevokedIdentity`]); an
//! issuance is refused in its own transaction, leaving no rows and its token
//! unspent, when its identity or key is revoked, its token has no nonce and
//! its key is not bound to its identity within a sign-in session
//! ([`NonceBinding`]), its serial is on record, or an access window it uses
//! has closed; a nonce-bound issuance binds its key in its own transaction;
//! a change to an access request is checked against the request's
//! state in the transaction that records it; every act writes its audit
//! event in that transaction; the KRL version a revoke or lift returns is
//! above every one before it, also within one second, and a KRL version
//! published names one revocation state and is never lower than one
//! published before, also across a restart and a restore from backup.
//! This backend keeps the spent tokens in the serving
//! writer's memory, so it allows one server per database file
//! ([`StoreError::InUse`]).
//!
//! # One file per concern
//!
//! `writer.rs` the writer thread and group commit; `schema.rs` migrations
//! and opening connections; `lock.rs` the one-server-per-database lock;
//! `spent.rs` spent tokens and the write transaction that spends them;
//! `certificates.rs` issuances, denials and certificate lookups;
//! `key_bindings.rs` the keys bound to an identity by a nonce, which a
//! token without one may certify again; `revocations.rs` revocations;
//! `krl_version.rs` the KRL version and what publishing one promises;
//! `standing.rs` whether a caller's identity is revoked or token spent;
//! `access_requests.rs` access requests and their decisions; `grants.rs`
//! the open grants issuance uses; `retries.rs` the answer to a retry with a
//! spent token of what it paid for; `audit.rs` the audit trail; `backup.rs`
//! backups.

mod access_requests;
mod audit;
mod backup;
mod certificates;
#[cfg(test)]
mod fixtures;
mod grants;
mod key_bindings;
mod krl_version;
mod lock;
mod retries;
mod revocations;
mod schema;
mod spent;
mod standing;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::access::{AccessRequest, RequestError};
use crate::identity::IdentityKey;
use crate::metrics::Metrics;
use crate::UnixTime;

pub use access_requests::{NewRequest, RequestAction, RequestChange, RequestChanged};
pub use audit::{read_audit, AuditEntry, AuditFilter};
pub use backup::backup;
pub use certificates::{CertificateEntry, DenialRecord, IssuanceRecord};
pub use grants::open_grants_offline;
pub use key_bindings::NonceBinding;
pub use retries::{RecordedCertificate, Retry};
pub use revocations::{
    lift_offline, revoke_offline, RevocationRecord, RevocationTarget, Revoked, RevokedSet,
};
pub use spent::SpentToken;

use grants::GrantHorizon;
use krl_version::Publication;
use spent::WriteTx;
use standing::PaidAct;
use writer::Writer;

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
    /// The database itself failed.
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: DatabaseError,
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
    /// The database, or its WAL or shared-memory file, is open to group or
    /// others (or its mode cannot be read).
    #[error(transparent)]
    FileMode(#[from] crate::private_files::ModeError),
    /// The lock file beside the database could not be opened or locked.
    #[error("lock file {path}: {source}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity is revoked: it may not act (a certificate, an access
    /// request or a decision on one, a revocation or a lift) nor read.
    #[error("identity {0} is revoked")]
    RevokedIdentity(String),
    /// The subject key is revoked: no certificate may be issued for it.
    #[error("key {0} is revoked")]
    RevokedKey(String),
    /// The ID token has no nonce, its issuer requires one, and the subject
    /// key is not bound to the identity by an earlier token with a nonce
    /// within the issuer's sign-in session.
    #[error("the key is not bound to {identity} by a sign-in with a nonce (issuer {issuer})")]
    UnboundKey {
        /// `user@issuer`.
        identity: String,
        /// The issuer's short name.
        issuer: String,
    },
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

/// Why the database itself failed, as its engine (SQLite) tells it: for
/// messages and logs, never for a caller to match on.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(rusqlite::Error);

/// Who acted, as every record names them: the issuance's requester, the
/// refused caller, the revoking administrator or owner, the requester or
/// approver of an access request. The store writes these into the record's
/// rows and its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `user@issuer` (`operator@local` for the CLI on the CA host): the
    /// display name, for people to read.
    pub identity: String,
    /// The stable key every decision compares (identity.rs); `None` for the
    /// operator on the CA host, and for the owner of a certificate recorded
    /// before keys were.
    pub key: Option<IdentityKey>,
    /// The identity's issuer short name (`local` for the CLI).
    pub issuer: String,
    /// Client address as seen by the CA (`local` for the CLI).
    pub client_addr: String,
    /// The policy rules it acted under: those that allowed, refused or
    /// authorised the act (empty when none applied, for owners and the CLI).
    pub rules: Vec<String>,
    /// When.
    pub at: UnixTime,
}

impl Actor {
    /// The operator at the CA host's command line (`jit-ssh-ca revoke`),
    /// who acts under no policy rule.
    pub fn local_operator(at: UnixTime) -> Actor {
        Actor {
            identity: "operator@local".into(),
            key: None,
            issuer: "local".into(),
            client_addr: "local".into(),
            rules: Vec::new(),
            at,
        }
    }
}

/// The writer's upkeep between jobs: forgets expired spent tokens and key
/// bindings whose session ended.
fn upkeep(db: &mut spent::WriterDb) {
    spent::purge_expired(db);
    if let Err(error) = key_bindings::purge_ended(&db.conn, crate::unix_now()) {
        tracing::warn!(%error, "purging ended key bindings failed");
    }
}

/// Handle to the database writer; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    /// When the last grant on record closes (see [`GrantHorizon`]).
    grants: GrantHorizon,
    /// The serial of the last certificate on record when the store opened.
    last_serial: u64,
    /// What publishing KRLs remembers (krl_version.rs). Used only by the
    /// writer thread.
    publication: Arc<Mutex<Publication>>,
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path` and
    /// starts its writer thread.
    pub fn open(path: &Path, metrics: &Metrics) -> Result<Store, StoreError> {
        let lock = lock::lock_for_serving(path)?;
        // Read once the previous server on this database has let go of it.
        let publication = Publication::new(crate::unix_now_micros());
        let conn = schema::open_connection(path, false)?;
        let spent = spent::load_spent_tokens(&conn, path)?;
        let grants = GrantHorizon::load(&conn, path)?;
        let last_serial = certificates::last_serial(&conn, path)?;
        let db = spent::WriterDb { conn, spent };
        let writer = Writer::start(db, lock, path, metrics, upkeep)?;
        Ok(Store {
            writer,
            grants,
            last_serial,
            publication: Arc::new(Mutex::new(publication)),
        })
    }

    /// The serial of the last certificate on record when the store opened
    /// (0 for none): new serials continue after it.
    pub fn last_serial(&self) -> u64 {
        self.last_serial
    }

    /// Refuses a caller displayed as `identity` with key `key` when a ban
    /// names either ([`StoreError::RevokedIdentity`]), or whose ID `token`
    /// was spent ([`StoreError::Replayed`]): what every authenticated call
    /// checks before it acts or reads. Spends nothing.
    pub async fn check_standing(
        &self,
        identity: String,
        key: IdentityKey,
        token: SpentToken,
    ) -> Result<(), StoreError> {
        self.writer
            .read_spent(move |db, path| standing::check_standing(db, &identity, &key, &token, path))
            .await
    }

    /// Records an issuance; returns once it is committed to disk.
    pub async fn record_issuance(&self, record: IssuanceRecord) -> Result<(), StoreError> {
        self.writer
            .batched(record, certificates::insert_issuance)
            .await
    }

    /// The certificate `retry`'s token paid for, for a retry of its
    /// issuance with the same key (`key_fingerprint`); the retry is on
    /// record once this returns. [`StoreError::Replayed`] when the token
    /// paid for anything else.
    pub async fn retried_issuance(
        &self,
        retry: Retry,
        key_fingerprint: String,
    ) -> Result<RecordedCertificate, StoreError> {
        self.writer
            .transaction(move |tx, path| {
                retries::retry_issuance_in(tx, &retry, &key_fingerprint, path)
            })
            .await
    }

    /// The access request `retry`'s token created, if it created one; the
    /// retry is on record once this returns.
    pub async fn retried_request(&self, retry: Retry) -> Result<Option<AccessRequest>, StoreError> {
        self.writer
            .transaction(move |tx, path| retries::retry_request_in(tx, &retry, path))
            .await
    }

    /// Records a denial; returns once it is committed to disk.
    pub async fn record_denial(&self, record: DenialRecord) -> Result<(), StoreError> {
        self.writer
            .batched(record, certificates::insert_denial)
            .await
    }

    /// Revokes `record.target`; returns once committed.
    pub async fn revoke(&self, record: RevocationRecord) -> Result<Revoked, StoreError> {
        self.act(record, revocations::revoke_in).await
    }

    /// Lifts the revocation of `record.target`; returns once committed. A
    /// revoked administrator's token lifts nothing, her own revocation
    /// included.
    pub async fn lift(&self, record: RevocationRecord) -> Result<Revoked, StoreError> {
        self.act(record, revocations::lift_in).await
    }

    /// The revocation state to publish as the KRL at `now` (certificates
    /// expired by then left out), with the version to publish it under: one
    /// version never names two states, and none is lower than a version
    /// published before, by this server or by one before it on this
    /// database or on the database a backup restored.
    pub async fn revoked_set(&self, now: UnixTime) -> Result<RevokedSet, StoreError> {
        let publication = self.publication.clone();
        self.writer
            .exclusive(move |db, path| {
                // It is only ever changed after a commit, so it stays whole
                // whatever panicked while holding it.
                let mut publication = publication.lock().unwrap_or_else(PoisonError::into_inner);
                krl_version::publish_revoked_set(&mut db.conn, &mut publication, now, path)
            })
            .await
    }

    /// The recorded certificate with this serial.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateEntry>, StoreError> {
        let serial = serial.to_string();
        self.writer
            .exclusive(move |db, path| certificates::read_certificate(&db.conn, &serial, path))
            .await
    }

    /// Records a new access request (spending the requester's token);
    /// returns it once committed.
    pub async fn create_request(&self, new: NewRequest) -> Result<AccessRequest, StoreError> {
        let request = self.act(new, access_requests::create_request_in).await?;
        self.grants.include(&request);
        Ok(request)
    }

    /// Requests still pending at `now` (not expired), newest first.
    pub async fn pending_requests(&self, now: UnixTime) -> Result<Vec<AccessRequest>, StoreError> {
        self.writer
            .read(move |conn, path| access_requests::pending_requests_in(conn, now, path))
            .await
    }

    /// Break-glass requests nobody has reviewed yet, newest first.
    pub async fn unreviewed_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        self.writer
            .read(access_requests::unreviewed_requests_in)
            .await
    }

    /// Applies `action` if the request's state allows it at `action.actor.at`
    /// (checked inside the transaction that records it); returns the request
    /// after the change.
    pub async fn change_request(
        &self,
        action: RequestAction,
    ) -> Result<RequestChanged, StoreError> {
        let changed = self.act(action, access_requests::change_request_in).await?;
        self.grants.include(&changed.request);
        Ok(changed)
    }

    /// The access request with this id.
    pub async fn request(&self, id: u64) -> Result<Option<AccessRequest>, StoreError> {
        self.writer
            .read(move |conn, path| access_requests::read_request(conn, id, path))
            .await
    }

    /// Access requests made since `since`, newest first: those of the
    /// requester with this key and display name (a request recorded
    /// before keys by its display name), or everyone's when `None`.
    pub async fn requests(
        &self,
        requester: Option<(IdentityKey, String)>,
        since: UnixTime,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        self.writer
            .read(move |conn, path| {
                access_requests::read_requests(conn, requester.as_ref(), since, path)
            })
            .await
    }

    /// Approved access requests of the requester with key `requester` whose
    /// window is open at `now` (or would open with a certificate issued
    /// now, from first use). A request recorded before keys grants nobody.
    pub async fn open_grants(
        &self,
        requester: IdentityKey,
        now: UnixTime,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        if self.grants.passed(now) {
            return Ok(Vec::new());
        }
        self.writer
            .read(move |conn, path| grants::open_grants_in(conn, &requester, now, path))
            .await
    }

    /// Records `act` with `write` in a transaction of its own, refused there
    /// when the act spends an ID token and its actor's identity is revoked:
    /// a revocation committed after the caller authenticated still wins.
    async fn act<R, T>(
        &self,
        act: R,
        write: fn(&WriteTx<'_>, &R, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>
    where
        R: PaidAct + Send + 'static,
        T: Send + 'static,
    {
        self.writer
            .transaction(move |tx, path| {
                standing::refuse_revoked_bearer(tx, &act, path)?;
                write(tx, &act, path)
            })
            .await
    }
}
