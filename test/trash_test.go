package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// TestTruncateUndelete: TRUNCATE … CASCADE through the proxy answers like
// Postgres, leaves a batch that SHOW BATCHES lists, and UNDELETE BATCH
// brings every row back byte-identical.
func TestTruncateUndelete(t *testing.T) {
	e := newEnv(t, shopSchema)
	before := e.snapshot(shopTables...)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)

	tag, err := c.Exec(ctx, "TRUNCATE tenants CASCADE")
	require.NoError(t, err)
	require.Equal(t, "TRUNCATE TABLE", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM products"))

	rows, _ := simple(t, c, "SHOW BATCHES")
	require.Len(t, rows, 1)
	require.Contains(t, strings.Join(rows[0], "|"), "TRUNCATE tenants CASCADE")
	_, _ = simple(t, c, "UNDELETE BATCH "+rows[0][0])
	require.Equal(t, before, e.snapshot(shopTables...), "restore is byte-identical")

	// In a transaction that rolls back, nothing is left.
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "TRUNCATE links")
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, before, e.snapshot(shopTables...))
}

// TestTruncateTriggersSeeTheCallersPath (PostgreSQL's truncate test):
// a table's own TRUNCATE triggers run under the caller's search_path,
// as without the proxy — an unqualified name in them resolves.
func TestTruncateTriggersSeeTheCallersPath(t *testing.T) {
	e := newEnv(t, `CREATE TABLE tt (id int); INSERT INTO tt VALUES (1), (2);
CREATE TABLE tt_log (n bigint);
CREATE FUNCTION tt_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c bigint;
BEGIN EXECUTE 'SELECT count(*) FROM ' || quote_ident(TG_TABLE_NAME) INTO c; INSERT INTO tt_log VALUES (c); RETURN NULL; END $$;
CREATE TRIGGER tt_before BEFORE TRUNCATE ON tt FOR EACH STATEMENT EXECUTE FUNCTION tt_count()`)
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "TRUNCATE tt")
	require.NoError(t, err)
	require.Equal(t, "2", queryText(t, e.direct, "SELECT string_agg(n::text, ',') FROM tt_log"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__tt"))
}

// TestDropUndrop: DROP TABLE through the proxy moves the table to the
// trash; UNDROP TABLE brings it back with its rows.
func TestDropUndrop(t *testing.T) {
	e := newEnv(t, shopSchema)
	before := e.snapshot(shopTables...)
	ctx := context.Background()
	c := testenv.Connect(t, e.proxy)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		tag, err := c.Exec(ctx, "DROP TABLE IF EXISTS links", mode)
		require.NoError(t, err)
		require.Equal(t, "DROP TABLE", tag.String())
		require.Zero(t, e.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'links'"))
		require.Equal(t, 1, e.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'tombstone_trash'"))
		_, err = c.Exec(ctx, "SELECT * FROM links", mode)
		require.Equal(t, "42P01", pgErrCode(err))

		// The trash is discoverable: SHOW TRASH lists the table, and
		// SHOW TOMBSTONES of it says where it went.
		trash, _ := simple(t, c, "SHOW TRASH")
		require.Len(t, trash, 1)
		require.Equal(t, "public.links", trash[0][1])
		require.Equal(t, "postgres", trash[0][3])
		require.Equal(t, "DROP TABLE IF EXISTS links", trash[0][8])
		for _, name := range []string{"links", "public.links"} {
			pe := pgErrOf(t, c.PgConn().Exec(ctx, "SHOW TOMBSTONES "+name).Close())
			require.Equal(t, "42P01", pe.Code)
			require.Contains(t, pe.Message, "table public.links was dropped at ")
			require.Contains(t, pe.Message, "is in the trash")
			require.Equal(t, "UNDROP TABLE public.links brings it back with its rows; SHOW TRASH lists what is in the trash.", pe.Hint)
		}
		pe := pgErrOf(t, c.PgConn().Exec(ctx, "SHOW TOMBSTONES other.links").Close())
		require.Equal(t, "42P01", pe.Code)
		require.Equal(t, `relation "other.links" does not exist`, pe.Message)

		rows, _ := simple(t, c, "UNDROP TABLE links")
		require.Len(t, rows, 1)
		require.Equal(t, "public.links", rows[0][0])
		require.Equal(t, before, e.snapshot(shopTables...))
		trash, _ = simple(t, c, "SHOW TRASH")
		require.Empty(t, trash)
	}

	// The restored table is protected again: a DELETE is captured.
	tag, err := c.Exec(ctx, "DELETE FROM links WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__links WHERE id = 1"))
}

func pgErrCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestTruncateDropRejected: under policy reject both statements are
// refused with 0A000 and change nothing. The policy in force is the
// database's (stored by tombstone init --config), whatever a proxy's own
// configuration says: a proxy configured to allow both refuses them too.
func TestTruncateDropRejected(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	// (The test's catalogs install their own rules at their first load:
	// that first, then the rules of `tombstone init --config`. A session
	// kept open keeps the catalogs from letting the database go and
	// installing again.)
	_, err := testenv.Connect(t, e.proxy).Exec(ctx, "DELETE FROM links WHERE false")
	require.NoError(t, err)
	require.NoError(t, tombstone.Install(ctx, testenv.Connect(t, e.direct), tombstone.InstallOptions{Protection: &tombstone.Protection{
		Schemas: []string{"public"}, Retention: 7 * 24 * time.Hour, Truncate: "reject", Drop: "reject"}}))
	e.cats.Invalidate(dbName(t, e.direct))
	before := e.snapshot(shopTables...)
	c := testenv.Connect(t, policyProxy(t, e, proxy.Policies{Truncate: "allow", Drop: "allow"}))
	for _, sql := range []string{"TRUNCATE products CASCADE", "DROP TABLE links", "TRUNCATE product_users"} {
		_, err := c.Exec(ctx, sql)
		require.Equal(t, "0A000", pgErrCode(err), sql)
	}
	require.Equal(t, before, e.snapshot(shopTables...))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches"))
}

// TestPoliciesOfTheDatabase: a proxy configured with policies.truncate and
// policies.drop allow, in front of a database whose rules are the
// defaults, captures a TRUNCATE and trashes a DROP TABLE as the database
// says — it does not pass them on uncaptured.
func TestPoliciesOfTheDatabase(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	c := testenv.Connect(t, policyProxy(t, e, proxy.Policies{Truncate: "allow", Drop: "allow"}))
	rows := e.count("SELECT count(*) FROM product_users")
	_, err := c.Exec(ctx, "TRUNCATE product_users")
	require.NoError(t, err)
	require.Equal(t, rows, e.count("SELECT count(*) FROM tombstone.public__product_users"), "captured")
	_, err = c.Exec(ctx, "DROP TABLE links")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.trash WHERE original_name = 'links'"), "to the trash")
}

// policyProxy starts a second proxy in front of e's database with pol as
// its configured policies, and returns its DSN for that database.
func policyProxy(t *testing.T, e *env, pol proxy.Policies) string {
	t.Helper()
	px := testenv.StartProxy(t, func(cfg *proxy.Config) {
		cfg.Planner = proxy.NewPlanner(e.cats, rewrite.NewCache(256), pol)
		cfg.OnCatalogChanged = e.cats.Invalidate
	})
	return withDB(t, px.DSN, dbName(t, e.direct))
}

// TestTrashKeptFromCascade: a DROP … CASCADE of an object a table in
// the trash still uses (here its partition key's function) would drop
// the trashed table and its rows; it is refused (2BP01) — through the
// proxy and on a direct connection alike — while the table's time in the
// trash runs, and the reaper's drop once it is up goes through.
func TestTrashKeptFromCascade(t *testing.T) {
	e := newEnv(t, `CREATE FUNCTION pk(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 % 10';
CREATE TABLE pf (a int, v text) PARTITION BY RANGE (pk(a));
CREATE TABLE pf0 PARTITION OF pf FOR VALUES FROM (0) TO (10);
INSERT INTO pf SELECT g, 'v' || g FROM generate_series(1, 20) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	d := testenv.Connect(t, e.direct)
	_, err := p.Exec(ctx, "DROP TABLE pf")
	require.NoError(t, err)
	trashed := "tombstone_trash." + queryText(t, e.direct, "SELECT trash_name FROM tombstone.trash WHERE original_name = 'pf'")
	for _, c := range []*pgx.Conn{p, d} {
		_, err = c.Exec(ctx, "DROP FUNCTION pk(int) CASCADE")
		require.Equal(t, "2BP01", pgErrCode(err), "%v", err)
		require.Contains(t, err.Error(), "public.pf")
		require.Equal(t, 20, e.count("SELECT count(*) FROM "+trashed))
	}

	// Its time up, the reaper drops it (CASCADE) and the function can go.
	_, err = d.Exec(ctx, "UPDATE tombstone.trash SET purge_after = now() - interval '1 second' WHERE original_name = 'pf'")
	require.NoError(t, err)
	require.Equal(t, "true", queryText(t, e.direct, "SELECT dropped::text FROM tombstone.reap_trash()"))
	require.Zero(t, e.count("SELECT count(*) FROM pg_class WHERE relnamespace = 'tombstone_trash'::regnamespace"))
	_, err = p.Exec(ctx, "DROP FUNCTION pk(int)")
	require.NoError(t, err)
}

// TestGuardedDDLBesideConcurrentTrash: a guarded statement (here ALTER
// TABLE … NO INHERIT) that waited for another session's transaction,
// which meanwhile moved a partitioned table and its partitions to the
// trash, is not refused for the partitions it found gone: their trash
// entry is their table's (the regression suite's parallel schedule hit
// this in insert_conflict, namespace and collate.icu.utf8).
func TestGuardedDDLBesideConcurrentTrash(t *testing.T) {
	e := newEnv(t, `CREATE TABLE up (a int, b text) PARTITION BY LIST (a);
CREATE TABLE up_1 PARTITION OF up FOR VALUES IN (1);
CREATE TABLE up_2 PARTITION OF up FOR VALUES IN (2);
INSERT INTO up VALUES (1, 'x'), (2, 'y');
CREATE TABLE lkp (id int);
CREATE TABLE lk () INHERITS (lkp);`)
	ctx := context.Background()
	a := testenv.Connect(t, e.proxy)
	b := testenv.Connect(t, e.proxy)
	_, err := a.Exec(ctx, "DELETE FROM up WHERE false") // the store, and the catalog
	require.NoError(t, err)
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE lk IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DROP TABLE up")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "ALTER TABLE lk NO INHERIT lkp")
		done <- err
	}()
	testenv.WaitFor(t, testenv.Hang, "the ALTER waits for the DROP's transaction", func() bool {
		return e.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%NO INHERIT%'") > 0
	})
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done)
	require.Zero(t, e.count("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'lk'::regclass"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM pg_class WHERE relnamespace = 'tombstone_trash'::regnamespace AND relkind = 'r'"))
}
