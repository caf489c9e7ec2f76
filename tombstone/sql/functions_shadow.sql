-- functions_shadow.sql: shadow tables — their names, sync_shadow and
-- sync_all, which keep them in step with their source tables, and the
-- DDL event triggers that run the sync. Re-runnable, like every
-- functions_*.sql file.

-- _shadow_name picks the shadow table name for a source table:
-- "<schema>__<table>", cut to fit 63 bytes with an 8-hex hash suffix,
-- and made unique against the shadows of other source tables.
CREATE OR REPLACE FUNCTION tombstone._shadow_name(p_schema name, p_table name, p_source oid) RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    base text := p_schema || '__' || p_table;
    cand text := base;
    suffix text;
    n int;
BEGIN
    IF octet_length(base) > 63 THEN
        suffix := '_' || left(md5(base), 8);
        n := char_length(base);
        WHILE octet_length(left(base, n) || suffix) > 63 LOOP n := n - 1; END LOOP;
        cand := left(base, n) || suffix;
    END IF;
    IF EXISTS (SELECT 1 FROM tombstone.shadows WHERE shadow_name = cand AND source <> p_source)
       OR (to_regclass(format('tombstone.%I', cand)) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM tombstone.shadows WHERE shadow_name = cand)) THEN
        suffix := '_' || left(md5(p_source::text), 8);
        n := char_length(cand);
        WHILE octet_length(left(cand, n) || suffix) > 63 LOOP n := n - 1; END LOOP;
        cand := left(cand, n) || suffix;
    END IF;
    RETURN cand::name;
END
$$;

-- _shadow_column_name is the name a source column has in its shadow
-- table: its own, unless it starts with "_ts_", the store's prefix
-- (_ts_batch, _ts_token, …): then "_ts_user_" before it (cut to 63 bytes
-- with a hash of the whole name). Distinct user names stay distinct, and
-- none can be one of the store's own columns.
CREATE OR REPLACE FUNCTION tombstone._shadow_column_name(p_name name) RETURNS name
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    cand text;
    suffix text;
    n int;
BEGIN
    IF pg_catalog.left(p_name, 4) <> '_ts_' THEN
        RETURN p_name;
    END IF;
    cand := '_ts_user_' || p_name;
    IF pg_catalog.octet_length(cand) > 63 THEN
        suffix := '_' || pg_catalog.left(pg_catalog.md5(p_name), 8);
        n := pg_catalog.char_length(cand);
        WHILE pg_catalog.octet_length(pg_catalog.left(cand, n) || suffix) > 63 LOOP n := n - 1; END LOOP;
        cand := pg_catalog.left(cand, n) || suffix;
    END IF;
    RETURN cand::name;
END
$$;

-- _set_aside renames the shadow column called p_name (if there is one) to
-- a free "<name>__old_N", so that the name can be given to another
-- source column. The registry follows.
CREATE OR REPLACE FUNCTION tombstone._set_aside(p_source oid, p_shadow name, p_name name) RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    rel oid := format('tombstone.%I', p_shadow)::regclass::oid;
    aside text;
    n int := 1;
BEGIN
    IF p_name IN ('_ts_batch', '_ts_cause', '_ts_deleted_at', '_ts_token') THEN
        RAISE EXCEPTION USING ERRCODE = '42701',
            MESSAGE = format('tombstone: column name %s is reserved for tombstone metadata', p_name),
            HINT = 'Rename the column, or exclude the table from protection (protect.exclude).';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = p_name AND NOT attisdropped) THEN
        RETURN NULL;
    END IF;
    LOOP
        aside := left(p_name, 50) || '__old_' || n;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = aside AND NOT attisdropped);
        n := n + 1;
    END LOOP;
    EXECUTE format('ALTER TABLE tombstone.%I RENAME COLUMN %I TO %I', p_shadow, p_name, aside);
    UPDATE tombstone.shadow_columns SET shadow_column = aside WHERE source = p_source AND shadow_column = p_name;
    RETURN aside::name;
END
$$;

-- _ensure_index creates an index on the shadow table over cols unless one
-- with exactly these leading columns exists.
CREATE OR REPLACE FUNCTION tombstone._ensure_index(p_shadow name, cols name[]) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    rel oid := format('tombstone.%I', p_shadow)::regclass::oid;
BEGIN
    IF cols IS NULL OR cardinality(cols) = 0 OR EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = rel
           AND (SELECT array_agg(a.attname ORDER BY k.ord)
                  FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
                 WHERE k.ord <= cardinality(cols)) = cols) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE INDEX ON tombstone.%I (%s)', p_shadow,
                   (SELECT string_agg(quote_ident(c), ', ' ORDER BY o) FROM unnest(cols) WITH ORDINALITY u(c, o)));
    RETURN true;
END
$$;

-- _key returns the attnums of rel's primary key, else of its first
-- unique, non-partial, column-only index; NULL when it has none. Only
-- the key columns: INCLUDE columns take no part in uniqueness (and may
-- be of a type btree cannot index, json say, for the shadow's index).
CREATE OR REPLACE FUNCTION tombstone._key(rel oid) RETURNS int2[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN i.indnkeyatts = i.indnatts THEN i.indkey::int2[]
                ELSE (i.indkey::int2[])[0:i.indnkeyatts - 1] END
      FROM pg_catalog.pg_index i
     WHERE i.indrelid = rel AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT (0 = ANY (i.indkey::int2[]))
     ORDER BY i.indisprimary DESC, i.indexrelid
     LIMIT 1
$$;

-- _shadow_cols maps source attnums to their shadow columns.
CREATE OR REPLACE FUNCTION tombstone._shadow_cols(rel oid, attnums int2[]) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT array_agg(sc.shadow_column ORDER BY k.ord)
      FROM unnest(attnums) WITH ORDINALITY k(attnum, ord)
      JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = k.attnum
$$;

-- _source_cols maps attnums to the source's column names.
CREATE OR REPLACE FUNCTION tombstone._source_cols(rel oid, attnums int2[]) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT array_agg(a.attname ORDER BY k.ord)
      FROM unnest(attnums) WITH ORDINALITY k(attnum, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
$$;

-- sync_shadow creates the shadow table of rel (a partition means its
-- root) or brings it in line with the source, keeping every tombstone:
--   added column    -> added to the shadow
--   dropped column  -> kept (old values stay readable), detached
--   renamed column  -> renamed (columns are tracked by attnum)
--   retyped column  -> retyped in place when every stored value survives
--                      the round trip; otherwise the old column is set
--                      aside as "<col>__old_N" and a new one added.
-- It returns the shadow table's name (inside schema tombstone).
--
-- The work is the store's own, not the user's: its DDL (the shadow
-- table, its indexes, the capture function and triggers) runs under
-- session_replication_role = replica where the installer may set it
-- (a superuser), so that the user's own event triggers (enabled for
-- origin, the default) do not see it, as they would not without the
-- proxy. The store's event triggers are enabled ALWAYS.
CREATE OR REPLACE FUNCTION tombstone.sync_shadow(rel regclass) RETURNS name
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    before text := pg_catalog.current_setting('session_replication_role');
    quiet boolean := before = 'origin' AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
    out name;
    src oid := tombstone._root(rel::oid);
BEGIN
    -- Only a protected table, or one that has its shadow already: an
    -- administrator may call this, and it puts triggers the installer
    -- owns on the table (no other table's deletes are the store's to
    -- capture, or to refuse while frozen), nor any of the store's own.
    -- (A superuser may give any table a shadow: tombstone.EnsureShadow.)
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
       AND (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = src)
           IN ('tombstone', 'tombstone_trash', 'pg_catalog', 'information_schema', 'pg_toast')
       OR NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
       AND NOT (EXISTS (SELECT FROM tombstone.shadows sh WHERE sh.source = src)
                OR EXISTS (SELECT FROM tombstone.protected_among(ARRAY[src]) p WHERE p.relid = src)) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: %s is not a protected table', rel),
            HINT = 'The protection rules (tombstone init --config) say which tables are.';
    END IF;
    IF quiet THEN
        PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    END IF;
    out := tombstone._sync_shadow(rel);
    IF quiet THEN
        PERFORM pg_catalog.set_config('session_replication_role', before, true);
    END IF;
    RETURN out;
END
$$;

-- (Its queries run without parallel workers: in a session that forces
-- them (select_parallel's settings) a sync inside the DDL event trigger
-- of an ALTER TABLE waited on its workers for ever. And without JIT:
-- the planner's default estimates for the catalog functions it calls
-- made it compile queries that run in milliseconds, for a few hundred
-- milliseconds per CREATE TABLE on a database with 300 tables.)
--
-- tombstone.syncing = on while it runs, with the replica role sync_shadow
-- sets: the DDL event trigger does not sync again for the sync's own DDL
-- (_on_ddl). (Set in the body: PostgreSQL 15 lets only a superuser name
-- an undeclared parameter in a function's SET clause. An error's
-- rollback resets it.)
CREATE OR REPLACE FUNCTION tombstone._sync_shadow(rel regclass) RETURNS name
LANGUAGE plpgsql
SECURITY DEFINER
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET lc_monetary = 'C'
SET max_parallel_workers_per_gather = 0 SET jit = off
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    src oid := tombstone._root(rel::oid);
    c record;
    sc tombstone.shadow_columns;
    reg tombstone.shadows;
    p record;
    shadow name;
    kind "char";
    nsp name;
    relname name;
    lossless boolean;
    aside name;
    changed boolean := false;
    created boolean := false;
    syncing text := pg_catalog.current_setting('tombstone.syncing', true);
BEGIN
    SELECT cl.relkind, n.nspname, cl.relname INTO kind, nsp, relname
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = src;
    IF kind IS NULL OR kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = format('tombstone: %s is not a table', rel);
    END IF;
    -- Serialize syncs of one table (two proxies, or the event trigger and
    -- a proxy).
    -- (A lock on the table itself, which only roles that may write it
    -- can take, rather than an advisory lock, which any role can hold.)
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', src::regclass);
    PERFORM pg_catalog.set_config('tombstone.syncing', 'on', true);
    SELECT * INTO p FROM tombstone.protected_among(ARRAY[src::oid]) pt;

    SELECT * INTO reg FROM tombstone.shadows WHERE source = src;
    IF NOT FOUND THEN
        shadow := tombstone._shadow_name(nsp, relname, src);
        EXECUTE format('CREATE TABLE tombstone.%I (_ts_batch bigint NOT NULL, _ts_cause text NOT NULL, '
                       '_ts_deleted_at timestamptz NOT NULL DEFAULT statement_timestamp(), _ts_token uuid)', shadow);
        EXECUTE format('COMMENT ON TABLE tombstone.%I IS %L', shadow,
                       format('tombstones of %I.%I (oid %s)', nsp, relname, src));
        EXECUTE format('CREATE INDEX ON tombstone.%I (_ts_batch)', shadow);
        EXECUTE format('REVOKE ALL ON tombstone.%I FROM PUBLIC', shadow);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON tombstone.%I TO tombstone_admin', shadow);
        INSERT INTO tombstone.shadows (source, source_schema, source_name, shadow_name, retention, filter_column)
        VALUES (src, nsp, relname, shadow, p.retention, p.filter_column)
        RETURNING * INTO reg;
        changed := true;
        created := true;
    ELSE
        shadow := reg.shadow_name;
        IF (reg.source_schema, reg.source_name, reg.retention, reg.filter_column)
           IS DISTINCT FROM (nsp, relname, p.retention, p.filter_column)
           AND coalesce(current_setting('tombstone.ddl_sync', true), '') <> 'off' THEN
            UPDATE tombstone.shadows
               SET source_schema = nsp, source_name = relname, retention = p.retention, filter_column = p.filter_column
             WHERE source = src;
            changed := true;
        END IF;
    END IF;

    -- Columns that left the source: keep them, detached.
    UPDATE tombstone.shadow_columns s
       SET attnum = NULL, detached_at = statement_timestamp()
     WHERE s.source = src AND s.attnum IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = src AND a.attnum = s.attnum AND NOT a.attisdropped);
    IF FOUND THEN changed := true; END IF;

    -- Shadows created before batch tokens existed get the column. Looked
    -- up first: ADD COLUMN IF NOT EXISTS would lock the shadow table and
    -- send the client's session a NOTICE on every sync.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = format('tombstone.%I', shadow)::regclass
                      AND attname = '_ts_token' AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE tombstone.%I ADD COLUMN _ts_token uuid', shadow);
    END IF;

    -- Shadow columns take a domain's base type: adding a column of a
    -- domain type checks the domain's constraints on every stored row,
    -- which would run code of the table owner's choosing as the owner of
    -- this SECURITY DEFINER function.
    FOR c IN SELECT a.attnum, a.attname, a.atttypid, tombstone._shadow_column_name(a.attname) AS col,
                    tombstone._storage_type(a.atttypid, a.atttypmod) AS typ
               FROM pg_attribute a
              WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum
    LOOP
        SELECT * INTO sc FROM tombstone.shadow_columns s WHERE s.source = src AND s.attnum = c.attnum;
        IF NOT FOUND THEN
            PERFORM tombstone._set_aside(src, shadow, c.col);
            EXECUTE format('ALTER TABLE tombstone.%I ADD COLUMN %I %s', shadow, c.col, c.typ);
            INSERT INTO tombstone.shadow_columns (source, shadow_column, attnum, type, added_at)
            VALUES (src, c.col, c.attnum, c.typ, CASE WHEN created THEN NULL ELSE statement_timestamp() END);
            changed := true;
            CONTINUE;
        END IF;
        IF sc.shadow_column <> c.col THEN
            PERFORM tombstone._set_aside(src, shadow, c.col);
            EXECUTE format('ALTER TABLE tombstone.%I RENAME COLUMN %I TO %I', shadow, sc.shadow_column, c.col);
            UPDATE tombstone.shadow_columns s SET shadow_column = c.col
             WHERE s.source = src AND s.shadow_column = sc.shadow_column;
            changed := true;
        END IF;
        IF sc.type <> c.typ THEN
            -- Retype in place only if no stored value changes on the way
            -- there and back; a lossy cast would destroy tombstones.
            -- Only casts Postgres itself provides: a cast function of a
            -- user's would run as the owner of this SECURITY DEFINER
            -- function. Anything else is set aside below.
            lossless := tombstone._builtin_casts(sc.type, c.typ);
            IF (sc.type = 'text' OR sc.type LIKE 'text /* shape %') AND (c.typ = 'text' OR c.typ LIKE 'text /* shape %') THEN
                -- Kept as text both, of a composite type whose shape
                -- changed: the stored text is positional, and would read
                -- back into the wrong attributes. Set aside (below).
                lossless := false;
            ELSIF (c.typ = 'text' OR c.typ LIKE 'text /* shape %') AND tombstone._as_text(c.atttypid) THEN
                -- A user's type, kept as text from now on (schema
                -- version 7 and later): the stored type's own output
                -- function writes each value as text (never a cast); it
                -- reads back as before.
                EXECUTE format('ALTER TABLE tombstone.%1$I ALTER COLUMN %2$I TYPE %3$s USING %4$s', shadow, c.col, c.typ,
                               tombstone._text_of((SELECT a.atttypid FROM pg_attribute a
                                                    WHERE a.attrelid = format('tombstone.%I', shadow)::regclass AND a.attname = c.col),
                                                  quote_ident(c.col)));
                lossless := true;
            ELSIF lossless THEN
            BEGIN
                EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM tombstone.%1$I WHERE %2$I IS NOT NULL '
                               'AND (%2$I::%3$s)::%4$s IS DISTINCT FROM %2$I)', shadow, c.col, c.typ, sc.type)
                   INTO lossless;
                IF lossless THEN
                    EXECUTE format('ALTER TABLE tombstone.%1$I ALTER COLUMN %2$I TYPE %3$s USING %2$I::%3$s',
                                   shadow, c.col, c.typ);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                lossless := false;
            END;
            END IF;
            IF lossless THEN
                UPDATE tombstone.shadow_columns s SET type = c.typ WHERE s.source = src AND s.attnum = c.attnum;
            ELSE
                aside := tombstone._set_aside(src, shadow, c.col);
                UPDATE tombstone.shadow_columns s SET attnum = NULL, detached_at = statement_timestamp(),
                       reshaped_from = CASE WHEN (sc.type = 'text' OR sc.type LIKE 'text /* shape %')
                                             AND (c.typ = 'text' OR c.typ LIKE 'text /* shape %') THEN c.attnum END
                 WHERE s.source = src AND s.shadow_column = aside;
                EXECUTE format('ALTER TABLE tombstone.%I ADD COLUMN %I %s', shadow, c.col, c.typ);
                INSERT INTO tombstone.shadow_columns (source, shadow_column, attnum, type, added_at)
                VALUES (src, c.col, c.attnum, c.typ, statement_timestamp());
            END IF;
            changed := true;
        END IF;
    END LOOP;

    -- Indexes restores filter on: the key, the filter column, and the
    -- columns of foreign keys whose deletes cascade or set null (to find
    -- cascade descendants of selected rows).
    IF tombstone._ensure_index(shadow, tombstone._shadow_cols(src, tombstone._key(src))) THEN changed := true; END IF;
    IF p.filter_column IS NOT NULL AND EXISTS (
        SELECT 1 FROM tombstone.shadow_columns s WHERE s.source = src AND s.shadow_column = p.filter_column) THEN
        IF tombstone._ensure_index(shadow, ARRAY[p.filter_column]) THEN changed := true; END IF;
    END IF;
    FOR c IN SELECT con.conkey FROM pg_constraint con
              WHERE con.conrelid = src AND con.contype = 'f' AND con.conparentid = 0
                AND con.confdeltype IN ('c', 'n', 'd')
    LOOP
        IF tombstone._ensure_index(shadow, tombstone._shadow_cols(src, c.conkey)) THEN changed := true; END IF;
    END LOOP;

    -- Only the database writes tombstones: the capture triggers, as the
    -- owner of this schema (functions_capture.sql).
    -- (Called only outside triggers: the capture triggers' inserts do not
    -- pay for a function call.)
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = format('tombstone.%I', shadow)::regclass
                                             AND t.tgname = '_ts_only_capture' AND t.tgqual IS NOT NULL) THEN
        IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = format('tombstone.%I', shadow)::regclass
                                              AND t.tgname = '_ts_only_capture') THEN
            EXECUTE format('DROP TRIGGER _ts_only_capture ON tombstone.%I', shadow);
        END IF;
        -- (Not ALWAYS: a superuser may load tombstones under
        -- session_replication_role = replica, as pg_restore would.)
        EXECUTE format('CREATE TRIGGER _ts_only_capture BEFORE INSERT ON tombstone.%I FOR EACH STATEMENT '
                       'WHEN (pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.<) 1) '
                       'EXECUTE FUNCTION tombstone._shadow_guard()', shadow);
    END IF;
    IF tombstone._sync_capture(src, shadow) THEN changed := true; END IF;
    -- Partitions of src now that have tombstones of their own, from
    -- deletes while they stood alone (dropped alone and undropped, or
    -- detached, then attached again): those join src's, where restores,
    -- UNDELETE FROM and the checks of the rows they link to look.
    FOR c IN SELECT s.source, s.shadow_name FROM tombstone.shadows s
              WHERE s.source IN (SELECT t.relid FROM tombstone._partition_tree(src) t WHERE t.relid <> src)
    LOOP
        IF tombstone._shadow_merge(c.source, c.shadow_name, src, shadow) THEN changed := true; END IF;
    END LOOP;
    -- A member of an inheritance tree is captured row by row, and so are
    -- the others once it joins: align the neighbours' triggers too.
    FOR c IN SELECT s.source, s.shadow_name FROM pg_inherits h
               JOIN tombstone.shadows s ON s.source IN (h.inhrelid, h.inhparent) AND s.source <> src
              WHERE (h.inhrelid = src OR h.inhparent = src)
                AND NOT (SELECT k.relispartition FROM pg_class k WHERE k.oid = h.inhrelid)
    LOOP
        IF tombstone._sync_capture(c.source, c.shadow_name) THEN changed := true; END IF;
    END LOOP;

    IF changed THEN
        PERFORM set_config('tombstone.changed', 'on', true);
    END IF;
    PERFORM pg_catalog.set_config('tombstone.syncing', coalesce(syncing, ''), true);
    RETURN shadow;
END
$$;

-- _shadow_merge moves the tombstones in p_from_shadow, the shadow of
-- p_from (a partition of p_to now), into p_to's shadow p_to_shadow,
-- column by column name; true when it moved any. It moves nothing, with
-- a WARNING, when a column does not map to one of the same stored type
-- (or one set aside holds values), or when the shadows' guard would stop
-- it (not a superuser's sync).
CREATE OR REPLACE FUNCTION tombstone._shadow_merge(p_from oid, p_from_shadow name, p_to oid, p_to_shadow name) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    tocols text;
    fromcols text;
    stored boolean;
    clean boolean;
    n bigint;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM tombstone.%I)', p_from_shadow) INTO stored;
    IF NOT stored THEN
        RETURN false;
    END IF;
    SELECT string_agg(format(', %I', rc.shadow_column), '' ORDER BY mc.attnum),
           string_agg(format(', s.%I', mc.shadow_column), '' ORDER BY mc.attnum),
           coalesce(bool_and(rc.type IS NOT DISTINCT FROM mc.type), true)
      INTO tocols, fromcols, clean
      FROM tombstone.shadow_columns mc
      JOIN pg_attribute ma ON ma.attrelid = p_from AND ma.attnum = mc.attnum
      LEFT JOIN pg_attribute ra ON ra.attrelid = p_to AND ra.attname = ma.attname AND NOT ra.attisdropped
      LEFT JOIN tombstone.shadow_columns rc ON rc.source = p_to AND rc.attnum = ra.attnum
     WHERE mc.source = p_from AND mc.attnum IS NOT NULL;
    IF clean THEN
        SELECT NOT EXISTS (SELECT 1 FROM tombstone.shadow_columns mc WHERE mc.source = p_from AND mc.attnum IS NULL)
          INTO clean;
    END IF;
    IF NOT clean OR current_setting('session_replication_role') <> 'replica' THEN
        RAISE WARNING 'tombstone: the tombstones of % from before it was a partition of % stay in tombstone.%, where UNDELETE BATCH finds them (UNDELETE FROM does not)',
            p_from::regclass, p_to::regclass, p_from_shadow;
        RETURN false;
    END IF;
    EXECUTE format('WITH moved AS (DELETE FROM tombstone.%I s RETURNING s.*) '
                   'INSERT INTO tombstone.%I (_ts_batch, _ts_cause, _ts_deleted_at, _ts_token%s) '
                   'SELECT s._ts_batch, s._ts_cause, s._ts_deleted_at, s._ts_token%s FROM moved s',
                   p_from_shadow, p_to_shadow, coalesce(tocols, ''), coalesce(fromcols, ''));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;
REVOKE ALL ON FUNCTION tombstone._shadow_merge(oid, name, oid, name) FROM PUBLIC;

-- sync_all creates or aligns the shadow table of every protected table
-- and returns how many it looked at. It NOTIFYs tombstone_catalog when
-- anything changed.
CREATE OR REPLACE FUNCTION tombstone.sync_all() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    r record;
    n int := 0;
BEGIN
    -- One table's failure (a table the installer may not add triggers to)
    -- leaves the others synced; that table's DELETEs are refused until it
    -- syncs (check_catalog: no capture trigger).
    FOR r IN SELECT relid FROM tombstone.protected_tables() ORDER BY relid LOOP
        BEGIN
            PERFORM tombstone.sync_shadow(r.relid::regclass);
        EXCEPTION WHEN insufficient_privilege OR lock_not_available THEN
            RAISE WARNING 'tombstone: cannot sync the shadow table and capture triggers of %: %', r.relid::regclass, SQLERRM
                USING HINT = 'Its DELETEs are refused until a superuser or its owner runs tombstone init.';
        END;
        n := n + 1;
    END LOOP;
    -- Capture functions of tables dropped for good (no trigger uses them).
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
              WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname ~ '^_ts_cap_[0-9]+$'
                AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)
    LOOP
        EXECUTE format('DROP FUNCTION %s', r.fn);
    END LOOP;
    IF current_setting('tombstone.changed', true) = 'on' THEN
        PERFORM pg_notify('tombstone_catalog', 'sync');
        PERFORM set_config('tombstone.changed', 'off', true);
    END IF;
    RETURN n;
END
$$;

-- _on_ddl is the ddl_command_end event trigger: it keeps the shadow
-- tables of protected tables in step with ALTER TABLE / CREATE TABLE in
-- the same transaction, and tells the proxies to reload their catalog.
-- Under SET tombstone.ddl_sync = off (trash_tables and undrop_table
-- while they move a table) the registry keeps the table's names.
CREATE OR REPLACE FUNCTION tombstone._on_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET max_parallel_workers_per_gather = 0 SET jit = off
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    r record;
    -- A temporary table of one session, which no other's DELETE reaches
    -- (not an inheritance child), changes nothing a rewrite depends on:
    -- no log row (which would take every proxy off check_catalog's fast
    -- path until it reloads), no notification.
    relevant boolean := EXISTS (
        SELECT FROM pg_event_trigger_ddl_commands() d
          LEFT JOIN pg_catalog.pg_class c ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objid
         WHERE c.oid IS NULL OR c.relpersistence <> 't'
            OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid));
BEGIN
    IF relevant THEN
        PERFORM tombstone._catalog_logged();
    END IF;
    -- Always: a capture trigger left behind a renamed or added column
    -- would write values into the wrong shadow columns, or none.
    -- (tombstone.ddl_sync = off only keeps the registry's names.)
    -- Except for a sync's own DDL (the capture triggers it creates and
    -- enables on the table it syncs, its shadow table): syncing again
    -- from inside it would find what it is making, twice per CREATE
    -- TABLE. Known by the replica role only a superuser may set, which
    -- sync_shadow sets for its work, with tombstone.syncing, which
    -- _sync_shadow sets: a role that sets tombstone.syncing itself
    -- still has its DDL synced.
    IF pg_catalog.current_setting('session_replication_role') = 'replica'
       AND pg_catalog.current_setting('tombstone.syncing', true) = 'on' THEN
        IF relevant AND tombstone._may_notify() THEN
            PERFORM pg_notify('tombstone_catalog', tg_tag);
        END IF;
        RETURN;
    END IF;
    BEGIN
        -- (And their inheritance parents: a parent that gains or loses
        -- a child captures per row or per statement from then on.)
        FOR r IN SELECT DISTINCT tombstone._root(x.oid) AS relid
                   FROM (SELECT d.objid AS oid FROM pg_event_trigger_ddl_commands() d
                          WHERE d.classid = 'pg_class'::regclass AND d.object_type IN ('table', 'table column')
                         UNION
                         SELECT i.inhparent FROM pg_event_trigger_ddl_commands() d
                           JOIN pg_catalog.pg_inherits i ON i.inhrelid = d.objid
                          WHERE d.classid = 'pg_class'::regclass AND d.object_type IN ('table', 'table column')) x
        LOOP
            IF EXISTS (SELECT 1 FROM tombstone.protected_among(ARRAY[r.relid::oid])) THEN
                PERFORM tombstone.sync_shadow(r.relid::regclass);
            END IF;
        END LOOP;
        -- A type (or a table's row type) changed: the tables that keep a
        -- composite's text in a shadow column follow its shape now, before
        -- another row is captured in the new one.
        -- Only the tables whose kept text holds a type the statement
        -- changed; not for the store's own DDL (a sync runs it as
        -- replica, which only a superuser may set).
        IF pg_catalog.current_setting('session_replication_role') <> 'replica' THEN
            FOR r IN SELECT DISTINCT sc.source AS relid
                       FROM tombstone.shadow_columns sc
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = sc.source AND a.attnum = sc.attnum
                      WHERE sc.type LIKE 'text /* shape %'
                        AND EXISTS (SELECT 1 FROM tombstone._type_tree(a.atttypid) x
                                     WHERE x.typ IN (SELECT d.objid FROM pg_event_trigger_ddl_commands() d
                                                      WHERE d.classid = 'pg_type'::regclass
                                                     UNION ALL
                                                     SELECT c.reltype FROM pg_event_trigger_ddl_commands() d
                                                       JOIN pg_catalog.pg_class c ON c.oid = d.objid
                                                      WHERE d.classid = 'pg_class'::regclass))
                        AND EXISTS (SELECT 1 FROM tombstone.protected_among(ARRAY[sc.source]))
            LOOP
                PERFORM tombstone.sync_shadow(r.relid::regclass);
            END LOOP;
        END IF;
    END;
    IF relevant AND tombstone._may_notify() THEN
        PERFORM pg_notify('tombstone_catalog', tg_tag);
    END IF;
END
$$;

-- _may_notify reports whether the DDL event triggers may tell the proxies
-- (NOTIFY): a transaction that has sent a NOTIFY cannot PREPARE
-- TRANSACTION, so on a server that allows prepared transactions, DDL
-- inside a transaction block says nothing — the proxies find out when a
-- statement fails the catalog check (TS001) or a lookup misses.
CREATE OR REPLACE FUNCTION tombstone._may_notify() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.current_setting('max_prepared_transactions')::int = 0
        OR pg_catalog.statement_timestamp() = pg_catalog.transaction_timestamp()
$$;

-- _on_drop is the sql_drop event trigger, for every DROP: it refuses one
-- that would drop a column of a shadow table — DROP TYPE … CASCADE of a
-- type a shadow column has, say, whose tombstones would lose that
-- column's values — and tells the proxies to reload after DROP TABLE,
-- DROP SCHEMA and ALTER TABLE (a dropped table's shadow and tombstones
-- stay).
CREATE OR REPLACE FUNCTION tombstone._on_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET max_parallel_workers_per_gather = 0 SET jit = off
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    cols text;
    trashed oid[];
    kept text;
BEGIN
    PERFORM tombstone._catalog_logged();
    -- A table in the trash goes only with the reaper (or once its time is
    -- up): a DROP … CASCADE of an object it still uses (a partition key's
    -- function, an operator class, an access method) would take its rows
    -- with it, which a plain DROP TABLE had left to UNDROP.
    trashed := ARRAY(SELECT o.objid FROM pg_event_trigger_dropped_objects() o
                      WHERE o.object_type = 'table' AND o.schema_name = 'tombstone_trash');
    IF pg_catalog.cardinality(trashed) > 0 THEN
        SELECT string_agg(format('%I.%I', t.original_schema, t.original_name), ', ' ORDER BY t.id) INTO kept
          FROM tombstone.trash t
         WHERE t.restored_at IS NULL AND t.purged_at IS NULL AND (t.held OR t.purge_after > now())
           AND (t.source = ANY (trashed)
                OR EXISTS (SELECT FROM jsonb_array_elements(t.renames) e
                            WHERE e ->> 'kind' = 'table' AND (e ->> 'oid')::oid = ANY (trashed)));
        IF kept IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '2BP01',
                MESSAGE = format('tombstone: %s would drop tables in the trash, and their rows: %s', tg_tag, kept),
                HINT = 'UNDROP TABLE them first, or drop without CASCADE; the reaper drops them when their time is up.';
        END IF;
    END IF;
    SELECT string_agg(o.object_identity, ', ') INTO cols
      FROM pg_event_trigger_dropped_objects() o
     WHERE o.object_type = 'table column' AND o.schema_name = 'tombstone'
       AND o.objid IN (SELECT to_regclass(format('tombstone.%I', s.shadow_name))::oid FROM tombstone.shadows s);
    IF cols IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '2BP01',
            MESSAGE = format('tombstone: %s would drop tombstone columns (%s), and the deleted rows'' values in them', tg_tag, cols),
            HINT = 'Purge those tables'' tombstones first (tombstone purge, PURGE BATCH), or drop without CASCADE.';
    END IF;
    IF tg_tag IN ('DROP TABLE', 'DROP SCHEMA', 'ALTER TABLE') AND tombstone._may_notify() THEN
        PERFORM pg_notify('tombstone_catalog', tg_tag);
    END IF;
END
$$;

-- shadow_name returns the shadow table (inside schema tombstone) of a
-- protected table, or NULL when it has none.
CREATE OR REPLACE FUNCTION tombstone.shadow_name(rel regclass) RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT s.shadow_name FROM tombstone.shadows s WHERE s.source = tombstone._root(rel::oid) $$;

-- _shadow_of is the shadow table of exactly rel, which a restore reads a
-- batch's tombstones from (_batch_preds names the shadows that hold
-- them): a table attached as a partition since it had a shadow of its
-- own keeps the tombstones of its deletes from before in that one, not
-- in its new root's.
CREATE OR REPLACE FUNCTION tombstone._shadow_of(rel oid) RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RETURN (SELECT s.shadow_name FROM tombstone.shadows s WHERE s.source = rel);
END
$$;

-- Grants. Functions are executable by PUBLIC by default; the internal
-- and SECURITY DEFINER ones are narrowed here.
REVOKE ALL ON FUNCTION tombstone.sync_shadow(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._sync_shadow(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.sync_shadow(regclass) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone._on_ddl() FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._on_drop() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.sync_all() TO PUBLIC;
