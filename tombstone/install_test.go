package tombstone_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

func TestInstallIdempotent(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	require.Equal(t, int64(tombstone.SchemaVersion), queryInt(t, c, "SELECT version FROM tombstone.schema_version"))
	shadows := queryInt(t, c, "SELECT count(*) FROM tombstone.shadows")
	require.Equal(t, int64(8), shadows, "one shadow per protected table (audit_log excluded, partitions via root)")
	gen := queryString(t, c, "SELECT value::text FROM tombstone.settings WHERE key = 'protect.generation'")
	objects := `SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tombstone'`
	before := queryString(t, c, objects)
	xmin := queryString(t, c, "SELECT xmin::text FROM tombstone.schema_version")

	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: protection()}))
	require.Equal(t, before, queryString(t, c, objects))
	require.Equal(t, xmin, queryString(t, c, "SELECT xmin::text FROM tombstone.schema_version"), "second install rewrote schema_version")
	require.Equal(t, gen, queryString(t, c, "SELECT value::text FROM tombstone.settings WHERE key = 'protect.generation'"))
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'tombstone_%'"))
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	require.Equal(t, before, queryString(t, c, objects))
}

func TestInstallConcurrent(t *testing.T) {
	dsn := newDB(t)
	c := testenv.Connect(t, dsn)
	exec(t, c, fixture)
	const n = 4
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = testenv.Connect(t, dsn)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = tombstone.Install(context.Background(), conns[i], tombstone.InstallOptions{Protection: protection()})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(8), queryInt(t, c, "SELECT count(*) FROM tombstone.shadows"))
}

func TestSyncNotInstalled(t *testing.T) {
	c := testenv.Connect(t, newDB(t))
	require.ErrorIs(t, tombstone.Sync(context.Background(), c, tombstone.InstallOptions{}), tombstone.ErrNotInstalled)
	_, err := tombstone.LoadCatalog(context.Background(), c, tombstone.CatalogOptions{})
	require.ErrorIs(t, err, tombstone.ErrNotInstalled)
}

// TestInstallUpgradeFromVersion3: a store of schema version 3 (before
// migration 004 and this restore) with tombstones in it upgrades in place:
// the new columns come, the functions whose results changed are replaced,
// and the old tombstones restore.
func TestInstallUpgradeFromVersion3(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	before := dump(t, c)
	batch := deleteVia(t, c, loadCatalog(t, c), "DELETE FROM sites WHERE id = 1")
	// Back to version 3: without 004's columns, with functions of another
	// text (so Install applies them again).
	exec(t, c, `ALTER TABLE tombstone.batches DROP COLUMN partly_restored_at;
		ALTER TABLE tombstone.shadows DROP COLUMN purged_through;
		UPDATE tombstone.schema_version SET version = 3, functions_md5 = 'old'`)
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: protection()}))
	require.Equal(t, int64(tombstone.SchemaVersion), queryInt(t, c, "SELECT version FROM tombstone.schema_version"))
	require.Equal(t, int64(2), queryInt(t, c, `SELECT count(*) FROM pg_attribute
		WHERE (attrelid, attname) IN (('tombstone.batches'::regclass, 'partly_restored_at'), ('tombstone.shadows'::regclass, 'purged_through'))`))
	rs, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, rs)
	require.Equal(t, before, dump(t, c))
}

// TestEveryFunctionPinsSearchPath: after install every function of the
// tombstone schema runs with the fixed search_path, each from its own
// CREATE FUNCTION: functions whose settings are gone (a store whose
// functions were hardened afterwards, by an older version) get the same
// ones back when Install applies the files again, and a function without
// it fails the install (functions_check.sql).
func TestEveryFunctionPinsSearchPath(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	settings := `SELECT string_agg(p.oid::regprocedure || ' ' || coalesce(p.proconfig::text, '-'), E'\n' ORDER BY p.oid::regprocedure::text)
		FROM pg_proc p WHERE p.pronamespace = 'tombstone'::regnamespace`
	require.Equal(t, "", queryString(t, c, `SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), '') FROM pg_proc p
		WHERE p.pronamespace = 'tombstone'::regnamespace
		  AND NOT coalesce('search_path=pg_catalog, tombstone, pg_temp' = ANY (p.proconfig), false)`), "functions without the fixed search_path")
	require.Greater(t, queryInt(t, c, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'tombstone'::regnamespace"), int64(150))
	want := queryString(t, c, settings)

	exec(t, c, `DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.prokind FROM pg_proc p
              WHERE p.pronamespace = 'tombstone'::regnamespace AND p.proname NOT LIKE '\_ts\_cap\_%' LOOP
        EXECUTE format('ALTER %s %s RESET ALL', CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
    END LOOP;
END $$;
UPDATE tombstone.schema_version SET functions_md5 = 'old'`)
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: protection()}))
	require.Equal(t, want, queryString(t, c, settings), "settings after the files were applied again")

	exec(t, c, `CREATE FUNCTION tombstone.unpinned() RETURNS int LANGUAGE sql AS 'SELECT 1';
UPDATE tombstone.schema_version SET functions_md5 = 'old'`)
	err := tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: protection()})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42P13", pgErr.Code)
	require.Contains(t, pgErr.Message, "tombstone.unpinned()")
	require.Contains(t, err.Error(), "functions_check.sql")
}

// TestInstallKeepsRulesInForce: an install with KeepStored (the proxy's)
// stores its rules in a database that has none yet, but does not replace
// rules in force: a proxy started without --config once put retention
// back from 2 s to 168 h with no log line. It warns instead; an install
// without KeepStored (`tombstone init --config`) replaces them.
func TestInstallKeepsRulesInForce(t *testing.T) {
	ctx := context.Background()
	rules := `SELECT (SELECT value::text FROM tombstone.settings WHERE key = 'protect.retention') || ' ' ||
		(SELECT count(*) FROM tombstone.protected)::text || ' ' ||
		(SELECT value::text FROM tombstone.settings WHERE key = 'protect.generation')`

	// A first install with KeepStored stores its rules.
	c := testenv.Connect(t, newDB(t))
	exec(t, c, fixture)
	short := protection()
	short.Retention = 2 * time.Second
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: short, KeepStored: true}))
	inForce := queryString(t, c, rules)
	require.Contains(t, inForce, `"00:00:02"`)

	// A proxy with the defaults starts: the rules stay, and it says so.
	core, logs := observer.New(zap.WarnLevel)
	defaults := &tombstone.Protection{Schemas: []string{"public"}}
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: defaults, KeepStored: true, Logger: zap.New(core)}))
	require.Equal(t, inForce, queryString(t, c, rules), "rules, and their generation, unchanged")
	require.Equal(t, 1, logs.FilterMessageSnippet("keeping the database's rules").Len())

	// The same rules again: nothing to say.
	core, logs = observer.New(zap.WarnLevel)
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: short, KeepStored: true, Logger: zap.New(core)}))
	require.Zero(t, logs.Len())

	// A proxy whose control role is an administrator, not the store's
	// owner, may not write the rules, so it cannot compare them by
	// writing: it keeps them, and starts (it used to fail the install).
	dsn := c.Config().ConnString()
	admin := newRole(t, dsn, "ts_keep")
	exec(t, c, "GRANT tombstone_admin TO "+admin)
	exec(t, c, fmt.Sprintf("DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %%I TO %s', current_database()); END $$", admin))
	ac := testenv.Connect(t, withUser(t, dsn, admin))
	core, logs = observer.New(zap.InfoLevel)
	require.NoError(t, tombstone.Install(ctx, ac, tombstone.InstallOptions{Protection: defaults, KeepStored: true, Logger: zap.New(core)}))
	require.Equal(t, inForce, queryString(t, c, rules))
	require.Equal(t, 1, logs.FilterMessageSnippet("this role may not write them").Len())

	// tombstone init --config replaces them.
	require.NoError(t, tombstone.Install(ctx, c, tombstone.InstallOptions{Protection: defaults}))
	require.NotEqual(t, inForce, queryString(t, c, rules))
	require.Contains(t, queryString(t, c, rules), `"168:00:00"`)
}
