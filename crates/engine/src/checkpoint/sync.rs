//! What `sync` asks the ledger: which writes produced a destination, which files' bytes are known by their
//! state, and a pass's progress and pending deletions.

use super::objects::{object_from_row, COLUMNS};
use super::{from_sql_u64, now, to_sql_u64, Cached, JobId, Ledger, ObjectRow};
use crate::error::Result;
use rusqlite::{params, OptionalExtension};

/// A local file's state: while its size, modification time and inode are these, it holds the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileState {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub inode: u64,
}

impl FileState {
    /// The state of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileState {
        use std::os::unix::fs::MetadataExt;
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        FileState { size: meta.len(), mtime_ns, inode: meta.ino() }
    }
}

impl Ledger {
    /// The newest finished write of the destination `bucket/key` (a download's: bucket `""`, key the file's
    /// path): the row says what it was made from (its source and fingerprint) and what it made (its ETag).
    pub(crate) fn last_write(&self, bucket: &str, key: &str) -> Result<Option<ObjectRow>> {
        Ok(self
            .conn()
            .row(
                &format!(
                    "SELECT {COLUMNS} FROM objects WHERE dest_bucket = ?1 AND dest_key = ?2
                     AND state IN ('completed', 'tagged') ORDER BY id DESC LIMIT 1"
                ),
                params![bucket, key],
                object_from_row,
            )
            .optional()?)
    }

    /// The CRC-64 of the object `bucket/key` while its ETag is `etag`, if a finished row of any job recorded it:
    /// as a destination it wrote, or as a source it read.
    pub(crate) fn known_crc64(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<u64>> {
        let found: Option<i64> = self
            .conn()
            .row(
                "SELECT crc64 FROM objects WHERE crc64 IS NOT NULL AND state IN ('completed', 'tagged')
                 AND ((dest_bucket = ?1 AND dest_key = ?2 AND etag = ?3) OR (source = ?4 AND fp_etag = ?3))
                 ORDER BY id DESC LIMIT 1",
                params![bucket, key, etag, format!("{bucket}/{key}")],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.map(from_sql_u64))
    }

    /// What the ledger knows of the file at `path`: its state when it was recorded, and its CRC-64 if computed.
    pub(crate) fn file(&self, path: &str) -> Result<Option<(FileState, Option<u64>)>> {
        Ok(self
            .conn()
            .row("SELECT size, mtime_ns, inode, crc64 FROM files WHERE path = ?1", [path], |r| {
                let mtime: String = r.get(1)?;
                let state = FileState {
                    size: from_sql_u64(r.get(0)?),
                    mtime_ns: mtime.parse().unwrap_or(i128::MIN),
                    inode: from_sql_u64(r.get(2)?),
                };
                Ok((state, r.get::<_, Option<i64>>(3)?.map(from_sql_u64)))
            })
            .optional()?)
    }

    /// Records the file at `path` in `state`, with its CRC-64 if known.
    pub(crate) fn record_file(&self, path: &str, state: FileState, crc64: Option<u64>) -> Result<()> {
        self.conn().exec(
            "INSERT INTO files (path, size, mtime_ns, inode, crc64, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (path) DO UPDATE SET size = ?2, mtime_ns = ?3, inode = ?4, crc64 = ?5, updated = ?6",
            params![
                path,
                to_sql_u64(state.size),
                state.mtime_ns.to_string(),
                to_sql_u64(state.inode),
                crc64.map(to_sql_u64),
                now()
            ],
        )?;
        Ok(())
    }

    /// A sync pass's progress: the key below which everything was settled (`None`: from the start), and the
    /// source entries below it.
    pub(crate) fn sync_progress(&self, job: JobId) -> Result<(Option<String>, u64)> {
        let found = self
            .conn()
            .row("SELECT cursor, sources FROM sync_progress WHERE job = ?1", [job.0], |r| {
                Ok((r.get::<_, Option<String>>(0)?, from_sql_u64(r.get(1)?)))
            })
            .optional()?;
        Ok(found.unwrap_or((None, 0)))
    }

    /// Records a pass's progress (see [`sync_progress`](Self::sync_progress)).
    pub(crate) fn set_sync_progress(&self, job: JobId, cursor: Option<&str>, sources: u64) -> Result<()> {
        self.conn().exec(
            "INSERT INTO sync_progress (job, cursor, sources) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET cursor = ?2, sources = ?3",
            params![job.0, cursor, to_sql_u64(sources)],
        )?;
        Ok(())
    }

    /// Starts a pass of the job where its progress says: deletions found past the cursor are forgotten (the pass
    /// finds them again), and with no cursor, all of them.
    pub(crate) fn resume_sync(&self, job: JobId) -> Result<(Option<String>, u64)> {
        let (cursor, sources) = self.sync_progress(job)?;
        match &cursor {
            Some(c) => self.conn().exec("DELETE FROM sync_deletes WHERE job = ?1 AND key > ?2", params![job.0, c])?,
            None => self.conn().exec("DELETE FROM sync_deletes WHERE job = ?1", [job.0])?,
        };
        Ok((cursor, sources))
    }

    /// Records `key` (relative to the destination) as one to delete once the pass is complete.
    pub(crate) fn add_sync_delete(&self, job: JobId, key: &str) -> Result<()> {
        self.conn().exec("INSERT OR IGNORE INTO sync_deletes (job, key) VALUES (?1, ?2)", params![job.0, key])?;
        Ok(())
    }

    /// Up to `limit` keys to delete, in order, after `after`.
    pub(crate) fn sync_deletes(&self, job: JobId, after: &str, limit: usize) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT key FROM sync_deletes WHERE job = ?1 AND key > ?2 ORDER BY key LIMIT ?3")?;
        let rows = stmt.query_map(params![job.0, after, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// How many deletions the pass holds.
    pub(crate) fn count_sync_deletes(&self, job: JobId) -> Result<u64> {
        let n: i64 = self.conn().row("SELECT count(*) FROM sync_deletes WHERE job = ?1", [job.0], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Forgets deletions done.
    pub(crate) fn remove_sync_deletes(&self, job: JobId, keys: &[String]) -> Result<()> {
        self.atomically(|tx| {
            for k in keys {
                tx.exec("DELETE FROM sync_deletes WHERE job = ?1 AND key = ?2", params![job.0, k])?;
            }
            Ok(())
        })
    }

    /// Ends the job's pass: the next run of the job compares everything again.
    pub(crate) fn end_sync_pass(&self, job: JobId) -> Result<()> {
        self.atomically(|tx| {
            tx.exec("DELETE FROM sync_progress WHERE job = ?1", [job.0])?;
            tx.exec("DELETE FROM sync_deletes WHERE job = ?1", [job.0])?;
            Ok(())
        })
    }
}
