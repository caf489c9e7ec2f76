-- 004_partly_restored: when a restore brought back some of a batch's rows
-- and left others (a selective UNDELETE FROM, rows skipped or in
-- conflict), SHOW BATCHES says so ("partly restored") instead of
-- "active".
ALTER TABLE tombstone.batches ADD COLUMN IF NOT EXISTS partly_restored_at timestamptz;
