//! The one advisory file lock of the driver: the relay's storage directory and the client's key directory
//! each hold an exclusive `flock` on a lock file for the life of the process or session.
//!
//! ```text
//! open (create, never truncate, mode) ─▶ flock(LOCK_EX | LOCK_NB) ─▶ File (the lock lives as long as it)
//!                                                                 └▶ Locked::Held (someone else holds it)
//! ```
//! Non-blocking on purpose: a second relay or session must fail at once with a clear message, not hang.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a lock file could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be opened or created.
    #[error("{0}")]
    Open(std::io::Error),
    /// Another process (or another open file in this one) holds the lock.
    #[error("the lock is held")]
    Held,
}

/// Opens (creating it with permissions `mode` if absent) and exclusively locks `path`; the lock is released
/// when the returned file is closed.
pub fn lock_exclusive(path: &Path, mode: u32) -> Result<File, LockError> {
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).mode(mode).open(path).map_err(LockError::Open)?;
    // SAFETY: flock on a file descriptor we own; it takes an advisory lock and touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(LockError::Held);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let held = lock_exclusive(&path, 0o600).unwrap();
        assert!(matches!(lock_exclusive(&path, 0o600), Err(LockError::Held)));
        drop(held);
        lock_exclusive(&path, 0o600).unwrap();
    }

    #[test]
    fn missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(lock_exclusive(&dir.path().join("no/LOCK"), 0o600), Err(LockError::Open(_))));
    }
}
