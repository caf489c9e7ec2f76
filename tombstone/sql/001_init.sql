-- 001_init: the tombstone store's tables. Functions live in functions_*.sql,
-- which Install re-applies whenever their text changes.

CREATE TABLE tombstone.schema_version (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version       integer NOT NULL,
    installed_at  timestamptz NOT NULL DEFAULT statement_timestamp(),
    functions_md5 text
);

-- One row per captured statement. Written by the rewritten DELETE itself,
-- so every default below comes from the database session that deleted.
CREATE SEQUENCE tombstone.batches_id_seq;
CREATE TABLE tombstone.batches (
    id               bigint PRIMARY KEY DEFAULT nextval('tombstone.batches_id_seq'),
    xid              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stmt_time        timestamptz NOT NULL DEFAULT statement_timestamp(),
    role             name NOT NULL DEFAULT current_user,
    application_name text NOT NULL DEFAULT current_setting('application_name'),
    client_addr      text,
    sql              text NOT NULL,
    tables           jsonb NOT NULL DEFAULT '{}',
    purge_after      timestamptz NOT NULL,
    held             boolean NOT NULL DEFAULT false,
    restored_at      timestamptz,
    purged_at        timestamptz
);
ALTER SEQUENCE tombstone.batches_id_seq OWNED BY tombstone.batches.id;
CREATE INDEX batches_stmt_time_idx ON tombstone.batches (stmt_time);
CREATE INDEX batches_xid_idx ON tombstone.batches (xid);
CREATE INDEX batches_purge_after_idx ON tombstone.batches (purge_after) WHERE purged_at IS NULL;

-- The shadow-table registry: one row per source table that has a shadow.
-- Keyed by the source's oid so that renames (of the table or its schema)
-- keep their tombstones; source_schema/source_name are refreshed by
-- sync_shadow. A dropped source leaves its row (source_exists false in
-- the views) so its tombstones stay readable.
CREATE TABLE tombstone.shadows (
    source        oid PRIMARY KEY,
    source_schema name NOT NULL,
    source_name   name NOT NULL,
    shadow_name   name NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    retention     interval,
    filter_column name
);

-- Which shadow column holds which source column, by attnum, so that a
-- renamed column is followed and a dropped one kept. attnum is NULL for
-- columns that no longer belong to a live source column (dropped, or set
-- aside by an incompatible type change).
CREATE TABLE tombstone.shadow_columns (
    source        oid NOT NULL REFERENCES tombstone.shadows ON DELETE CASCADE,
    shadow_column name NOT NULL,
    attnum        smallint,
    type          text NOT NULL,
    -- Set when the column was added to an existing shadow: tombstones
    -- written before it did not have the column and restore its default.
    added_at      timestamptz,
    detached_at   timestamptz,
    PRIMARY KEY (source, shadow_column)
);
CREATE UNIQUE INDEX shadow_columns_attnum_idx ON tombstone.shadow_columns (source, attnum) WHERE attnum IS NOT NULL;

-- Key/value settings shared by every proxy, the CLI and the reaper
-- (e.g. reaper.paused, protect.retention, protect.generation).
CREATE TABLE tombstone.settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT statement_timestamp()
);

-- Protection rules, mirroring the configuration: protect.schemas (kind
-- 'schema', in search order) and protect.exclude / protect.tables.<t>
-- (kind 'table').
CREATE TABLE tombstone.protected (
    kind          text NOT NULL CHECK (kind IN ('schema', 'table')),
    schema_name   name NOT NULL,
    table_name    name NOT NULL DEFAULT '',
    position      integer NOT NULL DEFAULT 0,
    mode          text NOT NULL DEFAULT 'shadow' CHECK (mode IN ('shadow', 'off')),
    retention     interval,
    filter_column name,
    PRIMARY KEY (kind, schema_name, table_name)
);

-- Tables moved aside by DROP TABLE under policy "trash".
CREATE TABLE tombstone.trash (
    id              bigserial PRIMARY KEY,
    source          oid NOT NULL,
    original_schema name NOT NULL,
    original_name   name NOT NULL,
    trash_schema    name NOT NULL,
    trash_name      name NOT NULL,
    dropped_at      timestamptz NOT NULL DEFAULT statement_timestamp(),
    role            name NOT NULL DEFAULT current_user,
    purge_after     timestamptz NOT NULL,
    restored_at     timestamptz,
    purged_at       timestamptz,
    UNIQUE (trash_schema, trash_name)
);

INSERT INTO tombstone.settings (key, value) VALUES
    ('reaper.paused', 'false'),
    ('protect.retention', '"7 days"'),
    ('protect.generation', '0');
