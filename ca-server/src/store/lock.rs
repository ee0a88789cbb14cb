//! The serving lock: at most one server writes a database at a time.
//!
//! The set of spent tokens lives in the serving writer's memory, so a second
//! server on the same file could accept a token the first one spent. The lock
//! is an advisory lock on a file beside the database, held for as long as the
//! writer runs; the admin CLI's offline changes never take it (SQLite
//! serialises their writes with the server's).

use std::path::Path;
use std::time::Duration;

use super::StoreError;

/// Takes the lock that one serving writer per database holds: the set of
/// spent tokens lives in its memory, so a second server on the same file
/// could accept a token the first one spent. The lock is on a file beside
/// the database, not the database itself, whose locks are SQLite's. Waits a
/// little for a writer that is still shutting down in this process.
pub(super) fn lock_for_serving(path: &Path) -> Result<std::fs::File, StoreError> {
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
