package test

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// env is one test database with a proxy in front of it.
type env struct {
	t      *testing.T
	direct string // URL straight to the test database
	proxy  string // URL through the proxy
	px     *testenv.Proxy
	cats   *tombstone.Catalogs
}

// newEnv creates a fresh database with schema, and a proxy with the real
// planner in front of the server.
func newEnv(t *testing.T, schema string, mod ...func(*proxy.Config)) *env {
	t.Helper()
	ctx := context.Background()
	direct := testenv.FreshDB(t, "ts_e2e")
	db := dbName(t, direct)
	if schema != "" {
		testenv.Exec(t, "SELECT 1") // server reachable
		c := testenv.Connect(t, direct)
		_, err := c.Exec(ctx, schema)
		require.NoError(t, err, "schema")
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	cats := tombstone.NewCatalogs(direct, tombstone.InstallOptions{Protection: &tombstone.Protection{
		Schemas: []string{"public"}, Retention: 7 * 24 * time.Hour}, Logger: log}, log)
	t.Cleanup(cats.Close)
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(cats, rewrite.NewCache(256), proxy.Policies{})
		c.OnCatalogChanged = cats.Invalidate
		c.OnSession = cats.Use
		c.Logger = log
		for _, m := range mod {
			m(c)
		}
	})
	pu, _ := url.Parse(px.DSN)
	pu.Path = "/" + db
	return &env{t: t, direct: direct, proxy: pu.String(), px: px, cats: cats}
}

// snapshot renders every given table, ordered, as text.
func (e *env) snapshot(tables ...string) string {
	e.t.Helper()
	c := testenv.Connect(e.t, e.direct)
	var b strings.Builder
	for _, tb := range tables {
		rows, err := c.Query(context.Background(), fmt.Sprintf("SELECT t::text FROM %s t ORDER BY 1", tb))
		require.NoError(e.t, err)
		fmt.Fprintf(&b, "== %s\n", tb)
		for rows.Next() {
			var s string
			require.NoError(e.t, rows.Scan(&s))
			b.WriteString(s + "\n")
		}
		require.NoError(e.t, rows.Err())
	}
	return b.String()
}

func (e *env) count(sql string) int {
	e.t.Helper()
	c := testenv.Connect(e.t, e.direct)
	var n int
	require.NoError(e.t, c.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// simple runs sql through the proxy with the simple protocol and returns
// the rows as text.
func simple(t *testing.T, c *pgx.Conn, sql string) ([][]string, pgconn.CommandTag) {
	t.Helper()
	res := c.PgConn().Exec(context.Background(), sql)
	all, err := res.ReadAll()
	require.NoError(t, err, sql)
	var out [][]string
	last := all[len(all)-1]
	for _, r := range last.Rows {
		var row []string
		for _, v := range r {
			row = append(row, string(v))
		}
		out = append(out, row)
	}
	return out, last.CommandTag
}

const shopSchema = `
CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sites (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants ON DELETE CASCADE,
  name text NOT NULL, slug text GENERATED ALWAYS AS (lower(name)) STORED, meta jsonb);
CREATE TABLE products (id bigint PRIMARY KEY, site_id bigint NOT NULL REFERENCES sites ON DELETE CASCADE, name text, price numeric(10,2));
CREATE TABLE product_users (product_id bigint REFERENCES products ON DELETE CASCADE, user_name text, PRIMARY KEY (product_id, user_name));
CREATE TABLE links (id bigint PRIMARY KEY, product_id bigint REFERENCES products ON DELETE SET NULL, url text);
CREATE TABLE nodes (id int PRIMARY KEY, parent_id int REFERENCES nodes ON DELETE CASCADE, site_id bigint REFERENCES sites ON DELETE CASCADE, label text);
INSERT INTO tenants SELECT i, 'tenant ' || i FROM generate_series(1, 10) i;
INSERT INTO sites (tenant_id, name, meta) SELECT (i % 10) + 1, 'Site ' || i, jsonb_build_object('n', i) FROM generate_series(1, 40) i;
INSERT INTO products SELECT i, (i % 40) + 1, 'product ' || i, i * 1.5 FROM generate_series(1, 200) i;
INSERT INTO product_users SELECT (i % 200) + 1, 'user ' || i FROM generate_series(1, 400) i;
INSERT INTO links SELECT i, (i % 200) + 1, 'https://x/' || i FROM generate_series(1, 300) i;
INSERT INTO nodes SELECT i, NULL, (i % 40) + 1, 'root ' || i FROM generate_series(1, 20) i;
INSERT INTO nodes SELECT i, i - 20, NULL, 'child ' || i FROM generate_series(21, 60) i;
INSERT INTO nodes SELECT i, i - 40, NULL, 'grandchild ' || i FROM generate_series(61, 100) i;
`

var shopTables = []string{"tenants", "sites", "products", "product_users", "links", "nodes"}

// TestDeleteUndeleteRoundTrip: a delete through the proxy with 3-level
// cascades, a self-referencing tree and SET NULL links is captured in one
// batch; UNDELETE BATCH brings the database back byte-identical.
func TestDeleteUndeleteRoundTrip(t *testing.T) {
	e := newEnv(t, shopSchema)
	before := e.snapshot(shopTables...)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)

	tag, err := c.Exec(ctx, "DELETE FROM tenants WHERE id IN (3, 7)")
	require.NoError(t, err)
	require.Equal(t, "DELETE 2", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM sites WHERE tenant_id IN (3, 7)"), "cascade removed the sites")
	require.Positive(t, e.count("SELECT count(*) FROM links WHERE product_id IS NULL"), "SET NULL applied")
	require.NotEqual(t, before, e.snapshot(shopTables...))

	rows, _ := simple(t, c, "SHOW BATCHES")
	require.Len(t, rows, 1)
	batch := rows[0][0]
	require.Contains(t, strings.Join(rows[0], "|"), "DELETE FROM tenants")

	undo, tag2 := simple(t, c, "UNDELETE BATCH "+batch)
	require.NotEmpty(t, undo)
	t.Logf("UNDELETE BATCH %s: %v (%s)", batch, undo, tag2)
	require.Equal(t, before, e.snapshot(shopTables...), "restore is byte-identical")
}

// TestSameShapeDeletes: deletes that differ only in their constants, as
// simple-protocol clients send them (the proxy fills all but the first in
// from its template of the shape): each one deletes, cascades and
// captures its own rows, its batch records its own text, and UNDELETE of
// each brings back exactly its rows.
func TestSameShapeDeletes(t *testing.T) {
	e := newEnv(t, shopSchema)
	before := e.snapshot(shopTables...)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)
	texts := []string{
		"DELETE FROM sites WHERE id = 3 RETURNING id, name",
		"DELETE FROM sites WHERE id = 17 RETURNING id, name",
		"DELETE FROM sites WHERE id = 40   RETURNING id, name",
		"DELETE FROM sites WHERE id = 0 RETURNING id, name",
	}
	for i, sql := range texts {
		rows, tag := simple(t, c, sql)
		if i == 3 {
			require.Equal(t, "DELETE 0", tag.String())
			continue
		}
		require.Equal(t, "DELETE 1", tag.String(), sql)
		require.Len(t, rows, 1)
		id := strings.Fields(strings.TrimPrefix(sql, "DELETE FROM sites WHERE id = "))[0]
		require.Equal(t, id, rows[0][0], sql)
		require.Equal(t, "Site "+id, rows[0][1], sql)
	}
	d := testenv.Connect(t, e.direct)
	var recorded []string
	var ids []int64
	rows, err := d.Query(ctx, "SELECT id, sql FROM tombstone.batches ORDER BY id")
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var s string
		require.NoError(t, rows.Scan(&id, &s))
		ids, recorded = append(ids, id), append(recorded, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, texts[:3], recorded, "each batch records its own statement")
	for _, id := range []int{3, 17, 40} {
		require.Equal(t, 1, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.public__sites WHERE id = %d", id)))
		require.Equal(t, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.public__products WHERE site_id = %d", id)),
			5, "the cascade's rows of site %d", id)
	}
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.public__sites"))
	for _, id := range ids {
		simple(t, c, fmt.Sprintf("UNDELETE BATCH %d", id))
	}
	require.Equal(t, before, e.snapshot(shopTables...), "each batch restored its own rows")
}

// TestDeleteLooksLikePostgres: tags, RETURNING columns and values, errors
// and positions are what plain Postgres sends, in the simple and extended
// protocols; rollback leaves no batch; each execution is its own batch.
func TestDeleteLooksLikePostgres(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	d := testenv.Connect(t, e.direct)
	p := testenv.Connect(t, e.proxy)
	batches := func() int { return e.count("SELECT count(*) FROM tombstone.batches") }

	// RETURNING: same fields, same values; rolled back both times.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		get := func(c *pgx.Conn) (string, []pgconn.FieldDescription, string) {
			tx, err := c.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			rows, err := tx.Query(ctx, "DELETE FROM products p USING sites s WHERE p.site_id = s.id AND s.tenant_id = $1 RETURNING p.*, s.name AS site, p.price * 2", mode, 4)
			require.NoError(t, err)
			var out []string
			for rows.Next() {
				vals, err := rows.Values()
				require.NoError(t, err)
				out = append(out, fmt.Sprint(vals))
			}
			require.NoError(t, rows.Err())
			return strings.Join(out, "\n"), rows.FieldDescriptions(), rows.CommandTag().String()
		}
		dv, df, dtag := get(d)
		pv, pf, ptag := get(p)
		require.Equal(t, dv, pv, "mode %v", mode)
		require.Equal(t, df, pf, "mode %v: RowDescription", mode)
		require.Equal(t, dtag, ptag, "mode %v", mode)
		require.NotEmpty(t, dv)
	}
	require.Zero(t, batches(), "rolled back deletes leave no batch")

	// A prepared DELETE executed three times: three batches.
	for i := 1; i <= 3; i++ {
		tag, err := p.Exec(ctx, "DELETE FROM links WHERE id = $1", i)
		require.NoError(t, err)
		require.Equal(t, "DELETE 1", tag.String())
	}
	require.Equal(t, 3, batches())
	tag, err := p.Exec(ctx, "DELETE FROM links WHERE id = $1", 1)
	require.NoError(t, err)
	require.Equal(t, "DELETE 0", tag.String())
	require.Equal(t, 3, batches(), "a delete of nothing writes no batch")

	// Errors: same SQLSTATE and position as plain Postgres.
	for _, sql := range []string{
		"DELETE FROM sites WHERE nosuch = 1",
		"DELETE FROM sites WHERE id = 'x'",
		"SELECT 1; DELETE FROM sites WHERE tenant_id = 1 AND nosuch_col > 0",
		"DELETE FROM tenants WHERE id = 1 RETURNING nosuch",
		// The same shapes with other constants: filled in from the
		// proxy's template of the shape, positions and all.
		"DELETE FROM sites WHERE nosuch = 123456",
		"DELETE FROM sites WHERE id = 'a longer value'",
		"DELETE FROM sites WHERE id = $$x$$",
		"SELECT 1; DELETE FROM sites WHERE tenant_id = 22 AND nosuch_col > 0",
	} {
		_, derr := d.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		_, perr := p.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		var de, pe *pgconn.PgError
		require.ErrorAs(t, derr, &de, sql)
		require.ErrorAs(t, perr, &pe, sql)
		require.Equal(t, de.Code, pe.Code, sql)
		require.Equal(t, de.Message, pe.Message, sql)
		require.Equal(t, de.Position, pe.Position, sql)
	}

	// Multi-statement, simple protocol.
	res, err := p.PgConn().Exec(ctx, "DELETE FROM links WHERE id = 10; SELECT 1; DELETE FROM links WHERE id IN (11, 12) RETURNING id").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", res[0].CommandTag.String())
	require.Equal(t, "SELECT 1", res[1].CommandTag.String())
	require.Equal(t, "DELETE 2", res[2].CommandTag.String())
	require.Len(t, res[2].FieldDescriptions, 1)
	require.Len(t, res[2].Rows, 2)

	// Refused: WHERE CURRENT OF; the session stays usable.
	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DECLARE c CURSOR FOR SELECT * FROM links FOR UPDATE")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "FETCH 1 FROM c")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DELETE FROM links WHERE CURRENT OF c", pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code)
	require.NotEmpty(t, pe.Hint)
	require.NoError(t, tx.Rollback(ctx))
	var one int
	require.NoError(t, p.QueryRow(ctx, "SELECT 1").Scan(&one))
}

// dbName returns the database of a postgres:// URL.
func dbName(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

// withDB returns dsn pointed at database db.
func withDB(t *testing.T, dsn, db string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.Path = "/" + db
	return u.String()
}

// TestDeleteForms: savepoints, SQL-level PREPARE/EXECUTE, a DELETE inside
// WITH feeding an INSERT, EXPLAIN ANALYZE — through the proxy, with the
// tags and batches plain Postgres semantics call for.
func TestDeleteForms(t *testing.T) {
	e := newEnv(t, shopSchema+`CREATE TABLE links_archive (LIKE links);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	batches := func() int { return e.count("SELECT count(*) FROM tombstone.batches") }
	exec := func(sql string) string {
		t.Helper()
		res, err := p.PgConn().Exec(ctx, sql).ReadAll()
		require.NoError(t, err, sql)
		return res[len(res)-1].CommandTag.String()
	}

	// Savepoints: the rolled-back part leaves no batch.
	exec("BEGIN")
	exec("SAVEPOINT a")
	require.Equal(t, "DELETE 1", exec("DELETE FROM links WHERE id = 1"))
	exec("ROLLBACK TO SAVEPOINT a")
	require.Equal(t, "DELETE 1", exec("DELETE FROM links WHERE id = 2"))
	exec("COMMIT")
	require.Equal(t, 1, batches())
	require.Equal(t, 1, e.count("SELECT count(*) FROM links WHERE id = 1"))

	// PREPARE / EXECUTE: each execution is its own batch, tag DELETE n.
	require.Equal(t, "PREPARE", exec("PREPARE del(bigint) AS DELETE FROM links WHERE id = $1"))
	require.Equal(t, "DELETE 1", exec("EXECUTE del(20)"))
	require.Equal(t, "DELETE 1", exec("EXECUTE del(21)"))
	require.Equal(t, 3, batches())
	exec("DEALLOCATE del")

	// DELETE inside WITH feeding an INSERT: the INSERT's tag, one batch.
	require.Equal(t, "INSERT 0 4", exec("WITH d AS (DELETE FROM links WHERE id BETWEEN 30 AND 33 RETURNING *) INSERT INTO links_archive SELECT * FROM d"))
	require.Equal(t, 4, e.count("SELECT count(*) FROM links_archive"))
	require.Equal(t, 4, batches())

	// EXPLAIN ANALYZE really deletes: captured too.
	exec("EXPLAIN ANALYZE DELETE FROM links WHERE id = 40")
	require.Zero(t, e.count("SELECT count(*) FROM links WHERE id = 40"))
	require.Equal(t, 5, batches())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__links WHERE id = 40"))
}

// TestConsoleExtendedProtocol: console commands also work when a driver
// prepares them (pgx's default), and a console syntax error is a clean
// 42601 in either protocol.
func TestConsoleExtendedProtocol(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM links WHERE id < 5")
	require.NoError(t, err)
	var batch int64
	require.NoError(t, p.QueryRow(ctx, "SHOW BATCHES LIMIT 1").Scan(&batch, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil))
	require.Positive(t, batch)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err = p.Exec(ctx, "UNDELETE BATCH", mode)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "42601", pe.Code)
		require.Contains(t, pe.Hint, "UNDELETE BATCH <id>")
		require.Zero(t, pe.Position)
	}
	_, err = p.Exec(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.NoError(t, err)
	require.Equal(t, 300, e.count("SELECT count(*) FROM links"))
}

// TestPgbenchProtected runs pgbench — initialization (DROP TABLE, CREATE,
// COPY, VACUUM) and its TPC-B-like workload — through the proxy with the
// real planner, every pgbench table protected: zero failed transactions.
func TestPgbenchProtected(t *testing.T) {
	pgbench := testenv.Tool(t, "pgbench")
	e := newEnv(t, "")
	u, _ := url.Parse(e.proxy)
	host, port, db := u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/")
	for _, args := range [][]string{
		{"-i", "-q", "-s", "1"},
		{"-i", "-q", "-s", "1"}, // again: the old tables go to the trash
		// A count, not a duration: on a loaded machine a 2 s run could end
		// before its clients had connected, with nothing to check.
		{"-c", "4", "-j", "2", "-t", "100", "-M", "prepared"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, pgbench, append(args, "-h", host, "-p", port, "-U", "postgres", db)...).CombinedOutput()
		cancel()
		require.NoError(t, err, string(out))
		if args[0] == "-c" {
			require.Contains(t, string(out), "number of transactions actually processed: 400/400")
			require.Contains(t, string(out), "number of failed transactions: 0 (0.000%)")
		}
	}
	require.Positive(t, e.count("SELECT count(*) FROM tombstone.trash"), "re-initialization trashed the old tables")
}

// TestRefusalSimpleProtocol: a refusal in a Query, alone or after other
// statements, reads as Postgres's own errors do: the refusal's code,
// message and hint, no empty DETAIL, no CONTEXT line from the DO block
// the proxy raised it with; the statements before it ran.
func TestRefusalSimpleProtocol(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{
		"MERGE INTO links l USING (SELECT 5::bigint AS id) s ON l.id = s.id WHEN MATCHED THEN DELETE",
		"SELECT 1; MERGE INTO links l USING (SELECT 5::bigint AS id) s ON l.id = s.id WHEN MATCHED THEN DELETE; SELECT 2",
	} {
		_, err := p.PgConn().Exec(ctx, sql).ReadAll()
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, sql)
		require.Equal(t, "0A000", pe.Code, sql)
		require.Contains(t, pe.Message, "MERGE", sql)
		require.NotEmpty(t, pe.Hint, sql)
		require.Empty(t, pe.Detail, sql)
		require.Empty(t, pe.Where, sql)
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM links WHERE id = 5"), "nothing deleted")
}

// TestDeepStatements: a statement nested deeper than pg_query can safely
// build (a chain of 30,000 operators crashed the whole proxy in its C
// code; 6,000 casts went through uncaptured) is refused with 54001, as
// Postgres refuses one too deep for its stack, in both protocols, inside
// a console predicate too, and the session carries on.
func TestDeepStatements(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{
		"DELETE FROM links WHERE id = 5" + strings.Repeat("+0", 30000),
		"DELETE FROM links WHERE id = 5" + strings.Repeat("::int", 6000),
		"SHOW TOMBSTONES links WHERE id = 5" + strings.Repeat("+0", 30000),
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			_, err := p.Exec(ctx, sql, mode)
			var pe *pgconn.PgError
			require.ErrorAs(t, err, &pe, "%.40s (%v)", sql, mode)
			require.Equal(t, "54001", pe.Code, "%.40s (%v)", sql, mode)
		}
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM links WHERE id = 5"), "nothing deleted")
	var one int
	require.NoError(t, p.QueryRow(ctx, "SELECT 1").Scan(&one), "the session carries on")
}

// TestRefusalExtendedProtocol: a refused statement prepared by a driver
// fails at Parse with 0A000, aborts the transaction exactly as a failed
// statement would, and leaves the session usable after ROLLBACK.
func TestRefusalExtendedProtocol(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "MERGE INTO links l USING (SELECT $1::bigint AS id) s ON l.id = s.id WHEN MATCHED THEN DELETE", 5)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code)
	require.NotEmpty(t, pe.Hint)
	_, err = tx.Exec(ctx, "SELECT 1")
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "25P02", pe.Code, "the transaction is aborted, as after any failed statement")
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 1, e.count("SELECT count(*) FROM links WHERE id = 5"), "nothing deleted")
	var one int
	require.NoError(t, p.QueryRow(ctx, "SELECT 1").Scan(&one))
}
