package tombstone_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// TestTrashIsInert: a table in the trash takes part in nothing —
// inheritance, foreign keys either way, triggers, rules, policies,
// defaults, statistics names, ownership and grants — and UNDROP TABLE
// wires it back exactly.
func TestTrashIsInert(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	c, note := connectWithNotices(t, dsn)
	app := newRole(t, dsn, "ts_inert")
	reader := newRole(t, dsn, "ts_reader")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, `
		CREATE TABLE cities (name text PRIMARY KEY, population int);
		CREATE TABLE capitals (state text) INHERITS (cities);
		INSERT INTO cities VALUES ('Springfield', 10), ('Shelbyville', 20);
		INSERT INTO capitals VALUES ('Sacramento', 30, 'CA'), ('Albany', 40, 'NY');
		CREATE TABLE customers (id int PRIMARY KEY);
		INSERT INTO customers SELECT generate_series(1, 5);
		CREATE TABLE log (what text);
		CREATE FUNCTION note_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO log VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
		CREATE FUNCTION next_no() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$;
		CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers ON DELETE CASCADE,
		                     no int DEFAULT next_no(), a int, b int);
		INSERT INTO orders SELECT i, i, i, i % 2, i % 3 FROM generate_series(1, 5) i;
		CREATE TRIGGER orders_note AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION note_insert();
		ALTER TABLE orders DISABLE TRIGGER orders_note;
		CREATE TRIGGER capitals_note AFTER INSERT ON capitals FOR EACH ROW EXECUTE FUNCTION note_insert();
		CREATE RULE orders_log AS ON UPDATE TO orders DO ALSO INSERT INTO log VALUES ('rule');
		CREATE STATISTICS orders_ab ON a, b FROM orders;
		ALTER TABLE orders ENABLE ROW LEVEL SECURITY;`)
	exec(t, appConn, "CREATE POLICY mine ON orders TO "+reader+" USING (customer_id > 2)")
	exec(t, appConn, "GRANT SELECT, INSERT ON orders TO "+reader)
	exec(t, appConn, "GRANT UPDATE (a) ON orders TO "+reader+" WITH GRANT OPTION")
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	const ordersState = `SELECT concat_ws(' | ',
		(SELECT string_agg(pg_get_constraintdef(oid), ', ' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'orders'::regclass),
		(SELECT string_agg(tgname || ':' || tgenabled::text, ', ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal AND tgname NOT LIKE '\_ts\_%'),
		(SELECT string_agg(rulename, ', ') FROM pg_rewrite WHERE ev_class = 'orders'::regclass),
		(SELECT string_agg(polname || ':' || pg_get_expr(polqual, polrelid), ', ') FROM pg_policy WHERE polrelid = 'orders'::regclass),
		(SELECT string_agg(stxnamespace::regnamespace::text || '.' || stxname, ', ') FROM pg_statistic_ext WHERE stxrelid = 'orders'::regclass),
		(SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'orders'::regclass AND adnum = 3),
		(SELECT relowner::regrole::text || ':' || relacl::text FROM pg_class WHERE oid = 'orders'::regclass),
		(SELECT string_agg(attname || ':' || attacl::text, ', ') FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attacl IS NOT NULL))`
	orders := queryString(t, su, ordersState)
	require.Contains(t, orders, "orders_note:D")
	trashRows := func(name string) int64 {
		return queryInt(t, su, "SELECT count(*) FROM tombstone_trash."+
			queryString(t, su, "SELECT trash_name::text FROM tombstone.trash WHERE original_name = $1 AND restored_at IS NULL", name))
	}

	// An inheritance child in the trash is no longer part of its parent.
	exec(t, appConn, `CALL tombstone.trash_tables(ARRAY['"capitals"'], false, false, '', 'DROP TABLE capitals')`)
	require.Equal(t, int64(2), queryInt(t, appConn, "SELECT count(*) FROM cities"))
	exec(t, appConn, "UPDATE cities SET population = 0")
	exec(t, appConn, "DELETE FROM cities")
	require.Equal(t, int64(2), trashRows("capitals"))
	require.Equal(t, int64(2), queryInt(t, su, "SELECT count(*) FROM tombstone_trash."+
		queryString(t, su, "SELECT trash_name::text FROM tombstone.trash WHERE original_name = 'capitals'")+" WHERE population > 20"),
		"rows in the trash are not changed through the parent")
	// DROP FUNCTION of a trigger function only the trashed table used,
	// then UNDROP: the link is back; the trigger cannot be, and says so.
	exec(t, appConn, "INSERT INTO cities VALUES ('Ogdenville', 5)")

	// A foreign key either way: the trashed table references nothing and
	// nothing reaches it.
	exec(t, appConn, `CALL tombstone.trash_tables(ARRAY['"orders"'], false, false, '', 'DROP TABLE orders')`)
	exec(t, appConn, "DELETE FROM customers WHERE id = 1")
	exec(t, appConn, "TRUNCATE customers")
	exec(t, appConn, "INSERT INTO customers SELECT generate_series(2, 5)")
	require.Equal(t, int64(5), trashRows("orders"), "no cascade into the trash")
	// Nothing it used is held on to: the default's function, the
	// statistics object's name, the rule's table, the roles.
	exec(t, appConn, "CREATE STATISTICS orders_ab ON population, name FROM cities")
	exec(t, appConn, "DROP STATISTICS orders_ab")
	exec(t, appConn, "ALTER FUNCTION next_no() RENAME TO next_no2; ALTER FUNCTION next_no2() RENAME TO next_no")
	_, err := appConn.Exec(ctx, "BEGIN; DROP FUNCTION next_no(); DROP TABLE log CASCADE; ROLLBACK")
	require.NoError(t, err, "the trash holds on to nothing")
	_, err = su.Exec(ctx, "BEGIN; DROP OWNED BY "+reader+"; DROP ROLE "+reader+"; DROP OWNED BY "+app+"; DROP ROLE "+app+"; ROLLBACK")
	require.NoError(t, err, "roles that owned or were granted a trashed table can be dropped")
	require.NotEqual(t, app, queryString(t, su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = (SELECT source FROM tombstone.trash WHERE original_name = 'orders')"))

	// UNDROP gives everything back, as it was.
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('orders')")
	require.NoError(t, err)
	require.Contains(t, note.all(), "tombstone: foreign key orders_customer_id_fkey of table public.orders re-created NOT VALID")
	// Customer 1 was deleted while its order lay in the trash.
	exec(t, su, "DELETE FROM orders WHERE customer_id = 1; ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_fkey")
	require.Equal(t, orders, queryString(t, su, ordersState))
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('capitals')")
	require.NoError(t, err)
	require.Equal(t, int64(3), queryInt(t, appConn, "SELECT count(*) FROM cities"), "the child is part of its parent again")
	require.Equal(t, "capitals_note:O", queryString(t, su, "SELECT string_agg(tgname || ':' || tgenabled::text, ',') FROM pg_trigger WHERE tgrelid = 'capitals'::regclass AND tgname = 'capitals_note'"))
	require.Equal(t, app, queryString(t, su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'capitals'::regclass"))

	// DROP … CASCADE takes inheritance children along, each to the
	// trash, in one NOTICE as Postgres reports it; UNDROP of both
	// links them again.
	exec(t, c, `CALL tombstone.trash_tables(ARRAY['"cities"'], false, true, '', 'DROP TABLE cities CASCADE')`)
	require.Equal(t, int64(2), queryInt(t, su, "SELECT count(*) FROM tombstone.trash WHERE original_name IN ('cities', 'capitals') AND restored_at IS NULL"))
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('cities')")
	require.NoError(t, err)
	require.Equal(t, int64(1), queryInt(t, appConn, "SELECT count(*) FROM cities"), "its child is still in the trash")
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('capitals')")
	require.NoError(t, err)
	require.Equal(t, int64(3), queryInt(t, appConn, "SELECT count(*) FROM cities"))
	require.Contains(t, note.all(), "NOTICE: drop cascades to table capitals")
}
