//! One writer per job: an exclusive OS file lock next to the ledger.

use super::JobId;
use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The exclusive right to run a job, held until dropped (or until the process exits, however it exits: the
/// operating system releases the lock).
///
/// The lock file `<ledger path>.job-<id>.lock` holds the owner's process id, for the error message only. It is
/// removed when the lock is released (on Unix), so a ledger's directory holds lock files only for jobs running
/// now. Removing it is safe because taking the lock checks, once it holds it, that the path still names the
/// file it locked (and starts over if not): a process that opened the file just before it was removed cannot
/// hold a lock on it beside a process that made a new one.
#[derive(Debug)]
pub struct JobLock {
    job: JobId,
    path: PathBuf,
    file: Option<File>,
}

pub(crate) fn lock_path(ledger: &Path, job: JobId) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(format!(".job-{job}.lock"));
    PathBuf::from(name)
}

impl JobLock {
    pub(crate) fn acquire(ledger: &Path, job: JobId) -> Result<JobLock> {
        let path = lock_path(ledger, job);
        // A holder removes the file as it lets go: a lock taken on a file that is no longer at the path is
        // nobody's, so take it again on the file that is there now.
        for attempt in 0..100 {
            // Someone looking (`Ledger::is_running`) holds it for an instant: a start waits that out.
            let file = match Self::try_acquire(&path, job) {
                Err(e) if e.kind() == ErrorKind::Locked && attempt < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                r => r?,
            };
            if still_at(&file, &path) {
                return Ok(JobLock { job, path, file: Some(file) });
            }
        }
        Err(Error::new(ErrorKind::Locked, format!("job {job}: its lock file {} keeps being replaced", path.display())))
    }

    fn try_acquire(path: &Path, job: JobId) -> Result<File> {
        let mut file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot open the job lock {}", path.display())).with_source(e)
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                let owner = if owner.is_empty() { String::new() } else { format!(" (process {owner})") };
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "job {job} is locked: another transfer is running it{owner}; wait for it to finish or stop it \
                         (lock file {})",
                        path.display()
                    ),
                )
                .with_context("job", job));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::new(ErrorKind::Io, format!("cannot lock {}", path.display())).with_source(e))
            }
        }
        // Best effort: the pid only decorates the message above.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| write!(file, "{}", std::process::id()));
        Ok(file)
    }

    /// The job this lock is for.
    pub fn job(&self) -> JobId {
        self.job
    }
}

/// Whether a process holds the job's lock now. A lock file whose lock is free was left by a process that died
/// holding it (killed): it is removed.
pub(crate) fn held(ledger: &Path, job: JobId) -> bool {
    let path = lock_path(ledger, job);
    // Read-only is enough to probe a lock, and works where the file is not ours to write.
    let Ok(file) = OpenOptions::new().read(true).open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            if cfg!(unix) && still_at(&file, &path) {
                let _ = std::fs::remove_file(&path);
            }
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

impl Drop for JobLock {
    /// Removes the lock file while still holding the lock, then releases it.
    fn drop(&mut self) {
        if cfg!(unix) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file.take());
    }
}

/// Whether `path` still names the file `file` has open.
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Lock files are never removed where files cannot be compared by identity.
#[cfg(not(unix))]
fn still_at(_: &File, _: &Path) -> bool {
    true
}
