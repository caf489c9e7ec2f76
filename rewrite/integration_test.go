package rewrite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// The integration test runs rewritten SQL against a real Postgres:
//
//	TOMBSTONE_TEST_PG=postgres://postgres@127.0.0.1:5432/postgres go test ./rewrite -run Integration
//
// It creates a fresh database (the role needs CREATEDB), loads the user
// tables of testdata/tables.sql, installs the store there as the proxy
// does (tombstone.Install, every table of public and app protected but
// logs and site_notes) and rewrites with the catalog the store gives
// (tombstone.LoadCatalog); it drops the database at the end. Each case runs
// the original statement and the rewritten one in transactions that are
// rolled back, and checks that the client-visible results are identical,
// that the tables end in the same state, and that every removed or
// SET NULL-ed row of a protected table is in its shadow table under one
// batch whose counts match.

const seedSQL = `
INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 10) g;
INSERT INTO logs VALUES (1, 'x'), (2, 'x'), (9, 'y');
INSERT INTO sites VALUES (1, 7, 's1'), (2, 7, 's2'), (3, 8, 's3'), (4, 9, 's4');
INSERT INTO products SELECT g, 1 + g % 4, 'p' || g FROM generate_series(1, 12) g;
INSERT INTO users SELECT g, 1 + g % 4, 'u' || g || '@x' FROM generate_series(1, 8) g;
INSERT INTO links SELECT g, 1 + g % 12, CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 8 END FROM generate_series(1, 30) g;
INSERT INTO site_notes VALUES (1, 1), (2, 3);
INSERT INTO tree VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 1, 'b'), (4, 2, 'aa'), (5, 4, 'aaa'), (6, NULL, 'other'), (7, NULL, 'loop');
UPDATE tree SET parent_id = 7 WHERE id = 7;
INSERT INTO measurements VALUES (1, '2024-05-01', -1), (2, '2024-06-01', 2), (3, '2025-02-01', -3);
INSERT INTO pair VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c');
INSERT INTO pair_child VALUES (1, 1, 1), (2, 1, 2), (3, 2, 1), (4, NULL, 1);
INSERT INTO app.orders VALUES (1, 'o1'), (2, 'o2'), (3, 'o3');
INSERT INTO app."Mixed Case" VALUES (1, 'w1'), (2, 'w2');
INSERT INTO wide VALUES (1, 'w'), (2, 'v');
INSERT INTO hub VALUES (1), (2);
INSERT INTO spoke_a VALUES (1, 1), (2, 2);
INSERT INTO spoke_b VALUES (1, 1, 1, 'mine'), (2, 2, 1, 'theirs'), (3, 1, 2, NULL);
`

type itCase struct {
	name string
	// stmts are sent one Query message each; each is rewritten.
	stmts []string
	// params, when set, sends the single statement with the extended
	// protocol and these text parameters.
	params []string
	// wantRows is the number of tombstoned rows expected (sanity check
	// that the case actually removes something).
	wantRows int
}

var itCases = []itCase{
	{name: "simple", stmts: []string{"DELETE FROM t WHERE id <= 3"}, wantRows: 3},
	{name: "returning star", stmts: []string{"DELETE FROM t WHERE id > 8 RETURNING *"}, wantRows: 2},
	{name: "returning exprs alias", stmts: []string{"DELETE FROM t AS a WHERE a.id = 3 RETURNING a.id + 1, upper(name) AS n, a"}, wantRows: 1},
	{name: "using", stmts: []string{"DELETE FROM t USING logs l WHERE t.id = l.id AND l.msg = 'x' RETURNING l.msg, t.name"}, wantRows: 2},
	{name: "only partitioned", stmts: []string{"DELETE FROM ONLY measurements WHERE v < 0"}},
	{name: "partitioned", stmts: []string{"DELETE FROM measurements WHERE v < 0 RETURNING tableoid::regclass, *"}, wantRows: 2},
	{name: "qualified odd names", stmts: []string{`DELETE FROM app."Mixed Case" m WHERE m.id = 1 RETURNING "Weird ""col"`}, wantRows: 1},
	{name: "column named like table", stmts: []string{"DELETE FROM wide WHERE id = 1 RETURNING wide, id"}, wantRows: 1},
	{name: "with delete feeding insert", stmts: []string{"WITH gone AS (DELETE FROM t WHERE id < 3 RETURNING *) INSERT INTO logs SELECT id, name FROM gone"}, wantRows: 2},
	{name: "with delete names", stmts: []string{"WITH gone(x) AS (DELETE FROM t a WHERE id < 4 RETURNING a.id, name, id * 2, (SELECT 1 AS one), a.name::varchar, coalesce(name, 'z'), a.*) SELECT * FROM gone ORDER BY 1"}, wantRows: 3},
	{name: "cascade 3 levels", stmts: []string{"DELETE FROM sites WHERE tenant_id IN (7, 9)"}, wantRows: 3},
	{name: "cascade returning", stmts: []string{"DELETE FROM sites WHERE id = 3 RETURNING id, name"}, wantRows: 1},
	{name: "self-referencing tree", stmts: []string{"DELETE FROM tree WHERE id IN (1, 7)"}, wantRows: 6},
	{name: "self-referencing subtree", stmts: []string{"DELETE FROM tree WHERE id = 2 RETURNING label"}, wantRows: 3},
	{name: "set null", stmts: []string{"DELETE FROM users WHERE id IN (2, 5)"}, wantRows: 2},
	{name: "multi-column key", stmts: []string{"DELETE FROM pair WHERE a = 1"}, wantRows: 4},
	{name: "two deletes one statement", stmts: []string{"WITH g AS (DELETE FROM products WHERE id = 1 RETURNING site_id) DELETE FROM sites WHERE id IN (SELECT site_id FROM g) RETURNING id"}, wantRows: 2},
	{name: "multi-statement", stmts: []string{"SELECT 1; DELETE FROM t WHERE id = 2; UPDATE logs SET msg = 'z' WHERE id = 1; DELETE FROM logs WHERE id = 9; DELETE FROM t WHERE id = 4 RETURNING name"}, wantRows: 2},
	{name: "prepare execute", stmts: []string{"PREPARE del(int) AS DELETE FROM t WHERE id = $1 RETURNING name", "EXECUTE del(5)", "EXECUTE del(6)", "DEALLOCATE del"}, wantRows: 2},
	{name: "extended protocol parameter", stmts: []string{"DELETE FROM app.orders WHERE id = $1"}, params: []string{"2"}, wantRows: 1},
	{name: "set null before a later cascade into the same table", stmts: []string{"DELETE FROM hub WHERE id = 1"}, wantRows: 5},
	{name: "nothing deleted", stmts: []string{"DELETE FROM t WHERE id > 100 RETURNING *"}},
}

func TestIntegration(t *testing.T) {
	base := os.Getenv("TOMBSTONE_TEST_PG")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TOMBSTONE_TEST_PG is not set: CI must run integration tests (use `make test`)")
		}
		t.Skip("TOMBSTONE_TEST_PG not set: skipping tests against a real Postgres (set it to a postgres:// URL of a role that may CREATE DATABASE)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer admin.Close(ctx)
	dbname := fmt.Sprintf("tombstone_rewrite_test_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbname); err != nil {
		t.Fatalf("create database: %v", err)
	}
	defer func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbname+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	}()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + dbname
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect test db: %v", err)
	}
	defer conn.Close(ctx)
	tables, err := os.ReadFile("testdata/tables.sql")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, conn.PgConn(), string(tables))
	mustExec(t, conn.PgConn(), seedSQL)
	if err := tombstone.Install(ctx, conn, tombstone.InstallOptions{Protection: &tombstone.Protection{
		Schemas: []string{"public", "app"},
		Exclude: []string{"public.logs", "public.site_notes"},
	}}); err != nil {
		t.Fatal(err)
	}
	cat, err := tombstone.LoadCatalog(ctx, conn, tombstone.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range itCases {
		t.Run(c.name, func(t *testing.T) { runCase(t, conn.PgConn(), cat, c) })
	}
	t.Run("error position", func(t *testing.T) { checkErrorPosition(t, conn.PgConn(), cat) })
	t.Run("stale catalog guard", func(t *testing.T) { checkGuard(t, conn.PgConn(), cat) })
}

func mustExec(t *testing.T, c *pgconn.PgConn, sql string) []*pgconn.Result {
	t.Helper()
	res, err := c.Exec(context.Background(), sql).ReadAll()
	if err != nil {
		t.Fatalf("%v\nSQL: %s", err, sql)
	}
	return res
}

// outcome is what a client sees for one statement.
type outcome struct {
	tag    string
	fields []string
	rows   []string
}

func (o outcome) String() string {
	return fmt.Sprintf("tag=%q fields=%v rows=%v", o.tag, o.fields, o.rows)
}

func toOutcome(r *pgconn.Result, out rewrite.Output) outcome {
	fds := r.FieldDescriptions
	rows := r.Rows
	if n := out.HiddenColumns; n > 0 && len(fds) >= n {
		fds = fds[:len(fds)-n]
		for i := range rows {
			rows[i] = rows[i][:len(rows[i])-n]
		}
	}
	if out.NoRows {
		fds, rows = nil, nil
	}
	o := outcome{tag: out.CommandTag(r.CommandTag.String())}
	for _, f := range fds {
		o.fields = append(o.fields, fmt.Sprintf("%s:%d:%d:%d", f.Name, f.DataTypeOID, f.TableOID, f.TableAttributeNumber))
	}
	for _, row := range rows {
		var vals []string
		for _, v := range row {
			if v == nil {
				vals = append(vals, "NULL")
			} else {
				vals = append(vals, string(v))
			}
		}
		o.rows = append(o.rows, strings.Join(vals, "|"))
	}
	return o
}

var userTables = []string{"t", "logs", "sites", "products", "users", "links", "site_notes", "tree", "measurements", "pair", "pair_child", "app.orders", `app."Mixed Case"`, "wide", "hub", "spoke_a", "spoke_b"}

// dump returns every row of every user table as jsonb text.
func dump(t *testing.T, c *pgconn.PgConn) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tbl := range userTables {
		res := mustExec(t, c, "SELECT row_to_json(x)::jsonb::text FROM "+tbl+" x ORDER BY 1")
		for _, r := range res[0].Rows {
			out[tbl] = append(out[tbl], string(r[0]))
		}
	}
	return out
}

// run executes the case's statements, rewritten or not, and returns what
// the client would see.
func run(t *testing.T, c *pgconn.PgConn, cat rewrite.Catalog, tc itCase, rewritten bool) ([]outcome, error) {
	t.Helper()
	ctx := context.Background()
	var outs []outcome
	prepared := map[string]rewrite.Output{}
	for _, sql := range tc.stmts {
		send := sql
		var res *rewrite.Result
		if rewritten {
			var err error
			res, err = rewrite.Rewrite(sql, cat, rewrite.Options{ClientAddr: "192.0.2.1"})
			if err != nil {
				t.Fatalf("rewrite: %v", err)
			}
			if r := res.Refusal(); r != nil {
				t.Fatalf("refused: %v", r)
			}
			send = res.SQL
			for _, st := range res.Statements {
				if st.Prepares != "" && st.Rewritten {
					prepared[st.Prepares] = st.Output
				}
			}
		}
		outputs := func(i int) rewrite.Output {
			if res == nil || i >= len(res.Statements) {
				return rewrite.Output{}
			}
			st := res.Statements[i]
			if st.Prepares != "" && st.Rewritten {
				return rewrite.Output{}
			}
			if st.Kind == rewrite.KindExecute {
				tree, _ := pg.Parse(sql[st.Original.Start:st.Original.End])
				return prepared[tree.GetStmts()[0].GetStmt().GetExecuteStmt().GetName()]
			}
			return st.Output
		}
		if tc.params != nil {
			params := make([][]byte, len(tc.params))
			for i, p := range tc.params {
				params[i] = []byte(p)
			}
			r := c.ExecParams(ctx, send, params, nil, nil, nil).Read()
			if r.Err != nil {
				return outs, r.Err
			}
			outs = append(outs, toOutcome(r, outputs(0)))
			continue
		}
		results, err := c.Exec(ctx, send).ReadAll()
		for i, r := range results {
			outs = append(outs, toOutcome(r, outputs(i)))
		}
		if err != nil {
			return outs, err
		}
	}
	return outs, nil
}

func runCase(t *testing.T, c *pgconn.PgConn, cat rewrite.Catalog, tc itCase) {
	before := dump(t, c)

	mustExec(t, c, "BEGIN")
	plain, plainErr := run(t, c, cat, tc, false)
	var afterPlain map[string][]string
	if plainErr == nil {
		afterPlain = dump(t, c)
	}
	mustExec(t, c, "ROLLBACK")

	mustExec(t, c, "BEGIN")
	defer mustExec(t, c, "ROLLBACK")
	rew, rewErr := run(t, c, cat, tc, true)
	if plainErr != nil || rewErr != nil {
		if code(plainErr) != code(rewErr) {
			t.Fatalf("errors differ: plain %v, rewritten %v", plainErr, rewErr)
		}
		return
	}
	if !slices.EqualFunc(plain, rew, func(a, b outcome) bool { return a.String() == b.String() }) {
		t.Errorf("client-visible results differ\nplain:     %v\nrewritten: %v", plain, rew)
	}
	after := dump(t, c)
	for _, tbl := range userTables {
		if !slices.Equal(after[tbl], afterPlain[tbl]) {
			t.Errorf("table %s differs after rewritten statement\nplain:     %v\nrewritten: %v", tbl, afterPlain[tbl], after[tbl])
		}
	}

	// Every row of a protected table that disappeared or changed is in
	// the shadow table, and nothing else is.
	total := 0
	perTable := map[string]int{}
	for _, tbl := range userTables {
		schema, name := "public", tbl
		if s, n, ok := strings.Cut(tbl, "."); ok {
			schema, name = s, strings.Trim(n, `"`)
		}
		pt, ok := cat.Lookup(schema, name)
		if !ok {
			continue
		}
		gone := multisetMinus(before[tbl], after[tbl])
		// A user column named _ts_token is kept as _ts_user__ts_token.
		res := mustExec(t, c, fmt.Sprintf(`SELECT ((j - '_ts_user__ts_token') || CASE WHEN j ? '_ts_user__ts_token'
			THEN jsonb_build_object('_ts_token', j -> '_ts_user__ts_token') ELSE '{}' END)::text
			FROM tombstone.%s x, LATERAL (SELECT row_to_json(x)::jsonb - '_ts_batch' - '_ts_cause' - '_ts_deleted_at' - '_ts_token' AS j) l ORDER BY 1`,
			pgx.Identifier{pt.Shadow}.Sanitize()))
		var shadow []string
		for _, r := range res[0].Rows {
			shadow = append(shadow, string(r[0]))
		}
		slices.Sort(gone)
		if !slices.Equal(gone, shadow) {
			t.Errorf("shadow of %s\nremoved/changed: %v\nshadow:          %v", tbl, gone, shadow)
		}
		total += len(shadow)
		if len(shadow) > 0 {
			perTable[pt.QualifiedName()] = len(shadow)
		}
	}
	if total < tc.wantRows {
		t.Errorf("tombstoned %d rows, want at least %d (is the case testing anything?)", total, tc.wantRows)
	}
	res := mustExec(t, c, `SELECT tables::text, client_addr, sql, (purge_after > stmt_time)::text
		FROM tombstone.batches ORDER BY id`)
	var sum = map[string]int{}
	for _, r := range res[0].Rows {
		var m map[string]int
		if err := jsonUnmarshal(r[0], &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			sum[k] += v
		}
		if string(r[1]) != "192.0.2.1" || string(r[3]) != "true" {
			t.Errorf("batch row: client_addr=%s purge_after>stmt_time=%s", r[1], r[3])
		}
	}
	for k, v := range perTable {
		if sum[k] != v {
			t.Errorf("batch counts %v, shadow rows %v", sum, perTable)
			break
		}
	}
	if total == 0 && len(res[0].Rows) != 0 {
		t.Errorf("batch written although nothing was deleted")
	}
}

func multisetMinus(a, b []string) []string {
	count := map[string]int{}
	for _, x := range b {
		count[x]++
	}
	var out []string
	for _, x := range a {
		if count[x] > 0 {
			count[x]--
			continue
		}
		out = append(out, x)
	}
	return out
}

func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// checkErrorPosition: an error inside the user's part of a rewritten
// statement is reported at the same place as for the original.
func checkErrorPosition(t *testing.T, c *pgconn.PgConn, cat rewrite.Catalog) {
	for _, sql := range []string{
		"DELETE FROM t WHERE nosuch = 1",
		"SELECT 'é'; DELETE FROM t WHERE name = 'ü' AND nosuch = 1 RETURNING id",
		"DELETE FROM t WHERE id = 1 RETURNING nosuch",
		"WITH g AS (DELETE FROM t WHERE id = 1 RETURNING name) SELECT nosuch FROM g",
	} {
		_, plainErr := c.Exec(context.Background(), sql).ReadAll()
		res, err := rewrite.Rewrite(sql, cat, rewrite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, rewErr := c.Exec(context.Background(), res.SQL).ReadAll()
		var pe, re *pgconn.PgError
		if !errors.As(plainErr, &pe) || !errors.As(rewErr, &re) {
			t.Fatalf("%s: want errors, got %v / %v", sql, plainErr, rewErr)
		}
		if got := res.OriginalPosition(int(re.Position)); got != int(pe.Position) || pe.Code != re.Code {
			t.Errorf("%s: plain error %s at %d, rewritten %s at %d mapped to %d", sql, pe.Code, pe.Position, re.Code, re.Position, got)
		}
	}
}

// checkGuard: a catalog whose signature does not match the database makes
// the statement fail with TS001 and lose nothing.
func checkGuard(t *testing.T, c *pgconn.PgConn, cat rewrite.Catalog) {
	tt, _ := cat.Lookup("public", "t")
	sig := tt.Signature
	tt.Signature = "stale"
	defer func() { tt.Signature = sig }()
	res, err := rewrite.Rewrite("DELETE FROM t WHERE id = 1", cat, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(context.Background(), res.SQL).ReadAll()
	if code(err) != "TS001" {
		t.Fatalf("want TS001, got %v", err)
	}
	r := mustExec(t, c, "SELECT count(*) FROM t WHERE id = 1")
	if string(r[0].Rows[0][0]) != "1" {
		t.Errorf("row deleted despite the guard")
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
