package test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// TestUnprotectedTargets: a DELETE on a table the proxy's catalog does not
// protect answers as from Postgres; but if the table the server resolves
// is protected after all — renamed, or moved into a protected schema, in
// the same Query or an open transaction, which the catalog's own
// connection cannot see — it fails with TS001 and removes nothing. A
// review found each of these deleting rows with no tombstone.
func TestUnprotectedTargets(t *testing.T) {
	e := newEnv(t, `CREATE TABLE r1 (id int PRIMARY KEY, v text);
		INSERT INTO r1 SELECT g, 'v' || g FROM generate_series(1, 6) g;
		CREATE SCHEMA other; CREATE TABLE other.u (id int PRIMARY KEY, v text);
		INSERT INTO other.u SELECT g, 'u' || g FROM generate_series(1, 6) g;`)

	// Unprotected: the same answers as Postgres, RETURNING * included.
	steps := [][]pgproto3.FrontendMessage{
		{q("BEGIN")},
		{q("DELETE FROM other.u WHERE id <= 2 RETURNING *")},
		{&pgproto3.Parse{Query: "DELETE FROM other.u u USING other.u w WHERE u.id = w.id AND u.id = $1 RETURNING *"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("3")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{q("WITH d AS (DELETE FROM other.u WHERE id = 4 RETURNING *) SELECT * FROM d")},
		{q("WITH d AS (DELETE FROM other.u WHERE id = 5) SELECT 1")},
		{q("DELETE FROM other.u WHERE nosuch = 1")},
		{q("ROLLBACK")},
	}
	want := converse(t, e.direct, steps)
	require.Equal(t, want, converse(t, e.proxy, steps))
	require.NotContains(t, want, "_ts_")

	before := e.snapshot("r1", "other.u")
	for name, steps := range map[string][][]pgproto3.FrontendMessage{
		"renamed in the same Query": {
			{q("ALTER TABLE r1 RENAME TO r1b; DELETE FROM r1b WHERE id <= 3")},
		},
		"renamed in an open transaction": {
			{q("BEGIN")},
			{q("ALTER TABLE r1 RENAME TO r1b")},
			{q("DELETE FROM r1b WHERE id <= 3")},
			{q("ROLLBACK")},
			{q("BEGIN")},
			{q("ALTER TABLE r1 RENAME TO r1b")},
			{&pgproto3.Parse{Query: "DELETE FROM r1b WHERE id <= $1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("3")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"renamed in an open transaction, deleted from in a WITH query": {
			{q("BEGIN")},
			{q("ALTER TABLE r1 RENAME TO r1b")},
			{q("WITH d AS (DELETE FROM r1b WHERE id <= 3 RETURNING id) SELECT count(*) FROM d")},
			{q("ROLLBACK")},
		},
		"moved into a protected schema in an open transaction": {
			{q("BEGIN")},
			{q("ALTER TABLE other.u SET SCHEMA public")},
			{q("DELETE FROM u WHERE id <= 3 RETURNING *")},
			{q("ROLLBACK")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := converse(t, e.proxy, steps)
			require.Contains(t, got, `"Code":"TS001"`)
			require.NotContains(t, got, `"CommandTag":"DELETE`)
			require.Equal(t, before, e.snapshot("r1", "other.u"))
		})
	}
}

// TestDeleteThroughViewsAndRules: a DELETE on a view or a rule-bearing
// table that would remove a protected table's rows is refused (0A000)
// and removes nothing; a view with an INSTEAD OF DELETE trigger (a
// soft delete, say) runs its trigger as without the proxy. A review found
// the first two deleting uncaptured.
func TestDeleteThroughViewsAndRules(t *testing.T) {
	e := newEnv(t, `CREATE TABLE base (id int PRIMARY KEY, v text, gone bool NOT NULL DEFAULT false);
		INSERT INTO base SELECT g, 'b' || g FROM generate_series(1, 6) g;
		CREATE VIEW vbase AS SELECT * FROM base;
		CREATE SCHEMA app;
		CREATE VIEW app.vb3 AS SELECT * FROM vbase;
		CREATE TABLE app.inbox (id int);
		CREATE RULE redirect AS ON DELETE TO app.inbox DO INSTEAD DELETE FROM base WHERE id = old.id;
		CREATE VIEW app.soft AS SELECT * FROM base WHERE NOT gone;
		CREATE FUNCTION app.soft_delete() RETURNS trigger LANGUAGE plpgsql AS
		  $$ BEGIN UPDATE base SET gone = true WHERE id = old.id; RETURN old; END $$;
		CREATE TRIGGER soft INSTEAD OF DELETE ON app.soft FOR EACH ROW EXECUTE FUNCTION app.soft_delete();`)
	c := testenv.Connect(t, e.proxy)
	for _, sql := range []string{
		"DELETE FROM vbase WHERE id <= 2",
		"DELETE FROM app.vb3 WHERE id = 3 RETURNING *",
		"DELETE FROM app.inbox WHERE id = 4",
	} {
		before := e.snapshot("base")
		_, err := c.Exec(context.Background(), sql)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, sql)
		require.Equal(t, "0A000", pe.Code, sql)
		require.Contains(t, pe.Message, "base", sql)
		require.Equal(t, before, e.snapshot("base"), sql)
	}
	tag, err := c.Exec(context.Background(), "DELETE FROM app.soft WHERE id = 5")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM base WHERE gone"))
}

// TestDeleteReachingProtectedRows: a DELETE on an unprotected table also
// removes rows of its inheritance child, a protected table: those are
// captured into the child's shadow; with ONLY, nothing is. A review found
// the child's rows deleted uncaptured.
func TestDeleteReachingProtectedRows(t *testing.T) {
	e := newEnv(t, `CREATE SCHEMA other;
		CREATE TABLE other.par (id int PRIMARY KEY, v text);
		CREATE TABLE kid (extra text) INHERITS (other.par);
		INSERT INTO other.par VALUES (1, 'p'); INSERT INTO kid VALUES (2, 'k', 'x'), (3, 'k', 'y');`)
	c := testenv.Connect(t, e.proxy)
	tag, err := c.Exec(context.Background(), "DELETE FROM ONLY other.par WHERE id IN (1, 2)")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 2, e.count("SELECT count(*) FROM kid"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches"))

	kid := e.snapshot("kid")
	tag, err = c.Exec(context.Background(), "DELETE FROM other.par WHERE id >= 2")
	require.NoError(t, err)
	require.Equal(t, "DELETE 2", tag.String())
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__kid WHERE extra IS NOT NULL"))
	require.Equal(t, 1, undeleteBatches(t, c))
	require.Equal(t, kid, e.snapshot("kid"))
}

// TestTemporaryTableShadowsProtected: a temporary table named like a
// protected table is what an unqualified name means in its session. The
// proxy, which resolves names without the session's temporary schema,
// refuses such a DELETE (0A000, nothing deleted, a hint to write
// pg_temp.t) instead of failing it with TS001 for ever; pg_temp.t runs.
func TestTemporaryTableShadowsProtected(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);`)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := c.Exec(ctx, "CREATE TEMP TABLE t (id int); INSERT INTO t VALUES (1), (2), (3)")
	require.NoError(t, err)
	_, err = c.Exec(ctx, "DELETE FROM t WHERE id = 1")
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code)
	require.Contains(t, pe.Hint, "pg_temp.t")
	tag, err := c.Exec(ctx, "DELETE FROM pg_temp.t WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 2, e.count("SELECT count(*) FROM public.t"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches"))
}
