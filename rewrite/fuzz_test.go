package rewrite

import (
	"path/filepath"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/require"
)

var fuzzSeeds = []string{
	"DELETE FROM t WHERE id = 1",
	"DELETE FROM t",
	"delete from t returning *",
	"DELETE FROM ONLY t AS x USING logs l, sites s WHERE x.id = l.id RETURNING x.*, l.*, 1, x",
	"DELETE FROM sites WHERE tenant_id = $1 RETURNING id",
	"DELETE FROM tree WHERE id = 1",
	"DELETE FROM cyc_a",
	"DELETE FROM pair WHERE (a, b) = (1, 2)",
	"WITH a AS (DELETE FROM t RETURNING *), b AS (DELETE FROM sites RETURNING id) SELECT * FROM a, b",
	"WITH RECURSIVE r AS (SELECT 1 UNION SELECT 1 FROM r), d AS (DELETE FROM t RETURNING id) SELECT * FROM r, d",
	"WITH d(a, b, c) AS (DELETE FROM t RETURNING id, name) UPDATE logs SET msg = d.b FROM d",
	"WITH d AS (DELETE FROM t) DELETE FROM t RETURNING (SELECT 1), t",
	"WITH d AS (DELETE FROM t RETURNING *) INSERT INTO logs SELECT * FROM d ON CONFLICT DO NOTHING",
	"MERGE INTO t USING logs ON t.id = logs.id WHEN MATCHED THEN DELETE",
	"WITH m AS (MERGE INTO t USING logs ON true WHEN MATCHED THEN DELETE RETURNING *) SELECT 1",
	"DELETE FROM t WHERE CURRENT OF cur",
	"PREPARE p(int, text) AS DELETE FROM t WHERE id = $1 AND name = $2",
	"EXPLAIN (ANALYZE, BUFFERS) WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d",
	"COPY (DELETE FROM t RETURNING *) TO STDOUT",
	"CREATE TABLE x AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
	"SELECT 1; DELETE FROM t; SELECT 'é'; DELETE FROM app.\"Mixed Case\"",
	"DELETE FROM wide RETURNING wide, wide.*",
	"WITH _ts_d0 AS (SELECT 1) DELETE FROM t",
	"DELETE FROM public.t * WHERE id = 1",
	"DELETE FROM mydb.public.t",
	"DELETE FROM t WHERE id IN (WITH x AS (SELECT 1) SELECT * FROM x) RETURNING row(t.*), t.name COLLATE \"C\", case when true then 1 end",
	"TRUNCATE t; DROP TABLE t; EXECUTE p",
	"DELETE FROM",
	"DELETE FROM app.tenants WHERE id = 3",
	"DELETE FROM tenants t USING orgs o WHERE t.id = o.id RETURNING *",
	"WITH a AS (DELETE FROM orgs RETURNING id), b AS (DELETE FROM teams WHERE org_id IN (SELECT id FROM a)) SELECT 1",
	"MERGE INTO app.tenants USING t ON true WHEN MATCHED THEN DELETE",
	"DELETE FROM animals a USING dogs d WHERE a.id = d.id RETURNING *",
	"WITH x AS (DELETE FROM animals RETURNING tableoid, ctid) DELETE FROM ONLY dogs",
	"",
	";;",
	"DELETE FROM t WHERE id = 1 RETURNING *, (SELECT * FROM t LIMIT 1), xmlelement(name x), greatest(1,2), current_user",
}

// FuzzRewrite: Rewrite must never panic or crash on any input; when it
// rewrites, every rewritten statement must parse, and the spliced text
// must parse to the same number of statements.
func FuzzRewrite(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	// A trailing comment ending in a multi-byte character: an error
	// position mapped into it once counted the character's bytes.
	f.Add("DELETE FROM t--0\u09c0")
	// Just under and over the nesting bound, for the mutator to combine.
	f.Add("DELETE FROM t WHERE id = (1" + strings.Repeat("+1", 900) + ")" + strings.Repeat("::int", 900))
	f.Add("DELETE FROM t USING t a" + strings.Repeat(" JOIN t b ON true AND t.end = 1", 700))
	files, _ := filepath.Glob("testdata/*.txtar")
	for _, file := range files {
		f.Add(strings.TrimSuffix(readGolden(f, file).input, "\n"))
	}
	cat := newTestCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		MayRemoveRows(sql)
		// The guards' code paths too, on every other input.
		opt := Options{ClientAddr: "fuzz"}
		if len(sql)%2 == 1 {
			opt = Options{ClientAddr: "fuzz", RequireWhere: true, MaxRows: 10, Truncate: PolicyReject, Drop: PolicyReject}
		}
		res, err := Rewrite(sql, cat, opt)
		if err != nil {
			if !IsRefusal(err) {
				t.Fatalf("error is not an *pgerr.Error: %v", err)
			}
			return
		}
		if !res.Changed {
			if res.SQL != sql {
				t.Fatalf("unchanged result altered the text")
			}
			return
		}
		orig, err := pg.Parse(sql)
		if err != nil {
			t.Fatalf("rewrote text that does not parse")
		}
		tree, err := pg.Parse(res.SQL)
		if err != nil {
			t.Fatalf("rewritten text does not parse: %v\n%s", err, res.SQL)
		}
		if len(tree.GetStmts()) != len(orig.GetStmts()) {
			t.Fatalf("statement count changed: %d -> %d\n%s", len(orig.GetStmts()), len(tree.GetStmts()), res.SQL)
		}
		for _, st := range res.Statements {
			if st.Rewritten && !MayRemoveRows(sql[st.Original.Start:st.Original.End]) {
				t.Fatalf("pre-check misses a rewritten statement: %q", sql)
			}
		}
		for p := 0; p <= len([]rune(res.SQL))+1; p += 7 {
			if op := res.OriginalPosition(p); op < 0 || op > len([]rune(sql))+1 {
				t.Fatalf("position %d mapped outside the original: %d", p, op)
			}
		}
	})
}

// FuzzMayRemoveRowsOutsideLiterals: whenever the scan for texts too long
// to parse says a text holds no keyword of a statement that may remove
// rows, pg_query's own scanner finds none either — a keyword token, not
// one inside a constant, comment or quoted name.
func FuzzMayRemoveRowsOutsideLiterals(f *testing.F) {
	for _, s := range append(fuzzSeeds,
		"INSERT INTO notes VALUES ('please delete me'), (E'it''s \\' drop'), ($$truncate$$), ($q$ merge $q$)",
		`SELECT "delete" FROM t /* drop /* nested */ truncate */ -- execute`,
		"SELECT $1, a$delete, delete_me, e'x', n'prepare'",
		"SELECT 'a\\', '; DELETE FROM sc; SELECT ''--'",
		"SELECT U&'d\\0061ta', B'01', X'ff' /* unterminated",
	) {
		f.Add(s)
	}
	keywords := map[pg.Token]bool{pg.Token_DELETE_P: true, pg.Token_DROP: true, pg.Token_TRUNCATE: true,
		pg.Token_MERGE: true, pg.Token_EXECUTE: true, pg.Token_PREPARE: true, pg.Token_DETACH: true, pg.Token_ALTER: true}
	f.Fuzz(func(t *testing.T, sql string) {
		if MayRemoveRowsOutsideLiterals(sql) {
			return
		}
		res, err := pg.Scan(sql)
		if err != nil {
			return // the server refuses the text
		}
		for _, tok := range res.GetTokens() {
			if keywords[tok.GetToken()] {
				t.Fatalf("%q: the scan missed %s at %d", sql, tok.GetToken(), tok.GetStart())
			}
		}
	})
}

func TestMayRemoveRowsOutsideLiterals(t *testing.T) {
	for sql, want := range map[string]bool{
		"INSERT INTO notes VALUES ('please delete me')":      false,
		"INSERT INTO notes VALUES (E'it\\'s; delete')":       false,
		"SELECT $$ truncate $$, $q$ drop $q$, $1":            false,
		`SELECT "delete", delete_me FROM t -- drop`:          false,
		"SELECT 1 /* drop /* nested */ truncate */":          false,
		"SELECT 1 /* nested /* */ */ DELETE FROM t":          true,
		"DELETE FROM t WHERE id IN (1, 2)":                   true,
		"select 'x'; drop table t":                           true,
		"SELECT 'a\\', '; DELETE FROM sc; SELECT ''--'":      true, // a backslash in '…'
		"SELECT $a$ $b$ delete $a$":                          false,
		"SELECT $a$ unterminated delete":                     false,
		"WITH d AS (SELECT 1) SELECT * FROM d; EXECUTE stmt": true,
	} {
		require.Equal(t, want, MayRemoveRowsOutsideLiterals(sql), sql)
	}
}
