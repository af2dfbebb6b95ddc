//! A job over a directory: every regular file under it becomes an object under a prefix, streamed.
//!
//! The directory is walked on a blocking thread that feeds a bounded channel, so a job over millions of files
//! holds a bounded number of entries in memory: the walk's stack of directories, the channel, and the files
//! being uploaded (at most twice the number of requests in flight). Every file goes through
//! [`Engine::upload_file`], under the engine's one scheduler, so small files and the parts of large ones share
//! the same bound on requests in flight and the same memory budget.

use super::handle::{Event, JobHandle, JobSummary, Tracker};
use super::{Engine, UploadRequest};
use crate::checkpoint::{JobId, JobState};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::Metadata;
use crate::tags::TagSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A directory to upload.
#[derive(Debug, Clone)]
pub struct DirRequest {
    /// The local directory.
    pub dir: PathBuf,
    /// Destination bucket.
    pub bucket: String,
    /// Key prefix; a file `a/b.txt` under `dir` becomes `<prefix>/a/b.txt` (no prefix: `a/b.txt`).
    pub prefix: String,
    /// Metadata of every object.
    pub metadata: Metadata,
    /// Tags of every object.
    pub tags: Option<TagSet>,
}

/// Most failures kept in a summary.
const MAX_FAILURES_KEPT: usize = 100;

/// One found file, or a part of the tree that could not be read.
type Found = std::result::Result<(PathBuf, String, u64), (String, String)>;

impl Engine {
    /// Starts uploading every regular file under `req.dir` as job `job` and returns its handle. Takes the job's
    /// lock for the job's lifetime (a second process on the same job gets a clear error here). Files an earlier
    /// run finished are skipped; interrupted ones resume. Symbolic links to files are followed; symbolic links
    /// to directories are not (no cycles).
    pub fn upload_dir(&self, job: JobId, req: DirRequest) -> Result<JobHandle> {
        if !req.dir.is_dir() {
            return Err(Error::invalid(format!("{} is not a directory", req.dir.display())));
        }
        crate::store::validate_bucket(&req.bucket)?;
        let lock = self.inner.ledger.lock_job(job)?;
        self.inner.ledger.set_job_state(job, JobState::Running)?;
        let tracker = Arc::new(Tracker::new());
        let engine = self.tracked(tracker.clone());
        let (events_tx, events) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let _lock = lock;
            engine.run_dir(job, req, events_tx).await
        });
        Ok(JobHandle {
            job,
            tracker,
            events,
            task: Some(task),
            store: self.inner.store.clone(),
            ledger: self.inner.ledger.clone(),
        })
    }

    async fn run_dir(&self, job: JobId, req: DirRequest, events: mpsc::Sender<Event>) -> Result<JobSummary> {
        let tracker = self.tracker.clone().expect("a job engine is tracked");
        let (tx, mut found) = mpsc::channel::<Found>(1024);
        let prefix = match req.prefix.as_str() {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        let (dir, walk_tracker) = (req.dir.clone(), tracker.clone());
        let walker = tokio::task::spawn_blocking(move || walk(&dir, &prefix, &tx, &walk_tracker));
        let limit = self.inner.config.plan.max_in_flight.max(1) * 2;
        let mut running: JoinSet<(String, Result<super::UploadOutcome>)> = JoinSet::new();
        let mut failures = Vec::new();
        let settle = |key: String, result: Result<super::UploadOutcome>, failures: &mut Vec<(String, String)>| {
            let event = match result {
                Ok(outcome) => {
                    tracker.finished(&outcome);
                    Event::Done { key, outcome }
                }
                Err(e) if e.kind() == ErrorKind::Stopped => return,
                Err(e) => {
                    tracker.failed();
                    if failures.len() < MAX_FAILURES_KEPT {
                        failures.push((key.clone(), e.to_string()));
                    }
                    Event::Failed { key, error: e.to_string() }
                }
            };
            let _ = events.try_send(event);
        };
        loop {
            while running.len() >= limit {
                if let Some(done) = running.join_next().await {
                    let (key, result) = done.map_err(|e| Error::new(ErrorKind::Io, "an upload task failed").with_source(e))?;
                    settle(key, result, &mut failures);
                }
            }
            let next = tokio::select! {
                item = found.recv() => item,
                _ = tracker.stopped() => None,
            };
            match next {
                None => break,
                Some(Err((what, error))) => settle(what, Err(Error::new(ErrorKind::Io, error)), &mut failures),
                Some(Ok((path, key, _size))) => {
                    let r = UploadRequest { path, bucket: req.bucket.clone(), key, metadata: req.metadata.clone(), tags: req.tags.clone() };
                    let engine = self.clone();
                    running.spawn(async move {
                        let result = engine.upload_file(job, &r).await;
                        (r.key, result)
                    });
                }
            }
        }
        drop(found);
        while let Some(done) = running.join_next().await {
            let (key, result) = done.map_err(|e| Error::new(ErrorKind::Io, "an upload task failed").with_source(e))?;
            settle(key, result, &mut failures);
        }
        let _ = walker.await;
        let state = if tracker.is_stopped() {
            JobState::Stopped
        } else if tracker.snapshot_failed() > 0 {
            JobState::Failed
        } else {
            JobState::Done
        };
        self.db(move |l| l.set_job_state(job, state)).await?;
        Ok(JobSummary { job, progress: tracker.snapshot_now(), state, failures, aborted_uploads: 0 })
    }
}

/// Walks `dir` depth-first, sending every regular file with its key and size. Stops early when the receiver is
/// gone or the job stops.
fn walk(dir: &Path, prefix: &str, tx: &mpsc::Sender<Found>, tracker: &Tracker) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                if tx.blocking_send(Err((d.display().to_string(), format!("cannot list {}: {e}", d.display())))).is_err() {
                    return;
                }
                continue;
            }
        };
        for entry in entries {
            if tracker.is_stopped() {
                return;
            }
            let item = match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok((path, ft)) if ft.is_dir() => {
                    stack.push(path);
                    continue;
                }
                Ok((path, ft)) => match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => match key_for(dir, &path, prefix) {
                        Some(key) => Ok((path, key, m.len())),
                        None => Err((path.display().to_string(), format!("{} has a name that is not UTF-8; rename it", path.display()))),
                    },
                    // Sockets, devices, links to directories: not objects.
                    Ok(_) => continue,
                    Err(e) if ft.is_symlink() => Err((path.display().to_string(), format!("broken link {}: {e}", path.display()))),
                    Err(e) => Err((path.display().to_string(), format!("cannot stat {}: {e}", path.display()))),
                },
                Err(e) => Err((d.display().to_string(), format!("cannot list {}: {e}", d.display()))),
            };
            if let Ok((_, _, size)) = &item {
                tracker.found(*size);
            }
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    }
    tracker.listing_finished();
}

/// `prefix` + the path of `file` relative to `root`, with `/` separators.
fn key_for(root: &Path, file: &Path, prefix: &str) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(format!("{prefix}{}", parts?.join("/")))
}
