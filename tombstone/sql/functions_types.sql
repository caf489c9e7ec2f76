-- functions_types.sql: how a source column's type is kept in a shadow
-- table and read back — domains peeled off, a user's types kept as text,
-- the casts that may run on the way. Shadow sync, capture and restore
-- build on these. Re-runnable, like every functions_*.sql file.

-- _base_type is a type with its domains peeled off.
CREATE OR REPLACE FUNCTION tombstone._base_type(p_type oid) RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
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
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT v::oid >= 16384 AND tombstone._no_domain(v::oid)
      FROM pg_catalog.to_regtype(tombstone._value_type(p_type, -1)) v
$$;

-- _shape describes the composite types in type p_type's tree (the
-- attributes' numbers and types: a composite's text is positional, so a
-- renamed attribute reads back as it did, a dropped and re-added one
-- does not), or is NULL when there is none.
CREATE OR REPLACE FUNCTION tombstone._shape(p_type oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT pg_catalog.format('CASE WHEN tombstone._text_reads(%L::pg_catalog.regtype) THEN (%s)::%s END', p_typ, p_expr, p_typ)
$$;

-- _sval is the expression that reads source column p_attnum of rel from
-- its shadow row aliased p_alias, in the column's value type: converted
-- back from text where the shadow keeps it as text (tombstone._as_text).
-- A value the type no longer reads (an enum label since renamed) fails
-- the restore with the type's own error, which names it.
CREATE OR REPLACE FUNCTION tombstone._sval(rel oid, p_attnum int2, p_alias text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
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
