//! The handle of a running job: progress snapshots, per-object events, a graceful stop, an abort.
//!
//! # Dropping the handle
//! Dropping a [`JobHandle`] asks the job to stop gracefully, exactly as [`JobHandle::stop`] does: no new object
//! or part starts, parts in flight finish and are recorded, the ledger is flushed, and the job stays resumable.
//! Nothing is aborted on the server. To keep a job running unattended, keep the handle (or `join` it). Starting
//! the same job again in this process waits for the stopping one to release it (see [`super::JobStart`]).

use super::{Outcome, PlannedAction, PlannedObject};
use crate::checkpoint::{JobId, JobState, Ledger, ObjectState};
use crate::error::{Error, ErrorKind, Result};
use crate::run::Pacer;
use crate::store::{Store, Upload};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Counters and the stop flag shared by a job's tasks.
#[derive(Debug)]
pub(super) struct Tracker {
    started: Instant,
    acknowledged: AtomicU64,
    retried: AtomicU64,
    bytes_found: AtomicU64,
    found: AtomicU64,
    done: AtomicU64,
    already_done: AtomicU64,
    skipped: AtomicU64,
    planned: AtomicU64,
    failed: AtomicU64,
    chunks_done: AtomicU64,
    chunks_failed: AtomicU64,
    deleted: AtomicU64,
    listing_finished: AtomicBool,
    stopped: AtomicBool,
    stop_signal: tokio::sync::Notify,
    /// Of `acknowledged`, what an earlier run delivered (parts reused, objects found done).
    reused: AtomicU64,
    /// The rate's last sample: when, the bytes sent by then, and the smoothed rate.
    last_sample: Mutex<(Instant, u64, f64)>,
    /// Whether the job ran before this run (found in the ledger, not created by it).
    resumed: bool,
    throttled: AtomicU64,
    /// A resumed sync pass: source entries settled before its cursor by an earlier run.
    settled_earlier: AtomicU64,
    /// The pacers of the job's stores, with the time each had run slowed when the job started.
    pacers: Vec<(Arc<Pacer>, Duration)>,
}

/// How long the rate remembers: a sample's weight halves about every `RATE_MEMORY × ln 2`.
const RATE_MEMORY: Duration = Duration::from_secs(3);

impl Tracker {
    /// A run's tracker; `resumed` when the job ran before.
    pub(super) fn new(resumed: bool) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            acknowledged: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            bytes_found: AtomicU64::new(0),
            found: AtomicU64::new(0),
            done: AtomicU64::new(0),
            already_done: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            chunks_done: AtomicU64::new(0),
            chunks_failed: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            listing_finished: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stop_signal: tokio::sync::Notify::new(),
            reused: AtomicU64::new(0),
            last_sample: Mutex::new((now, 0, f64::NAN)),
            resumed,
            throttled: AtomicU64::new(0),
            settled_earlier: AtomicU64::new(0),
            pacers: Vec::new(),
        }
    }

    /// This tracker, reporting the time the job's stores ran slowed by their `pacers` from now on.
    pub(super) fn with_pacers(mut self, pacers: impl IntoIterator<Item = Arc<Pacer>>) -> Self {
        self.pacers = pacers.into_iter().map(|p| (p.clone(), p.stats().slowed)).collect();
        self
    }

    /// A resumed sync pass: `n` source entries were settled before its cursor by an earlier run.
    pub(super) fn settled_earlier(&self, n: u64) {
        self.settled_earlier.store(n, Ordering::Relaxed);
    }

    /// A request was answered with a throttling error.
    pub(super) fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the job ran before this run.
    pub(super) fn resumed(&self) -> bool {
        self.resumed
    }

    pub(super) fn acknowledged(&self, bytes: u64) {
        self.acknowledged.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes an earlier run delivered, found in place by this one: acknowledged, not sent.
    pub(super) fn reused(&self, bytes: u64) {
        self.reused.fetch_add(bytes, Ordering::Relaxed);
        self.acknowledged(bytes);
    }

    pub(super) fn found(&self, bytes: u64) {
        self.found.fetch_add(1, Ordering::Relaxed);
        self.bytes_found.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn finished(&self, outcome: &Outcome) {
        if outcome.chunk.is_some() {
            self.chunks_done.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if outcome.skipped.is_some() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let counter = if outcome.already_done { &self.already_done } else { &self.done };
        counter.fetch_add(1, Ordering::Relaxed);
        // An earlier run's object counts as acknowledged if its bytes arrived; one an earlier run skipped (no
        // ETag recorded) does not.
        if outcome.already_done && !outcome.etag.is_empty() {
            self.reused(outcome.size);
        }
    }

    pub(super) fn planned(&self, plan: &PlannedObject) {
        self.planned.fetch_add(1, Ordering::Relaxed);
        if matches!(plan.action, PlannedAction::Skip(_)) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A chunk of a split object failed: the job fails as for an object, but no object is counted.
    pub(super) fn chunk_failed(&self) {
        self.chunks_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A sync deleted a destination entry.
    pub(super) fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn listing_finished(&self) {
        self.listing_finished.store(true, Ordering::Relaxed);
    }

    pub(super) fn is_listing_finished(&self) -> bool {
        self.listing_finished.load(Ordering::Relaxed)
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop_signal.notify_waiters();
    }

    /// Resolves once [`Tracker::stop`] was called.
    pub(super) async fn stopped(&self) {
        let notified = self.stop_signal.notified();
        if !self.is_stopped() {
            notified.await;
        }
    }

    /// Objects and chunks that failed.
    pub(super) fn snapshot_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed) + self.chunks_failed.load(Ordering::Relaxed)
    }

    /// A snapshot whose rate is the average of the bytes sent since the start (for summaries).
    pub(super) fn snapshot_now(&self) -> Progress {
        let mut p = self.snapshot();
        let secs = p.elapsed.as_secs_f64();
        let sent = p.bytes_acknowledged.saturating_sub(p.bytes_reused);
        p.bytes_per_second = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
        p
    }

    pub(super) fn snapshot(&self) -> Progress {
        let now = Instant::now();
        let acknowledged = self.acknowledged.load(Ordering::Relaxed);
        let reused = self.reused.load(Ordering::Relaxed);
        let sent = acknowledged.saturating_sub(reused);
        // An exponentially weighted rate of the bytes sent, sampled at most every 200 ms: steady where the
        // acknowledgements come in bursts (a part at a time), and blind to what an earlier run delivered.
        let rate = {
            let mut last = self.last_sample.lock().unwrap_or_else(|p| p.into_inner());
            let dt = now.duration_since(last.0);
            if dt >= Duration::from_millis(200) {
                let now_rate = sent.saturating_sub(last.1) as f64 / dt.as_secs_f64();
                let weight = 1.0 - (-dt.as_secs_f64() / RATE_MEMORY.as_secs_f64()).exp();
                let smoothed = if last.2.is_nan() { now_rate } else { last.2 + weight * (now_rate - last.2) };
                *last = (now, sent, smoothed);
            }
            if last.2.is_nan() {
                0.0
            } else {
                last.2
            }
        };
        Progress {
            bytes_acknowledged: acknowledged,
            bytes_reused: reused,
            bytes_found: self.bytes_found.load(Ordering::Relaxed),
            objects_found: self.found.load(Ordering::Relaxed),
            objects_done: self.done.load(Ordering::Relaxed),
            objects_already_done: self.already_done.load(Ordering::Relaxed),
            objects_skipped: self.skipped.load(Ordering::Relaxed),
            objects_planned: self.planned.load(Ordering::Relaxed),
            requests_retried: self.retried.load(Ordering::Relaxed),
            requests_throttled: self.throttled.load(Ordering::Relaxed),
            objects_settled_earlier: self.settled_earlier.load(Ordering::Relaxed),
            slowed: self
                .pacers
                .iter()
                .map(|(p, at_start)| p.stats().slowed.saturating_sub(*at_start))
                .max()
                .unwrap_or_default(),
            objects_failed: self.failed.load(Ordering::Relaxed),
            chunks_done: self.chunks_done.load(Ordering::Relaxed),
            chunks_failed: self.chunks_failed.load(Ordering::Relaxed),
            objects_deleted: self.deleted.load(Ordering::Relaxed),
            listing_finished: self.listing_finished.load(Ordering::Relaxed),
            bytes_per_second: rate,
            elapsed: now.duration_since(self.started),
        }
    }
}

/// A point-in-time view of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Bytes the server acknowledged (parts and objects answered with success), including what an earlier run
    /// delivered and this one found done. Never bytes merely read or buffered, nor the bytes of objects left
    /// alone by the [overwrite policy](super::Overwrite) (in this run or an earlier one).
    pub bytes_acknowledged: u64,
    /// Of `bytes_acknowledged`, what an earlier run delivered (parts reused, objects found done): this run
    /// did not send them.
    pub bytes_reused: u64,
    /// Bytes of the objects found so far.
    pub bytes_found: u64,
    /// Objects found so far (the listing is streamed: this grows until `listing_finished`).
    pub objects_found: u64,
    /// Objects this run transferred.
    pub objects_done: u64,
    /// Objects an earlier run had finished, or had skipped by the overwrite policy (nothing to do now).
    pub objects_already_done: u64,
    /// Objects this run left alone by the [overwrite policy](super::Overwrite) (reported with a
    /// [`SkipReason`](super::SkipReason)); counted in neither `objects_done` nor `objects_already_done`. In a dry run, the
    /// objects planned as [`PlannedAction::Skip`].
    pub objects_skipped: u64,
    /// Dry runs only: objects reported with [`Event::Planned`], skipped ones included (0 in a real run).
    pub objects_planned: u64,
    /// Requests sent again after a retryable failure (timeouts, resets, 5xx, throttling, checksum mismatches).
    pub requests_retried: u64,
    /// Requests the store answered with a throttling error (503 `SlowDown`, 429, `QpsLimitExceeded`, ...).
    pub requests_throttled: u64,
    /// How long the job was held back: the time its stores' [pacers](crate::run::Pacer) ran slowed after a
    /// throttling answer (the longest of them, when the job reads one store and writes another).
    pub slowed: Duration,
    /// Objects that failed.
    pub objects_failed: u64,
    /// Syncs with [`SyncRequest::chunks`](super::SyncRequest::chunks) only: chunks whose parts are all on the
    /// server (sent now, or found there). In none of the object counts; their bytes are in the byte counts.
    pub chunks_done: u64,
    /// Chunks that failed: the job fails as for a failed object.
    pub chunks_failed: u64,
    /// Syncs only: destination entries deleted because the source does not have them.
    pub objects_deleted: u64,
    /// Syncs only: source entries an earlier run of the pass (killed or stopped) had settled before its cursor;
    /// this run listed after them, so they are in none of the other counts.
    pub objects_settled_earlier: u64,
    /// True once every object has been found.
    pub listing_finished: bool,
    /// Bytes sent per second: an exponentially weighted rate (a few seconds' memory) of the acknowledged bytes
    /// this run sent, updated at most every 200 ms; in a job's summary, the average since the start.
    pub bytes_per_second: f64,
    /// Time since the job started.
    pub elapsed: Duration,
}

/// What happened to one object.
#[derive(Debug, Clone)]
pub enum Event {
    /// The object is in place (or was already, from an earlier run), or the overwrite policy left its
    /// destination alone ([`Outcome::skipped`]).
    Done {
        /// Destination key (for a download, the object's key).
        key: String,
        /// What the upload or copy did.
        outcome: Outcome,
    },
    /// The object failed; the job goes on with the others.
    Failed {
        /// Destination key (for a download, the object's key).
        key: String,
        /// Why: its [kind](crate::Error::kind) and retry class, the server's code and request id when a server
        /// answered, and the object, part and upload id as context.
        error: crate::Error,
    },
    /// A sync deleted a destination entry the source does not have ([`SyncRequest::delete`](super::SyncRequest::delete)).
    Deleted {
        /// The destination's key (or, in a directory, the file's path).
        key: String,
        /// True when the store kept the object's data and left a delete marker (a versioned bucket): the
        /// object's versions are still there.
        delete_marker: bool,
    },
    /// Dry runs only ([`EngineConfig::dry_run`](super::EngineConfig::dry_run)): what a real run would do to
    /// the object. Nothing was written.
    Planned {
        /// Destination key.
        key: String,
        /// The object, its size and the planned action.
        plan: PlannedObject,
    },
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// The job.
    pub job: JobId,
    /// Final progress.
    pub progress: Progress,
    /// How it ended: `Done`, `Failed` (some objects failed; resumable), or `Stopped` (resumable). A dry run
    /// ends the same way but records nothing in the ledger.
    pub state: JobState,
    /// The first failures (at most 100), as `(key, error)`.
    pub failures: Vec<(String, crate::Error)>,
    /// Uploads aborted by [`JobHandle::abort`].
    pub aborted_uploads: usize,
    /// Syncs only: deletions not made because [`SyncRequest::max_delete`](super::SyncRequest::max_delete) was
    /// reached (the job then ends `Stopped`; its next run lists both sides again and goes on), or because the
    /// source listed nothing (the job then ends `Failed`).
    pub deletions_withheld: u64,
}

/// A running job. See the module docs for what dropping it does.
#[derive(Debug)]
pub struct JobHandle {
    pub(super) job: JobId,
    pub(super) tracker: Arc<Tracker>,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) task: Option<JoinHandle<Result<JobSummary>>>,
    pub(super) store: Arc<dyn Store>,
    pub(super) ledger: Ledger,
    /// A dry run: nothing of it is in the ledger, so [`JobHandle::abort`] has nothing to abort.
    pub(super) dry_run: bool,
}

impl JobHandle {
    /// The job's id in the ledger.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// A snapshot of the job's progress.
    pub fn progress(&self) -> Progress {
        self.tracker.snapshot()
    }

    /// The next per-object event, in order; `None` once the job ended and every event was read. None is lost:
    /// up to 1,024 wait here, and past that the job waits for its reader (so a dry run's plan, which is all
    /// events, is complete however slowly it is printed). A caller that does not want them just never calls
    /// this and goes to [`join`](Self::join), which stops listening first, so a job never waits on events
    /// nobody will read then. (Polling only [`progress`](Self::progress) on a job of over 1,024 objects and
    /// joining only at the end would hold the job back: read the events, or join.)
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Graceful stop: no new object or part starts, parts in flight finish and are recorded, the ledger is
    /// flushed; [`join`](Self::join) then returns a summary with state `Stopped`, and the job can be resumed.
    pub fn stop(&self) {
        self.tracker.stop();
    }

    /// Waits for the job to end. Fails when objects of the job failed ([`ErrorKind::JobFailed`], the first
    /// failure as its source; the job is resumable), so a caller who only checks `?` sees a failed backup as
    /// one. A stopped job ([`stop`](Self::stop)) is not a failure: its summary says `Stopped`. Use
    /// [`wait`](Self::wait) for the summary whatever became of the objects.
    pub async fn join(self) -> Result<JobSummary> {
        let summary = self.wait().await?;
        match summary.failures.first() {
            Some((key, first)) if summary.state == JobState::Failed => {
                let p = &summary.progress;
                Err(Error::new(
                    ErrorKind::JobFailed,
                    format!(
                        "job {}: {} of {} objects failed (first {key}); running the job again resumes it",
                        summary.job,
                        p.objects_failed,
                        p.objects_found.max(p.objects_failed)
                    ),
                )
                .with_source(first.clone())
                .with_context("job", summary.job))
            }
            _ => Ok(summary),
        }
    }

    /// Waits for the job to end and returns its summary, whatever became of its objects: `Done`, `Stopped`, or
    /// `Failed` with the failures listed. Fails only when the job itself could not run to its end (its ledger
    /// could not be written, its task panicked).
    pub async fn wait(mut self) -> Result<JobSummary> {
        // Nobody reads events past this point: unread ones are dropped and the job no longer waits for a reader.
        self.events.close();
        let task = self.task.take().expect("waited for once");
        task.await?
    }

    /// Stops the job, then aborts every multipart upload it created that did not complete
    /// (AbortMultipartUpload), so nothing is left billed on the server. The ledger keeps its rows (use
    /// `Ledger::forget_job` to drop them); a later run starts those objects from scratch. A dry run is only
    /// stopped: it created nothing, and the uploads of a real run of the same job are left alone.
    pub async fn abort(self) -> Result<JobSummary> {
        self.stop();
        let (store, ledger, job, dry_run) = (self.store.clone(), self.ledger.clone(), self.job, self.dry_run);
        let mut summary = self.wait().await?;
        if dry_run {
            return Ok(summary);
        }
        let mut after = 0;
        loop {
            let page = ledger.off_thread(move |l| l.objects(job, None, after, 500)).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for row in page {
                // A chunk's upload is its migration's plan's (`transfer shard abort` aborts it), not this job's.
                let Some(upload_id) = row.upload_id.clone().filter(|_| !row.is_chunk()) else { continue };
                if matches!(row.state, ObjectState::Completed | ObjectState::Tagged) {
                    continue;
                }
                match store.abort_multipart(&Upload::new(&row.dest_bucket, &row.dest_key, upload_id.clone())).await {
                    Ok(()) => summary.aborted_uploads += 1,
                    Err(e) if e.kind() == crate::ErrorKind::UploadNotFound => {}
                    Err(e) => return Err(e.with_context("upload id", &upload_id)),
                }
                let id = row.id;
                ledger.off_thread(move |l| l.set_upload(id, None)).await?;
            }
        }
        Ok(summary)
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.tracker.stop();
        }
    }
}
