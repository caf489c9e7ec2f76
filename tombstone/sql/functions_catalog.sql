-- functions_catalog.sql: what the proxy's catalog and the guards of a
-- rewritten DELETE read — which tables are protected, a table's cascade
-- closure and its signature, the catalog log, check_catalog,
-- check_captured, check_unprotected, fk_fires. Re-runnable, like every
-- functions_*.sql file.

-- protected_tables lists the protected tables: ordinary and partitioned
-- tables (not partitions: those are reached through their root) of the
-- protected schemas, minus tables whose mode is 'off', plus tables listed
-- with mode 'shadow' in other schemas. search_pos orders the schemas for
-- unqualified lookups.

-- protected_among is protected_tables for the relations p_rels only: one
-- index probe each, where every captured DELETE asks about its tables
-- (a database's whole pg_class otherwise).
CREATE OR REPLACE FUNCTION tombstone.protected_among(p_rels oid[])
RETURNS TABLE (relid oid, schema_name name, table_name name, search_pos integer,
               retention interval, filter_column name)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT c.oid, n.nspname, c.relname,
               coalesce(s.position, 2147483647),
               coalesce(t.retention,
                        (SELECT (st.value #>> '{}')::interval FROM tombstone.settings st WHERE st.key = 'protect.retention'),
                        interval '7 days'),
               t.filter_column
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN tombstone.protected s ON s.kind = 'schema' AND s.schema_name = n.nspname AND s.table_name = ''
          LEFT JOIN tombstone.protected t ON t.kind = 'table' AND t.schema_name = n.nspname AND t.table_name = c.relname
         WHERE c.oid = ANY (p_rels)
           AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
           AND n.nspname <> 'tombstone' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
           AND (s.kind IS NOT NULL OR t.mode = 'shadow')
           AND coalesce(t.mode, 'shadow') = 'shadow';
END
$$;

-- protected_tables lists the protected tables (partition roots and
-- tables outside partitioning) with their retention.
CREATE OR REPLACE FUNCTION tombstone.protected_tables()
RETURNS TABLE (relid oid, schema_name name, table_name name, search_pos integer,
               retention interval, filter_column name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT * FROM tombstone.protected_among(ARRAY(
        SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition))
$$;

-- _partition_tree is pg_partition_tree(p_rel)'s tables (p_rel and its
-- partitions, at every level; nothing for a table outside partitioning)
-- read from pg_inherits: pg_partition_tree locks each partition, and a
-- catalog load waiting on one that an open transaction dropped or
-- altered held up that transaction's own DELETE (which waits for the
-- load) and every other DELETE in the database, until the load timed out.
CREATE OR REPLACE FUNCTION tombstone._partition_tree(p_rel oid) RETURNS TABLE (relid oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    WITH RECURSIVE t(r) AS (
        SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = p_rel AND (c.relkind = 'p' OR c.relispartition)
        UNION ALL
        SELECT i.inhrelid FROM t JOIN pg_catalog.pg_inherits i ON i.inhparent = t.r
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid AND c.relispartition)
    SELECT t.r FROM t
$$;

-- _root maps a partition to the root of its partition tree: a DELETE
-- naming a partition is protected as its root (same shadow, same
-- signature).
CREATE OR REPLACE FUNCTION tombstone._root(rel oid) RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RETURN coalesce(pg_catalog.pg_partition_root(rel)::oid, rel);
END
$$;

-- catalog_signature fingerprints what the proxy's rewrite of a DELETE on
-- rel depends on: the live columns of rel (its partition root), of its
-- inheritance children and of every table reached from those through ON
-- DELETE CASCADE, the referencing
-- CASCADE / SET NULL / SET DEFAULT constraints of those tables, and the
-- protection settings' generation. Type oids, not format_type text,
-- so the result does not depend on the session's search_path.
--
-- It runs on every captured DELETE (through check_catalog), so it walks
-- pg_depend, which is indexed by referenced object, instead of
-- pg_constraint.confrelid, which is not.
-- _cascade_closure is what catalog_signature fingerprints: roots, rel
-- (its partition root) with its inheritance children, which the rewrite
-- deletes from; rels, those and every table their ON DELETE CASCADE /
-- SET NULL / SET DEFAULT constraints reach; fks, those constraints.
CREATE OR REPLACE FUNCTION tombstone._cascade_closure(rel regclass, OUT roots oid[], OUT rels oid[], OUT fks text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    root oid := tombstone._root(rel::oid);
    frontier oid[];
    searched oid[];
    children oid[];
    cascaded oid[];
    more text[];
BEGIN
    fks := '{}';
    -- A table's inheritance children (not partitions) are rewritten with
    -- it: their columns and cascades count too.
    WITH RECURSIVE k(oid) AS (
        SELECT root
        UNION
        SELECT i.inhrelid FROM k JOIN pg_catalog.pg_inherits i ON i.inhparent = k.oid
         WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = root) = 'r'
    )
    SELECT pg_catalog.array_agg(k.oid) INTO roots FROM k;
    rels := roots;
    frontier := rels;
    -- Walk the cascade graph breadth first; SET NULL / SET DEFAULT
    -- children are included but not walked further.
    WHILE cardinality(frontier) > 0 LOOP
        -- A foreign key may reference a partition of a table reached.
        searched := frontier || ARRAY(
            SELECT pt.relid FROM pg_catalog.unnest(frontier) x, tombstone._partition_tree(x) pt
             WHERE pt.relid <> x);
        SELECT pg_catalog.array_agg(DISTINCT c.conrelid),
               pg_catalog.array_agg(DISTINCT c.conrelid) FILTER (WHERE c.confdeltype = 'c'),
               pg_catalog.array_agg(DISTINCT c.oid::text || ':' || c.conrelid::text || ':' || c.confrelid::text || ':'
                                    || c.confdeltype::text || ':' || c.conkey::text || ':' || c.confkey::text)
          INTO children, cascaded, more
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = ANY (searched)
           AND d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
           AND c.contype = 'f' AND c.confrelid = d.refobjid AND c.confdeltype IN ('c', 'n', 'd')
           AND c.conparentid = 0;
        EXIT WHEN children IS NULL;
        fks := fks || more;
        SELECT pg_catalog.array_agg(x) INTO frontier
          FROM pg_catalog.unnest(cascaded) x
         WHERE NOT (x = ANY (rels));
        rels := rels || children;
        frontier := coalesce(frontier, '{}');
    END LOOP;
END
$$;

-- _signature fingerprints a _cascade_closure.
CREATE OR REPLACE FUNCTION tombstone._signature(rels oid[], fks text[]) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT pg_catalog.md5(coalesce((SELECT pg_catalog.string_agg(a.attrelid::text || '.' || a.attnum::text || ':' || a.attname::text || ':'
                                                                     || a.atttypid::text || ':' || a.atttypmod::text, ',' ORDER BY a.attrelid, a.attnum)
                                          FROM pg_catalog.pg_attribute a
                                         WHERE a.attrelid = ANY (rels) AND a.attnum > 0 AND NOT a.attisdropped), '') || '|'
                              || coalesce((SELECT pg_catalog.string_agg(f, ',' ORDER BY f) FROM pg_catalog.unnest(fks) f), '')
                              || '|' || coalesce((SELECT s.value::text FROM tombstone.settings s WHERE s.key = 'protect.generation'), ''))
    );
END
$$;

CREATE OR REPLACE FUNCTION tombstone.catalog_signature(rel regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT tombstone._signature(c.rels, c.fks) FROM tombstone._cascade_closure(rel) c $$;

-- _fk_runs_code reports whether comparing the columns of foreign key
-- p_con calls a function no superuser owns: its equality operators' or
-- a cast's to their input types. Postgres's own referential actions and
-- checks run such code as a table's owner; the rewrite of a DELETE's
-- cascade and UNDROP TABLE's re-created keys would run it as whoever
-- deletes or restores, so they refuse it (tombstone/catalog.go,
-- undrop_table).
CREATE OR REPLACE FUNCTION tombstone._fk_runs_code(p_con oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1
          FROM pg_constraint c,
               unnest(c.conpfeqop, c.conkey, c.confkey) u(op, fk_att, pk_att)
          JOIN pg_operator po ON po.oid = u.op
          JOIN pg_proc pf ON pf.oid = po.oprcode
         WHERE c.oid = p_con
           AND (NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = pf.proowner)
                OR EXISTS (SELECT 1
                             FROM pg_attribute fa, pg_attribute pa, pg_cast k JOIN pg_proc kf ON kf.oid = k.castfunc
                            WHERE fa.attrelid = c.conrelid AND fa.attnum = u.fk_att
                              AND pa.attrelid = c.confrelid AND pa.attnum = u.pk_att
                              AND (k.castsource = fa.atttypid AND k.casttarget = po.oprright
                                   OR k.castsource = pa.atttypid AND k.casttarget = po.oprleft)
                              AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = kf.proowner))))
$$;

-- _delete_runs_code reports whether a DELETE from p_rel (or from one of
-- its partitions) fires a trigger whose function runs as the deleting role
-- (not SECURITY DEFINER) and no superuser owns, or that has a WHEN
-- condition (which may call anything). Postgres's cascade runs a
-- child table's triggers as that table's owner; the rewrite deletes the
-- child's rows itself, as whoever deletes, so such a cascade is refused.
CREATE OR REPLACE FUNCTION tombstone._delete_runs_code(p_rel oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1
          FROM pg_trigger tg
          JOIN pg_proc p ON p.oid = tg.tgfoid
         WHERE tg.tgrelid IN (SELECT t.relid FROM tombstone._partition_tree(p_rel) t UNION SELECT p_rel)
           AND NOT tg.tgisinternal AND tg.tgenabled <> 'D' AND (tg.tgtype & 8) <> 0
           -- its WHEN condition runs as the deleting role whatever the
           -- function is
           AND (tg.tgqual IS NOT NULL
                OR NOT p.prosecdef AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = p.proowner)))
$$;

-- _catalog_changed raises TS001, which tells the proxy that it planned a
-- statement against a catalog that is out of date: it reloads it, and
-- re-plans a simple Query once. p_hint adds to the standard hint.
CREATE OR REPLACE FUNCTION tombstone._catalog_changed(p_detail text, p_hint text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TS001',
        MESSAGE = 'tombstone: catalog changed since the proxy planned this statement',
        DETAIL = p_detail,
        HINT = 'the proxy reloads its catalog; retry the statement' || coalesce(' ' || p_hint, '');
END
$$;

-- _catalog_logged records that the current transaction changes what a
-- rewritten DELETE depends on (008_catalog_log.sql): the DDL event
-- triggers and changes of the protection rules call it.
CREATE OR REPLACE FUNCTION tombstone._catalog_logged() RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    INSERT INTO tombstone.catalog_log DEFAULT VALUES ON CONFLICT (xid) DO NOTHING
$$;
REVOKE ALL ON FUNCTION tombstone._catalog_logged() FROM PUBLIC;

-- (The protection rules: every change of them bumps protect.generation,
-- which catalog_signature includes. Row by row, so that the reaper's
-- settings, say, change no catalog.)
CREATE OR REPLACE FUNCTION tombstone._catalog_logged_rules() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM tombstone._catalog_logged();
    ELSIF coalesce(NEW.key, OLD.key) = 'protect.generation' THEN
        PERFORM tombstone._catalog_logged();
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION tombstone._catalog_logged_rules() FROM PUBLIC;
CREATE OR REPLACE TRIGGER catalog_logged AFTER INSERT OR UPDATE OR DELETE ON tombstone.settings
    FOR EACH ROW EXECUTE FUNCTION tombstone._catalog_logged_rules();
CREATE OR REPLACE TRIGGER catalog_logged_truncate AFTER TRUNCATE ON tombstone.settings
    FOR EACH STATEMENT EXECUTE FUNCTION tombstone._catalog_logged_rules();
ALTER TABLE tombstone.settings ENABLE ALWAYS TRIGGER catalog_logged;
ALTER TABLE tombstone.settings ENABLE ALWAYS TRIGGER catalog_logged_truncate;

-- prune_catalog_log drops the log rows older than p_age that every
-- snapshot taken now sees as committed, and moves the horizon row up to
-- the newest of them: a catalog loaded in a snapshot older than the
-- horizon takes check_catalog's full check. Returns the rows dropped.
CREATE OR REPLACE FUNCTION tombstone.prune_catalog_log(p_age interval DEFAULT interval '1 day') RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    top xid8;
    n bigint;
BEGIN
    WITH gone AS (
        DELETE FROM tombstone.catalog_log l
         WHERE NOT l.horizon AND l.logged_at < pg_catalog.statement_timestamp() - p_age
           AND l.xid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
        RETURNING l.xid)
    SELECT pg_catalog.max(gone.xid), pg_catalog.count(*) INTO top, n FROM gone;
    IF top IS NOT NULL THEN
        DELETE FROM tombstone.catalog_log l WHERE l.horizon AND l.xid < top;
        INSERT INTO tombstone.catalog_log (xid, horizon) VALUES (top, true) ON CONFLICT (xid) DO NOTHING;
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION tombstone.prune_catalog_log(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.prune_catalog_log(interval) TO tombstone_admin;

-- catalog_state is what the proxy loads as the signature of each table a
-- rewritten DELETE may name, its catalog being read in the snapshot and
-- event trigger state p_snap ("snapshot;_event_triggers()"):
-- catalog_signature(rel), or "signature;root;p_snap" when check_catalog
-- may take its fast path for the table — every protected table of its
-- closure has its capture trigger, and no table its cascades reach has
-- row-level security enabled (what the full check asks per role and
-- session). p_snap NULL: the signature alone.
CREATE OR REPLACE FUNCTION tombstone.catalog_state(rel regclass, p_snap text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    closure record;
    sig text;
BEGIN
    closure := tombstone._cascade_closure(rel);
    sig := tombstone._signature(closure.rels, closure.fks);
    IF p_snap IS NULL
       OR tombstone._capture_missing(closure.rels || rel::oid) IS NOT NULL
       OR EXISTS (SELECT FROM pg_catalog.pg_class k
                   WHERE k.oid = ANY (closure.rels) AND NOT (k.oid = ANY (closure.roots)) AND k.relrowsecurity) THEN
        RETURN sig;
    END IF;
    RETURN sig || ';' || coalesce(pg_catalog.pg_partition_root(rel)::oid, rel::oid)::text || ';' || p_snap;
END
$$;

-- _event_triggers identifies the state of the event triggers that log
-- changes: their row versions (xmin) when both are enabled ALWAYS, else
-- NULL. A catalog loaded while they were in that very state may take
-- check_catalog's fast path: DDL run while they were disabled or gone
-- went unlogged, and enabling or re-creating them writes new versions.
CREATE OR REPLACE FUNCTION tombstone._event_triggers() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 2
                THEN pg_catalog.string_agg(e.xmin::text, ',' ORDER BY e.evtname) END
      FROM pg_catalog.pg_event_trigger e
     WHERE e.evtname IN ('tombstone_ddl', 'tombstone_drop') AND e.evtenabled = 'A'
$$;

-- check_catalog is the guard of every rewritten DELETE: it raises TS001
-- when the proxy planned the statement with a catalog that has changed
-- since, so that a stale catalog fails the statement instead of losing
-- the rows of a cascade it did not know about.
--
-- sig is a catalog_signature, or "signature;root;snapshot;triggers"
-- when the proxy loaded its catalog in that snapshot and catalog_state
-- said the fast path holds for the table: then, when rel (resolved as
-- the statement resolved it) still has that partition root, the event
-- triggers that log changes are as they were at the load (enabled, and
-- not touched since: _event_triggers), and no transaction logged in
-- catalog_log is invisible to that snapshot — nothing changed since the
-- load, in or outside this transaction — the statement may run without
-- the full check.
CREATE OR REPLACE FUNCTION tombstone.check_catalog(rel regclass, sig text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    closure record;
    hidden oid;
    loaded pg_catalog.pg_snapshot;
BEGIN
    IF pg_catalog.strpos(sig, ';') OPERATOR(pg_catalog.>) 0 THEN
        loaded := pg_catalog.split_part(sig, ';', 3)::pg_catalog.pg_snapshot;
        IF coalesce(pg_catalog.pg_partition_root(rel)::oid, rel::oid) OPERATOR(pg_catalog.=) pg_catalog.split_part(sig, ';', 2)::oid
           -- (tombstone._event_triggers(), written out: a SQL function
           -- called here is planned again in every transaction.)
           AND (SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 2
                            THEN pg_catalog.string_agg(e.xmin::text, ',' ORDER BY e.evtname) END
                  FROM pg_catalog.pg_event_trigger e
                 WHERE e.evtname IN ('tombstone_ddl', 'tombstone_drop') AND e.evtenabled = 'A')
               OPERATOR(pg_catalog.=) pg_catalog.split_part(sig, ';', 4)
           AND NOT EXISTS (SELECT FROM tombstone.catalog_log l
                            WHERE l.xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(loaded)
                              AND (l.horizon OR NOT pg_catalog.pg_visible_in_snapshot(l.xid, loaded))) THEN
            RETURN true;
        END IF;
        sig := pg_catalog.split_part(sig, ';', 1);
    END IF;
    closure := tombstone._cascade_closure(rel);
    IF tombstone._signature(closure.rels, closure.fks) IS NOT DISTINCT FROM sig THEN
        -- The triggers write the tombstones: without them the rows would
        -- go uncaptured (created by a role that may not add triggers to
        -- the table, or disabled by its owner).
        hidden := tombstone._capture_missing(closure.rels || rel::oid);
        IF hidden IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('tombstone: DELETE from %s is refused: protected table %s has no enabled capture trigger, and its rows would go uncaptured',
                                            rel, hidden::regclass),
                HINT = 'Run tombstone init (or SELECT tombstone.sync_all()) as a superuser or the table''s owner; ALTER TABLE … ENABLE ALWAYS TRIGGER _ts_capture if it was disabled.';
        END IF;
        -- Postgres's cascades are not limited by row-level security; the
        -- rewrite's capture of them is. Where a policy applies to the
        -- deleting role on a table the cascades reach, rows could go
        -- uncaptured: refused.
        -- Only tables whose rows are captured count: protected ones, and
        -- those whose cascades reach protected ones.
        SELECT k.oid INTO hidden FROM pg_catalog.pg_class k
         WHERE k.oid = ANY (closure.rels) AND NOT (k.oid = ANY (closure.roots)) AND k.relrowsecurity
           AND pg_catalog.row_security_active(k.oid)
           AND EXISTS (
               WITH RECURSIVE down(oid) AS (
                   SELECT k.oid
                   UNION
                   SELECT f.conrelid FROM down JOIN pg_catalog.pg_constraint f
                       ON f.confrelid = down.oid AND f.contype = 'f' AND f.confdeltype = 'c')
               SELECT 1 FROM tombstone._protected_roots(ARRAY(SELECT down.oid FROM down)))
         LIMIT 1;
        IF hidden IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = pg_catalog.format('tombstone: DELETE from %s is refused: its foreign keys reach %s, where row-level security applies to role %s, and the rows Postgres''s cascade removes there could not all be captured',
                                            rel, hidden::regclass, current_user),
                HINT = 'Delete the rows of that table first (captured under its policies), or delete as a role that row-level security does not apply to (the table''s owner, or one with BYPASSRLS).';
        END IF;
        RETURN true;
    END IF;
    IF (SELECT c.relpersistence FROM pg_catalog.pg_class c WHERE c.oid = rel) = 't' THEN
        -- The proxy resolves names without the session's temporary
        -- schema: a new catalog would not help.
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: %s names a temporary table here, which the proxy took for the protected table of that name', rel),
            HINT = pg_catalog.format('Name the temporary table pg_temp.%I; nothing was deleted', (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = rel));
    END IF;
    PERFORM tombstone._catalog_changed(pg_catalog.format('table %s', rel));
    RETURN true;
END
$$;

-- check_captured fails a DELETE whose capture of an inheritance child's
-- rows, read from the child by ctid as the statement's snapshot shows
-- them, found fewer than the DELETE removed (p_deleted; NULL: none): a
-- row the DELETE reached only after waiting for a concurrent update (its
-- new version), or one the child's row-level security hides from the
-- reader. Nothing is deleted; the first can be retried.
CREATE OR REPLACE FUNCTION tombstone.check_captured(rel regclass, p_deleted bigint, p_found bigint) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    IF coalesce(p_deleted, 0) = p_found THEN
        RETURN true;
    END IF;
    IF pg_catalog.row_security_active(rel) THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: row-level security on %s hides rows this DELETE removes from it, which cannot be captured', rel),
            HINT = pg_catalog.format('DELETE FROM ONLY the parent, and from %s itself; nothing was deleted', rel);
    END IF;
    RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = pg_catalog.format('tombstone: rows of %s changed while this DELETE waited for them, and cannot be captured', rel),
        HINT = 'Retry the statement; nothing was deleted.';
END
$$;

-- check_unprotected guards a DELETE the proxy did not capture, because
-- its catalog names no protected table by the target's name: if the
-- table the server resolved is protected after all (renamed or moved
-- into a protected schema in an open transaction or earlier in the same
-- query, created moments ago), it fails the statement with TS001, as
-- check_catalog does, instead of letting rows go uncaptured. Evaluated
-- once per statement (no column in its argument).
-- A view, or a table with a DELETE rule, that reaches a protected table
-- (through its rules, at any depth) would remove that table's rows
-- uncaptured: refused with 0A000. (An auto-updatable view deletes from
-- its one base table only; one that also reads a protected table in a
-- subquery is refused too, on the safe side.)
-- Rows the ON DELETE CASCADE (SET NULL, SET DEFAULT) foreign keys of what
-- the DELETE removes would remove (or change) in a protected table, at any
-- depth: the proxy captures those when its catalog knows the table as one
-- cascades pass through, so here it does not and is stale: TS001. Reached
-- through a view or rule instead: 0A000.
CREATE OR REPLACE FUNCTION tombstone.check_unprotected(rel regclass, p_only boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    via_rules oid[];
    kids oid[] := '{}';
    itself boolean;
    by_rule regclass;
    by_kid regclass;
    fk_self oid[];
    fk_rule oid[];
    by_fk regclass;
    by_fk_rule regclass;
BEGIN
    -- What rel's rules reach (rel included), at any depth.
    WITH RECURSIVE reach(oid) AS (
        SELECT rel::oid
        UNION
        SELECT d.refobjid
          FROM reach
          JOIN pg_catalog.pg_rewrite r ON r.ev_class = reach.oid
               -- A DELETE rule decides where a DELETE goes; else a view's
               -- own query does, unless an INSTEAD OF DELETE trigger (the
               -- server runs its code, which the proxy never sees) does.
               AND (r.ev_type = '4'
                    OR r.ev_type = '1'
                       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r4
                                        WHERE r4.ev_class = reach.oid AND r4.ev_type = '4')
                       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                                        WHERE tg.tgrelid = reach.oid AND (tg.tgtype & 72) = 72))
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
    )
    SELECT pg_catalog.array_agg(reach.oid) INTO via_rules FROM reach;
    -- Rows that go with rel's: its inheritance children's, unless ONLY.
    IF NOT p_only THEN
        WITH RECURSIVE k(oid) AS (
            SELECT rel::oid
            UNION
            SELECT i.inhrelid FROM k JOIN pg_catalog.pg_inherits i ON i.inhparent = k.oid
        )
        SELECT pg_catalog.array_agg(k.oid) INTO kids FROM k WHERE k.oid <> rel::oid;
    END IF;
    kids := coalesce(kids, '{}');
    -- Where the foreign keys lead from all of them: every constraint
    -- (partition clones too) that references a table reached, followed
    -- further only through CASCADE; fk_rule, from tables only the rules
    -- reach. pg_depend, not pg_constraint.confrelid, which has no index.
    WITH RECURSIVE down(oid, walk, ruled) AS (
        SELECT x, true, x <> rel::oid AND NOT (x = ANY (kids))
          FROM pg_catalog.unnest(via_rules || kids) x
        UNION
        SELECT c.conrelid, c.confdeltype = 'c', down.ruled
          FROM down
          JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = down.oid
                                     AND d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
          JOIN pg_catalog.pg_constraint c ON c.oid = d.objid AND c.contype = 'f' AND c.confrelid = down.oid
                                         AND c.confdeltype IN ('c', 'n', 'd')
         WHERE down.walk
    )
    SELECT coalesce(pg_catalog.array_agg(down.oid) FILTER (WHERE NOT down.ruled), '{}'),
           coalesce(pg_catalog.array_agg(down.oid) FILTER (WHERE down.ruled), '{}')
      INTO fk_self, fk_rule
      FROM down
     WHERE NOT (down.oid = ANY (via_rules || kids));
    -- One look at the protection rules for all of them. Each message
    -- names the nearest such table (the walks list them breadth first).
    SELECT coalesce(bool_or(pr.relid = rel::oid), false),
           (pg_catalog.array_agg(pr.root::regclass ORDER BY pr.k) FILTER (WHERE pr.relid <> rel::oid AND pr.relid = ANY (via_rules)))[1],
           (pg_catalog.array_agg(pr.root::regclass ORDER BY pr.k) FILTER (WHERE pr.relid <> rel::oid AND pr.relid = ANY (kids)))[1],
           (pg_catalog.array_agg(pr.root::regclass ORDER BY pr.k) FILTER (WHERE pr.relid = ANY (fk_rule)))[1],
           (pg_catalog.array_agg(pr.root::regclass ORDER BY pr.k) FILTER (WHERE pr.relid = ANY (fk_self)))[1]
      INTO itself, by_rule, by_kid, by_fk_rule, by_fk
      FROM (SELECT p.relid, p.root, pg_catalog.array_position(via_rules || kids || fk_self || fk_rule, p.relid) AS k
              FROM tombstone._protected_roots(via_rules || kids || fk_self || fk_rule) p) pr;
    -- A table created by this very transaction (not yet committed, so
    -- the proxy's catalog cannot know it) holds only rows this
    -- transaction wrote, which nobody else has seen: deleting them needs
    -- no tombstones, as a plain DELETE would not. Created, not renamed or
    -- moved (those rewrite its pg_class row): the row of its system
    -- column ctid is written once, when the table is. A row this
    -- session sees whose writer is still in progress is this
    -- transaction's (a savepoint's too).
    IF itself AND pg_catalog.txid_current_if_assigned() IS NOT NULL
       AND pg_catalog.txid_status((pg_catalog.txid_current_if_assigned() >> 32 << 32)
                                  + (SELECT a.xmin::text::bigint FROM pg_catalog.pg_attribute a
                                      WHERE a.attrelid = rel AND a.attnum = -1)) = 'in progress' THEN
        itself := false;
    END IF;
    IF itself THEN
        PERFORM tombstone._catalog_changed(
            pg_catalog.format('table %s is protected, but the proxy did not know it by this name', rel),
            '(a table renamed, moved or created in an open transaction is known only once that commits)');
    END IF;
    IF by_rule IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: a DELETE on %s reaches protected table %s through a view or rule, where its rows cannot be captured', rel, by_rule),
            HINT = pg_catalog.format('DELETE from %s itself; nothing was deleted', by_rule);
    END IF;
    IF by_kid IS NOT NULL THEN
        -- The proxy captures an inheritance child's rows when its catalog
        -- knows the child.
        PERFORM tombstone._catalog_changed(
            pg_catalog.format('a DELETE on %s also removes rows of its inheritance child %s, a protected table, which the proxy did not plan for', rel, by_kid),
            pg_catalog.format('(an inheritance added in an open transaction is known only once that commits), or DELETE FROM ONLY %s', rel));
    END IF;
    IF by_fk_rule IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: a DELETE on %s reaches protected table %s through a view or rule and ON DELETE foreign keys, where its rows cannot be captured', rel, by_fk_rule),
            HINT = 'DELETE from the tables the view or rule deletes from; nothing was deleted';
    END IF;
    IF by_fk IS NOT NULL THEN
        PERFORM tombstone._catalog_changed(
            pg_catalog.format('an ON DELETE foreign key leads from %I.%I to protected table %s, which the proxy did not plan for',
                              (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel),
                              (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = rel), by_fk),
            '(a foreign key added in an open transaction is known only once that commits). Outside the protected schemas, name such a table with its schema: the proxy resolves unqualified names through the protected schemas only');
    END IF;
    RETURN true;
END
$$;

-- fk_fires reports whether Postgres's ON DELETE action of foreign key
-- p_name on p_child runs in this session: the action trigger on the
-- referenced table is enabled as session_replication_role decides
-- (ORIGIN: not under replica; REPLICA: only under replica; ALWAYS;
-- DISABLED: never). A rewritten DELETE runs its own cascade only where
-- Postgres would. A key whose trigger it cannot find counts as ORIGIN.
CREATE OR REPLACE FUNCTION tombstone.fk_fires(p_child regclass, p_name name) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE coalesce((SELECT t.tgenabled
                            FROM pg_catalog.pg_constraint c
                            JOIN pg_catalog.pg_trigger t ON t.tgconstraint = c.oid AND t.tgrelid = c.confrelid
                           WHERE c.conrelid = p_child AND c.conname = p_name AND c.contype = 'f'
                             AND (t.tgtype::int & 8) <> 0
                           LIMIT 1), 'O')
           WHEN 'A' THEN true
           WHEN 'D' THEN false
           WHEN 'R' THEN pg_catalog.current_setting('session_replication_role') = 'replica'
           ELSE pg_catalog.current_setting('session_replication_role') <> 'replica' END
$$;
GRANT EXECUTE ON FUNCTION tombstone.fk_fires(regclass, name) TO PUBLIC;

-- Grants. Functions are executable by PUBLIC by default; these are what
-- every rewritten DELETE calls.
GRANT EXECUTE ON FUNCTION tombstone._catalog_changed(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_catalog(regclass, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_unprotected(regclass, boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_captured(regclass, bigint, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.catalog_signature(regclass) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.catalog_state(regclass, text) TO PUBLIC;
