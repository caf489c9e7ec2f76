-- 003_batch_token: every batch gets a secret token, written by the
-- capturing statement into the batch row and into each of its tombstones.
-- Application roles may INSERT into shadow tables but never read batches,
-- so they cannot plant rows that pass for another batch's tombstones.
-- Tombstones written before this migration have no token (NULL).
ALTER TABLE tombstone.batches ADD COLUMN IF NOT EXISTS token uuid;
