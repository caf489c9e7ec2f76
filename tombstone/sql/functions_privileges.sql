-- functions_privileges.sql: the store's table privileges. Install
-- re-applies the functions_*.sql files (in its migration transaction)
-- whenever their text changes, so each statement here must be
-- re-runnable: CREATE OR REPLACE, GRANT, REVOKE. Each function's grants
-- are in its own file.
--
-- Privilege model (see doc.go):
--   * PUBLIC (every application role) may write tombstones — INSERT on
--     batches and every shadow table, USAGE on the batch sequence,
--     EXECUTE on check_catalog — and read nothing but the settings.
--   * tombstone_admin may read, restore and purge. The admin functions
--     are SECURITY INVOKER: they check membership first (SQLSTATE 42501
--     with a GRANT hint), then run with the caller's own privileges, so a
--     restore also needs INSERT/UPDATE on the restored tables.
--   * sync_shadow/sync_all are SECURITY DEFINER (owned by the installer),
--     because the event trigger runs them on behalf of whoever altered a
--     protected table, and shadow tables belong to the installer.

-- Table privileges: application roles write tombstones and read nothing
-- but the settings; tombstone_admin reads, restores and purges.
GRANT USAGE ON SCHEMA tombstone TO PUBLIC;
-- Only the columns a rewritten statement writes: id, token, xid, time,
-- role and retention come from the database and cannot be chosen, and no
-- role may draw from the batch id sequence (an identity: inserts need no
-- grant on it).
REVOKE INSERT ON tombstone.batches FROM PUBLIC;
GRANT INSERT (client_addr, sql, tables) ON tombstone.batches TO PUBLIC;
REVOKE ALL ON SEQUENCE tombstone.batches_id_seq FROM PUBLIC;
-- Application roles read no batch, not even their own: the capture
-- triggers, which need the id and token, read them as the owner.
-- Administrators (and the owner, whose SECURITY DEFINER functions these
-- are) see and change everything.
REVOKE SELECT ON tombstone.batches FROM PUBLIC;
ALTER TABLE tombstone.batches ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS capture_insert ON tombstone.batches;
CREATE POLICY capture_insert ON tombstone.batches FOR INSERT TO PUBLIC WITH CHECK (true);
DROP POLICY IF EXISTS capture_read ON tombstone.batches;
DROP POLICY IF EXISTS admin_all ON tombstone.batches;
CREATE POLICY admin_all ON tombstone.batches TO tombstone_admin USING (true) WITH CHECK (true);
GRANT SELECT ON tombstone.settings TO PUBLIC;
-- (check_catalog runs as the deleting role.)
REVOKE ALL ON tombstone.catalog_log FROM PUBLIC;
GRANT SELECT ON tombstone.catalog_log TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA tombstone TO tombstone_admin;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA tombstone TO tombstone_admin;
-- The registry the store's own SECURITY DEFINER code acts on — which
-- tables are protected, their shadow tables and columns, the trash's
-- entries (what to give back to whom, the definitions UNDROP runs), the
-- settings — is the store's to write, not administrators': a row written
-- by hand there would have that code alter, grant or run what the row
-- names, with the installer's rights. Administrators read it, and mark
-- what the console's functions mark (a trash entry restored, purged or
-- held; how far a shadow table was purged); the rest goes through
-- functions (PAUSE REAPER, FREEZE DELETES, the reaper's fence).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tombstone.protected, tombstone.shadows, tombstone.shadow_columns,
    tombstone.trash, tombstone.settings, tombstone.catalog_log, tombstone.schema_version FROM tombstone_admin;
GRANT UPDATE (restored_at, purged_at, held) ON tombstone.trash TO tombstone_admin;
GRANT UPDATE (purged_through) ON tombstone.shadows TO tombstone_admin;
-- The audit trail: administrators read it; its rows are written by the
-- actions' own functions (tombstone._audit, as the owner) and changed or
-- deleted by nobody but the owner.
REVOKE ALL ON tombstone.audit FROM PUBLIC, tombstone_admin;
GRANT SELECT ON tombstone.audit TO tombstone_admin;
REVOKE ALL ON SEQUENCE tombstone.audit_id_seq FROM PUBLIC, tombstone_admin;
-- Shadow tables: no role but the owner and administrators writes them
-- (PUBLIC used to insert the rows its DELETEs'
-- rewrite captured; the capture triggers write them now).
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT shadow_name FROM tombstone.shadows LOOP
        IF to_regclass(format('tombstone.%I', s.shadow_name)) IS NOT NULL THEN
            EXECUTE format('REVOKE INSERT ON tombstone.%I FROM PUBLIC', s.shadow_name);
        END IF;
    END LOOP;
END
$$;
