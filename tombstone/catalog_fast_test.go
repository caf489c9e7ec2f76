package tombstone_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// fastSig is the signature the catalog loaded for table, with its
// fingerprint replaced by a wrong one: check_catalog accepts it only on its
// fast path (nothing changed since the load), and raises TS001 on the full
// one.
func fastSig(t *testing.T, cat *tombstone.Catalog, table string) string {
	t.Helper()
	tb, ok := cat.Lookup("public", table)
	require.True(t, ok, table)
	_, rest, fast := strings.Cut(tb.Signature, ";")
	require.True(t, fast, "%s: loaded without the fast path: %q", table, tb.Signature)
	return "0123456789abcdef0123456789abcdef;" + rest
}

// checkCatalog runs check_catalog(table, sig) on c and reports whether it
// passed; any error but TS001 fails the test.
func checkCatalog(t *testing.T, c *pgx.Conn, table, sig string) bool {
	t.Helper()
	var ok bool
	err := c.QueryRow(context.Background(), "SELECT tombstone.check_catalog($1::regclass, $2)", table, sig).Scan(&ok)
	if tombstone.IsCatalogChanged(err) {
		return false
	}
	require.NoError(t, err)
	return ok
}

// TestCheckCatalogFastPath: a catalog loaded with the event triggers in
// place carries its snapshot, and check_catalog skips the full check only
// while no change of what a DELETE depends on has been logged since —
// whatever changed, whoever changed it, committed or in the statement's
// own transaction.
func TestCheckCatalogFastPath(t *testing.T) {
	su, dsn := setup(t, true)
	ctx := context.Background()
	other := testenv.Connect(t, dsn)

	cat := loadCatalog(t, su)
	require.True(t, checkCatalog(t, su, "sites", fastSig(t, cat, "sites")))
	// A partition named in a DELETE is its root's table.
	require.True(t, checkCatalog(t, su, "events_2024", fastSig(t, cat, "events")))
	// Reads, writes, the reaper's settings and a session's temporary
	// tables change nothing.
	exec(t, other, "INSERT INTO audit_log (msg) VALUES ('x'); UPDATE tenants SET name = name")
	exec(t, other, "CREATE TEMP TABLE scratch (id int PRIMARY KEY, v text); ALTER TABLE scratch ADD COLUMN w int; CREATE INDEX ON scratch (v)")
	exec(t, su, "UPDATE tombstone.settings SET value = value WHERE key <> 'protect.generation'")
	// DDL rolled back leaves nothing behind.
	exec(t, other, "BEGIN; ALTER TABLE sites ADD COLUMN gone int; ROLLBACK")
	require.True(t, checkCatalog(t, su, "sites", fastSig(t, cat, "sites")))
	// A name that resolves to another table (a temporary one) is not.
	exec(t, other, "CREATE TEMP TABLE sites (id int)")
	_, err := other.Exec(ctx, "SELECT tombstone.check_catalog('sites', $1)", fastSig(t, loadCatalog(t, su), "sites"))
	require.ErrorContains(t, err, "names a temporary table")

	for _, ddl := range []string{
		// what the signature fingerprints
		"ALTER TABLE product_users ADD COLUMN role text",
		"CREATE TABLE reviews (id int PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE CASCADE)",
		"ALTER TABLE links DROP CONSTRAINT links_site_id_fkey",
		"CREATE TABLE sites_child () INHERITS (sites)",
		"CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		"ALTER TABLE events DETACH PARTITION events_2025",
		// what the full check verifies besides
		"ALTER TABLE sites DISABLE TRIGGER _ts_capture",
		"ALTER TRIGGER _ts_capture ON sites RENAME TO renamed",
		"DROP TRIGGER _ts_capture ON sites",
		"ALTER TABLE products ENABLE ROW LEVEL SECURITY",
		"CREATE TEMP TABLE sites_temp_child () INHERITS (sites)",
		// under tags of their own
		"CREATE SCHEMA app2 CREATE TABLE invoices (id int PRIMARY KEY, site_id bigint REFERENCES public.sites ON DELETE CASCADE)",
		"CREATE SCHEMA app3 CREATE TABLE kid (extra text) INHERITS (public.sites)",
		// anything else the event triggers see: the log does not guess
		"CREATE TABLE unrelated (id int)",
		"ALTER TABLE audit_log ADD COLUMN extra int",
		"DROP TABLE audit_log",
		"ALTER SCHEMA public RENAME TO public",
	} {
		t.Run(ddl, func(t *testing.T) {
			c, dsn := setup(t, true)
			cat := loadCatalog(t, c)
			sig := fastSig(t, cat, "sites")
			d := testenv.Connect(t, dsn)
			// In the deleting transaction itself, before it commits.
			tx, err := d.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, ddl)
			if err != nil && strings.Contains(err.Error(), "already exists") {
				// (ALTER SCHEMA public RENAME TO public)
				require.NoError(t, tx.Rollback(ctx))
				exec(t, d, "ALTER SCHEMA public RENAME TO public_x; ALTER SCHEMA public_x RENAME TO public")
			} else {
				require.NoError(t, err)
				var ok bool
				err = tx.QueryRow(ctx, "SELECT tombstone.check_catalog('public.sites', $1)", sig).Scan(&ok)
				require.True(t, tombstone.IsCatalogChanged(err), "own transaction: %v", err)
				require.NoError(t, tx.Rollback(ctx))
				require.True(t, checkCatalog(t, c, "sites", sig), "rolled back")
				exec(t, d, ddl)
			}
			// Committed by another session.
			require.False(t, checkCatalog(t, c, "sites", sig), "committed")
			// A catalog loaded since takes the fast path again (unless the
			// change took it away from the table).
			if tb, _ := loadCatalog(t, c).Lookup("public", "sites"); strings.Contains(tb.Signature, ";") {
				require.True(t, checkCatalog(t, c, "sites", fastSig(t, loadCatalog(t, c), "sites")))
			}
		})
	}

	t.Run("protection", func(t *testing.T) {
		c, _ := setup(t, true)
		sig := fastSig(t, loadCatalog(t, c), "sites")
		p := protection()
		p.Exclude = append(p.Exclude, "public.nodes")
		require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{Protection: p}))
		require.False(t, checkCatalog(t, c, "sites", sig))
	})

	t.Run("event triggers disabled for a while", func(t *testing.T) {
		// DDL run while they were off went unlogged: turned on again,
		// they are not as they were at the load.
		c, _ := setup(t, true)
		sig := fastSig(t, loadCatalog(t, c), "sites")
		exec(t, c, "ALTER EVENT TRIGGER tombstone_ddl DISABLE; ALTER EVENT TRIGGER tombstone_drop DISABLE")
		exec(t, c, "CREATE TABLE pages (id int PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE CASCADE)")
		exec(t, c, "ALTER EVENT TRIGGER tombstone_ddl ENABLE ALWAYS; ALTER EVENT TRIGGER tombstone_drop ENABLE ALWAYS")
		require.False(t, checkCatalog(t, c, "sites", sig))
	})

	t.Run("event trigger disabled", func(t *testing.T) {
		c, _ := setup(t, true)
		sig := fastSig(t, loadCatalog(t, c), "sites")
		exec(t, c, "ALTER EVENT TRIGGER tombstone_ddl DISABLE")
		t.Cleanup(func() { _, _ = c.Exec(ctx, "ALTER EVENT TRIGGER tombstone_ddl ENABLE ALWAYS") })
		require.False(t, checkCatalog(t, c, "sites", sig))
		tb, _ := loadCatalog(t, c).Lookup("public", "sites")
		require.NotContains(t, tb.Signature, ";", "no fast path without the event triggers")
	})

	// (A capture trigger disabled or dropped is put back by the event
	// trigger's sync at once; the full check stands for when it was not.)
	t.Run("no fast path where the full check asks more", func(t *testing.T) {
		c, _ := setup(t, true)
		exec(t, c, "ALTER TABLE product_users ENABLE ROW LEVEL SECURITY")
		cat := loadCatalog(t, c)
		for table, fast := range map[string]bool{"tenants": false, "sites": false, "products": false, "users": true, "links": true, "nodes": true} {
			tb, ok := cat.Lookup("public", table)
			require.True(t, ok)
			require.Equal(t, fast, strings.Contains(tb.Signature, ";"), "%s: %s", table, tb.Signature)
		}
	})

	t.Run("pruned log", func(t *testing.T) {
		c, _ := setup(t, true)
		// Rows go once every snapshot sees them committed: a transaction
		// elsewhere in the cluster (other tests) may hold that back.
		prune := func() {
			deadline := time.Now().Add(time.Minute)
			for queryInt(t, c, "SELECT tombstone.prune_catalog_log('0')") == 0 {
				require.True(t, time.Now().Before(deadline), "nothing pruned")
				time.Sleep(100 * time.Millisecond)
			}
		}
		old := fastSig(t, loadCatalog(t, c), "sites")
		exec(t, c, "CREATE TABLE unrelated (id int)")
		sig := fastSig(t, loadCatalog(t, c), "sites")
		require.True(t, checkCatalog(t, c, "sites", sig))
		prune()
		require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.catalog_log WHERE horizon"))
		// A catalog loaded before the pruned changes committed cannot know
		// them: the full check.
		require.False(t, checkCatalog(t, c, "sites", old))
		exec(t, c, "CREATE TABLE unrelated2 (id int)")
		prune()
		require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.catalog_log WHERE horizon"))
		require.True(t, checkCatalog(t, c, "sites", fastSig(t, loadCatalog(t, c), "sites")))
	})

	t.Run("application roles", func(t *testing.T) {
		c, dsn := setup(t, true)
		app := newRole(t, dsn, "ts_app")
		exec(t, c, "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO "+app)
		ac := testenv.Connect(t, withUser(t, dsn, app))
		sig := fastSig(t, loadCatalog(t, c), "sites")
		require.True(t, checkCatalog(t, ac, "sites", sig))
		for _, sql := range []string{
			"DELETE FROM tombstone.catalog_log",
			"INSERT INTO tombstone.catalog_log DEFAULT VALUES",
			"UPDATE tombstone.catalog_log SET horizon = false",
			"SELECT tombstone.prune_catalog_log('0')",
			"SELECT tombstone._catalog_logged()",
		} {
			_, err := ac.Exec(ctx, sql)
			require.ErrorContains(t, err, "permission denied", sql)
		}
		require.True(t, checkCatalog(t, ac, "sites", sig))
	})
}

// TestCatalogsPollLoggedChange: a change logged without a NOTIFY (DDL in
// a transaction block on a server that allows prepared transactions) is
// found by the listener's poll, and the catalog reloaded; without one, the
// catalog stays.
func TestCatalogsPollLoggedChange(t *testing.T) {
	c, dsn := setup(t, true)
	ctx := context.Background()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	db := strings.TrimPrefix(u.Path, "/")
	defer func(d time.Duration) { tombstone.PollEvery = d }(tombstone.PollEvery)
	tombstone.PollEvery = 100 * time.Millisecond
	cats := tombstone.NewCatalogs(dsn, tombstone.InstallOptions{Protection: protection()}, zaptest.NewLogger(t))
	t.Cleanup(cats.Close)

	// (A first load whose sync wrote goes without the fast path, and the
	// next use loads again.)
	current := func() rewrite.GenerationalCatalog {
		cat, err := cats.Catalog(ctx, db)
		require.NoError(t, err)
		return cat
	}
	// (The listener marks it stale once when it starts listening.)
	current()
	time.Sleep(300 * time.Millisecond)
	cat := current()
	sites, _ := cat.Lookup("public", "sites")
	require.Contains(t, sites.Signature, ";")

	time.Sleep(time.Second) // ten polls
	require.Equal(t, cat.Generation(), current().Generation(), "reloaded with nothing logged")

	exec(t, c, "INSERT INTO tombstone.catalog_log DEFAULT VALUES")
	deadline := time.Now().Add(10 * time.Second)
	for current().Generation() == cat.Generation() {
		require.True(t, time.Now().Before(deadline), "the logged change was not noticed")
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCatalogsLoadConnection: reloads reuse one connection (a backend
// started per load cost a DDL statement some 70 ms), a load whose kept
// connection was ended meanwhile takes a new one, and Release closes it
// along with the listener's, so the database can be dropped.
func TestCatalogsLoadConnection(t *testing.T) {
	c, dsn := setup(t, true)
	ctx := context.Background()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	db := strings.TrimPrefix(u.Path, "/")
	cats := tombstone.NewCatalogs(dsn, tombstone.InstallOptions{Protection: protection()}, zaptest.NewLogger(t))
	t.Cleanup(cats.Close)
	cats.SetReloadOnChange(false)

	// The loads' backends: the proxy's connections but the listener.
	loaders := func() []int64 {
		rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = $1 AND application_name = 'tombstone proxy'
			  AND query NOT LIKE 'LISTEN%' AND query NOT LIKE '%catalog_log l%' AND query <> '' ORDER BY pid`, db)
		require.NoError(t, err)
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		require.NoError(t, err)
		return pids
	}
	var first []int64
	for i := range 3 {
		cats.Invalidate(db)
		require.True(t, cats.Stale(db) || i == 0)
		cat, err := cats.Catalog(ctx, db)
		require.NoError(t, err)
		_, ok := cat.Lookup("public", "sites")
		require.True(t, ok)
		if i == 0 {
			// (The install's own connection goes as the load starts.)
			require.Eventually(t, func() bool { first = loaders(); return len(first) == 1 },
				5*time.Second, 20*time.Millisecond, "one load connection")
			continue
		}
		require.Equal(t, first, loaders(), "load %d used another connection", i+1)
	}

	// Ended while kept (a restart, idle_session_timeout): the next load
	// finds out, and loads on a new connection instead of failing.
	exec(t, c, "SELECT pg_terminate_backend($1)", first[0])
	require.Eventually(t, func() bool { return len(loaders()) == 0 }, 5*time.Second, 20*time.Millisecond)
	cats.Invalidate(db)
	_, err = cats.Catalog(ctx, db)
	require.NoError(t, err, "the load after its connection was ended")
	require.NotEqual(t, first, loaders())

	cats.Release(db)
	require.Eventually(t, func() bool {
		return queryInt(t, c, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tombstone proxy'`, db) == 0
	}, 5*time.Second, 20*time.Millisecond, "Release left a connection to the database")
}
