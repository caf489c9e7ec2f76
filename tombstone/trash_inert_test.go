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

// TestCaptureTriggersHidden: the capture's triggers are the store's
// machinery: marked internal, they are not among a table's triggers
// where users look (information_schema, psql's describe query), its
// owner's DISABLE TRIGGER USER leaves them alone, and only a superuser
// may disable them.
func TestCaptureTriggersHidden(t *testing.T) {
	su, dsn := setup(t, true)
	ctx := context.Background()
	app := newRole(t, dsn, "ts_hide")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+app)
	appConn := testenv.Connect(t, withUser(t, dsn, app))
	exec(t, appConn, "CREATE TABLE mine (id int PRIMARY KEY); INSERT INTO mine SELECT generate_series(1, 3)")
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	require.Equal(t, int64(2), queryInt(t, su, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'mine'::regclass AND tgisinternal"))
	for _, tb := range []string{"mine", "sites", "events"} {
		require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM information_schema.triggers WHERE event_object_table = $1", tb), tb)
		require.Equal(t, int64(0), queryInt(t, su, `SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = $1::regclass
			AND (NOT t.tgisinternal OR (t.tgisinternal AND t.tgenabled = 'D'))`, tb), tb)
	}
	exec(t, appConn, "ALTER TABLE mine DISABLE TRIGGER USER")
	_, err := appConn.Exec(ctx, "ALTER TABLE mine DISABLE TRIGGER _ts_capture")
	require.Equal(t, "42501", pgErr(t, err).Code)
	deleteVia(t, su, loadCatalog(t, su), "DELETE FROM mine WHERE id = 2")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.public__mine WHERE id = 2"))
}

// TestDropTypeOfTrashedTable: DROP TYPE / DROP DOMAIN of a type only a
// table in the trash still uses works, as after a plain DROP TABLE: the
// trashed column gives it up (to text, or a domain's base type), and
// UNDROP converts it back where a type of that name exists again, else
// keeps the text and says so.
func TestDropTypeOfTrashedTable(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	c, note := connectWithNotices(t, dsn)
	exec(t, su, `
		CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE TYPE color AS ENUM ('red', 'blue');
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE TABLE paint (id posint PRIMARY KEY, m mood, c color[], n int);
		INSERT INTO paint VALUES (1, 'sad', '{red,blue}', 1), (2, 'happy', NULL, 2);`)
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	before := queryString(t, su, "SELECT string_agg(p::text, ';' ORDER BY id) FROM paint p")
	exec(t, su, `CALL tombstone.trash_tables(ARRAY['"paint"'], false, false, '', 'DROP TABLE paint')`)
	for _, q := range []string{
		`CALL tombstone.drop_types('DROP TYPE mood, color', ARRAY['"mood"', '"color"'], false, '')`,
		`CALL tombstone.drop_types('DROP DOMAIN posint', ARRAY['"posint"'], false, '')`,
	} {
		exec(t, su, q)
	}
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM pg_type WHERE typname IN ('mood', 'color', 'posint')"))
	exec(t, su, "CREATE TYPE mood AS ENUM ('sad', 'happy')")
	_, err := c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('paint')")
	require.NoError(t, err)
	require.Equal(t, before, queryString(t, su, "SELECT string_agg(p::text, ';' ORDER BY id) FROM paint p"))
	require.Equal(t, "id:integer,m:mood,c:text,n:integer", queryString(t, su, `SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'paint'::regclass AND attnum > 0`))
	require.Contains(t, note.all(), "WARNING: tombstone: column c of table public.paint keeps type text instead of public.color[]")
	require.Contains(t, note.all(), "WARNING: tombstone: column id of table public.paint keeps type integer instead of public.posint")
}

// TestDropTypeOfTrashedTypedTable (PostgreSQL's privileges test): a
// typed table in the trash (CREATE TABLE … OF type) lets its type go,
// keeping the columns as its own; UNDROP makes it of the type again
// when one of that name exists, else says so.
func TestDropTypeOfTrashedTypedTable(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	c, note := connectWithNotices(t, dsn)
	exec(t, su, `
		CREATE TYPE pair AS (a int, b text);
		CREATE TABLE typed1 OF pair; CREATE TABLE typed2 OF pair;
		INSERT INTO typed1 VALUES (1, 'x'); INSERT INTO typed2 VALUES (2, 'y');`)
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	exec(t, su, `CALL tombstone.trash_tables(ARRAY['"typed1"', '"typed2"'], false, false, '', 'DROP TABLE typed1, typed2')`)
	exec(t, su, `CALL tombstone.drop_types('DROP TYPE pair', ARRAY['"pair"'], false, '')`)
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM pg_type WHERE typname = 'pair'"))
	exec(t, su, "CREATE TYPE pair AS (a int, b text)")
	_, err := c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('typed1')")
	require.NoError(t, err)
	require.Equal(t, "pair:(1,x)", queryString(t, su, "SELECT reloftype::regtype::text || ':' || (SELECT string_agg(t::text, ',') FROM typed1 t) FROM pg_class WHERE oid = 'typed1'::regclass"))
	exec(t, su, "DROP TABLE typed1; DROP TYPE pair; CREATE TYPE pair AS (a int)")
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undrop_table('typed2')")
	require.NoError(t, err)
	require.Equal(t, "-:(2,y)", queryString(t, su, "SELECT coalesce(nullif(reloftype, 0)::regtype::text, '-') || ':' || (SELECT string_agg(t::text, ',') FROM typed2 t) FROM pg_class WHERE oid = 'typed2'::regclass"))
	require.Contains(t, note.all(), "WARNING: tombstone: table public.typed2 is no longer of type public.pair")
}

// TestTrashedColumnOfRowType (PostgreSQL's alter_table test): a trashed
// table's column of another table's row type (or an array of it) does
// not block that table's ALTER TABLE or DROP TABLE; UNDROP gives the
// column its type back while the table exists in the same shape (else
// the text stays: test/ddl_review_test.go).
func TestTrashedColumnOfRowType(t *testing.T) {
	su, _ := setup(t, false)
	ctx := context.Background()
	exec(t, su, `
		CREATE TABLE at_tab1 (x int, y text);
		CREATE TABLE at_tab2 (id int PRIMARY KEY, r at_tab1, rs at_tab1[]);
		INSERT INTO at_tab2 VALUES (1, ROW(1, 'a'), ARRAY[ROW(2, 'b')::at_tab1]), (2, NULL, '{}');`)
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	before := queryString(t, su, "SELECT string_agg(t::text, ';' ORDER BY id) FROM at_tab2 t")
	exec(t, su, `CALL tombstone.trash_tables(ARRAY['"at_tab2"'], false, false, '', 'DROP TABLE at_tab2')`)
	// Not blocked by the trash; and back as it was, so that the trashed
	// text reads back into the same shape.
	exec(t, su, "ALTER TABLE at_tab1 ALTER COLUMN y TYPE varchar(10); ALTER TABLE at_tab1 ALTER COLUMN y TYPE text")
	_, err := su.Exec(ctx, "SELECT * FROM tombstone.undrop_table('at_tab2')")
	require.NoError(t, err)
	require.Equal(t, before, queryString(t, su, "SELECT string_agg(t::text, ';' ORDER BY id) FROM at_tab2 t"))
	require.Equal(t, "r:at_tab1,rs:at_tab1[]", queryString(t, su, `SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'at_tab2'::regclass AND attname IN ('r', 'rs')`))
	exec(t, su, `CALL tombstone.trash_tables(ARRAY['"at_tab2"'], false, false, '', 'DROP TABLE at_tab2')`)
	exec(t, su, "DROP TABLE at_tab1")
}

// TestDropTypeCascadeKeepsTrashedDomainColumns (PostgreSQL's domain
// test): DROP TYPE … CASCADE drops the domains over the type; a trashed
// table's column of such a domain gives it up first (as text), so the
// CASCADE does not drop that column of the trash, and the client sees
// Postgres's own NOTICE, once.
func TestDropTypeCascadeKeepsTrashedDomainColumns(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	c, note := connectWithNotices(t, dsn)
	exec(t, su, `
		CREATE TYPE comptype AS (r float8, i float8);
		CREATE DOMAIN dcomptype AS comptype;
		CREATE DOMAIN dcomptypea AS comptype[];
		CREATE TABLE dcomptable (id int PRIMARY KEY, d1 dcomptype, d2 dcomptypea);
		INSERT INTO dcomptable VALUES (1, ROW(1, 2), ARRAY[ROW(5, 6)::comptype]), (2, ROW(3, 4), NULL);`)
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	exec(t, su, `CALL tombstone.trash_tables(ARRAY['"dcomptable"'], false, false, '', 'DROP TABLE dcomptable')`)
	_, err := c.Exec(ctx, `CALL tombstone.drop_types('DROP TYPE comptype CASCADE', ARRAY['"comptype"'], true, '')`)
	require.NoError(t, err)
	require.Equal(t, "NOTICE: drop cascades to 2 other objects\nDETAIL: drop cascades to type dcomptypea\ndrop cascades to type dcomptype", note.all())
	trashed := queryString(t, su, "SELECT trash_name::text FROM tombstone.trash WHERE original_name = 'dcomptable'")
	require.Equal(t, `1:(1,2){"(5,6)"},2:(3,4)`, queryString(t, su, "SELECT string_agg(id || ':' || d1 || coalesce(d2, ''), ',' ORDER BY id) FROM tombstone_trash."+trashed))
}

// TestStoreDDLUnseenByUserEventTriggers: the store's own DDL (a new
// table's shadow, its indexes, capture function and triggers) does not
// reach the user's event triggers: they see the user's statements only,
// as without the proxy.
func TestStoreDDLUnseenByUserEventTriggers(t *testing.T) {
	su, _ := setup(t, false)
	exec(t, su, `
		CREATE TABLE ddl_log (tag text, identity text);
		CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
		DECLARE r record;
		BEGIN
			FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
				INSERT INTO public.ddl_log VALUES (r.command_tag, r.object_identity);
			END LOOP;
		END $$;
		CREATE EVENT TRIGGER user_log ON ddl_command_end EXECUTE FUNCTION log_ddl();`)
	t.Cleanup(func() { exec(t, su, "DROP EVENT TRIGGER IF EXISTS user_log") })
	exec(t, su, "CREATE TABLE watched (id int PRIMARY KEY, note text)")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.shadows WHERE source_name = 'watched'"), "protected, with its shadow")
	require.Equal(t, "CREATE INDEX public.watched_pkey,CREATE TABLE public.watched", queryString(t, su,
		"SELECT string_agg(tag || ' ' || identity, ',' ORDER BY tag, identity) FROM ddl_log WHERE identity NOT LIKE 'public.ddl_log%'"))
}

// TestUndropWiresWhatItWired: UNDROP re-creates a trigger only if its
// definition still means the function it called (not one dropped and
// created again under its name while the table lay in the trash); keys
// and inheritance links between tables undropped in any order come back;
// the trash's tables belong to tombstone_trash_owner, a role with no
// rights, meanwhile.
func TestUndropWiresWhatItWired(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	c, note := connectWithNotices(t, dsn)
	exec(t, su, `
		CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
		CREATE TABLE docs (id int PRIMARY KEY);
		CREATE TRIGGER docs_audit BEFORE INSERT ON docs FOR EACH ROW EXECUTE FUNCTION audit();
		CREATE TABLE fa (id int PRIMARY KEY); CREATE TABLE fb (id int PRIMARY KEY, a int REFERENCES fa);
		INSERT INTO fa VALUES (1); INSERT INTO fb VALUES (1, 1);
		CREATE TABLE ha (x int); CREATE TABLE hb (y int) INHERITS (ha); INSERT INTO hb VALUES (1, 2);`)
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	fkDef := queryString(t, su, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'fb'::regclass AND contype = 'f'")
	drop := func(sql string) {
		t.Helper()
		exec(t, su, sql)
	}
	undrop := func(name string) {
		t.Helper()
		_, err := c.Exec(ctx, "SELECT * FROM tombstone.undrop_table($1)", name)
		require.NoError(t, err, name)
	}

	drop(`CALL tombstone.trash_tables(ARRAY['"docs"'], false, false, '', 'DROP TABLE docs')`)
	holder := queryString(t, su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = (SELECT source FROM tombstone.trash WHERE original_name = 'docs')")
	require.Regexp(t, `^tombstone_trash_\d+_10$`, holder, "a role of the owner's (postgres, oid 10) own, with no rights")
	exec(t, su, "DROP FUNCTION audit(); CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
	undrop("docs")
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND tgname = 'docs_audit'"))
	require.Contains(t, note.all(), "trigger docs_audit of table public.docs not re-created: it would now use other objects")
	require.Equal(t, "postgres", queryString(t, su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'docs'::regclass"))
	require.Equal(t, int64(0), queryInt(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = $1", holder), "dropped once it holds nothing")

	// Dropped one after the other, undropped in either order.
	drop(`CALL tombstone.trash_tables(ARRAY['"fa"'], false, true, '', 'DROP TABLE fa CASCADE')`)
	drop(`CALL tombstone.trash_tables(ARRAY['"fb"'], false, false, '', 'DROP TABLE fb')`)
	undrop("fa")
	undrop("fb")
	require.Equal(t, fkDef, queryString(t, su, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'fb'::regclass AND contype = 'f'"))
	drop(`CALL tombstone.trash_tables(ARRAY['"hb"'], false, false, '', 'DROP TABLE hb')`)
	drop(`CALL tombstone.trash_tables(ARRAY['"ha"'], false, false, '', 'DROP TABLE ha')`)
	undrop("hb")
	undrop("ha")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM ha"), "hb is ha's child again")
}

// TestUndropRunsNoOwnerCode: re-creating a foreign key checks the rows
// with a query over both tables, whose code (an index predicate's
// function) is their owner's: where that owner is another role, the key
// comes back NOT VALID, for the owner to validate, and nothing of the
// owner's runs as the admin.
func TestUndropRunsNoOwnerCode(t *testing.T) {
	su, dsn := setup(t, false)
	ctx := context.Background()
	m := newRole(t, dsn, "ts_mal")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+m+"; CREATE TABLE ran (who text); GRANT INSERT ON ran TO "+m)
	mc := testenv.Connect(t, withUser(t, dsn, m))
	exec(t, mc, `
		CREATE FUNCTION note() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN INSERT INTO public.ran VALUES (current_user); RETURN true; END $$;
		CREATE FUNCTION g() RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT public.note()';
		CREATE TABLE mp (id int PRIMARY KEY); CREATE TABLE mc (id int, pid int REFERENCES mp);
		INSERT INTO mp VALUES (1); INSERT INTO mc VALUES (1, 1);`)
	exec(t, su, "TRUNCATE ran")
	exec(t, mc, "CREATE INDEX ON mc (pid) WHERE g()")
	require.NoError(t, tombstone.Sync(ctx, su, tombstone.InstallOptions{}))
	exec(t, mc, `CALL tombstone.trash_tables(ARRAY['"mp"'], false, true, '', 'DROP TABLE mp CASCADE')`)
	exec(t, su, "TRUNCATE ran")
	_, err := su.Exec(ctx, "SELECT * FROM tombstone.undrop_table('mp')")
	require.NoError(t, err)
	require.Equal(t, "", queryString(t, su, "SELECT string_agg(who, ',') FROM ran"), "the owner's code ran as the admin")
	require.Equal(t, "false", queryString(t, su, "SELECT convalidated::text FROM pg_constraint WHERE conrelid = 'mc'::regclass AND contype = 'f'"))
}

// TestDropTypeRunsNoOwnerCode: a trashed table whose CHECK constraint
// (code of its author's) uses the column keeps the type — converting the
// column would check the constraint as the store's owner — so the DROP
// TYPE fails as it would have, and nothing of the author's ran.
func TestDropTypeRunsNoOwnerCode(t *testing.T) {
	su, dsn := setup(t, false)
	m := newRole(t, dsn, "ts_chk")
	exec(t, su, "GRANT CREATE ON SCHEMA public TO "+m+"; CREATE TABLE ran (who text); GRANT INSERT ON ran TO "+m)
	mc := testenv.Connect(t, withUser(t, dsn, m))
	exec(t, mc, `
		CREATE TYPE mood AS ENUM ('ok');
		CREATE FUNCTION evil(x text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.ran VALUES (current_user); RETURN true; END $$;
		CREATE TABLE chk (id int PRIMARY KEY, m mood CHECK (evil(m::text)));
		INSERT INTO chk VALUES (1, 'ok');`)
	require.NoError(t, tombstone.Sync(context.Background(), su, tombstone.InstallOptions{}))
	exec(t, mc, `CALL tombstone.trash_tables(ARRAY['"chk"'], false, false, '', 'DROP TABLE chk')`)
	exec(t, su, "TRUNCATE ran")
	_, err := mc.Exec(context.Background(), `CALL tombstone.drop_types('DROP TYPE mood', ARRAY['"mood"'], false, '')`)
	require.Equal(t, "2BP01", pgErr(t, err).Code)
	require.Equal(t, "", queryString(t, su, "SELECT string_agg(who, ',') FROM ran"))
}

// TestParentFollowsNewChild: a table that gains an inheritance child
// captures per row from then on (the DDL event trigger syncs the parent
// too), so its DELETEs are not refused for a missing capture trigger.
func TestParentFollowsNewChild(t *testing.T) {
	su, _ := setup(t, false)
	exec(t, su, "CREATE TABLE par (x int); INSERT INTO par VALUES (1)")
	require.Equal(t, "8", queryString(t, su, "SELECT tgtype::text FROM pg_trigger WHERE tgrelid = 'par'::regclass AND tgname = '_ts_capture'"))
	exec(t, su, "CREATE TABLE kid (y int) INHERITS (par); INSERT INTO kid VALUES (2, 3)")
	require.Equal(t, "9", queryString(t, su, "SELECT tgtype::text FROM pg_trigger WHERE tgrelid = 'par'::regclass AND tgname = '_ts_capture'"))
	deleteVia(t, su, loadCatalog(t, su), "DELETE FROM par")
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.public__par"))
	require.Equal(t, int64(1), queryInt(t, su, "SELECT count(*) FROM tombstone.public__kid"))
}
