-- functions_capture.sql: the database writes the tombstones.
--
-- A rewritten DELETE removes the rows and writes the batch row; the rows'
-- copies are written by a trigger on each protected table, from what the
-- table itself says it lost (the statement's transition table, or OLD),
-- as the owner of this schema. No application role may write a shadow
-- table's deleted rows itself: a tombstone is always a row the database
-- deleted, in the table it deleted it from, in the batch of the statement
-- that deleted it.
--
-- Which batch: the batch row's BEFORE INSERT trigger (_batch_defaults)
-- names it in the transaction-local setting tombstone.batch. A trigger
-- uses that batch only if it belongs to this transaction and to this
-- client message (statement_timestamp()), and lists the table; each table
-- is captured once per batch (tombstone.claimed), so rows a function
-- deletes later in the same message are not attached to it. Anything else
-- — a delete on a direct connection, one inside a function, the restore's
-- overwrite — is left alone, as before: the proxy's rewrite is what
-- captures, the trigger only writes what it captured.
--
-- Per protected table (its partition root, or itself), sync_shadow keeps:
--   tombstone._ts_cap_<oid>()  the trigger function, generated with the
--                              table's columns and cascading keys;
--   _ts_capture  AFTER DELETE, FOR EACH STATEMENT with the transition
--                table _ts_old on the table and each of its partitions;
--                FOR EACH ROW on members of an inheritance tree (whose
--                parents' transition tables hold the children's rows cut
--                down to the parent's columns);
--   _ts_truncate BEFORE TRUNCATE, copying the rows about to go;
--   _ts_set_null AFTER UPDATE FOR EACH ROW of the columns of ON DELETE SET
--                NULL / SET DEFAULT keys, keeping the old values of the
--                rows whose parent is gone (cause 'set_null');
-- all enabled ALWAYS, so session_replication_role does not silence them.
--
-- A row's cause is 'cascade' when a parent it references through an ON
-- DELETE CASCADE key is gone by the end of the statement (the cascade
-- would have removed it with that parent), 'delete' otherwise; a row an
-- ON DELETE SET NULL / SET DEFAULT key changed is kept as 'set_null'.

-- _capture_batch returns the batch rows deleted from p_rel (named
-- p_table in batches.tables) by the current statement belong to, or NULLs.
-- p_claim: capture p_rel once per batch (statement-level triggers).
CREATE OR REPLACE FUNCTION tombstone._capture_batch(p_rel oid, p_table text, p_claim boolean,
                                                    OUT id bigint, OUT token uuid)
LANGUAGE plpgsql
AS $$
DECLARE
    cur text := pg_catalog.current_setting('tombstone.batch', true);
    claimed text;
BEGIN
    IF cur IS NULL OR cur OPERATOR(pg_catalog.!~) '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    SELECT b.id, b.token INTO id, token
      FROM tombstone.batches b
     WHERE b.id OPERATOR(pg_catalog.=) cur::bigint
       AND b.xid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id()
       AND b.stmt_time OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp()
       AND b.purged_at IS NULL
       AND b.tables OPERATOR(pg_catalog.?) p_table;
    IF id IS NULL OR NOT p_claim THEN
        RETURN;
    END IF;
    claimed := coalesce(pg_catalog.current_setting('tombstone.claimed', true), '');
    IF pg_catalog.strpos(claimed, ',' || p_rel::text || ',') OPERATOR(pg_catalog.>) 0 THEN
        id := NULL;
        token := NULL;
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('tombstone.claimed', claimed || ',' || p_rel::text || ',', true);
END
$$;
REVOKE ALL ON FUNCTION tombstone._capture_batch(oid, text, boolean) FROM PUBLIC;

-- _capture_gone is the condition, on the row p_row ('o', 'OLD'), that
-- for one of rel's foreign keys whose ON DELETE action is among
-- p_actions ('c' cascade, 'n' set null, 'd' set default) the referenced
-- row is gone by now; NULL when rel has no such key. The key's own
-- operators compare, as the cascade does.
CREATE OR REPLACE FUNCTION tombstone._capture_gone(rel oid, p_row text, p_actions "char"[]) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    k record;
    conds text[] := '{}';
BEGIN
    FOR k IN
        SELECT con.confrelid, p.relkind,
               array_agg(pg_catalog.format('%s.%I IS NOT NULL', p_row, ca.attname) ORDER BY u.ord) AS notnull,
               array_agg(pg_catalog.format('_ts_p.%I OPERATOR(%I.%s) %s.%I',
                                           pa.attname, opn.nspname, op.oprname, p_row, ca.attname) ORDER BY u.ord) AS eq
          FROM pg_catalog.pg_constraint con
          JOIN pg_catalog.pg_class p ON p.oid = con.confrelid
          CROSS JOIN LATERAL unnest(con.conkey, con.confkey, con.conpfeqop) WITH ORDINALITY u(ck, pk, op, ord)
          JOIN pg_catalog.pg_attribute ca ON ca.attrelid = rel AND ca.attnum = u.ck
          JOIN pg_catalog.pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = u.pk
          JOIN pg_catalog.pg_operator op ON op.oid = u.op
          JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace
         WHERE con.conrelid = rel AND con.contype = 'f' AND con.confdeltype = ANY (p_actions) AND con.conparentid = 0
         GROUP BY con.oid, con.confrelid, p.relkind
         ORDER BY con.oid
    LOOP
        conds := conds || pg_catalog.format('(%s AND NOT EXISTS (SELECT FROM %s%s _ts_p WHERE %s))',
            array_to_string(k.notnull, ' AND '),
            CASE WHEN k.relkind = 'p' THEN '' ELSE 'ONLY ' END, k.confrelid::regclass,
            array_to_string(k.eq, ' AND '));
    END LOOP;
    IF cardinality(conds) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN array_to_string(conds, ' OR ');
END
$$;

-- _capture_cause is the expression of a deleted row's cause, the row
-- being p_row: 'cascade' when a parent it references through an ON
-- DELETE CASCADE key is gone, 'delete' otherwise.
CREATE OR REPLACE FUNCTION tombstone._capture_cause(rel oid, p_row text) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN g IS NULL THEN '''delete'''
                ELSE pg_catalog.format('CASE WHEN %s THEN ''cascade'' ELSE ''delete'' END', g) END
      FROM tombstone._capture_gone(rel, p_row, '{c}') g
$$;

-- _set_null_columns lists the columns of rel's ON DELETE SET NULL / SET
-- DEFAULT keys: an UPDATE that changes one of them, of a row whose
-- parent is gone, is that action's (tombstone._ts_cap_<oid>, 'UPDATE').
CREATE OR REPLACE FUNCTION tombstone._set_null_columns(rel oid) RETURNS int2[]
LANGUAGE sql STABLE
AS $$
    SELECT array_agg(DISTINCT k ORDER BY k)
      FROM pg_catalog.pg_constraint con, unnest(con.conkey) k
     WHERE con.conrelid = rel AND con.contype = 'f' AND con.confdeltype IN ('n', 'd') AND con.conparentid = 0
$$;

-- _capture_function returns the text of src's trigger function.
CREATE OR REPLACE FUNCTION tombstone._capture_function(src oid, shadow name) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    tname text;
    ins text;
    srccols text;
    rowcols text;
    oldcols text;
BEGIN
    SELECT n.nspname || '.' || c.relname INTO tname
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = src;
    SELECT string_agg(pg_catalog.format(', %I', sc.shadow_column), '' ORDER BY a.attnum),
           string_agg(pg_catalog.format(', %I', a.attname), '' ORDER BY a.attnum),
           string_agg(pg_catalog.format(', o.%I', a.attname), '' ORDER BY a.attnum),
           string_agg(pg_catalog.format(', OLD.%I', a.attname), '' ORDER BY a.attnum)
      INTO ins, srccols, rowcols, oldcols
      FROM pg_catalog.pg_attribute a
      JOIN tombstone.shadow_columns sc ON sc.source = src AND sc.attnum = a.attnum
     WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped;
    ins := pg_catalog.format('INSERT INTO tombstone.%I (_ts_batch, _ts_token, _ts_cause%s)', shadow, coalesce(ins, ''));
    RETURN pg_catalog.format($f$
-- generated by tombstone.sync_shadow for %1$s: see functions_capture.sql
DECLARE
    b record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID) = 'r' THEN
            b := tombstone._capture_batch(TG_RELID, %2$L, true);
            IF b.id IS NOT NULL THEN
                EXECUTE pg_catalog.format(%3$L, TG_RELID::regclass) USING b.id, b.token;
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        -- An ON DELETE SET NULL / SET DEFAULT action: the old values, to
        -- link the row again when its parent is restored.
        IF %9$s THEN
            b := tombstone._capture_batch(TG_RELID, %2$L, false);
            IF b.id IS NOT NULL THEN
                %4$s SELECT b.id, b.token, 'set_null'%6$s;
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_LEVEL = 'ROW' THEN
        b := tombstone._capture_batch(TG_RELID, %2$L, false);
        IF b.id IS NOT NULL THEN
            %4$s SELECT b.id, b.token, %5$s%6$s;
        END IF;
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM _ts_old) THEN
        b := tombstone._capture_batch(TG_RELID, %2$L, true);
        IF b.id IS NOT NULL THEN
            %4$s SELECT b.id, b.token, %7$s%8$s FROM _ts_old o;
        END IF;
    END IF;
    RETURN NULL;
END
$f$,
        tname, tname,
        pg_catalog.replace(ins || ' SELECT $1, $2, ''truncate''' || coalesce(srccols, ''), '%', '%%') || ' FROM ONLY %s',
        ins, tombstone._capture_cause(src, 'OLD'), coalesce(oldcols, ''),
        tombstone._capture_cause(src, 'o'), coalesce(rowcols, ''),
        coalesce(tombstone._capture_gone(src, 'OLD', '{n,d}'), 'false'));
END
$$;

-- _capture_rowwise reports whether src is a member of an inheritance tree
-- (not partitioning): its rows are captured FOR EACH ROW.
CREATE OR REPLACE FUNCTION tombstone._capture_rowwise(src oid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT c.relkind = 'r' AND NOT c.relispartition
       AND EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhrelid = src OR h.inhparent = src)
      FROM pg_catalog.pg_class c WHERE c.oid = src
$$;

-- _sync_capture creates or aligns src's trigger function and the capture
-- triggers on src and its partitions; it changes nothing that is already
-- right (a trigger's creation locks the table against writes).
CREATE OR REPLACE FUNCTION tombstone._sync_capture(src oid, shadow name) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    fname text := '_ts_cap_' || src::text;
    body text := tombstone._capture_function(src, shadow);
    fn oid;
    rowwise boolean := tombstone._capture_rowwise(src);
    r record;
    changed boolean := false;
    ddl_sync text := pg_catalog.current_setting('tombstone.ddl_sync', true);
    setnull int2[];
BEGIN
    SELECT p.oid INTO fn FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname = fname AND p.pronargs = 0;
    IF fn IS NULL OR (SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = fn) IS DISTINCT FROM body THEN
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION tombstone.%I() RETURNS trigger LANGUAGE plpgsql '
                                  'SECURITY DEFINER SET search_path = pg_catalog, tombstone, pg_temp AS %L', fname, body);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION tombstone.%I() FROM PUBLIC', fname);
        SELECT p.oid INTO fn FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname = fname AND p.pronargs = 0;
        changed := true;
    END IF;
    FOR r IN SELECT x.relid, x.want, t.tgtype, t.tgfoid, t.tgenabled, t.tgoldtable, x.tgname
               FROM (SELECT pt.relid, v.tgname, v.want
                       FROM (SELECT src AS relid
                             UNION SELECT t2.relid FROM pg_catalog.pg_partition_tree(src) t2) pt
                      CROSS JOIN (VALUES ('_ts_capture', CASE WHEN rowwise THEN 9 ELSE 8 END),
                                         ('_ts_truncate', 34)) v(tgname, want)) x
               LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = x.relid AND t.tgname = x.tgname
    LOOP
        CONTINUE WHEN r.tgtype = r.want AND r.tgfoid = fn AND r.tgenabled = 'A'
                  AND (r.tgoldtable IS NOT DISTINCT FROM CASE WHEN r.want = 8 THEN '_ts_old' END);
        -- The ALTER TABLE below would have the DDL event trigger sync
        -- this table again, from inside this loop.
        PERFORM pg_catalog.set_config('tombstone.ddl_sync', 'off', true);
        IF r.tgtype IS NOT NULL THEN
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', r.tgname, r.relid::regclass);
        END IF;
        EXECUTE pg_catalog.format('CREATE TRIGGER %I %s ON %s %s EXECUTE FUNCTION tombstone.%I()',
            r.tgname,
            CASE r.want WHEN 34 THEN 'BEFORE TRUNCATE' ELSE 'AFTER DELETE' END,
            r.relid::regclass,
            CASE r.want WHEN 8 THEN 'REFERENCING OLD TABLE AS _ts_old FOR EACH STATEMENT'
                        WHEN 9 THEN 'FOR EACH ROW' ELSE 'FOR EACH STATEMENT' END,
            fname);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.relid::regclass, r.tgname);
        PERFORM pg_catalog.set_config('tombstone.ddl_sync', coalesce(ddl_sync, ''), true);
        changed := true;
    END LOOP;
    -- ON DELETE SET NULL / SET DEFAULT: a row trigger on src itself
    -- (a partitioned table's is cloned onto its partitions), firing only
    -- for updates that change one of those keys' columns.
    setnull := tombstone._set_null_columns(src);
    SELECT t.tgtype, t.tgfoid, t.tgenabled,
           (SELECT array_agg(x ORDER BY x) FROM unnest(t.tgattr::int2[]) x) AS cols
      INTO r FROM pg_catalog.pg_trigger t WHERE t.tgrelid = src AND t.tgname = '_ts_set_null';
    IF (setnull IS NULL) <> (r.tgtype IS NULL)
       OR setnull IS NOT NULL AND NOT (r.tgtype = 17 AND r.tgfoid = fn AND r.tgenabled = 'A' AND r.cols = setnull) THEN
        PERFORM pg_catalog.set_config('tombstone.ddl_sync', 'off', true);
        IF r.tgtype IS NOT NULL THEN
            EXECUTE pg_catalog.format('DROP TRIGGER _ts_set_null ON %s', src::regclass);
        END IF;
        IF setnull IS NOT NULL THEN
            EXECUTE pg_catalog.format('CREATE TRIGGER _ts_set_null AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION tombstone.%I()',
                (SELECT string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a WHERE a.attrelid = src AND a.attnum = ANY (setnull)),
                src::regclass,
                (SELECT string_agg(pg_catalog.format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', a.attname), ' OR ' ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a WHERE a.attrelid = src AND a.attnum = ANY (setnull)),
                fname);
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER _ts_set_null', src::regclass);
        END IF;
        PERFORM pg_catalog.set_config('tombstone.ddl_sync', coalesce(ddl_sync, ''), true);
        changed := true;
    END IF;
    RETURN changed;
END
$$;
REVOKE ALL ON FUNCTION tombstone._sync_capture(oid, name) FROM PUBLIC;

-- _capture_missing returns a protected table among p_rels without its
-- capture trigger enabled ALWAYS, if any: a rewritten DELETE whose rows
-- no trigger would copy is refused (check_catalog).
CREATE OR REPLACE FUNCTION tombstone._capture_missing(p_rels oid[]) RETURNS regclass
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (SELECT x.relid::regclass
              FROM tombstone._protected_roots(p_rels) x
             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                WHERE t.tgrelid = x.relid AND t.tgname = '_ts_capture' AND t.tgenabled = 'A')
             LIMIT 1);
END
$$;
