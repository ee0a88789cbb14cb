//! Spent ID tokens: each token buys one act (a certificate, a revocation, an
//! access request or a decision on one), and a replay is refused.
//!
//! A token is spent in the same transaction as the record it paid for, so it
//! is spent if and only if that record is on disk. The serving writer keeps
//! the unexpired digests in memory (loaded when the store opens) and refuses
//! a replay there; `spent_tokens` on disk is the same set in the order it was
//! spent, read back at the next start. Digests are forgotten two minutes after
//! their token expires, by the writer's upkeep.
//!
//! A spent token also remembers what it paid for when that is a certificate
//! or a new access request ([`Paid`]): a client whose answer was lost (a
//! timeout after the commit) retries with the same token, and is given what
//! was recorded instead of a replay refusal (retries.rs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection};

use super::schema::{cached, sqlite_error};
use super::StoreError;
use crate::oidc::TokenDigest;
use crate::UnixTime;

/// The ID token an act spent, as the store keeps it: its digest, never the
/// token, remembered until shortly after the token expires (a token past its
/// expiry is refused anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpentToken {
    /// What single use knows the token by: it is spent under
    /// [`TokenDigest::signed`], and refused as a replay when that digest or
    /// [`TokenDigest::whole`] (the one older releases spent tokens under)
    /// was spent.
    pub digest: TokenDigest,
    /// The token's expiry: until when its digest must be remembered.
    pub expires_at: UnixTime,
}

/// What a spent token paid for, as far as a retry with it needs to know:
/// the two acts a client retries when their answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paid {
    /// An act no retry returns (a revocation, a decision), or one spent
    /// before tokens remembered what they paid for.
    Other,
    /// The certificate with this serial.
    Certificate(u64),
    /// The access request with this id.
    Request(u64),
}

/// Spends `token` in `tx` on an act no retry returns: refuses a replay, then
/// appends its digest to `spent_tokens`.
pub(super) fn spend(
    tx: &WriteTx<'_>,
    token: Option<SpentToken>,
    path: &Path,
) -> Result<(), StoreError> {
    spend_for(tx, token, Paid::Other, path)
}

/// Spends `token` in `tx` on `paid`: refuses a replay, then appends its
/// digest and what it paid for to `spent_tokens`.
pub(super) fn spend_for(
    tx: &WriteTx<'_>,
    token: Option<SpentToken>,
    paid: Paid,
    path: &Path,
) -> Result<(), StoreError> {
    let Some(SpentToken { digest, expires_at }) = token else {
        return Ok(());
    };
    tx.spending.borrow_mut().spend(&digest, paid)?;
    let (serial, request_id) = match paid {
        Paid::Other => (None, None),
        Paid::Certificate(serial) => (Some(serial.to_string()), None),
        Paid::Request(id) => (None, Some(id as i64)),
    };
    cached(
        tx,
        "INSERT INTO spent_tokens (digest, expires_at, serial, request_id) \
         VALUES (?1, ?2, ?3, ?4)",
        params![&digest.signed[..], expires_at as i64, serial, request_id],
    )
    .map_err(sqlite_error(path))?;
    Ok(())
}

/// A write transaction: SQLite's, and the tokens it spends, which stay in
/// the serving writer's spent set only if it commits.
pub(super) struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    spending: RefCell<Spending<'c>>,
}

impl<'c> WriteTx<'c> {
    /// A transaction that can spend tokens against `spent`; with `None` (the
    /// admin CLI beside the server, whose changes spend no token) spending
    /// one fails.
    pub(super) fn new(
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
    pub(super) fn is_spent(&self, digest: &TokenDigest) -> bool {
        let spending = self.spending.borrow();
        spending.spent.as_ref().is_some_and(|s| s.holds(digest))
    }

    /// What the token with this digest paid for, if it was spent (under
    /// the digest tokens are spent under now).
    pub(super) fn paid_for(&self, digest: &TokenDigest) -> Option<Paid> {
        let spending = self.spending.borrow();
        spending.spent.as_ref()?.paid_for(digest)
    }

    pub(super) fn commit(self) -> rusqlite::Result<()> {
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
    fn spend(&mut self, digest: &TokenDigest, paid: Paid) -> Result<(), StoreError> {
        let spent = self.spent.as_mut().ok_or(StoreError::NoSpentTokens)?;
        if spent.contains(&digest.whole) || !spent.insert(&digest.signed, paid) {
            return Err(StoreError::Replayed);
        }
        self.added.push(digest.signed);
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
/// digests are random, so a table keyed by them would dirty a random page
/// per certificate. Each token is kept as the first 128 bits of its SHA-256
/// digest, a key half the size of the whole digest: equal digests have equal
/// prefixes, and two tokens sharing one by chance is out of reach (a chance
/// of 2^-65 after 2^32 tokens), so a replay is always refused and an honest
/// token never is. Beside each is what it paid for, which a retry returns.
#[derive(Debug, Default)]
pub(super) struct SpentTokens(HashMap<u128, Paid>);

impl SpentTokens {
    fn prefix(digest: &[u8; 32]) -> u128 {
        let mut prefix = [0; 16];
        prefix.copy_from_slice(&digest[..16]);
        u128::from_le_bytes(prefix)
    }

    /// Adds a digest and what it paid for; false if it was there already
    /// (and then changes nothing).
    fn insert(&mut self, digest: &[u8; 32], paid: Paid) -> bool {
        match self.0.entry(Self::prefix(digest)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(paid);
                true
            }
        }
    }

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.contains_key(&Self::prefix(digest))
    }

    /// What the token of `digest` paid for, if it was spent under
    /// [`TokenDigest::signed`].
    fn paid_for(&self, digest: &TokenDigest) -> Option<Paid> {
        self.0.get(&Self::prefix(&digest.signed)).copied()
    }

    /// Whether the token of `digest` was spent, under either of its
    /// digests.
    fn holds(&self, digest: &TokenDigest) -> bool {
        self.contains(&digest.signed) || self.contains(&digest.whole)
    }

    fn remove(&mut self, digest: &[u8; 32]) {
        self.0.remove(&Self::prefix(digest));
    }
}

/// The serving writer's connection and its spent set.
pub(super) struct WriterDb {
    pub(super) conn: Connection,
    pub(super) spent: SpentTokens,
}

impl WriterDb {
    /// Whether the token of `digest` was spent (by a committed act), under
    /// either of its digests.
    pub(super) fn is_spent(&self, digest: &TokenDigest) -> bool {
        self.spent.holds(digest)
    }

    pub(super) fn transaction(&mut self) -> rusqlite::Result<WriteTx<'_>> {
        WriteTx::new(&mut self.conn, Some(&mut self.spent))
    }

    /// Runs `work` in a transaction of its own, committed if it succeeds.
    pub(super) fn in_transaction<T>(
        &mut self,
        path: &Path,
        work: impl FnOnce(&WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let err = sqlite_error(path);
        let tx = self.transaction().map_err(&err)?;
        let value = work(&tx)?;
        tx.commit().map_err(&err)?;
        Ok(value)
    }
}

/// Forgets the spent tokens that expired long ago, then loads the digests
/// of the others: the set the serving writer refuses replays from.
pub(super) fn load_spent_tokens(conn: &Connection, path: &Path) -> Result<SpentTokens, StoreError> {
    let err = sqlite_error(path);
    delete_spent_before(conn, spent_token_cutoff()).map_err(&err)?;
    let mut statement = conn
        .prepare("SELECT digest, serial, request_id FROM spent_tokens")
        .map_err(&err)?;
    let mut spent = SpentTokens::default();
    let rows = statement
        .query_map([], |row| {
            let digest: [u8; 32] = row.get(0)?;
            let serial: Option<String> = row.get(1)?;
            let request_id: Option<i64> = row.get(2)?;
            let paid = match (serial.and_then(|s| s.parse().ok()), request_id) {
                (Some(serial), _) => Paid::Certificate(serial),
                (None, Some(id)) => Paid::Request(id as u64),
                (None, None) => Paid::Other,
            };
            Ok((digest, paid))
        })
        .map_err(&err)?;
    for row in rows {
        let (digest, paid) = row.map_err(&err)?;
        spent.insert(&digest, paid);
    }
    Ok(spent)
}

/// The writer's upkeep: forgets the tokens that expired long ago.
pub(super) fn purge_expired(db: &mut WriterDb) {
    if let Err(error) = purge_spent_before(db, spent_token_cutoff()) {
        tracing::warn!(%error, "purging spent token digests failed");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{new_request, record, token};
    use crate::store::schema::open_connection;
    use crate::store::{IssuanceRecord, Store, DATABASE_FILE};

    #[tokio::test]
    async fn spent_tokens_stay_spent_across_restarts_and_endpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            let store = Store::open(&path, &Metrics::new()).expect("open");
            store.record_issuance(record("1", 1)).await.expect("first");
            let mut request = new_request(200);
            request.spent_token = Some(token(1, u64::MAX / 4));
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

    #[tokio::test]
    async fn a_token_is_spent_by_what_was_signed_and_stays_spent_across_an_upgrade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        store.record_issuance(record("1", 1)).await.expect("first");
        // Another spelling of token 1: what was signed is the same, the
        // whole token is not.
        let mut twin = record("2", 1);
        twin.spent_token.digest.whole = [0x55; 32];
        assert!(matches!(
            store.record_issuance(twin).await,
            Err(StoreError::Replayed)
        ));
        drop(store);
        // Token 2 spent by an older release, which kept the whole token's
        // digest.
        let legacy = token(2, u64::MAX / 4);
        open_connection(&path, false)
            .expect("open")
            .execute(
                "INSERT INTO spent_tokens (digest, expires_at) VALUES (?1, ?2)",
                params![&legacy.digest.whole[..], i64::MAX / 4],
            )
            .expect("legacy row");
        let store = Store::open(&path, &Metrics::new()).expect("reopen");
        assert!(matches!(
            store.record_issuance(record("3", 2)).await,
            Err(StoreError::Replayed)
        ));
        store.record_issuance(record("4", 4)).await.expect("fresh");
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
        spend(&tx, Some(token(1, 100)), &path).expect("expired one");
        spend(&tx, Some(token(2, 10_000)), &path).expect("live one");
        tx.commit().expect("commit");
        purge_spent_before(&mut db, 1_000).expect("purge");
        assert_eq!(spent_on_disk(&db), 1);
        let tx = db.transaction().expect("tx");
        assert!(!tx.is_spent(&token(1, 100).digest));
        assert!(matches!(
            spend(&tx, Some(token(2, 10_000)), &path),
            Err(StoreError::Replayed)
        ));
    }

    #[test]
    fn tokens_spent_in_a_transaction_that_does_not_commit_stay_unspent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut db = writer_db(&path);
        let tx = db.transaction().expect("tx");
        spend(&tx, Some(token(1, 10_000)), &path).expect("first");
        assert!(matches!(
            spend(&tx, Some(token(1, 10_000)), &path),
            Err(StoreError::Replayed)
        ));
        drop(tx);
        assert!(db.spent.0.is_empty());
        assert_eq!(spent_on_disk(&db), 0);
        let tx = db.transaction().expect("tx");
        spend(&tx, Some(token(1, 10_000)), &path).expect("unspent after the rollback");
        tx.commit().expect("commit");
        assert!(db.spent.contains(&token(1, 10_000).digest.signed));
        assert_eq!(
            db.spent.paid_for(&token(1, 10_000).digest),
            Some(Paid::Other)
        );
        assert_eq!(spent_on_disk(&db), 1);
    }

    #[test]
    fn the_admin_cli_cannot_spend_a_token_beside_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut conn = open_connection(&path, false).expect("open");
        let tx = WriteTx::new(&mut conn, None).expect("tx");
        assert!(matches!(
            spend(&tx, Some(token(1, 10_000)), &path),
            Err(StoreError::NoSpentTokens)
        ));
    }

    #[tokio::test]
    async fn expired_spent_tokens_are_forgotten_when_the_store_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let expired = |serial| IssuanceRecord {
            spent_token: token(1, 1_000),
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
}
