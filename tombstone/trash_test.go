package tombstone_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// callVia runs sql (a TRUNCATE or DROP TABLE) in the form the proxy
// sends, a CALL of the trash procedures.
func callVia(t *testing.T, c *pgx.Conn, cat *tombstone.Catalog, sql string, opt rewrite.Options) error {
	t.Helper()
	opt.ClientAddr = "10.0.0.7:5555"
	res, err := rewrite.Rewrite(sql, cat, opt)
	require.NoError(t, err)
	require.Nil(t, res.Refusal())
	require.True(t, strings.HasPrefix(res.SQL, "CALL tombstone."), "not rewritten: %s", res.SQL)
	_, err = c.Exec(context.Background(), res.SQL)
	return err
}

func mustCall(t *testing.T, c *pgx.Conn, cat *tombstone.Catalog, sql string) {
	t.Helper()
	require.NoError(t, callVia(t, c, cat, sql, rewrite.Options{}), sql)
}

// notices collects the NOTICEs of a connection.
type notices struct {
	mu  sync.Mutex
	got []string
}

func (n *notices) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.got, "\n")
}

func connectWithNotices(t *testing.T, dsn string) (*pgx.Conn, *notices) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	n := &notices{}
	cfg.OnNotice = func(_ *pgconn.PgConn, msg *pgconn.Notice) {
		n.mu.Lock()
		n.got = append(n.got, msg.Severity+": "+msg.Message)
		if msg.Detail != "" {
			n.got = append(n.got, "DETAIL: "+msg.Detail)
		}
		n.mu.Unlock()
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, n
}

func TestCaptureTruncateCascadeRoundTrip(t *testing.T) {
	c, _ := setup(t, true)
	cat := loadCatalog(t, c)
	before := dump(t, c)

	mustCall(t, c, cat, "TRUNCATE tenants CASCADE")
	for _, tb := range []string{"tenants", "sites", "products", "product_users", "users", "links", "nodes"} {
		require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM "+tb), tb)
	}
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.batches"))
	require.JSONEq(t, `{"public.tenants": 10, "public.sites": 30, "public.products": 120, "public.product_users": 240,
		"public.users": 20, "public.links": 60, "public.nodes": 60}`,
		queryString(t, c, "SELECT tables::text FROM tombstone.batches"))
	require.Equal(t, "TRUNCATE tenants CASCADE|10.0.0.7:5555|true", queryString(t, c,
		`SELECT sql || '|' || client_addr || '|' || (purge_after = stmt_time + interval '30 days') FROM tombstone.batches`),
		"purge_after: the longest retention of the captured tables (sites: 30 days)")
	require.Equal(t, "truncate", queryString(t, c, "SELECT string_agg(DISTINCT _ts_cause, ',') FROM tombstone.public__sites"))

	_, err := c.Exec(context.Background(), "SELECT * FROM tombstone.undelete_batch((SELECT max(id) FROM tombstone.batches))")
	require.NoError(t, err)
	require.Equal(t, before, dump(t, c), "restored byte-identical")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone.public__sites"))
}

func TestCaptureTruncateForms(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	exec(t, c, `CREATE TABLE parent (id int, v text);
		CREATE TABLE child (extra int) INHERITS (parent);
		INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
		INSERT INTO child VALUES (3, 'c3', 30);
		CREATE TABLE counters (id serial PRIMARY KEY, v text);
		INSERT INTO counters (v) VALUES ('a'), ('b'), ('c');`)
	_, err := tombstone.EnsureShadow(ctx, c, "public", "parent")
	require.NoError(t, err)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	cat := loadCatalog(t, c)
	lastBatch := func() string {
		return queryString(t, c, "SELECT tables::text FROM tombstone.batches ORDER BY id DESC LIMIT 1")
	}

	// ONLY on an inheritance parent leaves the child alone.
	mustCall(t, c, cat, "TRUNCATE ONLY parent")
	require.JSONEq(t, `{"public.parent": 2}`, lastBatch())
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM parent"), "the child's row is still seen through the parent")
	// Without ONLY the child goes too, into its own shadow.
	mustCall(t, c, cat, "TRUNCATE parent")
	require.JSONEq(t, `{"public.parent": 0, "public.child": 1}`, lastBatch())
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.public__child WHERE extra = 30"))

	// A partitioned table, and one of its partitions named directly
	// (captured under the root).
	mustCall(t, c, cat, "TRUNCATE events_2025")
	n2025 := queryInt(t, c, "SELECT count(*) FROM tombstone.public__events")
	require.Positive(t, n2025)
	require.JSONEq(t, `{"public.events": `+strconv.FormatInt(n2025, 10)+`}`, lastBatch())
	mustCall(t, c, cat, "TRUNCATE events")
	require.Equal(t, int64(20), queryInt(t, c, "SELECT count(*) FROM tombstone.public__events"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM events"))

	// RESTART IDENTITY restarts the sequence; the rows keep their ids.
	before := queryString(t, c, "SELECT string_agg(x::text, ',' ORDER BY id) FROM counters x")
	mustCall(t, c, cat, "TRUNCATE counters RESTART IDENTITY")
	exec(t, c, "INSERT INTO counters (v) VALUES ('new')")
	require.Equal(t, int64(1), queryInt(t, c, "SELECT id FROM counters"))
	exec(t, c, "DELETE FROM counters")
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undelete_batch((SELECT max(id) FROM tombstone.batches))")
	require.NoError(t, err)
	require.Equal(t, before, queryString(t, c, "SELECT string_agg(x::text, ',' ORDER BY id) FROM counters x"))

	// An empty table: no batch, like a DELETE of nothing.
	n := queryInt(t, c, "SELECT count(*) FROM tombstone.batches")
	mustCall(t, c, cat, "TRUNCATE events")
	require.Equal(t, n, queryInt(t, c, "SELECT count(*) FROM tombstone.batches"))

	// A missing table fails as in Postgres.
	_, err = c.Exec(ctx, `CALL tombstone.capture_truncate(ARRAY['"nope"'], ARRAY[false], false, false, '', 'TRUNCATE nope')`)
	pe := pgErr(t, err)
	require.Equal(t, "42P01", pe.Code)
	require.Equal(t, `relation "nope" does not exist`, pe.Message)
}

// An unprotected table whose CASCADE reaches protected ones: captured
// under capture, refused under reject; rolled back, nothing is left.
func TestCaptureTruncateUnprotectedCascade(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	exec(t, c, `CREATE SCHEMA scratch;
		CREATE TABLE scratch.kinds (id int PRIMARY KEY);
		INSERT INTO scratch.kinds VALUES (1), (2);
		CREATE TABLE scratch.kind_notes (kind_id int REFERENCES scratch.kinds, note text);
		INSERT INTO scratch.kind_notes VALUES (1, 'x');
		ALTER TABLE tenants ADD COLUMN kind_id int REFERENCES scratch.kinds;
		UPDATE tenants SET kind_id = 1 WHERE id <= 3;`)
	cat := loadCatalog(t, c)
	before := dump(t, c)

	// The policy is the database's: the call carries none.
	exec(t, c, `UPDATE tombstone.settings SET value = '"reject"' WHERE key = 'policies.truncate'`)
	err := callVia(t, c, cat, "TRUNCATE scratch.kinds CASCADE", rewrite.Options{})
	exec(t, c, `UPDATE tombstone.settings SET value = '"capture"' WHERE key = 'policies.truncate'`)
	pe := pgErr(t, err)
	require.Equal(t, "0A000", pe.Code)
	require.Contains(t, pe.Message, "TRUNCATE of protected table public.")
	require.NotEmpty(t, pe.Hint)
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM scratch.kinds"))

	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	res, err := rewrite.Rewrite("TRUNCATE scratch.kinds CASCADE", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = tx.Exec(ctx, res.SQL)
	require.NoError(t, err)
	require.Equal(t, int64(0), queryInt(t, tx.Conn(), "SELECT count(*) FROM tenants"))
	require.Equal(t, int64(1), queryInt(t, tx.Conn(), "SELECT count(*) FROM tombstone.batches"))
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone.batches"), "a rolled-back TRUNCATE leaves no batch")
	require.Equal(t, before, dump(t, c))

	mustCall(t, c, cat, "TRUNCATE scratch.kinds CASCADE")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM scratch.kind_notes"), "unprotected tables are truncated, uncaptured")
	tables := queryString(t, c, "SELECT tables::text FROM tombstone.batches")
	require.Contains(t, tables, `"public.tenants": 10`)
	require.NotContains(t, tables, "scratch")
	// The protected rows come back (the FK to scratch.kinds is not
	// satisfiable any more: put the kinds back first).
	exec(t, c, "INSERT INTO scratch.kinds VALUES (1), (2)")
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undelete_batch((SELECT max(id) FROM tombstone.batches))")
	require.NoError(t, err)
	require.Equal(t, before, dump(t, c))
}

// trashed lists tombstone_trash's tables.
func trashed(t *testing.T, c *pgx.Conn) string {
	return queryString(t, c, `SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tombstone_trash' AND c.relkind IN ('r', 'p')`)
}

func TestTrashAndUndrop(t *testing.T) {
	_, dsn := setup(t, true)
	c, note := connectWithNotices(t, dsn)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)
	indexes := queryString(t, c, "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index WHERE indrelid = 'products'::regclass")
	fks := queryString(t, c, "SELECT string_agg(conrelid::regclass || ':' || pg_get_constraintdef(oid), ',' ORDER BY 1) FROM pg_constraint WHERE confrelid = 'products'::regclass")

	// Without CASCADE, the dependency error is Postgres's own.
	err := callVia(t, c, cat, "DROP TABLE products", rewrite.Options{})
	pe := pgErr(t, err)
	require.Equal(t, "2BP01", pe.Code)
	require.Equal(t, "cannot drop table products because other objects depend on it", pe.Message)
	require.Contains(t, pe.Detail, "constraint product_users_product_id_fkey on table product_users depends on table products")
	require.Equal(t, "Use DROP ... CASCADE to drop the dependent objects too.", pe.Hint)

	// IF EXISTS on a missing table: Postgres's notice; without: its error.
	exec(t, c, `CALL tombstone.trash_tables(ARRAY['"nope"', '"audit_log"'], true, false, '', 'DROP TABLE IF EXISTS nope, audit_log')`)
	require.Contains(t, note.all(), `NOTICE: table "nope" does not exist, skipping`)
	err = callVia(t, c, cat, "DROP TABLE nope, products", rewrite.Options{})
	pe = pgErr(t, err)
	require.Equal(t, "42P01", pe.Code)
	require.Equal(t, `table "nope" does not exist`, pe.Message)
	// audit_log is not protected: dropped for real, not trashed.
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass('audit_log')::text"))
	require.Equal(t, "", trashed(t, c))

	exec(t, c, "CREATE VIEW cheap AS SELECT * FROM products WHERE price < 2")
	mustCall(t, c, cat, "DROP TABLE products CASCADE")
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass('products')::text"))
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass('cheap')::text"), "dependent view dropped")
	require.Contains(t, note.all(), "drop cascades to constraint product_users_product_id_fkey on table product_users")
	require.Contains(t, note.all(), "drop cascades to view cheap")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('product_users'::regclass, 'links'::regclass) AND conname LIKE '%product%'"))
	require.Regexp(t, `^products__\d+$`, trashed(t, c))
	require.Equal(t, "public.products|false", queryString(t, c,
		"SELECT original_schema || '.' || original_name || '|' || (restored_at IS NOT NULL) FROM tombstone.trash"))
	require.Equal(t, "true", queryString(t, c, "SELECT (purge_after = dropped_at + interval '7 days')::text FROM tombstone.trash"))
	// The shadow registry keeps the original name; tombstones stay.
	require.Equal(t, "public.products", queryString(t, c, "SELECT source_schema || '.' || source_name FROM tombstone.shadows WHERE shadow_name = 'public__products'"))

	// A table of that name again: UNDROP refuses.
	exec(t, c, "CREATE TABLE products (x int)")
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('products')")
	pe = pgErr(t, err)
	require.Equal(t, "42P07", pe.Code)
	exec(t, c, "DROP TABLE products")

	var name, from string
	require.NoError(t, c.QueryRow(ctx, "SELECT table_name, restored_from FROM tombstone.undrop_table('products')").Scan(&name, &from))
	require.Equal(t, "public.products", name)
	require.Regexp(t, `^tombstone_trash\.products__\d+$`, from)
	require.Equal(t, before["products"], queryString(t, c, "SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM products x"))
	require.Equal(t, indexes, queryString(t, c, "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index WHERE indrelid = 'products'::regclass"))
	require.Equal(t, fks, queryString(t, c, "SELECT string_agg(conrelid::regclass || ':' || pg_get_constraintdef(oid), ',' ORDER BY 1) FROM pg_constraint WHERE confrelid = 'products'::regclass"))
	require.Equal(t, "", trashed(t, c))
	require.Equal(t, "true", queryString(t, c, "SELECT (restored_at IS NOT NULL)::text FROM tombstone.trash"))
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('products')")
	require.Equal(t, "42P01", pgErr(t, err).Code, "nothing left to undrop")

	// DELETE works on the restored table again, with a fresh catalog.
	cat = loadCatalog(t, c)
	deleteVia(t, c, cat, "DELETE FROM products WHERE id = 11")
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.public__products WHERE id = 11"))
}

func TestTrashPartitionedAndRecreatedName(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)

	mustCall(t, c, cat, "DROP TABLE events")
	require.Regexp(t, `^events_2024__\d+_p1,events_2025__\d+_p2,events__\d+$`, trashed(t, c))
	exec(t, c, "CREATE TABLE events (id int)")
	exec(t, c, "INSERT INTO events VALUES (1)")
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	cat = loadCatalog(t, c)
	// A second table of the same name goes to the trash too, next to
	// the first (its indexes and type do not collide).
	mustCall(t, c, cat, "DROP TABLE events")
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM tombstone.trash WHERE original_name = 'events'"))

	// UNDROP takes the newest.
	_, err := c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('public.events')")
	require.NoError(t, err)
	require.Equal(t, "(1)", queryString(t, c, "SELECT string_agg(x::text, ',') FROM events x"))
	// Dropped directly (not through the proxy): gone for good; the
	// older trash entry is next.
	exec(t, c, "DROP TABLE events")
	_, err = c.Exec(ctx, `SELECT * FROM tombstone.undrop_table('"events"')`)
	require.NoError(t, err)
	require.Equal(t, before["events"], dump(t, c)["events"])
	require.Equal(t, "events_2024,events_2025", queryString(t, c,
		"SELECT string_agg(relid::regclass::text, ',' ORDER BY 1) FROM pg_partition_tree('events') WHERE relid <> 'events'::regclass"))

	// A partition named alone: detached, and to the trash as a table of
	// its own; UNDROP gives it back detached, to be attached again.
	bound := queryString(t, c, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'events_2024'::regclass")
	mustCall(t, c, loadCatalog(t, c), "DROP TABLE events_2024")
	require.Equal(t, "events_2025", queryString(t, c,
		"SELECT string_agg(relid::regclass::text, ',' ORDER BY 1) FROM pg_partition_tree('events') WHERE relid <> 'events'::regclass"))
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('events_2024')")
	require.NoError(t, err)
	exec(t, c, "ALTER TABLE events ATTACH PARTITION events_2024 "+bound)
	require.Equal(t, before["events"], dump(t, c)["events"])
	// Named with its table, a partition goes to the trash with it.
	mustCall(t, c, loadCatalog(t, c), "DROP TABLE events_2024, events")
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass('events_2024')::text"))
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM tombstone.trash WHERE original_name = 'events' AND restored_at IS NULL"))
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('events')")
	require.NoError(t, err)
	require.Equal(t, before["events"], dump(t, c)["events"])
}

// An application role that owns its table can TRUNCATE and DROP it
// through the procedures and read no tombstones; a role that does not
// own it gets Postgres's errors.
func TestTrashAppRole(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	app := newRole(t, dsn, "ts_app")
	other := newRole(t, dsn, "ts_oth")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, "CREATE TABLE mine (id int PRIMARY KEY, secret text); INSERT INTO mine VALUES (1, 'a'), (2, 'b')")
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	exec(t, su, "GRANT SELECT ON mine TO "+other)

	otherConn := testenv.Connect(t, withUser(t, dsn, other))
	_, err := otherConn.Exec(ctx, `CALL tombstone.capture_truncate(ARRAY['"mine"'], ARRAY[false], false, false, '', 'TRUNCATE mine')`)
	require.Equal(t, "42501", pgErr(t, err).Code)
	_, err = otherConn.Exec(ctx, `CALL tombstone.trash_tables(ARRAY['"mine"'], false, false, '', 'DROP TABLE mine')`)
	pe := pgErr(t, err)
	require.Equal(t, "42501", pe.Code)
	require.Equal(t, "must be owner of table mine", pe.Message)
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM tombstone.trash"))

	_, err = appConn.Exec(ctx, `CALL tombstone.capture_truncate(ARRAY['"mine"'], ARRAY[false], false, false, '', 'TRUNCATE mine')`)
	require.NoError(t, err)
	require.Equal(t, app, queryString(t, su, "SELECT role::text FROM tombstone.batches"))
	for _, q := range []string{"SELECT * FROM tombstone.batches", "SELECT * FROM tombstone.public__mine",
		"SELECT * FROM tombstone.shadows", "SELECT * FROM tombstone.trash"} {
		_, err = appConn.Exec(ctx, q)
		require.Equal(t, "42501", pgErr(t, err).Code, q)
	}
	exec(t, appConn, "INSERT INTO mine VALUES (3, 'c')")
	_, err = appConn.Exec(ctx, `CALL tombstone.trash_tables(ARRAY['"mine"'], false, false, '', 'DROP TABLE mine')`)
	require.NoError(t, err)
	require.Equal(t, app, queryString(t, su, "SELECT role::text FROM tombstone.trash"))
	trashName := queryString(t, su, "SELECT trash_name::text FROM tombstone.trash")
	_, err = appConn.Exec(ctx, "SELECT * FROM tombstone_trash."+trashName)
	require.Equal(t, "42501", pgErr(t, err).Code, "the trash is out of reach")
	_, err = appConn.Exec(ctx, "DROP TABLE tombstone_trash."+trashName)
	require.Equal(t, "42501", pgErr(t, err).Code, "the trash is out of reach")
	_, err = appConn.Exec(ctx, "SELECT * FROM tombstone.undrop_table('mine')")
	require.Equal(t, "42501", pgErr(t, err).Code, "admin only")

	_, err = su.Exec(ctx, "SELECT * FROM tombstone.undrop_table('mine')")
	require.NoError(t, err)
	require.Equal(t, "3:c", queryString(t, appConn, "SELECT string_agg(id || ':' || secret, ',') FROM mine"))
	require.Equal(t, app, queryString(t, su, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'mine'"))
}

// TestReaperAdminDropsOthersTrash: a reaper running as a tombstone_admin
// member that owns nothing drops an application's expired trash table.
func TestReaperAdminDropsOthersTrash(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	app := newRole(t, dsn, "ts_owner")
	adm := newRole(t, dsn, "ts_reaper")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	exec(t, su, "GRANT tombstone_admin TO "+adm)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, "CREATE TABLE gone (id int PRIMARY KEY)")
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	exec(t, appConn, `CALL tombstone.trash_tables(ARRAY['"gone"'], false, false, '', 'DROP TABLE gone')`)
	exec(t, su, "UPDATE tombstone.trash SET purge_after = now() - interval '1 minute'")
	trashName := queryString(t, su, "SELECT trash_name::text FROM tombstone.trash")

	admConn := testenv.Connect(t, withUser(t, dsn, adm))
	_, err := tombstone.Reap(ctx, admConn, tombstone.ReaperOptions{})
	require.NoError(t, err)
	require.Equal(t, "", queryString(t, su, "SELECT coalesce(to_regclass('tombstone_trash."+trashName+"')::text, '')"), "dropped")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.trash WHERE purged_at IS NOT NULL"))
	_, err = admConn.Exec(ctx, "SELECT tombstone._drop_trashed(1)")
	require.Error(t, err, "only expired, unpurged trash entries can be dropped")
}

// TestTrashRejectPolicy: under policies.drop: reject the database refuses
// a DROP TABLE of a protected table the proxy could not name (created in
// the same Query), with its own message; the table stays.
func TestTrashRejectPolicy(t *testing.T) {
	c, _ := setup(t, true)
	exec(t, c, `UPDATE tombstone.settings SET value = '"reject"' WHERE key = 'policies.drop'`)
	exec(t, c, "CREATE TABLE n2 (id int PRIMARY KEY)")
	_, err := c.Exec(context.Background(), "CALL tombstone.trash_tables(ARRAY['n2'], false, false, '', 'DROP TABLE n2')")
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "0A000", pe.Code)
	require.Equal(t, "tombstone: DROP TABLE of protected table public.n2 is refused (policies.drop: reject)", pe.Message)
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM pg_class WHERE relname = 'n2'"))
}

// TestTrashPartitionEdges: a sub-partition in an unprotected schema goes
// with its partition named alongside it; a partition whose rows other
// rows reference is refused with the store's 0A000 (not the detach's
// 23503), and nothing is detached.
func TestTrashPartitionEdges(t *testing.T) {
	c, _ := setup(t, true)
	exec(t, c, `CREATE SCHEMA unprot;
CREATE TABLE mx (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE mx_1 PARTITION OF mx FOR VALUES FROM (0) TO (10) PARTITION BY RANGE (k);
CREATE TABLE unprot.mx_1_u PARTITION OF mx_1 FOR VALUES FROM (0) TO (10);
INSERT INTO mx SELECT g, g % 10 FROM generate_series(1, 50) g;
CREATE TABLE pk (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE pk_a PARTITION OF pk FOR VALUES FROM (0) TO (100);
CREATE TABLE pk_b PARTITION OF pk FOR VALUES FROM (100) TO (200);
INSERT INTO pk VALUES (1), (150);
CREATE TABLE rf (id int PRIMARY KEY, pk_id int REFERENCES pk);
INSERT INTO rf VALUES (1, 1);`)
	exec(t, c, "CALL tombstone.trash_tables(ARRAY['unprot.mx_1_u', 'mx_1'], false, false, '', 'DROP TABLE unprot.mx_1_u, mx_1')")
	require.Equal(t, int64(50), queryInt(t, c, "SELECT count(*) FROM tombstone_trash."+
		queryString(t, c, "SELECT trash_name FROM tombstone.trash WHERE original_name = 'mx_1'")))

	_, err := c.Exec(context.Background(), "CALL tombstone.trash_tables(ARRAY['pk_a'], false, true, '', 'DROP TABLE pk_a CASCADE')")
	require.Equal(t, "0A000", pgErr(t, err).Code)
	require.Equal(t, "pk_a,pk_b", queryString(t, c,
		"SELECT string_agg(relid::regclass::text, ',' ORDER BY 1) FROM pg_partition_tree('pk') WHERE relid <> 'pk'::regclass"))
}
