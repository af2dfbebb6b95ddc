-- Why a job failed beyond its objects: the sources it could not list (a directory it could not read, a
-- listing the store refused). NULL when nothing failed but objects, whose errors are on their rows.
ALTER TABLE jobs ADD COLUMN error TEXT;
