//! The engine: moves files into a store, objects between stores and objects back into files in planned parts,
//! under one scheduler, recording every acknowledged part in the checkpoint ledger so an interrupted job
//! resumes without moving again what arrived.
//!
//! Upload a directory with tags. If the process is killed, running the same lines again finds the job in the
//! ledger (by what it moves) and sends only what the server had not acknowledged:
//!
//! ```no_run
//! # async fn demo() -> transfer_engine::Result<()> {
//! use std::sync::Arc;
//! use transfer_engine::checkpoint::Ledger;
//! use transfer_engine::job::{DirRequest, Engine, EngineConfig};
//! use transfer_engine::{http::HttpStore, TagSet};
//!
//! let store = HttpStore::oss().endpoint("https://oss-cn-hangzhou.aliyuncs.com").build()?; // OSS_ACCESS_KEY_*
//! let ledger = Ledger::open(Ledger::default_path()?)?;
//! let engine = Engine::new(Arc::new(store), ledger, EngineConfig::default())?;
//! let tags = TagSet::from_pairs([("retention", "90d"), ("source", "db-01")])?;
//! let backup = DirRequest::new("/srv/backup", "bkt", "nightly/").tags(tags);
//! let summary = engine.upload_dir(backup).await?.join().await?; // an error if any file failed
//! println!("{} files, {} bytes", summary.progress.objects_done, summary.progress.bytes_acknowledged);
//! # Ok(()) }
//! ```
//!
//! Restoring it is a job of the same engine: [`Engine::download_prefix`] fetches every object under a prefix
//! into a directory in parallel ranged GETs, each part recorded so a rerun fetches only what is missing, each
//! file verified (against the store's CRC-64 or CRC-32C, or its MD5 ETag; and, when the engine's
//! [`DigestOptions`] name where the backup put it, the file's BLAKE3), renamed into place and given back the
//! modification time the upload recorded:
//!
//! ```no_run
//! # async fn demo(engine: transfer_engine::job::Engine) -> transfer_engine::Result<()> {
//! use transfer_engine::job::PrefixDownloadRequest;
//! let restore = PrefixDownloadRequest::new("bkt", "nightly/", "/srv/restore");
//! let summary = engine.download_prefix(restore).await?.join().await?;
//! println!("{} files restored", summary.progress.objects_done);
//! # Ok(()) }
//! ```
//!
//! A stream of unknown length (a backup's `tar | zstd`) is a job of its own: [`Engine::upload_stream`] with a
//! [`Reader`] (any `AsyncRead`, or [`Reader::from_blocking`] for stdin); parts grow as it goes, and it never
//! resumes (see `job::upload_stream`).
//!
//! A migration larger than one machine is cut into shards, each a sync of a key range
//! ([`SyncRequest::range`]); an object too large for one shard is split ([`Engine::split`]): its parts go to
//! several shards' syncs as [`Chunk`]s and [`Engine::complete_split`] completes it.
//!
//! A job is started by awaiting a [`JobStart`]; its [`JobHandle`] gives progress, per-object [`Event`]s, a
//! graceful stop and an abort. [`Engine::upload_file`] and [`Engine::copy_object`] move one object within a job
//! the program manages itself.
//!
//! # Choosing what moves
//! - [`EngineConfig::overwrite`] decides what happens to an object whose destination already exists
//!   ([`Overwrite`]); an object left alone is reported with a [`SkipReason`].
//! - [`KeyFilter`] (in [`DirRequest::filter`] and [`PrefixCopyRequest::filter`]) takes or leaves entries of a
//!   directory or a prefix by glob patterns.
//! - [`EngineConfig::dry_run`] makes the job entry points report what they would do ([`Event::Planned`])
//!   without writing anything.

mod copy;
mod digest;
mod download;
mod dry_run;
mod filter;
mod handle;
mod jobs;
mod overwrite;
mod parts;
mod pipeline;
mod relay;
mod restore;
mod split;
mod start;
mod stream;
mod sync;
mod upload;
mod upload_stream;
mod verify;

use crate::checkpoint::Ledger;
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::plan::PlanOptions;
use crate::run::{BufferPool, RetryPolicy, Scheduler};
use crate::store::{Capabilities, ObjectStore, Store};
use crate::tags::TagSet;
use std::path::PathBuf;
use std::sync::Arc;

pub use copy::CopyRequest;
pub use download::{
    format_mtime, is_temp_name, parse_mtime, temp_path, DownloadRequest, PrefixDownloadRequest, MODE_METADATA,
    MTIME_METADATA,
};
pub use dry_run::{PlannedAction, PlannedObject};
pub use filter::KeyFilter;
pub use handle::{Event, JobHandle, JobSummary, Progress};
pub use jobs::{DirRequest, PrefixCopyRequest};
pub use overwrite::{Overwrite, SkipReason};
pub use pipeline::{Outcome, Verified};
pub use split::{Chunk, SourceVersion, Split, Splitting, CHUNK_SOURCE};
pub use start::JobStart;
pub use stream::{is_closed_output, StreamRequest, Writer};
pub use sync::{Compare, KeyRange, SyncRequest, SyncSide};
pub use upload_stream::{Reader, StreamUploadRequest, STREAM_SOURCE};

use handle::Tracker;

/// When a job's tags reach its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagOn {
    /// In the tagging header of PutObject or InitiateMultipartUpload: the object never exists untagged.
    #[default]
    Initiate,
    /// With PutObjectTagging right after the object exists (for targets that refuse tags on initiate). The
    /// ledger records when they were applied, so a crash in between is repaired on resume.
    Complete,
}

/// How the engine plans, retries and tags: `EngineConfig::default()`, then the setters of what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Part sizing, thresholds, the memory budget and the number of requests in flight.
    pub plan: PlanOptions,
    /// Per-request retries.
    pub retry: RetryPolicy,
    /// When tags are applied.
    pub tag_on: TagOn,
    /// Where each uploaded file's blake3 digest goes on its object (it is always in the ledger and the outcome).
    pub digest: DigestOptions,
    /// What to do when an object's destination already exists; default [`Overwrite::Always`].
    pub overwrite: Overwrite,
    /// Report, write nothing. The job entry points ([`Engine::upload_dir`], [`Engine::copy_prefix`],
    /// [`Engine::upload_one`], [`Engine::copy_one`]) enumerate and filter the source as a real run would,
    /// check the [`overwrite`](Self::overwrite) policy (read-only HEADs), plan each object with the same
    /// planner and report it as an [`Event::Planned`]; they send no write request, take no job lock, add no
    /// ledger row and leave the job's state alone (the job id need not exist in the ledger). Direct calls of
    /// [`Engine::upload_file`] and [`Engine::copy_object`] are refused with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput); [`Engine::plan_upload_file`] and
    /// [`Engine::plan_copy_object`] answer the same question for one object.
    pub dry_run: bool,
    /// Whether each uploaded file's modification time and permissions go into its object's user metadata, as
    /// [`MTIME_METADATA`] (`x-oss-meta-mtime`: Unix seconds with nanoseconds) and [`MODE_METADATA`] (`mode`:
    /// the file's mode in octal), the names and forms rclone writes and reads, for a download to set them back;
    /// default true. A value the request's metadata already has is kept.
    pub file_attributes: bool,
    /// Whether a download sets each file's permission bits (`rwxrwxrwx`) from the [`MODE_METADATA`] its upload
    /// recorded (`--preserve-mode`); default false: files get the process's default mode. Setuid, setgid and
    /// sticky bits are never restored.
    pub restore_mode: bool,
    /// What to do with a source that is archived and not restored (Archive, ColdArchive, DeepColdArchive; S3's
    /// Glacier classes): `Some` restores it first (RestoreObject with this request, then HEAD until the store
    /// says it is readable; a restore already under way is waited for, not asked again, so a restarted job
    /// picks up where it was); `None` (the default) skips it with [`SkipReason::Archived`]. Downloads, copies
    /// and relays alike.
    pub restore: Option<crate::store::RestoreRequest>,
    /// Keys asked for per listing request of a prefix copy (`max-keys`, 1 to 1,000; default 1,000, the most
    /// both dialects return: OSS answers 100 when none is asked for).
    pub list_page_size: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            plan: PlanOptions::default(),
            retry: RetryPolicy::default(),
            tag_on: TagOn::default(),
            digest: DigestOptions::default(),
            overwrite: Overwrite::default(),
            dry_run: false,
            file_attributes: true,
            restore_mode: false,
            restore: None,
            list_page_size: 1000,
        }
    }
}

setters!(EngineConfig {
    plan: PlanOptions,
    retry: RetryPolicy,
    tag_on: TagOn,
    digest: DigestOptions,
    overwrite: Overwrite,
    dry_run: bool,
    file_attributes: bool,
    restore_mode: bool,
    restore: Option<crate::store::RestoreRequest>,
    list_page_size: u32,
});

/// Put the file's blake3 digest (hex) on the object as a tag and/or a user-metadata value.
///
/// The digest is computed in a first read of the file, so the value goes out with the object's other tags and
/// metadata (on initiate, or on complete as the tag policy says); the upload then refuses to complete if the
/// bytes it sent hash differently (the file changed meanwhile). The extra read is made only when asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DigestOptions {
    /// Tag key for the digest (counts toward the 10 tags).
    pub tag: Option<String>,
    /// User-metadata name for the digest (`x-oss-meta-<name>`).
    pub metadata: Option<String>,
}

setters!(DigestOptions { tag: Option<String>, metadata: Option<String> });

/// One file to upload: [`UploadRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadRequest {
    /// The local file.
    pub path: PathBuf,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Metadata and standard headers of the object.
    pub metadata: Metadata,
    /// Tags the object must carry.
    pub tags: Option<TagSet>,
}

impl UploadRequest {
    /// `path` to `bucket/key`, no metadata, no tags.
    pub fn new(path: impl Into<PathBuf>, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { path: path.into(), bucket: bucket.into(), key: key.into(), metadata: Metadata::default(), tags: None }
    }

    /// Metadata and standard headers of the object.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Tags the object must carry (an empty set: none).
    pub fn tags(mut self, tags: TagSet) -> Self {
        self.tags = Some(tags).filter(|t| !t.is_empty());
        self
    }
}

/// Moves objects into one store under one scheduler and one ledger.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// Progress counters and the stop signal of the job this clone works for (none for direct calls).
    tracker: Option<Arc<Tracker>>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// Where copies read from when it is another store than `store` ([`Engine::relay`]); `None`: copies are
    /// server-side, within `store`.
    source: Option<Arc<dyn ObjectStore>>,
    /// Where copies read from: `source`, else `store`.
    reads: Arc<dyn ObjectStore>,
    caps: Capabilities,
    ledger: Ledger,
    scheduler: Scheduler,
    /// Part buffers for reuse, holding at most the memory budget idle.
    buffers: BufferPool,
    config: EngineConfig,
    /// Set once the store answered that it has no ListMultipartUploads, so it is not asked again.
    no_list_uploads: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine writing to `store`, recording in `ledger`. Refuses nonsensical bounds before anything moves.
    pub fn new(store: Arc<dyn Store>, ledger: Ledger, config: EngineConfig) -> Result<Engine> {
        Engine::with_stores(store, None, ledger, config)
    }

    /// An engine whose copies ([`Engine::copy_object`], [`Engine::copy_prefix`], ...) read from `source`, another
    /// store (another endpoint, account or dialect), and write to `store`: each object's bytes flow through this
    /// process, as ranged GETs from the source and PutObject or UploadPart to the destination, planned, bounded
    /// and resumable like an upload (parts recorded in the ledger; a source that changes between runs or during
    /// one starts the object again). Metadata and tags are resolved from the source as for a server-side copy.
    /// Uploads of files work as with [`Engine::new`].
    pub fn relay(
        store: Arc<dyn Store>,
        source: Arc<dyn ObjectStore>,
        ledger: Ledger,
        config: EngineConfig,
    ) -> Result<Engine> {
        Engine::with_stores(store, Some(source), ledger, config)
    }

    fn with_stores(
        store: Arc<dyn Store>,
        source: Option<Arc<dyn ObjectStore>>,
        ledger: Ledger,
        config: EngineConfig,
    ) -> Result<Engine> {
        let scheduler = Scheduler::new(config.plan.max_in_flight, config.plan.memory_budget)?;
        let caps = store.capabilities().clone();
        let buffers = BufferPool::new(config.plan.memory_budget);
        let reads: Arc<dyn ObjectStore> = match &source {
            Some(s) => s.clone(),
            None => store.clone(),
        };
        let no_list_uploads = Default::default();
        let inner = Inner { store, source, reads, caps, ledger, scheduler, buffers, config, no_list_uploads };
        Ok(Engine { inner: Arc::new(inner), tracker: None })
    }

    /// The store copies read from: the relay source, or the destination store itself.
    fn source_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.reads
    }

    /// How a copy of `size` bytes goes: UploadPartCopy parts above the copy threshold, or, when relaying from
    /// another store, the upload plan (the bytes go through this process as an upload's do).
    fn plan_copy(&self, size: u64) -> Result<crate::plan::ObjectPlan> {
        let (caps, opts) = (&self.inner.caps, &self.inner.config.plan);
        match self.inner.source {
            Some(_) => crate::plan::plan_object(size, caps, opts),
            None => crate::plan::plan_copy(size, caps, opts),
        }
    }

    /// The scheduler shared by every object of this engine (for observing in-flight requests and buffered bytes).
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// This engine reporting to `tracker` (progress, stop).
    fn tracked(&self, tracker: Arc<Tracker>) -> Engine {
        Engine { inner: self.inner.clone(), tracker: Some(tracker) }
    }

    /// Counts bytes the server acknowledged (or that an earlier run delivered and this one reused).
    fn acknowledged(&self, bytes: u64) {
        if let Some(t) = &self.tracker {
            t.acknowledged(bytes);
        }
    }

    /// Bytes an earlier run delivered, reused by this one.
    fn reused(&self, bytes: u64) {
        if let Some(t) = &self.tracker {
            t.reused(bytes);
        }
    }

    /// Runs `attempt` under the engine's retry policy, counting every retry and every throttling answer in the
    /// job's progress.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let tracker = self.tracker.as_deref();
        self.inner
            .config
            .retry
            .run(what, |n| {
                if let (true, Some(t)) = (n > 1, tracker) {
                    t.retried();
                }
                let attempt = attempt(n);
                async move {
                    let result = attempt.await;
                    if let (Err(e), Some(t)) = (&result, tracker) {
                        if e.kind() == crate::ErrorKind::Throttled {
                            t.throttled();
                        }
                    }
                    result
                }
            })
            .await
    }

    /// Fails with [`ErrorKind::Stopped`](crate::ErrorKind::Stopped) once the job was asked to stop: no new part
    /// or object starts after that.
    /// Runs `work`, or fails with [`ErrorKind::Stopped`](crate::ErrorKind::Stopped) as soon as the job is asked
    /// to stop (`while_`: what it was doing, for the message): for waits with no end of their own (a restore, a
    /// stream whose writer is idle).
    async fn unless_stopped<T>(&self, while_: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let stopped = async {
            match &self.tracker {
                Some(t) => t.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = work => done,
            () = stopped => Err(Error::new(crate::ErrorKind::Stopped, format!("the job was stopped {while_}"))),
        }
    }

    fn check_stopped(&self) -> Result<()> {
        match &self.tracker {
            Some(t) if t.is_stopped() => {
                Err(Error::new(crate::ErrorKind::Stopped, "the job was stopped; resume it to continue"))
            }
            _ => Ok(()),
        }
    }

    /// Runs a ledger step on the ledger's writer thread, committed with the steps of the other objects in
    /// flight ([`Ledger::call`]).
    async fn db<T: Send + 'static>(&self, f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static) -> Result<T> {
        self.inner.ledger.call(f).await
    }
}
