//! The checkpoint ledger: an SQLite file that records every job, every object of a job and every
//! acknowledged part, so that an interrupted transfer resumes without re-sending what already arrived.
//!
//! # Model
//! - A **job** ([`JobSpec`], [`JobRow`]) is one command: its kind, source, destination and options. Running the
//!   same command again finds the newest unfinished job with the same source and destination
//!   ([`Ledger::find_job`]) and resumes it.
//! - An **object** ([`ObjectRow`]) is one source (a path or `bucket/key`) with its destination, the
//!   [`Fingerprint`] the plan was made from, the planned part size, the multipart upload id and its
//!   [`ObjectState`]. `Pending → Uploading → Completed → Tagged` (done); `Failed` and `Skipped` on the side.
//! - A **part** ([`PartRow`]) is recorded only after the server acknowledged it — that is the caller's duty.
//!   Parts arrive at high rate, so they go through a [`PartWriter`]: a channel to one writer thread that commits
//!   them in batches; [`PartWriter::flush`] returns once everything recorded before it is in the database.
//!   Parts belong to the object's current upload and are deleted when the object completes
//!   ([`Ledger::finish_object`]), when its upload id changes ([`Ledger::set_upload`]) and when it is reset
//!   ([`Ledger::reset_object`]); the final ETag, CRC-64 and BLAKE3 stay on the object row. A million-object
//!   job therefore keeps parts only for the objects in flight.
//!
//! # One writer per job
//! [`Ledger::lock_job`] takes an exclusive OS lock on `<ledger path>.job-<id>.lock`; a second process asking
//! for the same job gets an error saying another transfer is running it. The lock goes with the [`JobLock`]
//! (and with the process, if it dies). Several jobs may run at once against one ledger file (WAL mode).
//!
//! # Safety of the file
//! The file carries `PRAGMA application_id = 0x54524E53` ("TRNS") and its schema version in
//! `PRAGMA user_version`; the migrations live in the top-level `migrations/` directory. A file that is not
//! SQLite, belongs to another application or was written by a newer build is refused with an error naming
//! the path, and is never reset or overwritten.
//!
//! # No secrets
//! The ledger stores no credentials: no column is meant for them, and `JobSpec::options_json` must not contain
//! any (access keys, secrets, tokens) — leaving them out is the caller's duty.
//!
//! # Threads
//! Every method of [`Ledger`] is synchronous and may wait on SQLite (and, for the methods that delete parts, on
//! the part writer): call them from `tokio::task::spawn_blocking` in async code. [`PartWriter::record`] never
//! blocks and [`PartWriter::flush`] is async.

mod lock;
mod objects;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

pub use lock::JobLock;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use writer::PartWriter;

use crate::error::{Error, ErrorKind, Result};
use crate::store::Checksum;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A job's id in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a new job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// `"upload"` or `"copy"`.
    pub kind: String,
    /// Where the data comes from, as the user named it (a directory, `oss://bucket/prefix`, ...).
    pub source: String,
    /// Where it goes.
    pub destination: String,
    /// The options the job was started with, as JSON. Must not contain credentials.
    pub options_json: String,
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
    /// `"upload"` or `"copy"`.
    pub kind: String,
    /// Source as given.
    pub source: String,
    /// Destination as given.
    pub destination: String,
    /// Options as given (JSON).
    pub options_json: String,
    /// Lifecycle state.
    pub state: JobState,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Last state change, Unix seconds.
    pub updated: i64,
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
}

/// An object's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectState {
    /// Nothing sent yet.
    Pending,
    /// Multipart upload initiated ([`Ledger::set_upload`]); parts being recorded.
    Uploading,
    /// Bytes in place ([`Ledger::finish_object`]); its tags remain to be applied.
    Completed,
    /// Done: bytes in place and tags applied ([`Ledger::mark_tags_applied`]).
    Tagged,
    /// Failed; see [`ObjectRow::error`]. Resumable: upload id and parts are kept.
    Failed,
    /// Deliberately not transferred ([`Ledger::skip_object`]).
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
    pub upload_id: Option<String>,
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
    conn: Arc<Mutex<Connection>>,
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
        let conn = Arc::new(Mutex::new(schema::open(&path)?));
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

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new job in state [`JobState::Running`].
    pub fn create_job(&self, spec: &JobSpec) -> Result<JobId> {
        if spec.kind != "upload" && spec.kind != "copy" {
            return Err(Error::invalid(format!("job kind {:?}: expected \"upload\" or \"copy\"", spec.kind)));
        }
        let conn = self.conn();
        let t = now();
        conn.exec(
            "INSERT INTO jobs (kind, source, destination, options_json, state, created, updated)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5)",
            params![spec.kind, spec.source, spec.destination, spec.options_json, t],
        )?;
        Ok(JobId(conn.last_insert_rowid()))
    }

    /// The newest job with this source and destination that is not [`JobState::Done`]: running the same
    /// command again resumes it.
    pub fn find_job(&self, source: &str, destination: &str) -> Result<Option<JobId>> {
        let conn = self.conn();
        let id = conn
            .row(
                "SELECT id FROM jobs WHERE source = ?1 AND destination = ?2 AND state != 'done'
                 ORDER BY id DESC LIMIT 1",
                params![source, destination],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map(JobId))
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
        let mut stmt = conn.prepare(
            "SELECT id, kind, source, destination, options_json, state, created, updated FROM jobs ORDER BY id",
        )?;
        let jobs = stmt
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                Ok(JobRow {
                    id: JobId(id),
                    kind: r.get(1)?,
                    source: r.get(2)?,
                    destination: r.get(3)?,
                    options_json: r.get(4)?,
                    state: JobState::parse(&r.get::<_, String>(5)?)?,
                    created: r.get(6)?,
                    updated: r.get(7)?,
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

    /// Changes the job's state.
    pub fn set_job_state(&self, job: JobId, state: JobState) -> Result<()> {
        let n = self
            .conn()
            .exec("UPDATE jobs SET state = ?2, updated = ?3 WHERE id = ?1", params![job.0, state.as_str(), now()])?;
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
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.exec("DELETE FROM parts WHERE object IN (SELECT id FROM objects WHERE job = ?1)", [job.0])?;
            tx.exec("DELETE FROM objects WHERE job = ?1", [job.0])?;
            tx.exec("DELETE FROM jobs WHERE id = ?1", [job.0])?;
            tx.commit()?;
        }
        lock.remove_file();
        Ok(())
    }

    /// A handle to record acknowledged parts from any task; see [`PartWriter`].
    pub fn part_writer(&self) -> PartWriter {
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
