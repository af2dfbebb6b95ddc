//! Downloads: an object to a file ([`Engine::download_one`], [`Engine::download_object`]) and a prefix to a
//! directory ([`Engine::download_prefix`]), resumable and verified.
//!
//! A download is the part pipeline with a file as its sink. The object is planned with the same planner as an
//! upload (one request below the multipart threshold, else parts sized to the memory budget); each part is a
//! ranged GET pinned to the ETag (and version) the object had when it was planned, taken under the job's one
//! bound on requests in flight and its memory budget, and written at its offset with a positional write. Each
//! written part is recorded in the ledger with its CRC-64, so a resumed download fetches only the parts not
//! recorded — wherever they are, not "everything after the first gap".
//!
//! Nothing partial is ever at the final path: the bytes go to a temporary file beside it,
//! `.NAME.transfer-JOB.part` (hidden, and named so no listing mistakes it for data), sized to the object when
//! created. The local file is the destination, and the destination is the truth: on resume the recorded parts
//! are read back and kept only when their CRC-64 still matches (a crash can lose writes the ledger recorded);
//! a missing temporary file means every part is fetched again. Once every part is there, the whole is verified
//! (the parts' CRC-64s combined against the object's; else, read back once, the store's CRC-32C or the MD5
//! ETag; and a BLAKE3 label: see [`super::verify`]), the
//! modification time recorded in the object's metadata (`mtime`, the form rclone writes and reads) is set, and
//! the file is fsynced, renamed over the destination, and its directory fsynced. A failed or stopped object
//! leaves its temporary file for the next run and nothing at the final name.
//!
//! An object that changed since the plan (another ETag, version or size) starts again: its recorded parts are
//! forgotten, its temporary file is rewritten, and its outcome says so ([`Outcome::source_changed`]). One that changes during the run fails its next GET (the ETag
//! no longer matches) and is started again once from a fresh HEAD.

use super::filter::KeyFilter;
use super::parts::PartTasks;
use super::start::{JobStart, Source};
use super::{Engine, Outcome, Overwrite, SkipReason, Verified};
use crate::checkpoint::{FileState, Fingerprint, JobId, ObjectRow, ObjectState, PartRow};
use crate::crc64::{self, Crc64};
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::plan::{plan_object, ObjectPlan, Part};
use crate::store::{ByteRange, Checksum, ObjectInfo, ObjectRef, ObjectStore};
use bytes::Bytes;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The user-metadata name of a file's modification time: written by uploads, restored by downloads. rclone
/// uses the same name and reads and writes the same form (Unix seconds with a fraction), so each reads the
/// other's.
pub const MTIME_METADATA: &str = "mtime";

/// The user-metadata name of a file's mode (octal, as `stat` gives it: `100644`), written by uploads and set
/// back by downloads that ask for it ([`EngineConfig::restore_mode`](super::EngineConfig::restore_mode)); the
/// name and form rclone uses.
pub const MODE_METADATA: &str = "mode";

/// The largest single write of a part's bytes into its file (see where parts are written).
const WRITE_SLICE: usize = 64 << 10;

/// One object to download to a file: [`DownloadRequest::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadRequest {
    /// The object, optionally at a version.
    pub source: ObjectRef,
    /// The file it becomes (replaced atomically when the download is complete).
    pub path: PathBuf,
}

impl DownloadRequest {
    /// `source` to the file `path`.
    pub fn new(source: ObjectRef, path: impl Into<PathBuf>) -> DownloadRequest {
        DownloadRequest { source, path: path.into() }
    }
}

/// A prefix to download to a directory: every object under `bucket/prefix` becomes `dir/<the rest of its key>`.
/// [`PrefixDownloadRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PrefixDownloadRequest {
    /// Source bucket.
    pub bucket: String,
    /// Source key prefix (may be empty: the whole bucket).
    pub prefix: String,
    /// The local directory (created if missing).
    pub dir: PathBuf,
    /// Which objects are taken, by their key relative to `prefix`; [`KeyFilter::default()`]: all.
    pub filter: KeyFilter,
}

impl PrefixDownloadRequest {
    /// Every object under `bucket/prefix` to `dir`.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        PrefixDownloadRequest {
            bucket: bucket.into(),
            prefix: prefix.into(),
            dir: dir.into(),
            filter: KeyFilter::default(),
        }
    }

    /// Which objects are taken.
    pub fn filter(mut self, filter: KeyFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// The path the key `rest` (a key with the request's prefix removed) takes under `dir`, or why it may not be
/// written anywhere: a key that would leave the directory (`..`, an absolute key), or one no file name can hold
/// faithfully (`\`, NUL, empty or `.` segments).
pub(super) fn path_under(dir: &Path, rest: &str) -> std::result::Result<PathBuf, String> {
    let why = if rest.is_empty() {
        Some("it names the directory itself")
    } else if rest.starts_with('/') {
        Some("it is absolute (it begins with /)")
    } else if rest.contains('\0') {
        Some("it holds a NUL byte")
    } else if rest.contains('\\') {
        Some("it holds a backslash, a path separator elsewhere")
    } else if rest.rsplit('/').next().is_some_and(is_temp_name) {
        Some("its name is one transfer gives its temporary files (.NAME.transfer-JOB.part)")
    } else {
        rest.split('/').find_map(|s| match s {
            "" => Some("it has an empty segment (//)"),
            "." => Some("it has a . segment"),
            ".." => Some("it has a .. segment, which would leave the destination directory"),
            _ => None,
        })
    };
    match why {
        Some(why) => Err(format!("the key {rest:?} is not written to {}: {why}", dir.display())),
        None => Ok(rest.split('/').fold(dir.to_path_buf(), |p, s| p.join(s))),
    }
}

/// The temporary file of a download of `path` by `job`: beside it, hidden, and named as no data file is.
/// A name too long to take the decoration (255 bytes is the usual limit of a file name) is replaced by its
/// BLAKE3 hash.
pub fn temp_path(path: &Path, job: JobId) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = format!(".transfer-{job}.part");
    let name = match 1 + name.len() + suffix.len() > 255 {
        true => blake3::hash(name.as_bytes()).to_hex()[..32].to_owned(),
        false => name,
    };
    path.with_file_name(format!(".{name}{suffix}"))
}

/// True for a file name [`temp_path`] makes (`.NAME.transfer-JOB.part`): no object is downloaded to one, and a
/// directory upload leaves them out.
pub fn is_temp_name(name: &str) -> bool {
    let Some((head, job)) = name.strip_suffix(".part").and_then(|n| n.rsplit_once(".transfer-")) else {
        return false;
    };
    head.starts_with('.') && !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit())
}

/// A modification time as the `mtime` metadata value: Unix seconds with nine decimals (rclone's form).
pub fn format_mtime(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        // Before 1970: the same digits, negative (-1.5 is 1.5 s before the epoch).
        Err(e) => format!("-{}.{:09}", e.duration().as_secs(), e.duration().subsec_nanos()),
    }
}

/// Reads an `mtime` metadata value: Unix seconds, with or without a fraction, or RFC 3339.
pub fn parse_mtime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        let nanos = t.timestamp_nanos_opt()?;
        return Some(at_nanos(i128::from(nanos)));
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.bytes().any(|b| !b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let digits = &frac[..frac.len().min(9)];
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    let nanos = if whole.starts_with('-') { -nanos } else { nanos };
    Some(at_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos)))
}

fn at_nanos(n: i128) -> SystemTime {
    let d = Duration::new((n.unsigned_abs() / 1_000_000_000) as u64, (n.unsigned_abs() % 1_000_000_000) as u32);
    if n >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A local I/O failure while writing `path`; a full disk is told apart ([`ErrorKind::InsufficientStorage`]).
fn write_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
        return Error::new(
            ErrorKind::InsufficientStorage,
            format!(
                "cannot {what} {}: the disk is full; free space there and run the job again (it goes on from the \
                 parts already written)",
                path.display()
            ),
        )
        .with_source(e);
    }
    super::upload::io_error(what, path, e)
}

/// The file being written: the temporary file, open for writing at offsets.
#[derive(Clone)]
struct Sink {
    temp: Arc<Path>,
    file: Arc<File>,
    /// Held while a part is written: one writer at a time per file. Parallel writers into one file only
    /// contend for its inode lock (a profile of 8 of them showed 13% of the CPU spinning on it).
    writing: Arc<std::sync::Mutex<()>>,
}

impl Engine {
    /// A job downloading one object to a file, with a handle (progress, events, stop, abort): `.await` it to
    /// start it ([`JobStart`]). Running it again after a crash, a kill or a failure continues the download,
    /// fetching only the parts not written yet.
    pub fn download_one(&self, req: DownloadRequest) -> JobStart {
        JobStart::new(self, Source::Download(req))
    }

    /// A job downloading every object under `req.bucket/req.prefix` into `req.dir`: `.await` it to start it
    /// ([`JobStart`]). The prefix is listed page by page as the job goes. A key that would land outside the
    /// directory, or that no file name holds faithfully, is refused for that object (an [`Event::Failed`](super::Event::Failed)),
    /// never written anywhere; keys ending in `/` (directory markers) are not objects to download.
    pub fn download_prefix(&self, req: PrefixDownloadRequest) -> JobStart {
        JobStart::new(self, Source::DownloadPrefix(req))
    }

    /// Downloads `req.source` to `req.path` within `job`: see the docs of `job::download`. Running it again after
    /// success does nothing (while the file is still there with the object's size) and returns the recorded
    /// outcome. The engine reads from its store (or, for an engine made by [`Engine::relay`], from the source
    /// store).
    pub async fn download_object(&self, job: JobId, req: &DownloadRequest) -> Result<Outcome> {
        self.refuse_dry_run("download_object", "plan_download_object")?;
        let path = download_path(&req.path)?;
        let got = match self.download_run(job, req, &path).await {
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                tracing::info!(source = %req.source, "the object changed during the download; starting again from a fresh HEAD");
                self.download_run(job, req, &path).await.map(|o| o.changed(true))
            }
            other => other,
        };
        got.map_err(|e| e.with_context("source", &req.source).with_context("file", path.display()))
    }

    /// What [`Engine::download_object`] would do: the object's HEAD, planned with the engine's options, and the
    /// overwrite policy applied to the file. Writes nothing.
    pub async fn plan_download_object(&self, req: &DownloadRequest) -> Result<super::PlannedObject> {
        let path = download_path(&req.path)?;
        self.plan_download(&req.source, Some(&path)).await
    }

    /// What a download of `source` to the file `path` (`None`: a stream, named `-`) would do.
    pub(super) async fn plan_download(&self, source: &ObjectRef, path: Option<&Path>) -> Result<super::PlannedObject> {
        let head = self.source_head(source).await?;
        let plan = self.plan_read(head.size)?;
        let skip = match path {
            _ if head.needs_restore() && self.inner.config.restore.is_none() => Some(SkipReason::Archived),
            Some(path) => self.download_skip(source, path, &head).await?,
            None => None,
        };
        let action = match skip {
            Some(reason) => super::PlannedAction::Skip(reason),
            None => super::PlannedAction::Download { part_size: plan.part_size(), parts: plan.part_count() },
        };
        Ok(super::PlannedObject {
            source: source.to_string(),
            bucket: String::new(),
            key: path.map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            size: head.size,
            action,
        })
    }

    /// One attempt: HEAD, ledger row, parts, verification, publication.
    async fn download_run(&self, job: JobId, req: &DownloadRequest, path: &Path) -> Result<Outcome> {
        let head = self.source_head(&req.source).await?;
        let size = head.size;
        let Some(head) = self.readable(&req.source, head).await? else {
            return Ok(Outcome::left_alone(size, SkipReason::Archived, None));
        };
        let size = head.size;
        let plan = self.plan_read(size)?;
        let fp = Fingerprint::Object { etag: head.etag.clone(), version_id: head.version_id.clone(), size };
        let (source, dest) = (req.source.to_string(), path.display().to_string());
        let row = {
            let (fp, source, dest, ps) = (fp.clone(), source.clone(), dest.clone(), plan.part_size());
            self.db(move |l| l.upsert_object(job, &source, "", &dest, size, &fp, ps, None)).await?
        };
        if row.dest_key != dest {
            return Err(Error::invalid(format!(
                "job {job} already downloads {source} to {}, not to {dest}; use another job for another file",
                row.dest_key
            )));
        }
        let temp = temp_path(path, job);
        let changed = row.fingerprint != fp;
        let row = if changed || row.plan_part_size != plan.part_size() {
            remove_if_any(&temp).await?;
            self.restart(row, fp, size, plan.part_size()).await?
        } else {
            row
        };
        if row.state.is_done() {
            // The file is the truth: done while it is still there with the object's size.
            let there = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size);
            if row.state == ObjectState::Skipped || there {
                return Ok(Outcome::recorded(&row));
            }
            tracing::info!(file = %path.display(), "the file an earlier run downloaded is gone or changed; downloading it again");
        }
        let result =
            self.download_into(&row, &req.source, &head, &plan, (path, &temp)).await.map(|o| o.changed(changed));
        if let Err(e) = &result {
            self.record_failure(&row, e).await;
        }
        result
    }

    async fn download_into(
        &self,
        row: &ObjectRow,
        source: &ObjectRef,
        head: &ObjectInfo,
        plan: &ObjectPlan,
        (path, temp): (&Path, &Path),
    ) -> Result<Outcome> {
        if super::overwrite::not_started(row) {
            if let Some(reason) = self.download_skip(source, path, head).await? {
                let id = row.id;
                self.db(move |l| l.skip_object(id)).await?;
                return Ok(Outcome::left_alone(plan.size, reason, None));
            }
        }
        let id = row.id;
        let recorded = self.db(move |l| l.parts(id)).await?;
        let (sink, kept) = open_sink(path, temp, plan, recorded).await?;
        let forgotten = {
            let kept: HashSet<u32> = kept.iter().copied().collect();
            plan.parts().any(|p| !kept.contains(&p.number))
        };
        if kept.is_empty() && forgotten {
            // Nothing usable on disk: the ledger's parts (if any) are forgotten with the row's state.
            let fp = row.fingerprint.clone();
            let (size, ps) = (plan.size, plan.part_size());
            self.db(move |l| l.reset_object(id, &fp, size, ps)).await?;
        }
        let (sent, reused) = self.fetch_parts(row, source, head, plan, (&sink, &kept)).await?;
        let parts = self.db(move |l| l.parts(id)).await?;
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        if numbers != (1..=plan.part_count()).collect::<Vec<_>>() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("the ledger holds parts {numbers:?} of {}", plan.part_count()),
            ));
        }
        let (verified, blake3) = self.verify(row, (source, head), &parts, &sink).await?;
        let crc = verified.crc64.then_some(head.crc64).flatten();
        let mode = match self.inner.config.restore_mode {
            true => head.metadata.user.get(MODE_METADATA).and_then(|m| u32::from_str_radix(m, 8).ok()),
            false => None,
        };
        let no_replace = self.inner.config.overwrite == Overwrite::IfMissing;
        if !publish(&sink, path, head, mode, no_replace).await? {
            // A file appeared at the final path meanwhile, and --no-clobber keeps it.
            tracing::info!(file = %path.display(), "the file appeared during the download and is kept (no-clobber)");
            remove_if_any(&sink.temp).await?;
            self.db(move |l| l.skip_object(id)).await?;
            return Ok(Outcome::left_alone(plan.size, SkipReason::Exists, None));
        }
        let (etag, blake3) = (head.etag.clone(), blake3.map(|h| h.to_hex().to_string()));
        let recorded = blake3.clone();
        // The file as published: while it stays so, a sync knows it holds this object without reading it.
        let published = std::fs::metadata(path).ok().map(|m| FileState::of(&m));
        let name = path.display().to_string();
        self.db(move |l| {
            l.finish_object_tagged(id, &etag, crc, recorded.as_deref(), true)?;
            published.map_or(Ok(()), |state| l.record_file(&name, state, crc))
        })
        .await?;
        Ok(Outcome {
            size: plan.size,
            etag: head.etag.clone(),
            crc64: crc,
            blake3: blake3.unwrap_or_default(),
            parts_sent: sent,
            parts_reused: reused,
            already_done: false,
            skipped: None,
            verified,
            source_changed: false,
            chunk: None,
        })
    }

    /// How an object of `size` bytes is read: in parts of the part size (within the memory budget) from the
    /// first byte past one part, whatever the upload threshold, so what is held in memory is at most a part
    /// per request in flight.
    pub(super) fn plan_read(&self, size: u64) -> Result<ObjectPlan> {
        let mut opts = self.inner.config.plan.clone();
        opts.multipart_threshold = opts.multipart_threshold.min(opts.preferred_part_size.saturating_add(1));
        plan_object(size, self.source_store().capabilities(), &opts)
    }

    /// Whether the overwrite policy leaves the file at `path` alone.
    async fn download_skip(&self, source: &ObjectRef, path: &Path, head: &ObjectInfo) -> Result<Option<SkipReason>> {
        let existing = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(super::upload::io_error("stat", path, e)),
        };
        match self.inner.config.overwrite {
            Overwrite::Always => Ok(None),
            Overwrite::IfMissing => Ok(Some(SkipReason::Exists)),
            // The same bytes, by the object's CRC-64, else by the MD5 its ETag is; a file no checksum can
            // compare counts as different.
            Overwrite::IfDifferent if !existing.is_file() || existing.len() != head.size => Ok(None),
            Overwrite::IfDifferent => Ok(self.file_matches(source, head, path).await?.then_some(SkipReason::Unchanged)),
        }
    }

    /// Whether the file at `path` holds the object `source` (`head` its HEAD): by the object's CRC-64, else by
    /// whatever else it can be checked by (its CRC-32C, the MD5 its ETag is, a BLAKE3 label); a file nothing can
    /// compare counts as different.
    pub(super) async fn file_matches(&self, source: &ObjectRef, head: &ObjectInfo, path: &Path) -> Result<bool> {
        let file = Arc::new(File::open(path).map_err(|e| super::upload::io_error("open", path, e))?);
        Ok(match head.crc64 {
            Some(want) => self.file_crc64(&file, &Arc::from(path), head.size).await? == want,
            None => {
                let expected = self.expected(source, head, false).await?;
                !expected.is_empty() && {
                    let checked = self.check_file(source, head, (&file, &[]), expected).await?;
                    checked.mismatch().is_none() && checked.verified.any()
                }
            }
        })
    }

    /// Fetches every part not `kept` into `sink`, recording each in the ledger once written. Answers the parts
    /// fetched and the parts kept.
    async fn fetch_parts(
        &self,
        row: &ObjectRow,
        source: &ObjectRef,
        head: &ObjectInfo,
        plan: &ObjectPlan,
        (sink, kept): (&Sink, &[u32]),
    ) -> Result<(u32, u32)> {
        let writer = self.inner.ledger.part_writer();
        let (mut sent, mut reused) = (0u32, 0u32);
        let mut tasks = PartTasks::new(2 * self.inner.config.plan.max_in_flight);
        let taking = async {
            for part in plan.parts() {
                self.check_stopped()?;
                if !tasks.ready().await {
                    break;
                }
                if kept.contains(&part.number) {
                    reused += 1;
                    self.reused(part.len);
                    continue;
                }
                let memory = self.inner.scheduler.memory(part.len.max(1)).await;
                sent += 1;
                let (engine, writer, object) = (self.clone(), writer.clone(), row.id);
                let (head, source, halt, sink) = (head.clone(), source.clone(), tasks.halt(), sink.clone());
                tasks.spawn(async move {
                    let _memory = memory;
                    halt.check()?;
                    let sum = fetch_into(&engine, &source, &head, &part, &sink)
                        .await
                        .map_err(|e| e.with_context("part", part.number))?;
                    engine.acknowledged(part.len);
                    writer.record(object, sum.row(&part, &head.etag));
                    Ok(())
                });
            }
            Ok::<(), Error>(())
        }
        .await;
        // Parts already fetching finish and are recorded even after a failure or a stop.
        tasks.finish_recorded(taking, &writer).await?;
        Ok((sent, reused))
    }

    /// Checks the written bytes against what the object says it is: the parts' CRC-64s combined against its
    /// CRC-64, then, read back once, whatever else there is to check ([`super::verify`]: the store's CRC-32C
    /// or the MD5 of the ETag where there is no CRC-64; a BLAKE3 label). A mismatch forgets the parts (the next
    /// run fetches the object again) and fails. Answers what was checked and the bytes' BLAKE3 when computed.
    async fn verify(
        &self,
        row: &ObjectRow,
        (source, head): (&ObjectRef, &ObjectInfo),
        parts: &[PartRow],
        sink: &Sink,
    ) -> Result<(Verified, Option<blake3::Hash>)> {
        let combined = parts.iter().try_fold(0u64, |acc, p| p.crc64.map(|c| crc64::combine(acc, c, p.size)));
        let mut verified = Verified::default();
        let mut mismatch = None;
        if let (Some(want), Some(got)) = (head.crc64, combined) {
            verified.crc64 = want == got;
            mismatch = (want != got).then(|| format!("CRC-64 {got}, not the object's {want}"));
        }
        let mut blake3 = None;
        if mismatch.is_none() {
            let expected = self.expected(source, head, verified.crc64).await?;
            if !expected.is_empty() {
                let crcs: Vec<(u64, u32)> =
                    parts.iter().map_while(|p| p.checksum.map(|Checksum::Crc32c(c)| (p.size, c))).collect();
                let crcs = if crcs.len() == parts.len() { crcs } else { Vec::new() };
                let checked = self.check_file(source, head, (&sink.file, &crcs), expected).await?;
                let crc64 = verified.crc64;
                (verified, blake3) = (checked.verified, checked.blake3);
                verified.crc64 = crc64;
                mismatch = checked.mismatch().map(str::to_owned);
            }
        }
        if let Some(what) = mismatch {
            let (id, fp, size, ps) = (row.id, row.fingerprint.clone(), row.size, row.plan_part_size);
            self.db(move |l| l.reset_object(id, &fp, size, ps)).await?;
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the bytes written to {} have the {what}: nothing was published; run the job again to fetch the \
                     object again",
                    sink.temp.display()
                ),
            )
            .with_retry(Retry::Permanent));
        }
        Ok((verified, blake3))
    }
}

/// The absolute path of a download's file, refused when it is a directory or names none.
fn download_path(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| super::upload::io_error("resolve", path, e))?;
    if abs.file_name().is_none() || path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::invalid(format!("{} names a directory, not a file to download to", path.display())));
    }
    existing_file(&abs)?;
    Ok(abs)
}

/// What is at a download's final path: nothing, or a regular file (its status). Anything else is refused, never
/// replaced: a directory, a symbolic link, a FIFO, a device (`/dev/null` included), a socket.
pub(super) fn existing_file(path: &Path) -> Result<Option<std::fs::Metadata>> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(super::upload::io_error("stat", path, e)),
    };
    let t = meta.file_type();
    let what = match () {
        _ if t.is_file() => return Ok(Some(meta)),
        _ if t.is_dir() => "a directory; name the file to download to (or download a prefix into it)",
        _ if t.is_symlink() => "a symbolic link; it is not replaced: name the file it points to, or remove it",
        _ if t.is_fifo() => "a FIFO; it is not replaced (download to - to stream into a pipe)",
        _ if t.is_block_device() || t.is_char_device() => "a device; it is not replaced (download to - to stream)",
        _ => "not a regular file; it is not replaced",
    };
    Err(Error::invalid(format!("{} is {what}", path.display())))
}

/// What a download records of each part it wrote, to tell on resume whether the bytes are still there: the
/// CRC-64 where the object has one (the parts' CRC-64s then combine into the check of the whole), else the
/// CRC-32C, four times cheaper, whose parts make the object's CRC-32C (whole, or composite when the download's
/// parts are the upload's) without reading the file again.
#[derive(Debug, Clone)]
enum PartSum {
    Crc64(Crc64),
    Crc32c(u32),
}

impl PartSum {
    /// The kind a part of `head` is recorded with, over no bytes yet.
    fn for_object(head: &ObjectInfo) -> PartSum {
        match head.crc64 {
            Some(_) => PartSum::Crc64(Crc64::new()),
            None => PartSum::Crc32c(0),
        }
    }

    /// The kind recorded in `p`, over no bytes yet; `None` when it has none.
    fn of_row(p: &PartRow) -> Option<PartSum> {
        match (p.crc64, p.checksum) {
            (Some(_), _) => Some(PartSum::Crc64(Crc64::new())),
            (None, Some(Checksum::Crc32c(_))) => Some(PartSum::Crc32c(0)),
            _ => None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            PartSum::Crc64(c) => c.update(data),
            PartSum::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
        }
    }

    /// Whether `p` records these bytes.
    fn matches(&self, p: &PartRow) -> bool {
        match self {
            PartSum::Crc64(c) => p.crc64 == Some(c.value()),
            PartSum::Crc32c(c) => p.checksum == Some(Checksum::Crc32c(*c)),
        }
    }

    /// The ledger's row of `part` written with these bytes, under the object's ETag.
    fn row(&self, part: &Part, etag: &str) -> PartRow {
        let (crc64, checksum) = match self {
            PartSum::Crc64(c) => (Some(c.value()), None),
            PartSum::Crc32c(c) => (None, Some(Checksum::Crc32c(*c))),
        };
        PartRow {
            number: part.number,
            offset: part.offset,
            size: part.len,
            etag: etag.to_owned(),
            crc64,
            blake3: String::new(),
            checksum,
        }
    }
}

/// Fetches `part` of `source` (as `head` describes it: the ETag checked, the version pinned) into the sink's
/// file at the part's offset, retried under the engine's policy, and answers the sum of its bytes. The body
/// goes to the file as it arrives, in batches of up to [`WRITE_BATCH`] bytes of the chunks received (no part
/// buffer, no copy), each written by one writer at a time off the async threads; a retry writes the part again
/// from its start.
async fn fetch_into(
    engine: &Engine,
    source: &ObjectRef,
    head: &ObjectInfo,
    part: &Part,
    sink: &Sink,
) -> Result<PartSum> {
    let obj = pinned(source, head);
    if part.len == 0 {
        return Ok(PartSum::for_object(head));
    }
    let (obj, store) = (&obj, engine.source_store());
    engine
        .retrying("GetObject", |_| async move {
            let _slot = engine.inner.scheduler.request().await;
            engine.check_stopped()?;
            let got = store.get_object(obj, Some(ByteRange::at(part.offset, part.len))).await?;
            if got.info.etag != head.etag {
                return Err(changed_while_read(obj, head, &got.info));
            }
            let mut body = got.body;
            let (mut sum, mut at, mut batch) = (PartSum::for_object(head), part.offset, Vec::new());
            let mut batched = 0usize;
            let end = part.offset + part.len;
            loop {
                let chunk = futures::TryStreamExt::try_next(&mut body).await?;
                let last = chunk.is_none();
                if let Some(c) = chunk {
                    batched += c.len();
                    batch.push(c);
                }
                if batched >= WRITE_BATCH || (last && batched > 0) {
                    if at + batched as u64 > end {
                        break; // More than asked for: said below.
                    }
                    let (sink, chunks) = (sink.clone(), std::mem::take(&mut batch));
                    sum = tokio::task::spawn_blocking(move || write_batch(&sink, at, &chunks, sum)).await??;
                    at += batched as u64;
                    batched = 0;
                }
                if last {
                    break;
                }
            }
            if at != end || batched > 0 {
                let got = at - part.offset + batched as u64;
                return Err(Error::new(
                    ErrorKind::Transport,
                    format!("{obj} answered {got} bytes where {} were asked for", part.len),
                ));
            }
            Ok(sum)
        })
        .await
}

/// The most bytes of a part gathered before they are written.
const WRITE_BATCH: usize = 4 << 20;

/// Blocking: writes `chunks` at `at` in the sink's file, one writer at a time, adding them to `sum`.
fn write_batch(sink: &Sink, mut at: u64, chunks: &[Bytes], mut sum: PartSum) -> Result<PartSum> {
    let _one_at_a_time = sink.writing.lock().unwrap_or_else(|p| p.into_inner());
    let start = at;
    for chunk in chunks {
        sum.update(chunk);
        // In slices of at most 64 KiB: large pwrites cost the kernel far more CPU in its page-cache copy
        // (measured for 1 GiB from Garage: 8 MiB writes 4-5 s of CPU, 1 MiB 3.5-4 s, 64 KiB 1 s).
        for slice in chunk.chunks(WRITE_SLICE) {
            sink.file.write_all_at(slice, at).map_err(|e| write_error("write", &sink.temp, e))?;
            at += slice.len() as u64;
        }
    }
    write_back(&sink.file, start, at - start);
    Ok(sum)
}

/// Starts writing `len` bytes of `file` at `offset` back to disk, without waiting: the fsync before the
/// rename then finds little left to write (measured for 1 GiB: the fsync alone took 0.6 s). On Linux,
/// `POSIX_FADV_DONTNEED` starts the writeback of the range's dirty pages; pages of it already clean are dropped
/// from the cache, so a later read of the file (a check by MD5 or BLAKE3) may go to the disk. Advice only: a
/// failure here is found by that fsync.
fn write_back(file: &File, offset: u64, len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// `source` at the version `head` describes (a versioned object read by key is read at the version planned).
pub(super) fn pinned(source: &ObjectRef, head: &ObjectInfo) -> ObjectRef {
    match (&source.version_id, &head.version_id) {
        (None, Some(v)) => source.clone().at_version(v.clone()),
        _ => source.clone(),
    }
}

/// The error of an object whose ETag changed while it was read.
fn changed_while_read(obj: &ObjectRef, head: &ObjectInfo, now: &ObjectInfo) -> Error {
    Error::new(
        ErrorKind::PreconditionFailed,
        format!("{obj} changed while it was read (ETag {} is now {})", head.etag, now.etag),
    )
}

/// Reads the bytes of `source` (whole, or `(offset, len)`) as the version `head` describes, retried under the
/// engine's policy, each attempt under a request permit. An answer with another ETag (the object changed) fails
/// with [`ErrorKind::PreconditionFailed`]; a short body with [`ErrorKind::Transport`] (retried).
pub(super) async fn read_pinned(
    engine: &Engine,
    store: &dyn ObjectStore,
    source: &ObjectRef,
    head: &ObjectInfo,
    part: Option<(u64, u64)>,
) -> Result<Bytes> {
    let obj = pinned(source, head);
    let want = part.map_or(head.size, |(_, len)| len);
    let range = part.map(|(offset, len)| ByteRange::at(offset, len));
    let obj = &obj;
    engine
        .retrying("GetObject", |_| async move {
            let _slot = engine.inner.scheduler.request().await;
            engine.check_stopped()?;
            let got = store.get_object(obj, range).await?;
            if got.info.etag != head.etag {
                return Err(changed_while_read(obj, head, &got.info));
            }
            // Into one buffer of the size asked for, each chunk dropped once copied: a part in flight holds
            // its own size, not twice it (a list of chunks, then their concatenation).
            let mut data = bytes::BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
            let mut body = got.body;
            while let Some(chunk) = futures::TryStreamExt::try_next(&mut body).await? {
                data.extend_from_slice(&chunk);
            }
            let data = data.freeze();
            if data.len() as u64 != want {
                return Err(Error::new(
                    ErrorKind::Transport,
                    format!("{obj} answered {} bytes where {want} were asked for", data.len()),
                ));
            }
            Ok(data)
        })
        .await
}

/// Removes a download's temporary file, if there is one.
async fn remove_if_any(temp: &Path) -> Result<()> {
    match tokio::fs::remove_file(temp).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(super::upload::io_error("remove", temp, e)),
        _ => Ok(()),
    }
}

/// Opens the temporary file of a download (creating its directory), and answers which of the `recorded` parts
/// it still holds: those whose bytes, read back, have the recorded CRC-64. A temporary file that is missing or
/// of another length is started afresh, sized to the object.
async fn open_sink(path: &Path, temp: &Path, plan: &ObjectPlan, recorded: Vec<PartRow>) -> Result<(Sink, Vec<u32>)> {
    let (path, temp, size) = (path.to_path_buf(), temp.to_path_buf(), plan.size);
    let plan = *plan;
    tokio::task::spawn_blocking(move || {
        let dir = path.parent().unwrap_or(Path::new("/"));
        make_dir(dir)?;
        let existing = std::fs::OpenOptions::new().read(true).write(true).open(&temp);
        let (file, kept) = match existing {
            Ok(f) if f.metadata().is_ok_and(|m| m.len() == size) => {
                let kept = recorded
                    .iter()
                    .filter(|p| plan.part(p.number).is_some_and(|want| want.offset == p.offset && want.len == p.size))
                    .filter(|p| {
                        PartSum::of_row(p)
                            .and_then(|sum| sum_at(&f, p.offset, p.size, sum).ok())
                            .is_some_and(|s| s.matches(p))
                    })
                    .map(|p| p.number)
                    .collect();
                (f, kept)
            }
            _ => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&temp)
                    .map_err(|e| write_error("create", &temp, e))?;
                allocate(&f, size).map_err(|e| write_error("allocate", &temp, e))?;
                (f, Vec::new())
            }
        };
        Ok((Sink { temp: temp.into(), file: Arc::new(file), writing: Arc::default() }, kept))
    })
    .await?
}

/// Reserves `size` bytes for the file where the filesystem can (so a full disk shows before the download, not
/// in its middle), else only sets its length.
fn allocate(f: &File, size: u64) -> std::io::Result<()> {
    if size > 0 {
        match rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, size) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::NOSPC => return Err(e.into()),
            Err(_) => {}
        }
    }
    f.set_len(size)
}

/// Creates `dir` and its parents; a file in the way (a key `a/b` beside `a/b/c`) is said plainly.
fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => {
            let blocker = dir.ancestors().find(|a| a.is_file());
            match blocker {
                Some(file) => Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "cannot create the directory {}: {} is a file (an object's key is also the prefix of \
                         others); download one of them elsewhere",
                        dir.display(),
                        file.display()
                    ),
                )),
                None => Err(write_error("create the directory", dir, e)),
            }
        }
    }
}

/// `sum` over `len` bytes of `f` at `offset`.
fn sum_at(f: &File, offset: u64, len: u64, mut sum: PartSum) -> std::io::Result<PartSum> {
    let mut buf = vec![0u8; (1 << 20).min(len as usize).max(1)];
    let mut at = 0;
    while at < len {
        let n = (buf.len() as u64).min(len - at) as usize;
        f.read_exact_at(&mut buf[..n], offset + at)?;
        sum.update(&buf[..n]);
        at += n as u64;
    }
    Ok(sum)
}

/// Publishes a complete temporary file: its modification time set from the object's `mtime` metadata (else
/// its Last-Modified), its permission bits from `mode` when given (else those of the file it replaces, if
/// any), fsynced, renamed over `path` (with `no_replace`, only where nothing is: false when something appeared
/// meanwhile, and nothing was published), and the directory fsynced. The file renamed is the one written (the
/// temporary name still names it), and what it replaces must be a regular file.
async fn publish(sink: &Sink, path: &Path, head: &ObjectInfo, mode: Option<u32>, no_replace: bool) -> Result<bool> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mtime = head
        .metadata
        .user
        .get(MTIME_METADATA)
        .and_then(|v| parse_mtime(v))
        .or_else(|| u64::try_from(head.last_modified).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s)));
    let (file, temp, path) = (sink.file.clone(), sink.temp.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        if let Some(t) = mtime {
            file.set_modified(t).map_err(|e| write_error("set the modification time of", &temp, e))?;
        }
        let replaced = existing_file(&path)?;
        let bits = match (mode, &replaced) {
            (Some(mode), _) => Some(mode & 0o777),
            (None, Some(old)) => Some(old.permissions().mode() & 0o7777),
            (None, None) => None,
        };
        if let Some(bits) = bits {
            let perms = std::fs::Permissions::from_mode(bits);
            file.set_permissions(perms).map_err(|e| write_error("set the permissions of", &temp, e))?;
        }
        file.sync_all().map_err(|e| write_error("sync", &temp, e))?;
        let ours = file.metadata().map_err(|e| write_error("stat", &temp, e))?;
        let named = std::fs::symlink_metadata(&temp).map_err(|e| write_error("stat", &temp, e))?;
        if (named.dev(), named.ino()) != (ours.dev(), ours.ino()) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("{} is no longer the file this download wrote; nothing was published", temp.display()),
            ));
        }
        let cwd = rustix::fs::CWD;
        let flags = match no_replace {
            true => rustix::fs::RenameFlags::NOREPLACE,
            false => rustix::fs::RenameFlags::empty(),
        };
        match rustix::fs::renameat_with(cwd, &*temp, cwd, &path, flags) {
            Ok(()) => {}
            Err(e) if no_replace && e == rustix::io::Errno::EXIST => return Ok(false),
            Err(e) => return Err(write_error("rename into place", &path, e.into())),
        }
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| write_error("sync the directory", dir, e))?;
        }
        Ok(true)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_would_leave_the_directory_are_refused() {
        let dir = Path::new("/restore");
        assert_eq!(path_under(dir, "a/b.txt").unwrap(), Path::new("/restore/a/b.txt"));
        assert_eq!(path_under(dir, "...").unwrap(), Path::new("/restore/..."));
        for bad in
            ["../x", "a/../../x", "/etc/passwd", "a\\b", "a\0b", "a//b", "./a", "a/.", "", "..", "d/.x.transfer-3.part"]
        {
            let e = path_under(dir, bad).unwrap_err();
            assert!(e.contains("is not written to /restore"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn mtimes_read_both_forms_and_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_614_889_256, 123_456_789);
        assert_eq!(format_mtime(t), "1614889256.123456789");
        assert_eq!(parse_mtime("1614889256.123456789"), Some(t));
        assert_eq!(parse_mtime("1614889256.1234567"), Some(UNIX_EPOCH + Duration::new(1_614_889_256, 123_456_700)));
        assert_eq!(parse_mtime("1614889256"), Some(UNIX_EPOCH + Duration::from_secs(1_614_889_256)));
        assert_eq!(parse_mtime("2021-03-04T20:20:56.123456789Z"), Some(t));
        let before = UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(parse_mtime(&format_mtime(before)), Some(before));
        for bad in ["", "soon", "12.3x", "1.2.3"] {
            assert_eq!(parse_mtime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_temporary_file_is_hidden_beside_the_destination() {
        assert_eq!(temp_path(Path::new("/d/a.tar"), JobId(7)), Path::new("/d/.a.tar.transfer-7.part"));
        assert!(is_temp_name(".a.tar.transfer-7.part"));
        assert!(!is_temp_name("a.tar.transfer-7.part") && !is_temp_name(".a.transfer-x.part"));
        let long = "n".repeat(250);
        let temp = temp_path(&Path::new("/d").join(&long), JobId(12));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255 && is_temp_name(name), "{name}");
        assert_eq!(temp, temp_path(&Path::new("/d").join(&long), JobId(12)), "the same path every run");
    }
}
