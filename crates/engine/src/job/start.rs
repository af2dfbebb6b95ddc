//! Starting a job: [`JobStart`], and the jobs running in this process.

use super::handle::{JobHandle, Tracker};
use super::jobs::{with_slash, DirRequest, Found, PrefixCopyRequest};
use super::{CopyRequest, DownloadRequest, Engine, PrefixDownloadRequest, StreamRequest, UploadRequest};
use crate::checkpoint::{JobId, JobKind, JobSpec};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{validate_bucket_for, validate_key, ListRequest, ObjectStore};
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{mpsc, watch};

/// What a job moves.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Dir(DirRequest),
    File(UploadRequest),
    Prefix(PrefixCopyRequest),
    Object(CopyRequest),
    Download(DownloadRequest),
    DownloadPrefix(PrefixDownloadRequest),
    Stream(StreamRequest),
    Reader(super::StreamUploadRequest),
    Sync(Arc<super::sync::SyncRequest>),
}

/// A job about to start, from [`Engine::upload_dir`], [`Engine::upload_one`], [`Engine::copy_prefix`],
/// [`Engine::copy_one`], [`Engine::download_prefix`], [`Engine::download_one`] or [`Engine::download_stream`]. `.await` it to start the job and get its [`JobHandle`].
///
/// Awaiting it (or [`JobStart::start`]) checks the request, derives the job's identity (its
/// [`JobKind`], source and destination), finds the newest unfinished job with that identity in the ledger or
/// records a new one, takes the job's lock and starts it. So running the same lines again after a crash resumes
/// the same job, and a program never handles job ids unless it wants to ([`JobStart::job`]).
///
/// Before anything is recorded or locked, a start fails with a clear error when it cannot run: outside a Tokio
/// runtime, a directory that is not one, a bucket name that is not valid or a bucket that does not exist
/// ([`ErrorKind::BucketNotFound`]), a job id whose ledger row names another source or destination.
///
/// # One handle per job in a process
/// A job's lock is held by its running task. A handle that was dropped asks its job to stop; the job finishes
/// the parts in flight, records them and releases the lock. A new start of the same job in the same process
/// waits for that instead of failing; a start while the other handle still runs the job fails with
/// [`ErrorKind::Locked`], as one from another process does.
#[derive(Debug)]
#[must_use = "a job starts only when awaited"]
pub struct JobStart {
    engine: Engine,
    source: Source,
    job: Option<JobId>,
    note: String,
    /// Whether the start lists one key of each bucket first (see [`JobStart::buckets_checked`]).
    check_buckets: bool,
}

impl JobStart {
    pub(super) fn new(engine: &Engine, source: Source) -> JobStart {
        JobStart { engine: engine.clone(), source, job: None, note: String::new(), check_buckets: true }
    }

    /// Runs this job of the ledger instead of the one the request names: for a program that keeps job ids
    /// (the `transfer resume N` command). Its recorded kind, source and destination must be the request's.
    pub fn job(mut self, job: JobId) -> JobStart {
        self.job = Some(job);
        self
    }

    /// The application's own record of how the job was started ([`JobSpec::note`]), kept with a job this
    /// start creates (never credentials).
    pub fn note(mut self, note: impl Into<String>) -> JobStart {
        self.note = note.into();
        self
    }

    /// The caller has just checked that the job's buckets exist (as the `transfer` command does before it
    /// builds the engine): the start does not list a key of each again. A bucket that does not exist then fails
    /// the job's first request instead.
    pub fn buckets_checked(mut self) -> JobStart {
        self.check_buckets = false;
        self
    }

    /// Starts the job, as awaiting the [`JobStart`] does.
    pub async fn start(self) -> Result<JobHandle> {
        let JobStart { engine, source, job, note, check_buckets } = self;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid("a job runs on a Tokio runtime: start it from within one"));
        }
        source.validate(&engine)?;
        if check_buckets {
            engine.check_buckets(&source).await?;
        }
        if engine.dry_run() {
            // A dry run records nothing and takes no lock: its job is no job of the ledger.
            let id = job.unwrap_or(JobId(0));
            let sync = source.sync().map(|r| (r, super::sync::Watermark::default()));
            return Ok(engine.start_job((id, false), None, sync, source.producer(&engine, None)));
        }
        let (kind, from, to) = source.identity()?;
        let (id, resumed) = engine
            .db(move |l| match job {
                Some(id) => {
                    let (k, s, d) = l.job_identity(id)?;
                    if (k, s.as_str(), d.as_str()) != (kind, from.as_str(), to.as_str()) {
                        return Err(Error::invalid(format!(
                            "job {id} is a {k} of {s} to {d}, not a {kind} of {from} to {to}; start a new job for \
                             this request (or run job {id} with its own source and destination)"
                        )));
                    }
                    Ok((id, true))
                }
                None => match l.find_job(kind, &from, &to)? {
                    Some(id) => Ok((id, true)),
                    None => Ok((l.create_job(&JobSpec { kind, source: from, destination: to, note })?, false)),
                },
            })
            .await?;
        // A job created just now is made durable in the main file before its first byte goes.
        engine.inner.ledger.off_thread(|l| l.checkpoint()).await?;
        let ledger = engine.inner.ledger.clone();
        let key = (ledger.path().to_path_buf(), id);
        wait_for_stopping(&key).await?;
        let lock = engine.db(move |l| l.lock_job(id)).await?;
        engine.db(move |l| l.start_run(id, resumed)).await?;
        // A sync's pass goes on from its cursor (deletions found past it are found again).
        let sync = match source.sync() {
            Some(req) => {
                let (cursor, sources) = engine.db(move |l| l.resume_sync(id)).await?;
                Some((req, super::sync::Watermark::new(cursor, sources)))
            }
            None => None,
        };
        let after = sync.as_ref().and_then(|(_, w)| w.cursor.clone());
        Ok(engine.start_job((id, resumed), Some((lock, key)), sync, source.producer(&engine, after)))
    }
}

impl IntoFuture for JobStart {
    type Output = Result<JobHandle>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<JobHandle>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

impl Source {
    /// Checks what can be checked without a request: each bucket name by its own store's rule, and the keys: a
    /// key no store takes (or a prefix under which every key is one) is refused before the job, not object by
    /// object. A local source must be what the job reads (a directory, or a regular file: never a FIFO or a
    /// device, whose open could block).
    fn validate(&self, engine: &Engine) -> Result<()> {
        let key = |key: &str, what: &str| {
            validate_key(key).map_err(|e| {
                let why = e.message().trim_start_matches("The specified object name is not valid: ");
                Error::invalid(format!("{what} {key:?} can never be an object key: {why} Choose another."))
            })
        };
        // Every key under a non-empty prefix starts with it: `<prefix>x` stands for them all.
        let under = |prefix: &str| match prefix {
            "" => Ok(()),
            p => key(&format!("{}x", with_slash(p)), "the prefix of").map_err(|_| {
                Error::invalid(format!(
                    "the prefix {p:?} can never begin an object key (keys are 1 to 1023 bytes, not starting with '/' \
                     or '\\', without '.' or '..' segments); choose another"
                ))
            }),
        };
        match self {
            Source::Dir(r) => {
                if !r.dir.is_dir() {
                    return Err(Error::invalid(format!("{} is not a directory", r.dir.display())));
                }
                under(&r.prefix)?;
            }
            Source::File(r) => {
                super::upload::regular_file(&r.path)?;
                key(&r.key, "the key")?;
            }
            Source::Prefix(r) => under(&r.prefix)?,
            Source::Object(r) => {
                key(&r.source.key, "the source key")?;
                key(&r.key, "the key")?;
            }
            Source::Download(r) => {
                key(&r.source.key, "the key")?;
                super::download::existing_file(&r.path)?;
            }
            Source::Stream(r) => key(&r.source.key, "the key")?,
            Source::Reader(r) => {
                key(&r.key, "the key")?;
                if engine.inner.config.overwrite == super::Overwrite::IfDifferent {
                    return Err(Error::invalid(
                        "a stream cannot be compared with its destination without consuming it: upload it without \
                         Overwrite::IfDifferent (--update), or to a file first",
                    ));
                }
            }
            Source::Sync(r) => {
                r.validate(engine.inner.source.is_some())?;
                for side in [&r.source, &r.destination] {
                    if let super::sync::SyncSide::Prefix { prefix, .. } = side {
                        under(prefix)?;
                    }
                }
            }
            Source::DownloadPrefix(r) => {
                under(&r.prefix)?;
                if r.dir.exists() && !r.dir.is_dir() {
                    return Err(Error::invalid(format!(
                        "{} is not a directory; name a directory to download the prefix into",
                        r.dir.display()
                    )));
                }
            }
        }
        let (from, to) = self.buckets();
        if let Some(from) = from {
            validate_bucket_for(from, engine.source_store().capabilities())?;
        }
        match to {
            Some(to) => validate_bucket_for(to, &engine.inner.caps),
            None => Ok(()),
        }
    }

    /// The job's kind, source and destination, as the ledger keeps them.
    fn identity(&self) -> Result<(JobKind, String, String)> {
        let absolute = |p: &PathBuf| {
            std::path::absolute(p)
                .map(|a| a.display().to_string())
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot resolve {}", p.display())).with_source(e))
        };
        Ok(match self {
            Source::Dir(r) => (JobKind::Upload, absolute(&r.dir)?, format!("{}/{}", r.bucket, with_slash(&r.prefix))),
            Source::File(r) => (JobKind::Upload, absolute(&r.path)?, format!("{}/{}", r.bucket, r.key)),
            Source::Prefix(r) => (
                JobKind::Copy,
                format!("{}/{}", r.src_bucket, r.src_prefix),
                format!("{}/{}", r.bucket, with_slash(&r.prefix)),
            ),
            Source::Object(r) => (JobKind::Copy, r.source.to_string(), format!("{}/{}", r.bucket, r.key)),
            Source::Download(r) => (JobKind::Download, r.source.to_string(), absolute(&r.path)?),
            Source::Stream(r) => (JobKind::Download, r.source.to_string(), "-".to_owned()),
            Source::Reader(r) => (JobKind::Upload, super::STREAM_SOURCE.to_owned(), format!("{}/{}", r.bucket, r.key)),
            Source::DownloadPrefix(r) => {
                (JobKind::Download, format!("{}/{}", r.bucket, r.prefix), format!("{}/", absolute(&r.dir)?))
            }
            Source::Sync(r) => (JobKind::Sync, r.source.name()?, r.destination.name()? + &r.range.suffix()),
        })
    }

    /// The buckets the job reads from and writes to: `(source store's bucket, destination bucket)`.
    fn buckets(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Source::Dir(r) => (None, Some(&r.bucket)),
            Source::File(r) => (None, Some(&r.bucket)),
            Source::Prefix(r) => (Some(&r.src_bucket), Some(&r.bucket)),
            Source::Object(r) => (Some(&r.source.bucket), Some(&r.bucket)),
            Source::Download(r) => (Some(&r.source.bucket), None),
            Source::Stream(r) => (Some(&r.source.bucket), None),
            Source::Reader(r) => (None, Some(&r.bucket)),
            Source::DownloadPrefix(r) => (Some(&r.bucket), None),
            Source::Sync(r) => (r.source.bucket(), r.destination.bucket()),
        }
    }

    /// A sync's request.
    fn sync(&self) -> Option<Arc<super::sync::SyncRequest>> {
        match self {
            Source::Sync(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// What finds the job's objects and feeds them to the runner (a sync's pairs after `after`).
    fn producer(
        self,
        engine: &Engine,
        after: Option<String>,
    ) -> impl FnOnce(Arc<Tracker>, mpsc::Sender<Found>) + Send + 'static {
        let engine = engine.clone();
        move |tracker, tx| match self {
            Source::Sync(req) => {
                tokio::spawn(engine.merge_sides(req, after, tracker, tx));
            }
            other => engine.produce(other, tracker, tx),
        }
    }
}

impl Engine {
    /// Fails with [`ErrorKind::BucketNotFound`] when a bucket the job needs does not exist, before anything is
    /// recorded: one listing of at most one key per bucket. A store that may not list (a key allowed only to
    /// write) cannot tell, and the job goes on.
    async fn check_buckets(&self, source: &Source) -> Result<()> {
        let (from, to) = source.buckets();
        if let Some(from) = from {
            self.check_bucket(&**self.source_store(), from).await?;
        }
        match to {
            Some(to) => self.check_bucket(&*self.inner.store, to).await,
            None => Ok(()),
        }
    }

    async fn check_bucket(&self, store: &dyn ObjectStore, bucket: &str) -> Result<()> {
        let req = ListRequest { max_keys: Some(1), ..Default::default() };
        let inner = &self.inner;
        let listed = self
            .retrying("ListObjects", |_| async {
                let _slot = inner.scheduler.request().await;
                store.list_objects(bucket, &req).await
            })
            .await;
        match listed {
            Err(e) if e.kind() == ErrorKind::BucketNotFound => {
                Err(Error::new(ErrorKind::BucketNotFound, format!("bucket {bucket:?} does not exist; create it first"))
                    .with_source(e))
            }
            Err(e) if matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::Unsupported) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The jobs running in this process: (ledger path, job) to its tracker (which says whether its handle asked it
/// to stop) and a channel that turns true once it released its lock.
type Key = (PathBuf, JobId);
type Running = HashMap<Key, (Arc<Tracker>, watch::Receiver<bool>)>;
static RUNNING: LazyLock<Mutex<Running>> = LazyLock::new(Mutex::default);

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits while a stopping job of this process holds `key`'s lock; fails at once when a live handle holds it.
async fn wait_for_stopping(key: &Key) -> Result<()> {
    loop {
        let entry = running().get(key).cloned();
        match entry {
            None => return Ok(()),
            Some((tracker, mut released)) if tracker.is_stopped() => {
                // The sender goes away with the job's task: released either way.
                let _ = released.wait_for(|done| *done).await;
                running().remove(key);
            }
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "job {} is running in this process: join or stop its handle before starting it again",
                        key.1
                    ),
                ))
            }
        }
    }
}

/// Registers a running job; the returned guard, dropped when the job's task ends (after its lock), says so.
pub(super) fn register(key: Key, tracker: Arc<Tracker>) -> Registered {
    let (tx, rx) = watch::channel(false);
    running().insert(key.clone(), (tracker, rx));
    Registered { key, released: tx }
}

/// Held by a job's task; see [`register`].
#[derive(Debug)]
pub(super) struct Registered {
    key: Key,
    released: watch::Sender<bool>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = running();
        // Only this job's entry: a newer start may have replaced it already.
        if map.get(&self.key).is_some_and(|(_, rx)| rx.same_channel(&self.released.subscribe())) {
            map.remove(&self.key);
        }
        let _ = self.released.send(true);
    }
}
