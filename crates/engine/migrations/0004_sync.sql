-- 0004: what `sync` needs to compare without requests, and to resume a pass where it stopped.

-- Local files whose state the engine knows: a download's file as it was published, a file sync read for its
-- CRC-64. While a file's (size, mtime_ns, inode) are these, it holds the same bytes as then.
CREATE TABLE files (
    path     TEXT    PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns TEXT    NOT NULL,  -- decimal i128, lossless
    inode    INTEGER NOT NULL,
    crc64    INTEGER,           -- NULL: not computed
    updated  INTEGER NOT NULL
) WITHOUT ROWID;

-- What wrote a destination last (by bucket and key; a download's file: bucket '' and its path), and what
-- was read from a source object.
CREATE INDEX objects_by_dest ON objects (dest_bucket, dest_key);
CREATE INDEX objects_by_source ON objects (source);

-- A sync pass: the last key (relative to both sides) below which everything was compared and settled without
-- failure, and how many source entries lie below it. A resumed pass lists both sides after `cursor`.
CREATE TABLE sync_progress (
    job     INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    cursor  TEXT,
    sources INTEGER NOT NULL DEFAULT 0
);

-- Destination entries the source does not have (keys relative to the destination's prefix or directory):
-- deleted only once the pass compared everything, copied everything and listed both sides without error.
CREATE TABLE sync_deletes (
    job INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key TEXT    NOT NULL,
    PRIMARY KEY (job, key)
) WITHOUT ROWID;
