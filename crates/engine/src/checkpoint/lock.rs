//! One writer per job: an exclusive OS file lock next to the ledger.

use super::JobId;
use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The exclusive right to run a job, held until dropped (or until the process exits, however it exits: the
/// operating system releases the lock).
///
/// The lock file `<ledger path>.job-<id>.lock` holds the owner's process id, for the error message only; the
/// file is left in place on drop (deleting it would let two processes lock two different files) and removed by
/// [`super::Ledger::forget_job`].
#[derive(Debug)]
pub struct JobLock {
    job: JobId,
    path: PathBuf,
    _file: File,
}

pub(crate) fn lock_path(ledger: &Path, job: JobId) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(format!(".job-{job}.lock"));
    PathBuf::from(name)
}

impl JobLock {
    pub(crate) fn acquire(ledger: &Path, job: JobId) -> Result<JobLock> {
        let path = lock_path(ledger, job);
        let mut file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(|e| {
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
        Ok(JobLock { job, path, _file: file })
    }

    /// The job this lock is for.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// Removes the lock file (the job is gone), then releases the lock.
    pub(crate) fn remove_file(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
