-- functions_console.sql: the console's read-side functions that
-- functions_batches.sql does not already hold — SHOW TOMBSTONES, SHOW
-- TOMBSTONE STATUS, PAUSE/RESUME REAPER. Re-applied with the other
-- functions_*.sql files whenever their text changes, so every
-- statement is re-runnable. All are admin-only (tombstone._require_admin:
-- 42501 with a GRANT hint) and SECURITY INVOKER, like the rest of the
-- admin functions.

-- show_tombstones lists the deleted rows of one table, newest batch
-- first: the batch, the cause, when, and the row itself as json. One
-- function cannot return a result set whose columns depend on its
-- argument (SETOF record needs a column list at the call site, which
-- neither psql users nor the console can give), so the row is rendered
-- with row_to_json over the shadow's columns in the source table's column
-- order — keys are the column names, values keep their JSON types, and
-- psql prints it on one line. Columns dropped from the source since are
-- shown after the live ones (their old values stay readable); a DBA who
-- wants real columns can SELECT from tombstone.<schema>__<table>.
--
-- p_where is an SQL expression over the table's columns, validated by the
-- caller (the console and the CLI parse it with pg_query); it is embedded
-- in dynamic SQL as is.
DROP FUNCTION IF EXISTS tombstone.show_tombstones(regclass, text, integer);
CREATE OR REPLACE FUNCTION tombstone.show_tombstones(
    p_table regclass, p_where text DEFAULT NULL, p_limit integer DEFAULT 50, p_batch bigint DEFAULT NULL)
RETURNS TABLE (batch bigint, cause text, deleted_at timestamptz, "row" json)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    root oid := tombstone._root(p_table::oid);
    shadow name;
    cols text;
    sel text := 'true';
BEGIN
    PERFORM tombstone._require_admin();
    shadow := tombstone.shadow_name(root::regclass);
    IF shadow IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('tombstone: %s has no tombstones (it is not protected)', p_table),
            HINT = 'SHOW TOMBSTONE STATUS lists the protected tables.';
    END IF;
    -- Keys are the source's column names (a user column called _ts_x is
    -- stored under another name, tombstone._shadow_column_name). A value
    -- of a type of someone's (an enum, a composite) is rendered with its
    -- output function, as text: row_to_json would call a cast to json its
    -- owner may have defined, with the administrator's rights.
    SELECT pg_catalog.string_agg(
               CASE WHEN t.oid < 16384 AND t.typtype = 'b'
                    THEN pg_catalog.format('s.%I AS %I', sc.shadow_column, coalesce(a.attname, sc.shadow_column))
                    ELSE pg_catalog.format('CASE WHEN s.%1$I IS NOT NULL THEN pg_catalog.format(''%%s'', s.%1$I) END AS %2$I',
                                           sc.shadow_column, coalesce(a.attname, sc.shadow_column)) END, ', '
               ORDER BY sc.attnum NULLS LAST, sc.detached_at, sc.shadow_column)
      INTO cols
      FROM tombstone.shadow_columns sc
      JOIN pg_catalog.pg_attribute sa ON sa.attrelid = pg_catalog.format('tombstone.%I', shadow)::regclass
                                     AND sa.attname = sc.shadow_column AND NOT sa.attisdropped
      JOIN pg_catalog.pg_type t ON t.oid = sa.atttypid
      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = root AND a.attnum = sc.attnum AND NOT a.attisdropped
     WHERE sc.source = root;
    IF p_where IS NOT NULL AND pg_catalog.btrim(p_where) <> '' THEN
        sel := '(' || tombstone._user_pred(root, p_where) || ')';
    END IF;
    IF p_batch IS NOT NULL THEN
        sel := sel || pg_catalog.format(' AND s._ts_batch = %s', p_batch);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT s._ts_batch, s._ts_cause, s._ts_deleted_at, (SELECT pg_catalog.row_to_json(r) FROM (SELECT %s) r) '
        'FROM tombstone.%I s WHERE %s ORDER BY s._ts_batch DESC, s.ctid LIMIT %s',
        coalesce(cols, 'NULL'), shadow, sel, coalesce(p_limit, 50));
END
$$;

-- status is SHOW TOMBSTONE STATUS: one (name, value) row per fact, so
-- that psql prints it as a short two-column list and scripts can pick a
-- value by name. Tombstone counts are exact (count(*) per shadow table).
CREATE OR REPLACE FUNCTION tombstone.status()
RETURNS TABLE (name text, value text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    s record;
    n bigint;
    v text;
BEGIN
    PERFORM tombstone._require_admin();
    name := 'schema_version';
    value := (SELECT sv.version::text FROM tombstone.schema_version sv);
    RETURN NEXT;
    name := 'installed_at';
    value := (SELECT sv.installed_at::text FROM tombstone.schema_version sv);
    RETURN NEXT;
    name := 'event_triggers';
    value := CASE (SELECT count(*) FROM pg_catalog.pg_event_trigger e
                    WHERE e.evtname IN ('tombstone_ddl', 'tombstone_drop') AND e.evtenabled <> 'D')
                 WHEN 2 THEN 'installed'
                 WHEN 0 THEN 'missing (shadow tables follow ALTER TABLE when the proxy syncs)'
                 ELSE 'partly installed (run tombstone init as a superuser)' END;
    RETURN NEXT;
    name := 'protected_tables';
    value := (SELECT count(*)::text FROM tombstone.protected_tables());
    RETURN NEXT;
    name := 'reaper_paused';
    value := coalesce((SELECT st.value #>> '{}' FROM tombstone.settings st WHERE st.key = 'reaper.paused'), 'false');
    RETURN NEXT;
    name := 'deletes_frozen';
    value := coalesce((SELECT pg_catalog.format('true (by %s at %s)', f ->> 'by', f ->> 'at')
                         FROM tombstone._frozen() f WHERE f IS NOT NULL), 'false');
    RETURN NEXT;
    FOR v IN SELECT unnest(ARRAY['active', 'partly restored', 'held', 'restored', 'purged']) LOOP
        name := 'batches_' || pg_catalog.replace(v, ' ', '_');
        value := (SELECT count(*)::text FROM tombstone.batches b WHERE tombstone._state(b) = v);
        RETURN NEXT;
    END LOOP;
    name := 'oldest_batch';
    value := (SELECT pg_catalog.min(b.stmt_time)::text FROM tombstone.batches b WHERE b.purged_at IS NULL);
    RETURN NEXT;
    name := 'oldest_purge_after';
    value := (SELECT pg_catalog.min(b.purge_after)::text FROM tombstone.batches b WHERE b.purged_at IS NULL);
    RETURN NEXT;
    -- The next purge the reaper will do: held batches wait.
    name := 'next_purge_after';
    value := (SELECT pg_catalog.min(b.purge_after)::text FROM tombstone.batches b
               WHERE b.purged_at IS NULL AND NOT b.held);
    RETURN NEXT;
    name := 'trash_tables';
    value := (SELECT count(*)::text FROM tombstone.trash t WHERE t.restored_at IS NULL AND t.purged_at IS NULL);
    RETURN NEXT;
    FOR s IN SELECT sh.source_schema, sh.source_name, sh.shadow_name FROM tombstone.shadows sh
              ORDER BY sh.source_schema, sh.source_name
    LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('tombstone.%I', s.shadow_name)) IS NULL;
        EXECUTE pg_catalog.format('SELECT count(*) FROM tombstone.%I', s.shadow_name) INTO n;
        name := 'tombstones ' || s.source_schema || '.' || s.source_name;
        value := n::text;
        RETURN NEXT;
    END LOOP;
END
$$;

-- _write_reaper_paused stores the flag: SECURITY DEFINER, for
-- tombstone_admin only (administrators do not write tombstone.settings
-- themselves: functions_privileges.sql).
CREATE OR REPLACE FUNCTION tombstone._write_reaper_paused(p_paused boolean) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    INSERT INTO tombstone.settings AS st (key, value) VALUES ('reaper.paused', pg_catalog.to_jsonb(p_paused))
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.statement_timestamp()
$$;
REVOKE ALL ON FUNCTION tombstone._write_reaper_paused(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._write_reaper_paused(boolean) TO tombstone_admin;

-- set_reaper_paused is PAUSE REAPER / RESUME REAPER: it persists the flag
-- in tombstone.settings ('reaper.paused'), which every reaper reads
-- before each chunk, and NOTIFYs tombstone_reaper so that a waiting
-- reaper can notice at once.
CREATE OR REPLACE FUNCTION tombstone.set_reaper_paused(p_paused boolean)
RETURNS TABLE (reaper_paused boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    PERFORM tombstone._write_reaper_paused(p_paused);
    PERFORM pg_catalog.pg_notify('tombstone_reaper', CASE WHEN p_paused THEN 'paused' ELSE 'resumed' END);
    PERFORM tombstone._audit(CASE WHEN p_paused THEN 'PAUSE REAPER' ELSE 'RESUME REAPER' END, '{}',
                             pg_catalog.jsonb_build_object('reaper_paused', p_paused));
    reaper_paused := p_paused;
    RETURN NEXT;
END
$$;
