package tombstone_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// newRole creates a LOGIN role for the test (roles are cluster-wide) and
// drops it when the test ends.
func newRole(t *testing.T, dsn, prefix string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	c := testenv.Connect(t, dsn)
	exec(t, c, "CREATE ROLE "+name+" LOGIN")
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = c.Exec(ctx, "DROP OWNED BY "+name)
		_, _ = c.Exec(ctx, "DROP ROLE "+name)
	})
	return name
}

// handWritten is the tombstone form of "DELETE FROM users u WHERE u.id =
// 11" as rewrite produces it: the deleted user and the links its SET NULL
// key changes are captured by the tables' triggers.
const handWritten = `WITH "_ts_d0" AS (DELETE FROM users u WHERE u.id = 11 RETURNING u AS "_ts_row"),
 "_ts_s1" AS (SELECT "_ts_c1" AS "_ts_row" FROM public.links "_ts_c1" WHERE (user_id) IN (SELECT ("_ts_row").id FROM "_ts_d0")),
 "_ts_b" AS (INSERT INTO tombstone.batches (client_addr, sql, tables)
    SELECT '192.0.2.1:5432', 'DELETE FROM users u WHERE u.id = 11',
        pg_catalog.jsonb_build_object('public.users', (SELECT count(*) FROM "_ts_d0"), 'public.links', (SELECT count(*) FROM "_ts_s1"))
    WHERE EXISTS (SELECT 1 FROM "_ts_d0") AND tombstone.check_catalog('users'::regclass, 'SIG_USERS')
        AND tombstone.check_catalog('public.links'::regclass, 'SIG_LINKS'))
SELECT FROM "_ts_d0"`

func TestPrivileges(t *testing.T) {
	su, dsn := setup(t, true)
	ctx := context.Background()
	before := dump(t, su)
	app := newRole(t, dsn, "ts_app")
	adm := newRole(t, dsn, "ts_adm")
	exec(t, su, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+app+", "+adm)
	exec(t, su, "GRANT tombstone_admin TO "+adm)

	appConn := testenv.Connect(t, withUser(t, dsn, app))
	stmt := strings.NewReplacer(
		"SIG_USERS", queryString(t, su, "SELECT tombstone.catalog_signature('users')"),
		"SIG_LINKS", queryString(t, su, "SELECT tombstone.catalog_signature('links')"),
	).Replace(handWritten)
	tag, err := appConn.Exec(ctx, stmt)
	require.NoError(t, err)
	require.Equal(t, "SELECT 1", tag.String())
	require.Equal(t, app, queryString(t, su, "SELECT role::text FROM tombstone.batches"))
	require.Equal(t, int64(3), queryInt(t, su, "SELECT count(*) FROM tombstone.public__links"))
	// The deleted row was written by users' capture trigger, in the batch.
	require.Equal(t, "delete 11", queryString(t, su,
		"SELECT _ts_cause || ' ' || s.id FROM tombstone.public__users s JOIN tombstone.batches b ON b.id = s._ts_batch AND b.token = s._ts_token"))

	// And the form rewrite generates, with cascades.
	cat := loadCatalog(t, su)
	runRewritten(t, appConn, cat, "DELETE FROM tenants WHERE id = 3")

	// The application role cannot read tombstones, nor run the admin
	// functions, nor sync shadows by hand.
	for _, q := range []string{
		"SELECT * FROM tombstone.batches",
		"SELECT * FROM tombstone.public__users",
		"SELECT count(*) FROM tombstone.public__products",
		"SELECT * FROM tombstone.shadows",
		"SELECT tombstone.sync_shadow('users')",
		"UPDATE tombstone.batches SET held = true",
		"DELETE FROM tombstone.public__users",
	} {
		_, err := appConn.Exec(ctx, q)
		require.Equal(t, "42501", pgErr(t, err).Code, q)
	}
	for _, q := range []string{
		"SELECT * FROM tombstone.show_batches()",
		"SELECT * FROM tombstone.show_batch(1)",
		"SELECT * FROM tombstone.undelete_batch(1)",
		"SELECT * FROM tombstone.undelete_rows('users', 'id = 11')",
		"SELECT * FROM tombstone.purge_batch(1)",
		"SELECT tombstone.hold_batch(1)",
	} {
		_, err := appConn.Exec(ctx, q)
		pe := pgErr(t, err)
		require.Equal(t, "42501", pe.Code, q)
		require.Equal(t, "GRANT tombstone_admin TO "+app, pe.Hint, q)
	}
	_, err = appConn.Exec(ctx, "SELECT tombstone.sync_all()")
	require.NoError(t, err, "any role may align the shadow tables")

	// DDL by a table owner without any tombstone privilege still keeps
	// the shadow in step (the event trigger syncs as the installer).
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	exec(t, appConn, "CREATE TABLE app_owned (id int PRIMARY KEY)")
	exec(t, appConn, "ALTER TABLE app_owned ADD COLUMN note text")
	require.Equal(t, "_ts_batch,_ts_cause,_ts_deleted_at,_ts_token,id,note", queryString(t, su, `SELECT string_agg(attname, ',' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'tombstone.public__app_owned'::regclass AND attnum > 0`))

	// A tombstone_admin member reads and restores.
	admConn := testenv.Connect(t, withUser(t, dsn, adm))
	require.Equal(t, int64(2), queryInt(t, admConn, "SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, int64(1), queryInt(t, admConn, "SELECT count(*) FROM tombstone.public__users WHERE id = 11"))
	bs, err := tombstone.ShowBatches(ctx, admConn, tombstone.BatchFilter{})
	require.NoError(t, err)
	require.Len(t, bs, 2)
	for _, b := range bs {
		_, err := tombstone.UndeleteBatch(ctx, admConn, b.ID, tombstone.UndeleteOptions{})
		require.NoError(t, err)
	}
	require.Equal(t, before, dump(t, su))
}

// TestNoEscalationThroughShadowSync: a table owner's domain (whose CHECK
// calls its own function) or a cast of its own must never run with the
// installer's rights when the event trigger syncs the shadow table, and a
// role's overload of a built-in in public must not capture our functions.
func TestNoEscalationThroughShadowSync(t *testing.T) {
	dsn := newDB(t)
	su := testenv.Connect(t, dsn)
	require.NoError(t, tombstone.Install(context.Background(), su, tombstone.InstallOptions{
		Protection: &tombstone.Protection{Schemas: []string{"public"}, Retention: time.Hour}}))
	app := newRole(t, dsn, "ts_evil")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, "CREATE TABLE evil_t (id int PRIMARY KEY)")
	exec(t, appConn, `CREATE FUNCTION evil(int) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'ALTER ROLE `+app+` SUPERUSER'; RETURN true; EXCEPTION WHEN OTHERS THEN RETURN true; END $$`)
	exec(t, appConn, "CREATE DOMAIN evil_d AS int CHECK (evil(VALUE))")
	exec(t, su, "SET session_replication_role = replica; INSERT INTO tombstone.public__evil_t (_ts_batch, _ts_cause, id) VALUES (1, 'delete', 1); RESET session_replication_role")
	exec(t, appConn, "ALTER TABLE evil_t ADD COLUMN y evil_d")
	exec(t, appConn, "ALTER TABLE evil_t ADD COLUMN z evil_d[]")
	exec(t, appConn, `CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'ALTER ROLE `+app+` SUPERUSER'; RETURN; EXCEPTION WHEN OTHERS THEN RETURN; END $$`)
	var rows [][]any
	r, err := su.Query(context.Background(), "SELECT * FROM tombstone.status()")
	require.NoError(t, err)
	for r.Next() {
		v, _ := r.Values()
		rows = append(rows, v)
	}
	require.NoError(t, r.Err())
	require.NotEmpty(t, rows)
	require.Equal(t, "false", queryString(t, su, "SELECT rolsuper::text FROM pg_roles WHERE rolname = '"+app+"'"), "no escalation")
	require.Equal(t, "", queryString(t, su, `SELECT coalesce(string_agg(proname, ', '), '') FROM pg_proc
		WHERE pronamespace = 'tombstone'::regnamespace
		  AND NOT coalesce('search_path=pg_catalog, tombstone, pg_temp' = ANY (proconfig), false)`), "functions without the fixed search_path")
	require.Equal(t, "integer,integer[]", queryString(t, su, `SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'tombstone.public__evil_t'::regclass AND attname IN ('y', 'z')`), "shadow stores the domain's base type")
}

// TestPlantedTombstonesDoNotComeBack: a role without rights on a table
// can neither write a batch of its choosing (id, token, retention and
// session columns are the database's; the id sequence is not its to
// draw from) nor read another transaction's batches; the rows it plants
// in a shadow table under a batch of its own (whose id and token its own
// INSERT … RETURNING shows it) are not written into that table by an
// admin's UNDELETE.
func TestPlantedTombstonesDoNotComeBack(t *testing.T) {
	su, dsn := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, su)
	real := deleteVia(t, su, cat, "DELETE FROM tenants WHERE id = 3")
	app := newRole(t, dsn, "ts_plant")
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	for _, sql := range []string{
		"INSERT INTO tombstone.batches (id, sql) VALUES (777, 'x')",
		"INSERT INTO tombstone.batches (sql, purge_after) VALUES ('x', now() + interval '100 years')",
		"INSERT INTO tombstone.batches (sql, token) VALUES ('x', gen_random_uuid())",
		"INSERT INTO tombstone.batches (sql, role) VALUES ('x', 'postgres')",
		"SELECT nextval('tombstone.batches_id_seq')",
		"SELECT setval('tombstone.batches_id_seq', 1000000)",
		"SELECT sql FROM tombstone.batches",
		"UPDATE tombstone.batches SET held = true",
		"DELETE FROM tombstone.batches",
		"BEGIN; LOCK TABLE tombstone.batches",
	} {
		_, err := appConn.Exec(ctx, sql)
		require.Equal(t, "42501", pgErr(t, err).Code, sql)
		_, _ = appConn.Exec(ctx, "ROLLBACK")
	}
	_, err := appConn.Exec(ctx, "SELECT id FROM tombstone.batches")
	require.Equal(t, "42501", pgErr(t, err).Code, "no batch is readable")
	_, err = appConn.Exec(ctx, "INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{\"public.tenants\": \"many\"}')")
	require.Equal(t, "22023", pgErr(t, err).Code, "malformed tables")
	_, err = appConn.Exec(ctx, `INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.tenants": 9223372036854775807, "public.sites": 9223372036854775807}')`)
	require.Equal(t, "22023", pgErr(t, err).Code, "counts SHOW BATCHES and the reaper could not add up")
	for _, tables := range []string{`[]`, `{"public.tenants": 1.0}`, `{"public.tenants": 0.00}`, `{"public.tenants": 1.5}`, `{"public.tenants": -1}`} {
		// (1.0 and 0.00 would stop SHOW BATCHES and the reaper, which
		// read the counts as bigint.)
		_, err = appConn.Exec(ctx, "INSERT INTO tombstone.batches (sql, tables) VALUES ('x', $1)", tables)
		require.Equal(t, "22023", pgErr(t, err).Code, tables)
	}
	_, err = appConn.Exec(ctx, "INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{}')")
	require.NoError(t, err, "a batch of no table")
	require.Equal(t, "7 days", queryString(t, su, "SELECT (purge_after - stmt_time)::text FROM tombstone.batches ORDER BY id DESC LIMIT 1"))

	_, err = appConn.Exec(ctx, `INSERT INTO tombstone.batches (sql, tables) VALUES ('DELETE FROM tenants', '{"public.tenants": 1}')`)
	require.NoError(t, err)
	id := queryInt(t, su, "SELECT max(id) FROM tombstone.batches")
	token := queryString(t, su, fmt.Sprintf("SELECT token::text FROM tombstone.batches WHERE id = %d", id))
	require.Greater(t, id, real)
	require.Equal(t, "7 days", queryString(t, su, fmt.Sprintf("SELECT (purge_after - stmt_time)::text FROM tombstone.batches WHERE id = %d", id)))
	// Only the tables' capture triggers write deleted rows.
	for _, cause := range []string{"delete", "cascade", "truncate", "DELETE"} {
		_, err = appConn.Exec(ctx, fmt.Sprintf("INSERT INTO tombstone.public__tenants (_ts_batch, _ts_token, _ts_cause, id, name) VALUES (%d, '%s', '%s', 4242, 'planted')", id, token, cause))
		require.Equal(t, "42501", pgErr(t, err).Code, cause)
	}
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM tombstone.public__tenants WHERE id = 4242"))
	rs, err := tombstone.UndeleteBatch(ctx, su, id, tombstone.UndeleteOptions{})
	if err == nil {
		for _, r := range rs {
			require.Zero(t, r.Restored, r.Table)
		}
	}
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM tenants WHERE id = 4242"), "planted row not restored")
	// Nor did any of it keep the next real capture from getting an id.
	deleteVia(t, su, cat, "DELETE FROM tenants WHERE id = 4")
}

// TestPlantedUnderAnotherBatch: rows planted in a shadow table under a
// real batch's id are refused, and a role's own delete attaches nothing
// to a batch of another transaction.
func TestPlantedUnderAnotherBatch(t *testing.T) {
	su, dsn := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, su)
	batch := deleteVia(t, su, cat, "DELETE FROM tenants WHERE id = 3")
	app := newRole(t, dsn, "ts_plant2")
	exec(t, su, "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	_, err := appConn.Exec(ctx, fmt.Sprintf("INSERT INTO tombstone.public__tenants (_ts_batch, _ts_cause, id, name) VALUES (%d, 'delete', 4343, 'planted')", batch))
	require.Equal(t, "42501", pgErr(t, err).Code)
	_, err = appConn.Exec(ctx, "DELETE FROM users WHERE tenant_id = 9")
	require.NoError(t, err)
	require.Equal(t, int64(0), queryInt(t, su, fmt.Sprintf("SELECT count(*) FROM tombstone.public__users WHERE _ts_batch = %d AND tenant_id = 9", batch)))
	_, err = tombstone.UndeleteBatch(ctx, su, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tenants WHERE id = 3"), "the real tombstone came back")
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM tenants WHERE id = 4343"), "the planted one did not")
}

// TestCaptureBinding: a capture trigger writes a statement's rows into
// the batch that statement wrote. A delete in the same client message
// that the proxy did not rewrite (a function's, say) joins that batch
// when the batch lists its table; one in another message, or of a table
// the batch does not list, is not captured; a batch a role writes by hand
// in its own statement holds only rows that statement deleted.
func TestCaptureBinding(t *testing.T) {
	su, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, su)
	res, err := rewrite.Rewrite("DELETE FROM product_users WHERE product_id = 11", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = su.Exec(ctx, res.SQL+"; DELETE FROM product_users WHERE product_id = 12; DELETE FROM audit_log")
	require.NoError(t, err)
	_, err = su.Exec(ctx, "DELETE FROM product_users WHERE product_id = 13")
	require.NoError(t, err)
	require.Equal(t, "11,12", queryString(t, su, "SELECT string_agg(DISTINCT product_id::text, ',' ORDER BY product_id::text) FROM tombstone.public__product_users"))
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.batches"))
	// By hand, in one statement: only that statement's rows.
	_, err = su.Exec(ctx, `WITH b AS (INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.product_users": 2}'))
		DELETE FROM product_users WHERE product_id = 14`)
	require.NoError(t, err)
	require.Equal(t, "14", queryString(t, su, `SELECT string_agg(DISTINCT s.product_id::text, ',') FROM tombstone.public__product_users s
		WHERE s._ts_batch = (SELECT max(id) FROM tombstone.batches)`))
	// A DELETE that removes nothing takes no transaction id for the
	// capture trigger's look for its batch: a read-only transaction stays
	// one.
	for _, sql := range []string{"DELETE FROM product_users WHERE product_id = -1", "DELETE FROM tenants WHERE id = -1"} {
		tx, err := su.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, sql)
		require.NoError(t, err)
		var assigned bool
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_current_xact_id_if_assigned() IS NOT NULL").Scan(&assigned))
		require.False(t, assigned, sql)
		// Nor does it lock the shadow table, which an UNDELETE would wait for.
		var locks int64
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE l.pid = pg_backend_pid() AND c.relnamespace = 'tombstone'::regnamespace AND c.relname LIKE 'public\_\_%'`).Scan(&locks))
		require.Zero(t, locks, sql)
		require.NoError(t, tx.Rollback(ctx))
	}
}

// TestOlderWritersRefused: only the capture triggers write a shadow
// table — the INSERT an older proxy's rewrite still sends fails even for
// a superuser (who could write the table) — and a proxy of this version
// refuses to capture on a schema older than its own.
func TestOlderWritersRefused(t *testing.T) {
	su, _ := setup(t, true)
	ctx := context.Background()
	_, err := su.Exec(ctx, "INSERT INTO tombstone.public__tenants (_ts_batch, _ts_cause, id, name) VALUES (1, 'delete', 4242, 'x')")
	require.Equal(t, "55000", pgErr(t, err).Code)
	exec(t, su, "UPDATE tombstone.schema_version SET version = version - 1")
	_, err = tombstone.LoadCatalog(ctx, su, tombstone.CatalogOptions{})
	require.ErrorIs(t, err, tombstone.ErrNotInstalled)
}

// TestInstallerWithoutTriggerRights: an installer that may not add
// triggers to one protected table (another role owns it) installs the
// rest; that table's DELETEs are refused (55000), the others captured.
func TestInstallerWithoutTriggerRights(t *testing.T) {
	dsn := newDB(t)
	su := testenv.Connect(t, dsn)
	inst := newRole(t, dsn, "ts_inst")
	other := newRole(t, dsn, "ts_other")
	// The role is cluster-wide; a superuser's install creates it (this
	// installer may not).
	exec(t, su, "DO $$ BEGIN CREATE ROLE tombstone_admin NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	exec(t, su, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s; GRANT CREATE ON SCHEMA public TO %s, %s`,
		queryString(t, su, "SELECT current_database()"), inst, inst, other))
	ic := testenv.Connect(t, withUser(t, dsn, inst))
	oc := testenv.Connect(t, withUser(t, dsn, other))
	exec(t, ic, "CREATE TABLE mine (id int PRIMARY KEY); INSERT INTO mine SELECT generate_series(1, 5)")
	exec(t, oc, "CREATE TABLE theirs (id int PRIMARY KEY); INSERT INTO theirs SELECT generate_series(1, 5); GRANT SELECT, DELETE ON theirs TO "+inst)
	ctx := context.Background()
	require.NoError(t, tombstone.Install(ctx, ic, tombstone.InstallOptions{Protection: &tombstone.Protection{
		Schemas: []string{"public"}, Retention: time.Hour}}))
	cat := loadCatalog(t, ic)
	runRewritten(t, ic, cat, "DELETE FROM mine WHERE id = 1")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.public__mine WHERE id = 1"))
	res, err := rewrite.Rewrite("DELETE FROM theirs WHERE id = 1", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = ic.Exec(ctx, res.SQL)
	require.Equal(t, "55000", pgErr(t, err).Code)
	require.Equal(t, int64(5), queryInt(t, su, "SELECT count(*) FROM theirs"))
	// Without the DDL event trigger (not a superuser), a column added
	// since the last sync: the capture trigger refuses (TS001) rather than
	// leave the column out; a load syncs it.
	exec(t, ic, "ALTER TABLE mine ADD COLUMN extra text DEFAULT 'x'")
	_, err = ic.Exec(ctx, `WITH b AS (INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.mine": 1}')) DELETE FROM mine WHERE id = 2`)
	require.Equal(t, "TS001", pgErr(t, err).Code)
	cat = loadCatalog(t, ic)
	runRewritten(t, ic, cat, "DELETE FROM mine WHERE id = 2")
	require.Equal(t, "x", queryString(t, su, "SELECT extra FROM tombstone.public__mine WHERE id = 2"))
	// A column dropped or retyped since: TS001 too, not the copy's own
	// error (which no proxy would take for a stale catalog).
	for _, ddl := range []string{"ALTER TABLE mine DROP COLUMN extra", "ALTER TABLE mine ADD COLUMN n int", "ALTER TABLE mine ALTER COLUMN n TYPE text"} {
		exec(t, ic, ddl)
		if strings.Contains(ddl, "TYPE") || strings.Contains(ddl, "DROP") {
			_, err = ic.Exec(ctx, `WITH b AS (INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.mine": 1}')) DELETE FROM mine WHERE id = 4`)
			require.Equal(t, "TS001", pgErr(t, err).Code, ddl)
		}
		loadCatalog(t, ic)
	}
	require.Equal(t, int64(3), queryInt(t, su, "SELECT count(*) FROM mine"), "nothing deleted by the refused statements")
	// Renamed, not synced yet: a batch naming the table as it is now
	// still gets its rows.
	exec(t, ic, "ALTER TABLE mine RENAME TO mine2")
	exec(t, ic, `WITH b AS (INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.mine2": 1}')) DELETE FROM mine2 WHERE id = 3`)
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.public__mine WHERE id = 3"))
}

// TestSyncOnceForItsOwnDDL: a CREATE TABLE syncs the new table once — the
// DDL event trigger does not sync it again for the capture triggers that
// sync creates and enables (it did, twice) — and a role that sets
// tombstone.syncing itself still has its ALTER TABLE synced.
func TestSyncOnceForItsOwnDDL(t *testing.T) {
	dsn := newDB(t)
	su := testenv.Connect(t, dsn)
	ctx := context.Background()
	require.NoError(t, tombstone.Install(ctx, su, tombstone.InstallOptions{
		Protection: &tombstone.Protection{Schemas: []string{"public"}, Retention: time.Hour}}))
	tx, err := su.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL track_functions = 'all'; CREATE TABLE once_t (id int PRIMARY KEY, body text)")
	require.NoError(t, err)
	var syncs int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
		WHERE schemaname = 'tombstone' AND funcname = '_sync_shadow'`).Scan(&syncs))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, int64(1), syncs, "syncs of one CREATE TABLE")
	require.Equal(t, "_ts_capture,_ts_truncate", queryString(t, su, `SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
		WHERE tgrelid = 'once_t'::regclass AND tgenabled = 'A'`), "capture triggers enabled ALWAYS")

	app := newRole(t, dsn, "ts_sync")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, "CREATE TABLE app_t (id int PRIMARY KEY, body text)")
	exec(t, appConn, "SET tombstone.syncing = on")
	exec(t, appConn, "ALTER TABLE app_t RENAME COLUMN body TO note")
	exec(t, appConn, "ALTER TABLE app_t ADD COLUMN extra text")
	require.Equal(t, "id,note,extra", queryString(t, su, `SELECT string_agg(shadow_column, ',' ORDER BY attnum) FROM tombstone.shadow_columns
		WHERE source = 'app_t'::regclass AND attnum IS NOT NULL`), "the role's ALTER TABLE was synced")
	require.Contains(t, queryString(t, su, `SELECT prosrc FROM pg_proc WHERE proname = '_ts_cap_' || 'app_t'::regclass::oid`), "extra")
}

// TestTableNameIsNotCode: a table's name goes into no generated code as
// text a newline can end. The capture function once named its table in a
// `--` comment, so a role that may create tables made the rest of the
// name PL/pgSQL of a function the store's owner runs — code run as the
// superuser at the table's first delete.
func TestTableNameIsNotCode(t *testing.T) {
	su, dsn := setup(t, false)
	app := newRole(t, dsn, "ts_name")
	exec(t, su, "GRANT CREATE, USAGE ON SCHEMA public TO "+app)
	exec(t, su, "CREATE TABLE public.pwned (who name)")
	exec(t, su, "GRANT INSERT ON public.pwned TO "+app)
	c := testenv.Connect(t, withUser(t, dsn, app))
	name := "\"x\nDECLARE e int := public.evil();--\""
	exec(t, c, `CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS $$ INSERT INTO public.pwned SELECT current_user; SELECT 1 $$`)
	exec(t, c, "CREATE TABLE "+name+" (i int)")
	exec(t, c, "INSERT INTO "+name+" VALUES (1)")
	exec(t, c, "DELETE FROM "+name+" WHERE i = 1")
	exec(t, c, "TRUNCATE "+name)
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.shadows WHERE source_name = E'x\\nDECLARE e int := public.evil();--'"),
		"the table is protected, its capture function generated")
	require.Zero(t, queryInt(t, su, "SELECT count(*) FROM public.pwned"), "the name ran as code")
}
