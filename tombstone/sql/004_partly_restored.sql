-- 004_partly_restored: when a restore brought back some of a batch's rows
-- and left others (a selective UNDELETE FROM, rows skipped or in
-- conflict), SHOW BATCHES says so ("partly restored") instead of
-- "active".
ALTER TABLE tombstone.batches ADD COLUMN IF NOT EXISTS partly_restored_at timestamptz;

-- Per shadow table, the latest deletion time among the rows (not SET NULL
-- links) purged from it: tombstones that could show a live row with a
-- key to be a newer row than one deleted before are gone up to there, so
-- a restore no longer trusts a key match older than that.
ALTER TABLE tombstone.shadows ADD COLUMN IF NOT EXISTS purged_through timestamptz;
