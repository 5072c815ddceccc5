//! File locks: an exclusive `flock`, held by the process and released by the kernel when it
//! dies. One mechanism used three ways:
//! * the **tick lock** on `state/.lock` (ticks and operator commands; never inherited);
//! * each job's **liveness lock** on `state/active-agents/<job>.lock`, held by the job wrapper
//!   and deliberately handed to its agent or acceptance command (see `job/run.rs`), so "can I
//!   take it?" means "every process of that attempt is gone";
//! * the **host lock** around the host-wide spend file (see `host.rs`; never inherited).
//!
//! std opens files close-on-exec, so a child inherits a lock only when its descriptor is passed
//! on purpose (a leaked tick lock would make every later tick "busy"). [`try_lock`] never
//! blocks; [`lock`] waits.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Proof that this process holds a file lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// The locked file (the job wrapper hands its descriptor to the agent).
    #[must_use]
    pub fn file(&self) -> &File {
        &self._file
    }
}

/// Takes the lock if it is free. `Ok(None)` means another process holds it.
///
/// # Errors
/// When the lock file cannot be created or opened, or `flock` fails for a reason other than
/// "held by someone else".
pub fn try_lock(path: &Path) -> std::io::Result<Option<FileLock>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Takes the lock, waiting for it (operator commands such as `cancel` wait for a running tick).
///
/// # Errors
/// When the lock file cannot be opened or locked.
pub fn lock(path: &Path) -> std::io::Result<FileLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(FileLock { _file: file })
}

/// True when some process holds an exclusive lock on `path` (the liveness test for a job:
/// its wrapper and agent hold `<job>.lock` for their whole lives). A missing file is "not held".
///
/// # Errors
/// When the file exists but cannot be opened or probed.
pub fn is_held(path: &Path) -> std::io::Result<bool> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_same_process_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let first = try_lock(&p).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&p).unwrap().is_none());
        assert!(is_held(&p).unwrap());
        drop(first);
        assert!(!is_held(&p).unwrap());
        assert!(try_lock(&p).unwrap().is_some());
    }
}
