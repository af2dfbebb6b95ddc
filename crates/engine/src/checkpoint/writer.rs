//! The ledger's writer thread: every write the engine makes while a job runs goes through it, in grouped
//! commits.
//!
//! Two kinds of work arrive over one channel, in order:
//! - **parts** ([`PartWriter::record`]): only sent, never waited for. The thread gathers what has arrived — up
//!   to [`BATCH_ROWS`] parts or [`BATCH_WINDOW`] after the first one — and commits it in one transaction;
//! - **calls** ([`Ledger::call`](super::Ledger::call)): a ledger step the engine awaits (plan an object, record
//!   its upload id, finish it). A call ends the wait: the thread takes whatever else is queued and runs the
//!   lot in one transaction, in channel order, each call in its own savepoint (a call that fails leaves no
//!   trace), and answers each call only after the commit. With many objects in flight their steps share
//!   commits, no async task waits on a blocking thread, and no two threads contend for the connection.
//!
//! Channel order is what makes a call see every part recorded before it: finishing an object after its parts
//! needs no flush. A flush ([`PartWriter::flush`]) waits behind every part sent before it, so when it returns
//! `Ok`, every part recorded before the call is committed; with nothing queued since the last commit it returns
//! at once (two counters, parts queued and parts committed, say so) without waking the thread.
//!
//! A batch that fails to commit is rolled back: its calls fail, its parts are kept and retried with the next
//! batch, and every flush fails until they commit, so no acknowledged part is silently lost.
//!
//! A part is stored only while its object accepts parts: the object exists, has an upload id and is pending,
//! uploading or failed. Parts that arrive for a finished, reset (no upload id) or forgotten object belong to an
//! upload that is over; they are dropped (with a warning) instead of resurrecting stale state.

use super::{to_sql_u64, Cached, Ledger, PartRow};
use crate::error::{Error, ErrorKind, Result};
use parking_lot::ReentrantMutex;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// Most parts committed in one transaction.
pub(super) const BATCH_ROWS: usize = 512;
/// Longest a recorded part waits for companions before its batch is committed.
pub(super) const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// The ledger's connection: reentrant, so a call the writer thread runs inside its batch (holding the lock)
/// can use the ledger's own methods, which lock it again.
pub(super) type Conn = Arc<ReentrantMutex<Connection>>;

enum Msg {
    Part(i64, PartRow),
    Flush(Reply),
    Call(Box<dyn Call>),
}

enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<()>>),
    Blocking(mpsc::SyncSender<Result<()>>),
}

impl Reply {
    fn send(self, r: Result<()>) {
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// A ledger step queued for the writer thread.
trait Call: Send {
    /// Runs the step on the writer thread, inside the batch; answers whether it succeeded and keeps its result
    /// until [`answer`](Self::answer).
    fn run(&mut self);
    /// Whether [`run`](Self::run) succeeded.
    fn succeeded(&self) -> bool;
    /// Answers the caller once the batch is over: its result, or `failed` (the batch did not commit; a step
    /// that never ran gets it too).
    fn answer(self: Box<Self>, failed: Option<&Error>);
}

/// A [`Call`] for a step `F` answering `T`.
struct Step<F, T> {
    f: Option<(F, Ledger)>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> Call for Step<F, T>
where
    F: FnOnce(&Ledger) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self) {
        if let Some((f, ledger)) = self.f.take() {
            self.result = Some(f(&ledger));
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, failed: Option<&Error>) {
        let r = match (self.result, failed) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(e.clone()),
            (Some(Ok(v)), None) => Ok(v),
            (None, None) => {
                Err(Error::new(ErrorKind::Io, "a checkpoint ledger step failed (it panicked); nothing of it was kept"))
            }
        };
        let _ = self.reply.send(r);
    }
}

/// Records acknowledged parts from any task or thread. Clone it freely; all clones feed the ledger's one writer
/// thread. Holding a `PartWriter` keeps the ledger open.
#[derive(Clone)]
pub(crate) struct PartWriter {
    ledger: Ledger,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter").field("ledger", &self.ledger.inner.path).finish()
    }
}

impl PartWriter {
    pub(super) fn new(ledger: Ledger) -> Self {
        PartWriter { ledger }
    }

    /// Queues an acknowledged part of `object_id` for the next batch. Never blocks. Only a successful
    /// [`flush`](Self::flush) says it is durable; errors (including a stopped writer) surface there.
    pub(crate) fn record(&self, object_id: i64, part: PartRow) {
        let writer = &self.ledger.inner.writer;
        writer.counts.queued.fetch_add(1, Ordering::SeqCst);
        let _ = writer.send(Msg::Part(object_id, part));
    }

    /// Waits until every part recorded (by any clone) before this call is committed to the database.
    pub(crate) async fn flush(&self) -> Result<()> {
        let writer = &self.ledger.inner.writer;
        if writer.counts.all_committed() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.send(Msg::Flush(Reply::Async(tx)))?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Io, "the checkpoint ledger's writer thread has stopped; recorded parts may be lost")
}

/// Parts queued since the ledger opened, and parts the thread has committed (or dropped) since: equal when a
/// flush has nothing to wait for.
#[derive(Default)]
struct PartCounts {
    queued: AtomicU64,
    committed: AtomicU64,
}

impl PartCounts {
    fn all_committed(&self) -> bool {
        // `queued` first: a part queued after this load is not one a flush must wait for.
        let queued = self.queued.load(Ordering::SeqCst);
        self.committed.load(Ordering::SeqCst) >= queued
    }
}

/// The ledger's end of the channel: the sender and the thread, joined on drop after it wrote what was queued.
pub(super) struct Handle {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    counts: Arc<PartCounts>,
}

impl Handle {
    pub(super) fn spawn(conn: Conn, path: &Path) -> Result<Handle> {
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        let counts = Arc::new(PartCounts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || Writer { conn, path, counts: c, retry: Vec::new() }.run(rx))
            .map_err(|e| {
                Error::new(ErrorKind::Io, "cannot start the checkpoint ledger's writer thread").with_source(e)
            })?;
        let thread_id = thread.thread().id();
        Ok(Handle { tx: Some(tx), thread: Some(thread), thread_id, counts })
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.tx.as_ref().ok_or_else(stopped)?.send(msg).map_err(|_| stopped())
    }

    /// Runs `f` on the writer thread in its next batch and answers its result once that batch is committed.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        ledger: Ledger,
        f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Call(Box::new(Step { f: Some((f, ledger)), result: None, reply })))?;
        rx.await.map_err(|_| stopped())?
    }

    /// [`PartWriter::flush`] for synchronous callers (ledger methods that delete parts). On the writer thread
    /// itself (a call's step) there is nothing to wait for: every part sent before the call is already in.
    pub(super) fn flush_blocking(&self) -> Result<()> {
        if self.counts.all_committed() || std::thread::current().id() == self.thread_id {
            return Ok(());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Flush(Reply::Blocking(tx)))?;
        rx.recv().map_err(|_| stopped())?
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // The last clone of a ledger may go with a call the writer ran: the thread then ends by itself.
            if std::thread::current().id() != self.thread_id {
                let _ = t.join();
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Conn,
    path: std::path::PathBuf,
    counts: Arc<PartCounts>,
    /// Parts of a batch that failed to commit, retried first with the next one.
    retry: Vec<(i64, PartRow)>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut open = true;
        while open {
            let mut batch = Vec::new();
            match rx.recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => open = false,
            }
            // A call or a flush is awaited: take what is already queued and go. Parts alone wait for companions.
            let deadline = Instant::now() + BATCH_WINDOW;
            let mut parts = batch.iter().filter(|m| matches!(m, Msg::Part(..))).count();
            while open && parts < BATCH_ROWS {
                let awaited = batch.iter().any(|m| !matches!(m, Msg::Part(..)));
                let next = if awaited {
                    rx.try_recv().map_err(|e| e == TryRecvError::Disconnected)
                } else {
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .map_err(|e| e == RecvTimeoutError::Disconnected)
                };
                match next {
                    Ok(msg) => {
                        parts += usize::from(matches!(msg, Msg::Part(..)));
                        batch.push(msg);
                    }
                    Err(disconnected) => {
                        open = !disconnected;
                        break;
                    }
                }
            }
            if !batch.is_empty() || !self.retry.is_empty() {
                self.write(batch);
            }
        }
        if !self.retry.is_empty() {
            tracing::error!(parts = self.retry.len(), ledger = %self.path.display(), "the checkpoint ledger closed with uncommitted parts");
        }
    }

    /// Runs one batch in one transaction and answers its calls and flushes.
    fn write(&mut self, batch: Vec<Msg>) {
        let conn = self.conn.clone();
        let c = conn.lock();
        let mut parts = std::mem::take(&mut self.retry);
        let mut calls = Vec::new();
        let mut flushes = Vec::new();
        let mut dropped = 0;
        let mut failed = c.exec("BEGIN IMMEDIATE", []).err();
        for p in &parts {
            if failed.is_some() {
                break;
            }
            match insert_part(&c, p) {
                Ok(stored) => dropped += usize::from(!stored),
                Err(e) => failed = Some(e),
            }
        }
        for msg in batch {
            match msg {
                Msg::Part(id, part) => {
                    let entry = (id, part);
                    if failed.is_none() {
                        match insert_part(&c, &entry) {
                            Ok(stored) => dropped += usize::from(!stored),
                            Err(e) => failed = Some(e),
                        }
                    }
                    parts.push(entry);
                }
                Msg::Flush(reply) => flushes.push(reply),
                Msg::Call(mut call) => {
                    if failed.is_none() {
                        // A step that panics fails alone: its savepoint is undone, the batch goes on, and the
                        // connection never stays inside a transaction nobody will end.
                        if let Err(e) = in_savepoint(&c, || {
                            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.run()));
                            Ok(ran.is_ok() && call.succeeded())
                        }) {
                            failed = Some(e);
                        }
                    }
                    calls.push(call);
                }
            }
        }
        let failed = match failed {
            None => c.exec("COMMIT", []).err(),
            some => some,
        };
        let failed = failed.map(|e| {
            if !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            tracing::warn!(error = %e, parts = parts.len(), ledger = %self.path.display(), "committing to the checkpoint ledger failed; parts will be retried");
            Error::new(ErrorKind::Io, format!("committing to the checkpoint ledger {} failed: {e}", self.path.display()))
        });
        drop(c);
        match &failed {
            None => {
                if dropped > 0 {
                    tracing::warn!(dropped, ledger = %self.path.display(), "parts recorded for objects that no longer take parts were dropped");
                }
                self.counts.committed.fetch_add(parts.len() as u64, Ordering::SeqCst);
            }
            Some(_) => self.retry = parts,
        }
        for call in calls {
            call.answer(failed.as_ref());
        }
        for reply in flushes {
            reply.send(failed.clone().map_or(Ok(()), Err));
        }
    }
}

/// Runs `f` in a savepoint of the open transaction: released when `f` answers `true`, rolled back when it
/// answers `false`. An error is the database's (the savepoint could not be taken or released).
fn in_savepoint(conn: &Connection, f: impl FnOnce() -> rusqlite::Result<bool>) -> rusqlite::Result<()> {
    conn.exec("SAVEPOINT ledger_call", [])?;
    if !f()? {
        conn.exec("ROLLBACK TO ledger_call", [])?;
    }
    conn.exec("RELEASE ledger_call", []).map(drop)
}

/// Stores one part if its object still takes parts (an upload's while it has an upload id; a download's, whose
/// destination is a file (no bucket) and whose parts belong to its temporary file, while it is not done);
/// answers whether it was stored.
fn insert_part(conn: &Connection, (object, p): &(i64, PartRow)) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO parts (object, number, offset, size, etag, crc64, blake3, checksum)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (
             SELECT 1 FROM objects WHERE id = ?1 AND (upload_id IS NOT NULL OR dest_bucket = '')
             AND state IN ('pending', 'uploading', 'failed'))",
    )?;
    let n = stmt.execute(params![
        object,
        p.number,
        to_sql_u64(p.offset),
        to_sql_u64(p.size),
        p.etag,
        p.crc64.map(to_sql_u64),
        p.blake3,
        p.checksum.map(|c| c.to_string())
    ])?;
    Ok(n > 0)
}
