//! Backups: a consistent, private, self-contained copy of the database,
//! taken while the server may be running (`jit-ssh-ca backup`).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::schema::{invalid_path, open_connection, sqlite_error};
use super::StoreError;

/// Writes a consistent copy of the database at `path` to `out` while the CA
/// may be running (SQLite's online backup), refusing to overwrite `out`.
/// Returns the number of issued certificates in the copy.
pub fn backup(path: &Path, out: &Path) -> Result<u64, StoreError> {
    let err = sqlite_error(path);
    if out.exists() {
        return Err(invalid_path(out));
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
            .map_err(|_| invalid_path(out))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::record;
    use crate::store::{read_audit, AuditFilter, Store, DATABASE_FILE};

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
}
