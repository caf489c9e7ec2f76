package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// psql runs the psql client through the proxy on script (one command per
// -c, as a DBA would type them) and returns its combined output.
func psql(t *testing.T, dsn string, cmds ...string) string {
	t.Helper()
	bin := testenv.Tool(t, "psql")
	args := []string{"-X", "--no-psqlrc", "-d", dsn}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "psql: %s", out)
	return string(out)
}

// tenantsDeleted is a fresh saas database where tenants 3 and 4 were
// deleted through the proxy: the env, a connection through the proxy and
// the batch.
func tenantsDeleted(t *testing.T) (*env, *pgx.Conn, int) {
	t.Helper()
	e := newEnv(t, saasSchema)
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "DELETE FROM tenants WHERE id IN (3, 4)")
	require.NoError(t, err)
	return e, p, e.count("SELECT max(id) FROM tombstone.batches")
}

// TestConsoleWithPsql runs the console's read and dry-run commands with
// the real psql through the proxy and checks what it prints.
func TestConsoleWithPsql(t *testing.T) {
	e, _, batch := tenantsDeleted(t)

	out := psql(t, e.proxy, "SHOW BATCHES", fmt.Sprintf("SHOW BATCH %d", batch),
		"SHOW TOMBSTONES tenants WHERE id = 3", "SHOW TOMBSTONES public.sites WHERE tenant_id = 4 AND name LIKE '%2' LIMIT 5",
		fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batch), "TOMBSTONE HELP", "SHOW TOMBSTONE STATUS",
		"PAUSE REAPER", "RESUME REAPER", fmt.Sprintf("HOLD BATCH %d", batch), fmt.Sprintf("RELEASE BATCH %d", batch))
	t.Log(out)
	// SHOW BATCHES: header, the batch, its SQL, state.
	require.Regexp(t, `(?m)^\s*batch\s*\|\s*stmt_time\s*\|`, out)
	require.Regexp(t, fmt.Sprintf(`(?m)^\s*%d \|.*\| active\s*\|.*DELETE FROM tenants WHERE id IN \(3, 4\)`, batch), out)
	// SHOW BATCH: one row per table with rows, stored and causes.
	require.Regexp(t, `(?m)\| public\.product_users\s*\|\s*48 \|\s*48 \| cascade=48\s*\|`, out)
	require.Regexp(t, `(?m)\| public\.tenants\s*\|\s*2 \|\s*2 \| delete=2\s*\|`, out)
	require.Contains(t, out, "(7 rows)")
	// SHOW TOMBSTONES: the row itself, columns in table order.
	require.Contains(t, out, `| delete | `)
	require.Contains(t, out, `{"id":3,"name":"tenant 3","plan":"free"}`)
	require.Contains(t, out, `"name":"Site 4 2","slug":"site-4-2"`)
	// UNDELETE … DRY RUN: per table, restored and conflicts.
	require.Regexp(t, `(?m)^\s*table_name\s*\|\s*restored\s*\|\s*conflicts\s*\|\s*skipped`, out)
	require.Regexp(t, `(?m)^\s*public\.nodes\s*\|\s*30 \|\s*0 \|\s*0$`, out)
	require.Regexp(t, `(?m)^\s*public\.links\s*\|\s*28 \|\s*0 \|\s*0$`, out, "re-links counted as the restore will")
	// TOMBSTONE HELP lists every command.
	for _, c := range []string{"SHOW BATCHES [FOR <table>]", "UNDELETE FROM <table> [WHERE <predicate>]", "UNDROP TABLE <table>",
		"PURGE BATCH <id>", "SHOW TOMBSTONE STATUS", "PAUSE REAPER"} {
		require.Contains(t, out, c)
	}
	// SHOW TOMBSTONE STATUS and the reaper flag.
	require.Regexp(t, `(?m)^\s*schema_version\s*\|\s*\d+`, out)
	require.Regexp(t, `(?m)^\s*tombstones public\.tenants\s*\|\s*2$`, out)
	require.Regexp(t, `(?m)^\s*batches_active\s*\|\s*1$`, out)
	require.Regexp(t, `(?m)^\s*event_triggers\s*\|\s*installed$`, out)
	require.Regexp(t, `(?m)^\s*reaper_paused\s*\n-+\n\s*t\n`, out)
	require.Equal(t, 0, e.count("SELECT count(*) FROM tenants WHERE id IN (3, 4)"), "dry run changed nothing")
	require.Equal(t, "false", queryText(t, e.direct, "SELECT value::text FROM tombstone.settings WHERE key = 'reaper.paused'"))

	// PAUSE REAPER persists; status shows it.
	psql(t, e.proxy, "PAUSE REAPER")
	out = psql(t, e.proxy, "SHOW TOMBSTONE STATUS")
	require.Regexp(t, `(?m)^\s*reaper_paused\s*\|\s*true$`, out)

	// An error through psql: the message, the SQLSTATE-backed hint.
	cmd := exec.Command("psql", "-X", "-d", e.proxy, "-c", "UNDELETE EVERYTHING")
	eout, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(eout), `unknown command "UNDELETE EVERYTHING"`)
	require.Contains(t, string(eout), "HINT:  Usage: UNDELETE BATCH <id>")
}

func queryText(t *testing.T, dsn, sql string) string {
	t.Helper()
	c := testenv.Connect(t, dsn)
	var s string
	require.NoError(t, c.QueryRow(context.Background(), sql).Scan(&s))
	return s
}

// TestConsoleSession: commands run in the session's transaction, errors
// leave the session usable, predicates cannot smuggle in SQL, and purge,
// hold and release work through the proxy.
func TestConsoleSession(t *testing.T) {
	e, p, batch := tenantsDeleted(t)
	ctx := context.Background()
	after := e.snapshot(saasTables...)
	stored := e.count("SELECT count(*) FROM tombstone.public__products")

	// BEGIN; UNDELETE …; look; ROLLBACK leaves everything as it was.
	simple(t, p, "BEGIN")
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Equal(t, []string{"public.tenants", "2", "0", "0"}, findRow(res, "public.tenants"))
	in, _ := simple(t, p, "SELECT count(*) FROM tenants WHERE id IN (3, 4)")
	require.Equal(t, "2", in[0][0], "visible inside the transaction")
	st, _ := simple(t, p, fmt.Sprintf("SELECT state FROM tombstone.show_batches() WHERE batch = %d", batch))
	require.Equal(t, "restored", st[0][0])
	simple(t, p, "ROLLBACK")
	require.Equal(t, after, e.snapshot(saasTables...))
	require.Equal(t, stored, e.count("SELECT count(*) FROM tombstone.public__products"))
	require.Equal(t, 0, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.batches WHERE id = %d AND restored_at IS NOT NULL", batch)))

	// Unknown commands and bad syntax: 42601 with the usage line; the
	// session stays usable.
	for cmd, hint := range map[string]string{
		"UNDELETE EVERYTHING":                 "Usage: UNDELETE BATCH <id>",
		"UNDELETE BATCH x":                    "Usage: UNDELETE BATCH <id> [DRY RUN]",
		"SHOW BATCHES FOR":                    "Usage: SHOW BATCHES [FOR <table>]",
		"UNDELETE BATCH 1 ON CONFLICT IGNORE": "ON CONFLICT FAIL|SKIP|OVERWRITE",
		"PURGE BATCH":                         "Usage: PURGE BATCH <id>",
		"SHOW TOMBSTONES tenants WHERE id = 3; DROP TABLE tenants": "SHOW TOMBSTONES <table>",
		"UNDELETE FROM tenants WHERE id = 3) OR (true":             "UNDELETE FROM <table>",
		"SHOW TOMBSTONES tenants WHERE (SELECT true) LIMIT 1 --":   "",
	} {
		err := p.PgConn().Exec(ctx, cmd).Close()
		if hint == "" {
			// A subquery is an expression: allowed, and harmless.
			require.NoError(t, err, cmd)
			continue
		}
		pe := pgErrOf(t, err)
		require.Equal(t, "42601", pe.Code, cmd)
		require.Contains(t, pe.Hint, hint, cmd)
		one, _ := simple(t, p, "SELECT 1")
		require.Equal(t, "1", one[0][0])
	}
	require.Equal(t, 20-2, e.count("SELECT count(*) FROM tenants"), "nothing was dropped")
	require.Equal(t, after, e.snapshot(saasTables...))

	// RESET BREAKER is not available yet: a clear 0A000, not silence.
	pe := pgErrOf(t, p.PgConn().Exec(ctx, "RESET BREAKER").Close())
	require.Equal(t, "0A000", pe.Code)

	// HOLD blocks PURGE; RELEASE lets it; PURGE removes the tombstones.
	simple(t, p, fmt.Sprintf("HOLD BATCH %d", batch))
	pe = pgErrOf(t, p.PgConn().Exec(ctx, fmt.Sprintf("PURGE BATCH %d", batch)).Close())
	require.Equal(t, "55000", pe.Code)
	require.Contains(t, pe.Hint, "RELEASE BATCH")
	simple(t, p, fmt.Sprintf("RELEASE BATCH %d", batch))
	purged, _ := simple(t, p, fmt.Sprintf("PURGE BATCH %d", batch))
	require.Equal(t, []string{"public.tenants", "2"}, findRow(purged, "public.tenants"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.public__products"))
	b, _ := simple(t, p, "SHOW BATCHES")
	require.Equal(t, "purged", b[0][8])
	pe = pgErrOf(t, p.PgConn().Exec(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch)).Close())
	require.Equal(t, "55000", pe.Code)
}

// TestConsoleNotAdmin: a role outside tombstone_admin gets 42501 with the
// GRANT hint for every console command that reads or restores, and may
// still delete (its deletes are captured).
// tempRole creates a role for the test (CREATE ROLE name attrs, then
// setup with its name for each %s), dropped with what it owns at the end.
func tempRole(t *testing.T, e *env, attrs, setup string) string {
	t.Helper()
	role := fmt.Sprintf("ts_role_%d", rand.Uint32())
	_, err := testenv.Connect(t, e.direct).Exec(context.Background(),
		fmt.Sprintf("CREATE ROLE %s %s; ", role, attrs)+strings.ReplaceAll(setup, "%s", role))
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), e.direct)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %s; DROP ROLE IF EXISTS %s", role, role))
	})
	return role
}

func TestConsoleNotAdmin(t *testing.T) {
	e := newEnv(t, saasSchema)
	ctx := context.Background()
	role := tempRole(t, e, "LOGIN", "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO %s")
	u, _ := url.Parse(e.proxy)
	u.User = url.User(role)
	app := testenv.Connect(t, u.String())
	// Register after Connect so the role's connection closes before the
	// role is dropped (cleanups run last-in first-out).
	t.Cleanup(func() { _ = app.Close(context.Background()) })

	tag, err := app.Exec(ctx, "DELETE FROM product_users WHERE product_id < 20")
	require.NoError(t, err)
	require.NotEqual(t, "DELETE 0", tag.String())
	batch := e.count("SELECT max(id) FROM tombstone.batches")
	for _, cmd := range []string{"SHOW BATCHES", fmt.Sprintf("SHOW BATCH %d", batch), "SHOW TOMBSTONES product_users",
		fmt.Sprintf("UNDELETE BATCH %d", batch), fmt.Sprintf("UNDELETE FROM product_users BATCH %d DRY RUN", batch),
		fmt.Sprintf("PURGE BATCH %d", batch), fmt.Sprintf("HOLD BATCH %d", batch), "PAUSE REAPER", "SHOW TOMBSTONE STATUS"} {
		pe := pgErrOf(t, app.PgConn().Exec(ctx, cmd).Close())
		require.Equal(t, "42501", pe.Code, cmd)
		require.Equal(t, "GRANT tombstone_admin TO "+role, pe.Hint, cmd)
	}
	// Nor can it read the store directly.
	pe := pgErrOf(t, app.PgConn().Exec(ctx, "SELECT * FROM tombstone.public__product_users").Close())
	require.Equal(t, "42501", pe.Code)
	// TOMBSTONE HELP needs no privilege.
	help, _ := simple(t, app, "TOMBSTONE HELP")
	require.NotEmpty(t, help)

	// Granted, it works.
	_, err = testenv.Connect(t, e.direct).Exec(ctx, "GRANT tombstone_admin TO "+role)
	require.NoError(t, err)
	rows, _ := simple(t, app, "SHOW BATCHES")
	require.Len(t, rows, 1)
}

// TestConsoleConflicts: rows written since the delete take the keys of
// deleted ones; DRY RUN reports them, FAIL refuses with the keys, SKIP keeps
// the newer rows (theirs stay tombstones), OVERWRITE replaces them.
func TestConsoleConflicts(t *testing.T) {
	e := newEnv(t, saasSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	before := e.snapshot(saasTables...)
	_, err := p.Exec(ctx, "DELETE FROM tenants WHERE id IN (3, 4, 6)")
	require.NoError(t, err)
	batch := e.count("SELECT max(id) FROM tombstone.batches")
	_, err = p.Exec(ctx, "INSERT INTO tenants VALUES (3, 'new three', 'pro'), (6, 'new six', 'pro'); INSERT INTO users VALUES (41, 3, 'new@3')")
	require.NoError(t, err)
	mid := e.snapshot(saasTables...)

	// DRY RUN: counts per table, nothing changes, in every mode.
	for _, mode := range []string{"", " ON CONFLICT FAIL", " ON CONFLICT SKIP", " ON CONFLICT OVERWRITE"} {
		dry, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d DRY RUN%s", batch, mode))
		want := "1"
		if mode == " ON CONFLICT OVERWRITE" {
			want = "3"
		}
		require.Equal(t, []string{"public.tenants", want, "2", "0"}, findRow(dry, "public.tenants"), mode)
		require.Equal(t, "1", findRow(dry, "public.users")[2], mode)
	}
	require.Equal(t, mid, e.snapshot(saasTables...))

	// FAIL (the default): refused, keys listed, nothing changed.
	pe := pgErrOf(t, p.PgConn().Exec(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch)).Close())
	require.Equal(t, "23505", pe.Code)
	require.Contains(t, pe.Message, "2 row(s) to restore into public.tenants conflict")
	require.Equal(t, "Key (id)=(3), (6) already exist in public.tenants.", pe.Detail)
	require.Contains(t, pe.Hint, "ON CONFLICT SKIP")
	require.Equal(t, mid, e.snapshot(saasTables...))

	// SKIP on tenant 6 only (UNDELETE FROM): the newer tenant 6 stays, and
	// so does everything deleted with the old one — its sites and all
	// below stay tombstones, never attached to the newer customer.
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE FROM tenants WHERE id = 6 BATCH %d ON CONFLICT SKIP", batch))
	require.Equal(t, []string{"public.tenants", "0", "1", "0"}, findRow(res, "public.tenants"))
	require.Equal(t, []string{"public.sites", "0", "0", "3"}, findRow(res, "public.sites"))
	require.Equal(t, "new six", queryText(t, e.direct, "SELECT name FROM tenants WHERE id = 6"))
	require.Equal(t, 0, e.count("SELECT count(*) FROM sites WHERE tenant_id = 6"))
	require.Equal(t, 1, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.public__tenants WHERE _ts_batch = %d AND id = 6", batch)),
		"the skipped row stays a tombstone")
	require.Equal(t, 3, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.public__sites WHERE _ts_batch = %d AND tenant_id = 6", batch)),
		"and so do the rows deleted with it")

	// OVERWRITE on the rest: tenant 3 replaced by its old self, user 41
	// replaced too; tenant 4 restored.
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE FROM tenants WHERE id IN (3, 4) BATCH %d ON CONFLICT OVERWRITE", batch))
	require.Equal(t, []string{"public.tenants", "2", "1", "0"}, findRow(res, "public.tenants"))
	require.Equal(t, "tenant 3", queryText(t, e.direct, "SELECT name FROM tenants WHERE id = 3"))
	require.Equal(t, "user1@t4", queryText(t, e.direct, "SELECT email FROM users WHERE id = 41"))
	// OVERWRITE on tenant 6: the old tenant replaces the newer one, and
	// its rows come back with it. Everything is as before the delete.
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE FROM tenants WHERE id = 6 BATCH %d ON CONFLICT OVERWRITE", batch))
	require.Equal(t, []string{"public.sites", "3", "0", "0"}, findRow(res, "public.sites"))
	require.Equal(t, before, e.snapshot(saasTables...))
}

// TestConsoleDrift: the schema changes between delete and restore — a
// column added (restores as its default), one dropped (ignored; its old
// values stay visible in SHOW TOMBSTONES), one renamed (followed) — and
// identity and generated columns come back right.
func TestConsoleDrift(t *testing.T) {
	e := newEnv(t, saasSchema)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	d := testenv.Connect(t, e.direct)
	_, err := p.Exec(ctx, "DELETE FROM sites WHERE tenant_id = 8")
	require.NoError(t, err)
	batch := e.count("SELECT max(id) FROM tombstone.batches")
	for _, sql := range []string{
		"ALTER TABLE sites ADD COLUMN region text NOT NULL DEFAULT 'eu'",
		"ALTER TABLE sites DROP COLUMN meta",
		"ALTER TABLE sites RENAME COLUMN name TO title",
		"ALTER TABLE products ADD COLUMN stock int DEFAULT 7",
	} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	ts, _ := simple(t, p, "SHOW TOMBSTONES sites WHERE title = 'Site 8 1'")
	require.Len(t, ts, 1)
	require.Contains(t, ts[0][3], `"title":"Site 8 1"`)
	require.Contains(t, ts[0][3], `"meta":{"s": 1, "t": 8}`, "the dropped column's old value stays readable")

	res, _ := simple(t, p, fmt.Sprintf("UNDELETE FROM sites WHERE title LIKE 'Site 8%%' BATCH %d", batch))
	require.Equal(t, []string{"public.sites", "3", "0", "0"}, findRow(res, "public.sites"))
	require.Equal(t, []string{"public.products", "12", "0", "0"}, findRow(res, "public.products"))
	var ids []int64
	var slugs, regions []string
	rows, err := d.Query(ctx, "SELECT id, slug, region FROM sites WHERE tenant_id = 8 ORDER BY id")
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var slug, region string
		require.NoError(t, rows.Scan(&id, &slug, &region))
		ids, slugs, regions = append(ids, id), append(slugs, slug), append(regions, region)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int64{22, 23, 24}, ids, "GENERATED ALWAYS identity values as they were")
	require.Equal(t, []string{"site-8-1", "site-8-2", "site-8-3"}, slugs, "stored generated column recomputed")
	require.Equal(t, []string{"eu", "eu", "eu"}, regions, "added column takes its default")
	require.Equal(t, 12, e.count("SELECT count(*) FROM products p JOIN sites s ON s.id = p.site_id WHERE s.tenant_id = 8 AND p.stock = 7"))
	require.Equal(t, 15, e.count("SELECT count(*) FROM nodes n WHERE n.id / 100 IN (22, 23, 24)"), "the trees came back")
	// New sites still get fresh identity values.
	_, err = p.Exec(ctx, "INSERT INTO sites (tenant_id, title) VALUES (8, 'Later')")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM sites WHERE title = 'Later' AND id > 60"))
	require.True(t, strings.HasPrefix(queryText(t, e.direct, "SELECT state FROM tombstone.show_batches() LIMIT 1"), "restored"))
}
