-- 008_catalog_log: the transactions that changed what a rewritten DELETE
-- depends on — DDL the event triggers saw, the protection rules — leave
-- their transaction id here (tombstone._catalog_logged), so that
-- check_catalog can tell with one index probe that nothing has changed
-- since the snapshot the proxy loaded its catalog in, instead of
-- fingerprinting the table's cascade closure on every DELETE.
-- A horizon row stands for the rows pruned (tombstone.prune_catalog_log):
-- every one of them committed before the transaction it names began.
CREATE TABLE IF NOT EXISTS tombstone.catalog_log (
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    horizon   boolean NOT NULL DEFAULT false,
    logged_at timestamptz NOT NULL DEFAULT statement_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS catalog_log_xid_idx ON tombstone.catalog_log (xid);
