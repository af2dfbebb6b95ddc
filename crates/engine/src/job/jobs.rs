//! Jobs of many objects: a directory to a prefix ([`Engine::upload_dir`]) and a prefix to a prefix, server-side
//! ([`Engine::copy_prefix`]).
//!
//! One runner serves both. A producer (the directory walk on a blocking thread, or the paged listing of the
//! source prefix) feeds a bounded channel, and the runner keeps at most twice the number of requests in flight of
//! objects going at once, each through [`Engine::upload_file`] or [`Engine::copy_object`] under the engine's one
//! scheduler. So a job over millions of objects holds a bounded number of entries in memory, and small objects
//! and the parts of large ones share one bound on requests in flight and one memory budget.
//!
//! The producers apply the request's [`KeyFilter`] as they find entries: an entry it does not take is never
//! sent to the runner. A dry run ([`EngineConfig::dry_run`](super::EngineConfig::dry_run)) uses the same
//! producers and the same runner; only the work done per object differs ([`Engine::plan_upload_file`] or
//! [`Engine::plan_copy_object`] instead of the transfer), and the job's lock and state are left alone.

use super::download::path_under;
use super::handle::{Event, JobHandle, JobSummary, Tracker};
use super::start::{JobStart, Source};
use super::sync::{SyncRequest, Watermark};
use super::{CopyRequest, DownloadRequest, Engine, KeyFilter, Outcome, PlannedObject, UploadRequest};
use crate::checkpoint::{JobId, JobLock, JobState};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::Metadata;
use crate::store::{Directive, ListRequest, ObjectRef};
use crate::tags::TagSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A directory to upload: [`DirRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Which files are taken, by their path relative to `dir` ([`KeyFilter::default()`]: all).
    pub filter: KeyFilter,
}

/// A prefix to copy: every object under `src_bucket/src_prefix` becomes `bucket/prefix + the rest of its key`.
/// [`PrefixCopyRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PrefixCopyRequest {
    /// Source bucket.
    pub src_bucket: String,
    /// Source key prefix (may be empty: the whole bucket).
    pub src_prefix: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key prefix.
    pub prefix: String,
    /// Each destination's metadata: its source's ([`Directive::Copy`]) or these.
    pub metadata: Directive<Metadata>,
    /// Each destination's tags: its source's ([`Directive::Copy`]) or these.
    pub tags: Directive<TagSet>,
    /// Which objects are taken, by their key relative to `src_prefix` (the key with `src_prefix` and a `/`
    /// after it removed, as the destination key is formed); [`KeyFilter::default()`]: all.
    pub filter: KeyFilter,
}

impl DirRequest {
    /// Every file under `dir` to `bucket/prefix/<its path under dir>`, no metadata, no tags, no filter.
    pub fn new(dir: impl Into<PathBuf>, bucket: impl Into<String>, prefix: impl Into<String>) -> DirRequest {
        DirRequest {
            dir: dir.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            metadata: Metadata::default(),
            tags: None,
            filter: KeyFilter::default(),
        }
    }

    /// Metadata and standard headers of every object.
    pub fn metadata(mut self, metadata: Metadata) -> DirRequest {
        self.metadata = metadata;
        self
    }

    /// Tags of every object (an empty set: none).
    pub fn tags(mut self, tags: TagSet) -> DirRequest {
        self.tags = Some(tags).filter(|t| !t.is_empty());
        self
    }

    /// Which files are taken.
    pub fn filter(mut self, filter: KeyFilter) -> DirRequest {
        self.filter = filter;
        self
    }
}

impl PrefixCopyRequest {
    /// Every object under `src_bucket/src_prefix` to `bucket/prefix`, keeping each source's metadata and tags.
    pub fn new(
        src_bucket: impl Into<String>,
        src_prefix: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> PrefixCopyRequest {
        PrefixCopyRequest {
            src_bucket: src_bucket.into(),
            src_prefix: src_prefix.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            metadata: Directive::Copy,
            tags: Directive::Copy,
            filter: KeyFilter::default(),
        }
    }

    /// Each destination's metadata: its source's ([`Directive::Copy`]) or these.
    pub fn metadata(mut self, metadata: Directive<Metadata>) -> PrefixCopyRequest {
        self.metadata = metadata;
        self
    }

    /// Each destination's tags: its source's ([`Directive::Copy`]) or these.
    pub fn tags(mut self, tags: Directive<TagSet>) -> PrefixCopyRequest {
        self.tags = tags;
        self
    }

    /// Which objects are taken.
    pub fn filter(mut self, filter: KeyFilter) -> PrefixCopyRequest {
        self.filter = filter;
        self
    }
}

/// Most failures kept in a summary.
const MAX_FAILURES_KEPT: usize = 100;

/// One unit of work of a job.
pub(super) enum Work {
    Upload(UploadRequest),
    Copy(CopyRequest),
    Download(DownloadRequest),
    Stream(super::StreamRequest),
    Reader(super::StreamUploadRequest),
    /// A sync's pair of entries under one relative key ([`Engine::sync`]).
    Sync(super::sync::Pair),
    /// A sync's part range of a split object ([`super::Chunk`]).
    Chunk(super::Chunk),
    /// An object found that is not to be moved, with why (a key no file may be named after): it fails on its
    /// own, and the job goes on.
    Refused {
        key: String,
        error: Error,
    },
}

/// Work found by a producer, or a part of the source that could not be read: `(what, why)`.
pub(super) type Found = std::result::Result<Work, (String, String)>;

/// What the runner got for one object: a transfer's outcome, or a dry run's plan.
pub(super) enum Settled {
    Transferred(Outcome),
    Planned(PlannedObject),
    /// Nothing to report: a sync's entry only in the destination.
    Nothing,
}

/// `prefix` with a `/` after it, unless it is empty or has one.
pub(super) fn with_slash(prefix: &str) -> String {
    match prefix {
        "" => String::new(),
        p if p.ends_with('/') => p.to_owned(),
        p => format!("{p}/"),
    }
}

impl Engine {
    /// A job uploading every regular file under `req.dir`: `.await` it to start it ([`JobStart`]). Files an
    /// earlier run of the job finished are skipped; interrupted ones resume. Symbolic links to files are
    /// followed; symbolic links to directories are not (no cycles). Only files `req.filter` takes are found.
    ///
    /// With [`EngineConfig::dry_run`](super::EngineConfig::dry_run): the same walk and filter, and an
    /// [`Event::Planned`] per file instead of its upload; no lock, no ledger row, no state change.
    pub fn upload_dir(&self, req: DirRequest) -> JobStart {
        JobStart::new(self, Source::Dir(req))
    }

    /// A job copying every object under `req.src_bucket/req.src_prefix` (server-side within one store with
    /// CopyObject or UploadPartCopy, relayed from another store with [`Engine::relay`]; metadata and tags per
    /// the directives): `.await` it to start it ([`JobStart`]). The source is listed page by page as the job
    /// goes. Objects an earlier run finished are skipped; interrupted ones resume. Only objects `req.filter`
    /// takes are found. A dry run reports an [`Event::Planned`] per object instead (see
    /// [`Engine::upload_dir`]).
    pub fn copy_prefix(&self, req: PrefixCopyRequest) -> JobStart {
        JobStart::new(self, Source::Prefix(req))
    }

    /// A job uploading one file, with a handle (progress, stop, abort) as for a directory.
    pub fn upload_one(&self, req: UploadRequest) -> JobStart {
        JobStart::new(self, Source::File(req))
    }

    /// A job copying one object, with a handle as for a prefix.
    pub fn copy_one(&self, req: CopyRequest) -> JobStart {
        JobStart::new(self, Source::Object(req))
    }

    /// Starts finding the job's objects: a directory walk on a blocking thread, or the paged listing of a prefix.
    pub(super) fn produce(self, source: Source, tracker: Arc<Tracker>, tx: mpsc::Sender<Found>) {
        match source {
            Source::Dir(req) => {
                tokio::task::spawn_blocking(move || walk(&req, &with_slash(&req.prefix), &tx, &tracker));
            }
            Source::Prefix(req) => {
                tokio::spawn(async move {
                    let (bucket, src_prefix) = (req.src_bucket.clone(), req.src_prefix.clone());
                    let prefix = with_slash(&req.prefix);
                    let copy = |key: &str, rest: &str| {
                        Some(Work::Copy(CopyRequest {
                            source: ObjectRef::new(&req.src_bucket, key),
                            bucket: req.bucket.clone(),
                            key: format!("{prefix}{rest}"),
                            metadata: req.metadata.clone(),
                            tags: req.tags.clone(),
                        }))
                    };
                    self.list_source((&bucket, &src_prefix), &req.filter, copy, &tx, &tracker).await
                });
            }
            Source::DownloadPrefix(req) => {
                tokio::spawn(async move {
                    // The objects under `prefix/`, each at the rest of its key exactly (`p//x` is not `p/x`).
                    let under = with_slash(&req.prefix);
                    // A key ending in `/` is a directory marker, not a file.
                    let download = |key: &str, _: &str| {
                        let rest = key.strip_prefix(under.as_str()).unwrap_or(key);
                        Some(match path_under(&req.dir, rest) {
                            _ if key.ends_with('/') => return None,
                            Ok(path) => Work::Download(DownloadRequest::new(ObjectRef::new(&req.bucket, key), path)),
                            Err(why) => Work::Refused { key: key.to_owned(), error: Error::invalid(why) },
                        })
                    };
                    self.list_source((&req.bucket, &under), &req.filter, download, &tx, &tracker).await
                });
            }
            Source::Sync(req) => {
                tokio::spawn(self.merge_sides(req, None, tracker, tx));
            }
            Source::Download(req) => {
                tracker.found(0);
                tracker.listing_finished();
                let _ = tx.try_send(Ok(Work::Download(req)));
            }
            Source::Stream(req) => {
                tracker.found(0);
                tracker.listing_finished();
                let _ = tx.try_send(Ok(Work::Stream(req)));
            }
            Source::Reader(req) => {
                tracker.found(req.expected_size.unwrap_or(0));
                tracker.listing_finished();
                let _ = tx.try_send(Ok(Work::Reader(req)));
            }
            Source::File(req) => {
                let size = std::fs::metadata(&req.path).map(|m| m.len()).unwrap_or(0);
                tracker.found(size);
                tracker.listing_finished();
                let _ = tx.try_send(Ok(Work::Upload(req)));
            }
            Source::Object(req) => {
                // One object, whose size the copy's HEAD will tell.
                tracker.found(0);
                tracker.listing_finished();
                let _ = tx.try_send(Ok(Work::Copy(req)));
            }
        }
    }

    /// Starts `produce` and the runner of job `job` and returns the handle. `held` is the job's lock and its
    /// entry among the jobs running in this process (none for a dry run): the task releases both when the job
    /// ends, the lock first.
    pub(super) fn start_job(
        &self,
        (job, resumed): (JobId, bool),
        held: Option<(JobLock, (PathBuf, JobId))>,
        sync: Option<(Arc<SyncRequest>, Watermark)>,
        produce: impl FnOnce(Arc<Tracker>, mpsc::Sender<Found>) + Send + 'static,
    ) -> JobHandle {
        let dry_run = self.dry_run();
        let pacers = self.inner.store.pacer().into_iter().chain(self.inner.source.as_ref().and_then(|s| s.pacer()));
        let tracker = Arc::new(Tracker::new(resumed).with_pacers(pacers));
        if let Some((_, watermark)) = &sync {
            tracker.settled_earlier(watermark.sources);
        }
        let held = held.map(|(lock, key)| (lock, super::start::register(key, tracker.clone())));
        let engine = self.tracked(tracker.clone());
        let (events_tx, events) = mpsc::channel(1024);
        let (found_tx, found) = mpsc::channel::<Found>(1024);
        produce(tracker.clone(), found_tx);
        let task = tokio::spawn(async move {
            let _held = held;
            engine.run_job(job, found, events_tx, sync).await
        });
        JobHandle {
            job,
            tracker,
            events,
            task: Some(task),
            store: self.inner.store.clone(),
            ledger: self.inner.ledger.clone(),
            dry_run,
        }
    }

    async fn run_job(
        &self,
        job: JobId,
        mut found: mpsc::Receiver<Found>,
        events: mpsc::Sender<Event>,
        sync: Option<(Arc<SyncRequest>, Watermark)>,
    ) -> Result<JobSummary> {
        let tracker = self.tracker.clone().expect("a job engine is tracked");
        let limit = self.inner.config.plan.max_in_flight.max(1) * 2;
        let dry_run = self.dry_run();
        let (sync, mut watermark) = match sync {
            Some((req, w)) => (Some(req), Some(w)),
            None => (None, None),
        };
        let mut running: JoinSet<(u64, (String, bool), Result<Settled>)> = JoinSet::new();
        let mut failures = Vec::new();
        // What could not be listed: no object row holds it, so the job's does.
        let mut unlisted: Vec<String> = Vec::new();
        // Turns a finished object into its event (none for a stop). Events are then sent with back-pressure: in
        // order, none lost; a handle that stops listening (join, abort, drop) closes the channel.
        let settle = |(key, chunk): (String, bool),
                      result: Result<Settled>,
                      failures: &mut Vec<(String, Error)>|
         -> Option<Event> {
            Some(match result {
                Ok(Settled::Transferred(outcome)) => {
                    tracker.finished(&outcome);
                    Event::Done { key, outcome }
                }
                Ok(Settled::Planned(plan)) => {
                    tracker.planned(&plan);
                    Event::Planned { key, plan }
                }
                Ok(Settled::Nothing) => return None,
                Err(e) if e.kind() == ErrorKind::Stopped => return None,
                Err(e) => {
                    match chunk {
                        true => tracker.chunk_failed(),
                        false => tracker.failed(),
                    }
                    if failures.len() < MAX_FAILURES_KEPT {
                        failures.push((key.clone(), e.clone()));
                    }
                    Event::Failed { key, error: e }
                }
            })
        };
        let emit = |event: Option<Event>| {
            let events = &events;
            async move {
                if let Some(e) = event {
                    let _ = events.send(e).await;
                }
            }
        };
        // A sync's cursor moves as its pairs settle, and is saved every so many pairs with the ledger's steps
        // (after theirs: the writer keeps order).
        let save = |w: &mut Watermark| {
            w.unsaved = 0;
            let (cursor, sources) = (w.cursor.clone(), w.sources);
            self.db(move |l| l.set_sync_progress(job, cursor.as_deref(), sources))
        };
        let mut seq = 0u64;
        // Finished objects are reaped as they finish (a stalled listing does not hold their events or the
        // cursor back), and the cursor is saved every 1,000 pairs or every second it moved.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let (n, key, result) = done?;
                    if let Some(w) = watermark.as_mut() {
                        w.settled(n, result.is_ok());
                        if w.unsaved >= 1000 && !dry_run {
                            save(w).await?;
                        }
                    }
                    emit(settle(key, result, &mut failures)).await;
                    continue;
                }
                _ = tick.tick(), if watermark.as_ref().is_some_and(|w| w.unsaved > 0) && !dry_run => {
                    if let Some(w) = watermark.as_mut() {
                        save(w).await?;
                    }
                    continue;
                }
                item = found.recv(), if running.len() < limit => item,
                _ = tracker.stopped() => None,
            };
            match next {
                None => break,
                Some(Err((what, error))) => {
                    unlisted.push(error.clone());
                    emit(settle((what, false), Err(Error::new(ErrorKind::Io, error)), &mut failures)).await
                }
                Some(Ok(work)) => {
                    seq += 1;
                    if let (Some(w), Work::Sync(pair)) = (watermark.as_mut(), &work) {
                        let (rel, in_source) = pair.progress();
                        w.dispatched(seq, rel, in_source);
                    }
                    let (engine, sync, n) = (self.clone(), sync.clone(), seq);
                    running.spawn(async move {
                        let chunk = matches!(work, Work::Chunk(_));
                        let (key, result) = match (work, sync) {
                            (Work::Sync(pair), Some(req)) => {
                                let key = pair.key(&req);
                                (key, engine.sync_pair(job, &req, pair).await)
                            }
                            (Work::Chunk(_), Some(_)) if dry_run => (String::new(), Ok(Settled::Nothing)),
                            (Work::Chunk(c), Some(req)) => {
                                let sent = engine.send_chunk(job, &req, &c).await;
                                (c.key(&req), sent.map(Settled::Transferred))
                            }
                            (work, _) => engine.settle(job, work).await,
                        };
                        (n, (key, chunk), result)
                    });
                }
            }
        }
        drop(found);
        while let Some(done) = running.join_next().await {
            let (n, key, result) = done?;
            if let Some(w) = watermark.as_mut() {
                w.settled(n, result.is_ok());
            }
            emit(settle(key, result, &mut failures)).await;
        }
        let listed = tracker.is_listing_finished();
        let mut withheld = 0;
        if let (Some(req), Some(w)) = (&sync, watermark.as_mut()) {
            if !dry_run {
                save(w).await?;
                let complete = listed && !tracker.is_stopped() && tracker.snapshot_failed() == 0;
                if complete && req.delete {
                    let (_, left) = self.sync_deletions(job, req, w.sources, &events, &mut failures).await?;
                    withheld = left;
                }
                // A pass that reached its deletions is over, whatever became of them (all made, some held by
                // --max-delete, refused for an empty source, some failed): the next run lists both sides again,
                // so nothing is deleted on what an older listing said.
                if complete {
                    self.db(move |l| l.end_sync_pass(job)).await?;
                }
            }
        }
        let state = if tracker.is_stopped() || (withheld > 0 && tracker.snapshot_failed() == 0) {
            JobState::Stopped
        } else if tracker.snapshot_failed() > 0 {
            JobState::Failed
        } else {
            JobState::Done
        };
        if !dry_run {
            let error = match unlisted.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                [first, rest @ ..] => Some(format!("{first} (and {} more sources not listed)", rest.len())),
            };
            self.db(move |l| l.end_job(job, state, error.as_deref(), listed)).await?;
        }
        Ok(JobSummary {
            job,
            progress: tracker.snapshot_now(),
            state,
            failures,
            aborted_uploads: 0,
            deletions_withheld: withheld,
        })
    }

    /// Does one unit of work of job `job` (or plans it, in a dry run): `(its key, what came of it)`.
    pub(super) async fn settle(&self, job: JobId, work: Work) -> (String, Result<Settled>) {
        let dry_run = self.dry_run();
        match work {
            Work::Upload(r) if dry_run => {
                let result = self.plan_upload_file(&r).await.map(Settled::Planned);
                (r.key, result)
            }
            Work::Upload(r) => {
                let result = self.upload_file(job, &r).await;
                (r.key, result.map(Settled::Transferred))
            }
            Work::Copy(r) if dry_run => {
                let result = self.plan_copy_object(&r).await.map(Settled::Planned);
                (r.key, result)
            }
            Work::Copy(r) => {
                let result = self.copy_object(job, &r).await;
                (r.key, result.map(Settled::Transferred))
            }
            Work::Download(r) if dry_run => {
                let result = self.plan_download_object(&r).await.map(Settled::Planned);
                (r.source.key, result)
            }
            Work::Download(r) => {
                let result = self.download_object(job, &r).await;
                (r.source.key, result.map(Settled::Transferred))
            }
            Work::Stream(r) if dry_run => {
                let result = self.plan_download(&r.source, None).await.map(Settled::Planned);
                (r.source.key, result)
            }
            Work::Stream(r) => {
                let result = self.stream_object(job, &r).await;
                (r.source.key, result.map(Settled::Transferred))
            }
            Work::Reader(r) if dry_run => {
                let result = self.plan_upload_stream(&r).map(Settled::Planned);
                (r.key, result)
            }
            Work::Reader(r) => {
                let result = self.upload_reader(job, &r).await;
                (r.key, result.map(Settled::Transferred))
            }
            Work::Sync(_) | Work::Chunk(_) => {
                (String::new(), Err(Error::invalid("a sync's pair or chunk outside a sync job")))
            }
            Work::Refused { key, error } => (key, Err(error)),
        }
    }

    /// Lists `bucket/src_prefix` page by page (each page retried) in the store copies and downloads read from,
    /// sending what `work` makes of each object the filter takes: `work(key, rest)`, `rest` being the key with
    /// the prefix (and a `/` after it) removed; `None`: not an object to move.
    async fn list_source(
        &self,
        (bucket, src_prefix): (&str, &str),
        filter: &KeyFilter,
        work: impl Fn(&str, &str) -> Option<Work>,
        tx: &mpsc::Sender<Found>,
        tracker: &Tracker,
    ) {
        let inner = &self.inner;
        let mut list = ListRequest {
            prefix: Some(src_prefix.to_owned()).filter(|p| !p.is_empty()),
            max_keys: Some(inner.config.list_page_size.clamp(1, 1000)),
            ..Default::default()
        };
        loop {
            if tracker.is_stopped() {
                return;
            }
            let page = self
                .retrying("ListObjects", |_| async {
                    let _slot = inner.scheduler.request().await;
                    self.source_store().list_objects(bucket, &list).await
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err((format!("{bucket}/{src_prefix}"), e.to_string()))).await;
                    return;
                }
            };
            for entry in page.objects {
                let rest = entry.key.strip_prefix(src_prefix).unwrap_or(&entry.key).trim_start_matches('/');
                if !filter.matches(rest) {
                    continue;
                }
                let Some(work) = work(&entry.key, rest) else { continue };
                tracker.found(entry.size);
                if tx.send(Ok(work)).await.is_err() {
                    return;
                }
            }
            match page.next_continuation_token {
                Some(token) if page.is_truncated => list.continuation_token = Some(token),
                _ => break,
            }
        }
        tracker.listing_finished();
    }
}

/// Walks `req.dir` depth-first, sending an upload for every regular file but a download's temporary files.
/// Stops early when the receiver is gone or the job stops.
fn walk(req: &DirRequest, prefix: &str, tx: &mpsc::Sender<Found>, tracker: &Tracker) {
    let mut stack = vec![req.dir.clone()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                if tx
                    .blocking_send(Err((d.display().to_string(), format!("cannot list {}: {e}", d.display()))))
                    .is_err()
                {
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
                // A download's temporary file (`.NAME.transfer-JOB.part`) is no data to upload.
                Ok((path, _)) if path.file_name().and_then(|n| n.to_str()).is_some_and(super::is_temp_name) => continue,
                Ok((path, ft)) => match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => match relative(&req.dir, &path) {
                        Some(rel) if !req.filter.matches(&rel) => continue,
                        Some(rel) => {
                            tracker.found(m.len());
                            Ok(Work::Upload(UploadRequest {
                                path,
                                bucket: req.bucket.clone(),
                                key: format!("{prefix}{rel}"),
                                metadata: req.metadata.clone(),
                                tags: req.tags.clone(),
                            }))
                        }
                        None => Err((
                            path.display().to_string(),
                            format!("{} has a name that is not UTF-8; rename it", path.display()),
                        )),
                    },
                    // Sockets, devices, links to directories: not objects.
                    Ok(_) => continue,
                    Err(e) if ft.is_symlink() => {
                        Err((path.display().to_string(), format!("broken link {}: {e}", path.display())))
                    }
                    Err(e) => Err((path.display().to_string(), format!("cannot stat {}: {e}", path.display()))),
                },
                Err(e) => Err((d.display().to_string(), format!("cannot list {}: {e}", d.display()))),
            };
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    }
    tracker.listing_finished();
}

/// The path of `file` relative to `root`, with `/` separators (`None` if it is not UTF-8).
fn relative(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}
