package test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
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
	q := func(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }

	// Unprotected: the same answers as Postgres, RETURNING * included.
	steps := [][]pgproto3.FrontendMessage{
		{q("BEGIN")},
		{q("DELETE FROM other.u WHERE id <= 2 RETURNING *")},
		{&pgproto3.Parse{Query: "DELETE FROM other.u u USING other.u w WHERE u.id = w.id AND u.id = $1 RETURNING *"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("3")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
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
