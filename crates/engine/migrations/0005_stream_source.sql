-- 0005: an object may come from a stream (stdin, a pipe from `tar | zstd`): fp_kind 'stream', which carries
-- nothing to compare (a stream cannot be read twice, so its object never resumes; its row keeps the upload id
-- for `transfer cleanup`).
--
-- SQLite cannot change a CHECK in place: the table is rebuilt with its rows, ids, indexes and AUTOINCREMENT
-- counter, and the parts that dropping it cascades away are put back.

CREATE TEMP TABLE parts_0005 AS SELECT * FROM parts;
CREATE TEMP TABLE sequence_0005 AS SELECT seq FROM sqlite_sequence WHERE name = 'objects';

CREATE TABLE objects_0005 (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job            INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    source         TEXT    NOT NULL,
    dest_bucket    TEXT    NOT NULL,
    dest_key       TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    -- fingerprint of the source when the plan was made: 'file' (fp_size, fp_mtime_ns, fp_inode),
    -- 'object' (fp_size, fp_etag, fp_version_id) or 'stream' (nothing)
    fp_kind        TEXT    NOT NULL CHECK (fp_kind IN ('file', 'object', 'stream')),
    fp_size        INTEGER NOT NULL,
    fp_mtime_ns    TEXT,            -- decimal i128, lossless
    fp_inode       INTEGER,
    fp_etag        TEXT,
    fp_version_id  TEXT,
    plan_part_size INTEGER NOT NULL,
    upload_id      TEXT,
    state          TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'uploading', 'completed', 'tagged', 'failed', 'skipped')),
    tags           TEXT,            -- header form (k=v&k2=v2), what must be applied; NULL: nothing to apply
    tags_applied   INTEGER NOT NULL DEFAULT 0,
    etag           TEXT,
    crc64          INTEGER,
    blake3         TEXT,
    error          TEXT,
    updated        INTEGER NOT NULL,
    UNIQUE (job, source)
);
INSERT INTO objects_0005 (id, job, source, dest_bucket, dest_key, size, fp_kind, fp_size, fp_mtime_ns, fp_inode,
                          fp_etag, fp_version_id, plan_part_size, upload_id, state, tags, tags_applied, etag,
                          crc64, blake3, error, updated)
    SELECT id, job, source, dest_bucket, dest_key, size, fp_kind, fp_size, fp_mtime_ns, fp_inode, fp_etag,
           fp_version_id, plan_part_size, upload_id, state, tags, tags_applied, etag, crc64, blake3, error, updated
    FROM objects;
DROP TABLE objects;
ALTER TABLE objects_0005 RENAME TO objects;
CREATE INDEX objects_by_state ON objects (job, state, id);
CREATE INDEX objects_by_dest ON objects (dest_bucket, dest_key);
CREATE INDEX objects_by_source ON objects (source);
UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sequence_0005)) WHERE name = 'objects'
    AND EXISTS (SELECT 1 FROM sequence_0005);

INSERT INTO parts SELECT * FROM parts_0005;
DROP TABLE parts_0005;
DROP TABLE sequence_0005;
