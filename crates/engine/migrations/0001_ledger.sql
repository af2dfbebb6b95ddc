-- 0001: the checkpoint ledger.
--
-- Conventions: u64 values (sizes, inodes, CRC-64) are stored as the INTEGER with the same 64 bits;
-- times are Unix seconds; enumerations are lower-case TEXT checked by the table. The ledger holds no
-- secrets: no column may carry credentials (options_json is written by the caller, who must leave them out).

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    options_json TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'stopped', 'done', 'failed')),
    created      INTEGER NOT NULL,
    updated      INTEGER NOT NULL
);
CREATE INDEX jobs_by_route ON jobs (source, destination, id);

CREATE TABLE objects (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job            INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    source         TEXT    NOT NULL,
    dest_bucket    TEXT    NOT NULL,
    dest_key       TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    -- fingerprint of the source when the plan was made: 'file' (fp_size, fp_mtime_ns, fp_inode)
    -- or 'object' (fp_size, fp_etag, fp_version_id)
    fp_kind        TEXT    NOT NULL CHECK (fp_kind IN ('file', 'object')),
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
CREATE INDEX objects_by_state ON objects (job, state, id);

-- Acknowledged parts of the object's current upload. Removed when the object completes or is reset.
CREATE TABLE parts (
    object  INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    number  INTEGER NOT NULL,
    offset  INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    etag    TEXT    NOT NULL,
    crc64   INTEGER,
    blake3  TEXT    NOT NULL,
    PRIMARY KEY (object, number)
) WITHOUT ROWID;
