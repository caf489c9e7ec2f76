-- functions.sql: every function of the tombstone schema, and the grants
-- that go with them. Install re-applies this file (in its migration
-- transaction) whenever its text changes, so each statement here must be
-- re-runnable: CREATE OR REPLACE, GRANT, REVOKE.
--
-- Privilege model (see doc.go):
--   * PUBLIC (every application role) may write tombstones — INSERT on
--     batches and every shadow table, USAGE on the batch sequence,
--     EXECUTE on check_catalog — and read nothing but the settings.
--   * tombstone_admin may read, restore and purge. The admin functions
--     are SECURITY INVOKER: they check membership first (SQLSTATE 42501
--     with a GRANT hint), then run with the caller's own privileges, so a
--     restore also needs INSERT/UPDATE on the restored tables.
--   * sync_shadow/sync_all are SECURITY DEFINER (owned by the installer),
--     because the event trigger runs them on behalf of whoever altered a
--     protected table, and shadow tables belong to the installer.

-- protected_tables lists the protected tables: ordinary and partitioned
-- tables (not partitions: those are reached through their root) of the
-- protected schemas, minus tables whose mode is 'off', plus tables listed
-- with mode 'shadow' in other schemas. search_pos orders the schemas for
-- unqualified lookups.
-- _base_type is a type with its domains peeled off.
CREATE OR REPLACE FUNCTION tombstone._base_type(p_type oid) RETURNS oid
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE d(t) AS (SELECT p_type UNION ALL
        SELECT ty.typbasetype FROM d JOIN pg_catalog.pg_type ty ON ty.oid = d.t WHERE ty.typtype = 'd')
    SELECT t FROM d JOIN pg_catalog.pg_type ty ON ty.oid = d.t WHERE ty.typtype <> 'd'
$$;

-- _value_type is the type a source column's values are read back in
-- from its shadow: the column's own type, or for a domain (also an array
-- of one) its base type, so that no domain constraint runs when a shadow
-- table changes or a restore writes the values back.
CREATE OR REPLACE FUNCTION tombstone._value_type(p_type oid, p_typmod integer) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t record;
    elem oid;
BEGIN
    SELECT typtype, typbasetype, typtypmod, typelem, typcategory INTO t FROM pg_catalog.pg_type WHERE oid = p_type;
    IF t.typtype = 'd' THEN
        RETURN tombstone._value_type(t.typbasetype, t.typtypmod);
    END IF;
    IF t.typcategory = 'A' AND t.typelem <> 0
       AND (SELECT typtype FROM pg_catalog.pg_type WHERE oid = t.typelem) = 'd' THEN
        -- Down to the scalar type: through domains, and through arrays a
        -- domain is over (an array of a domain over int[] is an int[]).
        elem := t.typelem;
        LOOP
            SELECT typtype, typbasetype, typelem, typcategory INTO t FROM pg_catalog.pg_type WHERE oid = elem;
            IF t.typtype = 'd' THEN
                elem := t.typbasetype;
            ELSIF t.typcategory = 'A' AND t.typelem <> 0 THEN
                elem := t.typelem;
            ELSE
                EXIT;
            END IF;
        END LOOP;
        RETURN pg_catalog.format_type(elem, NULL) || '[]';
    END IF;
    RETURN pg_catalog.format_type(p_type, p_typmod);
END
$$;

-- _type_tree walks the types a value of type p_type is made of: itself,
-- array elements, range subtypes, composite attributes (attname set),
-- each with its path from the top (attribute numbers), 20 levels at most.
CREATE OR REPLACE FUNCTION tombstone._type_tree(p_type oid) RETURNS TABLE (typ oid, path int[], attname name)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE tree(typ, path, attname) AS (
        SELECT p_type, ARRAY[]::int[], NULL::name
        UNION ALL
        SELECT x.child, tree.path || x.k, x.attname
          FROM tree JOIN pg_catalog.pg_type t ON t.oid = tree.typ
         CROSS JOIN LATERAL (
               SELECT t.typelem AS child, 0 AS k, NULL::name AS attname WHERE t.typcategory = 'A' AND t.typelem <> 0
               UNION ALL SELECT r.rngsubtype, 0, NULL FROM pg_catalog.pg_range r WHERE t.typtype = 'r' AND r.rngtypid = t.oid
               UNION ALL SELECT r.rngsubtype, 0, NULL FROM pg_catalog.pg_range r WHERE t.typtype = 'm' AND r.rngmultitypid = t.oid
               UNION ALL SELECT a.atttypid, a.attnum::int, a.attname FROM pg_catalog.pg_attribute a
                          WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) x
         WHERE pg_catalog.cardinality(tree.path) < 20)
    SELECT typ, path, attname FROM tree
$$;

-- _no_domain reports whether reading a value of type p_type from text
-- checks no domain: none in its attributes, elements or subtype.
CREATE OR REPLACE FUNCTION tombstone._no_domain(p_type oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM tombstone._type_tree(p_type) x
                         LEFT JOIN pg_catalog.pg_type t ON t.oid = x.typ
                        WHERE t.oid IS NULL OR t.typtype IN ('d', 'p') OR pg_catalog.cardinality(x.path) >= 19)
$$;

-- _as_text reports whether values of type p_type (domains stripped) are
-- kept as text in shadow tables: a type a user created (an enum, a
-- composite type or a table's row type, a range, an extension's type,
-- arrays of those), so that no shadow column depends on it — the user
-- may drop or change it, as after a plain DELETE. Its output function
-- writes the text and its input function reads it back; both are
-- Postgres's own or a superuser's (only superusers create base types).
-- Not where reading the text back would check a domain (a composite
-- with a domain attribute, say): that would run code of the domain
-- owner's choosing as whoever restores, so such a type stays as it is.
CREATE OR REPLACE FUNCTION tombstone._as_text(p_type oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT v::oid >= 16384 AND tombstone._no_domain(v::oid)
      FROM pg_catalog.to_regtype(tombstone._value_type(p_type, -1)) v
$$;

-- _shape describes the composite types in type p_type's tree (the
-- attributes' numbers and types: a composite's text is positional, so a
-- renamed attribute reads back as it did, a dropped and re-added one
-- does not), or is NULL when there is none.
CREATE OR REPLACE FUNCTION tombstone._shape(p_type oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', x.path, x.typ::regtype), ', ' ORDER BY x.path)
      FROM tombstone._type_tree(p_type) x WHERE x.attname IS NOT NULL
$$;

-- _storage_type is the type a shadow column stores a source column in:
-- text for the types _as_text names, else _value_type.
-- A composite's text is positional: its storage type carries the
-- shape's signature as a comment (text /* shape … */), so that a change
-- of shape reads as a change of type, and the column stored in the old
-- shape is set aside rather than read back into the wrong attributes.
CREATE OR REPLACE FUNCTION tombstone._storage_type(p_type oid, p_typmod integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN tombstone._as_text(p_type)
                THEN 'text' || coalesce(' /* shape ' || pg_catalog.left(pg_catalog.md5(tombstone._shape(tombstone._base_type(p_type))), 12) || ' */', '')
                ELSE tombstone._value_type(p_type, p_typmod) END
$$;

-- _text_reads is true when a value of type p_type can be read back from
-- text by its type's input function: the cast from text to it is
-- Postgres's own conversion, or a superuser's. A cast whose function
-- another role wrote would run that role's code as whoever restores:
-- refused (42501), naming it. Evaluated as the value is read, by the
-- statement that reads it (tombstone._from_text), so that a cast created
-- in between is seen by the check as by the read.
CREATE OR REPLACE FUNCTION tombstone._text_reads(p_type oid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    fn regprocedure;
BEGIN
    SELECT c.castfunc::regprocedure INTO fn
      FROM pg_catalog.pg_cast c
      JOIN pg_catalog.pg_proc f ON f.oid = c.castfunc
      JOIN pg_catalog.pg_roles r ON r.oid = f.proowner
     WHERE c.castsource = 'pg_catalog.text'::pg_catalog.regtype AND c.casttarget = p_type AND NOT r.rolsuper
     LIMIT 1;
    IF fn IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('tombstone: cannot read values of type %s back: the cast from text to it runs %s, which no superuser owns',
                                        p_type::regtype, fn),
            HINT = pg_catalog.format('Drop the cast (DROP CAST (text AS %s)) and restore again.', p_type::regtype);
    END IF;
    RETURN true;
END
$$;

-- _from_text is the expression that reads text p_expr back as p_typ
-- (format_type text), behind _text_reads.
CREATE OR REPLACE FUNCTION tombstone._from_text(p_expr text, p_typ text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.format('CASE WHEN tombstone._text_reads(%L::pg_catalog.regtype) THEN (%s)::%s END', p_typ, p_expr, p_typ)
$$;

-- _sval is the expression that reads source column p_attnum of rel from
-- its shadow row aliased p_alias, in the column's value type: converted
-- back from text where the shadow keeps it as text (tombstone._as_text).
-- A value the type no longer reads (an enum label since renamed) fails
-- the restore with the type's own error, which names it.
CREATE OR REPLACE FUNCTION tombstone._sval(rel oid, p_attnum int2, p_alias text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN (sc.type = 'text' OR sc.type LIKE 'text /* shape %') AND tombstone._as_text(a.atttypid)
                THEN tombstone._from_text(pg_catalog.format('%s.%I', p_alias, sc.shadow_column), tombstone._value_type(a.atttypid, a.atttypmod))
                ELSE pg_catalog.format('%s.%I', p_alias, sc.shadow_column) END
      FROM pg_catalog.pg_attribute a
      JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum = p_attnum
$$;

-- _builtin_casts reports whether converting between two types (as
-- format_type spells them) uses only casts defined by Postgres itself.
CREATE OR REPLACE FUNCTION tombstone._builtin_casts(p_from text, p_to text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a oid;
    b oid;
BEGIN
    a := pg_catalog.to_regtype(p_from);
    b := pg_catalog.to_regtype(p_to);
    IF a IS NULL OR b IS NULL THEN
        RETURN false;
    END IF;
    RETURN NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_cast c
         WHERE ((c.castsource = a AND c.casttarget = b) OR (c.castsource = b AND c.casttarget = a))
           AND c.oid >= 16384)
       AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid IN (a, b) AND t.oid >= 16384 AND t.typtype NOT IN ('e'));
END
$$;

-- protected_among is protected_tables for the relations p_rels only: one
-- index probe each, where every captured DELETE asks about its tables
-- (a database's whole pg_class otherwise).
CREATE OR REPLACE FUNCTION tombstone.protected_among(p_rels oid[])
RETURNS TABLE (relid oid, schema_name name, table_name name, search_pos integer,
               retention interval, filter_column name)
LANGUAGE plpgsql STABLE
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
AS $$
    INSERT INTO tombstone.catalog_log DEFAULT VALUES ON CONFLICT (xid) DO NOTHING
$$;
REVOKE ALL ON FUNCTION tombstone._catalog_logged() FROM PUBLIC;

-- (The protection rules: every change of them bumps protect.generation,
-- which catalog_signature includes. Row by row, so that the reaper's
-- settings, say, change no catalog.)
CREATE OR REPLACE FUNCTION tombstone._catalog_logged_rules() RETURNS trigger
LANGUAGE plpgsql
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

-- _require_admin raises 42501 unless the current role is a superuser or
-- a member of tombstone_admin.
CREATE OR REPLACE FUNCTION tombstone._require_admin() RETURNS void
LANGUAGE plpgsql STABLE
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

-- _shadow_name picks the shadow table name for a source table:
-- "<schema>__<table>", cut to fit 63 bytes with an 8-hex hash suffix,
-- and made unique against the shadows of other source tables.
CREATE OR REPLACE FUNCTION tombstone._shadow_name(p_schema name, p_table name, p_source oid) RETURNS name
LANGUAGE plpgsql STABLE
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
AS $$
    SELECT array_agg(sc.shadow_column ORDER BY k.ord)
      FROM unnest(attnums) WITH ORDINALITY k(attnum, ord)
      JOIN tombstone.shadow_columns sc ON sc.source = rel AND sc.attnum = k.attnum
$$;

-- _source_cols maps attnums to the source's column names.
CREATE OR REPLACE FUNCTION tombstone._source_cols(rel oid, attnums int2[]) RETURNS name[]
LANGUAGE sql STABLE
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
AS $$
DECLARE
    before text := pg_catalog.current_setting('session_replication_role');
    quiet boolean := before = 'origin' AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
    out name;
BEGIN
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
AS $$ SELECT s.shadow_name FROM tombstone.shadows s WHERE s.source = tombstone._root(rel::oid) $$;

-- _shadow_of is the shadow table of exactly rel, which a restore reads a
-- batch's tombstones from (_batch_preds names the shadows that hold
-- them): a table attached as a partition since it had a shadow of its
-- own keeps the tombstones of its deletes from before in that one, not
-- in its new root's.
CREATE OR REPLACE FUNCTION tombstone._shadow_of(rel oid) RETURNS name
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (SELECT s.shadow_name FROM tombstone.shadows s WHERE s.source = rel);
END
$$;

-- _state is a batch's state as shown to people.
CREATE OR REPLACE FUNCTION tombstone._state(b tombstone.batches) RETURNS text
LANGUAGE sql IMMUTABLE
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
AS $$
DECLARE
    b tombstone.batches;
    s record;
    n bigint;
    upto timestamptz;
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
            RETURN NEXT;
        END IF;
    END LOOP;
    UPDATE tombstone.batches SET purged_at = coalesce(purged_at, now()) WHERE id = p_batch;
END
$$;

-- hold_batch keeps a batch from the reaper (and from purge_batch) until
-- released; release_batch undoes it. Both return the new held flag.
CREATE OR REPLACE FUNCTION tombstone.hold_batch(p_batch bigint, p_hold boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    UPDATE tombstone.batches SET held = p_hold WHERE id = p_batch;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('tombstone: batch %s does not exist', p_batch);
    END IF;
    RETURN p_hold;
END
$$;

CREATE OR REPLACE FUNCTION tombstone.release_batch(p_batch bigint) RETURNS boolean
LANGUAGE sql
AS $$ SELECT tombstone.hold_batch(p_batch, false) $$;

-- _batch_defaults completes a new batch row with what the database, not
-- the capturing statement, decides: purge_after, from the stored rules of
-- the tables the batch lists (the longest retention among them), after
-- checking that tables maps names to row counts — a malformed one would
-- stop the reaper and SHOW BATCHES. The id (identity) and token (default)
-- need no trigger: application roles may insert only client_addr, sql and
-- tables. An administrator's explicit purge_after is kept.
CREATE OR REPLACE FUNCTION tombstone._batch_defaults() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
DECLARE
    longest interval;
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
    SELECT bool_or(CASE WHEN e.key IS NULL THEN false
                        WHEN jsonb_typeof(e.value) = 'number'
                        THEN (e.value #>> '{}') OPERATOR(pg_catalog.!~) '^[0-9]+$'
                        ELSE true END),
           sum(CASE WHEN jsonb_typeof(e.value) = 'number' THEN e.value::numeric END),
           count(e.key),
           max(coalesce(p.retention, k.keep))
      INTO bad, total, n, longest
      FROM (SELECT coalesce((SELECT (st.value #>> '{}')::interval FROM tombstone.settings st WHERE st.key = 'protect.retention'),
                            interval '7 days') AS keep) k
      LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(NEW.tables) = 'object' THEN NEW.tables END) e ON true
      LEFT JOIN tombstone.protected p ON p.kind = 'table' AND p.schema_name || '.' || p.table_name = e.key;
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

-- Grants. Functions are executable by PUBLIC by default; the internal
-- and SECURITY DEFINER ones are narrowed here.
REVOKE ALL ON FUNCTION tombstone.sync_shadow(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._sync_shadow(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.sync_shadow(regclass) TO tombstone_admin;
REVOKE ALL ON FUNCTION tombstone._on_ddl() FROM PUBLIC;
REVOKE ALL ON FUNCTION tombstone._on_drop() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.sync_all() TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._catalog_changed(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_catalog(regclass, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_unprotected(regclass, boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.check_captured(regclass, bigint, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.catalog_signature(regclass) TO PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone.catalog_state(regclass, text) TO PUBLIC;

-- Table privileges: application roles write tombstones and read nothing
-- but the settings; tombstone_admin reads, restores and purges.
GRANT USAGE ON SCHEMA tombstone TO PUBLIC;
-- Only the columns a rewritten statement writes: id, token, xid, time,
-- role and retention come from the database and cannot be chosen, and no
-- role may draw from the batch id sequence (an identity: inserts need no
-- grant on it).
REVOKE INSERT ON tombstone.batches FROM PUBLIC;
GRANT INSERT (client_addr, sql, tables) ON tombstone.batches TO PUBLIC;
REVOKE ALL ON SEQUENCE tombstone.batches_id_seq FROM PUBLIC;
-- Application roles read no batch, not even their own: the capture
-- triggers, which need the id and token, read them as the owner.
-- Administrators (and the owner, whose SECURITY DEFINER functions these
-- are) see and change everything.
REVOKE SELECT ON tombstone.batches FROM PUBLIC;
ALTER TABLE tombstone.batches ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS capture_insert ON tombstone.batches;
CREATE POLICY capture_insert ON tombstone.batches FOR INSERT TO PUBLIC WITH CHECK (true);
DROP POLICY IF EXISTS capture_read ON tombstone.batches;
DROP POLICY IF EXISTS admin_all ON tombstone.batches;
CREATE POLICY admin_all ON tombstone.batches TO tombstone_admin USING (true) WITH CHECK (true);
GRANT SELECT ON tombstone.settings TO PUBLIC;
-- (check_catalog runs as the deleting role.)
REVOKE ALL ON tombstone.catalog_log FROM PUBLIC;
GRANT SELECT ON tombstone.catalog_log TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA tombstone TO tombstone_admin;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA tombstone TO tombstone_admin;
-- Shadow tables: no role but the owner and administrators writes them
-- (PUBLIC used to insert the rows its DELETEs'
-- rewrite captured; the capture triggers write them now).
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT shadow_name FROM tombstone.shadows LOOP
        IF to_regclass(format('tombstone.%I', s.shadow_name)) IS NOT NULL THEN
            EXECUTE format('REVOKE INSERT ON tombstone.%I FROM PUBLIC', s.shadow_name);
        END IF;
    END LOOP;
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
