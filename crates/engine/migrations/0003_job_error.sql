-- How a job's last run ended beyond its objects' rows.
-- error: what failed beyond its objects (a directory it could not read, a listing the store refused); NULL
-- when nothing failed but objects, whose errors are on their rows.
-- listed: whether that run found every object of its source (0: stopped or failed while listing, so the
-- job's counts are of the objects found so far).
ALTER TABLE jobs ADD COLUMN error TEXT;
ALTER TABLE jobs ADD COLUMN listed INTEGER NOT NULL DEFAULT 1;
