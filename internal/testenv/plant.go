package testenv

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Plant is the overload attack on everything that runs with more rights
// than its caller: as role (which must be able to create in schema), it
// creates, for every built-in function name our code calls and every
// argument list of common types that pg_catalog does not have exactly, a
// function schema.name(args) — and an operator for every common operator
// and pair of types pg_catalog lacks — each of which logs who called it
// into schema.pwn_log before returning NULL. A call our code makes under
// a search_path that includes schema, with an argument of one of those
// types, resolves to the planted function instead of the built-in, since
// an exact match beats an implicit cast or a polymorphic one. It also
// clones every pg_catalog function of those names and the common
// operators exactly: under a search_path that names schema before
// pg_catalog, every unqualified call resolves to a clone.
//
// The names come from the project's own source (SQL files and Go
// strings), so a function our code starts calling is planted too. Planted
// returns how many functions and operators it created; PlantedCalls
// lists the calls made by any role other than role.
func Plant(t testing.TB, dsn, role, schema string) int {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	c := Connect(t, u.String())
	if _, err := c.Exec(ctx, plantSQL); err != nil {
		t.Fatalf("define the planter: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT pg_temp.plant($1, $2)", schema, sourceFunctionNames(t)).Scan(&n); err != nil {
		t.Fatalf("plant overloads in %s: %v", schema, err)
	}
	return n
}

// PlantedCalls returns "name|role" for every call of a planted function or
// operator by a role other than the one that planted them, read over a
// connection whose search_path is pg_catalog alone (so the reading itself
// calls nothing planted).
func PlantedCalls(t testing.TB, dsn, role, schema string) []string {
	t.Helper()
	ctx := context.Background()
	c := Connect(t, dsn)
	if _, err := c.Exec(ctx, "SET search_path = pg_catalog"); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, `SELECT DISTINCT what OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) who
		FROM `+pgx.Identifier{schema, "pwn_log"}.Sanitize()+` WHERE who OPERATOR(pg_catalog.<>) $1 ORDER BY 1`, role)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var callRe = regexp.MustCompile(`(?i)\b([a-z_][a-z0-9_]*)\s*\(`)

// sourceFunctionNames returns every identifier followed by "(" in the
// project's SQL files and Go sources (outside tests); plantSQL keeps those
// that name a pg_catalog function.
func sourceFunctionNames(t testing.TB) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	seen := map[string]bool{}
	for _, pattern := range []string{"tombstone/sql/*.sql", "tombstone/*.go", "rewrite/*.go", "console/*.go", "cmd/tombstone/*.go", "proxy/*.go"} {
		files, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range callRe.FindAllStringSubmatch(string(b), -1) {
				seen[strings.ToLower(m[1])] = true
			}
		}
	}
	if len(seen) < 50 {
		t.Fatalf("found only %d call names in the sources under %s", len(seen), root)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// plantSQL defines the generator in the planting role's pg_temp; it runs
// as that role. $1 is the schema, $2 the candidate names.
const plantSQL = `
CREATE FUNCTION pg_temp.plant(sch text, names text[]) RETURNS int LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $p$
DECLARE
    t1 text[] := ARRAY['text', 'integer', 'bigint', 'smallint', 'name', 'oid', 'regclass', 'regtype', 'jsonb', 'boolean',
                       'numeric', 'timestamp with time zone', 'interval', '"char"', 'text[]', 'name[]', 'oid[]', 'xid8', 'uuid',
                       'character varying'];
    t2 text[] := ARRAY['text', 'integer', 'bigint', 'name', 'oid', 'regclass', 'jsonb', 'boolean', 'text[]', 'interval',
                       'timestamp with time zone', 'character varying'];
    t3 text[] := ARRAY['text', 'name', 'regclass', 'integer'];
    ops text[] := ARRAY['=', '<>', '<', '>', '<=', '>=', '||', '+', '-', '->>', '->', '@>', '<@', '~~', '#>>', '?', '&&', '~', '!~~'];
    n int := 0;
    fname text;
    k int;
    args text[];
    ret text;
    srf boolean;
    body text;
    op text;
    i int := 0;
BEGIN
    EXECUTE format('CREATE TABLE %I.pwn_log (what text, who text)', sch);
    EXECUTE format('GRANT INSERT ON %I.pwn_log TO PUBLIC', sch);
    EXECUTE format('CREATE FUNCTION %I.pwn(what text) RETURNS void LANGUAGE sql SET search_path = pg_catalog AS %L',
                   sch, format('INSERT INTO %I.pwn_log VALUES (what, current_user)', sch));
    FOR fname, k IN
        SELECT DISTINCT p.proname, p.pronargs FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (names) AND p.pronargs BETWEEN 1 AND 3
    LOOP
        SELECT CASE WHEN p.prorettype::regtype::text IN ('anyelement', 'anyarray', 'anynonarray', 'anyenum', 'anyrange',
                        'anycompatible', 'anycompatiblearray', 'anycompatiblenonarray', 'anymultirange', 'record',
                        '"any"', 'internal', 'trigger', 'event_trigger', 'cstring', 'anycompatiblerange',
                        'anycompatiblemultirange', 'language_handler', 'fdw_handler', 'table_am_handler',
                        'index_am_handler', 'tsm_handler')
                    THEN 'text' ELSE p.prorettype::regtype::text END,
               p.proretset
          INTO ret, srf
          FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = fname AND p.pronargs = k
         ORDER BY p.oid LIMIT 1;
        FOR args IN
            SELECT ARRAY[a] FROM unnest(t1) a WHERE k = 1
            UNION ALL SELECT ARRAY[a, b] FROM unnest(t2) a, unnest(t2) b WHERE k = 2
            UNION ALL SELECT ARRAY[a, b, c] FROM unnest(t3) a, unnest(t3) b, unnest(t3) c WHERE k = 3
        LOOP
            CONTINUE WHEN to_regprocedure(format('pg_catalog.%I(%s)', fname, array_to_string(args, ','))) IS NOT NULL;
            body := format('BEGIN PERFORM %I.pwn(%L); RETURN%s; END', sch, fname || '(' || array_to_string(args, ',') || ')',
                           CASE WHEN srf OR ret = 'void' THEN '' ELSE ' NULL' END);
            BEGIN
                EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
                               sch, fname, array_to_string(args, ','), CASE WHEN srf THEN 'SETOF ' ELSE '' END, ret, body);
                n := n + 1;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
        END LOOP;
    END LOOP;
    FOREACH op IN ARRAY ops LOOP
        SELECT CASE WHEN o.oprresult::regtype::text IN ('anyelement', 'anyarray', 'anycompatible', 'anycompatiblearray', 'record')
                    THEN 'boolean' ELSE o.oprresult::regtype::text END
          INTO ret FROM pg_operator o WHERE o.oprname = op AND o.oprnamespace = 'pg_catalog'::regnamespace ORDER BY o.oid LIMIT 1;
        FOR args IN SELECT ARRAY[a, b] FROM unnest(t2) a, unnest(t2) b LOOP
            CONTINUE WHEN EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = op AND o.oprnamespace = 'pg_catalog'::regnamespace
                                     AND o.oprleft = args[1]::regtype AND o.oprright = args[2]::regtype);
            i := i + 1;
            BEGIN
                EXECUTE format('CREATE FUNCTION %I.pwnop_%s(%s) RETURNS %s LANGUAGE plpgsql AS %L', sch, i,
                               array_to_string(args, ','), coalesce(ret, 'boolean'),
                               format('BEGIN PERFORM %I.pwn(%L); RETURN NULL; END', sch, args[1] || ' ' || op || ' ' || args[2]));
                EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.pwnop_%s)',
                               sch, op, args[1], args[2], sch, i);
                n := n + 1;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
        END LOOP;
    END LOOP;
    -- Exact clones, which win wherever a search_path names the schema
    -- before pg_catalog (SET search_path = public, pg_catalog): of every
    -- function with those names, and of the operators above on the
    -- common types.
    FOR fname, args, ret, srf IN
        SELECT p.proname, ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t),
               format_type(p.prorettype, NULL), p.proretset
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (names) AND p.prokind = 'f'
           AND p.pronargs BETWEEN 1 AND 3 AND p.proallargtypes IS NULL
    LOOP
        BEGIN
            EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
                           sch, fname, array_to_string(args, ','), CASE WHEN srf THEN 'SETOF ' ELSE '' END, ret,
                           format('BEGIN PERFORM %I.pwn(%L); RETURN%s; END', sch, fname || '(' || array_to_string(args, ',') || ')',
                                  CASE WHEN srf OR ret = 'void' THEN '' ELSE ' NULL' END));
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    FOR op, args, ret IN
        SELECT o.oprname, ARRAY[format_type(o.oprleft, NULL), format_type(o.oprright, NULL)], format_type(o.oprresult, NULL)
          FROM pg_operator o
         WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprname = ANY (ops) AND o.oprleft <> 0
           AND o.oprleft = ANY (t1::regtype[]::oid[] || ARRAY['character varying'::regtype, 'tid'::regtype, 'numeric'::regtype]::oid[])
           AND o.oprright = ANY (t1::regtype[]::oid[] || ARRAY['character varying'::regtype, 'tid'::regtype, 'numeric'::regtype]::oid[])
    LOOP
        i := i + 1;
        BEGIN
            EXECUTE format('CREATE FUNCTION %I.pwnop_%s(%s) RETURNS %s LANGUAGE plpgsql AS %L', sch, i,
                           array_to_string(args, ','), ret,
                           format('BEGIN PERFORM %I.pwn(%L); RETURN NULL; END', sch, args[1] || ' ' || op || ' ' || args[2]));
            EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.pwnop_%s)',
                           sch, op, args[1], args[2], sch, i);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    RETURN n;
END
$p$`
