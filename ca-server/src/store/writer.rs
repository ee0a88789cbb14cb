//! The serving writer: one thread that owns the database connection and runs
//! every job in the order it was queued, committing records in groups.
//!
//! Records (issuances, denials) are group-committed: the writer commits
//! whatever records are waiting in one transaction, so under load many share
//! one fsync, yet each caller is answered only after the transaction holding
//! its own rows has committed. A record that is refused writes nothing and is
//! answered alone; a failure of SQLite fails the whole batch, and every
//! caller in it is told why. The writer knows jobs only by how they run
//! (batched, exclusive, or read); the tables hand it the work.
//!
//! The writer also says whether the database accepts writes (the
//! `store_writable` metric, which `/readyz` answers from): a failed commit
//! turns it off, logged once with SQLite's reason ("database or disk is
//! full"), and the writer then tries a small write every [`PROBE_INTERVAL`]
//! until one commits, which turns it on again.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::schema::sqlite_error;
use super::spent::{WriteTx, WriterDb};
use super::StoreError;
use crate::metrics::Metrics;

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Longest wait for more records to join a batch, once the previous batch
/// showed that requests arrive concurrently. Every commit costs an fsync and
/// rewrites the half-filled last page of each table, whatever the batch's
/// size, so under load a larger batch costs less per record; an idle CA
/// (batches of one) does not wait at all.
const BATCH_LINGER: Duration = Duration::from_micros(800);
/// How long a lingering writer sleeps before it looks for more records.
const LINGER_NAP: Duration = Duration::from_micros(100);
/// A lingering batch is complete once it is as large as the previous one, or
/// this large.
const MIN_LINGER_BATCH: usize = 8;
/// How often the writer's upkeep runs (it forgets expired spent tokens).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often a writer whose last commit failed tries a write of its own.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How a caller is answered: with the result of its work.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// Work that runs alone on the writer's connection and spent set.
type ExclusiveWork = Box<dyn FnOnce(&mut WriterDb, &Path) + Send>;
/// A read on the writer's connection and spent set.
type ReadWork = Box<dyn FnOnce(&WriterDb, &Path) + Send>;

/// Writes one record inside a batch's transaction. Every check that can
/// refuse the record must run before its first write, so that a refusal
/// leaves no rows behind; an error after the first write must be SQLite's.
pub(super) trait WriteRecord<R>:
    Fn(&WriteTx<'_>, &R, &Path) -> Result<(), StoreError> + Send + 'static
{
}

impl<R, F> WriteRecord<R> for F where
    F: Fn(&WriteTx<'_>, &R, &Path) -> Result<(), StoreError> + Send + 'static
{
}

/// Handle to the serving writer; cheap to clone. The writer stops once every
/// handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `db`, holding `lock` (the serving lock)
    /// for as long as it runs; `upkeep` runs between jobs now and then.
    pub(super) fn start(
        db: WriterDb,
        lock: std::fs::File,
        path: &Path,
        metrics: &Metrics,
        upkeep: fn(&mut WriterDb),
    ) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let path = path.to_path_buf();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("jit-ssh-ca-db".into())
            .spawn(move || {
                WriterThread {
                    db,
                    _lock: lock,
                    path,
                    health: Health {
                        metrics: metrics.clone(),
                        failing: false,
                    },
                    metrics,
                    upkeep,
                }
                .run(queue)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Writer { jobs })
    }

    /// Writes `record` with `write` in the next group commit; returns once
    /// that transaction is on disk.
    pub(super) async fn batched<R: Send + 'static>(
        &self,
        record: R,
        write: impl WriteRecord<R>,
    ) -> Result<(), StoreError> {
        self.ask(|done| {
            Job::Batched(Box::new(Pending {
                record,
                write,
                done: Some(done),
            }))
        })
        .await
        .map(drop)
    }

    /// Runs `work` alone, after the waiting batch has committed (so it sees
    /// every record queued before it), with the writer's connection and spent
    /// set.
    pub(super) async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WriterDb, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(move |done: Reply<T>| {
            Job::Exclusive(Box::new(move |db, path| {
                // The caller may have timed out; what was committed stands.
                let _ = done.send(work(db, path));
            }))
        })
        .await
    }

    /// Runs `work` alone in a transaction of its own, committed if it
    /// succeeds.
    pub(super) async fn transaction<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriteTx<'_>, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(move |done: Reply<T>| {
            Job::Transaction(Box::new(move |thread: &mut WriterThread| {
                let path = thread.path.clone();
                let result = thread.db.in_transaction(&path, |tx| work(tx, &path));
                thread.health.note(&result);
                let _ = done.send(result);
            }))
        })
        .await
    }

    /// Runs `work`, a read, without cutting the waiting group commit short:
    /// it may run before the records waiting in the batch commit. Only for
    /// reads whose callers need not see those records.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_spent(move |db, path| work(&db.conn, path)).await
    }

    /// [`Writer::read`] that also sees the spent-token set, as the last
    /// commit left it.
    pub(super) async fn read_spent<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriterDb, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(move |done: Reply<T>| {
            Job::Read(Box::new(move |db, path| {
                let _ = done.send(work(db, path));
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

/// What the writer runs, known only by how it runs.
enum Job {
    /// A record written in the next group commit.
    Batched(Box<dyn BatchedJob>),
    /// Work that runs alone, once the waiting batch has committed; it
    /// answers for itself.
    Exclusive(ExclusiveWork),
    /// A read that may run ahead of the waiting batch; it answers for itself.
    Read(ReadWork),
    /// A write transaction that runs alone, as `Exclusive`, whose outcome
    /// also tells whether the database accepts writes.
    Transaction(Box<dyn FnOnce(&mut WriterThread) + Send>),
}

/// A record waiting in a batch, with the way to write it and its caller.
trait BatchedJob: Send {
    /// Writes the record in the batch's transaction.
    fn write(&self, tx: &WriteTx<'_>, path: &Path) -> Result<(), StoreError>;
    /// Tells the caller how its record fared, once the batch has.
    fn answer(self: Box<Self>, result: Result<(), StoreError>);
}

struct Pending<R, W> {
    record: R,
    write: W,
    done: Option<Reply<Box<Pending<R, W>>>>,
}

impl<R: Send + 'static, W: WriteRecord<R>> BatchedJob for Pending<R, W> {
    fn write(&self, tx: &WriteTx<'_>, path: &Path) -> Result<(), StoreError> {
        (self.write)(tx, &self.record, path)
    }

    /// Answered with the job itself, record and all, so that the caller's
    /// thread, which built the record, also frees it, and the one writer
    /// thread spends its time writing.
    fn answer(mut self: Box<Self>, result: Result<(), StoreError>) {
        if let Some(done) = self.done.take() {
            // The requester may have timed out; its record stands regardless.
            drop(done.send(result.map(|()| self)));
        }
    }
}

struct WriterThread {
    db: WriterDb,
    /// Held while the writer runs (dropped after `conn`).
    _lock: std::fs::File,
    path: PathBuf,
    health: Health,
    metrics: Metrics,
    upkeep: fn(&mut WriterDb),
}

/// Whether the database accepts writes, as the last write found it.
struct Health {
    metrics: Metrics,
    failing: bool,
}

impl Health {
    /// Notes how a write went; logs only a change (a full disk fails every
    /// commit, and one line says so).
    fn note<T>(&mut self, outcome: &Result<T, StoreError>) {
        match outcome {
            Err(error @ StoreError::Database { .. }) => {
                if !self.failing {
                    tracing::error!(
                        %error,
                        "the database does not accept writes: issuance and changes answer \
                         503 store_unavailable, and /readyz fails, until a write succeeds"
                    );
                }
                self.failing = true;
                self.metrics.store_writable.set(0);
            }
            // A refusal (a replayed token...) is the record's, not the
            // database's.
            Err(_) => {}
            Ok(_) => {
                if self.failing {
                    tracing::info!("the database accepts writes again");
                }
                self.failing = false;
                self.metrics.store_writable.set(1);
            }
        }
    }
}

/// `error` again, for each caller of a failed batch: SQLite's reason when
/// it gave one.
fn retold(error: &StoreError) -> StoreError {
    match error {
        StoreError::Database {
            path,
            source: super::DatabaseError(rusqlite::Error::SqliteFailure(code, message)),
        } => StoreError::Database {
            path: path.clone(),
            source: super::DatabaseError(rusqlite::Error::SqliteFailure(*code, message.clone())),
        },
        _ => StoreError::Closed,
    }
}

impl WriterThread {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut last_upkeep = std::time::Instant::now();
        let mut last_batch = 0;
        loop {
            let wait = match self.health.failing {
                true => PROBE_INTERVAL,
                false => UPKEEP_INTERVAL,
            };
            let first = match queue.recv_timeout(wait) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) if self.health.failing => {
                    self.probe();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    (self.upkeep)(&mut self.db);
                    last_upkeep = std::time::Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Records are group-committed; the rare exclusive jobs run
            // alone, in order with the batches around them.
            let mut batch: Vec<Box<dyn BatchedJob>> = Vec::new();
            let linger_until = (last_batch > 1).then(|| std::time::Instant::now() + BATCH_LINGER);
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Batched(record) => batch.push(record),
                    // None of the waiting batch's callers has been answered,
                    // so a read that runs before the batch commits misses
                    // nothing anyone was told of; every authenticated call
                    // makes one (its caller's standing), and flushing the
                    // batch for each would end group commit.
                    Job::Read(work) => work(&self.db, &self.path),
                    Job::Exclusive(work) => {
                        if !batch.is_empty() {
                            self.commit_batch(std::mem::take(&mut batch));
                        }
                        work(&mut self.db, &self.path);
                    }
                    Job::Transaction(work) => {
                        if !batch.is_empty() {
                            self.commit_batch(std::mem::take(&mut batch));
                        }
                        work(&mut self);
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
                        // Naps rather than waits on the queue: a writer
                        // waiting on it would be woken (and each sender make
                        // a system call) for every record that joins.
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
            if last_upkeep.elapsed() >= UPKEEP_INTERVAL {
                (self.upkeep)(&mut self.db);
                last_upkeep = std::time::Instant::now();
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Box<dyn BatchedJob>>) {
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let err = sqlite_error(&path);
        let mut results = Vec::with_capacity(batch.len());
        let outcome = (|| -> Result<(), StoreError> {
            let tx = self.db.transaction().map_err(&err)?;
            for job in &batch {
                let written_before = tx.total_changes();
                let result = job.write(&tx, &path);
                // A refusal wrote nothing (see `WriteRecord`); the database failing
                // part-way may have, and so would a refusal that a later
                // change let through after a write: the batch rolls back
                // whole rather than commit half a record.
                match result {
                    Err(error @ StoreError::Database { .. }) => return Err(error),
                    Err(refusal) if tx.total_changes() != written_before => {
                        tracing::error!(%refusal, "a refused record had written rows");
                        return Err(StoreError::Closed);
                    }
                    result => results.push(result),
                }
            }
            tx.commit().map_err(&err)
        })();
        self.health.note(&outcome);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commit_batch_size.observe(batch.len() as f64);
        let mut results = results.into_iter();
        for job in batch {
            let result = match &outcome {
                Ok(()) => results.next().unwrap_or(Err(StoreError::Closed)),
                Err(error) => Err(retold(error)),
            };
            job.answer(result);
        }
    }

    /// A write that means nothing but must reach the disk (a counter in a
    /// table of its own: a row updated to its own value would commit
    /// without writing), to learn whether the database accepts writes
    /// again.
    fn probe(&mut self) {
        let path = self.path.clone();
        let outcome = self.db.in_transaction(&path, |tx| {
            tx.execute(
                "INSERT INTO writer_probe (id, writes) VALUES (1, 1) \
                 ON CONFLICT (id) DO UPDATE SET writes = writes + 1",
                [],
            )
            .map_err(sqlite_error(&path))
        });
        self.health.note(&outcome);
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;
    use crate::store::fixtures::record;
    use crate::store::{read_audit, AuditFilter, Store, DATABASE_FILE};

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
            r.spent_token.digest.signed[1] = (i / 250) as u8;
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
}
