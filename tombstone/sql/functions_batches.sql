-- functions_batches.sql: batches — SHOW BATCHES / SHOW BATCH, PURGE,
-- HOLD and RELEASE, the admin check they start with, and the trigger
-- that completes a new batch row. Re-runnable, like every
-- functions_*.sql file.

-- _require_admin raises 42501 unless the current role is a superuser or
-- a member of tombstone_admin.
CREATE OR REPLACE FUNCTION tombstone._require_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    IF NOT (pg_catalog.pg_has_role(current_user, 'tombstone_admin', 'MEMBER')
            OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('tombstone: role %s may not read or restore tombstones', current_user),
            HINT = pg_catalog.format('GRANT tombstone_admin TO %I', current_user);
    END IF;
END
$$;

-- _state is a batch's state as shown to people.
CREATE OR REPLACE FUNCTION tombstone._state(b tombstone.batches) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN b.purged_at IS NOT NULL THEN 'purged'
                WHEN b.restored_at IS NOT NULL THEN 'restored'
                WHEN b.held THEN 'held'
                WHEN b.partly_restored_at IS NOT NULL THEN 'partly restored'
                ELSE 'active' END
$$;

-- show_batches lists batches newest first, optionally only those that
-- removed rows from p_table, or since p_since. remaining is how many of a
-- partly restored batch's tombstones are still stored (for the others:
-- all of its rows, or none).
DROP FUNCTION IF EXISTS tombstone.show_batches(regclass, timestamptz, integer);
CREATE OR REPLACE FUNCTION tombstone.show_batches(
    p_table regclass DEFAULT NULL, p_since timestamptz DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (batch bigint, stmt_time timestamptz, role name, application_name text, client_addr text,
               xid xid8, tables text, rows bigint, state text, purge_after timestamptz, sql text, remaining bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    tname text;
BEGIN
    PERFORM tombstone._require_admin();
    IF p_table IS NOT NULL THEN
        SELECT n.nspname || '.' || c.relname INTO tname
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = tombstone._root(p_table::oid);
    END IF;
    RETURN QUERY
    SELECT b.id, b.stmt_time, b.role, b.application_name, b.client_addr, b.xid,
           (SELECT pg_catalog.string_agg(e.key || '=' || e.value, ', ' ORDER BY e.key)
              FROM pg_catalog.jsonb_each_text(b.tables) e),
           r.n, tombstone._state(b), b.purge_after,
           CASE WHEN pg_catalog.length(b.sql) > 80 THEN pg_catalog.left(b.sql, 77) || '...' ELSE b.sql END,
           CASE tombstone._state(b) WHEN 'partly restored' THEN tombstone._stored(b.id)
                                    WHEN 'restored' THEN 0 WHEN 'purged' THEN 0 ELSE r.n END
      FROM tombstone.batches b,
           LATERAL (SELECT coalesce(sum(e.value::bigint), 0)::bigint AS n FROM pg_catalog.jsonb_each_text(b.tables) e) r
     WHERE (tname IS NULL OR b.tables ? tname)
       AND (p_since IS NULL OR b.stmt_time >= p_since)
     ORDER BY b.id DESC
     LIMIT coalesce(p_limit, 50);
END
$$;

-- _stored counts the tombstones of one batch still in the store.
CREATE OR REPLACE FUNCTION tombstone._stored(p_batch bigint) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    s record;
    n bigint;
    total bigint := 0;
BEGIN
    FOR s IN SELECT sh.shadow_name FROM tombstone.shadows sh LOOP
        EXECUTE pg_catalog.format('SELECT count(*) FROM tombstone.%I WHERE _ts_batch = $1', s.shadow_name) INTO n USING p_batch;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

-- show_batch describes one batch, one row per table: the rows it
-- removed (from the batch record), the tombstones still stored and their
-- causes, and the batch's fields.
CREATE OR REPLACE FUNCTION tombstone.show_batch(p_batch bigint)
RETURNS TABLE (batch bigint, table_name text, rows bigint, stored bigint, causes text,
               stmt_time timestamptz, role name, application_name text, client_addr text,
               xid xid8, state text, purge_after timestamptz, sql text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    b tombstone.batches;
    s record;
    cnt bigint;
    causes_text text;
    info jsonb := '{}';
BEGIN
    PERFORM tombstone._require_admin();
    SELECT * INTO b FROM tombstone.batches x WHERE x.id = p_batch;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('tombstone: batch %s does not exist', p_batch);
    END IF;
    FOR s IN SELECT sh.* FROM tombstone.shadows sh LOOP
        EXECUTE pg_catalog.format(
            'SELECT sum(n)::bigint, pg_catalog.string_agg(c || ''='' || n, '', '' ORDER BY c) '
            'FROM (SELECT _ts_cause AS c, count(*) AS n FROM tombstone.%I WHERE _ts_batch = $1 GROUP BY 1) x',
            s.shadow_name)
          INTO cnt, causes_text USING p_batch;
        CONTINUE WHEN cnt IS NULL;
        info := info || pg_catalog.jsonb_build_object(s.source_schema || '.' || s.source_name,
                                                      pg_catalog.jsonb_build_object('stored', cnt, 'causes', causes_text));
    END LOOP;
    RETURN QUERY
    SELECT b.id, k.t, (b.tables ->> k.t)::bigint, coalesce((info -> k.t ->> 'stored')::bigint, 0),
           coalesce(info -> k.t ->> 'causes', ''),
           b.stmt_time, b.role, b.application_name, b.client_addr,
           b.xid, tombstone._state(b), b.purge_after, b.sql
      FROM (SELECT pg_catalog.jsonb_object_keys(b.tables) AS t
            UNION SELECT pg_catalog.jsonb_object_keys(info)) k
     ORDER BY k.t;
END
$$;

-- purge_batch hard-deletes the tombstones of one batch now and marks it
-- purged. Held batches are refused.
CREATE OR REPLACE FUNCTION tombstone.purge_batch(p_batch bigint)
RETURNS TABLE (table_name text, purged bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    b tombstone.batches;
    s record;
    n bigint;
    upto timestamptz;
    counts jsonb := '{}';
BEGIN
    PERFORM tombstone._require_admin();
    SELECT * INTO b FROM tombstone.batches x WHERE x.id = p_batch FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('tombstone: batch %s does not exist', p_batch);
    END IF;
    IF b.held THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: batch %s is held', p_batch),
            HINT = pg_catalog.format('RELEASE BATCH %s first.', p_batch);
    END IF;
    FOR s IN SELECT sh.* FROM tombstone.shadows sh ORDER BY sh.source_schema, sh.source_name LOOP
        EXECUTE pg_catalog.format(
            'WITH d AS (DELETE FROM tombstone.%I WHERE _ts_batch = $1 RETURNING _ts_deleted_at, _ts_cause) '
            'SELECT count(*), max(_ts_deleted_at) FILTER (WHERE _ts_cause <> ''set_null'') FROM d', s.shadow_name)
          INTO n, upto USING p_batch;
        PERFORM tombstone._purged_through(s.source, upto);
        IF n > 0 THEN
            table_name := s.source_schema || '.' || s.source_name;
            purged := n;
            counts := counts || pg_catalog.jsonb_build_object(table_name, n);
            RETURN NEXT;
        END IF;
    END LOOP;
    UPDATE tombstone.batches SET purged_at = coalesce(purged_at, now()) WHERE id = p_batch;
    PERFORM tombstone._audit('PURGE BATCH', pg_catalog.jsonb_build_object('batch', p_batch),
                             pg_catalog.jsonb_build_object('purged', counts));
END
$$;

-- hold_batch keeps a batch from the reaper (and from purge_batch) until
-- released; release_batch undoes it. Both return the new held flag.
CREATE OR REPLACE FUNCTION tombstone.hold_batch(p_batch bigint, p_hold boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    UPDATE tombstone.batches SET held = p_hold WHERE id = p_batch;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('tombstone: batch %s does not exist', p_batch);
    END IF;
    PERFORM tombstone._audit(CASE WHEN p_hold THEN 'HOLD BATCH' ELSE 'RELEASE BATCH' END,
                             pg_catalog.jsonb_build_object('batch', p_batch), pg_catalog.jsonb_build_object('held', p_hold));
    RETURN p_hold;
END
$$;

CREATE OR REPLACE FUNCTION tombstone.release_batch(p_batch bigint) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT tombstone.hold_batch(p_batch, false) $$;

-- _batch_defaults completes a new batch row with what the database, not
-- the capturing statement, decides: purge_after, from the stored rules of
-- the tables the batch lists (the longest retention among them), after
-- checking that tables maps names to row counts — a malformed one would
-- stop the reaper and SHOW BATCHES. The id (identity) and token (default)
-- need no trigger: application roles may insert only client_addr, sql and
-- tables. An administrator's explicit purge_after is kept. While deletes
-- are frozen (FREEZE DELETES) it refuses the batch, and with it the
-- statement that captures into it (TS020).
CREATE OR REPLACE FUNCTION tombstone._batch_defaults() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    longest interval;
    frozen boolean;
    bad boolean;
    total numeric;
    n bigint;
BEGIN
    -- Counts of rows, each and in all far below bigint's range, and no
    -- more tables than a statement names: SHOW BATCHES and the reaper
    -- add them up. (One query, which every captured DELETE's batch row
    -- goes through.)
    -- (Written as whole numbers: SHOW BATCHES and the reaper read them
    -- as bigint, which takes neither 1.0 nor 1e3.)
    SELECT bool_or(k.frozen),
           bool_or(CASE WHEN e.key IS NULL THEN false
                        WHEN jsonb_typeof(e.value) = 'number'
                        THEN (e.value #>> '{}') OPERATOR(pg_catalog.!~) '^[0-9]+$'
                        ELSE true END),
           sum(CASE WHEN jsonb_typeof(e.value) = 'number' THEN e.value::numeric END),
           count(e.key),
           max(coalesce(p.retention, k.keep))
      INTO frozen, bad, total, n, longest
      FROM (SELECT coalesce((SELECT (st.value #>> '{}')::interval FROM tombstone.settings st WHERE st.key = 'protect.retention'),
                            interval '7 days') AS keep,
                   EXISTS (SELECT FROM tombstone.settings st WHERE st.key = 'deletes.frozen' AND st.value <> 'null') AS frozen) k
      LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(NEW.tables) = 'object' THEN NEW.tables END) e ON true
      LEFT JOIN tombstone.protected p ON p.kind = 'table' AND p.schema_name || '.' || p.table_name = e.key;
    -- (Under REPEATABLE READ and SERIALIZABLE the snapshot may be older
    -- than a freeze: _frozen looks closer.)
    IF frozen OR pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM tombstone._refuse_frozen();
    END IF;
    IF bad OR jsonb_typeof(NEW.tables) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tombstone: a batch''s tables must map table names to row counts';
    END IF;
    IF total > 1e15 OR n > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tombstone: a batch''s tables must count at most 10^15 rows of at most 10000 tables';
    END IF;
    -- The longest retention among the tables (a table without its own
    -- has the default); an administrator's explicit purge_after is kept.
    IF NEW.purge_after IS NULL THEN
        NEW.purge_after := NEW.stmt_time + longest;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER batch_defaults BEFORE INSERT ON tombstone.batches
    FOR EACH ROW EXECUTE FUNCTION tombstone._batch_defaults();
-- Under session_replication_role = replica too, as the capture triggers.
ALTER TABLE tombstone.batches ENABLE ALWAYS TRIGGER batch_defaults;
