-- functions_trash.sql: TRUNCATE and DROP TABLE of protected tables, and
-- UNDROP TABLE. The proxy rewrites
--   TRUNCATE …        into CALL tombstone.capture_truncate(…)
--   DROP TABLE …      into CALL tombstone.trash_tables(…)
--   UNDROP TABLE t    into SELECT * FROM tombstone.undrop_table('t')
-- (see rewrite/truncate.go and console/). Re-runnable, like every functions_*.sql.
--
-- Privileges. capture_truncate and trash_tables are SECURITY INVOKER: the
-- TRUNCATE, the reads of the captured rows and the DDL run with the
-- caller's own privileges: they fail where the plain statement would,
-- and also where reading the rows to capture needs more than it (SELECT
-- on each protected table emptied, where TRUNCATE of a parent checks the
-- parent's TRUNCATE privilege only). What the caller may not do itself — read the
-- protection rules and the shadow registry, write tombstone.trash — goes
-- through small SECURITY DEFINER helpers (fixed search_path) that return
-- registry facts only (shadow names, column lists, retention), never
-- tombstones. The batch row is written with the INSERT privilege PUBLIC
-- has for DELETE's rewrite; the rows themselves are copied by the
-- tables' BEFORE TRUNCATE triggers (functions_capture.sql).
--
-- Reaper (implemented elsewhere; what it must do with the trash): for
-- every tombstone.trash row with purged_at IS NULL, restored_at IS NULL,
-- NOT held and purge_after < now() (database clock), lock the row (FOR
-- UPDATE SKIP LOCKED), check that tombstone_trash.<trash_name> still is
-- the table with oid = source (an UNDROP may have won the race; a table
-- that is gone only needs purged_at), DROP TABLE tombstone_trash.<trash_name>
-- CASCADE (its partitions, also in the trash and listed in renames, go
-- with it; CASCADE because a foreign key of a restored table may still
-- point at it, which the original DROP would also have removed) and set
-- purged_at = now(), each table in its own short transaction with
-- lock_timeout. The table's shadow and tombstones are not the trash's
-- business: they follow the batches' own purge_after.

-- _protected_roots returns, for each given relation whose partition root
-- is a protected table, the root, its name as batches record it
-- ("schema.table") and its retention.
CREATE OR REPLACE FUNCTION tombstone._protected_roots(p_rels oid[])
RETURNS TABLE (relid oid, root oid, table_name text, retention interval)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT x.rel, pt.relid, pt.schema_name || '.' || pt.table_name, pt.retention
          FROM (SELECT DISTINCT r AS rel FROM unnest(p_rels) r) x
          JOIN tombstone.protected_among(ARRAY(SELECT DISTINCT tombstone._root(r) FROM unnest(p_rels) r)) pt
            ON pt.relid = tombstone._root(x.rel);
END
$$;

-- Gone: check_unprotected reads the protection rules once itself.
DROP FUNCTION IF EXISTS tombstone._first_protected(oid[], oid);

-- _capture_targets is _protected_roots plus what a capture needs: the
-- shadow table of each root, created or brought in line with the source
-- first (sync_shadow, as the DDL event trigger would), and the column
-- lists: shadow columns that hold live source columns (tracked by attnum
-- in shadow_columns) and the source's names for them. After the sync
-- these are exactly the source's live columns, the list the rewriter
-- uses for DELETE (Table.Columns from LoadCatalog).
CREATE OR REPLACE FUNCTION tombstone._capture_targets(p_rels oid[])
RETURNS TABLE (relid oid, root oid, table_name text, retention interval, shadow name,
               shadow_cols name[], source_cols name[])
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r record;
    sh name;
    synced oid[] := '{}';
BEGIN
    FOR r IN SELECT p.relid AS rel, p.root AS rt, p.table_name AS tn, p.retention AS ret
               FROM tombstone._protected_roots(p_rels) p ORDER BY p.root, p.relid
    LOOP
        IF NOT (r.rt = ANY (synced)) THEN
            PERFORM tombstone.sync_shadow(r.rt::regclass);
            synced := synced || r.rt;
        END IF;
        SELECT s.shadow_name INTO sh FROM tombstone.shadows s WHERE s.source = r.rt;
        RETURN QUERY
        SELECT r.rel, r.rt, r.tn, r.ret, sh,
               coalesce(array_agg(sc.shadow_column ORDER BY sc.attnum), '{}'),
               coalesce(array_agg(a.attname ORDER BY sc.attnum), '{}')
          FROM tombstone.shadow_columns sc
          JOIN pg_attribute a ON a.attrelid = r.rt AND a.attnum = sc.attnum AND NOT a.attisdropped
         WHERE sc.source = r.rt AND sc.attnum IS NOT NULL;
    END LOOP;
END
$$;

-- _resolve_as resolves relation names as the statement that named them
-- would: under p_path, the search_path of the caller (capture_truncate
-- and trash_tables run pinned, and take their caller's path as the
-- default of their last argument, which is evaluated before they start).
-- Missing names raise Postgres's own error (42P01), or are NULL with
-- p_missing_ok. Nothing but casts and schema-qualified built-ins runs
-- under p_path.
CREATE OR REPLACE FUNCTION tombstone._resolve_as(p_names text[], p_path text, p_missing_ok boolean) RETURNS oid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    out oid[] := '{}';
    nm text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', p_path, true);
    FOREACH nm IN ARRAY p_names LOOP
        IF p_missing_ok THEN
            out := pg_catalog.array_append(out, pg_catalog.to_regclass(nm)::pg_catalog.oid);
        ELSE
            out := pg_catalog.array_append(out, nm::pg_catalog.regclass::pg_catalog.oid);
        END IF;
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, tombstone, pg_temp', true);
    RETURN out;
END
$$;

-- _exec_as runs p_sql (built by the caller from names _names_as gave)
-- under p_path, so that Postgres's errors and notices about it name
-- objects as the caller's own statement would have.
CREATE OR REPLACE FUNCTION tombstone._exec_as(p_sql text, p_path text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', p_path, true);
    EXECUTE p_sql;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, tombstone, pg_temp', true);
END
$$;

-- _names_as lists relations as a statement under p_path would name them
-- (qualified only where p_path does not find them), for the statements
-- trash_tables runs on its caller's behalf, whose errors then read as
-- the caller's own statement's would.
CREATE OR REPLACE FUNCTION tombstone._names_as(p_rels oid[], p_path text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    out text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', p_path, true);
    out := (SELECT pg_catalog.string_agg(u.r::pg_catalog.regclass::pg_catalog.text, ', ' ORDER BY u.k)
              FROM pg_catalog.unnest(p_rels) WITH ORDINALITY u(r, k));
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, tombstone, pg_temp', true);
    RETURN out;
END
$$;

-- capture_truncate is what the proxy runs for a TRUNCATE that may remove
-- rows of protected tables. It works out every table the TRUNCATE
-- empties, as ExecuteTruncate does (src/backend/commands/tablecmds.c):
-- the listed tables, their inheritance children and partitions unless
-- ONLY, and with CASCADE every table referencing those through a foreign
-- key, to a fixpoint (heap_truncate_find_FKs, including its climb from a
-- partition's constraint to the partitioned table's). Each is locked
-- ACCESS EXCLUSIVE as soon as it is found, as TRUNCATE would, so no row
-- can arrive between the capture and the truncate and no foreign key can
-- be added meanwhile. It counts the rows of every protected table among
-- them and writes one new batch; then the TRUNCATE itself runs with the
-- caller's privileges, and each table's BEFORE TRUNCATE trigger copies
-- its rows into its shadow table with cause 'truncate', in that batch. The policy is
-- the database's (setting policies.truncate, stored from the
-- configuration by init and the proxy), never the caller's: 'reject'
-- refuses the statement when a protected table is reached, 'allow'
-- truncates without capturing. A protected table whose rows row-level
-- security hides from the caller in part is refused (42501): the
-- capture would miss what the TRUNCATE removes.
-- Before schema version 5 the last argument was the policy, chosen by
-- the caller.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                WHERE p.oid = pg_catalog.to_regprocedure('tombstone.capture_truncate(text[],boolean[],boolean,boolean,text,text,text)')
                  AND 'p_policy' = ANY (p.proargnames)) THEN
        DROP PROCEDURE tombstone.capture_truncate(text[], boolean[], boolean, boolean, text, text, text);
    END IF;
END
$$;
CREATE OR REPLACE PROCEDURE tombstone.capture_truncate(
    p_tables text[], p_only boolean[], p_cascade boolean, p_restart boolean,
    p_client_addr text, p_sql text, p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    rels oid[] := '{}';
    listed text[] := '{}';
    targets oid[] := '{}';
    referenced oid[];
    found_rels oid[];
    found_refs oid[];
    rel oid;
    kind "char";
    i int;
    t record;
    counts jsonb := '{}';
    n bigint;
    total bigint := 0;
    policy text := coalesce((SELECT s.value #>> '{}' FROM tombstone.settings s WHERE s.key = 'policies.truncate'), 'capture');
    resolved oid[];
BEGIN
    IF cardinality(p_tables) IS DISTINCT FROM cardinality(p_only) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tombstone: capture_truncate needs one ONLY flag per table';
    END IF;
    -- The caller's search_path resolves the names, with Postgres's own
    -- error for a missing table (42P01).
    resolved := tombstone._resolve_as(p_tables, p_path, false);
    FOR i IN 1 .. cardinality(p_tables) LOOP
        rel := resolved[i];
        rels := rels || rel;
        -- Schema-qualified: the TRUNCATE runs under the caller's path,
        -- where a bare name may mean another table (pg_temp.t when
        -- public comes first).
        listed := listed || ((CASE WHEN p_only[i] THEN 'ONLY ' ELSE '' END)
                             || (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                  WHERE c.oid = rel));
        SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = rel;
        -- Anything but a table is left to the TRUNCATE below, which fails
        -- with Postgres's own message.
        CONTINUE WHEN kind NOT IN ('r', 'p');
        EXECUTE pg_catalog.format('LOCK TABLE %s%s IN ACCESS EXCLUSIVE MODE',
                                  CASE WHEN p_only[i] THEN 'ONLY ' ELSE '' END, rel::regclass);
        targets := targets || rel;
        IF NOT p_only[i] THEN
            targets := targets || ARRAY(
                WITH RECURSIVE d(oid) AS (
                    SELECT h.inhrelid FROM pg_catalog.pg_inherits h WHERE h.inhparent = rel
                    UNION
                    SELECT h.inhrelid FROM pg_catalog.pg_inherits h JOIN d ON h.inhparent = d.oid)
                SELECT d.oid FROM d);
        END IF;
    END LOOP;

    IF p_cascade THEN
        referenced := targets;
        LOOP
            SELECT pg_catalog.array_agg(DISTINCT c.conrelid) FILTER (WHERE NOT (c.conrelid = ANY (targets)))
              INTO found_rels
              FROM pg_catalog.pg_constraint c
             WHERE c.contype = 'f' AND c.confrelid = ANY (referenced);
            -- A constraint cloned onto a partition points at the top of
            -- the other side through its ancestors: whatever references
            -- that top table references the truncated partitions too.
            WITH RECURSIVE up(oid, parent, confrelid) AS (
                SELECT c.oid, c.conparentid, c.confrelid FROM pg_catalog.pg_constraint c
                 WHERE c.contype = 'f' AND c.confrelid = ANY (referenced) AND c.conparentid <> 0
                UNION
                SELECT p.oid, p.conparentid, p.confrelid FROM pg_catalog.pg_constraint p JOIN up ON p.oid = up.parent)
            SELECT pg_catalog.array_agg(DISTINCT up.confrelid) FILTER (WHERE NOT (up.confrelid = ANY (referenced)))
              INTO found_refs
              FROM up WHERE up.parent = 0;
            EXIT WHEN found_rels IS NULL AND found_refs IS NULL;
            IF found_rels IS NOT NULL THEN
                FOREACH rel IN ARRAY found_rels LOOP
                    EXECUTE pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', rel::regclass);
                END LOOP;
                targets := targets || found_rels;
                referenced := referenced || found_rels;
            END IF;
            IF found_refs IS NOT NULL THEN
                referenced := referenced || found_refs;
            END IF;
        END LOOP;
    END IF;

    -- No protected table is emptied while deletes are frozen (FREEZE
    -- DELETES), captured or not.
    IF EXISTS (SELECT FROM tombstone._protected_roots(targets)) THEN
        PERFORM tombstone._refuse_frozen();
    END IF;
    IF policy <> 'allow' THEN
        -- First the checks and the counts, then the batch row.
        FOR t IN SELECT x.*, c.relkind FROM tombstone._capture_targets(targets) x
                   JOIN pg_class c ON c.oid = x.relid
                  ORDER BY x.table_name, c.relkind DESC, x.relid
        LOOP
            IF policy = 'reject' THEN
                RAISE EXCEPTION USING ERRCODE = '0A000',
                    MESSAGE = format('tombstone: TRUNCATE of protected table %s is refused (policies.truncate: reject)',
                                     t.table_name),
                    HINT = 'Use DELETE, whose rows can be restored, or ask an administrator to change the policy.';
            END IF;
            IF row_security_active(t.relid) THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = format('tombstone: TRUNCATE of protected table %s is refused: row-level security hides rows of %s from role %s, which would be removed without a tombstone',
                                     t.table_name, t.relid::regclass, current_user),
                    HINT = 'DELETE the rows instead (captured under the same policies), or TRUNCATE as a role that row-level security does not apply to (the table''s owner, or one with BYPASSRLS).';
            END IF;
            -- Partitioned tables hold no rows of their own (their
            -- partitions are targets too); record them with what their
            -- partitions add.
            n := 0;
            IF t.relkind = 'r' THEN
                EXECUTE format('SELECT count(*) FROM ONLY %s', t.relid::regclass) INTO n;
            END IF;
            counts := counts || jsonb_build_object(t.table_name, coalesce((counts ->> t.table_name)::bigint, 0) + n);
            total := total + n;
        END LOOP;
        -- Like a DELETE of nothing, a TRUNCATE of empty tables leaves no
        -- batch. The tables' BEFORE TRUNCATE triggers copy their rows
        -- into it (functions_capture.sql).
        IF total > 0 THEN
            INSERT INTO tombstone.batches (client_addr, sql, tables)
            VALUES (p_client_addr, p_sql, counts);
        END IF;
    END IF;

    -- Under the caller's search_path: the tables' own TRUNCATE triggers
    -- run in it, as they would without the proxy.
    PERFORM tombstone._exec_as(pg_catalog.format('TRUNCATE %s%s%s',
        pg_catalog.array_to_string(listed, ', '),
        CASE WHEN p_restart THEN ' RESTART IDENTITY' ELSE '' END,
        CASE WHEN p_cascade THEN ' CASCADE' ELSE '' END), p_path);
END
$$;

-- _protected_alone reports whether p_rel, were it a table of its own (a
-- partition detached), would be protected by the stored rules — as
-- protected_tables() decides for tables that are not partitions.
CREATE OR REPLACE FUNCTION tombstone._protected_alone(p_rel oid) RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT (s.kind IS NOT NULL OR t.mode = 'shadow') AND coalesce(t.mode, 'shadow') = 'shadow'
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN tombstone.protected s ON s.kind = 'schema' AND s.schema_name = n.nspname AND s.table_name = ''
      LEFT JOIN tombstone.protected t ON t.kind = 'table' AND t.schema_name = n.nspname AND t.table_name = c.relname
     WHERE c.oid = p_rel
       AND n.nspname <> 'tombstone' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
$$;

-- detach_partition is what the proxy runs for ALTER TABLE p DETACH
-- PARTITION c of a protected table p: the partition's rows leave p, so c
-- must be protected as a table of its own (else a DROP TABLE c, say,
-- would lose them without a tombstone). It is then detached with the
-- caller's privileges, and its shadow table made; else refused (0A000).
CREATE OR REPLACE PROCEDURE tombstone.detach_partition(
    p_parent text, p_partition text, p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    rels oid[] := tombstone._resolve_as(ARRAY[p_parent, p_partition], p_path, false);
BEGIN
    IF EXISTS (SELECT 1 FROM tombstone._protected_roots(ARRAY[rels[2]]))
       AND NOT coalesce(tombstone._protected_alone(rels[2]), false) THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = format('tombstone: DETACH PARTITION %s is refused: its rows would leave protected table %s, and as a table of its own it would not be protected',
                             rels[2]::regclass, rels[1]::regclass),
            HINT = 'Protect it first (its schema in protect.schemas, or protect.tables), or DELETE its rows (captured) before detaching it.';
    END IF;
    PERFORM tombstone._exec_as(format('ALTER TABLE %s DETACH PARTITION %s',
                                      tombstone._names_as(ARRAY[rels[1]], p_path), tombstone._names_as(ARRAY[rels[2]], p_path)),
                               p_path);
    PERFORM count(*) FROM tombstone._capture_targets(ARRAY[rels[2]]); -- its own shadow table, as the DDL trigger would
END
$$;

-- _protected_rels lists the protected tables and the partitions of
-- protected partitioned tables: what guarded_ddl must not lose.
CREATE OR REPLACE FUNCTION tombstone._protected_rels() RETURNS oid[]
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    -- (Partitions from pg_inherits: pg_partition_tree would lock every
    -- protected table's partitions for the rest of the caller's
    -- transaction, and a DROP waiting on one of them would then wait on
    -- it.)
    WITH RECURSIVE tree(r) AS (
        SELECT p.relid FROM tombstone.protected_tables() p
        UNION
        SELECT i.inhrelid FROM tree JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.r
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid AND c.relispartition)
    SELECT coalesce(array_agg(r), '{}') FROM tree
$$;

-- _in_trash reports whether table p_rel lies in the trash, registered:
-- as a trashed table, or as a partition that went along with one.
CREATE OR REPLACE FUNCTION tombstone._in_trash(p_rel oid) RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = p_rel) = 'tombstone_trash'::regnamespace
       AND EXISTS (SELECT 1 FROM tombstone.trash x
                    WHERE x.restored_at IS NULL AND x.purged_at IS NULL
                      AND (x.source = p_rel
                           OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(x.renames) e
                                       WHERE e ->> 'kind' = 'table' AND (e ->> 'oid')::oid = p_rel)))
$$;

-- guarded_ddl is what the proxy runs for DDL that can take a protected
-- table out of protection, or drop one by the way (ALTER TABLE … SET
-- SCHEMA, ATTACH PARTITION, [NO] INHERIT, ALTER SCHEMA … RENAME, DROP
-- OWNED, DROP TYPE/DOMAIN … CASCADE): the statement runs as written,
-- with the caller's privileges and search_path; if a table protected
-- before it is no longer protected after it, or gone, it is undone and
-- refused (0A000) — its rows could otherwise be removed without a
-- tombstone.
CREATE OR REPLACE PROCEDURE tombstone.guarded_ddl(p_sql text, p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    before oid[] := tombstone._protected_rels();
    -- Names as they are before the statement, for the message.
    names text[] := ARRAY(SELECT format('%I.%I', n.nspname, c.relname)
                            FROM unnest(before) WITH ORDINALITY b(r, o)
                            JOIN pg_class c ON c.oid = b.r JOIN pg_namespace n ON n.oid = c.relnamespace
                           ORDER BY b.o);
    after oid[];
    i int;
BEGIN
    PERFORM tombstone._exec_as(p_sql, p_path);
    after := tombstone._protected_rels();
    FOR i IN 1 .. cardinality(before) LOOP
        CONTINUE WHEN before[i] = ANY (after);
        -- (Moved to the trash meanwhile by another session's DROP TABLE,
        -- committed between the two looks: not this statement's doing.)
        CONTINUE WHEN tombstone._in_trash(before[i]);
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = format('tombstone: this statement would %s protected table %s: its rows could then be removed without a tombstone',
                             CASE WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = before[i]) THEN 'take out of protection' ELSE 'drop' END,
                             names[i]),
            HINT = 'DROP TABLE it first (it goes to the trash), or protect its new place first (protect.schemas or protect.tables). Nothing was changed.';
    END LOOP;
END
$$;

-- drop_schema is what the proxy runs for DROP SCHEMA … CASCADE: the
-- statement as guarded_ddl runs it, and one check more. A table in the
-- trash that uses the schema's objects would lose columns of its types,
-- or go with the function its partition key calls: refused (0A000) —
-- DROP TYPE … CASCADE converts such columns to text first
-- (drop_types), or UNDROP or PURGE the table first. Only the trashed
-- tables that were there before are looked at, and one gone counts
-- only while its entry is open (another session's DROP TABLE, UNDROP
-- or purge meanwhile is not this statement's doing).
CREATE OR REPLACE PROCEDURE tombstone.drop_schema(p_sql text, p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    kept jsonb := tombstone._trash_shape();
BEGIN
    CALL tombstone.guarded_ddl(p_sql, p_path);
    IF EXISTS (SELECT FROM pg_catalog.jsonb_each_text(kept) k
                LEFT JOIN pg_catalog.pg_class c ON c.oid = k.key::oid
               WHERE CASE WHEN c.oid IS NULL THEN tombstone._trash_open(k.key::oid)
                          ELSE (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) < k.value::bigint END) THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = 'tombstone: this DROP SCHEMA would drop tables in the trash, or columns of them',
            HINT = 'DROP TYPE … CASCADE the schema''s types first (the trash keeps those columns'' values as text), or UNDROP or PURGE the tables first. Nothing was changed.';
    END IF;
END
$$;

-- _trash_shape maps each table in the trash to its number of columns,
-- for drop_schema. (It returned text for a while.)
DROP FUNCTION IF EXISTS tombstone._trash_shape();
CREATE OR REPLACE FUNCTION tombstone._trash_shape() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(c.oid::text, (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                                                               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)),
                    '{}')
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'tombstone_trash'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
$$;

-- _trash_open reports whether a trash entry for table p_rel is neither
-- restored nor purged.
CREATE OR REPLACE FUNCTION tombstone._trash_open(p_rel oid) RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM tombstone.trash x
                    WHERE x.source = p_rel AND x.restored_at IS NULL AND x.purged_at IS NULL)
$$;

-- _trash_ident is p_base cut (at a character boundary) so that
-- p_base || p_suffix fits an identifier's 63 bytes.
CREATE OR REPLACE FUNCTION tombstone._trash_ident(p_base text, p_suffix text) RETURNS name
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    n int := pg_catalog.char_length(p_base);
BEGIN
    WHILE pg_catalog.octet_length(pg_catalog.left(p_base, n) || p_suffix) > 63 LOOP
        n := n - 1;
    END LOOP;
    RETURN (pg_catalog.left(p_base, n) || p_suffix)::name;
END
$$;

-- _trash_free_name picks a name from p_base/p_suffix that no relation in
-- the given schemas has yet.
CREATE OR REPLACE FUNCTION tombstone._trash_free_name(p_base text, p_suffix text, p_nsps oid[]) RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    cand name := tombstone._trash_ident(p_base, p_suffix);
    k int := 1;
BEGIN
    -- (A table's row type takes its name too.)
    WHILE EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = cand AND c.relnamespace = ANY (p_nsps))
          OR EXISTS (SELECT 1 FROM pg_type t WHERE t.typname = cand AND t.typnamespace = ANY (p_nsps)) LOOP
        k := k + 1;
        cand := tombstone._trash_ident(p_base, p_suffix || '_' || k);
    END LOOP;
    RETURN cand;
END
$$;

-- _deps lists the objects object p_obj of catalog p_class depends on
-- (pg_depend), for undrop_table to check that a definition it parses
-- again means the objects it meant: a function dropped and created again
-- under its name, or an overload created since, is another object.
CREATE OR REPLACE FUNCTION tombstone._deps(p_class regclass, p_obj oid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(x ORDER BY x), '[]')
      FROM (SELECT DISTINCT d.refclassid::oid::text || ':' || d.refobjid::text || ':' || d.refobjsubid::text AS x
              FROM pg_catalog.pg_depend d
             WHERE d.classid = p_class AND d.objid = p_obj
               -- (a constraint trigger's own constraint is made anew)
               AND d.refclassid <> 'pg_catalog.pg_constraint'::regclass) s
$$;

-- _trash_wiring lists what ties p_members (a protected table and its
-- partitions) to the rest of the database, for trash_tables to cut and
-- undrop_table to restore: inheritance links either way, its own foreign
-- keys to other tables (not to those in p_keep, which the same statement
-- drops for real), its triggers (not the capture's own), rules and
-- row-level security policies, and the column defaults that use other
-- objects (a function, a sequence the table does not own). The
-- definitions are Postgres's own (pg_get_*def) under the pinned
-- search_path, so every object they name is schema-qualified.
CREATE OR REPLACE FUNCTION tombstone._trash_wiring(p_members oid[], p_keep oid[]) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'parents', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                               'table_oid', i.inhrelid, 'parent_oid', i.inhparent,
                               'table', i.inhrelid::regclass::text, 'parent', i.inhparent::regclass::text)
                           ORDER BY i.inhrelid, i.inhseqno), '[]')
                      FROM pg_catalog.pg_inherits i
                     WHERE i.inhrelid = ANY (p_members) AND NOT (i.inhparent = ANY (p_members))),
        'children', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                'table_oid', i.inhrelid, 'parent_oid', i.inhparent,
                                'table', i.inhrelid::regclass::text, 'parent', i.inhparent::regclass::text)
                            ORDER BY i.inhrelid), '[]')
                       FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent = ANY (p_members) AND NOT (i.inhrelid = ANY (p_members))),
        'keys', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'oid', k.oid, 'table_oid', k.conrelid, 'ref_oid', k.confrelid,
                            'table', k.conrelid::regclass::text, 'ref', k.confrelid::regclass::text, 'name', k.conname,
                            'def', pg_catalog.pg_get_constraintdef(k.oid), 'runs_code', tombstone._fk_runs_code(k.oid))
                        ORDER BY k.oid), '[]')
                   FROM pg_catalog.pg_constraint k
                  WHERE k.contype = 'f' AND k.conparentid = 0 AND k.conrelid = ANY (p_members)
                    AND NOT (k.confrelid = ANY (p_members || coalesce(p_keep, '{}')))),
        'triggers', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                'table_oid', g.tgrelid, 'name', g.tgname,
                                'def', pg_catalog.pg_get_triggerdef(g.oid), 'enabled', g.tgenabled::text,
                                'deps', tombstone._deps('pg_catalog.pg_trigger', g.oid))
                            ORDER BY pg_catalog.array_position(p_members, g.tgrelid), g.tgname), '[]')
                       FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_proc f ON f.oid = g.tgfoid
                      WHERE g.tgrelid = ANY (p_members) AND NOT g.tgisinternal AND g.tgparentid = 0
                        AND f.pronamespace <> 'tombstone'::regnamespace),
        'rules', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                             'table_oid', r.ev_class, 'name', r.rulename,
                             'def', pg_catalog.pg_get_ruledef(r.oid), 'enabled', r.ev_enabled::text,
                             'deps', tombstone._deps('pg_catalog.pg_rewrite', r.oid))
                         ORDER BY pg_catalog.array_position(p_members, r.ev_class), r.rulename), '[]')
                    FROM pg_catalog.pg_rewrite r
                   WHERE r.ev_class = ANY (p_members) AND r.rulename <> '_RETURN'),
        'policies', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                'table_oid', p.polrelid, 'name', p.polname,
                                'def', pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s',
                                    p.polname, p.polrelid::regclass,
                                    CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                    (SELECT pg_catalog.string_agg(CASE WHEN u.r = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(a.rolname) END, ', ' ORDER BY u.k)
                                       FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY u(r, k)
                                       LEFT JOIN pg_catalog.pg_roles a ON a.oid = u.r),
                                    ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')',
                                    ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')'),
                                'deps', tombstone._deps('pg_catalog.pg_policy', p.oid))
                            ORDER BY pg_catalog.array_position(p_members, p.polrelid), p.polname), '[]')
                       FROM pg_catalog.pg_policy p
                      WHERE p.polrelid = ANY (p_members)),
        'defaults', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                'table_oid', d.adrelid, 'column', a.attname,
                                'def', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                                'deps', tombstone._deps('pg_catalog.pg_attrdef', d.oid))
                            ORDER BY pg_catalog.array_position(p_members, d.adrelid), d.adnum), '[]')
                       FROM pg_catalog.pg_attrdef d
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                      WHERE d.adrelid = ANY (p_members) AND a.attgenerated = ''
                        AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend x
                                     WHERE x.classid = 'pg_catalog.pg_attrdef'::regclass AND x.objid = d.oid
                                       AND x.refobjid >= 16384
                                       AND NOT (x.refclassid = 'pg_catalog.pg_class'::regclass
                                                AND (x.refobjid = ANY (p_members)
                                                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend o
                                                                 WHERE o.classid = 'pg_catalog.pg_class'::regclass
                                                                   AND o.objid = x.refobjid AND o.refobjid = ANY (p_members)
                                                                   AND o.deptype IN ('a', 'i'))))))
    )
$$;

-- _trash_role is the role that holds the trashed tables of role p_owner
-- in this database: tombstone_trash_<database oid>_<owner oid>, NOLOGIN,
-- with no rights and no members, made when first needed (by
-- _trash_disown, as a superuser). One per owner, not one for all:
-- Postgres runs a table's index expressions and statistics as its owner
-- (ANALYZE, autovacuum), and that code, the table's author's, must reach
-- no other role's trashed tables.
CREATE OR REPLACE FUNCTION tombstone._trash_role(p_owner oid) RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.format('tombstone_trash_%s_%s', d.oid, p_owner)::name
      FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
$$;

-- _trash_role_gone drops trash role p_role once it holds nothing more
-- (in any database); the installer's rights.
CREATE OR REPLACE FUNCTION tombstone._trash_role_gone(p_role name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
BEGIN
    IF p_role LIKE 'tombstone\_trash\_%' AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = p_role)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend d
                        WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass
                          AND d.refobjid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = p_role)) THEN
        EXECUTE pg_catalog.format('DROP ROLE %I', p_role);
    END IF;
END
$$;

-- _trash_give hands the tables (their owned sequences follow) and the
-- statistics objects a trash entry recorded (p_renames) to role p_to: to
-- the owner's trash role on the way in (p_in: autovacuum off, it would
-- run the table's code for nothing), back to the owner on the way out.
-- The callers' (SECURITY DEFINER) rights.
CREATE OR REPLACE FUNCTION tombstone._trash_give(p_renames jsonb, p_to name, p_in boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT c.oid, c.relkind FROM pg_catalog.jsonb_array_elements(p_renames) e
               JOIN pg_catalog.pg_class c ON c.oid = (e ->> 'oid')::oid
              WHERE e ->> 'kind' = 'table' ORDER BY c.oid
    LOOP
        -- (One statement: each is another run of the DDL event trigger.)
        EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO %I%s', m.oid::regclass, p_to,
                                  CASE WHEN m.relkind <> 'r' THEN ''
                                       WHEN p_in THEN ', SET (autovacuum_enabled = false)'
                                       ELSE ', RESET (autovacuum_enabled)' END);
    END LOOP;
    FOR m IN SELECT e ->> 'trash' AS trash FROM pg_catalog.jsonb_array_elements(p_renames) e
              WHERE e ->> 'kind' = 'statistics'
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext x WHERE x.oid = (e ->> 'oid')::oid
                               AND x.stxnamespace = 'tombstone_trash'::regnamespace)
    LOOP
        EXECUTE pg_catalog.format('ALTER STATISTICS tombstone_trash.%I OWNER TO %I', m.trash, p_to);
    END LOOP;
END
$$;

-- _trash_disown hands the tables (with their owned sequences) and
-- statistics objects of trash entry p_id over to the owner's trash role
-- (_trash_role) — not the store's owner, whose rights the table's index
-- code would then run with — and revokes every privilege
-- granted on them, recording owner and grants in the entry's wiring: a
-- role that owned a trashed table, or was granted rights on it, can then
-- be dropped (DROP ROLE, DROP OWNED, REASSIGN OWNED), as after a plain
-- DROP TABLE. It acts only on an entry whose tables are in the trash and
-- not yet handed over, which only their owner's DROP TABLE brings about;
-- where the store's owner may not hand tables over (it is not a
-- superuser, or the role is missing), they keep their owner and grants.
CREATE OR REPLACE FUNCTION tombstone._trash_disown(p_id bigint) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    t tombstone.trash;
    objs oid[];
    owner oid;
    holder name;
    acl jsonb;
    m record;
BEGIN
    SELECT x.* INTO t FROM tombstone.trash x
     WHERE x.id = p_id AND x.restored_at IS NULL AND x.purged_at IS NULL
       AND x.trash_schema = 'tombstone_trash' AND NOT (x.wiring ? 'owner');
    IF NOT FOUND OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.trash_schema, t.trash_name)) IS DISTINCT FROM t.source THEN
        RETURN;
    END IF;
    objs := ARRAY(SELECT (e ->> 'oid')::oid FROM pg_catalog.jsonb_array_elements(t.renames) e
                   WHERE e ->> 'kind' IN ('table', 'sequence'));
    IF EXISTS (SELECT 1 FROM pg_catalog.unnest(objs) o LEFT JOIN pg_catalog.pg_class c ON c.oid = o
                WHERE c.relnamespace IS DISTINCT FROM 'tombstone_trash'::regnamespace) THEN
        RETURN;
    END IF;
    owner := (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = t.source);
    holder := tombstone._trash_role(owner);
    SELECT coalesce(pg_catalog.jsonb_agg(g ORDER BY g.rel, g.col NULLS FIRST, g.grantee, g.privilege), '[]') INTO acl FROM (
        SELECT c.oid AS rel, NULL::name AS col, c.relkind::text AS kind, a.grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a WHERE c.oid = ANY (objs)
        UNION ALL
        SELECT at.attrelid, at.attname, 'c', a.grantee, a.privilege_type, a.is_grantable
          FROM pg_catalog.pg_attribute at, pg_catalog.aclexplode(at.attacl) a
         WHERE at.attrelid = ANY (objs) AND NOT at.attisdropped) g;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = holder) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN NOINHERIT', holder);
            EXCEPTION WHEN unique_violation OR duplicate_object THEN
                NULL; -- made a moment ago by another session's DROP TABLE
            END;
        END IF;
        PERFORM tombstone._trash_give(t.renames, holder, true);
        FOR m IN SELECT DISTINCT (g ->> 'rel')::oid AS rel, g ->> 'kind' = 'S' AS seq, (g ->> 'grantee')::oid AS grantee
                   FROM pg_catalog.jsonb_array_elements(acl) g
                  WHERE (g ->> 'grantee')::oid IS DISTINCT FROM owner
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s CASCADE',
                CASE WHEN m.seq THEN 'SEQUENCE' ELSE 'TABLE' END, m.rel::regclass,
                CASE WHEN m.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(m.grantee)) END);
        END LOOP;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RETURN;
    END;
    UPDATE tombstone.trash x SET wiring = x.wiring || pg_catalog.jsonb_build_object('owner', owner, 'holder', holder, 'acl', acl)
     WHERE x.id = p_id;
END
$$;

-- _trash_reown gives the tables of trash entry p_id back to the owner
-- _trash_disown recorded, with the grants it revoked, for undrop_table,
-- whose caller p_caller (claimed; believed only when the session user
-- may be that role) must be an administrator. A role that no longer
-- exists gets nothing back: its tables stay with its trash role, its
-- grants are left out, each with a NOTICE.
CREATE OR REPLACE FUNCTION tombstone._trash_reown(p_id bigint, p_caller name) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    t tombstone.trash;
    holder_oid oid;
    objs oid[];
    owner name;
    g record;
BEGIN
    IF NOT (pg_catalog.pg_has_role(session_user, p_caller, 'MEMBER')
            AND (pg_catalog.pg_has_role(p_caller, 'tombstone_admin', 'MEMBER')
                 OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = p_caller))) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('tombstone: role %s may not read or restore tombstones', p_caller),
            HINT = pg_catalog.format('GRANT tombstone_admin TO %I', p_caller);
    END IF;
    SELECT x.* INTO t FROM tombstone.trash x
     WHERE x.id = p_id AND x.restored_at IS NULL AND x.purged_at IS NULL AND x.wiring ? 'owner'
       AND x.trash_schema = 'tombstone_trash';
    IF NOT FOUND OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.trash_schema, t.trash_name)) IS DISTINCT FROM t.source THEN
        RETURN;
    END IF;
    -- The entry is a row administrators may update: believed only for
    -- what _trash_disown made — tables and sequences in the trash, held
    -- by the owner's trash role, which no role is a member of, so that no
    -- entry written by hand can have another table (tombstone.audit, a
    -- table of one's own) given away or granted.
    holder_oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = t.wiring ->> 'holder');
    objs := ARRAY(SELECT (e ->> 'oid')::oid FROM pg_catalog.jsonb_array_elements(t.renames) e
                   WHERE e ->> 'kind' IN ('table', 'sequence'));
    IF holder_oid IS NULL OR t.wiring ->> 'holder' IS DISTINCT FROM tombstone._trash_role((t.wiring ->> 'owner')::oid)
       OR NOT t.source = ANY (objs)
       OR EXISTS (SELECT 1 FROM pg_catalog.unnest(objs) o LEFT JOIN pg_catalog.pg_class c ON c.oid = o
                   WHERE c.relnamespace IS DISTINCT FROM 'tombstone_trash'::regnamespace OR c.relowner IS DISTINCT FROM holder_oid)
       OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(t.wiring -> 'acl') e WHERE NOT (e ->> 'rel')::oid = ANY (objs)) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: trash entry %s does not match the tables in the trash', p_id),
            HINT = 'Its row in tombstone.trash was changed by hand; nothing was given back.';
    END IF;
    owner := pg_catalog.pg_get_userbyid((t.wiring ->> 'owner')::oid);
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = (t.wiring ->> 'owner')::oid) THEN
        RAISE NOTICE 'tombstone: %.% stays owned by %: its owner (role oid %) no longer exists',
            t.original_schema, t.original_name, t.wiring ->> 'holder', t.wiring ->> 'owner'
            USING HINT = pg_catalog.format('ALTER TABLE %I.%I OWNER TO <role>', t.original_schema, t.original_name);
    ELSE
        PERFORM tombstone._trash_give(t.renames, owner, false);
    END IF;
    -- The recorded grants, owner's own included: the owner's first
    -- revoked where its table's grants were not the default.
    FOR g IN SELECT DISTINCT (e ->> 'rel')::oid AS rel, e ->> 'kind' = 'S' AS seq
               FROM pg_catalog.jsonb_array_elements(t.wiring -> 'acl') e
              WHERE e ->> 'col' IS NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = (t.wiring ->> 'owner')::oid)
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %I', CASE WHEN g.seq THEN 'SEQUENCE' ELSE 'TABLE' END, g.rel::regclass, owner);
    END LOOP;
    FOR g IN SELECT (e ->> 'rel')::oid AS rel, e ->> 'kind' = 'S' AS seq, e ->> 'col' AS col, (e ->> 'grantee')::oid AS grantee,
                    e ->> 'privilege' AS privilege, (e ->> 'grantable')::boolean AS grantable
               FROM pg_catalog.jsonb_array_elements(t.wiring -> 'acl') e
    LOOP
        -- (Written by _trash_disown from aclexplode; checked all the same
        -- before it goes into a statement.)
        CONTINUE WHEN g.privilege NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'USAGE')
                   OR (g.col IS NOT NULL AND g.col NOT IN (SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = g.rel));
        IF g.grantee <> 0 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = g.grantee) THEN
            RAISE NOTICE 'tombstone: % on % not granted again: the role (oid %) no longer exists', g.privilege, g.rel::regclass, g.grantee;
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('GRANT %s%s ON %s %s TO %s%s', g.privilege,
            CASE WHEN g.col IS NOT NULL THEN ' (' || pg_catalog.quote_ident(g.col) || ')' ELSE '' END,
            CASE WHEN g.seq THEN 'SEQUENCE' ELSE 'TABLE' END, g.rel::regclass,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
            CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    PERFORM tombstone._trash_role_gone(t.wiring ->> 'holder');
END
$$;

-- _trash_free_type gives type p_type up in the tables of the trash, for
-- DROP TYPE / DROP DOMAIN (drop_types): each column of a trashed table
-- of that type (or an array of it) is converted to the type's text, or
-- to a domain's base type, so that the type can go, as after a plain
-- DROP TABLE; the entry records the column's type for UNDROP TABLE.
-- p_caller (claimed; believed only when the session user may be that
-- role) must own the type, as its DROP requires: else nothing changes,
-- and the DROP fails as it would have. SECURITY DEFINER: the trash's
-- tables belong to the store's owner (_trash_disown).
CREATE OR REPLACE FUNCTION tombstone._trash_free_type(p_type oid, p_caller name) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    types oid[];
BEGIN
    IF p_type IS NULL OR NOT pg_catalog.pg_has_role(session_user, p_caller, 'MEMBER')
       OR NOT pg_catalog.pg_has_role(p_caller, (SELECT t.typowner FROM pg_catalog.pg_type t WHERE t.oid = p_type), 'MEMBER') THEN
        RETURN;
    END IF;
    -- The type, a range's multirange, the domains over them or their
    -- arrays (a CASCADE drops those too), and all of their arrays.
    WITH RECURSIVE d(oid) AS (
        SELECT p_type
        UNION
        SELECT rg.rngmultitypid FROM pg_catalog.pg_range rg WHERE rg.rngtypid = p_type
        UNION
        -- a domain over one of them or over its array
        SELECT t.oid FROM d JOIN pg_catalog.pg_type b ON b.oid = d.oid
          JOIN pg_catalog.pg_type t ON t.typbasetype IN (b.oid, b.typarray) AND t.typtype = 'd')
    SELECT array_agg(x) INTO types
      FROM d JOIN pg_catalog.pg_type t ON t.oid = d.oid,
           LATERAL unnest(ARRAY[t.oid, t.typarray]) x
     WHERE x <> 0;
    PERFORM tombstone._trash_retype(types, NULL);
END
$$;

-- _trash_free_rowtypes gives up, in the tables of trash entry p_id, the
-- row types of other tables (and arrays of them) their columns have, as
-- _trash_free_type does for a dropped type: a trashed table's column of
-- another table's row type would block that table's ALTER TABLE and
-- DROP TABLE. UNDROP TABLE converts them back. SECURITY DEFINER, as
-- _trash_free_type; it acts only on an entry the calling statement made.
CREATE OR REPLACE FUNCTION tombstone._trash_free_rowtypes(p_id bigint) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    rels oid[];
    types oid[];
BEGIN
    SELECT ARRAY(SELECT e.source UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = e.source)
      INTO rels
      FROM tombstone.trash e
     WHERE e.id = p_id AND e.restored_at IS NULL AND e.purged_at IS NULL
       -- only as its DROP TABLE moves it, by the role that dropped it
       AND e.dropped_at = pg_catalog.statement_timestamp()
       AND pg_catalog.pg_has_role(session_user, e.role, 'MEMBER');
    -- (The tables first, then their columns by index: joined on an OR,
    -- this read all of pg_attribute and pg_class, 20 ms a DROP TABLE in a
    -- database of a thousand tables.)
    SELECT array_agg(DISTINCT ty.oid) INTO types
      FROM pg_catalog.pg_class t
      JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
      CROSS JOIN LATERAL (SELECT a.atttypid
                          UNION ALL
                          SELECT x.typelem FROM pg_catalog.pg_type x WHERE x.oid = a.atttypid AND x.typcategory = 'A') k(typ)
      JOIN pg_catalog.pg_type ty ON ty.oid = k.typ
      JOIN pg_catalog.pg_class rc ON rc.oid = ty.typrelid AND rc.relkind <> 'c'
     WHERE t.oid = ANY (rels) AND t.relnamespace = 'tombstone_trash'::regnamespace;
    IF types IS NOT NULL THEN
        PERFORM tombstone._trash_retype(types || ARRAY(SELECT ty.typarray FROM pg_catalog.pg_type ty WHERE ty.oid = ANY (types)), p_id);
    END IF;
END
$$;

-- _trash_retype converts the columns of the tables of the trash (of
-- entry p_id, or all) whose type is among p_types to the type's text,
-- or a domain's base type, recording each in its entry's wiring
-- (retyped) for UNDROP TABLE; typed tables of those types are made NOT
-- OF (typed). For _trash_free_type and _trash_free_rowtypes.
CREATE OR REPLACE FUNCTION tombstone._trash_retype(p_types oid[], p_id bigint) RETURNS void
LANGUAGE plpgsql
-- (the text a column is converted to must read back the same: _capture_settings)
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET lc_monetary = 'C'
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    r record;
    target text;
BEGIN
    FOR r IN SELECT DISTINCT e.id, a.attrelid, a.attname, a.atttypid, a.atttypmod,
                    pg_catalog.format_type(a.atttypid, a.atttypmod) AS typ
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.objid AND a.attnum = d.objsubid
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
               JOIN tombstone.trash e ON e.source = c.oid AND e.restored_at IS NULL AND e.purged_at IS NULL
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_type'::regclass
                AND d.refobjid = ANY (p_types) AND d.objsubid > 0
                AND c.relnamespace = 'tombstone_trash'::regnamespace
                AND (p_id IS NULL OR e.id = p_id)
              ORDER BY e.id, a.attrelid, a.attname
    LOOP
        -- Rewriting the column would check its CHECK constraints and
        -- compute generated columns from it, code of the table's author's,
        -- as this function's owner: such a table keeps the type (and the
        -- DROP fails as it would have).
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_catalog.pg_depend d
             WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = r.attrelid
               AND d.refobjsubid = (SELECT a.attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = r.attrelid AND a.attname = r.attname)
               AND (d.classid = 'pg_catalog.pg_constraint'::regclass
                    AND (SELECT c.contype FROM pg_catalog.pg_constraint c WHERE c.oid = d.objid) = 'c'
                    OR d.classid = 'pg_catalog.pg_attrdef'::regclass
                    AND (SELECT a.attgenerated FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a
                                                  ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE ad.oid = d.objid) <> ''));
        -- (A partitioned table's partitions follow it.)
        target := CASE WHEN (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = r.atttypid) = 'd'
                            AND NOT tombstone._as_text(r.atttypid)
                       THEN tombstone._value_type(r.atttypid, r.atttypmod) ELSE 'text' END;
        BEGIN
            -- (To text by the type's output function, never a cast.)
            EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %s',
                                      r.attrelid::regclass, r.attname, target,
                                      CASE WHEN target = 'text' THEN tombstone._text_of(r.atttypid, pg_catalog.quote_ident(r.attname))
                                           ELSE pg_catalog.format('%I::%s', r.attname, target) END);
        EXCEPTION WHEN OTHERS THEN
            CONTINUE; -- (a partition key, say): the DROP fails as it would have
        END;
        UPDATE tombstone.trash x
           SET wiring = x.wiring || pg_catalog.jsonb_build_object('retyped',
                   coalesce(x.wiring -> 'retyped', '[]') || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                       'table_oid', r.attrelid, 'column', r.attname, 'type', r.typ,
                       'shape', tombstone._shape(r.atttypid))))
         WHERE x.id = r.id;
    END LOOP;
    -- A typed table (CREATE TABLE … OF type) keeps its columns as its
    -- own (NOT OF); UNDROP TABLE makes it of the type again.
    FOR r IN SELECT e.id, c.oid AS rel, pg_catalog.format_type(c.reloftype, NULL) AS typ
               FROM pg_catalog.pg_class c
               JOIN tombstone.trash e ON e.source = c.oid AND e.restored_at IS NULL AND e.purged_at IS NULL
              WHERE c.reloftype = ANY (p_types) AND c.relnamespace = 'tombstone_trash'::regnamespace
                AND (p_id IS NULL OR e.id = p_id)
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s NOT OF', r.rel::regclass);
        UPDATE tombstone.trash x
           SET wiring = x.wiring || pg_catalog.jsonb_build_object('typed',
                   coalesce(x.wiring -> 'typed', '[]') || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                       'table_oid', r.rel, 'type', r.typ)))
         WHERE x.id = r.id;
    END LOOP;
END
$$;

-- drop_types is what the proxy runs for DROP TYPE and DROP DOMAIN
-- (p_sql as written, p_names the types it names, p_cascade its CASCADE):
-- the tables of the trash give those types up first (_trash_free_type);
-- with CASCADE, which drops the typed tables of a type (CREATE TABLE …
-- OF), those that are protected go to the trash first, as DROP TABLE …
-- CASCADE sends them. Then the statement runs as guarded_ddl runs it
-- (it must not take a protected table's column along).
DROP PROCEDURE IF EXISTS tombstone.drop_types(text, text[], text);
CREATE OR REPLACE PROCEDURE tombstone.drop_types(p_sql text, p_names text[], p_cascade boolean, p_client_addr text,
                                                 p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    nm text;
    typ oid;
    types oid[] := '{}';
    tables text[];
    quiet text;
BEGIN
    FOREACH nm IN ARRAY coalesce(p_names, '{}') LOOP
        PERFORM pg_catalog.set_config('search_path', p_path, true);
        BEGIN
            typ := pg_catalog.to_regtype(nm)::pg_catalog.oid;
        EXCEPTION WHEN OTHERS THEN
            typ := NULL; -- (a shell type, say: the DROP says what it says)
        END;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, tombstone, pg_temp', true);
        types := types || typ;
    END LOOP;
    -- The trash gives the types up first: the statement then sees no
    -- trashed column of them (with CASCADE it would drop it).
    FOREACH typ IN ARRAY types LOOP
        PERFORM tombstone._trash_free_type(typ, current_user);
    END LOOP;
    IF p_cascade THEN
        -- Refused by Postgres (a type the caller does not own), refused
        -- so, before anything goes to the trash; its NOTICE (what the
        -- CASCADE drops) is Postgres's own: the run that follows is quiet.
        quiet := tombstone._dry_run(p_sql, p_path);
        SELECT array_agg(pg_catalog.format('%I.%I', n.nspname, c.relname) ORDER BY c.oid) INTO tables
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.reloftype = ANY (types) AND c.oid = ANY (tombstone._protected_rels()) AND NOT c.relispartition;
        IF tables IS NOT NULL THEN
            CALL tombstone.trash_tables(tables, true, true, p_client_addr, p_sql, p_path);
            FOREACH typ IN ARRAY types LOOP
                PERFORM tombstone._trash_free_type(typ, current_user);
            END LOOP;
        END IF;
    END IF;
    CALL tombstone.guarded_ddl(p_sql, p_path);
    IF quiet IS NOT NULL THEN
        PERFORM pg_catalog.set_config('client_min_messages', quiet, true);
    END IF;
END
$$;

-- drop_owned is what the proxy runs for DROP OWNED (p_sql as written,
-- p_roles the roles it names: a name double-quoted, or current_user,
-- current_role, session_user): the protected tables those roles own go
-- to the trash as DROP TABLE sends them, then the statement runs as
-- guarded_ddl runs it. It runs once first and is rolled back, so that
-- what Postgres refuses (a role the caller does not act for, objects of
-- other roles that depend on these without CASCADE) fails as Postgres
-- fails it, with nothing trashed; after that the tables' dependents are
-- the statement's to drop, so the trash takes them along.
CREATE OR REPLACE PROCEDURE tombstone.drop_owned(p_sql text, p_roles text[], p_cascade boolean, p_client_addr text,
                                                 p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    owners oid[];
    tables text[];
    quiet text;
BEGIN
    owners := ARRAY(SELECT ro.oid FROM unnest(p_roles) x
                      JOIN pg_catalog.pg_roles ro
                        ON ro.rolname = CASE x WHEN 'current_user' THEN current_user
                                               WHEN 'current_role' THEN current_user
                                               WHEN 'session_user' THEN session_user
                                               ELSE (pg_catalog.parse_ident(x, false))[1] END);
    -- The types it drops (the roles', and those in the roles' schemas):
    -- the trash gives them up first, as for DROP TYPE (drop_types), so
    -- the statement meets no trashed column of them.
    PERFORM tombstone._drop_owned_types(owners);
    -- (Its NOTICE, what a CASCADE drops, is Postgres's own: the run that
    -- follows is quiet.)
    quiet := tombstone._dry_run(p_sql, p_path);
    -- The roots it would drop (a partition goes with its table, when
    -- the statement drops that too), named for the caller's search_path.
    SELECT array_agg(pg_catalog.format('%I.%I', n.nspname, c.relname) ORDER BY c.oid) INTO tables
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = ANY (tombstone._protected_rels()) AND c.relowner = ANY (owners)
       AND NOT (c.relispartition AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                 WHERE i.inhrelid = c.oid AND pc.relowner = ANY (owners)));
    IF tables IS NOT NULL THEN
        CALL tombstone.trash_tables(tables, true, true, p_client_addr, p_sql, p_path);
        PERFORM tombstone._drop_owned_types(owners); -- (the tables just trashed)
    END IF;
    CALL tombstone.guarded_ddl(p_sql, p_path);
    PERFORM pg_catalog.set_config('client_min_messages', quiet, true);
END
$$;

-- _drop_owned_types has the trash give up the types DROP OWNED BY
-- p_owners drops: theirs, and those in their schemas (_trash_free_type,
-- which believes only an owner or a member of one). A table's own row
-- type goes with its table; an array with its element type.
CREATE OR REPLACE FUNCTION tombstone._drop_owned_types(p_owners oid[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._trash_free_type(t.oid, current_user)
       FROM pg_catalog.pg_type t
      WHERE (t.typowner = ANY (p_owners)
             OR t.typnamespace IN (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspowner = ANY (p_owners)))
        AND t.typtype IN ('b', 'c', 'd', 'e', 'r', 'm')
        AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c');
END
$$;

-- _dry_run runs p_sql under p_path and rolls it back: what Postgres
-- refuses fails here, with Postgres's error, before anything else
-- happens. It then keeps NOTICEs from the client until the caller puts
-- client_min_messages back to the level it returns: the statement's
-- own NOTICEs were sent once, by this run.
CREATE OR REPLACE FUNCTION tombstone._dry_run(p_sql text, p_path text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    level text := pg_catalog.current_setting('client_min_messages');
BEGIN
    BEGIN
        PERFORM tombstone._exec_as(p_sql, p_path);
        RAISE EXCEPTION USING ERRCODE = 'TS900';
    EXCEPTION WHEN SQLSTATE 'TS900' THEN
        NULL; -- it would run: rolled back
    END;
    IF level NOT IN ('warning', 'error') THEN
        PERFORM pg_catalog.set_config('client_min_messages', 'warning', true);
    END IF;
    RETURN level;
END
$$;

-- _notice_cascaded reports what a DROP took along as Postgres does: in
-- one NOTICE, the objects in its DETAIL when there are several.
CREATE OR REPLACE FUNCTION tombstone._notice_cascaded(p_lines text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
BEGIN
    IF pg_catalog.cardinality(p_lines) = 1 THEN
        RAISE NOTICE '%', p_lines[1];
    ELSIF pg_catalog.cardinality(p_lines) > 1 THEN
        RAISE NOTICE 'drop cascades to % other objects', pg_catalog.cardinality(p_lines)
            USING DETAIL = pg_catalog.array_to_string(p_lines, E'\n');
    END IF;
END
$$;

-- _trash_kind is the keyword ALTER takes for a kind of object renames
-- records.
CREATE OR REPLACE FUNCTION tombstone._trash_kind(p_kind text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE p_kind WHEN 'table' THEN 'TABLE' WHEN 'index' THEN 'INDEX' WHEN 'statistics' THEN 'STATISTICS' ELSE 'SEQUENCE' END
$$;

-- _trash_register records that the protected table p_rel is about to be
-- moved to the trash and plans the move: the trash names of the table,
-- its partitions, their indexes and owned sequences (every one of them
-- moves into tombstone_trash, where the names of earlier trashed tables
-- must not collide; its statistics objects too), the foreign keys of
-- other tables (not in p_keep, which lists the tables the same statement
-- drops for real) that reference it, and what else ties it to the rest
-- of the database (_trash_wiring). It returns the plan; trash_tables carries it out with
-- the caller's privileges, so a caller that may not drop the table fails
-- there and this row rolls back with the statement.
--
-- It is SECURITY DEFINER because application roles cannot write
-- tombstone.trash. Everything it records comes from the catalogs, never
-- from the caller (except the claimed role, kept only when the session
-- user may be that role), so a direct call can at worst add an entry for
-- a table that never reaches the trash: undrop_table and the reaper
-- only act on an entry whose trash table exists with the recorded oid,
-- which only the table's owner can bring about.
CREATE OR REPLACE FUNCTION tombstone._trash_register(
    p_rel oid, p_keep oid[], p_role name, p_client_addr text, p_sql text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    p record;
    v_id bigint;
    members oid[];
    m record;
    trash_nsp oid := 'tombstone_trash'::regnamespace::oid;
    renames jsonb := '[]';
    fks jsonb;
    wiring jsonb;
    k int := 0;
    trash_name name;
    who name := session_user;
BEGIN
    SELECT pt.* INTO p FROM tombstone.protected_among(ARRAY[p_rel]) pt;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tombstone: %s is not a protected table', p_rel::regclass);
    END IF;
    -- Only for whoever may drop it (trash_tables has had Postgres check
    -- that already): called directly, an entry for another role's table
    -- would make DROP SCHEMA refuse (_trash_open).
    IF NOT pg_catalog.pg_has_role(session_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = p_rel), 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('must be owner of table %s', p_rel::regclass);
    END IF;
    members := ARRAY[p_rel] || ARRAY(SELECT t.relid FROM pg_partition_tree(p_rel) t WHERE t.relid <> p_rel ORDER BY t.level, t.relid);
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ANY (members) AND c.relkind NOT IN ('r', 'p')) THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: cannot move %s to the trash: it has foreign-table partitions', p_rel::regclass),
            HINT = 'Detach them first, or set policies.drop to allow.';
    END IF;
    v_id := pg_catalog.nextval('tombstone.trash_id_seq');

    FOR m IN SELECT c.oid, c.relname, c.relnamespace, n.nspname, o.ord
               FROM unnest(members) WITH ORDINALITY o(rel, ord)
               JOIN pg_class c ON c.oid = o.rel JOIN pg_namespace n ON n.oid = c.relnamespace
              ORDER BY o.ord
    LOOP
        trash_name := tombstone._trash_free_name(m.relname,
            '__' || v_id || CASE WHEN m.ord > 1 THEN '_p' || (m.ord - 1) ELSE '' END,
            ARRAY[trash_nsp, m.relnamespace]);
        renames := renames || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'kind', 'table', 'oid', m.oid, 'schema', m.nspname, 'name', m.relname, 'trash', trash_name));
    END LOOP;
    -- Indexes (partitioned ones too) and sequences owned by a column
    -- (serial, identity) move with their table.
    FOR m IN SELECT c.oid, c.relname, c.relnamespace, n.nspname,
                    CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'index' END AS kind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = ANY (members)
                              UNION
                              SELECT d.objid FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid = ANY (members) AND d.deptype IN ('a', 'i'))
                AND c.relkind IN ('i', 'I', 'S')
              ORDER BY c.oid
    LOOP
        k := k + 1;
        trash_name := tombstone._trash_free_name('t' || v_id || '_' || left(m.kind, 1) || k, '', ARRAY[trash_nsp, m.relnamespace]);
        renames := renames || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'kind', m.kind, 'oid', m.oid, 'schema', m.nspname, 'name', m.relname, 'trash', trash_name));
    END LOOP;
    -- Statistics objects do not move with their table (they live in a
    -- schema of their own choosing): they go to the trash by themselves,
    -- so that their names are free again, as after a plain DROP TABLE.
    FOR m IN SELECT s.oid, s.stxname, s.stxnamespace, n.nspname
               FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
              WHERE s.stxrelid = ANY (members)
              ORDER BY s.oid
    LOOP
        k := k + 1;
        trash_name := ('t' || v_id || '_x' || k)::name;
        WHILE EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s
                       WHERE s.stxname = trash_name AND s.stxnamespace IN (trash_nsp, m.stxnamespace)) LOOP
            k := k + 1;
            trash_name := ('t' || v_id || '_x' || k)::name;
        END LOOP;
        renames := renames || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'kind', 'statistics', 'oid', m.oid, 'schema', m.nspname, 'name', m.stxname, 'trash', trash_name));
    END LOOP;

    -- With search_path = pg_catalog, pg_get_constraintdef qualifies the
    -- referenced table, so the definition is valid wherever it runs.
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'oid', c.oid, 'table_oid', c.conrelid, 'table', pg_catalog.format('%I.%I', n.nspname, cl.relname),
               'name', c.conname, 'def', pg_catalog.pg_get_constraintdef(c.oid),
               'runs_code', tombstone._fk_runs_code(c.oid)) ORDER BY c.oid), '[]')
      INTO fks
      FROM pg_constraint c
      JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
     WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confrelid = ANY (members)
       AND NOT (c.conrelid = ANY (members || coalesce(p_keep, '{}')));

    IF p_role IS NOT NULL AND pg_has_role(session_user, p_role, 'MEMBER') THEN
        who := p_role;
    END IF;
    wiring := tombstone._trash_wiring(members, p_keep);
    INSERT INTO tombstone.trash (id, source, original_schema, original_name, trash_schema, trash_name, role,
                                 purge_after, renames, foreign_keys, wiring, client_addr, sql)
    VALUES (v_id, p_rel, p.schema_name, p.table_name, 'tombstone_trash', renames -> 0 ->> 'trash', who,
            statement_timestamp() + p.retention, renames, fks, wiring, p_client_addr, p_sql);
    RETURN pg_catalog.jsonb_build_object('id', v_id, 'renames', renames, 'foreign_keys', fks, 'wiring', wiring);
END
$$;

-- _inheritors lists the inheritance descendants of p_rels (not
-- partitions, nor p_rels themselves) in the order Postgres's DROP …
-- CASCADE reports them (findDependentObjects): each listed table in
-- turn, a table's children by descending oid, each once, a table after
-- its children; the whole list reversed. Each table is visited once
-- (a walk of every path took exponential time on multiple inheritance).
CREATE OR REPLACE FUNCTION tombstone._inheritors(p_rels oid[]) RETURNS oid[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    seen oid[] := p_rels;
    found oid[] := '{}';
    stack oid[];
    top oid;
    child oid;
    rel oid;
BEGIN
    -- Depth first without recursion: the stack holds the tables whose
    -- children are being walked; a table is recorded once it has no
    -- child left unseen.
    FOREACH rel IN ARRAY p_rels LOOP
        stack := ARRAY[rel];
        WHILE pg_catalog.cardinality(stack) > 0 LOOP
            top := stack[pg_catalog.cardinality(stack)];
            SELECT i.inhrelid INTO child FROM pg_catalog.pg_inherits i
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = top AND NOT c.relispartition AND NOT (i.inhrelid = ANY (seen))
             ORDER BY i.inhrelid DESC LIMIT 1;
            IF child IS NULL THEN
                stack := stack[1:pg_catalog.cardinality(stack) - 1];
                IF NOT (top = ANY (p_rels)) THEN
                    found := found || top;
                END IF;
            ELSE
                seen := seen || child;
                stack := stack || child;
            END IF;
        END LOOP;
    END LOOP;
    RETURN ARRAY(SELECT f.oid FROM pg_catalog.unnest(found) WITH ORDINALITY f(oid, k) ORDER BY f.k DESC);
END
$$;

-- trash_tables is what the proxy runs for a DROP TABLE that names a
-- protected table. Unprotected tables are dropped as usual; protected
-- ones (with their partitions) are renamed and moved to schema
-- tombstone_trash, recorded in tombstone.trash, and can be brought back
-- with undrop_table until the reaper drops them after their retention.
-- Their shadow tables and tombstones stay where they are.
--
-- DROP semantics are Postgres's own: a name that is missing or not a
-- table is handed to DROP TABLE [IF EXISTS] itself (its NOTICE or error),
-- and a RESTRICT DROP TABLE of every listed table is tried first in a
-- subtransaction that is always rolled back, so ownership (42501) and
-- dependency errors (2BP01, with Postgres's DETAIL and HINT) come out
-- exactly as for the plain statement. With CASCADE, foreign keys of other
-- tables that reference a trashed table are dropped (and recorded, for
-- UNDROP) and dependent views are dropped, as Postgres would; anything
-- else that still depends on it (inheritance children, functions using
-- its row type, …) refuses the statement (0A000) rather than destroying
-- what UNDROP could not give back. A partition named alone is detached
-- first and trashed as a protected table of its own (refused where it
-- would not be protected on its own); UNDROP gives it back detached.
--
-- The DDL event trigger (tombstone._on_ddl) fires on these ALTERs; with
-- tombstone.ddl_sync off for the duration it only notifies the proxies,
-- so the shadow registry keeps the table's original name while it is in
-- the trash (a table in tombstone_trash is not protected, so nothing
-- else touches it).
DROP PROCEDURE IF EXISTS tombstone.trash_tables(text[], boolean, boolean, text, text);
CREATE OR REPLACE PROCEDURE tombstone.trash_tables(
    p_tables text[], p_missing_ok boolean, p_cascade boolean, p_client_addr text, p_sql text,
    p_path text DEFAULT pg_catalog.current_setting('search_path'))
LANGUAGE plpgsql
SET jit = off -- (its catalog queries: see _sync_shadow)
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    q text;
    rel oid;
    cls record;
    rels oid[] := '{}';
    prot oid[] := '{}';
    plain oid[] := '{}';
    members oid[] := '{}';
    plan jsonb;
    plans jsonb[] := '{}';
    x jsonb;
    r record;
    has_deps boolean := false;
    sync_before text := pg_catalog.current_setting('tombstone.ddl_sync', true);
    syncing_before text := pg_catalog.current_setting('tombstone.syncing', true);
    as_replica boolean := pg_catalog.current_setting('session_replication_role') = 'origin'
                     AND (SELECT ro.rolsuper FROM pg_catalog.pg_roles ro WHERE ro.rolname = current_user);
    err_detail text;
    quoted text[];
    resolved oid[];
    cascaded text[] := '{}';
    parts oid[] := '{}';
    parent oid;
BEGIN
    quoted := ARRAY(SELECT (SELECT string_agg(quote_ident(u.part), '.' ORDER BY u.o)
                              FROM unnest(parse_ident(n.name)) WITH ORDINALITY u(part, o))
                      FROM unnest(p_tables) WITH ORDINALITY n(name, k) ORDER BY n.k);
    -- The caller's search_path resolves the names.
    resolved := tombstone._resolve_as(quoted, p_path, true);
    FOR i IN 1 .. cardinality(quoted) LOOP
        q := quoted[i];
        rel := resolved[i];
        SELECT c.relkind, c.relispartition INTO cls FROM pg_catalog.pg_class c WHERE c.oid = rel;
        IF rel IS NULL OR cls.relkind NOT IN ('r', 'p') THEN
            -- Postgres's own NOTICE or error, for the name as the caller
            -- resolves it.
            PERFORM tombstone._exec_as('DROP TABLE ' || CASE WHEN p_missing_ok THEN 'IF EXISTS ' ELSE '' END || q, p_path);
            CONTINUE;
        END IF;
        CONTINUE WHEN rel = ANY (rels);
        rels := rels || rel;
    END LOOP;
    IF pg_catalog.cardinality(rels) = 0 THEN
        RETURN;
    END IF;
    -- CASCADE drops inheritance children with their parent: they are
    -- dropped (or trashed) as if listed.
    IF p_cascade THEN
        -- In the order of Postgres's NOTICE (_inheritors).
        FOR r IN SELECT u.oid FROM pg_catalog.unnest(tombstone._inheritors(rels)) WITH ORDINALITY u(oid, k)
                   JOIN pg_catalog.pg_class c ON c.oid = u.oid
                  WHERE NOT c.relispartition AND c.relkind IN ('r', 'p')
                  ORDER BY u.k
        LOOP
            rels := rels || r.oid;
            cascaded := cascaded || ('drop cascades to table ' || tombstone._names_as(ARRAY[r.oid], p_path));
        END LOOP;
    END IF;

    FOR r IN SELECT p.relid, p.root, p.table_name FROM tombstone._protected_roots(rels) p LOOP
        -- A partition named with its table goes to the trash with it.
        CONTINUE WHEN r.relid <> r.root AND r.root = ANY (rels);
        IF r.relid <> r.root THEN
            -- A partition named without its table: detached below, it
            -- goes to the trash as a table of its own (with what it
            -- holds; a sub-partition listed with it goes along).
            parts := parts || r.relid;
            CONTINUE;
        END IF;
        prot := prot || r.relid;
    END LOOP;
    -- No protected table leaves while deletes are frozen (FREEZE DELETES).
    IF pg_catalog.cardinality(prot || parts) > 0 THEN
        PERFORM tombstone._refuse_frozen();
    END IF;
    parts := ARRAY(SELECT pt.p FROM pg_catalog.unnest(parts) pt(p)
                    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(pt.p) a
                                       WHERE a.relid <> pt.p AND a.relid = ANY (parts)));
    members := prot || parts || ARRAY(SELECT t.relid FROM pg_catalog.unnest(prot || parts) p, pg_catalog.pg_partition_tree(p) t WHERE t.relid <> p);
    plain := ARRAY(SELECT u FROM pg_catalog.unnest(rels) u WHERE NOT (u = ANY (members)));

    -- Postgres's own checks, on the whole list at once (tables of the
    -- list may depend on each other, as for DROP TABLE a, b).
    BEGIN
        PERFORM tombstone._exec_as('DROP TABLE ' || tombstone._names_as(rels, p_path), p_path);
        RAISE EXCEPTION USING ERRCODE = 'TS0D1';
    EXCEPTION
        WHEN SQLSTATE 'TS0D1' THEN
            NULL;
        WHEN dependent_objects_still_exist THEN
            IF NOT p_cascade THEN
                RAISE;
            END IF;
            has_deps := true;
    END;
    -- Locked for the rest of the statement now, before anything changes
    -- (the trial's locks went with its subtransaction): taken by a later
    -- RENAME, after this transaction had written to the catalog, the lock
    -- deadlocked with an autovacuum of the table, which Postgres otherwise
    -- cancels for a waiting DROP.
    PERFORM tombstone._exec_as('LOCK TABLE ' || tombstone._names_as(rels, p_path) || ' IN ACCESS EXCLUSIVE MODE', p_path);

    -- The policy is the database's (policies.drop), as for TRUNCATE.
    IF pg_catalog.cardinality(prot || parts) > 0 AND
       (SELECT st.value #>> '{}' FROM tombstone.settings st WHERE st.key = 'policies.drop') = 'reject' THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('tombstone: DROP TABLE of protected table %s is refused (policies.drop: reject)',
                                        (SELECT pr.table_name FROM tombstone._protected_roots(prot || parts) pr LIMIT 1)),
            HINT = 'Ask an administrator to change the policy, or exclude the table from protection first.';
    END IF;
    IF pg_catalog.cardinality(prot || parts) = 0
       OR (SELECT st.value #>> '{}' FROM tombstone.settings st WHERE st.key = 'policies.drop') = 'allow' THEN
        plain := rels;
        prot := '{}';
        parts := '{}';
    END IF;
    IF pg_catalog.cardinality(prot || parts) = 0 THEN
        -- The children CASCADE took along are listed now: Postgres's
        -- NOTICE for them is ours to give.
        PERFORM tombstone._notice_cascaded(cascaded);
        -- Guarded: a CASCADE may take a protected table with it (an
        -- inheritance child, a typed table).
        CALL tombstone.guarded_ddl('DROP TABLE ' || tombstone._names_as(plain, p_path) || CASE WHEN p_cascade THEN ' CASCADE' ELSE '' END, p_path);
        RETURN;
    END IF;

    -- The partitions named alone leave their tables, as ALTER TABLE …
    -- DETACH PARTITION (the caller's) would do it: UNDROP TABLE brings
    -- each back as a table of its own, to be attached again. (After
    -- Postgres's own checks: their errors first.)
    FOREACH rel IN ARRAY parts LOOP
        IF NOT coalesce(tombstone._protected_alone(rel), false) THEN
            RAISE EXCEPTION USING ERRCODE = '0A000',
                MESSAGE = pg_catalog.format('tombstone: DROP TABLE of partition %s of protected table %s is not supported: as a table of its own it would not be protected',
                                            rel::regclass, pg_catalog.pg_partition_root(rel)),
                HINT = pg_catalog.format('DELETE FROM %s (captured) and keep the empty partition, protect it (protect.schemas or protect.tables), or drop the whole table %s.',
                                         rel::regclass, pg_catalog.pg_partition_root(rel));
        END IF;
    END LOOP;
    FOREACH rel IN ARRAY parts LOOP
        SELECT i.inhparent INTO parent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = rel;
        BEGIN
            PERFORM tombstone._exec_as(pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s',
                                                         tombstone._names_as(ARRAY[parent], p_path), tombstone._names_as(ARRAY[rel], p_path)),
                                       p_path);
        EXCEPTION WHEN foreign_key_violation THEN
            GET STACKED DIAGNOSTICS err_detail = MESSAGE_TEXT;
            RAISE EXCEPTION USING ERRCODE = '0A000',
                MESSAGE = pg_catalog.format('tombstone: cannot move partition %s to the trash: rows of other tables reference its rows', rel::regclass),
                DETAIL = err_detail,
                HINT = 'Delete the referencing rows first (captured), or drop the foreign key.';
        END;
        -- Its own shadow table, under its own name, as detach_partition
        -- makes it (the rename into the trash would name it so).
        PERFORM pg_catalog.count(*) FROM tombstone._capture_targets(ARRAY[rel]);
        prot := prot || rel;
    END LOOP;

    -- Record and plan every protected table before anything changes, so
    -- the recorded foreign keys are the ones that exist now.
    FOREACH rel IN ARRAY prot LOOP
        plans := plans || tombstone._trash_register(rel, plain, current_user, p_client_addr, p_sql);
    END LOOP;

    -- Foreign keys of trashed tables that reference tables dropped for
    -- real in the same statement go with those tables (as in Postgres);
    -- drop them while the trashed tables can still be named.
    FOR r IN SELECT c.conrelid, c.conname FROM pg_catalog.pg_constraint c
              WHERE c.contype = 'f' AND c.conparentid = 0 AND c.conrelid = ANY (members) AND c.confrelid = ANY (plain)
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.conrelid::regclass, r.conname);
    END LOOP;

    IF has_deps THEN
        -- CASCADE: other tables' foreign keys and views that depend on a
        -- trashed table. Postgres reports each with a NOTICE; so do we.
        FOR r IN SELECT c.conrelid, c.conname FROM pg_catalog.pg_constraint c
                  WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confrelid = ANY (members)
                    AND NOT (c.conrelid = ANY (members))
                  ORDER BY c.oid
        LOOP
            cascaded := cascaded || pg_catalog.format('drop cascades to constraint %s on table %s', r.conname, tombstone._names_as(ARRAY[r.conrelid], p_path));
            EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.conrelid::regclass, r.conname);
        END LOOP;
        FOR r IN SELECT DISTINCT rw.ev_class AS v, c.relkind
                   FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
                   JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class
                  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.refobjid = ANY (members) AND d.deptype = 'n'
                    AND NOT (rw.ev_class = ANY (members)) AND c.relkind IN ('v', 'm')
        LOOP
            -- An earlier view's CASCADE may have taken this one already.
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = r.v);
            cascaded := cascaded || pg_catalog.format('drop cascades to %s %s', CASE WHEN r.relkind = 'm' THEN 'materialized view' ELSE 'view' END,
                tombstone._names_as(ARRAY[r.v], p_path));
            EXECUTE pg_catalog.format('DROP %s %s CASCADE',
                                      CASE WHEN r.relkind = 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, r.v::regclass);
        END LOOP;
        -- Anything left is something the trash cannot keep.
        BEGIN
            PERFORM tombstone._exec_as('DROP TABLE ' || tombstone._names_as(prot, p_path), p_path);
            RAISE EXCEPTION USING ERRCODE = 'TS0D1';
        EXCEPTION
            WHEN SQLSTATE 'TS0D1' THEN
                NULL;
            WHEN dependent_objects_still_exist THEN
                GET STACKED DIAGNOSTICS err_detail = PG_EXCEPTION_DETAIL;
                RAISE EXCEPTION USING ERRCODE = '0A000',
                    MESSAGE = pg_catalog.format('tombstone: cannot move %s to the trash: other objects depend on it',
                        tombstone._names_as(prot, p_path)),
                    DETAIL = err_detail,
                    HINT = 'Drop the dependent objects first, or set policies.drop to allow.';
        END;
    END IF;

    PERFORM tombstone._notice_cascaded(cascaded);

    -- Cut the trashed tables loose from everything else (their plans'
    -- wiring records it for UNDROP): inheritance links, foreign keys
    -- that leave a table's partition tree, triggers, rules, policies and
    -- the defaults that use other objects. Nothing reaches into the trash
    -- then, and nothing in it holds on to another object.
    FOR r IN SELECT i.inhrelid, i.inhparent FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
              WHERE NOT c.relispartition AND (i.inhrelid = ANY (members) OR i.inhparent = ANY (members))
              ORDER BY i.inhrelid, i.inhseqno
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s NO INHERIT %s', r.inhrelid::regclass, r.inhparent::regclass);
    END LOOP;
    FOR r IN SELECT c.conrelid, c.conname FROM pg_catalog.pg_constraint c
              WHERE c.contype = 'f' AND c.conparentid = 0
                AND (c.conrelid = ANY (members) OR c.confrelid = ANY (members))
                AND tombstone._root(c.conrelid) <> tombstone._root(c.confrelid)
              ORDER BY c.oid
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.conrelid::regclass, r.conname);
    END LOOP;
    FOREACH plan IN ARRAY plans LOOP
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'wiring' -> 'triggers') e LOOP
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', x ->> 'name', (x ->> 'table_oid')::oid::regclass);
        END LOOP;
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'wiring' -> 'rules') e LOOP
            EXECUTE pg_catalog.format('DROP RULE %I ON %s', x ->> 'name', (x ->> 'table_oid')::oid::regclass);
        END LOOP;
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'wiring' -> 'policies') e LOOP
            EXECUTE pg_catalog.format('DROP POLICY %I ON %s', x ->> 'name', (x ->> 'table_oid')::oid::regclass);
        END LOOP;
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'wiring' -> 'defaults') e LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', (x ->> 'table_oid')::oid::regclass, x ->> 'column');
        END LOOP;
    END LOOP;

    -- The move. Renames first (in the original schemas, where the caller
    -- can name the objects), then SET SCHEMA, which takes indexes and
    -- owned sequences along; each partition moves on its own, and so
    -- does each statistics object. Then the trash takes the tables over
    -- from their owner (_trash_disown).
    PERFORM pg_catalog.set_config('tombstone.ddl_sync', 'off', true);
    -- As the replica role where the installer may take it, with
    -- tombstone.syncing (as sync_shadow's own DDL), until the trash has
    -- taken the tables over: the DDL event trigger then syncs no shadow
    -- on the renames (a third of a DROP's time; a table on its way to the
    -- trash captures nothing, and UNDROP syncs it when it comes back),
    -- and users' own event triggers, which fire for the origin role, do
    -- not see the store's moves.
    IF as_replica THEN
        PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
        PERFORM pg_catalog.set_config('tombstone.syncing', 'on', true);
    END IF;
    FOREACH plan IN ARRAY plans LOOP
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'renames') e
                  ORDER BY (e ->> 'kind') = 'table', (e ->> 'oid')::oid
        LOOP
            EXECUTE pg_catalog.format('ALTER %s %I.%I RENAME TO %I', tombstone._trash_kind(x ->> 'kind'),
                x ->> 'schema', x ->> 'name', x ->> 'trash');
        END LOOP;
        FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(plan -> 'renames') e WHERE e ->> 'kind' IN ('table', 'statistics') LOOP
            EXECUTE pg_catalog.format('ALTER %s %I.%I SET SCHEMA tombstone_trash', tombstone._trash_kind(x ->> 'kind'),
                x ->> 'schema', x ->> 'trash');
        END LOOP;
    END LOOP;
    PERFORM pg_catalog.set_config('tombstone.ddl_sync', coalesce(sync_before, ''), true);
    FOREACH plan IN ARRAY plans LOOP
        PERFORM tombstone._trash_disown((plan ->> 'id')::bigint);
        PERFORM tombstone._trash_free_rowtypes((plan ->> 'id')::bigint);
    END LOOP;
    IF as_replica THEN
        PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
        PERFORM pg_catalog.set_config('tombstone.syncing', coalesce(syncing_before, ''), true);
    END IF;

    IF pg_catalog.cardinality(plain) > 0 THEN
        -- Guarded: a CASCADE may take a protected table with it (an
        -- inheritance child, a typed table).
        CALL tombstone.guarded_ddl('DROP TABLE ' || tombstone._names_as(plain, p_path) || CASE WHEN p_cascade THEN ' CASCADE' ELSE '' END, p_path);
    END IF;
END
$$;

-- _key_left_out warns that UNDROP TABLE leaves foreign key fk out, and
-- why, with the statement that would re-create it (p_first: who runs it,
-- or what comes first).
CREATE OR REPLACE FUNCTION tombstone._key_left_out(fk jsonb, p_why text, p_first text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    RAISE WARNING 'tombstone: foreign key % of table % not re-created: %', fk ->> 'name', (fk ->> 'table_oid')::oid::regclass, p_why
        USING HINT = pg_catalog.format('%s: ALTER TABLE %s ADD CONSTRAINT %I %s',
                                       p_first, (fk ->> 'table_oid')::oid::regclass, fk ->> 'name', fk ->> 'def');
END
$$;

-- _undrop_key re-creates foreign key fk (as trash recorded it) for
-- undrop_table, when the table at its other end (p_other: the
-- referencing table of a key that pointed at the trashed table, the
-- referenced one of the trashed table's own key) still exists, under the
-- name it had, outside the trash; NOT VALID, with a NOTICE, when rows
-- written since violate it (on a partitioned table, which takes no NOT
-- VALID key, not at all, with a WARNING); else it says why not.
CREATE OR REPLACE FUNCTION tombstone._undrop_key(fk jsonb, p_other oid, p_other_name text, p_ref oid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    msg text;
    ref oid := coalesce((fk ->> 'ref_oid')::oid, p_ref);
    later text := '';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p_other) THEN
        RAISE NOTICE 'tombstone: foreign key % of table % not re-created: table % no longer exists',
            fk ->> 'name', fk ->> 'table', p_other_name;
        RETURN;
    END IF;
    IF (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = p_other) = 'tombstone_trash'::regnamespace THEN
        RAISE NOTICE 'tombstone: foreign key % of table % not re-created yet: table % is in the trash; UNDROP TABLE it to re-create the key',
            fk ->> 'name', fk ->> 'table', p_other_name;
        RETURN;
    END IF;
    IF p_other::regclass::text IS DISTINCT FROM p_other_name THEN
        RAISE NOTICE 'tombstone: foreign key % of table % not re-created: table % is now called %',
            fk ->> 'name', fk ->> 'table', p_other_name, p_other::regclass
            USING HINT = pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s, naming the table as it is called now.',
                                           (fk ->> 'table_oid')::oid::regclass, fk ->> 'name', fk ->> 'def');
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                WHERE c.conrelid = (fk ->> 'table_oid')::oid AND c.conname = fk ->> 'name') THEN
        RAISE NOTICE 'tombstone: foreign key % of table % not re-created: the table has a constraint of that name',
            fk ->> 'name', (fk ->> 'table_oid')::oid::regclass;
        RETURN;
    END IF;
    -- Adding the key compares its columns: where that calls code no
    -- superuser owns, only the referencing table's owner adds it
    -- (Postgres runs such code as the owner; here it would run as
    -- the caller). Keys recorded before runs_code was are trusted
    -- only on tables a superuser owns.
    IF coalesce((fk ->> 'runs_code')::boolean,
                NOT (SELECT r.rolsuper FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                      WHERE c.oid = (fk ->> 'table_oid')::oid))
       AND (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = (fk ->> 'table_oid')::oid)
           IS DISTINCT FROM (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        PERFORM tombstone._key_left_out(fk, pg_catalog.format('comparing its columns runs code no superuser owns, which would run as %s', current_user),
                                        pg_catalog.format('As the owner of %s', (fk ->> 'table_oid')::oid::regclass));
        RETURN;
    END IF;
    -- Checking the rows plans a query over both tables, which runs code
    -- of theirs (an index predicate's function, folded by the planner):
    -- where that code is another role's, the key comes back NOT VALID,
    -- for that role to validate.
    IF (tombstone._runs_code((fk ->> 'table_oid')::oid) OR tombstone._runs_code(ref))
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                    WHERE c.oid IN ((fk ->> 'table_oid')::oid, ref) AND r.rolname <> current_user AND NOT r.rolsuper) THEN
        -- (A partitioned table takes no NOT VALID key.)
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = (fk ->> 'table_oid')::oid) = 'p' THEN
            PERFORM tombstone._key_left_out(fk, pg_catalog.format('checking its rows would run code of the tables'' owners as %s', current_user),
                                            pg_catalog.format('As the owner of %s', (fk ->> 'table_oid')::oid::regclass));
            RETURN;
        END IF;
        later := ' NOT VALID';
        RAISE NOTICE 'tombstone: foreign key % of table % re-created NOT VALID: checking its rows would run code of the tables'' owners as %',
            fk ->> 'name', (fk ->> 'table_oid')::oid::regclass, current_user
            USING HINT = pg_catalog.format('As the owner of %s: ALTER TABLE %s VALIDATE CONSTRAINT %I',
                                           (fk ->> 'table_oid')::oid::regclass, (fk ->> 'table_oid')::oid::regclass, fk ->> 'name');
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s%s',
            (fk ->> 'table_oid')::oid::regclass, fk ->> 'name', fk ->> 'def', later);
    EXCEPTION
        WHEN foreign_key_violation THEN
            IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = (fk ->> 'table_oid')::oid) = 'p' THEN
                -- (A partitioned table takes no NOT VALID key.)
                PERFORM tombstone._key_left_out(fk, 'rows written since the drop violate it', 'Fix those rows, then');
                RETURN;
            END IF;
            EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID',
                (fk ->> 'table_oid')::oid::regclass, fk ->> 'name', fk ->> 'def');
            RAISE NOTICE 'tombstone: foreign key % of table % re-created NOT VALID: rows written since the drop violate it',
                fk ->> 'name', (fk ->> 'table_oid')::oid::regclass
                USING HINT = pg_catalog.format('Fix those rows, then ALTER TABLE %s VALIDATE CONSTRAINT %I.',
                                               (fk ->> 'table_oid')::oid::regclass, fk ->> 'name');
        WHEN insufficient_privilege THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            PERFORM tombstone._key_left_out(fk, msg, 'As the table''s owner');
    END;
END
$$;

-- _live reports whether table p_rel exists outside the trash.
CREATE OR REPLACE FUNCTION tombstone._live(p_rel oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                    WHERE c.oid = p_rel AND c.relnamespace <> 'tombstone_trash'::regnamespace)
$$;

-- _undrop_wiring gives a table undrop_table has moved back what
-- trash_tables cut it loose from (p_wiring, see _trash_wiring), in the
-- caller's name: inheritance links to tables that are outside the trash
-- (a parent or child still in it is linked by its own UNDROP), its own
-- foreign keys, triggers (enabled as they were), rules, policies and
-- column defaults. What cannot be restored — the other table is gone,
-- a function was dropped, a column no longer matches — is left out
-- with a WARNING that says why and how to restore it by hand.
CREATE OR REPLACE FUNCTION tombstone._undrop_wiring(p_wiring jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    x jsonb;
    other oid;
    ddl text;
    what text;
    msg text;
BEGIN
    -- Columns a DROP TYPE converted while the table lay in the trash:
    -- back to their type, if it exists again under that name.
    -- (Rewriting the table checks its constraints: run as its owner where
    -- they are code someone wrote, tombstone._owned; the text is read
    -- back behind tombstone._text_reads.)
    FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'retyped', '[]')) e LOOP
        -- A type with a domain in it checks the domain's constraints on
        -- the way: code of whoever made the type under that name since,
        -- which must not run as the admin. Left for the owner.
        -- A composite's text is positional: read back only into the
        -- shape it was written from (an attribute dropped and another
        -- added since would take its value).
        IF x ? 'shape' AND pg_catalog.to_regtype(x ->> 'type') IS NOT NULL
           AND tombstone._shape(pg_catalog.to_regtype(x ->> 'type')) IS DISTINCT FROM x ->> 'shape' THEN
            RAISE WARNING 'tombstone: column % of table % keeps type text instead of %: the type''s attributes changed since the column was set aside',
                x ->> 'column', (x ->> 'table_oid')::oid::regclass, x ->> 'type'
                USING HINT = 'Convert the text by hand, attribute by attribute.';
            CONTINUE;
        END IF;
        IF pg_catalog.to_regtype(x ->> 'type') IS NOT NULL AND NOT tombstone._no_domain(pg_catalog.to_regtype(x ->> 'type')) THEN
            RAISE WARNING 'tombstone: column % of table % keeps type % instead of %: converting it would check a domain''s constraints as %',
                x ->> 'column', (x ->> 'table_oid')::oid::regclass,
                (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = (x ->> 'table_oid')::oid AND a.attname = x ->> 'column'),
                x ->> 'type', current_user
                USING HINT = pg_catalog.format('As the table''s owner: ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %I::%s',
                                               (x ->> 'table_oid')::oid::regclass, x ->> 'column', x ->> 'type', x ->> 'column', x ->> 'type');
            CONTINUE;
        END IF;
        ddl := pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %s', (x ->> 'table_oid')::oid::regclass,
                                 x ->> 'column', x ->> 'type',
                                 CASE WHEN (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                             WHERE a.attrelid = (x ->> 'table_oid')::oid AND a.attname = x ->> 'column') = 'pg_catalog.text'::regtype
                                      THEN tombstone._from_text(pg_catalog.quote_ident(x ->> 'column'), x ->> 'type')
                                      ELSE pg_catalog.format('%I::%s', x ->> 'column', x ->> 'type') END);
        BEGIN
            PERFORM tombstone._owned((x ->> 'table_oid')::oid, ddl, pg_catalog.current_setting('search_path'));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE WARNING 'tombstone: column % of table % keeps type % instead of %: %', x ->> 'column',
                (x ->> 'table_oid')::oid::regclass,
                (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = (x ->> 'table_oid')::oid AND a.attname = x ->> 'column'),
                x ->> 'type', msg
                USING HINT = ddl;
        END;
    END LOOP;
    -- Typed tables a DROP TYPE made NOT OF: of the type again, if one of
    -- that name exists and matches the columns.
    FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'typed', '[]')) e LOOP
        ddl := pg_catalog.format('ALTER TABLE %s OF %s', (x ->> 'table_oid')::oid::regclass, x ->> 'type');
        BEGIN
            PERFORM tombstone._owned((x ->> 'table_oid')::oid, ddl, pg_catalog.current_setting('search_path'));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE WARNING 'tombstone: table % is no longer of type %: %', (x ->> 'table_oid')::oid::regclass, x ->> 'type', msg
                USING HINT = ddl;
        END;
    END LOOP;
    FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'parents', '[]') || coalesce(p_wiring -> 'children', '[]')) e LOOP
        other := CASE WHEN x ->> 'table_oid' = ANY (ARRAY(SELECT p ->> 'table_oid' FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'parents', '[]')) p))
                      THEN (x ->> 'parent_oid')::oid ELSE (x ->> 'table_oid')::oid END;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = other) THEN
            RAISE NOTICE 'tombstone: table % not made a child of % again: % no longer exists', x ->> 'table', x ->> 'parent',
                CASE WHEN other = (x ->> 'parent_oid')::oid THEN x ->> 'parent' ELSE x ->> 'table' END;
            CONTINUE;
        END IF;
        IF (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = other) = 'tombstone_trash'::regnamespace THEN
            RAISE NOTICE 'tombstone: table % not made a child of % again yet: % is in the trash; its UNDROP TABLE links them',
                x ->> 'table', x ->> 'parent', CASE WHEN other = (x ->> 'parent_oid')::oid THEN x ->> 'parent' ELSE x ->> 'table' END;
            CONTINUE;
        END IF;
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                               WHERE i.inhrelid = (x ->> 'table_oid')::oid AND i.inhparent = (x ->> 'parent_oid')::oid);
        ddl := pg_catalog.format('ALTER TABLE %s INHERIT %s', (x ->> 'table_oid')::oid::regclass, (x ->> 'parent_oid')::oid::regclass);
        BEGIN
            EXECUTE ddl;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE WARNING 'tombstone: table % not made a child of % again: %', x ->> 'table', x ->> 'parent', msg
                USING HINT = ddl;
        END;
    END LOOP;
    FOR x IN SELECT e FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'keys', '[]')) e LOOP
        PERFORM tombstone._undrop_key(x, (x ->> 'ref_oid')::oid, x ->> 'ref', NULL);
    END LOOP;
    FOR x, what IN
        SELECT e, 'trigger' FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'triggers', '[]')) e
        UNION ALL SELECT e, 'rule' FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'rules', '[]')) e
        UNION ALL SELECT e, 'policy' FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'policies', '[]')) e
        UNION ALL SELECT e, 'default' FROM pg_catalog.jsonb_array_elements(coalesce(p_wiring -> 'defaults', '[]')) e
    LOOP
        ddl := CASE what
            WHEN 'default' THEN pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s',
                                                  (x ->> 'table_oid')::oid::regclass, x ->> 'column', x ->> 'def')
            ELSE pg_catalog.rtrim(x ->> 'def', ';') END;
        BEGIN
            EXECUTE ddl;
            -- Parsed again, the definition must mean the objects it did:
            -- a function dropped and created again, or an overload or a
            -- type created since under a name it uses, is not what the
            -- table's owner wired in (and may be anyone's code).
            IF x ? 'deps' AND tombstone._deps(
                   CASE what WHEN 'trigger' THEN 'pg_catalog.pg_trigger' WHEN 'rule' THEN 'pg_catalog.pg_rewrite'
                             WHEN 'policy' THEN 'pg_catalog.pg_policy' ELSE 'pg_catalog.pg_attrdef' END::regclass,
                   CASE what
                       WHEN 'trigger' THEN (SELECT g.oid FROM pg_catalog.pg_trigger g
                                             WHERE g.tgrelid = (x ->> 'table_oid')::oid AND g.tgname = x ->> 'name')
                       WHEN 'rule' THEN (SELECT r.oid FROM pg_catalog.pg_rewrite r
                                          WHERE r.ev_class = (x ->> 'table_oid')::oid AND r.rulename = x ->> 'name')
                       WHEN 'policy' THEN (SELECT p.oid FROM pg_catalog.pg_policy p
                                            WHERE p.polrelid = (x ->> 'table_oid')::oid AND p.polname = x ->> 'name')
                       ELSE (SELECT d.oid FROM pg_catalog.pg_attrdef d
                              JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                             WHERE d.adrelid = (x ->> 'table_oid')::oid AND a.attname = x ->> 'column') END)
               IS DISTINCT FROM x -> 'deps' THEN
                RAISE EXCEPTION USING ERRCODE = 'TS0D2',
                    MESSAGE = 'it would now use other objects than it did: one it used was dropped (and maybe created again) while the table was in the trash';
            END IF;
            -- Enabled as it was (O, the default, needs nothing).
            IF what IN ('trigger', 'rule') AND x ->> 'enabled' IN ('D', 'R', 'A') THEN
                EXECUTE pg_catalog.format('ALTER TABLE %s %s %s %I', (x ->> 'table_oid')::oid::regclass,
                    CASE x ->> 'enabled' WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END,
                    pg_catalog.upper(what), x ->> 'name');
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE WARNING 'tombstone: % % of table % not re-created: %', what, coalesce(x ->> 'name', x ->> 'column'),
                (x ->> 'table_oid')::oid::regclass, msg
                USING HINT = ddl;
        END;
    END LOOP;
END
$$;

-- undrop_table brings back the newest dropped table called p_name
-- (regclass input form; unqualified names are looked up in the protected
-- schemas in their configured order) that is still in the trash: it
-- moves the table (and its partitions) back, gives every object its old
-- name, re-creates the recorded foreign keys of other tables that still
-- exist (NOT VALID, with a NOTICE, when rows written since violate them;
-- skipped with a WARNING when the admin may not alter that table) and
-- marks the entry restored. Admin only; it runs with the caller's
-- privileges, so moving the table back needs its owner's rights
-- (superuser, or membership in the owning role).
CREATE OR REPLACE FUNCTION tombstone.undrop_table(p_name text)
RETURNS TABLE (table_name text, restored_from text, dropped_at timestamptz)
LANGUAGE plpgsql
SET jit = off -- (its catalog queries: see _sync_shadow)
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    parts text[];
    e tombstone.trash;
    x jsonb;
    sync_before text;
    fk jsonb;
    msg text;
BEGIN
    PERFORM tombstone._require_admin();
    parts := pg_catalog.parse_ident(p_name);
    IF pg_catalog.cardinality(parts) NOT IN (1, 2) THEN
        RAISE EXCEPTION USING ERRCODE = '42601',
            MESSAGE = pg_catalog.format('tombstone: improper table name %s', p_name);
    END IF;
    SELECT t.* INTO e
      FROM tombstone.trash t
      JOIN pg_catalog.pg_class c ON c.oid = t.source AND c.relname = t.trash_name
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.trash_schema
      LEFT JOIN tombstone.protected s ON s.kind = 'schema' AND s.schema_name = t.original_schema AND s.table_name = ''
     WHERE t.restored_at IS NULL AND t.purged_at IS NULL
       AND t.original_name = parts[pg_catalog.cardinality(parts)]
       AND (CASE WHEN pg_catalog.cardinality(parts) = 2 THEN t.original_schema = parts[1] ELSE s.kind IS NOT NULL END)
     ORDER BY s.position, t.dropped_at DESC, t.id DESC
     LIMIT 1
       FOR UPDATE OF t;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('tombstone: no dropped table %s in the trash', p_name),
            HINT = 'SELECT * FROM tombstone.trash lists what was dropped; purged tables cannot be restored.';
    END IF;
    IF pg_catalog.to_regnamespace(pg_catalog.quote_ident(e.original_schema)) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '3F000',
            MESSAGE = pg_catalog.format('tombstone: cannot UNDROP TABLE %I.%I: schema %I does not exist',
                                        e.original_schema, e.original_name, e.original_schema),
            HINT = 'Create the schema first.';
    END IF;
    FOR x IN SELECT v FROM pg_catalog.jsonb_array_elements(e.renames) v WHERE v ->> 'kind' = 'table' LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = x ->> 'schema' AND c.relname = x ->> 'name') THEN
            RAISE EXCEPTION USING ERRCODE = '42P07',
                MESSAGE = pg_catalog.format('tombstone: cannot UNDROP TABLE %I.%I: relation %I.%I exists again',
                                            e.original_schema, e.original_name, x ->> 'schema', x ->> 'name'),
                HINT = 'Rename or drop the new relation first, then UNDROP TABLE again.';
        END IF;
    END LOOP;

    -- The trash gives the tables back to their owner first (the caller
    -- moves them back with the owner's rights).
    PERFORM tombstone._trash_reown(e.id, current_user);
    sync_before := pg_catalog.current_setting('tombstone.ddl_sync', true);
    PERFORM pg_catalog.set_config('tombstone.ddl_sync', 'off', true);
    FOR x IN SELECT v FROM pg_catalog.jsonb_array_elements(e.renames) v WHERE v ->> 'kind' IN ('table', 'statistics') LOOP
        IF x ->> 'kind' = 'statistics' AND NOT EXISTS (
               SELECT 1 FROM pg_catalog.pg_statistic_ext s
                WHERE s.oid = (x ->> 'oid')::oid AND s.stxnamespace = 'tombstone_trash'::regnamespace) THEN
            RAISE NOTICE 'tombstone: statistics object %.% not restored: it was dropped while its table was in the trash',
                x ->> 'schema', x ->> 'name';
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('ALTER %s tombstone_trash.%I SET SCHEMA %I', tombstone._trash_kind(x ->> 'kind'), x ->> 'trash', x ->> 'schema');
        CONTINUE WHEN x ->> 'kind' <> 'table';
        EXECUTE pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', x ->> 'schema', x ->> 'trash', x ->> 'name');
    END LOOP;
    FOR x IN SELECT v FROM pg_catalog.jsonb_array_elements(e.renames) v WHERE v ->> 'kind' <> 'table' LOOP
        CONTINUE WHEN x ->> 'kind' = 'statistics'
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s WHERE s.oid = (x ->> 'oid')::oid);
        IF (CASE WHEN x ->> 'kind' = 'statistics'
                THEN EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
                              WHERE n.nspname = x ->> 'schema' AND s.stxname = x ->> 'name')
                ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = x ->> 'schema' AND c.relname = x ->> 'name') END) THEN
            RAISE NOTICE 'tombstone: % %.% keeps the name % (its old name % is taken)',
                x ->> 'kind', x ->> 'schema', x ->> 'trash', x ->> 'trash', x ->> 'name';
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('ALTER %s %I.%I RENAME TO %I',
            tombstone._trash_kind(x ->> 'kind'), x ->> 'schema', x ->> 'trash', x ->> 'name');
    END LOOP;
    PERFORM pg_catalog.set_config('tombstone.ddl_sync', coalesce(sync_before, ''), true);
    IF EXISTS (SELECT 1 FROM tombstone.shadows s WHERE s.source = e.source) THEN
        PERFORM tombstone.sync_shadow(e.source::regclass);
    END IF;

    FOR fk IN SELECT v FROM pg_catalog.jsonb_array_elements(e.foreign_keys) v LOOP
        PERFORM tombstone._undrop_key(fk, (fk ->> 'table_oid')::oid, fk ->> 'table', e.source);
    END LOOP;
    PERFORM tombstone._undrop_wiring(e.wiring);
    -- And what other entries recorded and could not restore while this
    -- table lay in the trash: keys and inheritance links between it and
    -- tables undropped before it (or dropped after it), whose own
    -- UNDROP skipped them.
    PERFORM tombstone._undrop_wiring(pg_catalog.jsonb_build_object(
        'keys',
            (SELECT coalesce(pg_catalog.jsonb_agg(v || pg_catalog.jsonb_build_object(
                        'ref_oid', o.source, 'ref', pg_catalog.format('%I.%I', o.original_schema, o.original_name))), '[]')
               FROM tombstone.trash o, pg_catalog.jsonb_array_elements(o.foreign_keys) v
              WHERE o.id <> e.id AND (v ->> 'table_oid')::oid = e.source
                AND tombstone._live(o.source)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conrelid = e.source AND c.conname = v ->> 'name'))
            || (SELECT coalesce(pg_catalog.jsonb_agg(v), '[]')
                  FROM tombstone.trash o, pg_catalog.jsonb_array_elements(o.wiring -> 'keys') v
                 WHERE o.id <> e.id AND (v ->> 'ref_oid')::oid = e.source
                   AND tombstone._live((v ->> 'table_oid')::oid)
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                                    WHERE c.conrelid = (v ->> 'table_oid')::oid AND c.conname = v ->> 'name')),
        'children',
            (SELECT coalesce(pg_catalog.jsonb_agg(v), '[]')
               FROM tombstone.trash o, pg_catalog.jsonb_array_elements(o.wiring -> 'parents') v
              WHERE o.id <> e.id AND (v ->> 'parent_oid')::oid = e.source AND tombstone._live((v ->> 'table_oid')::oid)),
        'parents',
            (SELECT coalesce(pg_catalog.jsonb_agg(v), '[]')
               FROM tombstone.trash o, pg_catalog.jsonb_array_elements(o.wiring -> 'children') v
              WHERE o.id <> e.id AND (v ->> 'table_oid')::oid = e.source AND tombstone._live((v ->> 'parent_oid')::oid))));

    UPDATE tombstone.trash t SET restored_at = pg_catalog.now() WHERE t.id = e.id;
    table_name := e.original_schema || '.' || e.original_name;
    restored_from := e.trash_schema || '.' || e.trash_name;
    dropped_at := e.dropped_at;
    PERFORM tombstone._audit('UNDROP TABLE', pg_catalog.jsonb_build_object('table', p_name),
                             pg_catalog.jsonb_build_object('table', table_name, 'restored_from', restored_from,
                                                           'dropped_at', dropped_at, 'trash_id', e.id));
    RETURN NEXT;
END
$$;

-- show_trash is SHOW TRASH: the tables in the trash now, newest first —
-- what UNDROP TABLE can bring back, until when, and how big they are.
CREATE OR REPLACE FUNCTION tombstone.show_trash()
RETURNS TABLE (id bigint, table_name text, dropped_at timestamptz, dropped_by name, purge_after timestamptz,
               held boolean, size text, client_addr text, sql text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    RETURN QUERY
    SELECT t.id, pg_catalog.format('%I.%I', t.original_schema, t.original_name), t.dropped_at, t.role, t.purge_after,
           t.held, pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(c.oid)
                                             + coalesce((SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(p.relid))
                                                           FROM pg_catalog.pg_partition_tree(c.oid) p WHERE p.relid <> c.oid), 0)::bigint),
           t.client_addr, t.sql
      FROM tombstone.trash t
      LEFT JOIN pg_catalog.pg_class c ON c.oid = t.source
     WHERE t.restored_at IS NULL AND t.purged_at IS NULL
     ORDER BY t.dropped_at DESC, t.id DESC;
END
$$;

-- _live_or_trashed is p_rel, the table p_name names for the caller
-- (pg_catalog.to_regclass, evaluated in the caller's statement), for
-- SHOW TOMBSTONES: when no table has that name, Postgres's own 42P01 —
-- or, when a table of that name lies in the trash, one that says so and
-- how to bring it back.
CREATE OR REPLACE FUNCTION tombstone._live_or_trashed(p_rel regclass, p_name text) RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    parts text[];
    e record;
BEGIN
    IF p_rel IS NOT NULL THEN
        RETURN p_rel;
    END IF;
    PERFORM tombstone._require_admin();
    parts := pg_catalog.parse_ident(p_name);
    SELECT t.original_schema, t.original_name, t.dropped_at, t.purge_after INTO e
      FROM tombstone.trash t
     WHERE t.restored_at IS NULL AND t.purged_at IS NULL
       AND t.original_name = parts[pg_catalog.cardinality(parts)]
       AND (pg_catalog.cardinality(parts) = 1 OR t.original_schema = parts[1])
     ORDER BY t.dropped_at DESC, t.id DESC
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('tombstone: table %I.%I was dropped at %s and is in the trash', e.original_schema, e.original_name, e.dropped_at),
            DETAIL = pg_catalog.format('Its rows are kept until %s; the tombstones of its earlier deletes are in its shadow table as before.', e.purge_after),
            HINT = pg_catalog.format('UNDROP TABLE %I.%I brings it back with its rows; SHOW TRASH lists what is in the trash.', e.original_schema, e.original_name);
    END IF;
    RAISE EXCEPTION USING ERRCODE = '42P01', MESSAGE = pg_catalog.format('relation "%s" does not exist', pg_catalog.array_to_string(parts, '.'));
END
$$;

-- Grants: the procedures and the registry helpers are for everyone
-- (PUBLIC has EXECUTE by default; said here so that it is on purpose);
-- undrop_table checks tombstone_admin membership itself.
GRANT EXECUTE ON FUNCTION tombstone._protected_roots(oid[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._capture_targets(oid[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_register(oid, oid[], name, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_disown(bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_reown(bigint, name) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_free_type(oid, name) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_free_rowtypes(bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._in_trash(oid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._trash_open(oid) TO PUBLIC;
REVOKE ALL ON FUNCTION tombstone._trash_give(jsonb, name, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._trash_role_gone(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._trash_retype(oid[], bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.drop_types(text, text[], boolean, text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.capture_truncate(text[], boolean[], boolean, boolean, text, text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.trash_tables(text[], boolean, boolean, text, text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.detach_partition(text, text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.guarded_ddl(text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.drop_schema(text, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE tombstone.drop_owned(text, text[], boolean, text, text) TO PUBLIC;
-- (Administrators read the trash and mark what they undrop: the grants
-- are with the registry's, in functions_privileges.sql.)
