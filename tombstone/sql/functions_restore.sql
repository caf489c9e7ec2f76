-- functions_restore.sql: every undelete (UNDELETE BATCH, TRANSACTION,
-- FROM … WHERE, their DRY RUNs and conflict modes, console and CLI alike)
-- runs through tombstone._restore, in four steps:
--
--   1. read    the selected tombstones of each table are read once, parents
--              first, into a temporary table pg_temp._ts_cand_<oid>, with
--              their ctid in the store and the values a restore inserts;
--              what is inserted and what leaves the store are these rows;
--   2. decide  each row is given a state (below), from the live tables and
--              the other tables' decisions, the same way in a DRY RUN as
--              in the run itself: the DRY RUN reports the decisions;
--   3. write   rows to restore are inserted, SET NULL links re-linked (a
--              table owner's code runs only when the owner restores, or an
--              administrator opted in: tombstone._check_owner_code);
--   4. forget  the rows restored leave the store, by ctid.
--
-- States: restore, overwrite (OVERWRITE: replaces the live row holding
-- its key), conflict (a key taken by a live row, or by another selected
-- tombstone), skipped (restoring it would attach it to a row it did not
-- reference when it was deleted, or to none: its parent stays deleted,
-- conflicts, or was replaced by a newer row), link (a SET NULL record),
-- linked (a SET NULL record whose parent came back).
--
-- Re-applied with the other functions_*.sql files whenever their text
-- changes.

-- The result gained a column (skipped): a changed return type needs a
-- DROP first.
DROP FUNCTION IF EXISTS tombstone._restore(jsonb, boolean, text);
DROP FUNCTION IF EXISTS tombstone._undelete_batches(bigint[], text, text, boolean, text);
DROP FUNCTION IF EXISTS tombstone.undelete_batch(bigint, boolean, text);
DROP FUNCTION IF EXISTS tombstone.undelete_transaction(xid8, boolean, text);
DROP FUNCTION IF EXISTS tombstone.undelete_rows(regclass, text, bigint, timestamptz, timestamptz, boolean, text);
DROP FUNCTION IF EXISTS tombstone._as_owner(oid);
DROP FUNCTION IF EXISTS tombstone._back(text);
DROP FUNCTION IF EXISTS tombstone._constraint_triggers();
DROP FUNCTION IF EXISTS tombstone._mark_skipped(oid, oid[]);
DROP FUNCTION IF EXISTS tombstone._fks(oid);

-- _topo_order orders tables parents first over the current foreign keys
-- among them (self-references ignored: all rows of a table are restored
-- in one INSERT, and a NOT DEFERRABLE foreign key is checked at the end
-- of the statement). A cycle between different tables is broken at its
-- lowest oid; restoring it then needs DEFERRABLE constraints.
CREATE OR REPLACE FUNCTION tombstone._topo_order(rels oid[]) RETURNS oid[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    remaining oid[] := rels;
    ready oid[];
    result oid[] := '{}';
BEGIN
    WHILE cardinality(remaining) > 0 LOOP
        SELECT pg_catalog.array_agg(r ORDER BY r) INTO ready
          FROM unnest(remaining) r
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                            WHERE c.conrelid = r AND c.contype = 'f' AND c.conparentid = 0
                              AND tombstone._root(c.confrelid) <> r AND tombstone._root(c.confrelid) = ANY (remaining));
        IF ready IS NULL THEN
            ready := ARRAY[(SELECT min(r) FROM unnest(remaining) r)];
        END IF;
        result := result || ready;
        remaining := ARRAY(SELECT r FROM unnest(remaining) r WHERE r <> ALL (ready));
    END LOOP;
    RETURN result;
END
$$;

-- _cand names the temporary table holding the restore candidates of rel.
CREATE OR REPLACE FUNCTION tombstone._cand(rel oid) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT 'pg_temp._ts_cand_' || rel::text $$;

-- _marks names the scratch table into which code run as rel's owner
-- reports the candidates it found (conflicts) or is told of (links).
CREATE OR REPLACE FUNCTION tombstone._marks(rel oid) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT 'pg_temp._ts_marks_' || rel::text $$;

-- _apply_marks moves the states reported in rel's scratch table onto its
-- candidates that are in one of the states p_from, and empties it.
CREATE OR REPLACE FUNCTION tombstone._apply_marks(rel oid, p_from text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
BEGIN
    EXECUTE pg_catalog.format(
        'UPDATE %s _ts_x SET _ts_state = m._ts_state, _ts_why = m._ts_why '
        'FROM (SELECT DISTINCT ON (_ts_ctid) * FROM %s ORDER BY _ts_ctid) m '
        'WHERE _ts_x._ts_ctid = m._ts_ctid AND _ts_x._ts_state = ANY ($1) AND m._ts_state IN (''conflict'', ''overwrite'')',
        tombstone._cand(rel), tombstone._marks(rel)) USING p_from;
    EXECUTE 'DELETE FROM ' || tombstone._marks(rel);
END
$$;

-- _val names the candidate column holding the value of rel's column
-- attnum: candidates never use the user's column names, so no user name
-- (_ts_state, say) can collide with the restore's own columns.
CREATE OR REPLACE FUNCTION tombstone._val(attnum int2) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT '_ts_v' || attnum::text $$;

-- _scope is a one-row subquery over the candidate aliased p_alias whose
-- columns are rel's columns by their own names, stored generated columns
-- computed: user expressions (index keys and predicates, generation
-- expressions) are evaluated in it, where no name of ours is in reach.
CREATE OR REPLACE FUNCTION tombstone._scope(rel oid, p_alias text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN gen IS NULL THEN '(SELECT ' || base || ')'
                ELSE '(SELECT _ts_b.*, ' || gen || ' FROM (SELECT ' || base || ') _ts_b)' END
      FROM (SELECT pg_catalog.string_agg(pg_catalog.format('%s.%s AS %I', p_alias, tombstone._val(a.attnum), a.attname), ', '
                                         ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '') AS base,
                   pg_catalog.string_agg(pg_catalog.format('(%s) AS %I', pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attname), ', '
                                         ORDER BY a.attnum) FILTER (WHERE a.attgenerated <> '') AS gen
              FROM pg_catalog.pg_attribute a
              LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped) x
$$;

-- _target is rel as a restore writes and reads it: its own rows only
-- (ONLY), unless it is partitioned (its partitions hold its rows).
CREATE OR REPLACE FUNCTION tombstone._target(rel oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY ' END || rel::regclass::text
      FROM pg_catalog.pg_class c WHERE c.oid = rel
$$;

-- _fks lists the foreign keys of rel: the referenced table (root) and,
-- for the referencing and referenced columns, the candidate columns of
-- both sides and the referenced table's own column names.
CREATE OR REPLACE FUNCTION tombstone._fks(rel oid)
RETURNS TABLE (conoid oid, confrelid oid, parent oid, deltype "char", child_vals text[], parent_vals text[],
               parent_cols name[], parent_shadow_cols name[], setnums int2[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT c.oid, c.confrelid, tombstone._root(c.confrelid), c.confdeltype,
           ARRAY(SELECT tombstone._val(k.n) FROM unnest(c.conkey) WITH ORDINALITY k(n, i) ORDER BY k.i),
           ARRAY(SELECT tombstone._val(ra.attnum) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                   JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.n
                   JOIN pg_catalog.pg_attribute ra ON ra.attrelid = tombstone._root(c.confrelid) AND ra.attname = pa.attname
                  ORDER BY k.i),
           ARRAY(SELECT pa.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                   JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.n ORDER BY k.i),
           ARRAY(SELECT sc.shadow_column FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                   JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.n
                   JOIN pg_catalog.pg_attribute ra ON ra.attrelid = tombstone._root(c.confrelid) AND ra.attname = pa.attname
                   JOIN tombstone.shadow_columns sc ON sc.source = tombstone._root(c.confrelid) AND sc.attnum = ra.attnum
                  ORDER BY k.i),
           CASE WHEN cardinality(c.confdelsetcols) > 0 THEN c.confdelsetcols ELSE c.conkey END
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = rel AND c.contype = 'f' AND c.conparentid = 0
     ORDER BY c.oid
$$;

-- _session_state fingerprints what code run in this session as another
-- role could change behind the restore's back: the objects of its
-- temporary schema (with their owners) and its settings (search_path
-- aside: the security-definer function puts it back itself).
CREATE OR REPLACE FUNCTION tombstone._session_state() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.md5(pg_catalog.string_agg(x, ',' ORDER BY x)) FROM (
        SELECT 'c' || c.oid::text || ':' || c.relowner::text || ':' || c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
        UNION ALL SELECT 't' || t.oid::text || ':' || t.typowner::text FROM pg_catalog.pg_type t WHERE t.typnamespace = pg_catalog.pg_my_temp_schema()
        UNION ALL SELECT 'p' || p.oid::text || ':' || p.proowner::text FROM pg_catalog.pg_proc p WHERE p.pronamespace = pg_catalog.pg_my_temp_schema()
        UNION ALL SELECT 'o' || o.oid::text FROM pg_catalog.pg_operator o WHERE o.oprnamespace = pg_catalog.pg_my_temp_schema()
        UNION ALL SELECT 's' || g.name || '=' || coalesce(g.setting, '') FROM pg_catalog.pg_settings g WHERE g.name <> 'search_path'
    ) s(x)
$$;

-- _owned runs stmt, a statement a restore built, and returns the rows it
-- processed. When rel runs code someone wrote (tombstone._runs_code) and
-- the restoring role is not rel's owner — which tombstone._check_owner_code
-- allowed only because the administrator opted in
-- (tombstone.restore_owner_code) — stmt runs with the owner's rights,
-- through a SECURITY DEFINER function owned by the owner made in pg_temp
-- for this one statement and dropped after: inside it, the owner's code
-- cannot take the administrator's role back (Postgres refuses SET ROLE and
-- SET SESSION AUTHORIZATION there), deferred constraints are checked
-- before it returns, and the session's temporary objects and settings must
-- be as before it ran. Otherwise stmt runs as it is. p_path is the
-- search_path stmt runs with: the restore's own for the conflict check;
-- for the writes, the one the restoring session started with
-- (tombstone._owner_path).
CREATE OR REPLACE FUNCTION tombstone._owned(rel oid, stmt text, p_path text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    owner name;
    owner_oid oid;
    fn text;
    n bigint;
    before text;
BEGIN
    SELECT r.oid, r.rolname INTO owner_oid, owner
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = rel;
    -- (tombstone._check_owner_code refused, before anything ran, what
    -- must not run here.)
    IF owner = current_user OR NOT tombstone._runs_code(rel) THEN
        -- (This function's own SET clause puts the path back on return.)
        PERFORM pg_catalog.set_config('search_path', p_path, true);
        EXECUTE stmt;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    -- A function made for this one statement: the owner's code could
    -- change one it saw before (it owns it), not one that does not exist
    -- yet; it is dropped once it returns.
    fn := '_ts_as_' || owner_oid::text || '_' || pg_catalog.md5(pg_catalog.random()::text || pg_catalog.clock_timestamp()::text);
    EXECUTE pg_catalog.format(
        'CREATE FUNCTION pg_temp.%I(p_stmt text, p_path text) RETURNS bigint '
        'LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L', fn,
        'DECLARE n bigint; BEGIN '
        'PERFORM pg_catalog.set_config(''search_path'', p_path, true); '
        'EXECUTE p_stmt; GET DIAGNOSTICS n = ROW_COUNT; '
        'SET CONSTRAINTS ALL IMMEDIATE; '
        'RETURN n; END');
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION pg_temp.%I(text, text) FROM PUBLIC', fn);
    EXECUTE pg_catalog.format('ALTER FUNCTION pg_temp.%I(text, text) OWNER TO %I', fn, owner);
    -- The owner's code runs in this very session: it must leave it as it
    -- found it — no temporary object made, dropped or swapped (DISCARD
    -- TEMP, a type named like a built-in), no setting changed — or the
    -- restore is refused, and everything it did rolled back with it.
    before := tombstone._session_state();
    EXECUTE pg_catalog.format('SELECT pg_temp.%I($1, $2)', fn) INTO n USING stmt, p_path;
    IF tombstone._session_state() IS DISTINCT FROM before THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('tombstone: code of %s run by the restore of %s changed the restoring session (temporary objects or settings)',
                                        owner, rel::regclass),
            HINT = pg_catalog.format('Nothing was restored. Restore as %s itself, or remove the code (triggers, constraints, defaults, index expressions) that does so.', owner);
    END IF;
    IF pg_catalog.to_regprocedure('pg_temp.' || pg_catalog.quote_ident(fn) || '(text,text)') IS NOT NULL THEN
        EXECUTE pg_catalog.format('DROP FUNCTION pg_temp.%I(text, text)', fn);
    END IF;
    RETURN n;
END
$$;


-- _types_of lists every type a value of rel's columns is made of: the
-- columns' types, and through them array elements, domains' base types,
-- composite types' attributes and ranges' subtypes, to any depth. A
-- domain among them has constraints a write checks.
CREATE OR REPLACE FUNCTION tombstone._types_of(rel oid) RETURNS SETOF oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    WITH RECURSIVE t(typ) AS (
        SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT x.next FROM t JOIN pg_catalog.pg_type ty ON ty.oid = t.typ,
               LATERAL (SELECT ty.typelem WHERE ty.typelem <> 0
                        UNION ALL SELECT ty.typbasetype WHERE ty.typbasetype <> 0
                        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                   WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                        UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = ty.oid) x(next)
    )
    SELECT typ FROM t
$$;

-- _check_owner_code refuses, before a restore reads anything, to run
-- code a table's owner wrote (tombstone._runs_code) with the rights of an
-- administrator who is not that owner. Such code runs inside the
-- administrator's own session and transaction, and no sandbox there is
-- tight: a trigger can leave a deferred trigger or a WITH HOLD cursor to
-- run at COMMIT as the administrator, swap the session's prepared
-- statements, hold its advisory locks. So by default the owner restores
-- such a table (as a member of tombstone_admin). An administrator who
-- trusts the owner's code may opt in for the session
-- (SET tombstone.restore_owner_code = on): the code then runs as the owner
-- through tombstone._owned, which blocks what it can (taking the role
-- back, changing temporary objects or settings) but not all of the above.
CREATE OR REPLACE FUNCTION tombstone._check_owner_code(rels oid[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    o oid;
    owner name;
    owner_oid oid;
    opted boolean := coalesce(pg_catalog.current_setting('tombstone.restore_owner_code', true), '') IN ('on', 'true', '1', 'yes');
BEGIN
    FOREACH o IN ARRAY rels LOOP
        SELECT r.oid, r.rolname INTO owner_oid, owner
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = o;
        CONTINUE WHEN owner = current_user OR NOT tombstone._runs_code(o);
        CONTINUE WHEN opted AND pg_catalog.pg_has_role(current_user, owner_oid, 'MEMBER');
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('tombstone: restoring into %s runs code that belongs to %s (triggers, defaults, constraints, index expressions or casts)',
                                        o::regclass, owner),
            DETAIL = 'A table owner''s code run in an administrator''s session could act with the administrator''s rights.',
            HINT = CASE WHEN pg_catalog.pg_has_role(current_user, owner_oid, 'MEMBER')
                        THEN pg_catalog.format('Restore as %s (a member of tombstone_admin), or, trusting its code, SET tombstone.restore_owner_code = on first.', owner)
                        ELSE pg_catalog.format('Restore as %s (a member of tombstone_admin).', owner) END;
    END LOOP;
END
$$;

-- _runs_code reports whether writing into rel runs code someone wrote:
-- a trigger of its own (not a capture trigger), or a function (not a built-in: those are pinned
-- and leave no pg_depend row) that its defaults, generated columns,
-- constraints, indexes, policies or rules, or the domains of its columns,
-- call.
CREATE OR REPLACE FUNCTION tombstone._runs_code(rel oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel AND NOT t.tgisinternal
                      -- (not the capture triggers: this schema's code)
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                                       WHERE p.oid = t.tgfoid AND p.pronamespace = 'tombstone'::pg_catalog.regnamespace))
        -- a foreign key comparing values of different types, one of them
        -- not built in (a cast someone wrote: the restore compares keys)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c,
                          LATERAL unnest(c.conkey, c.confkey) k(ca, pa),
                          pg_catalog.pg_attribute ca, pg_catalog.pg_attribute pa
                    WHERE c.contype = 'f' AND (c.conrelid = rel OR c.confrelid = rel)
                      AND ca.attrelid = c.conrelid AND ca.attnum = k.ca AND pa.attrelid = c.confrelid AND pa.attnum = k.pa
                      AND tombstone._base_type(ca.atttypid) <> tombstone._base_type(pa.atttypid)
                      AND (tombstone._base_type(ca.atttypid) >= 16384 OR tombstone._base_type(pa.atttypid) >= 16384))
        OR EXISTS (
           SELECT 1 FROM pg_catalog.pg_depend d
            WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
              AND ((d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                    AND d.objid IN (SELECT a.oid FROM pg_catalog.pg_attrdef a WHERE a.adrelid = rel))
                OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                    AND d.objid IN (SELECT c.oid FROM pg_catalog.pg_constraint c WHERE c.conrelid = rel
                                    UNION ALL
                                    SELECT c.oid FROM pg_catalog.pg_constraint c WHERE c.contypid IN (SELECT tombstone._types_of(rel))))
                OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = rel))
                OR (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
                    AND d.objid IN (SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid = rel))
                OR (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                    AND d.objid IN (SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = rel))))
$$;

-- _owner_path is the search_path the owner's code runs with when a
-- restore writes: the one the restoring session started with, as when the
-- application writes, with pg_temp named last (else it is searched first
-- for tables and types).
CREATE OR REPLACE FUNCTION tombstone._owner_path() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$ SELECT s.reset_val || ', pg_temp' FROM pg_catalog.pg_settings s WHERE s.name = 'search_path' $$;


-- _insert_vals is the select list over candidates (aliased _ts_x) that
-- a restore inserts into rel, column by column in attnum order: the
-- stored value, or for a column added after a tombstone was written its
-- default (identity: next value) for that tombstone.
CREATE OR REPLACE FUNCTION tombstone._insert_vals(rel oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.string_agg(
               CASE WHEN sc.added_at IS NULL THEN '_ts_x.' || tombstone._val(a.attnum)
                    ELSE pg_catalog.format('CASE WHEN _ts_x._ts_deleted_at < %L::pg_catalog.timestamptz THEN %s ELSE _ts_x.%s END',
                             sc.added_at,
                             coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                                      CASE WHEN a.attidentity <> '' THEN pg_catalog.format('pg_catalog.nextval(%L::regclass)',
                                          pg_catalog.pg_get_serial_sequence(rel::regclass::text, a.attname)) END,
                                      'NULL'),
                             tombstone._val(a.attnum)) END, ', ' ORDER BY a.attnum)
      FROM pg_catalog.pg_attribute a
      LEFT JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = a.attnum
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = rel AND d.adnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
$$;

-- _read materializes the candidates of rel selected by pred (over the
-- shadow rows, aliased s): one statement, one snapshot. Columns: the
-- shadow row's ctid, state, batch, cause, deletion time, and per live
-- column of rel its stored value (tombstone._val).
CREATE OR REPLACE FUNCTION tombstone._read(rel oid, pred text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    vals text;
    n bigint;
    owner name;
    aside record;
BEGIN
    -- The shadow's values as they are (base types, not domains: a
    -- domain's checks are code of the owner's, run by the INSERT as the
    -- owner; a user's type read back from text, tombstone._sval);
    -- defaults of columns added since are the INSERT's too
    -- (tombstone._insert_vals).
    SELECT pg_catalog.string_agg(
               coalesce(tombstone._sval(rel, a.attnum, 's'),
                        'NULL::' || tombstone._value_type(a.atttypid, a.atttypmod))
               || ' AS ' || tombstone._val(a.attnum), ', ' ORDER BY a.attnum)
      INTO vals
      FROM pg_catalog.pg_attribute a
      LEFT JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    -- Rows holding a composite's text in a shape its type has since left
    -- (set aside: tombstone.sync_shadow) would come back without those
    -- values, which the restore then forgets: refused, naming the type.
    FOR aside IN SELECT sc.shadow_column, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS typ
                   FROM tombstone.shadow_columns sc
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = sc.reshaped_from AND NOT a.attisdropped
                  WHERE sc.source = rel AND sc.attnum IS NULL AND sc.reshaped_from IS NOT NULL
    LOOP
        EXECUTE pg_catalog.format('SELECT count(*) FROM tombstone.%I s WHERE (%s) AND s.%I IS NOT NULL',
                                  tombstone._shadow_of(rel), pred, aside.shadow_column) INTO n;
        IF n > 0 THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('tombstone: %s deleted row(s) of %s hold column %I in a shape its type %s no longer has; restoring them would lose those values',
                                            n, rel::regclass, aside.attname, aside.typ),
                DETAIL = pg_catalog.format('Their values are kept, as text, in tombstone.%I.%I.', tombstone._shadow_of(rel), aside.shadow_column),
                HINT = pg_catalog.format('Give %s its old shape again to restore them, or copy the values from there by hand.', aside.typ);
        END IF;
    END LOOP;
    IF pg_catalog.to_regclass(tombstone._cand(rel)) IS NOT NULL THEN  -- (no NOTICE for the client)
        EXECUTE 'DROP TABLE ' || tombstone._cand(rel);
    END IF;
    EXECUTE pg_catalog.format(
        'CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT s.ctid AS _ts_ctid, '
        'CASE WHEN s._ts_cause = ''set_null'' THEN ''link'' ELSE ''restore'' END AS _ts_state, '
        'NULL::text AS _ts_why, s._ts_batch, s._ts_cause, s._ts_deleted_at%s FROM tombstone.%I s WHERE %s',
        tombstone._cand(rel), coalesce(', ' || vals, ''), tombstone._shadow_of(rel), pred);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Code run as the table's owner (tombstone._owned) reads its own
    -- table's candidates, and nothing else of the restore; it cannot
    -- change them: what it finds (conflicts) it reports into a scratch
    -- table of its own, which the restore applies (_apply_marks), and
    -- which links to re-link the restore tells it the same way.
    owner := (SELECT r.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = rel);
    IF pg_catalog.to_regclass(tombstone._marks(rel)) IS NOT NULL THEN
        EXECUTE 'DROP TABLE ' || tombstone._marks(rel);
    END IF;
    EXECUTE 'CREATE TEMP TABLE ' || tombstone._marks(rel) || ' (_ts_ctid tid, _ts_state text, _ts_why text) ON COMMIT DROP';
    IF owner <> current_user THEN
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', tombstone._cand(rel), owner);
        EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON %s TO %I', tombstone._marks(rel), owner);
    END IF;
    -- (Indexes come when something looks candidates up: _cand_index.)
    RETURN n;
END
$$;

-- _mark_conflicts marks the candidates of rel whose key, under any
-- unique index or exclusion constraint of rel, is taken by a live row
-- (conflict, or overwrite under OVERWRITE for rel's own key), or by
-- another candidate of the run (all but the most recently deleted:
-- conflict). NULLs are as Postgres treats them (distinct, unless the
-- index says NULLS NOT DISTINCT); partial indexes count where their
-- predicate holds; expression keys are computed.
CREATE OR REPLACE FUNCTION tombstone._mark_conflicts(rel oid, p_overwrite boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    ix record;
    cand text := tombstone._cand(rel);
    marks text := tombstone._marks(rel);
    target text := tombstone._target(rel);
    keynums int2[] := tombstone._key(rel);
    keyix oid;
    exprs text[];
    ops text[];
    kcols text;
    live text;
    nonnull text;
    pkey text;
    pkeep text;
    part text;
    lat text;
    path text := 'pg_catalog, tombstone, pg_temp';
    batches bigint;
BEGIN
    EXECUTE 'SELECT count(DISTINCT _ts_batch) FROM ' || cand INTO batches;
    SELECT i.indexrelid INTO keyix FROM pg_catalog.pg_index i
     WHERE i.indrelid = rel AND i.indkey::int2[] = keynums AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
     ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1;
    -- The key index first: under OVERWRITE its conflicts are overwrites,
    -- which the other indexes then check against every live row but the
    -- one replaced.
    FOR ix IN SELECT i.indexrelid, i.indnkeyatts, i.indclass, i.indcollation, i.indkey, i.indexprs,
                     pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS pred,
                     coalesce((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS nnd,
                     x.conexclop
                FROM pg_catalog.pg_index i
                LEFT JOIN pg_catalog.pg_constraint x ON x.conindid = i.indexrelid AND x.contype = 'x'
               WHERE i.indrelid = rel AND (i.indisunique OR x.oid IS NOT NULL)
               ORDER BY i.indexrelid = keyix DESC, i.indexrelid
    LOOP
        -- (An index column's own collation is not in pg_get_indexdef's
        -- column text.)
        exprs := ARRAY(SELECT '(' || pg_catalog.pg_get_indexdef(ix.indexrelid, g, false) || ')'
                              || coalesce((SELECT ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                                             FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                                            WHERE co.oid = ix.indcollation[g - 1] AND co.oid <> 0), '')
                         FROM generate_series(1, ix.indnkeyatts) g ORDER BY g);
        IF ix.conexclop IS NOT NULL THEN
            ops := ARRAY(SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname)
                           FROM unnest(ix.conexclop) WITH ORDINALITY e(op, i)
                           JOIN pg_catalog.pg_operator o ON o.oid = e.op
                           JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace ORDER BY e.i);
        ELSE
            -- The equality of each column's operator class (citext's is
            -- not text's).
            ops := ARRAY(SELECT CASE WHEN ix.nnd THEN 'IS NOT DISTINCT FROM'
                                     ELSE coalesce((SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, op.oprname)
                                                      FROM pg_catalog.pg_opclass oc
                                                      JOIN pg_catalog.pg_amop am ON am.amopfamily = oc.opcfamily
                                                       AND am.amoplefttype = oc.opcintype AND am.amoprighttype = oc.opcintype
                                                       AND am.amopstrategy = 3
                                                      JOIN pg_catalog.pg_operator op ON op.oid = am.amopopr
                                                      JOIN pg_catalog.pg_namespace n ON n.oid = op.oprnamespace
                                                     WHERE oc.oid = ix.indclass[g - 1] LIMIT 1),
                                                   'OPERATOR(pg_catalog.=)') END
                           FROM generate_series(1, ix.indnkeyatts) g ORDER BY g);
        END IF;
        SELECT pg_catalog.string_agg(pg_catalog.format('(%s) AS _ts_k%s', exprs[g], g), ', '),
               pg_catalog.string_agg(pg_catalog.format('(%s) %s _ts_k._ts_k%s', exprs[g], ops[g], g), ' AND '),
               pg_catalog.string_agg(pg_catalog.format('_ts_k._ts_k%s IS NOT NULL', g), ' AND ')
          INTO kcols, live, nonnull
          FROM generate_series(1, ix.indnkeyatts) g;
        IF ix.nnd THEN
            nonnull := 'true';
        END IF;
        part := coalesce('(' || ix.pred || ')', 'true');
        -- The live row a candidate overwrites does not count against it.
        pkeep := 'true';
        IF p_overwrite AND keyix IS NOT NULL AND ix.indexrelid <> keyix THEN
            SELECT pg_catalog.format('NOT (_ts_c._ts_state = ''overwrite'' AND %s)',
                                     pg_catalog.string_agg(pg_catalog.format('%I = _ts_c.%s', a.attname, tombstone._val(a.attnum)), ' AND '))
              INTO pkeep
              FROM unnest(keynums) k2(n) JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k2.n;
        END IF;
        -- The candidates' keys, _ts_k._ts_k1…: plain columns (the common
        -- case: a primary key, a UNIQUE constraint) as they are stored,
        -- anything else computed over the row (tombstone._scope: index
        -- expressions, predicates, generated columns are the owner's code).
        IF ix.indexprs IS NULL AND ix.pred IS NULL AND ix.conexclop IS NULL
           AND NOT EXISTS (SELECT 1 FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, g)
                             JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.n
                             LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                            WHERE k.g <= ix.indnkeyatts
                              AND (a.attgenerated <> '' OR a.attcollation <> ix.indcollation[k.g - 1]
                                   OR NOT coalesce(co.collisdeterministic, true))) THEN
            SELECT '(SELECT ' || pg_catalog.string_agg(pg_catalog.format('_ts_c.%s AS _ts_k%s', tombstone._val(k.n), k.g), ', ')
                   || ', true AS _ts_in)'
              INTO lat
              FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, g)
             WHERE k.g <= ix.indnkeyatts;
        ELSE
            lat := pg_catalog.format('(SELECT %s, %s AS _ts_in FROM %s _ts_u)', kcols, part, tombstone._scope(rel, '_ts_c'));
        END IF;
        pkey := pg_catalog.format(
            'FROM %1$s _ts_c CROSS JOIN LATERAL %2$s _ts_k '
            'WHERE _ts_c._ts_state IN (''restore'', ''overwrite'') AND _ts_k._ts_in AND %3$s',
            cand, lat, nonnull);
        -- Live rows holding the key. (Index keys and predicates are the
        -- owner's expressions: evaluated with the owner's rights.)
        PERFORM tombstone._owned(rel, pg_catalog.format(
            'INSERT INTO %9$s SELECT _ts_c._ts_ctid, %2$L, %3$L %4$s AND _ts_c._ts_state = ''restore'' '
            'AND EXISTS (SELECT 1 FROM %5$s _ts_t WHERE %6$s AND %7$s AND %8$s)',
            cand,
            CASE WHEN p_overwrite AND ix.indexrelid = keyix THEN 'overwrite' ELSE 'conflict' END,
            ix.indexrelid::regclass::text, pkey, target, live, part, pkeep, marks), path);
        PERFORM tombstone._apply_marks(rel, '{restore}');
        IF ix.indexrelid <> keyix OR NOT p_overwrite THEN
            PERFORM tombstone._owned(rel, pg_catalog.format(
                'INSERT INTO %8$s SELECT _ts_c._ts_ctid, ''conflict'', %2$L %3$s AND _ts_c._ts_state = ''overwrite'' '
                'AND EXISTS (SELECT 1 FROM %4$s _ts_t WHERE %5$s AND %6$s AND %7$s)',
                cand, ix.indexrelid::regclass::text, pkey, target, live, part, pkeep, marks), path);
            PERFORM tombstone._apply_marks(rel, '{overwrite}');
        END IF;
        -- Two candidates with one key: the most recently deleted stays.
        -- (One batch holds one row per key: nothing to compare.)
        IF ix.conexclop IS NULL AND batches > 1 THEN
            PERFORM tombstone._owned(rel, pg_catalog.format(
                'INSERT INTO %5$s SELECT _ts_m._ts_ctid, ''conflict'', %2$L '
                'FROM (SELECT _ts_c._ts_ctid, pg_catalog.row_number() OVER (PARTITION BY %3$s '
                '      ORDER BY _ts_c._ts_deleted_at DESC, _ts_c._ts_batch DESC, _ts_c._ts_ctid DESC) AS _ts_rn %4$s) _ts_m '
                'WHERE _ts_m._ts_rn > 1',
                cand, 'duplicate:' || ix.indexrelid::regclass::text,
                (SELECT pg_catalog.string_agg(pg_catalog.format('_ts_k._ts_k%s', g), ', ') FROM generate_series(1, ix.indnkeyatts) g),
                pkey, marks), path);
            PERFORM tombstone._apply_marks(rel, '{restore,overwrite}');
        END IF;
    END LOOP;
    -- OVERWRITE cannot give the replaced row a GENERATED ALWAYS identity
    -- value (Postgres refuses to update one): such a row, whose value
    -- differs from the newer row's, is a conflict rather than come back
    -- different.
    IF p_overwrite AND keyix IS NOT NULL THEN
        SELECT pg_catalog.string_agg(pg_catalog.format('_ts_t.%I IS DISTINCT FROM _ts_x.%s', a.attname, tombstone._val(a.attnum)), ' OR ')
          INTO live
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = 'a' AND NOT (a.attnum = ANY (keynums));
        IF live IS NOT NULL THEN
            PERFORM tombstone._owned(rel, pg_catalog.format(
                'INSERT INTO %s SELECT _ts_x._ts_ctid, ''conflict'', %L FROM %s _ts_x WHERE _ts_x._ts_state = ''overwrite'' '
                'AND EXISTS (SELECT 1 FROM %s _ts_t WHERE %s AND (%s))',
                marks, keyix::regclass::text, cand, target,
                (SELECT pg_catalog.string_agg(pg_catalog.format('_ts_t.%I = _ts_x.%s', a.attname, tombstone._val(a.attnum)), ' AND ')
                   FROM unnest(keynums) k(n) JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.n),
                live), path);
            PERFORM tombstone._apply_marks(rel, '{overwrite}');
        END IF;
    END IF;
END
$$;

-- _cand_index gives rel's candidates an index over the columns vals,
-- once: children look their parents' candidates up by referenced key and
-- by ctid.
CREATE OR REPLACE FUNCTION tombstone._cand_index(rel oid, vals text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    name text := '_ts_cand_' || rel::text || '_' || pg_catalog.left(pg_catalog.md5(pg_catalog.array_to_string(vals, ',')), 8);
BEGIN
    IF pg_catalog.to_regclass('pg_temp.' || name) IS NULL THEN
        EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (%s)', name, tombstone._cand(rel),
                                  pg_catalog.array_to_string(vals, ', '));
    END IF;
END
$$;

-- _parent_back is the condition, over a candidate aliased p_alias, that
-- the row of the parent table holding the key the candidate references
-- (a foreign key: parent_vals of the parent's candidates, child_vals of
-- the candidate's) comes back in this run; p_same narrows it to the
-- parent deleted by the same batch ('batch') or the same statement
-- ('statement').
CREATE OR REPLACE FUNCTION tombstone._parent_back(parent oid, parent_vals text[], child_vals text[], p_alias text, p_same text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.format('EXISTS (SELECT 1 FROM %s _ts_q WHERE _ts_q._ts_state IN (''restore'', ''overwrite'')%s AND %s)',
               tombstone._cand(parent),
               CASE p_same WHEN 'batch' THEN pg_catalog.format(' AND _ts_q._ts_batch = %s._ts_batch', p_alias)
                           WHEN 'statement' THEN pg_catalog.format(' AND _ts_q._ts_batch = %1$s._ts_batch AND _ts_q._ts_deleted_at = %1$s._ts_deleted_at', p_alias)
                           ELSE '' END,
               pg_catalog.string_agg(pg_catalog.format('_ts_q.%s = %s.%s', p, p_alias, ch), ' AND '))
      FROM unnest(parent_vals, child_vals) u(p, ch)
$$;

-- _mark_skipped marks the candidates of rel that would not reference,
-- once restored, the rows they referenced when they were deleted, until
-- nothing changes (a self-reference passes it down a tree):
--   - the row of the referenced table that held the key when the
--     candidate was deleted (the first with the key deleted at or after
--     it: with it, by cascade, or later) is a tombstone not restored in
--     this run: it stays deleted, and a live row with the key is a newer
--     one — or rows of that table deleted after the candidate were purged
--     (shadows.purged_through), so that nobody can tell;
--   - no live row has the key and no candidate of the run restores one.
-- SET NULL records (link) whose parent comes back become linked.
CREATE OR REPLACE FUNCTION tombstone._mark_skipped(rel oid, rels oid[], p_lock boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    fk record;
    cand text := tombstone._cand(rel);
    pshadow name;
    conds text[];
    c text;
    nonnull text;
    restored_here text;
    samestmt text;
    have_parent boolean;
    n bigint;
    changed bigint;
    self_ref boolean := EXISTS (SELECT 1 FROM tombstone._fks(rel) f WHERE f.parent = rel);
BEGIN
    LOOP
    changed := 0;
    FOR fk IN SELECT * FROM tombstone._fks(rel) LOOP
        CONTINUE WHEN cardinality(fk.parent_vals) IS DISTINCT FROM cardinality(fk.child_vals);
        SELECT pg_catalog.string_agg(pg_catalog.format('_ts_x.%s IS NOT NULL', v), ' AND ') INTO nonnull
          FROM unnest(fk.child_vals) v;
        -- A row of the parent restored by this run with the key. (Its
        -- candidates are read before rel's — but in a cycle between tables,
        -- whose second table waits for the first: there, none.)
        have_parent := pg_catalog.to_regclass(tombstone._cand(fk.parent)) IS NOT NULL;
        restored_here := 'false';
        IF have_parent THEN
            PERFORM tombstone._cand_index(fk.parent, fk.parent_vals || '_ts_batch'::text);
            PERFORM tombstone._cand_index(fk.parent, ARRAY['_ts_ctid']);
            restored_here := tombstone._parent_back(fk.parent, fk.parent_vals, fk.child_vals, '_ts_x', '');
        END IF;
        conds := '{}';
        pshadow := tombstone.shadow_name(fk.parent::regclass);
        IF pshadow IS NOT NULL AND cardinality(fk.parent_shadow_cols) = cardinality(fk.child_vals) THEN
            -- A tombstone of the key deleted at or after the candidate that
            -- does not come back in this run.
            -- The row the candidate referenced is the first with the key
            -- deleted at or after it (one row holds a key at a time).
            SELECT pg_catalog.format(
                       'EXISTS (SELECT 1 FROM (SELECT _ts_s.ctid AS _ts_id FROM tombstone.%I _ts_s '
                       'WHERE _ts_s._ts_cause <> ''set_null'' AND _ts_s._ts_deleted_at >= _ts_x._ts_deleted_at AND %s '
                       'AND _ts_s._ts_token IS NOT DISTINCT FROM (SELECT b.token FROM tombstone.batches b WHERE b.id = _ts_s._ts_batch) '
                       'ORDER BY _ts_s._ts_deleted_at, _ts_s._ts_batch <> _ts_x._ts_batch LIMIT 1) _ts_f%s)',
                       pshadow,
                       pg_catalog.string_agg(pg_catalog.format('%s = _ts_x.%s',
                           tombstone._sval(fk.parent, (SELECT sc.attnum FROM tombstone.shadow_columns sc WHERE sc.source = fk.parent AND sc.shadow_column = p), '_ts_s'),
                           ch), ' AND '),
                       CASE WHEN have_parent THEN pg_catalog.format(
                           ' WHERE NOT EXISTS (SELECT 1 FROM %s _ts_q WHERE _ts_q._ts_ctid = _ts_f._ts_id '
                           'AND _ts_q._ts_state IN (''restore'', ''overwrite''))', tombstone._cand(fk.parent)) ELSE '' END)
              INTO c
              FROM unnest(fk.parent_shadow_cols, fk.child_vals) u(p, ch);
            conds := conds || c;
        END IF;
        -- The live parent it referenced is overwritten in this run by a
        -- row deleted before the candidate: another row, by then.
        IF have_parent THEN
            SELECT pg_catalog.format('EXISTS (SELECT 1 FROM %s _ts_o WHERE _ts_o._ts_state = ''overwrite'' '
                                     'AND _ts_o._ts_deleted_at < _ts_x._ts_deleted_at AND %s)',
                                     tombstone._cand(fk.parent),
                                     pg_catalog.string_agg(pg_catalog.format('_ts_o.%s = _ts_x.%s', p, ch), ' AND '))
              INTO c
              FROM unnest(fk.parent_vals, fk.child_vals) u(p, ch);
            conds := conds || c;
        END IF;
        -- Tombstones of the parent table deleted after the candidate were
        -- purged: the first of them may have been the row it referenced,
        -- so a live row with the key proves nothing.
        IF (SELECT sh.purged_through FROM tombstone.shadows sh WHERE sh.source = fk.parent) IS NOT NULL THEN
            conds := conds || pg_catalog.format('(_ts_x._ts_deleted_at <= %L::timestamptz AND NOT %s)',
                (SELECT sh.purged_through FROM tombstone.shadows sh WHERE sh.source = fk.parent), restored_here);
        END IF;
        -- The live parents the candidates will reference are held (FOR KEY
        -- SHARE) until the restore commits: deleted and re-created by the
        -- application meanwhile, they would be other rows by then.
        IF p_lock THEN
            BEGIN
                EXECUTE pg_catalog.format(
                    'SELECT count(*) FROM (SELECT 1 FROM %s _ts_p WHERE (%s) IN (SELECT %s FROM %s _ts_x '
                    'WHERE _ts_x._ts_state IN (''restore'', ''overwrite'') AND %s) FOR KEY SHARE OF _ts_p) l',
                    tombstone._target(fk.confrelid),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('_ts_p.%I', x), ', ') FROM unnest(fk.parent_cols) x),
                    (SELECT pg_catalog.string_agg('_ts_x.' || x, ', ') FROM unnest(fk.child_vals) x),
                    cand, nonnull) INTO n;
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;  -- an administrator without UPDATE on the parent: not held (README)
            END;
        END IF;
        -- No live row with the key, and none restored here.
        SELECT pg_catalog.format('(NOT EXISTS (SELECT 1 FROM %s _ts_p WHERE %s) AND NOT %s)',
                                 tombstone._target(fk.confrelid),
                                 pg_catalog.string_agg(pg_catalog.format('_ts_p.%I = _ts_x.%s', p, ch), ' AND '),
                                 restored_here)
          INTO c
          FROM unnest(fk.parent_cols, fk.child_vals) u(p, ch);
        conds := conds || c;
        -- The common case costs one hash join: a candidate whose parent
        -- was deleted by the same statement (same batch, same time) and
        -- comes back in this run references exactly that row.
        samestmt := 'false';
        IF have_parent THEN
            samestmt := tombstone._parent_back(fk.parent, fk.parent_vals, fk.child_vals, '_ts_x', 'statement');
        END IF;
        EXECUTE pg_catalog.format(
            'UPDATE %1$s _ts_y SET _ts_state = ''skipped'', _ts_why = %2$L WHERE _ts_y._ts_ctid IN ('
            'SELECT _ts_x._ts_ctid FROM %1$s _ts_x WHERE _ts_x._ts_state IN (''restore'', ''overwrite'') AND %3$s '
            'AND NOT %5$s AND (%4$s))',
            cand, fk.conoid::text, nonnull, pg_catalog.array_to_string(conds, ' OR '), samestmt);
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
    END LOOP;
    -- A self-reference passes a skip down its tree: again, until
    -- nothing changes.
    EXIT WHEN changed = 0 OR NOT self_ref;
    END LOOP;
    -- A SET NULL record comes back with its parent (decided above, for
    -- a self-reference too).
    FOR fk IN SELECT * FROM tombstone._fks(rel) f WHERE f.deltype IN ('n', 'd') AND f.parent = ANY (rels) LOOP
        CONTINUE WHEN cardinality(fk.parent_vals) IS DISTINCT FROM cardinality(fk.child_vals)
                   OR pg_catalog.to_regclass(tombstone._cand(fk.parent)) IS NULL;
        -- (The parent deleted by the same statement: the same batch.)
        restored_here := tombstone._parent_back(fk.parent, fk.parent_vals, fk.child_vals, '_ts_x', 'batch');
        EXECUTE pg_catalog.format('UPDATE %s _ts_x SET _ts_state = ''linked'' WHERE _ts_x._ts_state = ''link'' AND %s',
                                  cand, restored_here);
    END LOOP;
END
$$;

-- _relink re-links the SET NULL / SET DEFAULT links of rel whose parent
-- this run restores, where the link still holds NULL (the default): the
-- application may have pointed it elsewhere since. Returns the number of
-- links re-linked (counted, not written, in a dry run).
CREATE OR REPLACE FUNCTION tombstone._relink(rel oid, rels oid[], p_dry_run boolean) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    fk record;
    cand text := tombstone._cand(rel);
    keynums int2[] := tombstone._key(rel);
    keyjoin text;
    selfjoin text;
    nullkey text;
    keyvals text;
    tcols text;
    ccols text;
    links text;
    cond text;
    assign text;
    parent_back text;
    n bigint;
    total bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tombstone._fks(rel) f WHERE f.deltype IN ('n', 'd') AND f.parent = ANY (rels)) THEN
        RETURN 0;
    END IF;
    EXECUTE pg_catalog.format('SELECT count(*) FROM %s WHERE _ts_state = ''linked''', cand) INTO n;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    IF keynums IS NULL THEN
        RAISE NOTICE 'tombstone: % has no primary key; % SET NULL link(s) not re-linked', rel::regclass, n;
        EXECUTE pg_catalog.format('UPDATE %s SET _ts_state = ''link'' WHERE _ts_state = ''linked''', cand);
        RETURN 0;
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('_ts_t.%I = _ts_x.%s', a.attname, tombstone._val(a.attnum)), ' AND '),
           pg_catalog.string_agg(pg_catalog.format('%s = _ts_x.%s', tombstone._sval(rel, a.attnum, '_ts_d'), tombstone._val(a.attnum)), ' AND '),
           pg_catalog.string_agg(pg_catalog.format('_ts_x.%s IS NULL', tombstone._val(a.attnum)), ' OR ')
      INTO keyjoin, selfjoin, nullkey
      FROM unnest(keynums) k(n) JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.n
      JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = a.attnum;
    SELECT pg_catalog.string_agg('_ts_y.' || tombstone._val(k.n), ', ') INTO keyvals FROM unnest(keynums) k(n);
    -- The columns a dry run's conditions read, from the table and from
    -- the candidates it restores.
    SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', a.attname), ', ' ORDER BY a.attnum),
           pg_catalog.string_agg(pg_catalog.format('c.%s AS %I', tombstone._val(a.attnum), a.attname), ', ' ORDER BY a.attnum)
      INTO tcols, ccols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       AND (a.attnum = ANY (keynums) OR a.attnum IN (SELECT unnest(f.setnums) FROM tombstone._fks(rel) f WHERE f.deltype IN ('n', 'd')));
    PERFORM tombstone._cand_index(rel, ARRAY['_ts_ctid']);
    -- The live row holding the link's key must be the row the link was
    -- taken from: if a row with that key was deleted at or after the link
    -- (and this run does not bring that very row back), a live one is a
    -- newer row, which the link never belonged to; and once rows of the
    -- table deleted after the link were purged (shadows.purged_through),
    -- that evidence may be gone; and a row this run overwrites with one
    -- deleted before the link is not the link's either.
    -- Such links, and links with a NULL in the key, stay in the store.
    EXECUTE pg_catalog.format(
        'UPDATE %1$s _ts_x SET _ts_state = ''link'' WHERE _ts_x._ts_state = ''linked'' AND (%4$s '
        'OR EXISTS (SELECT 1 FROM tombstone.%3$I _ts_d WHERE _ts_d._ts_cause <> ''set_null'' '
        'AND _ts_d._ts_deleted_at >= _ts_x._ts_deleted_at AND %2$s '
        'AND _ts_d._ts_token IS NOT DISTINCT FROM (SELECT b.token FROM tombstone.batches b WHERE b.id = _ts_d._ts_batch) '
        'AND NOT EXISTS (SELECT 1 FROM %1$s _ts_q WHERE _ts_q._ts_ctid = _ts_d.ctid AND _ts_q._ts_state IN (''restore'', ''overwrite''))) '
        'OR _ts_x._ts_deleted_at <= %5$L::timestamptz '
        'OR EXISTS (SELECT 1 FROM %1$s _ts_o WHERE _ts_o._ts_state = ''overwrite'' AND _ts_o._ts_deleted_at < _ts_x._ts_deleted_at AND %6$s))',
        cand, selfjoin, tombstone._shadow_of(rel), nullkey,
        (SELECT sh.purged_through FROM tombstone.shadows sh WHERE sh.source = rel),
        (SELECT pg_catalog.string_agg(pg_catalog.format('_ts_o.%1$s = _ts_x.%1$s', tombstone._val(k.n)), ' AND ')
           FROM unnest(keynums) k(n)));
    FOR fk IN SELECT * FROM tombstone._fks(rel) f WHERE f.deltype IN ('n', 'd') AND f.parent = ANY (rels) LOOP
        CONTINUE WHEN cardinality(fk.parent_vals) IS DISTINCT FROM cardinality(fk.child_vals);
        -- still NULL (SET NULL) or still the default (SET DEFAULT)
        SELECT pg_catalog.string_agg(
                   CASE WHEN fk.deltype = 'n' THEN pg_catalog.format('_ts_t.%I IS NULL', a.attname)
                        ELSE pg_catalog.format('_ts_t.%I IS NOT DISTINCT FROM (%s)', a.attname,
                                 coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), 'NULL')) END, ' AND '),
               pg_catalog.string_agg(pg_catalog.format('%I = _ts_x.%s', a.attname, tombstone._val(a.attnum)), ', ')
          INTO cond, assign
          FROM unnest(fk.setnums) k(attnum)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = rel AND d.adnum = k.attnum;
        parent_back := tombstone._parent_back(fk.parent, fk.parent_vals, fk.child_vals, '_ts_y', 'batch');
        -- Per row, the most recent link whose parent comes back: a row
        -- nulled twice (re-pointed in between) takes the value it had
        -- last.
        -- (Chosen here; the statement run as the owner reads only its own
        -- table's candidates, and the choice through the scratch table.)
        EXECUTE pg_catalog.format(
            'INSERT INTO %4$s SELECT l._ts_ctid, ''apply'', NULL FROM (SELECT DISTINCT ON (%1$s) _ts_y._ts_ctid '
            'FROM %2$s _ts_y WHERE _ts_y._ts_state = ''linked'' AND %3$s '
            'ORDER BY %1$s, _ts_y._ts_deleted_at DESC, _ts_y._ts_batch DESC) l',
            keyvals, cand, parent_back, tombstone._marks(rel));
        links := pg_catalog.format('(SELECT _ts_y.* FROM %s _ts_y WHERE _ts_y._ts_ctid IN (SELECT m._ts_ctid FROM %s m WHERE m._ts_state = ''apply''))',
                                   cand, tombstone._marks(rel));
        IF p_dry_run THEN
            -- The table as the writes leave it: its rows and the ones the
            -- run restores. (A SET DEFAULT condition evaluates the owner's
            -- default.)
            n := tombstone._owned(rel, pg_catalog.format(
                     'SELECT DISTINCT _ts_t._ts_rid FROM (SELECT t.tableoid::text || t.ctid::text AS _ts_rid, %s FROM %s t '
                     'UNION ALL SELECT ''c'' || c._ts_ctid::text, %s FROM %s c WHERE c._ts_state IN (''restore'', ''overwrite'')) _ts_t '
                     'JOIN %s _ts_x ON %s WHERE %s',
                     tcols, tombstone._target(rel), ccols, cand, links, keyjoin, cond), 'pg_catalog, tombstone, pg_temp');
        ELSE
            -- The links whose row is there to take them; the others (a
            -- partition detached or in the trash since, a row deleted
            -- since) stay in the store, their values kept, rather than go
            -- with the ones applied.
            PERFORM tombstone._owned(rel, pg_catalog.format(
                'INSERT INTO %s SELECT DISTINCT _ts_x._ts_ctid, ''present'', NULL FROM %s _ts_t JOIN %s _ts_x ON %s',
                tombstone._marks(rel), tombstone._target(rel), links, keyjoin), 'pg_catalog, tombstone, pg_temp');
            n := tombstone._owned(rel, pg_catalog.format(
                     'UPDATE %s _ts_t SET %s FROM %s _ts_x WHERE %s AND %s',
                     tombstone._target(rel), assign, links, keyjoin, cond), tombstone._owner_path());
            EXECUTE pg_catalog.format(
                'UPDATE %1$s SET _ts_state = ''link'' WHERE _ts_state = ''linked'' '
                'AND _ts_ctid IN (SELECT m._ts_ctid FROM %2$s m WHERE m._ts_state = ''apply'') '
                'AND _ts_ctid NOT IN (SELECT m._ts_ctid FROM %2$s m WHERE m._ts_state = ''present'')',
                cand, tombstone._marks(rel));
        END IF;
        EXECUTE 'DELETE FROM ' || tombstone._marks(rel);
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

-- _refuse raises, under ON CONFLICT FAIL, the first reason rel's
-- candidates cannot all be restored: keys taken (23505, with up to ten
-- of them) or rows that would lose their parent (23503).
CREATE OR REPLACE FUNCTION tombstone._refuse(rel oid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    cand text := tombstone._cand(rel);
    keynums int2[] := tombstone._key(rel);
    keycols text;
    keyvals text;
    nconf bigint;
    nskip bigint;
    dup bigint;
    sample text;
    why text;
    skipwhy text;
    nsp name;
    tbl name;
BEGIN
    EXECUTE pg_catalog.format('SELECT count(*) FILTER (WHERE _ts_state = ''conflict''), '
                              'count(*) FILTER (WHERE _ts_state = ''skipped''), '
                              'count(*) FILTER (WHERE _ts_state = ''conflict'' AND _ts_why LIKE ''duplicate:%%''), '
                              'min(_ts_why) FILTER (WHERE _ts_state = ''conflict''), '
                              'min(_ts_why) FILTER (WHERE _ts_state = ''skipped'') FROM %s', cand)
      INTO nconf, nskip, dup, why, skipwhy;
    IF nconf = 0 AND nskip = 0 THEN
        RETURN;
    END IF;
    SELECT n.nspname, c.relname INTO nsp, tbl FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    IF keynums IS NOT NULL THEN
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.i),
               pg_catalog.string_agg(pg_catalog.format('_ts_x.%s', tombstone._val(a.attnum)), ', ' ORDER BY k.i)
          INTO keycols, keyvals
          FROM unnest(keynums) WITH ORDINALITY k(n, i) JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.n;
    END IF;
    IF nconf > 0 THEN
        IF keyvals IS NOT NULL THEN
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.string_agg(k, '', '' ORDER BY k) FROM (SELECT DISTINCT ''('' || pg_catalog.concat_ws('', '', %s) || '')'' AS k '
                'FROM %s _ts_x WHERE _ts_x._ts_state = ''conflict'' ORDER BY 1 LIMIT 10) x', keyvals, cand) INTO sample;
        END IF;
        IF dup = nconf THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = pg_catalog.format('tombstone: %s row(s) to restore into %s share a key with another tombstone of this restore',
                                            nconf, rel::regclass),
                DETAIL = pg_catalog.format('Key (%s)=%s%s was deleted more than once (unique index %s).', keycols, sample,
                                           CASE WHEN nconf > 10 THEN ', …' ELSE '' END, pg_catalog.substr(why, 11)),
                HINT = 'Narrow the selection (BATCH n, SINCE, UNTIL), or use ON CONFLICT SKIP to restore the most recently deleted one.',
                SCHEMA = nsp, TABLE = tbl;
        END IF;
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = pg_catalog.format('tombstone: %s row(s) to restore into %s conflict with rows written since the delete',
                                        nconf, rel::regclass),
            DETAIL = CASE WHEN why = (SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index i
                                       WHERE i.indrelid = rel AND i.indkey::int2[] = keynums AND i.indisunique
                                       ORDER BY i.indisprimary DESC LIMIT 1)
                          THEN pg_catalog.format('Key (%s)=%s%s already exist in %s.', keycols, sample,
                                                 CASE WHEN nconf > 10 THEN ', …' ELSE '' END, rel::regclass)
                          ELSE pg_catalog.format('Rows with key (%s)=%s%s conflict on %s.', keycols, sample,
                                                 CASE WHEN nconf > 10 THEN ', …' ELSE '' END, why) END,
            HINT = 'Use ON CONFLICT SKIP to keep the newer rows, or ON CONFLICT OVERWRITE to replace them.',
            SCHEMA = nsp, TABLE = tbl;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '23503',
        MESSAGE = pg_catalog.format('tombstone: %s row(s) to restore into %s would not reference the rows they referenced when deleted',
                                    nskip, rel::regclass),
        DETAIL = pg_catalog.format('Their parent rows (foreign key %s) stay deleted, conflict, or were replaced by newer rows.',
                                   (SELECT c.conname FROM pg_catalog.pg_constraint c WHERE c.oid = skipwhy::oid)),
        HINT = 'Restore them together with their parents (UNDELETE FROM the parent table, or UNDELETE BATCH n), '
               'or use ON CONFLICT SKIP to leave them deleted.',
        SCHEMA = nsp, TABLE = tbl;
END
$$;

-- _restore is the core of every undelete. p_preds maps source table oids
-- (as text) to a SQL predicate over the table's shadow rows, aliased s:
-- those rows are the candidates. A predicate may read the candidates of
-- a table ordered before it (tombstone._cand). Callers build the
-- predicates; user text in them must already be validated. Returns per
-- table: rows restored (inserted, overwritten or re-linked), conflicts
-- (keys taken: left as tombstones, or overwritten under OVERWRITE) and
-- rows skipped (left as tombstones with the rows they depend on). Under
-- ON CONFLICT FAIL a conflict or a skip refuses the whole restore; a DRY
-- RUN reports them instead.
CREATE OR REPLACE FUNCTION tombstone._restore(p_preds jsonb, p_dry_run boolean, p_on_conflict text)
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    rels oid[];
    ordered oid[];
    o oid;
    i int;
    names text[] := '{}';
    done bigint[] := '{}';
    conf bigint[] := '{}';
    skip bigint[] := '{}';
    shadow name;
    cand text;
    cols text;
    vals text;
    sets text;
    keycols text;
    overriding text;
    n bigint;
    nc bigint;
    ns bigint;
    stmt text;
    stmts text[];
    written bigint;
    tr tombstone.trash;
    jit text;
    conname text;
BEGIN
    -- The candidates have no statistics: the planner's estimates of the
    -- restore's statements are rough and often high, and JIT compiling
    -- them cost more than running them (430 of 620 ms on 50k rows).
    jit := pg_catalog.current_setting('jit');
    PERFORM pg_catalog.set_config('jit', 'off', true);
    p_on_conflict := lower(coalesce(p_on_conflict, 'fail'));
    IF p_on_conflict NOT IN ('fail', 'skip', 'overwrite') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tombstone: ON CONFLICT %s is not one of FAIL, SKIP, OVERWRITE', p_on_conflict);
    END IF;
    rels := ARRAY(SELECT k::oid FROM pg_catalog.jsonb_object_keys(p_preds) k);
    FOREACH o IN ARRAY rels LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = o) THEN
            RAISE EXCEPTION USING ERRCODE = '42P01',
                MESSAGE = pg_catalog.format('tombstone: table %s (shadow tombstone.%s) no longer exists',
                    (SELECT sh.source_schema || '.' || sh.source_name FROM tombstone.shadows sh WHERE sh.source = o),
                    (SELECT sh.shadow_name FROM tombstone.shadows sh WHERE sh.source = o)),
                HINT = 'Recreate or UNDROP the table first.';
        END IF;
        -- A table in the trash takes no rows: they would go with it when
        -- the reaper drops it.
        SELECT t.* INTO tr FROM tombstone.trash t WHERE t.source = o AND t.restored_at IS NULL AND t.purged_at IS NULL;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('tombstone: table %I.%I is in the trash (dropped at %s)',
                                            tr.original_schema, tr.original_name, tr.dropped_at),
                HINT = pg_catalog.format('UNDROP TABLE %I.%I first, then restore its rows.', tr.original_schema, tr.original_name);
        END IF;
        -- (A partition that went along with its table: no entry of its
        -- own.)
        IF (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = o) = 'tombstone_trash'::regnamespace THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('tombstone: table %s is in the trash, with the table it is a partition of', o::regclass),
                HINT = 'UNDROP TABLE that table first, then restore its rows.';
        END IF;
    END LOOP;
    PERFORM tombstone._check_owner_code(rels);
    -- Deferred constraints the session queued before the restore are
    -- checked now, as its own: the ones the restore's writes queue are
    -- checked before they leave the owners' rights (tombstone._owned).
    -- Constraints stay immediate for the rest of the transaction.
    IF NOT p_dry_run THEN
        SET CONSTRAINTS ALL IMMEDIATE;
    END IF;
    -- Nothing new may land in or leave the shadows while the rows are
    -- chosen, written and forgotten.
    IF NOT p_dry_run THEN
        FOR shadow IN SELECT sh.shadow_name FROM tombstone.shadows sh WHERE sh.source = ANY (rels) ORDER BY sh.shadow_name LOOP
            EXECUTE pg_catalog.format('LOCK TABLE tombstone.%I IN EXCLUSIVE MODE', shadow);
        END LOOP;
    END IF;
    FOREACH o IN ARRAY rels LOOP
        PERFORM tombstone.sync_shadow(o::regclass);
    END LOOP;
    -- Provenance: application roles may INSERT into shadow tables (that
    -- is how the rewritten DELETE writes them), so a tombstone only comes
    -- back if its batch exists and the batch's role — the deleting
    -- session's, which nobody can forge — may remove rows from the table,
    -- and it carries its batch's secret token, which application roles
    -- cannot read.
    FOREACH o IN ARRAY rels LOOP
        p_preds := p_preds || pg_catalog.jsonb_build_object(o::text,
            '(' || (p_preds ->> o::text) || pg_catalog.format(') AND EXISTS (SELECT 1 FROM tombstone.batches b'
            || ' WHERE b.id = s._ts_batch AND b.token IS NOT DISTINCT FROM s._ts_token'
            || ' AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = b.role'
            || ' AND (pg_catalog.has_table_privilege(r.oid, %s::oid, ''DELETE'') OR pg_catalog.has_table_privilege(r.oid, %s::oid, ''TRUNCATE''))))',
            o, o));
    END LOOP;
    ordered := tombstone._topo_order(rels);

    -- 1 and 2: read and decide, parents first.
    FOR i IN 1 .. cardinality(ordered) LOOP
        o := ordered[i];
        PERFORM tombstone._read(o, p_preds ->> o::text);
        -- Under FAIL the common case pays for no conflict check: the
        -- INSERT raises on a taken key, and only then is it looked up.
        IF p_dry_run OR p_on_conflict <> 'fail' THEN
            PERFORM tombstone._mark_conflicts(o, p_on_conflict = 'overwrite');
        END IF;
        PERFORM tombstone._mark_skipped(o, rels, NOT p_dry_run);
        IF p_on_conflict = 'fail' AND NOT p_dry_run THEN
            PERFORM tombstone._refuse(o);
        END IF;
    END LOOP;

    -- 3: write, parents first.
    FOR i IN 1 .. cardinality(ordered) LOOP
        o := ordered[i];
        cand := tombstone._cand(o);
        names := names || (SELECT n2.nspname || '.' || c2.relname FROM pg_catalog.pg_class c2
                             JOIN pg_catalog.pg_namespace n2 ON n2.oid = c2.relnamespace WHERE c2.oid = o);
        EXECUTE pg_catalog.format('SELECT count(*) FILTER (WHERE _ts_state IN (''restore'', ''overwrite'')), '
                                  'count(*) FILTER (WHERE _ts_state IN (''conflict'', ''overwrite'')), '
                                  'count(*) FILTER (WHERE _ts_state = ''skipped'') FROM %s', cand)
          INTO n, nc, ns;
        conf := conf || nc;
        skip := skip || ns;
        IF NOT p_dry_run AND n > 0 THEN
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum),
                   tombstone._insert_vals(o),
                   CASE WHEN bool_or(a.attidentity = 'a') THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END,
                   pg_catalog.string_agg(pg_catalog.format('%1$I = EXCLUDED.%1$I', a.attname), ', ' ORDER BY a.attnum)
                     FILTER (WHERE a.attidentity <> 'a' AND NOT (a.attnum = ANY (coalesce(tombstone._key(o), '{}'))))
              INTO cols, vals, overriding, sets
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = o AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
            stmts := ARRAY[pg_catalog.format('INSERT INTO %s (%s)%s SELECT %s FROM %s _ts_x WHERE _ts_x._ts_state = ''restore''',
                                             o::regclass::text, cols, overriding, vals, cand)];
            IF p_on_conflict = 'overwrite' THEN
                SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.i) INTO keycols
                  FROM unnest(tombstone._key(o)) WITH ORDINALITY k(n, i)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = o AND a.attnum = k.n;
                IF keycols IS NOT NULL THEN
                    stmts := stmts || pg_catalog.format(
                        'INSERT INTO %s AS _ts_t (%s)%s SELECT %s FROM %s _ts_x WHERE _ts_x._ts_state = ''overwrite'' '
                        'ON CONFLICT (%s) DO %s',
                        o::regclass::text, cols, overriding, vals, cand, keycols,
                        'UPDATE SET ' || coalesce(sets, pg_catalog.format('%1$s = EXCLUDED.%1$s', pg_catalog.split_part(keycols, ', ', 1))));
                END IF;
            END IF;
            -- Rows must land where they came from: an INSTEAD rule would
            -- send them elsewhere (or nowhere).
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = o AND r.is_instead
                          AND r.ev_type IN ('3', CASE WHEN p_on_conflict = 'overwrite' THEN '2' END)) THEN
                RAISE EXCEPTION USING ERRCODE = '0A000',
                    MESSAGE = pg_catalog.format('tombstone: %s has an INSTEAD rule: restored rows would not land in it', o::regclass),
                    HINT = 'Disable or drop the rule for the restore, then restore.';
            END IF;
            BEGIN
                -- Every row must be written: a trigger that drops one
                -- (BEFORE … RETURN NULL) would otherwise lose it, since the
                -- store forgets every row it restores.
                written := 0;
                FOREACH stmt IN ARRAY stmts LOOP
                    written := written + tombstone._owned(o, stmt, tombstone._owner_path());
                END LOOP;
                IF written <> n THEN
                    RAISE EXCEPTION USING ERRCODE = '27000',
                        MESSAGE = pg_catalog.format('tombstone: %s of %s row(s) to restore into %s were not written: the table''s triggers discarded them',
                                                    n - written, n, o::regclass),
                        HINT = 'Nothing was restored. Disable the triggers that return NULL for the restore (ALTER TABLE … DISABLE TRIGGER), then restore.';
                END IF;
            EXCEPTION WHEN unique_violation OR exclusion_violation THEN
                IF p_on_conflict = 'fail' THEN
                    PERFORM tombstone._mark_conflicts(o, false);
                    PERFORM tombstone._refuse(o);  -- the keys, when they were foreseeable
                END IF;
                RAISE;
            WHEN check_violation THEN
                -- No partition takes a row (a CHECK constraint's
                -- violation names the constraint): the one it was deleted
                -- from is detached, or in the trash.
                GET STACKED DIAGNOSTICS conname = CONSTRAINT_NAME;
                IF conname <> '' OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = o) <> 'p' THEN
                    RAISE;
                END IF;
                RAISE EXCEPTION USING ERRCODE = '23514',
                    MESSAGE = pg_catalog.format('tombstone: rows to restore into %s belong in a partition it does not have now', o::regclass),
                    HINT = 'ATTACH the partition they were deleted from again (UNDROP TABLE it first if it was dropped), then restore. Nothing was restored.';
            END;
        END IF;
        done := done || n;
    END LOOP;
    -- SET NULL links, once every parent is back.
    FOR i IN 1 .. cardinality(ordered) LOOP
        done[i] := done[i] + tombstone._relink(ordered[i], rels, p_dry_run);
    END LOOP;

    -- 4: forget what came back (by ctid: exactly the rows read).
    IF NOT p_dry_run THEN
        FOR i IN 1 .. cardinality(ordered) LOOP
            o := ordered[i];
            EXECUTE pg_catalog.format(
                'DELETE FROM tombstone.%I s WHERE s.ctid = ANY (ARRAY(SELECT _ts_ctid FROM %s '
                'WHERE _ts_state IN (''restore'', ''overwrite'', ''linked'')))',
                tombstone._shadow_of(o), tombstone._cand(o));
            -- A row OVERWRITE replaced is gone, and so is any use for the
            -- SET NULL links taken from it (after the row that replaced it
            -- was deleted): re-linked later, they would land on a row they
            -- never belonged to.
            IF p_on_conflict = 'overwrite' AND tombstone._key(o) IS NOT NULL THEN
                EXECUTE pg_catalog.format(
                    'DELETE FROM tombstone.%I s USING %s _ts_o WHERE _ts_o._ts_state = ''overwrite'' AND s._ts_cause = ''set_null'' '
                    'AND s._ts_deleted_at > _ts_o._ts_deleted_at AND %s',
                    tombstone._shadow_of(o), tombstone._cand(o),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('%s = _ts_o.%s', tombstone._sval(o, k.n, 's'), tombstone._val(k.n)), ' AND ')
                       FROM unnest(tombstone._key(o)) k(n)));
            END IF;
        END LOOP;
        -- Batches left without tombstones are restored; the others that
        -- gave rows back, partly restored.
        UPDATE tombstone.batches b
           SET restored_at = CASE WHEN tombstone._batch_preds(ARRAY[b.id]) = '{}' THEN now() END,
               partly_restored_at = now()
         WHERE b.id IN (SELECT x.bid FROM unnest(ordered) r(oid),
                        LATERAL tombstone._cand_batches(r.oid) x(bid))
           AND b.restored_at IS NULL;
    END IF;
    FOREACH o IN ARRAY ordered LOOP
        EXECUTE 'DROP TABLE ' || tombstone._cand(o) || ', ' || tombstone._marks(o);
    END LOOP;

    PERFORM pg_catalog.set_config('jit', jit, true);
    RETURN QUERY SELECT x.nm, x.d, x.c, x.s FROM unnest(names, done, conf, skip) x(nm, d, c, s);
END
$$;

-- _cand_batches lists the batches that rows of rel's candidates came
-- back from (or left the store for: re-linked links).
CREATE OR REPLACE FUNCTION tombstone._cand_batches(rel oid) RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
BEGIN
    RETURN QUERY EXECUTE 'SELECT DISTINCT _ts_batch FROM ' || tombstone._cand(rel)
                      || ' WHERE _ts_state IN (''restore'', ''overwrite'', ''linked'')';
END
$$;

-- _batch_preds maps the source oid of every shadow holding tombstones of
-- the given batches to the predicate selecting them. Only tombstones that
-- carry their batch's token count: a row planted under another batch's
-- id (application roles may INSERT into shadows) neither pulls its table
-- into that batch nor keeps the batch from being restored.
CREATE OR REPLACE FUNCTION tombstone._batch_preds(p_batches bigint[]) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    s record;
    found_rows boolean;
    preds jsonb := '{}';
    pred text := pg_catalog.format('s._ts_batch = ANY (%L::bigint[])', p_batches);
BEGIN
    IF cardinality(p_batches) = 1 THEN
        pred := pg_catalog.format('s._ts_batch = %s', p_batches[1]);
    END IF;
    pred := pred || ' AND s._ts_token IS NOT DISTINCT FROM (SELECT b.token FROM tombstone.batches b WHERE b.id = s._ts_batch)';
    FOR s IN SELECT sh.source, sh.shadow_name FROM tombstone.shadows sh LOOP
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM tombstone.%I s WHERE %s)', s.shadow_name, pred)
           INTO found_rows;
        IF found_rows THEN
            preds := preds || pg_catalog.jsonb_build_object(s.source::text, pred);
        END IF;
    END LOOP;
    RETURN preds;
END
$$;

-- _lock_batches locks the batch rows for a restore and checks that they
-- can be restored.
CREATE OR REPLACE FUNCTION tombstone._lock_batches(p_batches bigint[], p_dry_run boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    b tombstone.batches;
    v_id bigint;
BEGIN
    FOREACH v_id IN ARRAY p_batches LOOP
        IF p_dry_run THEN
            SELECT * INTO b FROM tombstone.batches x WHERE x.id = v_id;
        ELSE
            SELECT * INTO b FROM tombstone.batches x WHERE x.id = v_id FOR UPDATE;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('tombstone: batch %s does not exist', v_id);
        END IF;
        IF b.purged_at IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('tombstone: batch %s was purged at %s', v_id, b.purged_at);
        END IF;
    END LOOP;
END
$$;

-- _restore_audited is _restore, one row per table in table order, with
-- the restore (or its dry run) recorded in the audit trail as command
-- p_command with arguments p_args.
CREATE OR REPLACE FUNCTION tombstone._restore_audited(
    p_command text, p_args jsonb, p_preds jsonb, p_dry_run boolean, p_on_conflict text)
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    r record;
    tables jsonb := '{}';
BEGIN
    FOR r IN SELECT * FROM tombstone._restore(p_preds, p_dry_run, p_on_conflict) x ORDER BY 1 LOOP
        table_name := r.table_name;
        restored := r.restored;
        conflicts := r.conflicts;
        skipped := r.skipped;
        tables := tables || pg_catalog.jsonb_build_object(r.table_name, pg_catalog.jsonb_build_object(
                      'restored', r.restored, 'conflicts', r.conflicts, 'skipped', r.skipped));
        RETURN NEXT;
    END LOOP;
    PERFORM tombstone._audit(p_command, p_args || pg_catalog.jsonb_build_object('dry_run', p_dry_run, 'on_conflict', p_on_conflict),
                             pg_catalog.jsonb_build_object('tables', tables));
END
$$;

-- _undelete_batches restores every row of the batches p_ids (see
-- _restore). One row per table. p_what names the batches in the error
-- raised when nothing is left to restore; p_command and p_args name the
-- restore in the audit trail.
CREATE OR REPLACE FUNCTION tombstone._undelete_batches(
    p_ids bigint[], p_what text, p_hint text, p_dry_run boolean, p_on_conflict text, p_command text, p_args jsonb)
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    preds jsonb;
BEGIN
    PERFORM tombstone._lock_batches(p_ids, p_dry_run);
    preds := tombstone._batch_preds(p_ids);
    IF preds = '{}' AND p_hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: %s has no tombstones left to restore', p_what);
    ELSIF preds = '{}' THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tombstone: %s has no tombstones left to restore', p_what), HINT = p_hint;
    END IF;
    RETURN QUERY SELECT * FROM tombstone._restore_audited(p_command, p_args, preds, p_dry_run, p_on_conflict);
END
$$;

-- undelete_batch restores one batch (see _undelete_batches).
CREATE OR REPLACE FUNCTION tombstone.undelete_batch(
    p_batch bigint, p_dry_run boolean DEFAULT false, p_on_conflict text DEFAULT 'fail')
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    RETURN QUERY SELECT * FROM tombstone._undelete_batches(ARRAY[p_batch], 'batch ' || p_batch,
        'SHOW BATCH shows its state; it may have been restored already.', p_dry_run, p_on_conflict,
        'UNDELETE BATCH', pg_catalog.jsonb_build_object('batch', p_batch));
END
$$;

-- undelete_transaction restores every batch of one transaction (the
-- batches' xid).
CREATE OR REPLACE FUNCTION tombstone.undelete_transaction(
    p_xid xid8, p_dry_run boolean DEFAULT false, p_on_conflict text DEFAULT 'fail')
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM tombstone._require_admin();
    ids := ARRAY(SELECT b.id FROM tombstone.batches b WHERE b.xid = p_xid AND b.purged_at IS NULL ORDER BY b.id);
    IF cardinality(ids) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = pg_catalog.format('tombstone: transaction %s has no batches', p_xid);
    END IF;
    RETURN QUERY SELECT * FROM tombstone._undelete_batches(ids, 'transaction ' || p_xid, NULL, p_dry_run, p_on_conflict,
        'UNDELETE TRANSACTION', pg_catalog.jsonb_build_object('transaction', p_xid::text, 'batches', ids));
END
$$;

-- _require_stable refuses a WHERE condition that calls a volatile
-- function (random(), nextval(), …) or samples a table (TABLESAMPLE): a
-- restore reads its rows once, but a condition that changes its mind
-- between the rows of one table and the SET NULL links to them would
-- re-link one set and restore another, and DRY RUN could not say what
-- the run does.
CREATE OR REPLACE FUNCTION tombstone._require_stable(p_root oid, p_where text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    v name := 'tombstone_where_check_' || pg_catalog.pg_backend_pid();
    bad text;
    sampled boolean;
BEGIN
    EXECUTE pg_catalog.format('CREATE TEMP VIEW %I AS SELECT (%s) AS p FROM tombstone.%I s',
                              v, p_where, tombstone.shadow_name(p_root::regclass));
    -- Every function the condition calls, built-ins included (pg_depend
    -- does not record those), is named in the view's stored parse tree;
    -- so is a TABLESAMPLE clause.
    SELECT pg_catalog.string_agg(DISTINCT f.proname, ', ') INTO bad
      FROM pg_catalog.pg_rewrite r,
           LATERAL pg_catalog.regexp_matches(r.ev_action::text, ':(?:op)?funcid (\d+)', 'g') m
      JOIN pg_catalog.pg_proc f ON f.oid = m[1]::oid
     WHERE r.ev_class = pg_catalog.to_regclass('pg_temp.' || pg_catalog.quote_ident(v)) AND f.provolatile = 'v';
    SELECT bool_or(r.ev_action::text ~ ':tablesample \{') INTO sampled
      FROM pg_catalog.pg_rewrite r WHERE r.ev_class = pg_catalog.to_regclass('pg_temp.' || pg_catalog.quote_ident(v));
    EXECUTE pg_catalog.format('DROP VIEW pg_temp.%I', v);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tombstone: the WHERE condition calls volatile function(s) %s', bad),
            HINT = 'Use a condition whose result does not change between evaluations.';
    END IF;
    IF sampled THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tombstone: the WHERE condition samples a table (TABLESAMPLE)',
            HINT = 'Use a condition whose result does not change between evaluations.';
    END IF;
END
$$;

-- undelete_rows restores selected rows of one table and everything the
-- same batches removed because of them: cascade descendants (any depth,
-- self-referencing trees included) and SET NULL links (self-referencing
-- ones included). p_where is a SQL expression over the table's columns,
-- validated by the caller (the proxy parses it with pg_query); it is
-- embedded in dynamic SQL as is, and evaluated once (tombstone._read).
-- p_batch, p_since and p_until (on the tombstones' deletion time) narrow
-- the selection; all NULL means every stored tombstone of the table.
CREATE OR REPLACE FUNCTION tombstone.undelete_rows(
    p_table regclass, p_where text DEFAULT NULL, p_batch bigint DEFAULT NULL,
    p_since timestamptz DEFAULT NULL, p_until timestamptz DEFAULT NULL,
    p_dry_run boolean DEFAULT false, p_on_conflict text DEFAULT 'fail')
RETURNS TABLE (table_name text, restored bigint, conflicts bigint, skipped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    root oid := tombstone._root(p_table::oid);
    preds jsonb;
    reach oid[];
    ordered oid[];
    o oid;
    fk record;
    ppred text;
    cpred text;
    pshadow name;
    cshadow name;
    ckeys name[];
    pkeys name[];
    sel text;
    batches bigint[];
BEGIN
    PERFORM tombstone._require_admin();
    IF tombstone.shadow_name(root::regclass) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('tombstone: %s has no tombstones (it is not protected)', p_table);
    END IF;
    IF p_batch IS NOT NULL THEN
        PERFORM tombstone._lock_batches(ARRAY[p_batch], p_dry_run);
    END IF;
    sel := 's._ts_cause IN (''delete'', ''cascade'', ''truncate'')';
    IF p_batch IS NOT NULL THEN sel := sel || pg_catalog.format(' AND s._ts_batch = %s', p_batch); END IF;
    IF p_since IS NOT NULL THEN sel := sel || pg_catalog.format(' AND s._ts_deleted_at >= %L::timestamptz', p_since); END IF;
    IF p_until IS NOT NULL THEN sel := sel || pg_catalog.format(' AND s._ts_deleted_at < %L::timestamptz', p_until); END IF;
    IF p_where IS NOT NULL AND pg_catalog.btrim(p_where) <> '' THEN
        PERFORM tombstone._require_stable(root, tombstone._user_pred(root, p_where));
        sel := sel || ' AND (' || tombstone._user_pred(root, p_where) || ')';
    END IF;
    -- A partition's rows are its root's tombstones that its partition
    -- constraint (with its ancestors') admits.
    IF p_table::oid <> root AND pg_catalog.pg_get_partition_constraintdef(p_table) IS NOT NULL THEN
        sel := sel || ' AND (' || tombstone._user_pred(root, pg_catalog.pg_get_partition_constraintdef(p_table)) || ') IS TRUE';
    END IF;
    preds := pg_catalog.jsonb_build_object(root::text, sel);

    -- Tables reachable through cascading foreign keys.
    WITH RECURSIVE g(relid) AS (
        SELECT root
        UNION
        SELECT tombstone._root(c.conrelid) FROM g JOIN pg_catalog.pg_constraint c
            ON tombstone._root(c.confrelid) = g.relid AND c.contype = 'f' AND c.conparentid = 0 AND c.confdeltype = 'c'
    )
    SELECT pg_catalog.array_agg(relid) INTO reach FROM g;
    ordered := tombstone._topo_order(reach);

    -- Each table's rows are chosen from the candidates already read of
    -- the tables before it (tombstone._cand): the user's condition is
    -- evaluated once, on the first table only.
    FOREACH o IN ARRAY ordered LOOP
        ppred := preds ->> o::text;
        CONTINUE WHEN ppred IS NULL;
        pshadow := tombstone.shadow_name(o::regclass);
        CONTINUE WHEN pshadow IS NULL;
        -- Self-references: the subtree of the selected rows, and the SET
        -- NULL links to them, in the same statement.
        FOR fk IN SELECT c.conkey, c.confkey, c.confdeltype FROM pg_catalog.pg_constraint c
                   WHERE c.conrelid = o AND c.confrelid = o AND c.contype = 'f' AND c.conparentid = 0
                     AND c.confdeltype IN ('c', 'n', 'd')
                   ORDER BY c.confdeltype = 'c' DESC, c.oid
        LOOP
            ckeys := tombstone._shadow_cols(o, fk.conkey);
            pkeys := tombstone._shadow_cols(o, fk.confkey);
            CONTINUE WHEN cardinality(ckeys) IS DISTINCT FROM cardinality(fk.conkey)
                       OR cardinality(pkeys) IS DISTINCT FROM cardinality(fk.confkey);
            IF fk.confdeltype = 'c' THEN
                ppred := pg_catalog.format(
                    '(%1$s) OR (s._ts_cause = ''cascade'' AND (s._ts_batch, %2$s) IN ('
                    'WITH RECURSIVE r AS (SELECT s._ts_batch AS b, %3$s FROM tombstone.%4$I s WHERE %1$s '
                    'UNION SELECT c._ts_batch, %5$s FROM tombstone.%4$I c JOIN r ON c._ts_batch = r.b AND %6$s '
                    'WHERE c._ts_cause = ''cascade'') SELECT * FROM r))',
                    ppred,
                    (SELECT pg_catalog.string_agg('s.' || pg_catalog.quote_ident(x), ', ') FROM unnest(ckeys) x),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('s.%1$I AS k%2$s', x, o2), ', ')
                       FROM unnest(pkeys) WITH ORDINALITY u(x, o2)),
                    pshadow,
                    (SELECT pg_catalog.string_agg('c.' || pg_catalog.quote_ident(x), ', ') FROM unnest(pkeys) x),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('c.%I = r.k%s', x, o2), ' AND ')
                       FROM unnest(ckeys) WITH ORDINALITY u(x, o2)));
            ELSE
                ppred := pg_catalog.format(
                    '(%1$s) OR (s._ts_cause = ''set_null'' AND (s._ts_batch, %2$s) IN ('
                    'SELECT s._ts_batch, %3$s FROM tombstone.%4$I s WHERE (%1$s) AND s._ts_cause <> ''set_null''))',
                    ppred,
                    (SELECT pg_catalog.string_agg('s.' || pg_catalog.quote_ident(x), ', ') FROM unnest(ckeys) x),
                    (SELECT pg_catalog.string_agg('s.' || pg_catalog.quote_ident(x), ', ') FROM unnest(pkeys) x),
                    pshadow);
            END IF;
            preds := preds || pg_catalog.jsonb_build_object(o::text, ppred);
        END LOOP;
        -- Other tables: cascaded rows and SET NULL links of the rows read
        -- from o. (A key may reference one of o's partitions: its columns
        -- by name in o.)
        FOR fk IN SELECT c.conrelid, c.conkey, c.confdeltype,
                         ARRAY(SELECT tombstone._val(ra.attnum) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                                 JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.n
                                 JOIN pg_catalog.pg_attribute ra ON ra.attrelid = o AND ra.attname = pa.attname
                                ORDER BY k.i) AS pvals
                    FROM pg_catalog.pg_constraint c
                   WHERE tombstone._root(c.confrelid) = o AND tombstone._root(c.conrelid) <> o AND c.contype = 'f' AND c.conparentid = 0
                     AND c.confdeltype IN ('c', 'n', 'd')
                   ORDER BY c.oid
        LOOP
            cshadow := tombstone.shadow_name(fk.conrelid::regclass);
            CONTINUE WHEN cshadow IS NULL;
            ckeys := tombstone._shadow_cols(tombstone._root(fk.conrelid), fk.conkey);
            CONTINUE WHEN cardinality(ckeys) IS DISTINCT FROM cardinality(fk.conkey)
                       OR cardinality(fk.pvals) IS DISTINCT FROM cardinality(fk.conkey);
            cpred := pg_catalog.format(
                's._ts_cause = %L AND (s._ts_batch, %s) IN (SELECT _ts_p._ts_batch, %s FROM %s _ts_p WHERE _ts_p._ts_cause <> ''set_null'')',
                CASE WHEN fk.confdeltype = 'c' THEN 'cascade' ELSE 'set_null' END,
                (SELECT pg_catalog.string_agg(tombstone._sval(tombstone._root(fk.conrelid), k.n, 's'), ', ' ORDER BY k.i)
                   FROM unnest(fk.conkey) WITH ORDINALITY k(n, i)),
                (SELECT pg_catalog.string_agg('_ts_p.' || x, ', ') FROM unnest(fk.pvals) x),
                tombstone._cand(o));
            IF preds ? tombstone._root(fk.conrelid)::text THEN
                cpred := '(' || (preds ->> tombstone._root(fk.conrelid)::text) || ') OR (' || cpred || ')';
            END IF;
            preds := preds || pg_catalog.jsonb_build_object(tombstone._root(fk.conrelid)::text, cpred);
        END LOOP;
    END LOOP;

    -- Nothing to restore is an error; the batches involved are locked.
    EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(DISTINCT s._ts_batch) FROM tombstone.%I s WHERE %s',
                              tombstone.shadow_name(root::regclass), sel) INTO batches;
    IF batches IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = pg_catalog.format('tombstone: no tombstones of %s match', p_table);
    END IF;
    IF p_batch IS NULL AND NOT p_dry_run THEN
        PERFORM tombstone._lock_batches(batches, p_dry_run);
    END IF;
    RETURN QUERY SELECT * FROM tombstone._restore_audited('UNDELETE FROM', pg_catalog.jsonb_build_object(
        'table', p_table::text, 'where', p_where, 'batch', p_batch, 'since', p_since, 'until', p_until),
        preds, p_dry_run, p_on_conflict);
END
$$;

-- _user_pred makes a condition written over rel's column names read
-- rel's shadow rows (aliased s): as it is when every column has its own
-- name in the shadow (the common case, which keeps the shadow's indexes
-- usable); else evaluated over the columns under their own names, so that
-- a user column called like one of ours (_ts_batch) means the user's, and
-- in their own types (a user's type is kept as text: tombstone._sval).
CREATE OR REPLACE FUNCTION tombstone._user_pred(rel oid, p_where text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT CASE WHEN bool_and(sc.shadow_column = a.attname AND tombstone._sval(rel, a.attnum, 's') = pg_catalog.format('s.%I', a.attname))
                     OR count(*) = 0 THEN p_where
                ELSE '(SELECT (' || p_where || ') FROM (SELECT '
                     || pg_catalog.string_agg(pg_catalog.format('%s AS %I', tombstone._sval(rel, a.attnum, 's'), a.attname), ', ' ORDER BY a.attnum)
                     || ') _ts_u)' END
      FROM pg_catalog.pg_attribute a
      JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;
