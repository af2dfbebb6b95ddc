//! The SQLite index of the local store: buckets, object versions, multipart uploads and their parts.
//!
//! One database file (`index.db`, WAL, `synchronous=NORMAL`) is the authority on what exists: a data file that
//! no row names is invisible and swept on open. Keys are stored as BLOBs of their UTF-8 bytes so that SQLite's
//! `memcmp` order is the byte order listings need, and so that `key || x'FF'` (a byte UTF-8 never contains)
//! bounds "every key starting with `key`".
//!
//! The schema is versioned with `PRAGMA user_version`. Every function here is synchronous and takes the
//! connection (or a transaction, which derefs to it); callers hold the store's mutex inside `spawn_blocking`.

use super::errors;
use super::ids::{self, NULL_VERSION};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{Metadata, StorageClass};
use crate::store::{ObjectRef, ObjectType, UploadId, UploadInfo, Versioning};
use crate::tags::TagSet;
use crate::util::{pct_decode, pct_encode};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashSet;
use std::path::Path;

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE buckets (
    name        TEXT PRIMARY KEY,
    created     INTEGER NOT NULL,
    versioning  TEXT NOT NULL DEFAULT 'Off'
);
CREATE TABLE versions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket           TEXT NOT NULL,
    key              BLOB NOT NULL,
    version_id       TEXT NOT NULL,
    is_latest        INTEGER NOT NULL,
    is_delete_marker INTEGER NOT NULL,
    object_type      TEXT NOT NULL,
    size             INTEGER NOT NULL,
    etag             TEXT NOT NULL,
    crc64            INTEGER,
    last_modified    INTEGER NOT NULL,
    metadata         TEXT NOT NULL,
    tags             TEXT NOT NULL,
    symlink_target   TEXT,
    data             TEXT
);
CREATE UNIQUE INDEX versions_by_id ON versions (bucket, key, version_id);
CREATE INDEX versions_by_latest ON versions (bucket, is_latest, key);
CREATE TABLE uploads (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id  TEXT NOT NULL UNIQUE,
    bucket     TEXT NOT NULL,
    key        BLOB NOT NULL,
    initiated  INTEGER NOT NULL,
    metadata   TEXT NOT NULL,
    tags       TEXT
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated, seq);
CREATE TABLE parts (
    upload_id     TEXT NOT NULL,
    part_number   INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    crc64         INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    file          TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
";

/// Version 2: restores of archived objects (RestoreObject), by version: readable from `ready` until `expires`
/// (seconds since the epoch).
const RESTORES: &str = "
CREATE TABLE restores (
    bucket     TEXT NOT NULL,
    key        BLOB NOT NULL,
    version_id TEXT NOT NULL,
    ready      INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, version_id)
) WITHOUT ROWID;
";

/// Opens (creating if needed) the index at `path` and brings its schema to [`SCHEMA_VERSION`].
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 | 1 => {
            let tx = conn.transaction()?;
            if version == 0 {
                tx.execute_batch(SCHEMA)?;
            }
            tx.execute_batch(RESTORES)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        SCHEMA_VERSION => {}
        v => {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the index {} has schema version {v}; this build understands up to {SCHEMA_VERSION}",
                    path.display()
                ),
            ))
        }
    }
    Ok(conn)
}

/// Checkpoints the write-ahead log into the database and truncates it to nothing, giving its space back: the
/// last resort of an operation that frees space on a full disk with no reserve left (see `space.rs`).
pub(crate) fn checkpoint_truncate(c: &Connection) -> Result<()> {
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// What a version row says about an object (everything but its identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub delete_marker: bool,
    pub object_type: ObjectType,
    pub size: u64,
    pub etag: String,
    pub crc64: Option<u64>,
    pub last_modified: i64,
    /// Metadata with the defaults applied (content type, storage class).
    pub metadata: Metadata,
    pub tags: TagSet,
    pub symlink_target: Option<String>,
    /// Data file name (`xx/<id>`), for objects that have bytes.
    pub data: Option<String>,
}

impl Facts {
    /// A delete marker written at `now`.
    pub(super) fn delete_marker(now: i64) -> Self {
        Facts {
            delete_marker: true,
            object_type: ObjectType::Normal,
            size: 0,
            etag: String::new(),
            crc64: None,
            last_modified: now,
            metadata: Metadata::default(),
            tags: TagSet::new(),
            symlink_target: None,
            data: None,
        }
    }
}

/// One row of `versions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRow {
    pub seq: i64,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub facts: Facts,
}

/// One row of `uploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadRow {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub metadata: Metadata,
    pub tags: Option<TagSet>,
}

/// One row of `parts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartRow {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub crc64: u64,
    pub last_modified: i64,
    pub file: String,
}

/// Fills in what OSS fills in when a writer leaves it out: `application/octet-stream` and `Standard`.
pub(crate) fn with_defaults(m: &Metadata) -> Metadata {
    let mut m = m.clone();
    m.content_type.get_or_insert_with(|| "application/octet-stream".to_owned());
    m.storage_class.get_or_insert(StorageClass::Standard);
    m
}

/// Encodes metadata as a percent-encoded query string: standard header names, `storage-class`, `meta-<name>`.
fn encode_meta(m: &Metadata) -> String {
    let mut pairs: Vec<(String, &str)> = m.standard().map(|(n, v)| (n.to_owned(), v)).collect();
    if let Some(sc) = m.storage_class {
        pairs.push(("storage-class".to_owned(), sc.as_str()));
    }
    pairs.extend(m.user.iter().map(|(k, v)| (format!("meta-{k}"), v.as_str())));
    pairs.iter().map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v))).collect::<Vec<_>>().join("&")
}

fn decode_meta(s: &str) -> Result<Metadata> {
    let mut m = Metadata::default();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (pct_decode(k)?, pct_decode(v)?);
        if k == "storage-class" {
            m.storage_class = Some(StorageClass::parse(&v)?);
        } else if let Some(name) = k.strip_prefix("meta-") {
            m.user.insert(name.to_owned(), v);
        } else if !m.set_standard(&k, v) {
            return Err(Error::new(ErrorKind::Io, format!("the index holds an unknown metadata field {k:?}")));
        }
    }
    Ok(m)
}

fn key_from(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::Io, "the index holds a key that is not UTF-8"))
}

fn conv<T>(r: Result<T>) -> rusqlite::Result<T> {
    r.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

const VERSION_COLS: &str =
    "seq, bucket, key, version_id, is_latest, is_delete_marker, object_type, size, etag, crc64, \
                            last_modified, metadata, tags, symlink_target, data";

fn version_row(r: &Row<'_>) -> rusqlite::Result<VersionRow> {
    let otype: String = r.get(6)?;
    let tags: String = r.get(12)?;
    Ok(VersionRow {
        seq: r.get(0)?,
        bucket: r.get(1)?,
        key: conv(key_from(r.get(2)?))?,
        version_id: r.get(3)?,
        is_latest: r.get(4)?,
        facts: Facts {
            delete_marker: r.get(5)?,
            object_type: conv(ObjectType::parse(&otype).ok_or_else(|| Error::new(ErrorKind::Io, "bad object type")))?,
            size: r.get::<_, i64>(7)? as u64,
            etag: r.get(8)?,
            crc64: r.get::<_, Option<i64>>(9)?.map(|c| c as u64),
            last_modified: r.get(10)?,
            metadata: conv(decode_meta(&r.get::<_, String>(11)?))?,
            tags: conv(TagSet::parse_header(&tags))?,
            symlink_target: r.get(13)?,
            data: r.get(14)?,
        },
    })
}

// ---- buckets ----

fn parse_versioning(s: &str) -> Versioning {
    match s {
        "Enabled" => Versioning::Enabled,
        "Suspended" => Versioning::Suspended,
        _ => Versioning::Off,
    }
}

fn versioning_str(v: Versioning) -> &'static str {
    match v {
        Versioning::Off => "Off",
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

/// The versioning state of `bucket`, or `NoSuchBucket`.
pub(crate) fn bucket_versioning(c: &Connection, bucket: &str) -> Result<Versioning> {
    let v: Option<String> =
        c.query_row("SELECT versioning FROM buckets WHERE name = ?1", [bucket], |r| r.get(0)).optional()?;
    v.map(|s| parse_versioning(&s)).ok_or_else(|| errors::no_such_bucket(bucket))
}

/// Creates `bucket` unless it exists.
pub(crate) fn create_bucket(c: &Connection, bucket: &str, now: i64) -> Result<()> {
    c.execute("INSERT OR IGNORE INTO buckets (name, created) VALUES (?1, ?2)", params![bucket, now])?;
    Ok(())
}

/// Deletes an empty bucket: `NoSuchBucket` or `BucketNotEmpty` otherwise.
pub(crate) fn delete_bucket(c: &Connection, bucket: &str) -> Result<()> {
    bucket_versioning(c, bucket)?;
    let used: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM versions WHERE bucket = ?1) OR EXISTS (SELECT 1 FROM uploads WHERE bucket = ?1)",
        [bucket],
        |r| r.get(0),
    )?;
    if used {
        return Err(errors::bucket_not_empty(bucket));
    }
    c.execute("DELETE FROM buckets WHERE name = ?1", [bucket])?;
    Ok(())
}

/// Sets the versioning state of an existing bucket.
pub(crate) fn set_versioning(c: &Connection, bucket: &str, v: Versioning) -> Result<()> {
    bucket_versioning(c, bucket)?;
    c.execute("UPDATE buckets SET versioning = ?2 WHERE name = ?1", params![bucket, versioning_str(v)])?;
    Ok(())
}

/// Every bucket with its creation time, by name.
pub(crate) fn list_buckets(c: &Connection) -> Result<Vec<(String, i64)>> {
    let mut st = c.prepare("SELECT name, created FROM buckets ORDER BY name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- versions ----

/// The current version row of `bucket/key` (possibly a delete marker).
pub(crate) fn latest(c: &Connection, bucket: &str, key: &str) -> Result<Option<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND is_latest = 1");
    Ok(c.query_row(&sql, params![bucket, key.as_bytes()], version_row).optional()?)
}

/// The row of `bucket/key` at `version_id`.
pub(crate) fn version(c: &Connection, bucket: &str, key: &str, version_id: &str) -> Result<Option<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3");
    Ok(c.query_row(&sql, params![bucket, key.as_bytes(), version_id], version_row).optional()?)
}

/// The version `obj` names, with OSS's errors: `NoSuchBucket`; `NoSuchKey` when there is no current version or
/// it is a delete marker; `NoSuchVersion` for an unknown version id; 405 `MethodNotAllowed` for the version id
/// of a delete marker. Also returns the bucket's versioning state.
pub(crate) fn resolve(c: &Connection, obj: &ObjectRef) -> Result<(VersionRow, Versioning)> {
    let versioning = bucket_versioning(c, &obj.bucket)?;
    let row = match &obj.version_id {
        None => match latest(c, &obj.bucket, &obj.key)? {
            Some(r) if !r.facts.delete_marker => r,
            _ => return Err(errors::no_such_key(&obj.key)),
        },
        Some(v) => match version(c, &obj.bucket, &obj.key, v)? {
            Some(r) if r.facts.delete_marker => return Err(errors::delete_marker_version(&obj.key, v)),
            Some(r) => r,
            None => return Err(errors::no_such_version(&obj.key, v)),
        },
    };
    Ok((row, versioning))
}

/// The version id a row reports: none while versioning was never enabled on its bucket.
pub(crate) fn reported_version(versioning: Versioning, version_id: &str) -> Option<String> {
    (versioning != Versioning::Off).then(|| version_id.to_owned())
}

/// `x-oss-forbid-overwrite`: `FileAlreadyExists` (with OSS error number `ec`) when `bucket/key` has a current,
/// non-delete-marker version. Versioned (enabled or suspended) buckets ignore the header, as OSS does.
pub(crate) fn ensure_absent(c: &Connection, bucket: &str, key: &str, versioning: Versioning, ec: &str) -> Result<()> {
    if versioning != Versioning::Off {
        return Ok(());
    }
    match latest(c, bucket, key)? {
        Some(r) if !r.facts.delete_marker => Err(errors::file_already_exists(key, ec)),
        _ => Ok(()),
    }
}

/// What [`insert_version`] did.
#[derive(Debug)]
pub(crate) struct Inserted {
    /// The new row's version id (`null` unless versioning is enabled).
    pub version_id: String,
    /// Data files of rows the insert replaced (the previous `null` version), to remove after the commit.
    pub replaced_data: Vec<String>,
}

/// Writes a new current version of `bucket/key`. With versioning enabled it gets a fresh id and the previous
/// versions stay; otherwise it is the `null` version and replaces the previous `null` version, if any.
pub(crate) fn insert_version(
    c: &Connection,
    bucket: &str,
    key: &str,
    versioning: Versioning,
    facts: &Facts,
) -> Result<Inserted> {
    let version_id = if versioning == Versioning::Enabled { ids::version_id() } else { NULL_VERSION.to_owned() };
    let mut replaced_data = Vec::new();
    if let Some(old) = version(c, bucket, key, &version_id)? {
        c.execute("DELETE FROM versions WHERE seq = ?1", [old.seq])?;
        replaced_data.extend(old.facts.data);
    }
    c.execute(
        "UPDATE versions SET is_latest = 0 WHERE bucket = ?1 AND key = ?2 AND is_latest = 1",
        params![bucket, key.as_bytes()],
    )?;
    c.execute(
        "INSERT INTO versions (bucket, key, version_id, is_latest, is_delete_marker, object_type, size, etag, crc64, \
         last_modified, metadata, tags, symlink_target, data) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            bucket,
            key.as_bytes(),
            version_id,
            facts.delete_marker,
            facts.object_type.as_str(),
            facts.size as i64,
            facts.etag,
            facts.crc64.map(|c| c as i64),
            facts.last_modified,
            encode_meta(&facts.metadata),
            facts.tags.to_header(),
            facts.symlink_target,
            facts.data,
        ],
    )?;
    Ok(Inserted { version_id, replaced_data })
}

/// Removes one version for good. When it was the current one, the newest remaining version becomes current.
/// Returns the removed row, or `None` if there was no such version.
pub(crate) fn remove_version(c: &Connection, bucket: &str, key: &str, version_id: &str) -> Result<Option<VersionRow>> {
    let Some(row) = version(c, bucket, key, version_id)? else { return Ok(None) };
    c.execute("DELETE FROM versions WHERE seq = ?1", [row.seq])?;
    if row.is_latest {
        c.execute(
            "UPDATE versions SET is_latest = 1 WHERE seq = \
             (SELECT MAX(seq) FROM versions WHERE bucket = ?1 AND key = ?2)",
            params![bucket, key.as_bytes()],
        )?;
    }
    Ok(Some(row))
}

/// Replaces the tags of one version row.
pub(crate) fn set_tags(c: &Connection, seq: i64, tags: &TagSet) -> Result<()> {
    c.execute("UPDATE versions SET tags = ?2 WHERE seq = ?1", params![seq, tags.to_header()])?;
    Ok(())
}

/// Records an append: the new size, ETag, CRC-64 and Last-Modified of an appendable version.
pub(crate) fn set_appended(c: &Connection, seq: i64, size: u64, etag: &str, crc: u64, now: i64) -> Result<()> {
    c.execute(
        "UPDATE versions SET size = ?2, etag = ?3, crc64 = ?4, last_modified = ?5 WHERE seq = ?1",
        params![seq, size as i64, etag, crc as i64, now],
    )?;
    Ok(())
}

/// Up to `limit` versions (delete markers included) of `bucket` with keys at or above `from` (bytes), by key and
/// each key's newest first, after `after`: a key (all its versions), or a key and a version's row.
pub(crate) fn list_versions(
    c: &Connection,
    bucket: &str,
    from: &[u8],
    after: Option<(&[u8], Option<i64>)>,
    limit: usize,
) -> Result<Vec<VersionRow>> {
    let (sql, key, seq) = match after {
        None => ("key >= ?2", from, i64::MAX),
        Some((key, None)) => ("key >= ?2 AND key > ?3", key, i64::MAX),
        Some((key, Some(seq))) => ("key >= ?2 AND (key > ?3 OR (key = ?3 AND seq < ?4))", key, seq),
    };
    let sql =
        format!("SELECT {VERSION_COLS} FROM versions WHERE bucket = ?1 AND {sql} ORDER BY key, seq DESC LIMIT ?5");
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![bucket, from, key, seq, limit as i64], version_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The row number of `bucket/key`'s version `version_id`, if there is one.
pub(crate) fn version_seq(c: &Connection, bucket: &str, key: &str, version_id: &str) -> Result<Option<i64>> {
    let mut st = c.prepare_cached("SELECT seq FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3")?;
    Ok(st.query_row(params![bucket, key.as_bytes(), version_id], |r| r.get(0)).optional()?)
}

/// Up to `limit` current, non-delete-marker versions of `bucket` with keys at or above `from` (bytes), by key.
pub(crate) fn list_current(c: &Connection, bucket: &str, from: &[u8], limit: usize) -> Result<Vec<VersionRow>> {
    let sql = format!(
        "SELECT {VERSION_COLS} FROM versions WHERE bucket = ?1 AND is_latest = 1 AND is_delete_marker = 0 \
         AND key >= ?2 ORDER BY key LIMIT ?3"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![bucket, from, limit as i64], version_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- multipart ----

/// Records a new upload.
pub(crate) fn insert_upload(c: &Connection, u: &UploadRow) -> Result<()> {
    c.execute(
        "INSERT INTO uploads (upload_id, bucket, key, initiated, metadata, tags) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            u.upload_id,
            u.bucket,
            u.key.as_bytes(),
            u.initiated,
            encode_meta(&u.metadata),
            u.tags.as_ref().map(TagSet::to_header)
        ],
    )?;
    Ok(())
}

/// The upload `upload_id` of `bucket/key`, or `NoSuchUpload` (also when the id belongs to another key).
pub(crate) fn upload(c: &Connection, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRow> {
    bucket_versioning(c, bucket)?;
    let row = c
        .query_row(
            "SELECT upload_id, bucket, key, initiated, metadata, tags FROM uploads \
             WHERE upload_id = ?1 AND bucket = ?2 AND key = ?3",
            params![upload_id, bucket, key.as_bytes()],
            |r| {
                let tags: Option<String> = r.get(5)?;
                Ok(UploadRow {
                    upload_id: r.get(0)?,
                    bucket: r.get(1)?,
                    key: conv(key_from(r.get(2)?))?,
                    initiated: r.get(3)?,
                    metadata: conv(decode_meta(&r.get::<_, String>(4)?))?,
                    tags: tags.map(|t| conv(TagSet::parse_header(&t))).transpose()?,
                })
            },
        )
        .optional()?;
    row.ok_or_else(|| errors::no_such_upload(upload_id))
}

/// Deletes an upload and its part rows; returns the part file names to remove after the commit.
pub(crate) fn delete_upload(c: &Connection, upload_id: &str) -> Result<Vec<String>> {
    let files = parts(c, upload_id, 0, u32::MAX)?.into_iter().map(|p| p.file).collect();
    c.execute("DELETE FROM parts WHERE upload_id = ?1", [upload_id])?;
    c.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])?;
    Ok(files)
}

/// Records a part, replacing a part with the same number; returns the replaced part's file.
pub(crate) fn put_part(c: &Connection, upload_id: &str, p: &PartRow) -> Result<Option<String>> {
    let old: Option<String> = c
        .query_row(
            "SELECT file FROM parts WHERE upload_id = ?1 AND part_number = ?2",
            params![upload_id, p.part_number],
            |r| r.get(0),
        )
        .optional()?;
    c.execute(
        "INSERT OR REPLACE INTO parts (upload_id, part_number, etag, size, crc64, last_modified, file) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![upload_id, p.part_number, p.etag, p.size as i64, p.crc64 as i64, p.last_modified, p.file],
    )?;
    Ok(old)
}

/// Up to `limit` parts of an upload with numbers above `after`, ascending.
pub(crate) fn parts(c: &Connection, upload_id: &str, after: u32, limit: u32) -> Result<Vec<PartRow>> {
    let mut st = c.prepare_cached(
        "SELECT part_number, etag, size, crc64, last_modified, file FROM parts \
         WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
    )?;
    let rows = st.query_map(params![upload_id, after, limit], |r| {
        Ok(PartRow {
            part_number: r.get(0)?,
            etag: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            crc64: r.get::<_, i64>(3)? as u64,
            last_modified: r.get(4)?,
            file: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` uploads of `bucket` whose key starts with `prefix`, by key then initiation, after the markers.
pub(crate) fn list_uploads(
    c: &Connection,
    bucket: &str,
    prefix: &str,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    limit: u32,
) -> Result<Vec<UploadInfo>> {
    // The position after which to list, as (key, initiated, seq); an unknown upload id marker means "after the key".
    let mut after: Option<(Vec<u8>, i64, i64)> = None;
    if let Some(km) = key_marker {
        after = Some((km.as_bytes().to_vec(), i64::MAX, i64::MAX));
        if let Some(um) = upload_id_marker {
            let pos: Option<(i64, i64)> = c
                .query_row(
                    "SELECT initiated, seq FROM uploads WHERE bucket = ?1 AND key = ?2 AND upload_id = ?3",
                    params![bucket, km.as_bytes(), um],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((i, s)) = pos {
                after = Some((km.as_bytes().to_vec(), i, s));
            }
        }
    }
    let (ak, ai, aseq) = after.unwrap_or((Vec::new(), i64::MIN, i64::MIN));
    let mut st = c.prepare_cached(
        "SELECT key, upload_id, initiated FROM uploads WHERE bucket = ?1 \
         AND substr(key, 1, length(?2)) = ?2 \
         AND (key > ?3 OR (key = ?3 AND (initiated > ?4 OR (initiated = ?4 AND seq > ?5)))) \
         ORDER BY key, initiated, seq LIMIT ?6",
    )?;
    let rows = st.query_map(params![bucket, prefix.as_bytes(), ak, ai, aseq, limit], |r| {
        Ok(UploadInfo {
            key: conv(key_from(r.get(0)?))?,
            upload_id: UploadId::new(r.get::<_, String>(1)?),
            initiated: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- sweeping ----

/// Every file the index names.
#[derive(Debug, Default)]
pub(crate) struct References {
    /// Data files (`xx/<id>`).
    pub data: HashSet<String>,
    /// Upload ids (staging directories).
    pub uploads: HashSet<String>,
    /// Staged parts as (upload id, file name).
    pub parts: HashSet<(String, String)>,
}

/// Every data file, upload id and (upload id, part file) the index names.
pub(crate) fn references(c: &Connection) -> Result<References> {
    let mut st = c.prepare("SELECT data FROM versions WHERE data IS NOT NULL")?;
    let data = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<HashSet<String>>>()?;
    let mut st = c.prepare("SELECT upload_id FROM uploads")?;
    let uploads = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<HashSet<String>>>()?;
    let mut st = c.prepare("SELECT upload_id, file FROM parts")?;
    let parts = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<HashSet<_>>>()?;
    Ok(References { data, uploads, parts })
}

/// The restore of `bucket/key` at `version_id`, as of `now`: `(ready, expires)`, `None` when there is none or it
/// expired.
pub(crate) fn restore_of(
    c: &Connection,
    bucket: &str,
    key: &str,
    version_id: &str,
    now: i64,
) -> Result<Option<(i64, i64)>> {
    Ok(c.query_row(
        "SELECT ready, expires FROM restores WHERE bucket = ?1 AND key = ?2 AND version_id = ?3 AND expires > ?4",
        rusqlite::params![bucket, key.as_bytes(), version_id, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Records a restore of `bucket/key` at `version_id`: readable from `ready` until `expires`.
pub(crate) fn set_restore(
    c: &Connection,
    bucket: &str,
    key: &str,
    version_id: &str,
    (ready, expires): (i64, i64),
) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO restores (bucket, key, version_id, ready, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![bucket, key.as_bytes(), version_id, ready, expires],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_its_encoding() {
        let mut m = Metadata::with_user([("a-b", "x=y&z %"), ("k", "")]).unwrap();
        m.content_type = Some("text/plain; charset=utf-8".into());
        m.expires = Some("Thu, 01 Dec 1994 16:00:00 GMT".into());
        m.storage_class = Some(StorageClass::InfrequentAccess);
        assert_eq!(decode_meta(&encode_meta(&m)).unwrap(), m);
        assert_eq!(decode_meta("").unwrap(), Metadata::default());
    }

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("index.db");
        drop(open(&p).unwrap());
        drop(open(&p).unwrap());
        Connection::open(&p).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(open(&p).unwrap_err().to_string().contains("schema version 99"));
    }
}
