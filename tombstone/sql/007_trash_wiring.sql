-- 007_trash_wiring: a table in the trash takes part in nothing until
-- UNDROP TABLE brings it back. DROP TABLE (trash_tables) cuts it loose
-- from everything else in the database and records here what it cut, so
-- that UNDROP can wire it back (functions_trash.sql):
--   wiring  {parents, children: inheritance links [{table_oid,
--            parent_oid, table, parent}]; keys: its own foreign keys to
--            tables outside it [{oid, table_oid, ref_oid, name, def,
--            runs_code}]; triggers, rules, policies: [{table_oid, name,
--            def, enabled}]; defaults: column defaults that use other
--            objects [{table_oid, column, def}]; owner (role oid) and
--            acl: [{rel, grantee, privilege, column, grantable}] when the
--            trash took the table over from its owner}
-- Statistics objects move into the trash with the table (renames, kind
-- statistics).
ALTER TABLE tombstone.trash ADD COLUMN IF NOT EXISTS wiring jsonb NOT NULL DEFAULT '{}';

-- A shadow column kept as a composite's text and set aside because the
-- composite's shape changed: the column of the source it belonged to. A
-- restore of rows with values in it is refused (they would come back
-- without them); see tombstone._read.
ALTER TABLE tombstone.shadow_columns ADD COLUMN IF NOT EXISTS reshaped_from int2;
