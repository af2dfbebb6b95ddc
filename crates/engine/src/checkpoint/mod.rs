//! The checkpoint ledger: an SQLite file that records every job, every object of a job and every
//! acknowledged part, so that an interrupted transfer resumes without re-sending what already arrived.
//!
//! # Model
//! - A **job** ([`JobSpec`], [`JobRow`]) is what one run moves: its [`JobKind`], source and destination, and the
//!   application's note. The engine finds or records it by what it moves ([`crate::job::JobStart`]): running
//!   the same lines again finds the newest unfinished job with the same identity ([`Ledger::find_job`]) and
//!   resumes it.
//! - An **object** ([`ObjectRow`]) is one source (a path or `bucket/key`) with its destination, the
//!   [`Fingerprint`] the plan was made from, the planned part size, the multipart upload id and its
//!   [`ObjectState`]. `Pending → Uploading → Completed → Tagged` (done); `Failed` and `Skipped` on the side.
//! - A **part** ([`PartRow`]) is recorded only after the server acknowledged it. Parts arrive at high rate, so
//!   the engine hands them to one writer thread that commits them in batches ([`Ledger::flush`] waits for
//!   what was handed over). Parts belong to the object's current upload and are deleted when the object
//!   completes, when its upload id changes and when it is reset; the final ETag, CRC-64 and BLAKE3 stay on
//!   the object row. A million-object job therefore keeps parts only for the objects in flight.
//!
//! Only the engine writes objects and parts: the methods a program calls read ([`Ledger::jobs`],
//! [`Ledger::objects`], [`Ledger::parts`], ...), or manage whole jobs ([`Ledger::create_job`],
//! [`Ledger::forget_job`], [`Ledger::forget_upload`] after an abort).
//!
//! # One writer per job
//! [`Ledger::lock_job`] takes an exclusive OS lock on `<ledger path>.job-<id>.lock`; a second process asking
//! for the same job gets an [`crate::ErrorKind::Locked`] error saying another transfer is
//! running it. The lock goes with the [`JobLock`] (and with the process, if it dies). Several jobs may run at
//! once against one ledger file (WAL mode).
//!
//! # Safety of the file
//! The file carries `PRAGMA application_id = 0x54524E53` ("TRNS") and its schema version in
//! `PRAGMA user_version`; the migrations live in the top-level `migrations/` directory. A file that is not
//! SQLite, belongs to another application or was written by a newer build is refused with an error naming
//! the path, and is never reset or overwritten.
//!
//! # No secrets
//! The ledger stores no credentials: no column is meant for them, and [`JobSpec::note`] must not contain any
//! (access keys, secrets, tokens) — leaving them out is the caller's duty.
//!
//! # Threads
//! Every method of [`Ledger`] but [`Ledger::flush`] is synchronous and may wait on SQLite: call them from
//! `tokio::task::spawn_blocking` (or [`Ledger::off_thread`]) in async code. The engine itself writes through
//! the ledger's writer thread (see `writer.rs`): the steps of all objects in flight share its commits.

mod lock;
mod objects;
mod schema;
mod sync;
mod writer;

#[cfg(test)]
mod tests;

pub use lock::JobLock;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sync::FileState;
pub(crate) use writer::PartWriter;

use crate::error::{Error, ErrorKind, Result};
use crate::store::Checksum;
use parking_lot::ReentrantMutexGuard;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A job's id in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// Files into a store.
    Upload,
    /// Objects to objects: server-side within one store, or relayed between two.
    Copy,
    /// Objects into files.
    Download,
    /// A directory or prefix made like another: what is missing or different copied, and with deletion, what
    /// the source does not have removed.
    Sync,
}

impl JobKind {
    /// The name kept in the ledger: `upload`, `copy`, `download`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Upload => "upload",
            JobKind::Copy => "copy",
            JobKind::Download => "download",
            JobKind::Sync => "sync",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "upload" => JobKind::Upload,
            "copy" => JobKind::Copy,
            "download" => JobKind::Download,
            "sync" => JobKind::Sync,
            other => return Err(bad_value("jobs.kind", other)),
        })
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a new job is. The engine derives it from what a job moves (see [`crate::job::JobStart`]); a
/// program only names it when it records jobs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// What the job does.
    pub kind: JobKind,
    /// Where the data comes from: an absolute path, or `bucket/key` / `bucket/prefix/`.
    pub source: String,
    /// Where it goes: `bucket/key` or `bucket/prefix/`.
    pub destination: String,
    /// The application's own record of how the job was started, opaque to the engine (the `transfer`
    /// command line keeps its options here, so `transfer resume` can run the job again). Must not contain
    /// credentials.
    pub note: String,
}

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Started and not finished (also what a crashed run leaves behind).
    Running,
    /// Stopped gracefully; resumable.
    Stopped,
    /// Every object is done. [`Ledger::find_job`] no longer returns it.
    Done,
    /// Ended with failed objects; resumable.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Stopped => "stopped",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "running" => JobState::Running,
            "stopped" => JobState::Stopped,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            other => return Err(bad_value("jobs.state", other)),
        })
    }
}

/// How many objects of a job are in each state, and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not started.
    pub pending: u64,
    /// Upload initiated, parts in progress.
    pub uploading: u64,
    /// Bytes in place, tags still to apply.
    pub completed: u64,
    /// Done.
    pub tagged: u64,
    /// Failed (with an error).
    pub failed: u64,
    /// Skipped (already at the destination, excluded, ...).
    pub skipped: u64,
    /// All objects.
    pub total: u64,
    /// Size of all objects.
    pub bytes_total: u64,
    /// Size of the objects whose bytes are in place (completed, tagged).
    pub bytes_done: u64,
    /// Bytes of the acknowledged parts of objects not yet in place: the server holds them, and a resume does
    /// not send them again.
    pub bytes_in_parts: u64,
}

impl Counts {
    fn add(&mut self, state: ObjectState, n: u64, bytes: u64) {
        *match state {
            ObjectState::Pending => &mut self.pending,
            ObjectState::Uploading => &mut self.uploading,
            ObjectState::Completed => &mut self.completed,
            ObjectState::Tagged => &mut self.tagged,
            ObjectState::Failed => &mut self.failed,
            ObjectState::Skipped => &mut self.skipped,
        } += n;
        self.total += n;
        self.bytes_total += bytes;
        if matches!(state, ObjectState::Completed | ObjectState::Tagged) {
            self.bytes_done += bytes;
        }
    }
}

/// One job as listed by [`Ledger::jobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Its id.
    pub id: JobId,
    /// What the job does.
    pub kind: JobKind,
    /// Source as recorded.
    pub source: String,
    /// Destination as recorded.
    pub destination: String,
    /// The application's note ([`JobSpec::note`]).
    pub note: String,
    /// Lifecycle state.
    pub state: JobState,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Last state change, Unix seconds.
    pub updated: i64,
    /// What failed in its last run beyond its objects (a source it could not list), if anything.
    pub error: Option<String>,
    /// Whether its last run found every object of its source; if not (it stopped or failed while listing),
    /// `counts` are of the objects found so far.
    pub listed: bool,
    /// A sync whose pass is under way: the key (relative to both sides) up to which it compared and settled
    /// everything; its next run lists both sides after it. `None`: no pass under way, or nothing settled yet.
    pub sync_cursor: Option<String>,
    /// Objects per state.
    pub counts: Counts,
}

/// What the source looked like when the plan was made; a resumed job compares it with the source now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    /// A local file.
    File {
        /// Length in bytes.
        size: u64,
        /// Modification time, nanoseconds since the Unix epoch.
        mtime_ns: i128,
        /// Inode (or file index) number.
        inode: u64,
    },
    /// An object in a store.
    Object {
        /// Its ETag.
        etag: String,
        /// Its version id, on versioned buckets.
        version_id: Option<String>,
        /// Length in bytes.
        size: u64,
    },
    /// A stream (stdin, a pipe): nothing to compare, as a stream cannot be read twice. Its object never resumes.
    Stream,
}

impl JobRow {
    /// True for a job that uploads a stream (stdin, a pipe): it cannot resume, as its bytes cannot be read again;
    /// its uploads are for `transfer cleanup` to abort, never to continue.
    pub fn is_stream(&self) -> bool {
        self.kind == JobKind::Upload && self.source == crate::job::STREAM_SOURCE
    }
}

/// An object's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectState {
    /// Nothing sent yet.
    Pending,
    /// Multipart upload initiated; parts being recorded.
    Uploading,
    /// Bytes in place; its tags remain to be applied.
    Completed,
    /// Done: bytes in place and tags applied.
    Tagged,
    /// Failed; see [`ObjectRow::error`]. Resumable: upload id and parts are kept.
    Failed,
    /// Deliberately not transferred (the overwrite policy left the destination alone).
    Skipped,
}

impl ObjectState {
    /// Every state, in lifecycle order.
    pub const ALL: [ObjectState; 6] = [
        ObjectState::Pending,
        ObjectState::Uploading,
        ObjectState::Completed,
        ObjectState::Tagged,
        ObjectState::Failed,
        ObjectState::Skipped,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ObjectState::Pending => "pending",
            ObjectState::Uploading => "uploading",
            ObjectState::Completed => "completed",
            ObjectState::Tagged => "tagged",
            ObjectState::Failed => "failed",
            ObjectState::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        ObjectState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| bad_value("objects.state", s))
    }

    /// True for the states that need no more work (tagged, skipped).
    pub fn is_done(self) -> bool {
        matches!(self, ObjectState::Tagged | ObjectState::Skipped)
    }
}

/// One object of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// Its id in the ledger.
    pub id: i64,
    /// Its job.
    pub job: JobId,
    /// The source: a path, or `bucket/key`. Unique within the job.
    pub source: String,
    /// Destination bucket.
    pub dest_bucket: String,
    /// Destination key.
    pub dest_key: String,
    /// Bytes to transfer.
    pub size: u64,
    /// The source as planned.
    pub fingerprint: Fingerprint,
    /// Part size of the plan (the part boundaries of a resumed upload must not move).
    pub plan_part_size: u64,
    /// The multipart upload id, recorded right after Initiate.
    pub upload_id: Option<crate::store::UploadId>,
    /// Progress.
    pub state: ObjectState,
    /// The tags that must end up on the object, in header form ([`crate::TagSet::to_header`]); `None`: none to
    /// apply.
    pub tags: Option<String>,
    /// Whether they were applied.
    pub tags_applied: bool,
    /// ETag of the finished object.
    pub etag: Option<String>,
    /// CRC-64 of the finished object.
    pub crc64: Option<u64>,
    /// BLAKE3 (hex) of the finished object.
    pub blake3: Option<String>,
    /// The last error, for failed objects.
    pub error: Option<String>,
}

impl ObjectRow {
    /// True for the row of a [`Chunk`](crate::job::Chunk) of a split object: its upload belongs to the
    /// migration's plan (the merge completes it, `transfer shard abort` aborts it), never to the job.
    pub fn is_chunk(&self) -> bool {
        self.source.starts_with(crate::job::CHUNK_SOURCE)
    }

    /// The tags to apply, parsed.
    pub fn tag_set(&self) -> Result<Option<crate::TagSet>> {
        self.tags.as_deref().map(crate::TagSet::parse_header).transpose()
    }
}

/// One acknowledged part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    /// Part number, 1..=10000.
    pub number: u32,
    /// Offset of its first byte in the source.
    pub offset: u64,
    /// Its length.
    pub size: u64,
    /// ETag the server returned.
    pub etag: String,
    /// CRC-64 of its bytes, when known.
    pub crc64: Option<u64>,
    /// BLAKE3 (hex) of its bytes.
    pub blake3: String,
    /// The checksum the server checked it against, when the store sends one
    /// ([`PartReceipt::checksum`](crate::store::PartReceipt::checksum)); named again at Complete.
    pub checksum: Option<Checksum>,
}

/// The checkpoint ledger. Cheap to clone: clones share one connection and one part-writer thread.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: writer::Conn,
    writer: writer::Handle,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn bad_value(column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unexpected value {value:?} in {column}").into(),
    )
}

/// u64 → the INTEGER with the same 64 bits.
pub(crate) fn to_sql_u64(v: u64) -> i64 {
    v as i64
}

/// The INTEGER with the same 64 bits → u64.
pub(crate) fn from_sql_u64(v: i64) -> u64 {
    v as u64
}

impl Ledger {
    /// Opens the ledger at `path`, creating it (and its parent directories) if needed and applying pending
    /// migrations. Refuses, without modifying it, a file that is not a ledger this build understands.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        let conn = Arc::new(parking_lot::ReentrantMutex::new(schema::open(&path)?));
        let writer = writer::Handle::spawn(conn.clone(), &path)?;
        Ok(Ledger { inner: Arc::new(Inner { path, conn, writer }) })
    }

    /// Where the ledger lives unless told otherwise: `$TRANSFER_LEDGER` if set, else
    /// `$XDG_STATE_HOME/transfer/ledger.db`, else `~/.local/state/transfer/ledger.db`.
    pub fn default_path() -> Result<PathBuf> {
        default_path_from(|name| std::env::var_os(name))
    }

    /// Runs `f` on this ledger on a blocking thread: how async code calls the ledger's synchronous methods.
    pub async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || f(&ledger)).await?
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn conn(&self) -> ReentrantMutexGuard<'_, Connection> {
        self.inner.conn.lock()
    }

    /// Runs `f` on the ledger's writer thread, in its next batch (see `writer.rs`), and answers once that batch
    /// is committed: how the engine records its steps while a job runs.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.inner.writer.call(self.clone(), f).await
    }

    /// Runs `f` atomically: on its own, in a `BEGIN IMMEDIATE` transaction (which takes the write lock first,
    /// so it waits out other writers instead of failing when its reads turn into writes); inside the writer
    /// thread's batch, in a savepoint of the batch's transaction. Undone when `f` fails.
    fn atomically<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        let alone = conn.is_autocommit();
        let (begin, end) =
            if alone { ("BEGIN IMMEDIATE", "COMMIT") } else { ("SAVEPOINT ledger_step", "RELEASE ledger_step") };
        conn.exec(begin, [])?;
        let result = f(&conn).and_then(|v| Ok(conn.exec(end, []).map(|_| v)?));
        if result.is_err() {
            if alone {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            } else {
                // If SQLite already rolled the batch back (a full disk), this fails and so does the batch.
                let _ = conn.execute_batch("ROLLBACK TO ledger_step; RELEASE ledger_step");
            }
        }
        result
    }

    /// Records a new job in state [`JobState::Running`].
    pub fn create_job(&self, spec: &JobSpec) -> Result<JobId> {
        let conn = self.conn();
        let t = now();
        conn.exec(
            "INSERT INTO jobs (kind, source, destination, options_json, state, created, updated)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5)",
            params![spec.kind.as_str(), spec.source, spec.destination, spec.note, t],
        )?;
        let id = JobId(conn.last_insert_rowid());
        // Within a caller's transaction (a job start's step on the writer thread) the caller checkpoints after
        // its commit.
        if conn.is_autocommit() {
            drop(conn);
            self.checkpoint()?;
        }
        Ok(id)
    }

    /// Folds the log into the main file (a passive checkpoint, which syncs it there; it never waits for another
    /// process's readers): what a new job's row needs so that a run killed before the next automatic checkpoint,
    /// whose `-wal` is then lost or damaged, still finds its job.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.conn().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The newest job of this kind, source and destination that is not [`JobState::Done`]: running the same
    /// command again resumes it.
    pub fn find_job(&self, kind: JobKind, source: &str, destination: &str) -> Result<Option<JobId>> {
        let conn = self.conn();
        let id = conn
            .row(
                "SELECT id FROM jobs WHERE kind = ?1 AND source = ?2 AND destination = ?3 AND state != 'done'
                 ORDER BY id DESC LIMIT 1",
                params![kind.as_str(), source, destination],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map(JobId))
    }

    /// A job's kind, source and destination; an error naming the job when the ledger has no such job.
    pub(crate) fn job_identity(&self, job: JobId) -> Result<(JobKind, String, String)> {
        let row = self
            .conn()
            .row("SELECT kind, source, destination FROM jobs WHERE id = ?1", [job.0], |r| {
                Ok((JobKind::parse(&r.get::<_, String>(0)?)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        row.ok_or_else(|| no_job(job))
    }

    /// The newest job before `job` that moved the same thing (kind, source, destination) and finished, with the
    /// time it finished (Unix seconds): what a program tells a user who runs a finished job's command again.
    pub fn finished_before(&self, job: JobId) -> Result<Option<(JobId, i64)>> {
        let row = self
            .conn()
            .row(
                "SELECT o.id, o.updated FROM jobs o JOIN jobs j ON j.id = ?1
                 WHERE o.id < j.id AND o.kind = j.kind AND o.source = j.source AND o.destination = j.destination
                 AND o.state = 'done' ORDER BY o.id DESC LIMIT 1",
                [job.0],
                |r| Ok((JobId(r.get(0)?), r.get(1)?)),
            )
            .optional()?;
        Ok(row)
    }

    /// Every job, oldest first, with its object counts.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut counts: HashMap<i64, Counts> = HashMap::new();
        let mut stmt =
            conn.prepare("SELECT job, state, count(*), coalesce(sum(size), 0) FROM objects GROUP BY job, state")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state = ObjectState::parse(&r.get::<_, String>(1)?)?;
            let bytes = from_sql_u64(r.get(3)?);
            counts.entry(r.get(0)?).or_default().add(state, r.get::<_, i64>(2)? as u64, bytes);
        }
        // Parts are deleted when their object completes: those left belong to objects not yet in place.
        let mut stmt = conn.prepare(
            "SELECT o.job, coalesce(sum(p.size), 0) FROM parts p JOIN objects o ON p.object = o.id GROUP BY o.job",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            counts.entry(r.get(0)?).or_default().bytes_in_parts = from_sql_u64(r.get(1)?);
        }
        let mut stmt = conn.prepare(
            "SELECT j.id, j.kind, j.source, j.destination, j.options_json, j.state, j.created, j.updated, j.error, \
             j.listed, s.cursor FROM jobs j LEFT JOIN sync_progress s ON s.job = j.id ORDER BY j.id",
        )?;
        let jobs = stmt
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                Ok(JobRow {
                    id: JobId(id),
                    kind: JobKind::parse(&r.get::<_, String>(1)?)?,
                    source: r.get(2)?,
                    destination: r.get(3)?,
                    note: r.get(4)?,
                    state: JobState::parse(&r.get::<_, String>(5)?)?,
                    created: r.get(6)?,
                    updated: r.get(7)?,
                    error: r.get(8)?,
                    listed: r.get(9)?,
                    sync_cursor: r.get(10)?,
                    counts: counts.get(&id).copied().unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(jobs)
    }

    /// Takes the job's exclusive lock: one writer per job, across processes. Fails at once, with an error
    /// naming the job, when another transfer holds it. Released when the [`JobLock`] is dropped.
    pub fn lock_job(&self, job: JobId) -> Result<JobLock> {
        self.require_job(job)?;
        JobLock::acquire(&self.inner.path, job)
    }

    /// Whether a process runs the job now (holds its lock, see [`lock_job`](Self::lock_job)). A job the
    /// ledger says is [`JobState::Running`] that nobody runs was interrupted: killed, or quit by a second
    /// Ctrl-C.
    pub fn is_running(&self, job: JobId) -> bool {
        lock::held(&self.inner.path, job)
    }

    /// Marks the job running for a run that holds its lock. A job that ran before (`resumed`) and that the
    /// ledger still calls running was interrupted (killed, a crash, a power loss): the file is checked first
    /// ([`check`](Self::check)), so damage is reported instead of trusted. A new job, or one that ended
    /// cleanly, costs no check.
    pub(crate) fn start_run(&self, job: JobId, resumed: bool) -> Result<()> {
        let state: String = self
            .conn()
            .row("SELECT state FROM jobs WHERE id = ?1", [job.0], |r| r.get(0))
            .optional()?
            .ok_or_else(|| no_job(job))?;
        if resumed && state == JobState::Running.as_str() {
            self.check()?;
        }
        self.set_job_state(job, JobState::Running)
    }

    /// Checks the whole file for damage (SQLite's `PRAGMA quick_check`: every page and row, not the indexes'
    /// agreement with their tables; about 1.5 s per million objects on a warm cache). The error names the
    /// ledger and what to do: a ledger moved aside costs the next run checks of what the destination holds,
    /// not re-sends.
    pub fn check(&self) -> Result<()> {
        let conn = self.conn();
        let found = (|| {
            let mut stmt = conn.prepare("PRAGMA quick_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })();
        let problems = match found {
            Ok(rows) if rows.iter().all(|r| r == "ok") => return Ok(()),
            Ok(rows) => rows.into_iter().take(3).collect::<Vec<_>>().join("; "),
            Err(e) => e.to_string(),
        };
        Err(damaged(&self.inner.path, &problems))
    }

    pub(crate) fn set_job_state(&self, job: JobId, state: JobState) -> Result<()> {
        let n = self
            .conn()
            .exec("UPDATE jobs SET state = ?2, updated = ?3 WHERE id = ?1", params![job.0, state.as_str(), now()])?;
        if n == 0 {
            return Err(no_job(job));
        }
        Ok(())
    }

    /// Records how a run of the job ended: its state, what failed beyond its objects (`None`: nothing), and
    /// whether it found every object of its source.
    pub(crate) fn end_job(&self, job: JobId, state: JobState, error: Option<&str>, listed: bool) -> Result<()> {
        let n = self.conn().exec(
            "UPDATE jobs SET state = ?2, updated = ?3, error = ?4, listed = ?5 WHERE id = ?1",
            params![job.0, state.as_str(), now(), error, listed],
        )?;
        if n == 0 {
            return Err(no_job(job));
        }
        Ok(())
    }

    /// Deletes the job with its objects and parts. Fails while a transfer (this process included) holds the
    /// job's lock.
    pub fn forget_job(&self, job: JobId) -> Result<()> {
        self.require_job(job)?;
        let lock = JobLock::acquire(&self.inner.path, job)?;
        // Parts still in the writer's queue must not outlive their objects.
        self.inner.writer.flush_blocking()?;
        self.atomically(|tx| {
            tx.exec("DELETE FROM parts WHERE object IN (SELECT id FROM objects WHERE job = ?1)", [job.0])?;
            tx.exec("DELETE FROM objects WHERE job = ?1", [job.0])?;
            tx.exec("DELETE FROM jobs WHERE id = ?1", [job.0])?;
            Ok(())
        })?;
        drop(lock);
        Ok(())
    }

    /// Gives the space of forgotten jobs back to the file system: SQLite's VACUUM rewrites the file without its
    /// free pages, and a checkpoint folds the log back in. Meant after [`forget_job`](Self::forget_job)s; it
    /// waits for other writers (the busy timeout) and fails if they do not finish.
    pub fn compact(&self) -> Result<()> {
        self.inner.writer.flush_blocking()?;
        let conn = self.conn();
        conn.execute_batch("VACUUM")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Writes a consistent copy of the whole ledger to `to` (which must not exist), as of now: every part
    /// recorded so far committed first, then SQLite's `VACUUM INTO`. Another machine opens the copy as its
    /// ledger and resumes the jobs in it (`transfer shard run` keeps one beside its plan).
    pub fn snapshot_into(&self, to: &Path) -> Result<()> {
        self.inner.writer.flush_blocking()?;
        let to = to.to_str().ok_or_else(|| crate::Error::invalid(format!("{} is not UTF-8", to.display())))?;
        self.conn().execute("VACUUM INTO ?1", [to])?;
        Ok(())
    }

    /// Waits until every part recorded so far (by any job of this process) is committed: what a program calls
    /// before it exits at once (a second Ctrl-C), so the parts the server acknowledged are not sent again.
    pub async fn flush(&self) -> Result<()> {
        self.part_writer().flush().await
    }

    /// Forgets the multipart upload of an object after it was aborted on the server (by `transfer cleanup`,
    /// say): its parts go, and the next run of its job starts the object again.
    pub fn forget_upload(&self, object_id: i64) -> Result<()> {
        self.set_upload(object_id, None)
    }

    /// A handle to record acknowledged parts from any task; see [`PartWriter`].
    pub(crate) fn part_writer(&self) -> PartWriter {
        PartWriter::new(self.clone())
    }

    fn require_job(&self, job: JobId) -> Result<()> {
        let found: Option<i64> =
            self.conn().row("SELECT id FROM jobs WHERE id = ?1", [job.0], |r| r.get(0)).optional()?;
        found.map(|_| ()).ok_or_else(|| no_job(job))
    }
}

/// SQL run through the connection's statement cache: each statement is parsed once and reused (parsing was a
/// third of the ledger's cost per small object).
pub(crate) trait Cached {
    /// `prepare_cached(sql)?.execute(params)`.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `prepare_cached(sql)?.query_row(params, f)`.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The error of a ledger SQLite finds damaged, naming it and what to do.
fn damaged(path: &Path, problems: &str) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "the checkpoint ledger {} is damaged ({problems}); move it aside (or choose another --checkpoint) and run \
             again: the destination decides what already arrived, so a new ledger costs checks, not re-sends",
            path.display()
        ),
    )
}

fn no_job(job: JobId) -> Error {
    Error::invalid(format!("there is no job {job} in the checkpoint ledger"))
}

fn default_path_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(p) = set("TRANSFER_LEDGER") {
        return Ok(PathBuf::from(p));
    }
    // The XDG spec says relative values are to be ignored.
    if let Some(p) = set("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(p.join("transfer").join("ledger.db"));
    }
    if let Some(home) = set("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/transfer/ledger.db"));
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        "cannot choose a place for the checkpoint ledger: neither TRANSFER_LEDGER, XDG_STATE_HOME nor HOME is set; \
         set one of them or pass --checkpoint PATH",
    ))
}
