package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// secondProxy starts another proxy in front of e's database, with its
// own planner and catalog cache, as a second host of a fleet would run
// it, and returns its DSN for that database.
func secondProxy(t *testing.T, e *env) string {
	t.Helper()
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(e.cats, rewrite.NewCache(64), proxy.Policies{})
	})
	return withDB(t, px.DSN, dbName(t, e.direct))
}

// TestFreezeDeletes: FREEZE DELETES through one proxy refuses, through
// another proxy and in sessions that were open before it, every DELETE,
// TRUNCATE and DROP TABLE that would remove rows of a protected table —
// nothing removed, TS020 naming who froze, the session usable — while
// reads, inserts, updates and deletes of unprotected tables go on. THAW
// DELETES ends it. Only administrators may do either, and both are in
// the audit trail.
func TestFreezeDeletes(t *testing.T) {
	e := newEnv(t, saasSchema+`CREATE SCHEMA scratch; CREATE TABLE scratch.notes (id int PRIMARY KEY);
		INSERT INTO scratch.notes SELECT generate_series(1, 5);`)
	ctx := context.Background()
	admin := testenv.Connect(t, e.proxy)
	other := testenv.Connect(t, secondProxy(t, e)) // open before the freeze
	role := tempRole(t, e, "LOGIN", "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO %s")
	u, _ := url.Parse(e.proxy)
	u.User = url.User(role)
	app := testenv.Connect(t, u.String())
	t.Cleanup(func() { _ = app.Close(context.Background()) })

	// An ordinary role may neither freeze nor thaw, nor read the trail.
	for _, cmd := range []string{"FREEZE DELETES", "THAW DELETES", "SHOW AUDIT"} {
		pe := pgErrOf(t, app.PgConn().Exec(ctx, cmd).Close())
		require.Equal(t, "42501", pe.Code, cmd)
	}
	pe := pgErrOf(t, app.PgConn().Exec(ctx, "INSERT INTO tombstone.settings VALUES ('deletes.frozen', 'null')").Close())
	require.Equal(t, "42501", pe.Code)

	// A REPEATABLE READ transaction whose snapshot is older than the
	// freeze is stopped too (a serialization failure: retried, it sees
	// the freeze).
	rr, err := other.Begin(ctx)
	require.NoError(t, err)
	_, err = rr.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
	require.NoError(t, err)
	_, err = rr.Exec(ctx, "SELECT count(*) FROM tenants")
	require.NoError(t, err)
	defer func() { _ = rr.Rollback(ctx) }()

	// A FREEZE rolled back leaves no freeze, and nothing in the trail.
	tx, err := admin.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "FREEZE DELETES", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	status, _ := simple(t, admin, "SHOW TOMBSTONE STATUS")
	require.Equal(t, "false", findRow(status, "deletes_frozen")[1])
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.audit"))

	rows, _ := simple(t, admin, "FREEZE DELETES")
	require.Equal(t, "t", rows[0][0])
	require.Equal(t, "postgres", rows[0][1])
	before := e.snapshot(saasTables[1:]...) // all but tenants, which gets a row and an update below
	_, err = rr.Exec(ctx, "DELETE FROM users WHERE id = 12", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, "40001", errCode(err))
	require.NoError(t, rr.Rollback(ctx))
	batches := e.count("SELECT count(*) FROM tombstone.batches")

	refused := func(c *pgx.Conn, sql string) {
		t.Helper()
		pe := pgErrOf(t, c.PgConn().Exec(ctx, sql).Close())
		require.Equal(t, pgerr.DeletesFrozen, pe.Code, sql)
		require.Contains(t, pe.Message, "deletes are frozen (FREEZE DELETES by postgres", sql)
		require.Contains(t, pe.Hint, "THAW DELETES", sql)
		one, _ := simple(t, c, "SELECT 1")
		require.Equal(t, "1", one[0][0], "the session stays usable")
	}
	for _, c := range []*pgx.Conn{admin, other, app} {
		refused(c, "DELETE FROM tenants WHERE id = 1")
		refused(c, "DELETE FROM product_users WHERE product_id < 50")
		refused(c, "TRUNCATE product_users")
		refused(c, "WITH d AS (DELETE FROM users WHERE id = 11 RETURNING *) SELECT count(*) FROM d")
	}
	refused(admin, "DROP TABLE links")
	// Deletes the rewrite never sees — in a DO block, a function, a
	// trigger, on a direct connection — are refused by the capture
	// triggers while frozen.
	refused(app, "DO $$BEGIN DELETE FROM tenants WHERE id = 1; END$$")
	direct := testenv.Connect(t, e.direct)
	refused(direct, "DELETE FROM users WHERE id = 11")
	refused(direct, "TRUNCATE links")
	refused(direct, "UPDATE tenants SET plan = plan; DELETE FROM product_users WHERE product_id = 11")
	// Extended protocol, and inside a transaction block (which the error
	// fails, as any error would).
	_, err = other.Exec(ctx, "DELETE FROM nodes WHERE id = $1", 100)
	require.ErrorContains(t, err, "deletes are frozen")
	tx, err = app.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DELETE FROM sites WHERE tenant_id = 2")
	require.ErrorContains(t, err, "deletes are frozen")
	require.NoError(t, tx.Rollback(ctx))

	// Everything else goes on.
	_, err = app.Exec(ctx, "UPDATE tenants SET plan = 'pro' WHERE id = 5")
	require.NoError(t, err)
	_, err = app.Exec(ctx, "INSERT INTO tenants VALUES (99, 'new')")
	require.NoError(t, err)
	_, err = other.Exec(ctx, "DELETE FROM scratch.notes WHERE id = 1") // not protected
	require.NoError(t, err)
	tag, err := other.Exec(ctx, "DELETE FROM tenants WHERE id = 12345") // removes nothing
	require.NoError(t, err)
	require.Equal(t, "DELETE 0", tag.String())
	_, err = app.Exec(ctx, "UPDATE tenants SET plan = 'free' WHERE id = 5; DELETE FROM tenants WHERE id = 99")
	require.ErrorContains(t, err, "deletes are frozen")

	require.True(t, before == e.snapshot(saasTables[1:]...), "nothing was removed")
	require.Equal(t, 21, e.count("SELECT count(*) FROM tenants"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tenants WHERE id = 5 AND plan = 'pro'"), "the failed statement's update rolled back with it")
	require.Equal(t, batches, e.count("SELECT count(*) FROM tombstone.batches"), "no batch was written")
	require.Equal(t, 4, e.count("SELECT count(*) FROM scratch.notes"))

	// A proxy started after the freeze honours it.
	late := testenv.Connect(t, secondProxy(t, e))
	refused(late, "DELETE FROM tenants WHERE id = 3")
	status, _ = simple(t, late, "SHOW TOMBSTONE STATUS")
	require.Contains(t, findRow(status, "deletes_frozen")[1], "true (by postgres")

	// THAW: deletes are captured again, through every proxy.
	rows, _ = simple(t, other, "THAW DELETES")
	require.Equal(t, "f", rows[0][0])
	tag, err = late.Exec(ctx, "DELETE FROM tenants WHERE id = 3")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, batches+1, e.count("SELECT count(*) FROM tombstone.batches"))
	_, err = app.Exec(ctx, "TRUNCATE product_users")
	require.NoError(t, err)

	// What the first proxy counted: the admin's five refused statements
	// and the application role's six (the DO block is not the proxy's:
	// it passes unrewritten), and the rows a captured DELETE removed.
	require.Equal(t, 11.0, testutil.ToFloat64(e.px.Metrics().Refusals.WithLabelValues(pgerr.DeletesFrozen)))
	_, err = admin.Exec(ctx, "DELETE FROM users WHERE id IN (12, 21)")
	require.NoError(t, err)
	require.Equal(t, 2.0, testutil.ToFloat64(e.px.Metrics().DeletedRows.WithLabelValues(dbName(t, e.direct))))

	// The trail: FREEZE by the admin, THAW from the other proxy's session,
	// newest first; the refused role's attempts left nothing.
	trail, _ := simple(t, admin, "SHOW AUDIT LIMIT 3000000000")
	require.Len(t, trail, 2)
	trail, _ = simple(t, admin, "SHOW AUDIT LIMIT 2")
	require.Len(t, trail, 2)
	require.Equal(t, "THAW DELETES", trail[0][6])
	require.Equal(t, "FREEZE DELETES", trail[1][6])
	require.Equal(t, "postgres", trail[1][2])
	require.Zero(t, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.audit WHERE actor = '%s'", role)))
}

// TestAuditTrail: every admin action that took effect leaves one row —
// who, from where, what, with what result — written in the action's own
// transaction (an action rolled back leaves none, a failed one none);
// administrators read it and cannot change it, nor can anyone else.
func TestAuditTrail(t *testing.T) {
	e, p, batch := tenantsDeleted(t)
	ctx := context.Background()
	d := testenv.Connect(t, e.direct)
	_, err := d.Exec(ctx, "CREATE TABLE gone (id int PRIMARY KEY); INSERT INTO gone VALUES (1)")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "SET application_name = 'incident-42'")
	require.NoError(t, err)

	for _, cmd := range []string{
		fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batch),
		fmt.Sprintf("HOLD BATCH %d", batch),
		fmt.Sprintf("RELEASE BATCH %d", batch),
		"PAUSE REAPER", "RESUME REAPER",
		fmt.Sprintf("UNDELETE FROM tenants WHERE id = 3 BATCH %d", batch),
		fmt.Sprintf("UNDELETE BATCH %d", batch),
		"DROP TABLE gone", "UNDROP TABLE gone",
	} {
		_, err := p.Exec(ctx, cmd, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err, cmd)
	}
	// Rolled back, and failed: no rows.
	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "PAUSE REAPER", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	pe := pgErrOf(t, p.PgConn().Exec(ctx, "UNDELETE BATCH 999999").Close())
	require.Equal(t, "P0002", pe.Code)

	type entry struct {
		Actor, App, Command string
		Args, Result        map[string]any
	}
	rows, err := d.Query(ctx, "SELECT actor, application, command, args, result FROM tombstone.audit ORDER BY id")
	require.NoError(t, err)
	var got []entry
	for rows.Next() {
		var en entry
		var args, result []byte
		require.NoError(t, rows.Scan(&en.Actor, &en.App, &en.Command, &args, &result))
		require.NoError(t, json.Unmarshal(args, &en.Args))
		require.NoError(t, json.Unmarshal(result, &en.Result))
		got = append(got, en)
	}
	require.NoError(t, rows.Err())
	var cmds []string
	for _, en := range got {
		cmds = append(cmds, en.Command)
		require.Equal(t, "postgres", en.Actor)
		require.Equal(t, "incident-42", en.App)
	}
	require.Equal(t, []string{"UNDELETE BATCH", "HOLD BATCH", "RELEASE BATCH", "PAUSE REAPER", "RESUME REAPER",
		"UNDELETE FROM", "UNDELETE BATCH", "UNDROP TABLE"}, cmds)
	require.Equal(t, true, got[0].Args["dry_run"])
	require.EqualValues(t, batch, got[0].Args["batch"])
	// The restores' results: per table, as the command answered.
	tenants := got[5].Result["tables"].(map[string]any)["public.tenants"].(map[string]any)
	require.EqualValues(t, 1, tenants["restored"])
	require.Equal(t, "id = 3", got[5].Args["where"])
	tenants = got[6].Result["tables"].(map[string]any)["public.tenants"].(map[string]any)
	require.EqualValues(t, 1, tenants["restored"], "tenant 4, the rest of the batch")
	require.Equal(t, "public.gone", got[7].Result["table"])

	// SHOW AUDIT: newest first.
	show, _ := simple(t, p, "SHOW AUDIT LIMIT 1")
	require.Len(t, show, 1)
	require.Equal(t, "UNDROP TABLE", show[0][6])

	// Nobody changes the trail: not an administrator, not a role with
	// every grant an application has.
	admin := tempRole(t, e, "LOGIN IN ROLE tombstone_admin", "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s")
	au, _ := url.Parse(e.proxy)
	au.User = url.User(admin)
	ac := testenv.Connect(t, au.String())
	t.Cleanup(func() { _ = ac.Close(context.Background()) })
	n := e.count("SELECT count(*) FROM tombstone.audit")
	for _, sql := range []string{
		"DELETE FROM tombstone.audit",
		"UPDATE tombstone.audit SET actor = 'someone'",
		"TRUNCATE tombstone.audit",
		"INSERT INTO tombstone.audit (command) VALUES ('UNDELETE BATCH')",
		"SELECT setval('tombstone.audit_id_seq', 1)",
	} {
		pe := pgErrOf(t, ac.PgConn().Exec(ctx, sql).Close())
		require.Equal(t, "42501", pe.Code, sql)
	}
	// Nor the registry the store's SECURITY DEFINER code acts on: an
	// administrator may not write what is protected, the shadow tables'
	// names and columns, the trash's entries (but for marking them) or
	// the settings (but through the console's functions).
	for _, sql := range []string{
		"UPDATE tombstone.shadows SET shadow_name = 'audit'",
		"DELETE FROM tombstone.shadow_columns",
		"INSERT INTO tombstone.protected (kind, schema_name, position) VALUES ('schema', 'x', 9)",
		"UPDATE tombstone.trash SET wiring = '{}'",
		"UPDATE tombstone.trash SET renames = '[]', source = 0, trash_name = 'audit'",
		"UPDATE tombstone.settings SET value = 'null' WHERE key = 'deletes.frozen'",
		"INSERT INTO tombstone.settings VALUES ('reaper.paused', 'true')",
		"SELECT tombstone._write_freeze(false) FROM tombstone.settings WHERE false; DELETE FROM tombstone.catalog_log",
	} {
		pe := pgErrOf(t, ac.PgConn().Exec(ctx, sql).Close())
		require.Equal(t, "42501", pe.Code, sql)
	}
	// Nor register a trash entry for a table it does not own.
	pe = pgErrOf(t, ac.PgConn().Exec(ctx, "SELECT tombstone._trash_register('tenants'::regclass, '{}', current_user, '', '')").Close())
	require.Equal(t, "42501", pe.Code)
	// Nor put the store's triggers on a table that is not protected, the
	// store's own included (sync_shadow is an administrator's to call).
	_, err = d.Exec(ctx, "CREATE SCHEMA priv; CREATE TABLE priv.secret (id int PRIMARY KEY); GRANT USAGE ON SCHEMA priv TO "+admin)
	require.NoError(t, err)
	for _, rel := range []string{"priv.secret", "tombstone.audit", "tombstone.trash"} {
		pe := pgErrOf(t, ac.PgConn().Exec(ctx, fmt.Sprintf("SELECT tombstone.sync_shadow('%s')", rel)).Close())
		require.Equal(t, "55000", pe.Code, rel)
	}
	require.Zero(t, e.count("SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('priv.secret'::regclass, 'tombstone.audit'::regclass, 'tombstone.trash'::regclass) AND tgname LIKE '_ts_%'"))
	// It reads the trail, and its own actions land in it under its name.
	show, _ = simple(t, ac, "SHOW AUDIT")
	require.Len(t, show, n)
	simple(t, ac, "PAUSE REAPER")
	require.Equal(t, 1, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.audit WHERE actor = '%s' AND command = 'PAUSE REAPER'", admin)))
	require.Equal(t, n+1, e.count("SELECT count(*) FROM tombstone.audit"))
	require.False(t, strings.Contains(fmt.Sprint(got), "tenant 3"), "the trail holds no row values")

	// Nor through the trash's registry, which the SECURITY DEFINER code
	// that hands a trashed table back reads: an administrator may not add
	// an entry, and one changed by hand to name tombstone.audit gives
	// nothing away.
	_, err = d.Exec(ctx, "CREATE TABLE gone2 (id int PRIMARY KEY)")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DROP TABLE gone2")
	require.NoError(t, err)
	trashID := e.count("SELECT max(id) FROM tombstone.trash")
	require.Equal(t, 1, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.trash WHERE id = %d AND wiring ? 'owner'", trashID)))
	pe = pgErrOf(t, ac.PgConn().Exec(ctx, `INSERT INTO tombstone.trash (source, original_schema, original_name, trash_schema, trash_name, purge_after)
		VALUES ('tombstone.audit'::regclass, 'x', 'x', 'tombstone', 'audit', now())`).Close())
	require.Equal(t, "42501", pe.Code)
	for _, forge := range []string{
		// the audit table among the entry's tables
		`renames = renames || jsonb_build_array(jsonb_build_object('kind', 'table', 'oid', 'tombstone.audit'::regclass::oid))`,
		// a grant on it among the entry's grants
		`wiring = wiring || jsonb_build_object('acl', jsonb_build_array(jsonb_build_object('rel', 'tombstone.audit'::regclass::oid,
			'grantee', (SELECT oid FROM pg_roles WHERE rolname = current_user), 'privilege', 'UPDATE', 'grantable', false, 'kind', 'r')))`,
	} {
		// Refused to the administrator; and written anyway (as a
		// superuser could), believed by nobody.
		pe := pgErrOf(t, ac.PgConn().Exec(ctx, fmt.Sprintf("UPDATE tombstone.trash SET %s WHERE id = %d", forge, trashID)).Close())
		require.Equal(t, "42501", pe.Code, forge)
		_, err = d.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE saved AS SELECT renames, wiring FROM tombstone.trash WHERE id = %[2]d;
			UPDATE tombstone.trash SET %[1]s WHERE id = %[2]d`, forge, trashID))
		require.NoError(t, err)
		_, err = ac.Exec(ctx, fmt.Sprintf("SELECT tombstone._trash_reown(%d, current_user)", trashID))
		require.Equal(t, "55000", errCode(err), forge)
		_, err = d.Exec(ctx, fmt.Sprintf(`UPDATE tombstone.trash t SET renames = s.renames, wiring = s.wiring FROM saved s WHERE t.id = %d;
			DROP TABLE saved`, trashID))
		require.NoError(t, err)
	}
	require.Equal(t, "postgres", queryText(t, e.direct, "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'tombstone.audit'::regclass"))
	require.Equal(t, "false", queryText(t, e.direct, fmt.Sprintf("SELECT has_table_privilege('%s', 'tombstone.audit', 'UPDATE')::text", admin)))
	simple(t, p, "UNDROP TABLE gone2") // the entry as the trash made it still works
}
