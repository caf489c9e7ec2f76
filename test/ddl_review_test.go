package test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// Found by an adversarial review of the DDL paths (DROP OWNED, DROP TYPE,
// the trash's row types, TRUNCATE under the caller's path).

// TestTruncateNamesTheTableItResolved: with pg_temp placed after public
// in search_path, TRUNCATE pg_temp.t empties the temp table only.
// capture_truncate runs the TRUNCATE under the caller's path, so it names
// the table it resolved schema-qualified (a bare "t" there was public.t:
// the protected table emptied, uncaptured).
func TestTruncateNamesTheTableItResolved(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g;`)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	for _, q := range []string{
		"SET search_path = public, pg_temp",
		"CREATE TEMP TABLE t (id int)",
		"INSERT INTO pg_temp.t VALUES (100)",
		"TRUNCATE pg_temp.t",
	} {
		_, err := c.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	var temp int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM pg_temp.t").Scan(&temp))
	require.Equal(t, 0, temp, "the temp table should be empty")
	require.Equal(t, 5, e.count("SELECT count(*) FROM public.t"), "public.t was truncated instead")
}

// ownedTable starts an environment with a role that may create in
// public and runs ddl as that role on a direct connection.
func ownedTable(t *testing.T, ddl string) (*env, string) {
	t.Helper()
	e := newEnv(t, "")
	role := tempRole(t, e, "LOGIN", "GRANT CREATE ON SCHEMA public TO %s")
	d := testenv.Connect(t, e.direct)
	_, err := d.Exec(context.Background(), "SET ROLE "+role+";\n"+ddl+"\nRESET ROLE")
	require.NoError(t, err)
	return e, role
}

// TestDropOwnedFreesTheTrashFromItsTypes: DROP OWNED BY a role whose
// type a trashed table's column has succeeds, as in Postgres: the trash
// gives the roles' types up first (drop_owned, as drop_types does), and
// UNDROP TABLE brings the column back (as text once the type is gone).
func TestDropOwnedFreesTheTrashFromItsTypes(t *testing.T) {
	e, role := ownedTable(t, `CREATE TYPE bty AS ENUM ('a', 'b');
CREATE TABLE bt (id int PRIMARY KEY, t bty);
INSERT INTO bt SELECT g, 'b' FROM generate_series(1, 20) g;`)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)
	_, err := c.Exec(ctx, "DROP TABLE bt")
	require.NoError(t, err)
	_, err = c.Exec(ctx, "DROP OWNED BY "+role)
	require.NoError(t, err, "plain Postgres drops the type: the table is gone")
	_, err = c.Exec(ctx, "UNDROP TABLE bt")
	require.NoError(t, err)
	require.Equal(t, 20, e.count("SELECT count(*) FROM bt WHERE t::text = 'b'"), "column t must come back (as text at least)")
}

// TestDropOwnedCascadeKeepsTrashedColumns: as above, with CASCADE, and
// the table still live: it goes to the trash and keeps the column.
func TestDropOwnedCascadeKeepsTrashedColumns(t *testing.T) {
	e, role := ownedTable(t, `CREATE TYPE bty AS (a int, b text);
CREATE TABLE bt (id int PRIMARY KEY, v text, t bty);
INSERT INTO bt SELECT g, md5(g::text), ROW(g, 'q' || g)::bty FROM generate_series(1, 20) g;`)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)
	_, err := c.Exec(ctx, "DROP OWNED BY "+role+" CASCADE")
	require.NoError(t, err)
	_, err = c.Exec(ctx, "UNDROP TABLE bt")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'bt'::regclass AND attname = 't' AND NOT attisdropped"),
		"column t of the trashed table was dropped by DROP OWNED … CASCADE")
}

// TestDropTypeFreesDomainsOverMultirange: a trashed column of a domain
// over a range's multirange is given up too (_trash_free_type), so DROP
// TYPE rg CASCADE does not drop it.
func TestDropTypeFreesDomainsOverMultirange(t *testing.T) {
	e := newEnv(t, `CREATE TYPE rg AS RANGE (subtype = int);
CREATE DOMAIN dmr AS rg_multirange;
CREATE TABLE t (id int PRIMARY KEY, m dmr);
INSERT INTO t VALUES (1, '{[1,2),[5,9)}');`)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	for _, q := range []string{"DROP TABLE t", "DROP TYPE rg CASCADE", "UNDROP TABLE t"} {
		_, err := c.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM t WHERE m::text = '{[1,2),[5,9)}'"), "column m lost")
}

// TestUndropKeepsTextOfAChangedRowType: a trashed table's column of
// another table's row type is kept as text; UNDROP reads it back only
// into the shape it was written from — if that table's columns changed
// meanwhile, the old y value would land in z — else it stays text.
func TestUndropKeepsTextOfAChangedRowType(t *testing.T) {
	e := newEnv(t, `CREATE TABLE b (x int, y int);
CREATE TABLE a (id int PRIMARY KEY, c b);
INSERT INTO a VALUES (1, ROW(1, 2));`)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	for _, q := range []string{"DROP TABLE a", "ALTER TABLE b DROP COLUMN y", "ALTER TABLE b ADD COLUMN z int", "UNDROP TABLE a"} {
		_, err := c.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	// Had a never been dropped, Postgres would show (1,) here; the text
	// of (1,2) is not read back into (x, z): the column stays text.
	require.Equal(t, "text:(1,2)", queryText(t, e.direct, "SELECT pg_typeof(c)::text || ':' || c FROM a"))
}
