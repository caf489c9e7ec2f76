-- functions_reaper.sql: the reaper's side of the store. The reaper
-- (tombstone/reaper.go) calls reap_chunk and reap_trash in a loop, each
-- call in its own short transaction with SET LOCAL lock_timeout and
-- statement_timeout, so a chunk never holds locks for long and a chunk
-- that cannot get a lock fails (55P03/57014) and is retried later instead
-- of waiting behind application traffic. Re-runnable, like every functions_*.sql;
-- admin-only (tombstone._require_admin) and SECURITY INVOKER.
--
-- Safety rules every function here keeps:
--   * Time is the database's: a batch is due when purge_after <= now().
--   * Held batches (HOLD BATCH) and held trash are never touched, and
--     nothing is touched while tombstone.settings 'reaper.paused' is true.
--     The flag is read FOR SHARE at the start of every chunk, so a PAUSE
--     REAPER that commits waits for the chunk in flight and no chunk
--     starts after it.
--   * A batch is marked purged only in the transaction that deletes its
--     last shadow row: a reaper killed at any moment leaves every batch
--     either untouched, partly purged (purged_at NULL, the next run goes
--     on) or wholly purged.
--   * Batch rows are locked FOR UPDATE SKIP LOCKED: a batch being restored
--     or held right now is left for a later run, never waited for.
--   * Fencing: with a Redis lease each chunk passes the lease's token,
--     which _reaper_fence compares with (and stores in) tombstone.settings
--     'reaper.fence' in the chunk's own transaction. A reaper whose lease
--     was taken over by a newer one (higher token) fails with TS010 before
--     it deletes anything.

-- _reaper_fence checks the fencing token of the reaper running this
-- chunk: a token lower than the newest one seen raises TS010; otherwise
-- the token is stored. The settings row stays locked until the chunk
-- commits, so an older and a newer reaper never run chunks at once. A
-- NULL token (advisory-lock mode: the lock lives in the session doing the
-- work) checks nothing.
CREATE OR REPLACE FUNCTION tombstone._reaper_fence(p_token bigint) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER -- (administrators do not write tombstone.settings themselves; EXECUTE: tombstone_admin)
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    newest bigint;
BEGIN
    IF p_token IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO tombstone.settings AS st (key, value) VALUES ('reaper.fence', pg_catalog.to_jsonb(p_token))
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.statement_timestamp()
     WHERE (st.value #>> '{}')::bigint <= p_token;
    IF NOT FOUND THEN
        SELECT (st.value #>> '{}')::bigint INTO newest FROM tombstone.settings st WHERE st.key = 'reaper.fence';
        RAISE EXCEPTION USING ERRCODE = 'TS010',
            MESSAGE = pg_catalog.format('tombstone: reaper lease lost: fencing token %s is older than %s', p_token, newest),
            HINT = 'Another reaper has taken over; this one stops.';
    END IF;
END
$$;

-- reaper_fence_token is the newest fencing token any reaper used here,
-- 0 when none: a reaper that acquires a Redis lease makes its token
-- larger, so that a Redis that lost its keys cannot hand out a token the
-- database would refuse.
CREATE OR REPLACE FUNCTION tombstone.reaper_fence_token() RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT coalesce((SELECT (st.value #>> '{}')::bigint FROM tombstone.settings st WHERE st.key = 'reaper.fence'), 0) $$;

-- reaper_paused reads the pause flag; with p_lock it is read FOR SHARE
-- (see above).
CREATE OR REPLACE FUNCTION tombstone._reaper_paused(p_lock boolean) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER -- (the lock needs a privilege on settings administrators lack; EXECUTE: tombstone_admin)
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_lock THEN
        SELECT st.value INTO v FROM tombstone.settings st WHERE st.key = 'reaper.paused' FOR SHARE;
    ELSE
        SELECT st.value INTO v FROM tombstone.settings st WHERE st.key = 'reaper.paused';
    END IF;
    RETURN coalesce(v = 'true'::jsonb OR v = '"true"'::jsonb, false);
END
$$;

-- _reaper_begin starts a unit of reaper work: the caller must be an
-- admin; true means the reaper is paused (do nothing); otherwise the
-- caller's fencing token is checked (TS010 when a newer reaper holds the
-- lease).
CREATE OR REPLACE FUNCTION tombstone._reaper_begin(p_token bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    IF tombstone._reaper_paused(true) THEN
        RETURN true;
    END IF;
    PERFORM tombstone._reaper_fence(p_token);
    RETURN false;
END
$$;

-- _batch_estimate is an upper bound of the tombstones a batch still has:
-- the rows its statement removed per table (restores only lower it).
CREATE OR REPLACE FUNCTION tombstone._batch_estimate(p_tables jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT coalesce(pg_catalog.sum(CASE WHEN pg_catalog.jsonb_typeof(e.value) = 'number' THEN (e.value #>> '{}')::bigint ELSE 1 END), 0)::bigint
      FROM pg_catalog.jsonb_each(coalesce(p_tables, '{}')) e
$$;

-- _purged_through raises the mark of the tombstones purged from the
-- shadow of p_source to p_upto (tombstone.shadows.purged_through).
CREATE OR REPLACE FUNCTION tombstone._purged_through(p_source oid, p_upto timestamptz) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    UPDATE tombstone.shadows sh SET purged_through = p_upto
     WHERE sh.source = p_source AND p_upto IS NOT NULL AND (sh.purged_through IS NULL OR sh.purged_through < p_upto)
$$;

-- reap_chunk purges one bounded chunk: due batches in expiry order whose
-- estimated rows add up to about p_max_rows (at least one batch), locked
-- FOR UPDATE SKIP LOCKED and re-checked under the lock (a HOLD BATCH that
-- committed meanwhile wins). Whole batches go with one
-- DELETE … WHERE _ts_batch = ANY(…) per shadow table over its batch index,
-- and are marked purged in the same statement's transaction. A single batch
-- bigger than p_max_rows is cut: at most p_max_rows of its rows per call,
-- marked purged by the call that finds none left.
--
-- It returns what it did: batches marked purged, rows deleted, whether
-- the reaper is paused (nothing done), and whether anything due was left
-- (more: call again). A call that returns more = false and did nothing
-- found only batches locked by others (or none).
CREATE OR REPLACE FUNCTION tombstone.reap_chunk(p_max_rows bigint, p_token bigint DEFAULT NULL)
RETURNS TABLE (batches bigint, rows bigint, paused boolean, more boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    ids bigint[] := '{}';
    est bigint := 0;
    big bigint;
    budget bigint;
    s record;
    n bigint;
    done boolean;
    b record;
    upto timestamptz;
BEGIN
    batches := 0; rows := 0; more := false;
    paused := tombstone._reaper_begin(p_token);
    IF paused THEN
        RETURN NEXT;
        RETURN;
    END IF;
    p_max_rows := greatest(coalesce(p_max_rows, 50000), 1);

    -- Pick and lock: expiry order over the partial purge_after index,
    -- until the estimates reach p_max_rows. Held and locked batches are
    -- skipped; FOR UPDATE re-evaluates the WHERE on the newest row version.
    FOR b IN
        SELECT x.id, tombstone._batch_estimate(x.tables) AS est
          FROM tombstone.batches x
         WHERE x.purged_at IS NULL AND NOT x.held AND x.purge_after <= now()
         ORDER BY x.purge_after, x.id
         LIMIT 100000
           FOR UPDATE SKIP LOCKED
    LOOP
        IF pg_catalog.cardinality(ids) > 0 AND est + b.est > p_max_rows THEN
            more := true;
            EXIT;
        END IF;
        ids := ids || b.id;
        est := est + b.est;
        IF est >= p_max_rows THEN
            -- One more due batch beyond this chunk means "more"; the loop
            -- comes back round to find out.
            CONTINUE;
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(ids) = 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;
    -- Rows locked beyond the chunk were locked only by this transaction's
    -- scan and are released at commit; nothing else was changed in them.

    IF pg_catalog.cardinality(ids) = 1 AND est > p_max_rows THEN
        -- One big batch: cut it.
        big := ids[1];
        budget := p_max_rows;
        FOR s IN SELECT sh.source, sh.shadow_name FROM tombstone.shadows sh ORDER BY sh.shadow_name LOOP
            CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('tombstone.%I', s.shadow_name)) IS NULL;
            EXIT WHEN budget = 0;
            EXECUTE pg_catalog.format(
                'WITH d AS (DELETE FROM tombstone.%1$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM tombstone.%1$I WHERE _ts_batch = $1 LIMIT $2)) '
                'RETURNING _ts_deleted_at, _ts_cause) '
                'SELECT count(*), max(_ts_deleted_at) FILTER (WHERE _ts_cause <> ''set_null'') FROM d',
                s.shadow_name) INTO n, upto USING big, budget;
            PERFORM tombstone._purged_through(s.source, upto);
            rows := rows + n;
            budget := budget - n;
        END LOOP;
        -- Every shadow that deleted fewer rows than its budget has none of
        -- the batch left; when the budget ran out, rows may remain: look.
        done := true;
        IF budget = 0 THEN
            FOR s IN SELECT sh.shadow_name FROM tombstone.shadows sh LOOP
                CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('tombstone.%I', s.shadow_name)) IS NULL;
                EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT 1 FROM tombstone.%I WHERE _ts_batch = $1)', s.shadow_name)
                   INTO done USING big;
                EXIT WHEN NOT done;
            END LOOP;
        END IF;
        IF done THEN
            UPDATE tombstone.batches x SET purged_at = now() WHERE x.id = big;
            batches := 1;
        END IF;
        more := true;
        RETURN NEXT;
        RETURN;
    END IF;

    FOR s IN SELECT sh.source, sh.shadow_name FROM tombstone.shadows sh ORDER BY sh.shadow_name LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('tombstone.%I', s.shadow_name)) IS NULL;
        EXECUTE pg_catalog.format(
            'WITH d AS (DELETE FROM tombstone.%I WHERE _ts_batch = ANY ($1) RETURNING _ts_deleted_at, _ts_cause) '
            'SELECT count(*), max(_ts_deleted_at) FILTER (WHERE _ts_cause <> ''set_null'') FROM d', s.shadow_name)
          INTO n, upto USING ids;
        PERFORM tombstone._purged_through(s.source, upto);
        rows := rows + n;
    END LOOP;
    UPDATE tombstone.batches x SET purged_at = now() WHERE x.id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    batches := n;
    more := more OR est >= p_max_rows;
    RETURN NEXT;
END
$$;

-- _drop_trashed drops one expired trash table with the installer's rights
-- (the reaper, a tombstone_admin member, does not own applications'
-- tables). It drops only what the trash registry says is expired, not
-- held, not restored, and still the very table that was trashed, inside
-- tombstone_trash. EXECUTE is granted to tombstone_admin only.
CREATE OR REPLACE FUNCTION tombstone._drop_trashed(p_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    t tombstone.trash;
BEGIN
    SELECT * INTO t FROM tombstone.trash x
     WHERE x.id = p_id AND x.purged_at IS NULL AND x.restored_at IS NULL AND NOT x.held
       AND x.purge_after <= now() AND x.trash_schema = 'tombstone_trash';
    IF NOT FOUND OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.trash_schema, t.trash_name)) IS DISTINCT FROM t.source THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: trash entry %s is not an expired trash table', p_id);
    END IF;
    EXECUTE pg_catalog.format('DROP TABLE %I.%I CASCADE', t.trash_schema, t.trash_name);
    PERFORM tombstone._trash_role_gone(t.wiring ->> 'holder');
END
$$;
REVOKE ALL ON FUNCTION tombstone._drop_trashed(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._drop_trashed(bigint) TO tombstone_admin;

-- reap_trash drops at most one expired trash table (DROP TABLE …
-- CASCADE: its partitions, also in the trash, go with it) and marks it
-- purged. The trash row is locked FOR UPDATE SKIP LOCKED and re-checked,
-- so an UNDROP TABLE that won the race keeps its table; a name that no
-- longer is the trashed table (its oid differs, or it is gone) is only
-- marked purged — the reaper drops nothing it did not put there.
-- Returns the dropped table as "schema.table" (its original name), or
-- NULL when there was nothing to do (or the reaper is paused; see
-- paused).
CREATE OR REPLACE FUNCTION tombstone.reap_trash(p_token bigint DEFAULT NULL)
RETURNS TABLE (table_name text, trash_name text, dropped boolean, paused boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    t tombstone.trash;
    rel oid;
BEGIN
    dropped := false;
    paused := tombstone._reaper_begin(p_token);
    IF paused THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO t FROM tombstone.trash x
     WHERE x.purged_at IS NULL AND x.restored_at IS NULL AND NOT x.held AND x.purge_after <= now()
     ORDER BY x.purge_after, x.id
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NEXT;
        RETURN;
    END IF;
    table_name := t.original_schema || '.' || t.original_name;
    trash_name := t.trash_schema || '.' || t.trash_name;
    rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.trash_schema, t.trash_name));
    IF rel IS NOT NULL AND rel = t.source THEN
        PERFORM tombstone._drop_trashed(t.id);
        dropped := true;
    END IF;
    UPDATE tombstone.trash x SET purged_at = now() WHERE x.id = t.id;
    RETURN NEXT;
END
$$;

-- reaper_due is the reaper's dry run: per due batch and table, the
-- tombstones a run would purge now (held batches and locked ones
-- excluded, as the reaper would), then the due trash tables (batch
-- NULL). Nothing is changed or locked.
CREATE OR REPLACE FUNCTION tombstone.reaper_due(p_limit integer DEFAULT NULL)
RETURNS TABLE (batch bigint, table_name text, rows bigint, purge_after timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    ids bigint[];
    s record;
BEGIN
    PERFORM tombstone._require_admin();
    ids := ARRAY(SELECT x.id FROM tombstone.batches x
                  WHERE x.purged_at IS NULL AND NOT x.held AND x.purge_after <= now()
                  ORDER BY x.purge_after, x.id LIMIT p_limit);
    FOR s IN SELECT sh.* FROM tombstone.shadows sh ORDER BY sh.source_schema, sh.source_name LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('tombstone.%I', s.shadow_name)) IS NULL;
        RETURN QUERY EXECUTE pg_catalog.format(
            'SELECT x._ts_batch, %L::text, count(*)::bigint, b.purge_after FROM tombstone.%I x '
            'JOIN tombstone.batches b ON b.id = x._ts_batch WHERE x._ts_batch = ANY ($1) GROUP BY 1, 4',
            s.source_schema || '.' || s.source_name, s.shadow_name) USING ids;
    END LOOP;
    -- Due batches with no tombstones left (all restored) are still marked
    -- purged by a run: list them with 0 rows.
    RETURN QUERY
    SELECT x.id, NULL::text, 0::bigint, x.purge_after FROM tombstone.batches x WHERE x.id = ANY (ids)
       AND x.restored_at IS NOT NULL;
    RETURN QUERY
    SELECT NULL::bigint, t.original_schema || '.' || t.original_name || ' (trash ' || t.trash_name || ')',
           NULL::bigint, t.purge_after
      FROM tombstone.trash t
     WHERE t.purged_at IS NULL AND t.restored_at IS NULL AND NOT t.held AND t.purge_after <= now()
     ORDER BY t.purge_after, t.id;
END
$$;

-- reaper_next_expiry is when the next batch or trash table the reaper
-- may purge expires (held ones excluded), NULL when none is waiting.
CREATE OR REPLACE FUNCTION tombstone.reaper_next_expiry() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.min(p) FROM (
        SELECT pg_catalog.min(x.purge_after) AS p FROM tombstone.batches x
         WHERE x.purged_at IS NULL AND NOT x.held AND x.purge_after > now()
        UNION ALL
        SELECT pg_catalog.min(t.purge_after) FROM tombstone.trash t
         WHERE t.purged_at IS NULL AND t.restored_at IS NULL AND NOT t.held AND t.purge_after > now()) m
$$;

REVOKE ALL ON FUNCTION tombstone._reaper_fence(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._reaper_fence(bigint) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone._reaper_begin(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._reaper_begin(bigint) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone.reap_chunk(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.reap_chunk(bigint, bigint) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone.reap_trash(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.reap_trash(bigint) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone._reaper_paused(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._reaper_paused(boolean) TO tombstone_admin;
