//! Objects of a job and their parts.

use super::{
    from_sql_u64, no_job, now, to_sql_u64, Cached, Counts, Fingerprint, JobId, Ledger, ObjectRow, ObjectState, PartRow,
};
use crate::error::{Error, Result};
use crate::store::Checksum;
use crate::tags::TagSet;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) const COLUMNS: &str =
    "id, job, source, dest_bucket, dest_key, size, fp_kind, fp_size, fp_mtime_ns, fp_inode, fp_etag, \
                       fp_version_id, plan_part_size, upload_id, state, tags, tags_applied, etag, crc64, blake3, error";

pub(super) fn object_from_row(r: &Row<'_>) -> rusqlite::Result<ObjectRow> {
    let fp_kind: String = r.get(6)?;
    let fp_size = from_sql_u64(r.get(7)?);
    let fingerprint = match fp_kind.as_str() {
        "file" => {
            let mtime: String = r.get(8)?;
            let mtime_ns = mtime
                .parse::<i128>()
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e)))?;
            Fingerprint::File { size: fp_size, mtime_ns, inode: from_sql_u64(r.get(9)?) }
        }
        "stream" => Fingerprint::Stream,
        _ => Fingerprint::Object { etag: r.get(10)?, version_id: r.get(11)?, size: fp_size },
    };
    Ok(ObjectRow {
        id: r.get(0)?,
        job: JobId(r.get(1)?),
        source: r.get(2)?,
        dest_bucket: r.get(3)?,
        dest_key: r.get(4)?,
        size: from_sql_u64(r.get(5)?),
        fingerprint,
        plan_part_size: from_sql_u64(r.get(12)?),
        upload_id: r.get::<_, Option<String>>(13)?.map(crate::store::UploadId::new),
        state: ObjectState::parse(&r.get::<_, String>(14)?)?,
        tags: r.get(15)?,
        tags_applied: r.get(16)?,
        etag: r.get(17)?,
        crc64: r.get::<_, Option<i64>>(18)?.map(from_sql_u64),
        blake3: r.get(19)?,
        error: r.get(20)?,
    })
}

/// `(fp_kind, fp_size, fp_mtime_ns, fp_inode, fp_etag, fp_version_id)`.
type FpColumns<'a> = (&'static str, i64, Option<String>, Option<i64>, Option<&'a str>, Option<&'a str>);

fn fp_columns(fp: &Fingerprint) -> FpColumns<'_> {
    match fp {
        Fingerprint::File { size, mtime_ns, inode } => {
            ("file", to_sql_u64(*size), Some(mtime_ns.to_string()), Some(to_sql_u64(*inode)), None, None)
        }
        Fingerprint::Object { etag, version_id, size } => {
            ("object", to_sql_u64(*size), None, None, Some(etag.as_str()), version_id.as_deref())
        }
        Fingerprint::Stream => ("stream", 0, None, None, None, None),
    }
}

fn no_object(id: i64) -> Error {
    Error::invalid(format!("there is no object {id} in the checkpoint ledger"))
}

fn updated(n: usize, id: i64) -> Result<()> {
    if n == 0 {
        Err(no_object(id))
    } else {
        Ok(())
    }
}

fn get_object(conn: &Connection, id: i64) -> Result<ObjectRow> {
    conn.row(&format!("SELECT {COLUMNS} FROM objects WHERE id = ?1"), [id], object_from_row)
        .optional()?
        .ok_or_else(|| no_object(id))
}

impl Ledger {
    /// Adds an object to the job in state [`ObjectState::Pending`] — or, if the job already has an object
    /// with this `source`, returns that row unchanged (resume). The caller compares its fingerprint with the
    /// source now and calls [`reset_object`](Self::reset_object) if the source changed. `tags` are the tags the
    /// object must end up with (`None`: nothing to apply).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upsert_object(
        &self,
        job: JobId,
        source: &str,
        dest_bucket: &str,
        dest_key: &str,
        size: u64,
        fingerprint: &Fingerprint,
        plan_part_size: u64,
        tags: Option<&TagSet>,
    ) -> Result<ObjectRow> {
        let conn = self.conn();
        let (kind, fp_size, mtime, inode, etag, version) = fp_columns(fingerprint);
        // A new object answers its row from the INSERT itself; only a known one is read again.
        let inserted = conn
            .row(
                &format!(
                    "INSERT INTO objects (job, source, dest_bucket, dest_key, size, fp_kind, fp_size, fp_mtime_ns,
                         fp_inode, fp_etag, fp_version_id, plan_part_size, tags, updated)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14
                     WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)
                     ON CONFLICT (job, source) DO NOTHING
                     RETURNING {COLUMNS}"
                ),
                params![
                    job.0,
                    source,
                    dest_bucket,
                    dest_key,
                    to_sql_u64(size),
                    kind,
                    fp_size,
                    mtime,
                    inode,
                    etag,
                    version,
                    to_sql_u64(plan_part_size),
                    tags.map(TagSet::to_header),
                    now()
                ],
                object_from_row,
            )
            .optional()?;
        if let Some(row) = inserted {
            return Ok(row);
        }
        conn.row(
            &format!("SELECT {COLUMNS} FROM objects WHERE job = ?1 AND source = ?2"),
            params![job.0, source],
            object_from_row,
        )
        .optional()?
        .ok_or_else(|| no_job(job))
    }

    /// The job's object for `source`, if planned.
    pub fn object(&self, job: JobId, source: &str) -> Result<Option<ObjectRow>> {
        Ok(self
            .conn()
            .row(
                &format!("SELECT {COLUMNS} FROM objects WHERE job = ?1 AND source = ?2"),
                params![job.0, source],
                object_from_row,
            )
            .optional()?)
    }

    /// The object with this id.
    pub fn object_by_id(&self, object_id: i64) -> Result<ObjectRow> {
        get_object(&self.conn(), object_id)
    }

    /// One page of the job's objects in id order: those with `id > after_id` (start with 0), at most `limit`,
    /// only in `state` if given. Pass the last row's id as the next `after_id`; an empty page is the end.
    pub fn objects(
        &self,
        job: JobId,
        state: Option<ObjectState>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ObjectRow>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match state {
            Some(st) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM objects WHERE job = ?1 AND state = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
                ))?;
                let rows = stmt.query_map(params![job.0, st.as_str(), after_id, limit], object_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM objects WHERE job = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![job.0, after_id, limit], object_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    }

    /// Records the multipart upload id right after Initiate (state [`ObjectState::Uploading`]), or clears it
    /// with `None` (state [`ObjectState::Pending`]: the upload is gone, start over). Parts of a previous upload
    /// id are deleted: they cannot be completed into the new one.
    pub(crate) fn set_upload(&self, object_id: i64, upload_id: Option<&str>) -> Result<()> {
        self.inner.writer.flush_blocking()?;
        self.atomically(|tx| {
            let current: Option<Option<String>> =
                tx.row("SELECT upload_id FROM objects WHERE id = ?1", [object_id], |r| r.get(0)).optional()?;
            let current = current.ok_or_else(|| no_object(object_id))?;
            if current.as_deref() != upload_id {
                tx.exec("DELETE FROM parts WHERE object = ?1", [object_id])?;
            }
            let state = if upload_id.is_some() { ObjectState::Uploading } else { ObjectState::Pending };
            tx.exec(
                "UPDATE objects SET upload_id = ?2, state = ?3, error = NULL, updated = ?4 WHERE id = ?1",
                params![object_id, upload_id, state.as_str(), now()],
            )?;
            Ok(())
        })
    }

    /// The source changed since the plan: forgets its parts, upload id and results and makes it
    /// [`ObjectState::Pending`] with the new fingerprint, size and part size. Read the old upload id first if
    /// you mean to abort it.
    pub(crate) fn reset_object(
        &self,
        object_id: i64,
        fingerprint: &Fingerprint,
        size: u64,
        plan_part_size: u64,
    ) -> Result<()> {
        self.inner.writer.flush_blocking()?;
        let (kind, fp_size, mtime, inode, etag, version) = fp_columns(fingerprint);
        self.atomically(|tx| {
            tx.exec("DELETE FROM parts WHERE object = ?1", [object_id])?;
            let n = tx.exec(
                "UPDATE objects SET fp_kind = ?2, fp_size = ?3, fp_mtime_ns = ?4, fp_inode = ?5, fp_etag = ?6,
                 fp_version_id = ?7, size = ?8, plan_part_size = ?9, upload_id = NULL, state = 'pending',
                 tags_applied = 0, etag = NULL, crc64 = NULL, blake3 = NULL, error = NULL, updated = ?10
             WHERE id = ?1",
                params![
                    object_id,
                    kind,
                    fp_size,
                    mtime,
                    inode,
                    etag,
                    version,
                    to_sql_u64(size),
                    to_sql_u64(plan_part_size),
                    now()
                ],
            )?;
            updated(n, object_id)
        })
    }

    /// The committed parts of the object's current upload, by part number. Parts still queued for the writer
    /// appear after its next flush ([`Ledger::flush`]).
    pub fn parts(&self, object_id: i64) -> Result<Vec<PartRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT number, offset, size, etag, crc64, blake3, checksum FROM parts WHERE object = ?1 ORDER BY number",
        )?;
        let rows = stmt.query_map([object_id], |r| {
            Ok(PartRow {
                number: r.get(0)?,
                offset: from_sql_u64(r.get(1)?),
                size: from_sql_u64(r.get(2)?),
                etag: r.get(3)?,
                crc64: r.get::<_, Option<i64>>(4)?.map(from_sql_u64),
                blake3: r.get(5)?,
                checksum: match r.get::<_, Option<String>>(6)? {
                    None => None,
                    Some(s) => Some(s.parse::<Checksum>().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
                    })?),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The object's bytes are in place (Complete or a single Put succeeded): records its ETag, CRC-64 and
    /// BLAKE3 and deletes its parts (they are of no more use and a large job must stay small). State
    /// [`ObjectState::Completed`] if tags remain to be applied, else straight to [`ObjectState::Tagged`] (done).
    #[cfg(test)]
    pub(crate) fn finish_object(
        &self,
        object_id: i64,
        etag: &str,
        crc64: Option<u64>,
        blake3: Option<&str>,
    ) -> Result<()> {
        self.finish_object_tagged(object_id, etag, crc64, blake3, false)
    }

    /// [`finish_object`](Self::finish_object), and with `tags_in_place` the tags are recorded as applied in the same
    /// transaction (they went out with the object's creation): the object is done in one step.
    pub(crate) fn finish_object_tagged(
        &self,
        object_id: i64,
        etag: &str,
        crc64: Option<u64>,
        blake3: Option<&str>,
        tags_in_place: bool,
    ) -> Result<()> {
        self.inner.writer.flush_blocking()?;
        self.atomically(|tx| {
            tx.exec("DELETE FROM parts WHERE object = ?1", [object_id])?;
            let n = tx.exec(
                "UPDATE objects SET etag = ?2, crc64 = ?3, blake3 = ?4, error = NULL, updated = ?5,
                 tags_applied = tags_applied OR ?6,
                 state = CASE WHEN tags IS NULL OR tags_applied OR ?6 THEN 'tagged' ELSE 'completed' END
             WHERE id = ?1",
                params![object_id, etag, crc64.map(to_sql_u64), blake3, now(), tags_in_place],
            )?;
            updated(n, object_id)
        })
    }

    /// Replaces the tags the object must end up with (`None`: none) and marks them not yet applied — for a
    /// source whose tags are only known after [`upsert_object`](Self::upsert_object), such as a copy that
    /// restarted because its source changed.
    pub(crate) fn set_tags(&self, object_id: i64, tags: Option<&TagSet>) -> Result<()> {
        let n = self.conn().exec(
            "UPDATE objects SET tags = ?2, tags_applied = 0, updated = ?3 WHERE id = ?1",
            params![object_id, tags.map(TagSet::to_header), now()],
        )?;
        updated(n, object_id)
    }

    /// The object's tags are applied: state [`ObjectState::Tagged`], done.
    pub(crate) fn mark_tags_applied(&self, object_id: i64) -> Result<()> {
        let n = self.conn().exec(
            "UPDATE objects SET tags_applied = 1, state = 'tagged', error = NULL, updated = ?2 WHERE id = ?1",
            params![object_id, now()],
        )?;
        updated(n, object_id)
    }

    /// The object failed: state [`ObjectState::Failed`] with `error`. Its upload id and parts are kept so a
    /// later run can continue it. An object that already exists at the destination ([`ObjectState::Completed`],
    /// e.g. its tags could not be applied) keeps that state and only records the error, so a later run repairs
    /// what is missing instead of sending the object again.
    pub(crate) fn fail_object(&self, object_id: i64, error: &str) -> Result<()> {
        let n = self.conn().exec(
            "UPDATE objects SET state = CASE WHEN state = 'completed' THEN state ELSE 'failed' END, error = ?2, updated = ?3
             WHERE id = ?1",
            params![object_id, error, now()],
        )?;
        updated(n, object_id)
    }

    /// The object is deliberately not transferred (for example, already identical at the destination):
    /// state [`ObjectState::Skipped`], done.
    pub(crate) fn skip_object(&self, object_id: i64) -> Result<()> {
        let n = self
            .conn()
            .exec("UPDATE objects SET state = 'skipped', updated = ?2 WHERE id = ?1", params![object_id, now()])?;
        updated(n, object_id)
    }

    /// How many of the job's objects are in each state.
    pub fn counts(&self, job: JobId) -> Result<Counts> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT state, count(*), coalesce(sum(size), 0) FROM objects WHERE job = ?1 GROUP BY state",
        )?;
        let mut rows = stmt.query([job.0])?;
        let mut counts = Counts::default();
        while let Some(r) = rows.next()? {
            let state = ObjectState::parse(&r.get::<_, String>(0)?)?;
            let bytes = from_sql_u64(r.get(2)?);
            counts.add(state, r.get::<_, i64>(1)? as u64, bytes);
        }
        // Parts are deleted when their object completes: those left belong to objects not yet in place.
        counts.bytes_in_parts = from_sql_u64(conn.row(
            "SELECT coalesce(sum(p.size), 0) FROM parts p JOIN objects o ON p.object = o.id WHERE o.job = ?1",
            [job.0],
            |r| r.get(0),
        )?);
        Ok(counts)
    }
}
