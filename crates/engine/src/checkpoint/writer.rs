//! Grouped commits of acknowledged parts: one writer thread per [`Ledger`], fed by a channel.
//!
//! [`PartWriter::record`] only sends; the thread gathers what has arrived — up to [`BATCH_ROWS`] rows or
//! [`BATCH_WINDOW`] after the first one — and commits it in one transaction. A flush request waits behind every
//! part sent before it, so when [`PartWriter::flush`] returns `Ok`, every part recorded before the call is
//! committed. A batch that fails to commit is kept and retried with the next one; every flush fails until it
//! commits, so no acknowledged part is silently lost.
//!
//! A part is stored only while its object accepts parts: the object exists, has an upload id and is pending,
//! uploading or failed. Parts that arrive for a finished, reset (no upload id) or forgotten object belong to an
//! upload that is over; they are dropped (with a warning) instead of resurrecting stale state.

use super::{to_sql_u64, Ledger, PartRow};
use crate::error::{Error, ErrorKind, Result};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most parts committed in one transaction.
pub(super) const BATCH_ROWS: usize = 512;
/// Longest a recorded part waits for companions before its batch is committed.
pub(super) const BATCH_WINDOW: Duration = Duration::from_millis(50);

enum Msg {
    Part(i64, PartRow),
    Flush(Reply),
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
        let _ = self.ledger.inner.writer.send(Msg::Part(object_id, part));
    }

    /// Waits until every part recorded (by any clone) before this call is committed to the database.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ledger.inner.writer.send(Msg::Flush(Reply::Async(tx)))?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Io, "the checkpoint ledger's part writer has stopped; recorded parts may be lost")
}

/// The ledger's end of the channel: the sender and the thread, joined on drop after it wrote what was queued.
pub(super) struct Handle {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub(super) fn spawn(conn: Arc<Mutex<Connection>>, path: &Path) -> Result<Handle> {
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        let thread =
            std::thread::Builder::new().name("ledger-writer".into()).spawn(move || run(&conn, &path, rx)).map_err(
                |e| Error::new(ErrorKind::Io, "cannot start the checkpoint ledger's writer thread").with_source(e),
            )?;
        Ok(Handle { tx: Some(tx), thread: Some(thread) })
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.tx.as_ref().ok_or_else(stopped)?.send(msg).map_err(|_| stopped())
    }

    /// [`PartWriter::flush`] for synchronous callers (ledger methods that delete parts).
    pub(super) fn flush_blocking(&self) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Flush(Reply::Blocking(tx)))?;
        rx.recv().map_err(|_| stopped())?
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Mutex<Connection>, path: &Path, rx: mpsc::Receiver<Msg>) {
    let mut pending: Vec<(i64, PartRow)> = Vec::new();
    let mut waiters: Vec<Reply> = Vec::new();
    let mut open = true;
    while open {
        match rx.recv() {
            Ok(msg) => take(msg, &mut pending, &mut waiters),
            Err(_) => open = false,
        }
        let deadline = Instant::now() + BATCH_WINDOW;
        while open && waiters.is_empty() && pending.len() < BATCH_ROWS {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(msg) => take(msg, &mut pending, &mut waiters),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        let result = if pending.is_empty() {
            Ok(0)
        } else {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            write(&mut c, &pending)
        };
        match result {
            Ok(dropped) => {
                if dropped > 0 {
                    tracing::warn!(dropped, ledger = %path.display(), "parts recorded for objects that no longer take parts were dropped");
                }
                pending.clear();
                for w in waiters.drain(..) {
                    w.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, parts = pending.len(), ledger = %path.display(), "committing parts failed; will retry");
                for w in waiters.drain(..) {
                    w.send(Err(Error::new(
                        ErrorKind::Io,
                        format!(
                            "committing {} parts to the checkpoint ledger {} failed: {e}",
                            pending.len(),
                            path.display()
                        ),
                    )));
                }
            }
        }
    }
    if !pending.is_empty() {
        tracing::error!(parts = pending.len(), ledger = %path.display(), "the checkpoint ledger closed with uncommitted parts");
    }
}

fn take(msg: Msg, pending: &mut Vec<(i64, PartRow)>, waiters: &mut Vec<Reply>) {
    match msg {
        Msg::Part(id, part) => pending.push((id, part)),
        Msg::Flush(reply) => waiters.push(reply),
    }
}

/// Commits `parts` in one transaction; returns how many were dropped because their object takes no parts.
fn write(conn: &mut Connection, parts: &[(i64, PartRow)]) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut dropped = 0;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO parts (object, number, offset, size, etag, crc64, blake3, checksum)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (
                 SELECT 1 FROM objects WHERE id = ?1 AND upload_id IS NOT NULL
                 AND state IN ('pending', 'uploading', 'failed'))",
        )?;
        for (object, p) in parts {
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
            if n == 0 {
                dropped += 1;
            }
        }
    }
    tx.commit()?;
    Ok(dropped)
}
