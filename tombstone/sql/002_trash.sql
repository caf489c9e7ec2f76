-- 002_trash: the trash schema that DROP TABLE moves protected tables
-- into (policies.drop: trash), and what UNDROP TABLE needs to put them
-- back. Functions are in functions_trash.sql.
--
-- Privileges of tombstone_trash: PUBLIC gets CREATE but not USAGE.
--   * ALTER TABLE … SET SCHEMA needs ownership of the table and CREATE on
--     the target schema, so Postgres itself checks, exactly as for DROP
--     TABLE, that whoever trashes a table may drop it — no SECURITY
--     DEFINER code has to re-implement (or guess) that check, and an
--     application role can trash only its own tables.
--   * Without USAGE nobody but tombstone_admin can look up, read, alter or
--     drop what lies in the trash — not even the role that owns it — so a
--     trashed table stays until UNDROP TABLE or the reaper.
-- CREATE also lets any role create objects in the schema that it can then
-- never reach; the reaper only drops tables recorded in tombstone.trash
-- (and checks their oid), so such objects are inert.
CREATE SCHEMA IF NOT EXISTS tombstone_trash;
REVOKE ALL ON SCHEMA tombstone_trash FROM PUBLIC;
GRANT CREATE ON SCHEMA tombstone_trash TO PUBLIC;
GRANT USAGE, CREATE ON SCHEMA tombstone_trash TO tombstone_admin;

-- What trash_tables records besides the names (001 made the table):
--   renames       every object renamed on the way in, so UNDROP can give
--                 back the old names: [{kind: table|index|sequence, oid,
--                 schema, name, trash}] — the table itself first, then
--                 its partitions, their indexes and owned sequences.
--   foreign_keys  the constraints of other tables that referenced it and
--                 that DROP … CASCADE removed: [{oid, table_oid, table,
--                 name, def}] (def from pg_get_constraintdef), re-created
--                 by UNDROP when the referencing table still exists.
--   held          kept from the reaper while true.
ALTER TABLE tombstone.trash
    ADD COLUMN renames      jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN foreign_keys jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN held         boolean NOT NULL DEFAULT false,
    ADD COLUMN client_addr  text,
    ADD COLUMN sql          text;
CREATE INDEX trash_original_idx ON tombstone.trash (original_schema, original_name)
    WHERE restored_at IS NULL AND purged_at IS NULL;
CREATE INDEX trash_purge_after_idx ON tombstone.trash (purge_after)
    WHERE restored_at IS NULL AND purged_at IS NULL;

-- Only SECURITY DEFINER code (tombstone._trash_register) writes it;
-- tombstone_admin reads it.
REVOKE ALL ON tombstone.trash FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON tombstone.trash TO tombstone_admin;
