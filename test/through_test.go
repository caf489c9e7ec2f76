package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// throughSchema: public is protected, other is not.
//
//	other.accounts → orders           unprotected parent, CASCADE into a protected child
//	orders → other.carts → cart_items  protected → unprotected → protected (CASCADE)
//	other.accounts → other.notes       unprotected child: left to Postgres
const throughSchema = `CREATE SCHEMA other;
	CREATE TABLE other.accounts (id int PRIMARY KEY, name text);
	CREATE TABLE orders (id int PRIMARY KEY, account_id int REFERENCES other.accounts ON DELETE CASCADE, note text);
	CREATE TABLE other.carts (id int PRIMARY KEY, order_id int REFERENCES orders ON DELETE CASCADE);
	CREATE TABLE cart_items (id int PRIMARY KEY, cart_id int REFERENCES other.carts ON DELETE CASCADE, sku text);
	CREATE TABLE other.notes (id int PRIMARY KEY, account_id int REFERENCES other.accounts ON DELETE CASCADE);
	CREATE TABLE other.plain (id int PRIMARY KEY);
	CREATE TABLE refs_plain (id int PRIMARY KEY, plain_id int);
	INSERT INTO other.accounts SELECT g, 'a' || g FROM generate_series(1, 6) g;
	INSERT INTO orders SELECT g, (g % 6) + 1, 'o' || g FROM generate_series(1, 24) g;
	INSERT INTO other.carts SELECT g, g FROM generate_series(1, 24) g;
	INSERT INTO cart_items SELECT g, (g % 24) + 1, 's' || g FROM generate_series(1, 48) g;
	INSERT INTO other.notes SELECT g, (g % 6) + 1 FROM generate_series(1, 12) g;
	INSERT INTO other.plain SELECT g FROM generate_series(1, 6) g;
	INSERT INTO refs_plain SELECT g, g FROM generate_series(1, 5) g;`

var throughTables = []string{"other.accounts", "orders", "other.carts", "cart_items", "other.notes", "other.plain", "refs_plain"}

// TestCascadeThroughUnprotected: rows a protected table loses through an
// ON DELETE CASCADE that starts at, or passes through, an unprotected table
// are captured; the answers are Postgres's. A review found them lost.
func TestCascadeThroughUnprotected(t *testing.T) {
	e := newEnv(t, throughSchema)

	// The answers, in both protocols, are those of Postgres.
	steps := [][]pgproto3.FrontendMessage{
		{q("BEGIN")},
		{q("DELETE FROM other.accounts WHERE id = 1")},
		{q("DELETE FROM other.accounts WHERE id = 2; SELECT 1")},
		{&pgproto3.Parse{Name: "da", Query: "DELETE FROM other.accounts WHERE id = $1"}, &pgproto3.Describe{ObjectType: 'S', Name: "da"},
			&pgproto3.Bind{PreparedStatement: "da", Parameters: [][]byte{[]byte("3")}}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{}},
		{q("DELETE FROM other.accounts a WHERE id = 4 RETURNING *, a.id * 2 AS twice")},
		{q("WITH d AS (DELETE FROM other.accounts WHERE id = 5 RETURNING id) SELECT count(*) FROM d")},
		{q("PREPARE p AS DELETE FROM other.accounts WHERE id = $1"), q("EXECUTE p(6)")},
		{q("DELETE FROM other.accounts WHERE nosuch = 1")},
		{q("ROLLBACK")},
	}
	want := converse(t, e.direct, steps)
	require.Equal(t, want, converse(t, e.proxy, steps))
	require.NotContains(t, want, "_ts_")

	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	lost := e.snapshot("orders", "cart_items")

	// An unprotected parent: its rows go uncaptured, its protected
	// children's are captured, and those children's cascades through the
	// unprotected carts too.
	require.Equal(t, 1, e.count("SELECT count(*) FROM other.accounts WHERE id = 2"))
	tag, err := c.Exec(ctx, "DELETE FROM other.accounts WHERE id = $1", 2)
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM orders WHERE account_id = 2"))
	ordersGone := 4
	itemsGone := e.count("SELECT count(*) FROM tombstone.public__cart_items")
	require.Equal(t, ordersGone, e.count("SELECT count(*) FROM tombstone.public__orders WHERE _ts_cause = 'cascade'"))
	require.Equal(t, 8, itemsGone, "the items of the 4 orders' carts, through other.carts")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.batches"))
	require.Equal(t, 0, e.count("SELECT count(*) FROM other.notes WHERE account_id = 2"), "unprotected children: Postgres's cascade")

	// No protected row removed, no batch.
	tag, err = c.Exec(ctx, "DELETE FROM other.notes WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.batches"))

	// Restoring: the orders first (UNDELETE FROM orders restores what it
	// reaches through protected tables only), the unprotected account and
	// carts by hand, then the rest of the batch.
	rows, _ := simple(t, c, "SHOW BATCHES")
	require.Len(t, rows, 1)
	batch := rows[0][0]
	_, err = c.Exec(ctx, "INSERT INTO other.accounts VALUES (2, 'a2')")
	require.NoError(t, err)
	simple(t, c, "UNDELETE FROM orders BATCH "+batch)
	require.Equal(t, 4, e.count("SELECT count(*) FROM orders WHERE account_id = 2"))
	_, err = c.Exec(ctx, "INSERT INTO other.carts SELECT id, id FROM orders WHERE account_id = 2")
	require.NoError(t, err)
	simple(t, c, "UNDELETE BATCH "+batch)
	require.Equal(t, lost, e.snapshot("orders", "cart_items"))
}

// TestCascadeThroughMiddle: protected orders → unprotected carts →
// protected cart_items. The items are captured with the orders.
func TestCascadeThroughMiddle(t *testing.T) {
	e := newEnv(t, throughSchema)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	items := e.count("SELECT count(*) FROM cart_items i JOIN other.carts c ON c.id = i.cart_id WHERE c.order_id <= 3")
	require.Positive(t, items)
	tag, err := c.Exec(ctx, "DELETE FROM orders WHERE id <= 3")
	require.NoError(t, err)
	require.Equal(t, "DELETE 3", tag.String())
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.public__orders WHERE _ts_cause = 'delete'"))
	require.Equal(t, items, e.count("SELECT count(*) FROM tombstone.public__cart_items WHERE _ts_cause = 'cascade'"))
	var tables string
	require.NoError(t, testenv.Connect(t, e.direct).QueryRow(ctx, "SELECT tables::text FROM tombstone.batches").Scan(&tables))
	require.JSONEq(t, `{"public.orders": 3, "public.cart_items": 6}`, tables)
}

// TestCascadeThroughStaleCatalog: a foreign key that makes an unprotected
// table's cascade reach a protected one, which the proxy's catalog has
// not seen yet: committed, the statement is planned again and captured;
// in the open transaction that adds it, TS001 and nothing deleted.
func TestCascadeThroughStaleCatalog(t *testing.T) {
	e := newEnv(t, throughSchema)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := c.Exec(ctx, "DELETE FROM other.plain WHERE id = 6")
	require.NoError(t, err, "planned while other.plain leads nowhere")

	staleInTransaction(t, e, "ALTER TABLE refs_plain ADD FOREIGN KEY (plain_id) REFERENCES other.plain ON DELETE CASCADE",
		"DELETE FROM other.plain WHERE id = 1", throughTables...)

	_, err = c.Exec(ctx, "ALTER TABLE refs_plain ADD FOREIGN KEY (plain_id) REFERENCES other.plain ON DELETE CASCADE")
	require.NoError(t, err)
	tag, err := c.Exec(ctx, "DELETE FROM other.plain WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__refs_plain WHERE id = 2"))
}

// undeleteBatches runs UNDELETE BATCH for every batch SHOW BATCHES lists
// through c, and returns how many there were.
func undeleteBatches(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	rows, _ := simple(t, c, "SHOW BATCHES")
	for _, r := range rows {
		simple(t, c, "UNDELETE BATCH "+r[0])
	}
	return len(rows)
}

// staleInTransaction runs ddl and then del in one transaction through the
// proxy, whose catalog cannot see ddl yet: del fails with TS001, and once
// rolled back the tables are as before.
func staleInTransaction(t *testing.T, e *env, ddl, del string, tables ...string) {
	t.Helper()
	ctx := context.Background()
	before := e.snapshot(tables...)
	tx, err := testenv.Connect(t, e.proxy).Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, ddl)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, del)
	require.Equal(t, "TS001", pgErrCode(err))
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, before, e.snapshot(tables...))
}

// TestCascadeThroughView: a view on an unprotected table whose cascade
// reaches a protected one cannot be captured: refused, nothing deleted.
func TestCascadeThroughView(t *testing.T) {
	e := newEnv(t, throughSchema+`CREATE VIEW other.vacc AS SELECT * FROM other.accounts;`)
	c := testenv.Connect(t, e.proxy)
	before := e.snapshot(throughTables...)
	_, err := c.Exec(context.Background(), "DELETE FROM other.vacc WHERE id = 3")
	require.Equal(t, "0A000", pgErrCode(err))
	require.ErrorContains(t, err, "orders")
	require.Equal(t, before, e.snapshot(throughTables...))
}

// TestTruncateUnprotectedParent: a TRUNCATE of an unprotected table whose
// inheritance child is protected captures the child's rows first; with
// ONLY, or of a table that leads to nothing protected, it captures
// nothing. A review found the child's rows lost.
func TestTruncateUnprotectedParent(t *testing.T) {
	e := newEnv(t, `CREATE SCHEMA other;
		CREATE TABLE other.base (id int, v text);
		CREATE TABLE kid (extra text) INHERITS (other.base);
		INSERT INTO other.base VALUES (1, 'b1'), (2, 'b2');
		INSERT INTO kid VALUES (3, 'k3', 'x'), (4, 'k4', 'y');
		CREATE TABLE other.lone (id int); INSERT INTO other.lone VALUES (1);
		CREATE TABLE other.referenced (id int PRIMARY KEY); CREATE TABLE other.referencing (r int REFERENCES other.referenced);`)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	kid := e.snapshot("kid")

	for _, sql := range []string{"TRUNCATE ONLY other.base", "TRUNCATE other.lone"} {
		tag, err := c.Exec(ctx, sql)
		require.NoError(t, err, sql)
		require.Equal(t, "TRUNCATE TABLE", tag.String(), sql)
	}
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.batches"), "nothing protected lost rows")
	require.Zero(t, e.count("SELECT count(*) FROM ONLY other.base"))
	require.Equal(t, kid, e.snapshot("kid"))

	tag, err := c.Exec(ctx, "TRUNCATE other.base")
	require.NoError(t, err)
	require.Equal(t, "TRUNCATE TABLE", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM kid"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__kid WHERE _ts_cause = 'truncate'"))
	require.Equal(t, 1, undeleteBatches(t, c))
	require.Equal(t, kid, e.snapshot("kid"))

	// Errors are Postgres's.
	extended := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	steps := [][]pgproto3.FrontendMessage{{q("TRUNCATE other.nosuch")}, {q("TRUNCATE pg_class")}, {q("BEGIN")}, {q("TRUNCATE other.lone RESTART IDENTITY")}, {q("ROLLBACK")},
		extended("TRUNCATE other.nosuch"), extended("TRUNCATE other.referenced"), extended("TRUNCATE kid, other.referenced")}
	require.Equal(t, converse(t, e.direct, steps), converse(t, e.proxy, steps))
}

// TestInheritanceChildren: a DELETE on a protected table without ONLY
// also removes its inheritance children's rows; each is captured into its
// own table's shadow with all its columns, and UNDELETE puts it back into
// that table. A review found them captured as the parent's rows, their
// own columns dropped, and restored into the parent.
func TestInheritanceChildren(t *testing.T) {
	e := newEnv(t, `CREATE TABLE animals (id int, name text);
		CREATE TABLE dogs (breed text) INHERITS (animals);
		CREATE TABLE puppies (age int) INHERITS (dogs);
		CREATE TABLE pup_toys (id int PRIMARY KEY, puppy_id int);
		CREATE UNIQUE INDEX ON puppies (id);
		ALTER TABLE pup_toys ADD FOREIGN KEY (puppy_id) REFERENCES puppies (id) ON DELETE CASCADE;
		CREATE SCHEMA other; CREATE TABLE other.cats (lives int) INHERITS (animals);
		INSERT INTO animals VALUES (1, 'a1'), (2, 'a2');
		INSERT INTO dogs VALUES (3, 'd3', 'collie'), (4, 'd4', 'pug');
		INSERT INTO puppies VALUES (5, 'p5', 'pug', 1), (6, 'p6', 'pug', 2);
		INSERT INTO pup_toys VALUES (1, 5), (2, 6);
		INSERT INTO other.cats VALUES (7, 'c7', 9);`)
	tables := []string{"ONLY animals", "ONLY dogs", "puppies", "pup_toys", "other.cats"}

	// The answers are Postgres's.
	steps := [][]pgproto3.FrontendMessage{
		{q("BEGIN")},
		{q("DELETE FROM animals WHERE id IN (1, 3)")},
		{q("DELETE FROM animals a WHERE id >= 4 RETURNING a.*, tableoid::regclass")},
		{&pgproto3.Parse{Query: "DELETE FROM dogs WHERE id = $1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("4")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{q("ROLLBACK")},
	}
	want := converse(t, e.direct, steps)
	require.Equal(t, want, converse(t, e.proxy, steps))
	require.NotContains(t, want, "_ts_")

	before := e.snapshot(tables...)
	c := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	tag, err := c.Exec(ctx, "DELETE FROM animals WHERE name <> 'a2'")
	require.NoError(t, err)
	require.Equal(t, "DELETE 6", tag.String())
	require.Equal(t, "== ONLY animals\n(2,a2)\n== ONLY dogs\n== puppies\n== pup_toys\n== other.cats\n", e.snapshot(tables...))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__animals"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__dogs WHERE breed IS NOT NULL"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__puppies WHERE age IS NOT NULL"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__pup_toys WHERE _ts_cause = 'cascade'"))

	require.Equal(t, 1, undeleteBatches(t, c))
	// Back in their own tables, with their own columns; the cat, not
	// protected, stays gone.
	require.Equal(t, strings.Replace(before, "(7,c7,9)\n", "", 1), e.snapshot(tables...))
}

// TestCascadeThroughReview replays what a review of cascades through
// unprotected tables found: protected rows removed uncaptured, answers
// other than Postgres's, statements refused for ever.
func TestCascadeThroughReview(t *testing.T) {
	ctx := context.Background()
	deletes := func(t *testing.T, e *env, sql, tag string) {
		t.Helper()
		got, err := testenv.Connect(t, e.proxy).Exec(ctx, sql)
		require.NoError(t, err, sql)
		require.Equal(t, tag, got.String(), sql)
	}
	t.Run("a foreign key the catalog does not know yet, in the open transaction", func(t *testing.T) {
		e := newEnv(t, throughSchema+`CREATE TABLE refs (id int PRIMARY KEY, account_id int);
			INSERT INTO other.accounts VALUES (7, 'a7'); INSERT INTO refs VALUES (1, 7);`)
		staleInTransaction(t, e, "ALTER TABLE refs ADD FOREIGN KEY (account_id) REFERENCES other.accounts ON DELETE CASCADE",
			"DELETE FROM other.accounts WHERE id = 7", "other.accounts", "refs")
	})
	t.Run("an inheritance child with cascades of its own", func(t *testing.T) {
		e := newEnv(t, `CREATE SCHEMA other;
			CREATE TABLE other.t (id int PRIMARY KEY);
			CREATE TABLE y (id int PRIMARY KEY, t_id int REFERENCES other.t ON DELETE CASCADE);
			CREATE TABLE other.c (PRIMARY KEY (id)) INHERITS (other.t);
			CREATE TABLE x (id int PRIMARY KEY, c_id int REFERENCES other.c ON DELETE CASCADE);
			INSERT INTO other.t VALUES (1); INSERT INTO other.c VALUES (5);
			INSERT INTO y VALUES (1, 1); INSERT INTO x VALUES (50, 5);`)
		deletes(t, e, "DELETE FROM other.t WHERE id IN (1, 5)", "DELETE 2")
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__y"))
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__x"))
	})
	t.Run("an unprotected parent whose child cascades into a protected table", func(t *testing.T) {
		e := newEnv(t, `CREATE SCHEMA other;
			CREATE TABLE other.p2 (id int PRIMARY KEY);
			CREATE TABLE other.c2 (PRIMARY KEY (id)) INHERITS (other.p2);
			CREATE TABLE x2 (id int PRIMARY KEY, c_id int REFERENCES other.c2 ON DELETE CASCADE);
			INSERT INTO other.c2 VALUES (5); INSERT INTO x2 VALUES (1, 5);`)
		deletes(t, e, "DELETE FROM other.p2 WHERE id = 5", "DELETE 1")
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__x2"))
	})
	t.Run("a foreign key declared on one partition of an unprotected middle table", func(t *testing.T) {
		e := newEnv(t, `CREATE SCHEMA other;
			CREATE TABLE p (id int PRIMARY KEY);
			CREATE TABLE other.t (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE CASCADE);
			CREATE TABLE other.m (id int PRIMARY KEY, t_id int) PARTITION BY RANGE (id);
			CREATE TABLE other.m1 PARTITION OF other.m FOR VALUES FROM (0) TO (100);
			ALTER TABLE other.m1 ADD FOREIGN KEY (t_id) REFERENCES other.t ON DELETE CASCADE;
			CREATE TABLE x (id int PRIMARY KEY, m_id int REFERENCES other.m ON DELETE CASCADE);
			INSERT INTO p VALUES (1); INSERT INTO other.t VALUES (10, 1), (11, NULL);
			INSERT INTO other.m VALUES (5, 10), (6, 11); INSERT INTO x VALUES (50, 5), (60, 6);`)
		deletes(t, e, "DELETE FROM p WHERE id = 1", "DELETE 1")
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__x WHERE id = 50"))
		deletes(t, e, "DELETE FROM other.t WHERE id = 11", "DELETE 1")
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__x WHERE id = 60"))
	})
	t.Run("a foreign key referencing a partition, deleted from by name", func(t *testing.T) {
		e := newEnv(t, `CREATE SCHEMA other;
			CREATE TABLE other.t (id int PRIMARY KEY) PARTITION BY RANGE (id);
			CREATE TABLE other.t1 PARTITION OF other.t FOR VALUES FROM (0) TO (100);
			CREATE TABLE x (id int PRIMARY KEY, t_id int REFERENCES other.t ON DELETE CASCADE);
			CREATE TABLE y (id int PRIMARY KEY, t1_id int REFERENCES other.t1 ON DELETE CASCADE);
			INSERT INTO other.t VALUES (5); INSERT INTO x VALUES (1, 5); INSERT INTO y VALUES (1, 5);`)
		deletes(t, e, "DELETE FROM other.t1 WHERE id = 5", "DELETE 1")
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__x"))
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__y"))
	})
	t.Run("answers as Postgres's: a row limit, a table of the same name elsewhere", func(t *testing.T) {
		e := newEnv(t, throughSchema+`CREATE SCHEMA app; CREATE TABLE app.accounts (id int PRIMARY KEY);
			INSERT INTO app.accounts VALUES (1), (2);`)
		steps := [][]pgproto3.FrontendMessage{
			{q("BEGIN")},
			{&pgproto3.Parse{Query: "DELETE FROM other.accounts WHERE id <= 3"}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{}},
			{q("SET search_path = app"), q("DELETE FROM accounts WHERE id = 1")},
			{&pgproto3.Parse{Query: "DELETE FROM accounts WHERE id = $1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("2")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		}
		want := converse(t, e.direct, steps)
		require.Contains(t, want, `"CommandTag":"DELETE 3"`)
		require.Equal(t, want, converse(t, e.proxy, steps))
	})
}

// TestInheritanceReview replays what a review of inheritance capture found.
func TestInheritanceReview(t *testing.T) {
	ctx := context.Background()
	const animals = `CREATE TABLE animals (id int, name text);
		CREATE TABLE dogs (breed text) INHERITS (animals);
		INSERT INTO animals VALUES (1, 'a1'); INSERT INTO dogs VALUES (3, 'd3', 'collie'), (4, 'd4', 'secret');`

	// Postgres's referential actions touch the referencing table's own
	// rows (ONLY), not its inheritance children's: the cascade CTEs
	// deleted (and captured) rows Postgres keeps.
	t.Run("cascades leave the referencing table's children alone", func(t *testing.T) {
		schema := `CREATE TABLE orders (id int PRIMARY KEY);
			CREATE TABLE items (id int PRIMARY KEY, order_id int REFERENCES orders ON DELETE CASCADE);
			CREATE TABLE special_items (note text) INHERITS (items);
			CREATE TABLE notes (id int PRIMARY KEY, order_id int REFERENCES orders ON DELETE SET NULL);
			CREATE TABLE sub_notes () INHERITS (notes);
			INSERT INTO orders VALUES (1), (2); INSERT INTO items VALUES (10, 1), (11, 2);
			INSERT INTO special_items VALUES (20, 1, 'not an FK row');
			INSERT INTO notes VALUES (30, 1); INSERT INTO sub_notes VALUES (31, 1);`
		tables := []string{"orders", "ONLY items", "special_items", "ONLY notes", "sub_notes"}
		direct, proxied := newEnv(t, schema), newEnv(t, schema)
		before := proxied.snapshot(tables...)
		_, err := testenv.Connect(t, direct.direct).Exec(ctx, "DELETE FROM orders WHERE id = 1")
		require.NoError(t, err)
		c := testenv.Connect(t, proxied.proxy)
		_, err = c.Exec(ctx, "DELETE FROM orders WHERE id = 1")
		require.NoError(t, err)
		require.Equal(t, direct.snapshot(tables...), proxied.snapshot(tables...))
		undeleteBatches(t, c)
		require.Equal(t, before, proxied.snapshot(tables...))
	})
	// Rows of children that are not protected are not the parent's: not
	// captured, never restored into the parent.
	t.Run("a parent whose only child is not protected", func(t *testing.T) {
		e := newEnv(t, `CREATE TABLE animals (id int, name text);
			CREATE SCHEMA other; CREATE TABLE other.cats (lives int) INHERITS (animals);
			INSERT INTO animals VALUES (1, 'a1'); INSERT INTO other.cats VALUES (7, 'c7', 9);`)
		c := testenv.Connect(t, e.proxy)
		tag, err := c.Exec(ctx, "DELETE FROM animals")
		require.NoError(t, err)
		require.Equal(t, "DELETE 2", tag.String())
		undeleteBatches(t, c)
		require.Equal(t, "== ONLY animals\n(1,a1)\n== other.cats\n", e.snapshot("ONLY animals", "other.cats"))
	})
	// A child row the DELETE reaches only after waiting for a concurrent
	// update is a version the capture's snapshot cannot read: the
	// statement fails (40001) and deletes nothing.
	t.Run("a child row updated concurrently", func(t *testing.T) {
		e := newEnv(t, animals)
		before := e.snapshot("ONLY animals", "dogs")
		blocker, err := testenv.Connect(t, e.direct).Begin(ctx)
		require.NoError(t, err)
		_, err = blocker.Exec(ctx, "UPDATE dogs SET breed = 'pug' WHERE id = 3")
		require.NoError(t, err)
		done := make(chan error, 1)
		c := testenv.Connect(t, e.proxy)
		go func() {
			_, err := c.Exec(ctx, "DELETE FROM animals WHERE id IN (1, 3)")
			done <- err
		}()
		waitForLock(t, e)
		require.NoError(t, blocker.Rollback(ctx))
		require.Empty(t, pgErrCode(<-done), "rolled back: nothing changed")

		blocker, err = testenv.Connect(t, e.direct).Begin(ctx)
		require.NoError(t, err)
		_, err = blocker.Exec(ctx, "UPDATE dogs SET breed = 'pug' WHERE id = 4")
		require.NoError(t, err)
		go func() {
			_, err := c.Exec(ctx, "DELETE FROM animals WHERE id = 4")
			done <- err
		}()
		waitForLock(t, e)
		require.NoError(t, blocker.Commit(ctx))
		require.Equal(t, "40001", pgErrCode(<-done))
		require.Equal(t, 1, e.count("SELECT count(*) FROM dogs WHERE id = 4"))
		require.NotEqual(t, before, e.snapshot("ONLY animals", "dogs"), "ids 1 and 3 went in the first DELETE")
	})
	// A child's row-level security hides rows from the capture's read
	// that a DELETE through the parent removes: refused.
	t.Run("row-level security on a child", func(t *testing.T) {
		e := newEnv(t, animals)
		role := tempRole(t, e, "", `GRANT SELECT, DELETE ON animals, dogs TO %s;
			ALTER TABLE dogs ENABLE ROW LEVEL SECURITY;
			CREATE POLICY p ON dogs USING (breed <> 'secret')`)
		before := e.snapshot("ONLY animals", "dogs")
		c := testenv.Connect(t, e.proxy)
		_, err := c.Exec(ctx, "SET ROLE "+role)
		require.NoError(t, err)
		_, err = c.Exec(ctx, "DELETE FROM animals")
		require.Equal(t, "0A000", pgErrCode(err))
		require.Equal(t, before, e.snapshot("ONLY animals", "dogs"))
	})
}

// waitForLock waits until some session of e's database waits for a lock.
func waitForLock(t *testing.T, e *env) {
	t.Helper()
	require.Eventually(t, func() bool {
		return e.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0
	}, testenv.Hang, 10*time.Millisecond)
}

// TestSetNullRestoreOnlyTheTable: UNDELETE re-links the SET NULL rows of
// the table the foreign key is on, not an inheritance child's row that
// shares its key (a review found the child's row re-linked to a value it
// never had).
func TestSetNullRestoreOnlyTheTable(t *testing.T) {
	e := newEnv(t, `CREATE TABLE orders (id int PRIMARY KEY);
		CREATE TABLE notes (id int PRIMARY KEY, order_id int REFERENCES orders ON DELETE SET NULL);
		CREATE TABLE sub_notes (extra text) INHERITS (notes);
		INSERT INTO orders VALUES (1); INSERT INTO notes VALUES (30, 1); INSERT INTO sub_notes VALUES (30, NULL, 'x');`)
	tables := []string{"orders", "ONLY notes", "sub_notes"}
	before := e.snapshot(tables...)
	c := testenv.Connect(t, e.proxy)
	_, err := c.Exec(context.Background(), "DELETE FROM orders WHERE id = 1")
	require.NoError(t, err)
	undeleteBatches(t, c)
	require.Equal(t, before, e.snapshot(tables...))
}

// TestPreparedAfterDDL: a statement prepared before its table changed
// carries a rewrite of the old table. The first use after the change
// fails as the server refuses that rewrite (TS001: the table's signature
// changed), with no position into text the client never sent — a review
// found one 918 bytes into a 31-byte statement; the proxy then prepares it again
// from the client's text, and the next use runs, capturing the table as
// it is now. Postgres would re-plan it without the one failure (README).
func TestPreparedAfterDDL(t *testing.T) {
	e := newEnv(t, `CREATE TABLE notes (id int PRIMARY KEY, extra text);
		INSERT INTO notes SELECT g, 'x' FROM generate_series(1, 6) g;`)
	// (Loaded at the next plan, not on the notification, so that the use
	// right after the first change meets the old rewrite:
	// TestPreparedAfterUnrelatedDDL has the proxy load it first.)
	e.cats.SetReloadOnChange(false)
	use := func(id string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte(id)}},
			&pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	out := converse(t, e.proxy, [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: "s", Query: "DELETE FROM notes WHERE id = $1"}, &pgproto3.Sync{}},
		use("1"),
		{q("ALTER TABLE notes ADD COLUMN more text DEFAULT 'm'")},
		use("2"), use("3"),
		{q("ALTER TABLE notes DROP COLUMN extra")},
		use("4"), use("5"),
	})
	// (A use right after a change fails unless the proxy has loaded a
	// newer catalog by then — another plan may have — and prepared the
	// statement again first; nothing else may fail.)
	failed := strings.Count(out, `"Code":"TS001"`)
	require.Positive(t, failed, out)
	require.LessOrEqual(t, failed, 2, out)
	require.Equal(t, failed, strings.Count(out, `"Type":"ErrorResponse"`), out)
	require.NotRegexp(t, `"Position":[1-9]`, out)
	require.NotContains(t, out, "_ts_")
	require.NotContains(t, out, `"Type":"CloseComplete"`, "the proxy's own Close is not answered to the client")
	require.Equal(t, 1, strings.Count(out, `"Type":"ParseComplete"`), "nor its own Parse")
	require.Equal(t, 5-failed, strings.Count(out, `"CommandTag":"DELETE 1"`), out)
	require.Equal(t, 1+failed, e.count("SELECT count(*) FROM notes"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM notes WHERE id = 6"))
	require.Equal(t, 5-failed, e.count("SELECT count(*) FROM tombstone.public__notes"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__notes WHERE id = 3 AND more = 'm'"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__notes WHERE id = 5 AND more = 'm'"))
}

// TestForeignKeyToPartition: a foreign key that references one partition
// of a partitioned table directly (not the partitioned table) cascades
// the rows of that partition; they are captured whether the DELETE names
// the root or the partition, protected or not. A review found them lost.
func TestForeignKeyToPartition(t *testing.T) {
	ctx := context.Background()
	t.Run("protected root", func(t *testing.T) {
		e := newEnv(t, `CREATE TABLE m (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
			CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
			CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);
			CREATE TABLE kids (id int PRIMARY KEY, mid int, mk int, FOREIGN KEY (mid, mk) REFERENCES m1 (id, k) ON DELETE CASCADE);
			INSERT INTO m VALUES (1, 1), (2, 1), (1, 2); INSERT INTO kids VALUES (10, 1, 1), (20, 2, 1);`)
		tables := []string{"m", "kids"}
		before := e.snapshot(tables...)
		c := testenv.Connect(t, e.proxy)
		for _, sql := range []string{"DELETE FROM m WHERE id = 1", "DELETE FROM m1 WHERE id = 2"} {
			_, err := c.Exec(ctx, sql)
			require.NoError(t, err, sql)
		}
		require.Zero(t, e.count("SELECT count(*) FROM kids"))
		require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__kids WHERE _ts_cause = 'cascade'"))
		undeleteBatches(t, c)
		require.Equal(t, before, e.snapshot(tables...))
	})
	t.Run("unprotected root", func(t *testing.T) {
		e := newEnv(t, `CREATE SCHEMA other;
			CREATE TABLE other.t (id int PRIMARY KEY) PARTITION BY RANGE (id);
			CREATE TABLE other.t1 PARTITION OF other.t FOR VALUES FROM (0) TO (100);
			CREATE TABLE other.t2 PARTITION OF other.t FOR VALUES FROM (100) TO (200);
			CREATE TABLE y (id int PRIMARY KEY, t1_id int REFERENCES other.t1 ON DELETE CASCADE);
			INSERT INTO other.t VALUES (5), (105); INSERT INTO y VALUES (1, 5);`)
		c := testenv.Connect(t, e.proxy)
		tag, err := c.Exec(ctx, "DELETE FROM other.t WHERE id IN (5, 105)")
		require.NoError(t, err)
		require.Equal(t, "DELETE 2", tag.String())
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__y"))
	})
}

// TestPortalEndsWithItsTransaction: a rewritten statement's portal ends
// with its transaction; a cursor DECLAREd later under the same name is
// answered as Postgres answers it, not repaired as the old portal was (a
// review found its rows dropped, its tag rewritten, its row limit lifted).
func TestPortalEndsWithItsTransaction(t *testing.T) {
	e := newEnv(t, `CREATE TABLE animals (id int, name text);
		CREATE TABLE dogs (breed text) INHERITS (animals);
		INSERT INTO animals SELECT g, 'a' || g FROM generate_series(1, 6) g; INSERT INTO dogs VALUES (7, 'd7', 'pug');`)
	steps := [][]pgproto3.FrontendMessage{
		{q("BEGIN")},
		{&pgproto3.Parse{Name: "d", Query: "DELETE FROM animals WHERE id = $1"}, &pgproto3.Bind{DestinationPortal: "c", PreparedStatement: "d", Parameters: [][]byte{[]byte("1")}},
			&pgproto3.Execute{Portal: "c"}, &pgproto3.Bind{DestinationPortal: "r", PreparedStatement: "d", Parameters: [][]byte{[]byte("2")}},
			&pgproto3.Sync{}},
		{q("COMMIT")},
		{q("BEGIN"), q("DECLARE c CURSOR FOR SELECT id, name FROM animals ORDER BY id")},
		{&pgproto3.Describe{ObjectType: 'P', Name: "c"}, &pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Sync{}},
		{q("ROLLBACK")},
		// In an implicit transaction, too: the Sync ends it.
		{&pgproto3.Bind{DestinationPortal: "c", PreparedStatement: "d", Parameters: [][]byte{[]byte("3")}}, &pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{}},
		{q("BEGIN"), q("DECLARE c CURSOR FOR SELECT id, name FROM animals ORDER BY id")},
		{&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Sync{}},
		{q("ROLLBACK")},
	}
	want := converse(t, e.direct, steps)
	require.Contains(t, want, `"Type":"PortalSuspended"`)
	e2 := newEnv(t, `CREATE TABLE animals (id int, name text);
		CREATE TABLE dogs (breed text) INHERITS (animals);
		INSERT INTO animals SELECT g, 'a' || g FROM generate_series(1, 6) g; INSERT INTO dogs VALUES (7, 'd7', 'pug');`)
	require.Equal(t, want, converse(t, e2.proxy, steps))
}

// TestForeignKeyToPartitionReview replays what a review of foreign keys
// to partitions found.
func TestForeignKeyToPartitionReview(t *testing.T) {
	ctx := context.Background()
	const sub = `CREATE TABLE m (id int, k int, s int, PRIMARY KEY (id, k, s)) PARTITION BY LIST (k);
		CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1) PARTITION BY LIST (s);
		CREATE TABLE m1a PARTITION OF m1 FOR VALUES IN (1);
		CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);
		CREATE TABLE kids (id int PRIMARY KEY, mid int, mk int, ms int,
		                   FOREIGN KEY (mid, mk, ms) REFERENCES m1 (id, k, s) ON DELETE CASCADE);
		CREATE TABLE nulls (id int PRIMARY KEY, mid int, mk int, ms int,
		                    FOREIGN KEY (mid, mk, ms) REFERENCES m1 (id, k, s) ON DELETE SET NULL);
		INSERT INTO m VALUES (1, 1, 1), (1, 2, 2); INSERT INTO kids VALUES (10, 1, 1, 1); INSERT INTO nulls VALUES (30, 1, 1, 1);`
	tables := []string{"m", "kids", "nulls"}
	// A partition attached under the referenced one after the catalog
	// was read: its rows cascade too, and are captured.
	t.Run("a partition attached later", func(t *testing.T) {
		e := newEnv(t, sub)
		_, frozen := frozenProxy(t, e)
		_, err := testenv.Connect(t, e.direct).Exec(ctx, `CREATE TABLE m1b PARTITION OF m1 FOR VALUES IN (2);
			INSERT INTO m VALUES (5, 1, 2); INSERT INTO kids VALUES (50, 5, 1, 2)`)
		require.NoError(t, err)
		_, err = testenv.Connect(t, frozen).Exec(ctx, "DELETE FROM m WHERE id = 5")
		require.NoError(t, err)
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__kids WHERE id = 50"))
	})
	// UNDELETE FROM the root, and the SET NULL re-link, follow such keys.
	t.Run("restores follow them", func(t *testing.T) {
		e := newEnv(t, sub)
		before := e.snapshot(tables...)
		c := testenv.Connect(t, e.proxy)
		_, err := c.Exec(ctx, "DELETE FROM m WHERE id = 1")
		require.NoError(t, err)
		simple(t, c, "UNDELETE FROM m WHERE id = 1")
		require.Equal(t, before, e.snapshot(tables...))
	})
	// Keys between partitions of one table are no cycle.
	t.Run("keys between partitions", func(t *testing.T) {
		schema := `CREATE TABLE s (id int, k int, pid int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
			CREATE TABLE s1 PARTITION OF s FOR VALUES IN (1); CREATE TABLE s2 PARTITION OF s FOR VALUES IN (2);
			CREATE UNIQUE INDEX ON s1 (id);
			ALTER TABLE s2 ADD FOREIGN KEY (pid) REFERENCES s1 (id) ON DELETE CASCADE;
			ALTER TABLE s1 ADD FOREIGN KEY (pid) REFERENCES s1 (id) ON DELETE CASCADE;
			INSERT INTO s VALUES (1, 1, NULL), (8, 1, 1), (9, 1, 8), (10, 2, 1), (5, 2, 9), (6, 2, NULL);`
		direct, proxied := newEnv(t, schema), newEnv(t, schema)
		_, err := testenv.Connect(t, direct.direct).Exec(ctx, "DELETE FROM s WHERE id = 1")
		require.NoError(t, err)
		_, err = testenv.Connect(t, proxied.proxy).Exec(ctx, "DELETE FROM s WHERE id = 1")
		require.NoError(t, err)
		require.Equal(t, direct.snapshot("s"), proxied.snapshot("s"))
		require.Equal(t, 5, proxied.count("SELECT count(*) FROM tombstone.public__s"))
	})
}

// TestPreparedAfterDDLReview replays what a review of re-preparing found:
// the proxy must never put an old statement back under a name the client
// has since given another one, nor lose a statement for good.
func TestPreparedAfterDDLReview(t *testing.T) {
	const schema = `CREATE TABLE notes (id int PRIMARY KEY, extra text);
		INSERT INTO notes SELECT g, 'x' FROM generate_series(1, 6) g;`
	use := func(stmt, id string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: stmt, Parameters: [][]byte{[]byte(id)}},
			&pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	stale := func(stmt string) [][]pgproto3.FrontendMessage {
		return [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Name: stmt, Query: "DELETE FROM notes WHERE id = $1"}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "ddl", Query: "ALTER TABLE notes ADD COLUMN more text DEFAULT 'm'"}, &pgproto3.Bind{PreparedStatement: "ddl"},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			use(stmt, "1"), // TS001: stale
		}
	}
	lazy := func(e *env) *env {
		e.cats.SetReloadOnChange(false) // (as in TestPreparedAfterDDL)
		return e
	}
	for name, tail := range map[string][][]pgproto3.FrontendMessage{
		"the unnamed statement Parsed again": {
			{&pgproto3.Parse{Query: "SELECT $1::int AS v"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("3")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		"DISCARD ALL, the name Parsed again": {
			{q("DISCARD ALL")},
			{&pgproto3.Parse{Name: "s", Query: "SELECT $1::int AS v"}, &pgproto3.Sync{}},
			use("s", "3"),
		},
		"DEALLOCATE, the name PREPAREd again": {
			{q("DEALLOCATE s")},
			{q("PREPARE s(int) AS SELECT $1 AS v")},
			use("s", "4"),
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := lazy(newEnv(t, schema))
			stmt := "s"
			if name == "the unnamed statement Parsed again" {
				stmt = ""
			}
			out := converse(t, e.proxy, append(stale(stmt), tail...))
			require.NotContains(t, out, `"CommandTag":"DELETE 1"`, out)
			require.Equal(t, 6, e.count("SELECT count(*) FROM notes"), "no row deleted")
		})
	}
	t.Run("in a failed transaction, and after", func(t *testing.T) {
		e := lazy(newEnv(t, schema))
		out := converse(t, e.proxy, append(stale("s"),
			[]pgproto3.FrontendMessage{q("BEGIN")}, []pgproto3.FrontendMessage{q("SELECT 1/0")},
			use("s", "2"), // 25P02, as from Postgres
			[]pgproto3.FrontendMessage{q("ROLLBACK")},
			use("s", "3")))
		require.Contains(t, out, `"Code":"25P02"`)
		require.Equal(t, 1, strings.Count(out, `"CommandTag":"DELETE 1"`), out)
		require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__notes WHERE id = 3 AND more = 'm'"))
	})
}

// TestRepreparedParseFails: when the proxy's own Parse of a stale
// statement fails (its table was dropped after the catalog the proxy
// planned with was read), the client sees that error, and the statement
// is gone as after a failed Parse of its own: the client's next Parse of
// the name is a new statement, answered as such.
func TestRepreparedParseFails(t *testing.T) {
	e := newEnv(t, `CREATE TABLE notes (id int PRIMARY KEY, extra text); INSERT INTO notes VALUES (1, 'x'), (2, 'y');`)
	frozen, dsn := frozenProxy(t, e)
	c := openConversation(t, dsn)
	ctx := context.Background()
	direct := testenv.Connect(t, e.direct)
	exec := func(sql string) {
		_, err := direct.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	use := func(stmt, id string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: stmt, Parameters: [][]byte{[]byte(id)}},
			&pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	send := c.steps
	send([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s", Query: "DELETE FROM notes WHERE id = $1"}, &pgproto3.Sync{}})
	exec("ALTER TABLE notes ADD COLUMN more text")
	require.Contains(t, send(use("s", "1")), `"Code":"TS001"`) // now stale, the catalog reloaded
	cat, err := e.cats.Catalog(ctx, dbName(t, e.direct))
	require.NoError(t, err)
	frozen.mu.Lock()
	frozen.old = cat // the proxy will plan with this one, table and all
	frozen.mu.Unlock()
	exec("DROP TABLE notes")
	require.Contains(t, send(use("s", "1")), `"Code":"42P01"`)
	exec("CREATE TABLE notes (id int PRIMARY KEY, extra text, more text); INSERT INTO notes VALUES (1, 'x', 'm')")
	frozen.invalidate(dbName(t, e.direct))
	out := send([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s", Query: "DELETE FROM notes WHERE id = $1 RETURNING id"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}}, use("s", "1"))
	require.Contains(t, out, `"CommandTag":"DELETE 1"`, out)
	require.NotContains(t, out, "_ts_", out)
}
