package test

// The overload attack (issue 15, item 1): a role that may create in public
// plants, for every built-in our code calls, a better-matching overload —
// and operators — that logs who runs it. Then every path that runs with
// more rights than that role runs: install, functions re-applied, the
// proxy's sync and the rewritten DELETE of a superuser, the DDL event
// triggers, every console command, the reaper. None may call anything
// planted.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

func TestPlantedOverloadsRunForNobody(t *testing.T) {
	e := newEnv(t, shopSchema+`
CREATE TABLE codes (code varchar PRIMARY KEY, label text);
CREATE TABLE coded (id int PRIMARY KEY, code varchar REFERENCES codes ON DELETE CASCADE,
  alt varchar REFERENCES codes ON DELETE SET NULL);
INSERT INTO codes SELECT 'c' || g, 'label ' || g FROM generate_series(1, 9) g;
INSERT INTO coded SELECT g, 'c' || (g % 9 + 1), 'c' || ((g + 1) % 9 + 1) FROM generate_series(1, 40) g;`)
	ctx := context.Background()
	m := tempRole(t, e, "LOGIN", "GRANT CREATE ON SCHEMA public TO %s; GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO %s")
	n := testenv.Plant(t, e.direct, m, "public")
	t.Logf("planted %d functions and operators in public", n)
	require.Greater(t, n, 1000)
	clean := func(step string) {
		t.Helper()
		require.Empty(t, testenv.PlantedCalls(t, e.direct, m, "public"), "after %s", step)
		require.False(t, isSuper(t, e, m), "after %s", step)
	}

	// tombstone init, then again with the functions re-applied.
	su := testenv.Connect(t, e.direct)
	opts := tombstone.InstallOptions{Protection: &tombstone.Protection{Schemas: []string{"public"}, Retention: time.Hour},
		Logger: zaptest.NewLogger(t)}
	require.NoError(t, tombstone.Install(ctx, su, opts))
	clean("install")
	_, err := su.Exec(ctx, "UPDATE tombstone.schema_version SET functions_md5 = NULL")
	require.NoError(t, err)
	require.NoError(t, tombstone.Install(ctx, su, opts))
	require.NoError(t, tombstone.Sync(ctx, su, opts))
	clean("functions re-applied")

	// The proxy's own sync and catalog load, a superuser's and the
	// attacker's captured deletes, the DDL event triggers.
	px := testenv.Connect(t, e.proxy)
	run := func(sqls ...string) {
		t.Helper()
		for _, sql := range sqls {
			_, err := px.Exec(ctx, sql)
			require.NoError(t, err, sql)
			clean(sql)
		}
	}
	run(
		"DELETE FROM tenants WHERE id = 1",
		"DELETE FROM links WHERE id IN (SELECT id FROM links WHERE url LIKE '%/1_')",
		"DELETE FROM codes WHERE code OPERATOR(pg_catalog.=) 'c1'", // the user's own '=' would be the planted one
		"DELETE FROM nodes WHERE id = 2",
		"CREATE TABLE public.later (id int PRIMARY KEY, v text, j jsonb)",
		"ALTER TABLE public.later ADD COLUMN w numeric, ALTER COLUMN v TYPE varchar(20)",
		"INSERT INTO public.later VALUES (1, 'a', '{}', 1)",
		"DELETE FROM public.later",
	)
	deleteAs(t, e, m, "DELETE FROM tenants WHERE id = 2")
	batch := batchOf(e, "postgres")

	// Every console command, as the superuser.
	run(
		"SHOW BATCHES",
		"SHOW BATCHES FOR sites LIMIT 5",
		fmt.Sprintf("SHOW BATCH %d", batch),
		"SHOW TOMBSTONES sites WHERE tenant_id = 2",
		"SHOW TOMBSTONE STATUS",
		fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batch),
		fmt.Sprintf("HOLD BATCH %d", batch),
		fmt.Sprintf("RELEASE BATCH %d", batch),
		fmt.Sprintf("UNDELETE BATCH %d", batch),
		"UNDELETE FROM tenants WHERE id = 2 DRY RUN",
		"UNDELETE FROM sites WHERE tenant_id = 2 ON CONFLICT SKIP",
		"UNDELETE FROM tenants WHERE id = 2",
		"TRUNCATE links",
		"UNDELETE FROM links",
		"DROP TABLE product_users",
		"UNDROP TABLE product_users",
		"PAUSE REAPER",
		"RESUME REAPER",
		"TOMBSTONE HELP",
	)

	// A session whose search_path puts public before pg_catalog, where
	// every unqualified name in what the proxy sends resolves to a clone:
	// its own statements name pg_catalog's operators in full.
	pf := testenv.Connect(t, e.proxy)
	_, err = pf.Exec(ctx, "SET search_path = public, pg_catalog")
	require.NoError(t, err)
	before := e.count("SELECT count(*) FROM tombstone.batches")
	for _, sql := range []string{
		"DELETE FROM tenants WHERE id OPERATOR(pg_catalog.=) 5",
		"DELETE FROM codes WHERE code OPERATOR(pg_catalog.=) 'c2'::varchar",
		"DELETE FROM nodes WHERE id OPERATOR(pg_catalog.=) 25",
		"TRUNCATE product_users",
		"DROP TABLE coded",
		"UNDROP TABLE coded",
		"SHOW BATCHES",
		"UNDELETE FROM codes WHERE code = 'c2'",
	} {
		_, err := pf.Exec(ctx, sql)
		require.NoError(t, err, sql)
		clean("public-first: " + sql)
	}
	require.Equal(t, before+4, e.count("SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, 5, e.count("SELECT count(*) FROM coded WHERE code::text = 'c2'"), "the cascade came back")

	// The reaper, over expired batches and trash.
	_, err = px.Exec(ctx, "DELETE FROM tenants WHERE id = 3; DROP TABLE product_users")
	require.NoError(t, err)
	_, err = su.Exec(ctx, `UPDATE tombstone.batches SET purge_after = pg_catalog.now() - interval '1 day';
		UPDATE tombstone.trash SET purge_after = pg_catalog.now() - interval '1 day'`)
	require.NoError(t, err)
	rep, err := tombstone.Reap(ctx, testenv.Connect(t, e.direct), tombstone.ReaperOptions{})
	require.NoError(t, err)
	require.Positive(t, rep.Rows)
	clean("reaper")
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches WHERE purged_at IS NULL"))
}

// TestTruncatePolicyIsTheDatabases (issue 15, item 7): a client calling
// capture_truncate itself, with anything as the argument that used to be
// the policy, still gets its rows captured; the policy is the stored one.
func TestTruncatePolicyIsTheDatabases(t *testing.T) {
	e := newEnv(t, shopSchema)
	px := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := px.Exec(ctx, "SELECT 1 FROM tenants LIMIT 1") // installs the store
	require.NoError(t, err)
	_, err = px.Exec(ctx, `CALL tombstone.capture_truncate(ARRAY['public.links'], ARRAY[false], false, false, '', 'TRUNCATE links', 'allow')`)
	require.NoError(t, err)
	require.Zero(t, e.count("SELECT count(*) FROM links"))
	require.Equal(t, 300, e.count("SELECT count(*) FROM tombstone.public__links WHERE _ts_cause = 'truncate'"), "captured all the same")
}

// TestTruncateUnderRowSecurityRefused (issue 15, item 6): a TRUNCATE by a
// role that row-level security hides rows from would remove rows the
// capture cannot see: refused, nothing removed. The owner truncates (and
// captures) all of them.
func TestTruncateUnderRowSecurityRefused(t *testing.T) {
	e := newEnv(t, shopSchema+`
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
CREATE POLICY evens ON products USING (id % 2 = 0);`)
	app := tempRole(t, e, "LOGIN", "GRANT SELECT, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO %s")
	ctx := context.Background()
	_, err := testenv.Connect(t, e.proxy).Exec(ctx, "SELECT 1") // installs the store
	require.NoError(t, err)
	for _, sql := range []string{"TRUNCATE products CASCADE", "TRUNCATE sites CASCADE"} {
		_, err = testenv.Connect(t, as(t, e.proxy, app)).Exec(ctx, sql)
		require.Equal(t, "42501", errCode(err), sql)
		require.Contains(t, err.Error(), "row-level security")
		require.Equal(t, 200, e.count("SELECT count(*) FROM products"))
		require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches"))
	}
	_, err = testenv.Connect(t, e.proxy).Exec(ctx, "TRUNCATE products CASCADE")
	require.NoError(t, err)
	require.Equal(t, 200, e.count("SELECT count(*) FROM tombstone.public__products"))
}

// TestDeleteUnderRowSecurity (issue 15, item 6): a DELETE whose cascade
// reaches a table with row-level security that hides rows from the
// deleting role would have Postgres's cascade (which no policy limits)
// remove rows the capture cannot see: refused, nothing removed. Where
// the policies hide nothing the cascade would remove — or the role is
// not subject to them — the delete is captured in full.
func TestDeleteUnderRowSecurity(t *testing.T) {
	e := newEnv(t, shopSchema+`
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
CREATE POLICY evens ON products USING (id % 2 = 0);`)
	app := tempRole(t, e, "LOGIN", "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO %s")
	ctx := context.Background()
	before := e.count("SELECT count(*) FROM products")
	_, err := testenv.Connect(t, as(t, e.proxy, app)).Exec(ctx, "DELETE FROM sites WHERE id = 1")
	require.Equal(t, "42501", errCode(err))
	require.Contains(t, err.Error(), "row-level security")
	require.Equal(t, before, e.count("SELECT count(*) FROM products"))
	require.Equal(t, 40, e.count("SELECT count(*) FROM sites"))

	// The owner is not subject to the policy: captured in full.
	_, err = testenv.Connect(t, e.proxy).Exec(ctx, "DELETE FROM sites WHERE id = 1")
	require.NoError(t, err)
	gone := before - e.count("SELECT count(*) FROM products")
	require.Positive(t, gone)
	require.Equal(t, gone, e.count("SELECT count(*) FROM tombstone.public__products"))
}

// TestRowSecurityOffTheCapturePath: row-level security on a table the
// rewrite captures nothing from (another role's table referencing a
// protected one, with no protected table below it) does not stop others'
// deletes.
func TestRowSecurityOffTheCapturePath(t *testing.T) {
	e := newEnv(t, shopSchema)
	other := tempRole(t, e, "LOGIN", "GRANT REFERENCES ON tenants TO %s; CREATE SCHEMA theirs AUTHORIZATION %s")
	execAs(t, e.direct, other, `
CREATE TABLE theirs.t (t int REFERENCES public.tenants ON DELETE SET NULL, u int REFERENCES public.tenants ON DELETE CASCADE);
ALTER TABLE theirs.t ENABLE ROW LEVEL SECURITY;`)
	app := tempRole(t, e, "LOGIN", "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO %s")
	_, err := testenv.Connect(t, as(t, e.proxy, app)).Exec(context.Background(), "DELETE FROM tenants WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.batches"))
}
