package test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// frozenCatalogs serves a catalog snapshot taken earlier until the proxy
// reports it stale — the window a real proxy has between another
// connection's DDL and the notification reaching it.
type frozenCatalogs struct {
	inner *tombstone.Catalogs
	mu    sync.Mutex
	old   rewrite.GenerationalCatalog
	fresh atomic.Int64
	px    *testenv.Proxy
}

func (f *frozenCatalogs) Catalog(ctx context.Context, db string) (rewrite.GenerationalCatalog, error) {
	f.mu.Lock()
	old := f.old
	f.mu.Unlock()
	if old != nil {
		return old, nil
	}
	return f.inner.Catalog(ctx, db)
}

// Fresh serves the snapshot too, to the event loop's plans of texts the
// rewrite cache knows (proxy.FreshCatalogs); fresh counts those.
func (f *frozenCatalogs) Fresh(db string) (rewrite.GenerationalCatalog, bool) {
	f.mu.Lock()
	old := f.old
	f.mu.Unlock()
	if old != nil {
		f.fresh.Add(1)
		return old, true
	}
	return f.inner.Fresh(db)
}

func (f *frozenCatalogs) Latest() uint64 { return f.inner.Latest() }

func (f *frozenCatalogs) invalidate(db string) {
	f.mu.Lock()
	f.old = nil
	f.mu.Unlock()
	f.inner.Invalidate(db)
}

// frozenProxy starts, in front of e's database, a second proxy whose
// planner reads a catalog snapshot taken now, until it reports it stale.
// It returns the snapshot holder and the proxy's DSN.
func frozenProxy(t *testing.T, e *env) (*frozenCatalogs, string) {
	t.Helper()
	old, err := e.cats.Catalog(context.Background(), dbName(t, e.direct))
	require.NoError(t, err)
	frozen := &frozenCatalogs{inner: e.cats, old: old}
	frozen.px = testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(frozen, rewrite.NewCache(64), proxy.Policies{})
		c.OnCatalogChanged = frozen.invalidate
	})
	return frozen, withDB(t, frozen.px.DSN, dbName(t, e.direct))
}

// TestStaleCatalogNeverLosesRows: a cascade added by another connection a
// moment ago is not in the proxy's catalog. The rewritten DELETE's guard
// fails it (TS001) before anything is deleted; outside a transaction block
// the proxy re-plans with a fresh catalog and runs it again, so the client
// just sees DELETE 1 and the new cascade is captured. Inside a transaction
// block the error reaches the client, with nothing deleted.
func TestStaleCatalogNeverLosesRows(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	frozen, through := frozenProxy(t, e)
	old := frozen.old

	d := testenv.Connect(t, e.direct)
	_, err := d.Exec(ctx, `CREATE TABLE reviews (id int PRIMARY KEY, product_id bigint REFERENCES products ON DELETE CASCADE, body text);
		INSERT INTO reviews SELECT i, (i % 200) + 1, 'review ' || i FROM generate_series(1, 50) i`)
	require.NoError(t, err)

	p := testenv.Connect(t, through)
	// In a transaction block: refused cleanly, nothing deleted.
	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DELETE FROM products WHERE id = 7", pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "TS001", pe.Code)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 1, e.count("SELECT count(*) FROM products WHERE id = 7"))

	// Autocommit: re-planned and re-sent; the new cascade is captured.
	frozen.mu.Lock()
	frozen.old = old
	frozen.mu.Unlock()
	tag, err := p.Exec(ctx, "DELETE FROM products WHERE id = 8", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM reviews WHERE product_id = 8"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, 1, e.count(`SELECT (tables->>'public.reviews')::int FROM tombstone.batches`), "the new cascade child was captured")

	// The same shape again, stale each time: the event loop plans it from
	// the template without waiting, the server refuses it (TS001), and
	// the answer goes to the pumps, which re-plan and re-send.
	for id := 9; id <= 12; id++ {
		frozen.mu.Lock()
		frozen.old = old
		frozen.mu.Unlock()
		tag, err := p.Exec(ctx, fmt.Sprintf("DELETE FROM products WHERE id = %d", id), pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		require.Equal(t, "DELETE 1", tag.String())
		require.Zero(t, e.count(fmt.Sprintf("SELECT count(*) FROM reviews WHERE product_id = %d", id)))
	}
	require.Positive(t, frozen.fresh.Load(), "no statement was planned by the event loop")
	require.Equal(t, 5, e.count("SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, e.count("SELECT count(*) FROM tombstone.public__reviews"),
		e.count(`SELECT sum((tables->>'public.reviews')::int) FROM tombstone.batches`), "every cascaded review captured")
}

// droppedColumn drops a column of a protected table behind the back of a
// proxy whose catalog is frozen, and connects through that proxy.
func droppedColumn(t *testing.T) (*env, *pgx.Conn) {
	e := newEnv(t, `CREATE TABLE notes (id int PRIMARY KEY, body text, extra text);
		INSERT INTO notes SELECT g, 'n' || g, 'x' FROM generate_series(1, 5) g;`)
	_, through := frozenProxy(t, e)
	d := testenv.Connect(t, e.direct)
	_, err := d.Exec(context.Background(), "ALTER TABLE notes DROP COLUMN extra")
	require.NoError(t, err)
	return e, testenv.Connect(t, through)
}

// TestStaleCatalogDroppedColumn: a column dropped a moment ago makes the
// stale capture fail before its guard runs (42703 on the capture's
// reference); the proxy treats it as a stale catalog too and re-sends.
func TestStaleCatalogDroppedColumn(t *testing.T) {
	e, p := droppedColumn(t)
	ctx := context.Background()
	tag, err := p.Exec(ctx, "DELETE FROM notes WHERE id = 2", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__notes WHERE id = 2"))
}

// TestStaleCatalogDroppedChild: a cascade child dropped (or renamed) a
// moment ago makes the stale capture fail at analysis, before its guard
// runs (42P01 in the text the proxy generated): a stale catalog too, so
// the proxy re-plans and re-sends, and the client sees its DELETE.
func TestStaleCatalogDroppedChild(t *testing.T) {
	for _, ddl := range []string{"DROP TABLE reviews", "ALTER TABLE reviews RENAME TO reviews_old"} {
		t.Run(ddl, func(t *testing.T) {
			e := newEnv(t, shopSchema+`CREATE TABLE reviews (id int PRIMARY KEY, product_id bigint REFERENCES products ON DELETE CASCADE);
				INSERT INTO reviews SELECT i, i FROM generate_series(1, 50) i;`)
			ctx := context.Background()
			frozen, through := frozenProxy(t, e)
			d := testenv.Connect(t, e.direct)
			_, err := d.Exec(ctx, ddl)
			require.NoError(t, err)
			p := testenv.Connect(t, through)
			tag, err := p.Exec(ctx, "DELETE FROM products WHERE id = 9", pgx.QueryExecModeSimpleProtocol)
			require.NoError(t, err)
			require.Equal(t, "DELETE 1", tag.String())
			require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__products WHERE id = 9"))
			require.Equal(t, 1.0, testutil.ToFloat64(frozen.px.Metrics().StaleResends), "counted as re-sent")
		})
	}
}

// TestStaleCatalogPrepare: a rewritten PREPARE planned against a stale
// catalog is refused at its EXECUTE (TS001), nothing deleted; prepared
// again, it runs, and the proxy repairs the answers to its EXECUTE by
// the plan the server kept.
func TestStaleCatalogPrepare(t *testing.T) {
	e, p := droppedColumn(t)
	ctx := context.Background()
	_, err := p.Exec(ctx, "PREPARE p AS DELETE FROM notes WHERE id = $1 RETURNING *", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	_, err = p.Exec(ctx, "EXECUTE p(2)", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, "TS001", errCode(err))
	require.Equal(t, 1, e.count("SELECT count(*) FROM notes WHERE id = 2"))
	_, err = p.Exec(ctx, "DEALLOCATE p; PREPARE p AS DELETE FROM notes WHERE id = $1 RETURNING *", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	rows, err := p.Query(ctx, "EXECUTE p(2)", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
	}
	for rows.Next() {
	}
	rows.Close()
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"id", "body"}, names)
	require.Equal(t, "DELETE 1", rows.CommandTag().String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__notes WHERE id = 2"))

	// A PREPARE that could be re-sent but fails for its own reasons is
	// forgotten, as the server forgets it.
	q := testenv.Connect(t, e.proxy)
	_, err = q.Exec(ctx, "PREPARE r AS DELETE FROM notes WHERE id = $1 RETURNING nosuch", pgx.QueryExecModeSimpleProtocol)
	require.Error(t, err)
	_, err = q.Exec(ctx, "PREPARE r AS SELECT $1::int AS a, 2 AS b", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	rows, err = q.Query(ctx, "EXECUTE r(1)", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.Len(t, rows.FieldDescriptions(), 2, "no column stripped")
	for rows.Next() {
	}
	rows.Close()
	require.Equal(t, "SELECT 1", rows.CommandTag().String())
}

// TestDeleteFromTableCreatedInTransaction: a table created in the open
// transaction is unknown to the proxy's catalog (it cannot see it until
// commit); its rows are all the transaction's own, so a DELETE of them
// goes ahead, uncaptured, as a plain DELETE would, instead of failing
// the transaction with a stale-catalog error.
func TestDeleteFromTableCreatedInTransaction(t *testing.T) {
	e := newEnv(t, "CREATE TABLE seed (id int)")
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)
	_, err := c.Exec(ctx, "DELETE FROM seed") // the store is in place
	require.NoError(t, err)
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "CREATE TABLE fresh (id int PRIMARY KEY); INSERT INTO fresh SELECT generate_series(1, 3)")
	require.NoError(t, err)
	tag, err := tx.Exec(ctx, "DELETE FROM fresh WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	// In a savepoint too (PostgreSQL's transactions test).
	_, err = tx.Exec(ctx, "SAVEPOINT s; CREATE TABLE fresher (id int); INSERT INTO fresher VALUES (1)")
	require.NoError(t, err)
	tag, err = tx.Exec(ctx, "DELETE FROM fresher")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 2, e.count("SELECT count(*) FROM fresh"))
	// Committed, it is protected like any other.
	_, err = c.Exec(ctx, "DELETE FROM fresh WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__fresh WHERE id = 2"))
}

// TestPreparedAfterUnrelatedDDL: a prepared DELETE planned before some unrelated
// DDL is prepared again at its next Bind once the proxy has loaded the
// new catalog (the listener loads it on the notification), so that it
// takes the catalog check's fast path again with the new snapshot; it
// deletes and captures as before.
func TestPreparedAfterUnrelatedDDL(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Prepare(ctx, "del", "DELETE FROM links WHERE id = $1")
	require.NoError(t, err)
	tag, err := p.Exec(ctx, "del", 1)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	text := func() string {
		var s string
		require.NoError(t, p.QueryRow(ctx, "SELECT statement FROM pg_prepared_statements WHERE name = 'del'").Scan(&s))
		return s
	}
	before := text()
	require.Contains(t, before, "check_catalog")

	loaded := e.cats.Latest()
	d := testenv.Connect(t, e.direct)
	_, err = d.Exec(ctx, "CREATE TABLE unrelated (id int)")
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for e.cats.Latest() == loaded {
		require.True(t, time.Now().Before(deadline), "the proxy did not load the new catalog")
		time.Sleep(20 * time.Millisecond)
	}

	tag, err = p.Exec(ctx, "del", 2)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	after := text()
	require.NotEqual(t, before, after, "not prepared again")
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__links WHERE id IN (1, 2)"))
	// And not again while nothing changes.
	tag, err = p.Exec(ctx, "del", 3)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, after, text())
}

// staleCatalogs says the catalog is always out of date and counts the
// plans that wait for it (Catalog reloads a stale one).
type staleCatalogs struct {
	inner *tombstone.Catalogs
	waits atomic.Int64
}

func (s *staleCatalogs) Catalog(ctx context.Context, db string) (rewrite.GenerationalCatalog, error) {
	s.waits.Add(1)
	return s.inner.Catalog(ctx, db)
}

func (s *staleCatalogs) Stale(string) bool { return true }

// TestStaleCatalogDDLDoesNotWait: while a database's catalog is being
// reloaded after DDL, statements whose rewrite asks about no table —
// CREATE TABLE, INSERT, a DROP TABLE (trash_tables asks the database) —
// are planned without waiting for it, and still do what they would with
// it: the dropped protected table is in the trash. A DELETE, a DROP
// SCHEMA and a TRUNCATE wait, and the DELETE is captured.
func TestStaleCatalogDDLDoesNotWait(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	_, err := e.cats.Catalog(ctx, dbName(t, e.direct))
	require.NoError(t, err)
	stale := &staleCatalogs{inner: e.cats}
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(stale, rewrite.NewCache(64), proxy.Policies{})
		c.OnCatalogChanged = e.cats.Invalidate
	})
	p := testenv.Connect(t, withDB(t, px.DSN, dbName(t, e.direct)))

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, sql := range []string{
			"CREATE TABLE scratch (id int PRIMARY KEY, body text)",
			"INSERT INTO scratch VALUES (1, 'a'), (2, 'b')",
			"DROP TABLE scratch",
		} {
			_, err := p.Exec(ctx, sql, mode)
			require.NoError(t, err, sql)
		}
	}
	require.Zero(t, stale.waits.Load(), "a statement that asks about no table waited for the catalog")
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.trash WHERE original_name = 'scratch'"), "DROP TABLE moved the table to the trash")

	tag, err := p.Exec(ctx, "DELETE FROM products WHERE id = 7")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, int64(1), stale.waits.Load(), "the DELETE was planned without the catalog")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__products WHERE id = 7"), "the DELETE was captured")

	for _, sql := range []string{"DROP SCHEMA nowhere", "TRUNCATE products CASCADE"} {
		before := stale.waits.Load()
		_, _ = p.Exec(ctx, sql)
		require.Equal(t, before+1, stale.waits.Load(), "%s was planned without the catalog", sql)
	}
}

// TestDropSchemaCascadeGuarded: a DROP SCHEMA … CASCADE of a protected
// schema the proxy's catalog holds no table of — a protected table moved
// into it earlier in the same Query or transaction — is refused by the
// database (guarded_ddl), with nothing dropped: it dropped the table,
// rows and all, with no trash entry. A schema without protected tables
// is dropped as usual.
func TestDropSchemaCascadeGuarded(t *testing.T) {
	e := newEnv(t, `CREATE TABLE notes (id int PRIMARY KEY, body text);
		INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 20) i`)
	ctx := context.Background()
	_, err := e.cats.Catalog(ctx, dbName(t, e.direct)) // installs, as a proxy's first use does
	require.NoError(t, err)
	d := testenv.Connect(t, e.direct)
	require.NoError(t, tombstone.Install(ctx, d, tombstone.InstallOptions{Protection: &tombstone.Protection{
		Schemas: []string{"public", "s2"}, Retention: time.Hour}}))
	_, err = d.Exec(ctx, "CREATE SCHEMA s2")
	require.NoError(t, err)
	p := testenv.Connect(t, e.proxy)

	_, err = p.Exec(ctx, "ALTER TABLE notes SET SCHEMA s2; DROP SCHEMA s2 CASCADE", pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code, pe.Message)
	require.Equal(t, 20, e.count("SELECT count(*) FROM public.notes"))

	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "ALTER TABLE notes SET SCHEMA s2")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DROP SCHEMA s2 CASCADE")
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code, pe.Message)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 20, e.count("SELECT count(*) FROM public.notes"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.trash"))

	tag, err := p.Exec(ctx, "CREATE SCHEMA s3; CREATE TABLE s3.x (id int); DROP SCHEMA s3 CASCADE", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.Equal(t, "DROP SCHEMA", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM pg_namespace WHERE nspname = 's3'"))
}

// TestDropSchemaKeepsTheTrash: DROP SCHEMA … CASCADE of a schema whose
// type a table in the trash uses is refused (it dropped the column, and
// its values, for good); DROP TYPE … CASCADE first keeps them as text,
// and UNDROP brings them back. The store's own schemas are not dropped
// through the proxy.
func TestDropSchemaKeepsTheTrash(t *testing.T) {
	e := newEnv(t, `CREATE SCHEMA sc;
CREATE TYPE sc.mood AS ENUM ('happy', 'sad');
CREATE TABLE t4 (id int PRIMARY KEY, m sc.mood, ms sc.mood[]);
INSERT INTO t4 VALUES (1, 'happy', '{sad,happy}'), (2, 'sad', NULL);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	before := e.snapshot("t4")
	_, err := p.Exec(ctx, "DROP TABLE t4")
	require.NoError(t, err)
	trashed := "tombstone_trash." + queryText(t, e.direct, "SELECT trash_name FROM tombstone.trash WHERE original_name = 't4'")
	cols := "SELECT count(*) FROM pg_attribute WHERE attrelid = '" + trashed + "'::regclass AND attnum > 0 AND NOT attisdropped"
	require.Equal(t, 3, e.count(cols))

	_, err = p.Exec(ctx, "DROP SCHEMA sc CASCADE")
	require.Equal(t, "0A000", errCode(err))
	require.Equal(t, 3, e.count(cols), "a column of the trashed table was dropped")
	for _, s := range []string{"tombstone", "tombstone_trash"} {
		_, err = p.Exec(ctx, "DROP SCHEMA "+s+" CASCADE")
		require.Equal(t, "0A000", errCode(err), s)
	}

	for _, sql := range []string{"DROP TYPE sc.mood CASCADE", "DROP SCHEMA sc CASCADE", "UNDROP TABLE t4"} {
		_, err = p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.Equal(t, before, e.snapshot("t4"), "the values come back (as text)")
}

// TestStaleCatalogRetypedChild: the referencing table dropped and made
// again under its name with a key of another type, a moment before a
// DELETE the proxy planned with its catalog from before: the rewrite's
// cascade compares the parent's integer key with the new text column, an
// error (42883) of the proxy's text, not the client's — re-planned and
// re-sent like TS001, where it reached the client (the regression
// suite's foreign_key test, which makes its tables again and again).
func TestStaleCatalogRetypedChild(t *testing.T) {
	e := newEnv(t, `CREATE TABLE pk (id int PRIMARY KEY);
INSERT INTO pk SELECT generate_series(1, 10);
CREATE TABLE fk (id int PRIMARY KEY, pid int REFERENCES pk ON DELETE CASCADE);
INSERT INTO fk SELECT g, g FROM generate_series(1, 10) g;`)
	ctx := context.Background()
	_, through := frozenProxy(t, e)
	d := testenv.Connect(t, e.direct)
	_, err := d.Exec(ctx, `DROP TABLE fk; CREATE TABLE fk (id int PRIMARY KEY, pid text, pk_id int REFERENCES pk ON DELETE CASCADE);
		INSERT INTO fk SELECT g, 'x' || g, g FROM generate_series(1, 10) g`)
	require.NoError(t, err)
	tag, err := testenv.Connect(t, through).Exec(ctx, "DELETE FROM pk WHERE id = 3", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM fk WHERE pk_id = 3"))
	require.Equal(t, 1, e.count(`SELECT (tables->>'public.fk')::int FROM tombstone.batches`), "the new cascade child was captured")
}

// TestStaleCatalogNewTable: a table created a moment ago, whose NOTIFY the
// proxy has not seen, is protected all the same. The lookup that misses
// it asks the catalog log whether DDL committed since the catalog was
// loaded, and reloads: the DELETE is planned with the table, inside a
// transaction block too (the regression suite's transactions test). Where
// that does not help (the frozen snapshot below, a proxy that missed the
// change), the guard the rewrite puts on a DELETE of a table it does not
// know refuses it (TS001), so nothing is removed uncaptured, and outside
// a transaction block the proxy re-plans and re-sends.
func TestStaleCatalogNewTable(t *testing.T) {
	e := newEnv(t, shopSchema)
	// A catalog loaded a moment ago: a miss does not reload it.
	e.cats.MissReload = time.Hour
	ctx := context.Background()
	frozen, through := frozenProxy(t, e)
	d := testenv.Connect(t, e.direct)
	// The same catalog loaded plainly: it never reloads on a miss, as a
	// proxy's that has not heard of the table yet and finds nothing in
	// the catalog log (one started in between, say).
	plain, err := tombstone.LoadCatalog(ctx, d, tombstone.CatalogOptions{})
	require.NoError(t, err)
	_, err = d.Exec(ctx, `CREATE TABLE fresh (id int PRIMARY KEY, v text);
		INSERT INTO fresh SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	require.NoError(t, err)
	p := testenv.Connect(t, through)

	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	tag, err := tx.Exec(ctx, "DELETE FROM fresh WHERE id = 1", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err, "planned after a reload, in the transaction block")
	require.Equal(t, "DELETE 1", tag.String())
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 10, e.count("SELECT count(*) FROM fresh"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.public__fresh"))

	for _, sql := range []string{"DELETE FROM fresh WHERE id = 1", "WITH d AS (DELETE FROM fresh WHERE id = 2 RETURNING *) SELECT count(*) FROM d",
		// (A backslash in a '...' string: planned again only where the
		// session's settings are known, which they are once the refused
		// statement's answer is in. The regression suite's tidrangescan.)
		`DELETE FROM fresh WHERE id = 3 AND v ~ 'v\d'`,
		"TRUNCATE fresh"} {
		frozen.mu.Lock()
		frozen.old = plain
		frozen.mu.Unlock()
		_, err := p.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err, sql)
	}
	require.Zero(t, e.count("SELECT count(*) FROM fresh"))
	require.Equal(t, 10, e.count("SELECT count(*) FROM tombstone.public__fresh"), "every row captured")
	require.Equal(t, 3.0, testutil.ToFloat64(frozen.px.Metrics().StaleResends), "the DELETEs re-sent (a TRUNCATE of a table the catalog does not know goes to capture_truncate, which asks the database)")
}
