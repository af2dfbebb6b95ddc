//! Opening the ledger file: refusing what is not ours, then applying the embedded migrations.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::Connection;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// `PRAGMA application_id` of every ledger: "TRNS".
pub const APPLICATION_ID: i32 = 0x5452_4E53;

/// The migrations, in order: entry `i` brings the schema to `user_version = i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_ledger.sql"),
    include_str!("../../migrations/0002_part_checksum.sql"),
    include_str!("../../migrations/0003_job_error.sql"),
    include_str!("../../migrations/0004_sync.sql"),
    include_str!("../../migrations/0005_stream_source.sql"),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another process's write before failing with "database is locked".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn refuse(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} is not usable as a transfer checkpoint ledger: {what}. It was left untouched; \
             choose another --checkpoint path (or move that file away)",
            path.display()
        ),
    )
}

/// Opens the ledger at `path` (creating it and its parent directories if needed), checks that it is a ledger
/// this build understands and brings its schema up to date. Never modifies a file it refuses.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot create the directory {} for the checkpoint ledger", dir.display()),
            )
            .with_source(e)
        })?;
    }
    // Look at the header ourselves first: SQLite would report a foreign file only on the first query, and a
    // garbage file must not get as far as a journal-mode change.
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut head = Vec::with_capacity(16);
            f.by_ref().take(16).read_to_end(&mut head).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot read the checkpoint ledger {}", path.display()))
                    .with_source(e)
            })?;
            if !head.is_empty() && head.as_slice() != SQLITE_MAGIC {
                return Err(refuse(path, "the file is not an SQLite database"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, format!("cannot open the checkpoint ledger {}", path.display()))
                .with_source(e))
        }
    }
    let mut conn = Connection::open(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot open the checkpoint ledger {}", path.display())).with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read-only checks before anything writes to the file.
    let (app_id, version, tables) =
        identity(&conn).map_err(|e| refuse(path, format_args!("SQLite cannot read it ({e})")))?;
    check_identity(path, app_id, version, tables)?;

    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;

    // BEGIN IMMEDIATE: two processes opening a fresh ledger at once migrate it once, one after the other.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (app_id, version, tables) = identity(&tx)?;
    check_identity(path, app_id, version, tables)?;
    if version < SCHEMA_VERSION {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("migration {} of the checkpoint ledger {} failed", i + 1, path.display()),
                )
                .with_source(e)
            })?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(conn)
}

/// `(application_id, user_version, number of schema objects)`.
fn identity(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((app_id, version, tables))
}

fn check_identity(path: &Path, app_id: i32, version: i64, tables: i64) -> Result<()> {
    if app_id == 0 {
        // A brand-new (or empty) database is ours to initialise; anything with content is someone else's.
        if tables > 0 || version != 0 {
            return Err(refuse(
                path,
                "it is an SQLite database of another application (it has tables but no transfer application id)",
            ));
        }
        return Ok(());
    }
    if app_id != APPLICATION_ID {
        return Err(refuse(
            path,
            format_args!("it is an SQLite database of another application (application_id {app_id:#010x}, a ledger has {APPLICATION_ID:#010x})"),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the checkpoint ledger {} has schema version {version}, written by a newer transfer; this build knows up to \
                 version {SCHEMA_VERSION}. It was left untouched: upgrade transfer, or choose another --checkpoint path",
                path.display()
            ),
        ));
    }
    Ok(())
}
