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
-- Which batch: the newest batch row of this transaction and of this
-- client message (statement_timestamp()) that lists the table — the one
-- the rewritten statement wrote, which names every table it deletes from.
-- Nothing a role can set chooses it. Anything else — a delete on a direct
-- connection, one inside a function outside a captured message, the
-- restore's overwrite — finds no batch and is left alone, as before: the
-- proxy's rewrite is what captures, the trigger only writes what it
-- captured. (Rows a function deletes later in the same message, from a
-- table that message's captured DELETE listed, join that batch: they are
-- tombstoned, in their own table, with the message that deleted them.)
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
--   _ts_set_null AFTER UPDATE FOR EACH ROW, made inside a trigger, on a
--                table with ON DELETE SET NULL / SET DEFAULT keys, keeping
--                the old values of the rows such a key changed whose
--                parent is gone (cause 'set_null');
-- all enabled ALWAYS, so session_replication_role does not silence them.
--
-- A row's cause is 'cascade' when a parent it references through an ON
-- DELETE CASCADE key is gone by the end of the statement (the cascade
-- would have removed it with that parent), 'delete' otherwise; a row an
-- ON DELETE SET NULL / SET DEFAULT key changed is kept as 'set_null'.

-- _capture_batch returns the batch the rows a table lost in the current
-- statement belong to, or NULLs; p_tables are the names batches.tables
-- may know it by (its partition root's, its own: a partition's own
-- foreign keys cascade into it under its own name; its name now, after
-- a rename the capture function has not followed).
-- (PL/pgSQL, as the other functions every captured DELETE calls: its
-- plan is kept for the session, where a SQL function's body is parsed
-- and planned again at each call.)
CREATE OR REPLACE FUNCTION tombstone._capture_batch(p_tables text[], OUT id bigint, OUT token uuid)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    SELECT b.id, b.token INTO id, token
      FROM tombstone.batches b
     WHERE b.xid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id()
       AND b.stmt_time OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp()
       AND b.purged_at IS NULL
       AND b.tables OPERATOR(pg_catalog.?|) p_tables
     ORDER BY b.id DESC
     LIMIT 1;
END
$$;
DROP FUNCTION IF EXISTS tombstone._capture_batch(oid, text, boolean);
DROP FUNCTION IF EXISTS tombstone._capture_batch(text);
REVOKE ALL ON FUNCTION tombstone._capture_batch(text[]) FROM PUBLIC;

-- _capture_gone is the condition, on the row p_row ('o', 'OLD'), that
-- for one of the foreign keys of rel (or of one of its partitions alone)
-- whose ON DELETE action is among
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
        SELECT con.oid, con.confrelid, p.relkind,
               array_agg(pg_catalog.format('%s.%I IS NOT NULL', p_row, ca.attname) ORDER BY u.ord) AS notnull,
               array_agg(pg_catalog.format('_ts_p.%I OPERATOR(%I.%s) %s.%I',
                                           pa.attname, opn.nspname, op.oprname, p_row, ca.attname) ORDER BY u.ord) AS eq
          FROM pg_catalog.pg_constraint con
          JOIN pg_catalog.pg_class p ON p.oid = con.confrelid
          CROSS JOIN LATERAL unnest(con.conkey, con.confkey, con.conpfeqop) WITH ORDINALITY u(ck, pk, op, ord)
          JOIN pg_catalog.pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = u.ck
          JOIN pg_catalog.pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = u.pk
          JOIN pg_catalog.pg_operator op ON op.oid = u.op
          JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace
         WHERE con.conrelid IN (SELECT rel UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(rel) t)
           AND con.contype = 'f' AND con.confdeltype = ANY (p_actions) AND con.conparentid = 0
         GROUP BY con.oid, con.confrelid, p.relkind
         ORDER BY con.oid
    LOOP
        -- The comparison runs as this schema's owner: never with an
        -- operator or cast someone else wrote (the rewrite refuses such
        -- cascades; here the row is then just 'delete'). (Asked here, of
        -- rel's keys only: in the query's WHERE it was asked of every
        -- foreign key of the database.)
        CONTINUE WHEN tombstone._fk_runs_code(k.oid);
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
       AND NOT tombstone._fk_runs_code(con.oid)
$$;

-- _set_null_changed is the condition that an UPDATE changed a column of
-- an ON DELETE SET NULL / SET DEFAULT key of src or of one of its
-- partitions alone, compared as text made by the columns' types' output
-- functions (never an operator or cast a table's owner wrote); NULL when
-- there is no such key.
CREATE OR REPLACE FUNCTION tombstone._set_null_changed(src oid) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.format('pg_catalog.textin(pg_catalog.record_out(ROW(%s))) IS DISTINCT FROM '
                             'pg_catalog.textin(pg_catalog.record_out(ROW(%s)))',
                             string_agg('OLD.' || pg_catalog.quote_ident(c.attname), ', ' ORDER BY c.attname),
                             string_agg('NEW.' || pg_catalog.quote_ident(c.attname), ', ' ORDER BY c.attname))
      FROM (SELECT DISTINCT a.attname
              FROM (SELECT src AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(src) t) r
             CROSS JOIN LATERAL unnest(tombstone._set_null_columns(r.relid)) k
              JOIN pg_catalog.pg_attribute a ON a.attrelid = r.relid AND a.attnum = k) c
    HAVING count(*) > 0
$$;
REVOKE ALL ON FUNCTION tombstone._set_null_changed(oid) FROM PUBLIC;

-- _capture_shape is what a capture function checks src's columns
-- against at run time (name, type and typmod, in order).
CREATE OR REPLACE FUNCTION tombstone._capture_shape(src oid) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s:%s', a.attname, a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- _shadow_guard refuses every write of a shadow table but the capture
-- triggers' (which run inside a trigger: depth 2 here): above all, the
-- INSERTs a proxy older than this schema still sends.
CREATE OR REPLACE FUNCTION tombstone._shadow_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.<) 2 THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: only the capture triggers write tombstones (%s)', TG_TABLE_NAME),
            HINT = 'A proxy or CLI older than this database''s tombstone schema sends its own: upgrade it to the version that installed the schema.';
    END IF;
    RETURN NULL;
END
$$;

-- _text_of is "pg_catalog.textin(<output function>(p_expr::<base>))" for
-- a value of type p_type: a domain's value is taken as its base type (a
-- relabeling, no function) for the base type's output function.
CREATE OR REPLACE FUNCTION tombstone._text_of(p_type oid, p_expr text) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.format('pg_catalog.textin(%I.%I((%s)::%s))', n.nspname, f.proname, p_expr,
                             pg_catalog.format_type(t.oid, NULL))
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_proc f ON f.oid = t.typoutput
      JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace
     WHERE t.oid = tombstone._base_type(p_type)
$$;

-- _stored is the expression that writes p_expr, source column a's
-- value, into its shadow column sc: as it is, or for a column kept as
-- text, its type's output function's text (the function named by its
-- schema: Postgres's own for enums, composites, arrays and ranges, a
-- superuser's for base types).
CREATE OR REPLACE FUNCTION tombstone._stored(sc tombstone.shadow_columns, a pg_catalog.pg_attribute, p_expr text) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN (sc.type = 'text' OR sc.type LIKE 'text /* shape %') AND tombstone._as_text(a.atttypid)
                THEN tombstone._text_of(a.atttypid, p_expr) ELSE p_expr END
$$;

-- _capture_settings are the settings a capture function runs with when
-- it writes values as text: their text must read back the same whatever
-- the deleting session's DateStyle, IntervalStyle, float digits or
-- currency locale.
CREATE OR REPLACE FUNCTION tombstone._capture_settings(src oid) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                              JOIN tombstone.shadow_columns sc ON sc.source = src AND sc.attnum = a.attnum
                             WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped
                               AND (sc.type = 'text' OR sc.type LIKE 'text /* shape %') AND tombstone._as_text(a.atttypid))
                THEN ' SET DateStyle = ''ISO, MDY'' SET IntervalStyle = ''postgres'' SET extra_float_digits = 1 SET lc_monetary = ''C'''
                ELSE '' END
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
    batch text;
BEGIN
    SELECT n.nspname || '.' || c.relname INTO tname
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = src;
    -- A column kept as text (a user's type: tombstone._as_text) is
    -- written by its type's own output function, called by name — never
    -- through a cast, which the type's owner may have written.
    SELECT string_agg(pg_catalog.format(', %I', sc.shadow_column), '' ORDER BY a.attnum),
           string_agg(', ' || tombstone._stored(sc, a, pg_catalog.quote_ident(a.attname)), '' ORDER BY a.attnum),
           string_agg(', ' || tombstone._stored(sc, a, 'o.' || pg_catalog.quote_ident(a.attname)), '' ORDER BY a.attnum),
           string_agg(', ' || tombstone._stored(sc, a, 'OLD.' || pg_catalog.quote_ident(a.attname)), '' ORDER BY a.attnum)
      INTO ins, srccols, rowcols, oldcols
      FROM pg_catalog.pg_attribute a
      JOIN tombstone.shadow_columns sc ON sc.source = src AND sc.attnum = a.attnum
     WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped;
    ins := pg_catalog.format('INSERT INTO tombstone.%I (_ts_batch, _ts_token, _ts_cause%s)', shadow, coalesce(ins, ''));
    -- The batch of this statement that lists the table (as
    -- _capture_batch finds it) and the column check, in one query: a
    -- captured single-row DELETE pays for each query its trigger runs.
    -- The check runs only where there is a batch, and before the copy
    -- (whose own errors, on a column gone or retyped, would not say
    -- TS001): a function generated for other columns (after an ALTER
    -- TABLE it has not followed: no DDL event trigger, a sync that
    -- failed) refuses rather than copy the wrong columns, or too few.
    -- Without a transaction id there is no batch of this transaction
    -- (writing one assigns it), and asking assigns none. A statement
    -- that is not captured leaves the shadow table alone (not even a
    -- lock an UNDELETE would wait for).
    batch := pg_catalog.format($q$(SELECT b.id, b.token,
                 CASE WHEN (SELECT pg_catalog.string_agg(pg_catalog.format('%%s:%%s:%%s', a.attname, a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                              FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped) IS DISTINCT FROM %L
                      THEN tombstone._catalog_changed(pg_catalog.format('the capture trigger of %%s is out of date', %L),
                                                      'Run SELECT tombstone.sync_all() if it persists.')::text END AS stale
            FROM tombstone.batches b
           WHERE b.xid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()
             AND b.stmt_time OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp()
             AND b.purged_at IS NULL
             AND b.tables OPERATOR(pg_catalog.?|) ARRAY[%L, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME]
           ORDER BY b.id DESC
           LIMIT 1)$q$, src::text, tombstone._capture_shape(src), tname, tname);
    RETURN pg_catalog.format($f$
-- generated by tombstone.sync_shadow for %1$s: see functions_capture.sql
DECLARE
    bid bigint;
    btoken uuid;
BEGIN
    -- Nothing to copy: a partitioned table's TRUNCATE (its partitions
    -- copy theirs), an UPDATE no SET NULL action made.
    IF TG_OP = 'TRUNCATE' THEN
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID) <> 'r' THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NOT ((%9$s) AND (%8$s)) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_LEVEL = 'STATEMENT' THEN
        -- (Nothing deleted: the batch is not looked for.)
        SELECT b.id, b.token INTO bid, btoken FROM %10$s b WHERE b.stale IS NULL AND EXISTS (SELECT FROM _ts_old);
        IF bid IS NULL THEN
            RETURN NULL; -- not a statement the proxy captured
        END IF;
        %3$s SELECT bid, btoken, %6$s%7$s FROM _ts_old o;
        RETURN NULL;
    END IF;
    SELECT b.id, b.token INTO bid, btoken FROM %10$s b WHERE b.stale IS NULL;
    IF bid IS NULL THEN
        RETURN NULL; -- not a statement the proxy captured
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE pg_catalog.format(%2$L, TG_RELID::regclass) USING bid, btoken;
    ELSIF TG_OP = 'UPDATE' THEN
        -- An ON DELETE SET NULL / SET DEFAULT action: the old values, to
        -- link the row again when its parent is restored.
        %3$s SELECT bid, btoken, 'set_null'%5$s;
    ELSE
        %3$s SELECT bid, btoken, %4$s%5$s;
    END IF;
    RETURN NULL;
END
$f$,
        tname,
        pg_catalog.replace(ins || ' SELECT $1, $2, ''truncate''' || coalesce(srccols, ''), '%', '%%') || ' FROM ONLY %s',
        ins, tombstone._capture_cause(src, 'OLD'), coalesce(oldcols, ''),
        tombstone._capture_cause(src, 'o'), coalesce(rowcols, ''),
        coalesce(tombstone._capture_gone(src, 'OLD', '{n,d}'), 'false'),
        coalesce(tombstone._set_null_changed(src), 'false'),
        batch);
END
$$;

-- _capture_rowwise reports whether src is a member of an inheritance tree
-- (not partitioning): its rows are captured FOR EACH ROW.
CREATE OR REPLACE FUNCTION tombstone._capture_rowwise(src oid) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT c.relkind = 'r' AND NOT c.relispartition
           AND EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhrelid = src OR h.inhparent = src)
          FROM pg_catalog.pg_class c WHERE c.oid = src
    );
END
$$;

-- _capture_trigger_ok reports whether rel has trigger p_name as
-- _sync_capture makes it: of type p_type (pg_trigger.tgtype), calling
-- function p_fn, enabled ALWAYS, with the transition table its
-- statement-level DELETE trigger reads, and (p_cols) on those columns.
CREATE OR REPLACE FUNCTION tombstone._capture_trigger_ok(rel oid, p_name name, p_type int, p_fn oid, p_cols int2[] DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = rel AND t.tgname = p_name AND t.tgtype = p_type AND t.tgfoid = p_fn
               AND t.tgenabled = 'A'
               AND t.tgoldtable IS NOT DISTINCT FROM CASE WHEN p_type = 8 THEN '_ts_old' END
               AND (p_cols IS NULL
                    OR coalesce((SELECT array_agg(x ORDER BY x) FROM unnest(t.tgattr::int2[]) x), '{}') = p_cols))
    );
END
$$;

-- _sync_set_null creates or aligns trigger p_name on rel for the columns
-- of rel's own ON DELETE SET NULL / SET DEFAULT keys (none: no trigger).
CREATE OR REPLACE FUNCTION tombstone._sync_set_null(rel oid, p_name name, fn oid, fname text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    setnull int2[] := tombstone._set_null_columns(rel);
    have boolean := EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel AND t.tgname = p_name);
BEGIN
    IF setnull IS NULL THEN
        IF have THEN
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', p_name, rel::regclass);
        END IF;
        RETURN have;
    END IF;
    IF tombstone._capture_trigger_ok(rel, p_name, 17, fn, '{}') THEN
        RETURN false;
    END IF;
    IF have THEN
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', p_name, rel::regclass);
    END IF;
    -- On no column (a trigger on columns would block their ALTER TYPE),
    -- queued only for updates made inside a trigger, as Postgres's SET
    -- NULL action's are: an application's own UPDATEs pass it by for
    -- the cost of this condition. The capture function tells whether a
    -- key's columns changed and its parent is gone.
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW '
                              'WHEN (pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.>) 0) EXECUTE FUNCTION tombstone.%I()',
        p_name, rel::regclass, fname);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', rel::regclass, p_name);
    RETURN true;
END
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
    settings text := tombstone._capture_settings(src);
    fn oid;
    rowwise boolean := tombstone._capture_rowwise(src);
    r record;
    changed boolean := false;
BEGIN
    SELECT p.oid INTO fn FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname = fname AND p.pronargs = 0;
    IF fn IS NULL OR (SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = fn) IS DISTINCT FROM body
       OR (SELECT 'DateStyle=ISO, MDY' = ANY (coalesce(p.proconfig, '{}')) FROM pg_catalog.pg_proc p WHERE p.oid = fn)
          IS DISTINCT FROM (settings <> '') THEN
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION tombstone.%I() RETURNS trigger LANGUAGE plpgsql '
                                  'SECURITY DEFINER SET search_path = pg_catalog, tombstone, pg_temp%s AS %L', fname, settings, body);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION tombstone.%I() FROM PUBLIC', fname);
        SELECT p.oid INTO fn FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname = fname AND p.pronargs = 0;
        changed := true;
    END IF;
    -- Each trigger is looked at afresh: ALTER TABLE … ENABLE ALWAYS
    -- TRIGGER below has the DDL event trigger sync this table again, from
    -- inside this loop, and that may have done the next one already.
    FOR r IN SELECT pt.relid, v.tgname, v.want
               FROM (SELECT src AS relid
                     UNION SELECT t2.relid FROM pg_catalog.pg_partition_tree(src) t2) pt
              CROSS JOIN (VALUES ('_ts_capture', CASE WHEN rowwise THEN 9 ELSE 8 END),
                                 ('_ts_truncate', 34)) v(tgname, want)
    LOOP
        CONTINUE WHEN tombstone._capture_trigger_ok(r.relid, r.tgname, r.want, fn);
        IF EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.relid AND t.tgname = r.tgname) THEN
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
        changed := true;
    END LOOP;
    -- ON DELETE SET NULL / SET DEFAULT: a row trigger on src itself
    -- (a partitioned table's is cloned onto its partitions), firing only
    -- for updates that change one of those keys' columns.
    -- A partitioned table's is cloned onto its partitions; a partition's
    -- own keys get one of their own (_ts_set_null_p).
    FOR r IN SELECT src AS relid, '_ts_set_null' AS tgname
             UNION ALL
             SELECT t2.relid, '_ts_set_null_p' FROM pg_catalog.pg_partition_tree(src) t2 WHERE t2.relid <> src
    LOOP
        IF tombstone._sync_set_null(r.relid, r.tgname, fn, fname) THEN changed := true; END IF;
    END LOOP;
    -- The capture's triggers are the store's machinery, not the table's:
    -- marked internal, like the triggers of a foreign key, they are left
    -- out where users look at a table's triggers (psql's describe,
    -- information_schema.triggers, pg_dump), ALTER TABLE … DISABLE
    -- TRIGGER USER passes them by, and only a superuser may disable
    -- them. Only a superuser may mark them (an installer that is not one
    -- leaves them as they are). Not a partitioned table's SET NULL
    -- trigger: Postgres clones that one onto new partitions, which it
    -- does not do for internal ones.
    IF (SELECT ro.rolsuper FROM pg_catalog.pg_roles ro WHERE ro.rolname = current_user) THEN
        UPDATE pg_catalog.pg_trigger t SET tgisinternal = true
          FROM pg_catalog.pg_class c
         WHERE c.oid = t.tgrelid AND t.tgfoid = fn AND NOT t.tgisinternal AND t.tgparentid = 0
           AND t.tgrelid IN (SELECT src UNION SELECT t2.relid FROM pg_catalog.pg_partition_tree(src) t2)
           AND NOT (t.tgname = '_ts_set_null' AND c.relkind = 'p');
    END IF;
    RETURN changed;
END
$$;
REVOKE ALL ON FUNCTION tombstone._sync_capture(oid, name) FROM PUBLIC;

-- _capture_missing returns a protected table among p_rels without its
-- own capture trigger (this schema's function, enabled ALWAYS), if any:
-- a rewritten DELETE whose rows no trigger would copy is refused
-- (check_catalog).
CREATE OR REPLACE FUNCTION tombstone._capture_missing(p_rels oid[]) RETURNS regclass
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- (Per row captures right whether or not the table is in an
    -- inheritance tree: a table whose last child went keeps its row
    -- trigger until the next sync.)
    RETURN (SELECT x.relid::regclass
              FROM tombstone._protected_roots(p_rels) x
              LEFT JOIN LATERAL (SELECT p.oid FROM pg_catalog.pg_proc p
                                  WHERE p.pronamespace = 'tombstone'::pg_catalog.regnamespace
                                    AND p.proname = '_ts_cap_' || x.root::text AND p.pronargs = 0) f ON true
             WHERE NOT CASE WHEN tombstone._capture_rowwise(x.root)
                            THEN tombstone._capture_trigger_ok(x.relid, '_ts_capture', 9, f.oid)
                            ELSE tombstone._capture_trigger_ok(x.relid, '_ts_capture', 8, f.oid)
                                 OR tombstone._capture_trigger_ok(x.relid, '_ts_capture', 9, f.oid) END
             LIMIT 1);
END
$$;
