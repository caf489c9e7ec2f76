package test

// Capture is complete or refused (issue 15, item 8): a rule whose action
// deletes from a protected table, and a DETACH PARTITION that would take
// a partition's rows out of protection, are refused; a DETACH into a
// protected schema goes ahead and the table is protected on its own.

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

func TestDetachAndRules(t *testing.T) {
	e := newEnv(t, `CREATE SCHEMA side;
CREATE TABLE ev (id int, at date, v text) PARTITION BY RANGE (at);
CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE side.ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO ev SELECT g, '2025-06-01'::date + g, 'v' FROM generate_series(1, 400) g;
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 10) g;
CREATE VIEW note_inbox AS SELECT id FROM notes;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM ev WHERE id = 1") // loads the store
	require.NoError(t, err)

	// Into a schema that is not protected: refused, nothing detached.
	for _, sql := range []string{
		"ALTER TABLE ev DETACH PARTITION side.ev_2026",
		"ALTER TABLE ev DETACH PARTITION side.ev_2026 CONCURRENTLY",
	} {
		_, err = p.Exec(ctx, sql)
		require.Equal(t, "0A000", errCode(err), sql)
	}
	require.Equal(t, 399, e.count("SELECT count(*) FROM ev"))
	// Dropping a partition: the hint no longer leads to a loss.
	_, err = p.Exec(ctx, "DROP TABLE side.ev_2026")
	require.Equal(t, "0A000", errCode(err))
	require.NotContains(t, err.Error(), "DETACH")

	// Within the protected schema: detached, protected on its own, and
	// a DROP of it goes to the trash.
	_, err = p.Exec(ctx, "ALTER TABLE ev DETACH PARTITION ev_2025")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.shadows WHERE source = 'public.ev_2025'::regclass"))
	n := e.count("SELECT count(*) FROM ev_2025")
	require.Positive(t, n)
	_, err = p.Exec(ctx, "DROP TABLE ev_2025")
	require.NoError(t, err)
	require.Equal(t, n, e.count("SELECT count(*) FROM tombstone_trash."+
		queryText(t, e.direct, "SELECT trash_name FROM tombstone.trash WHERE original_name = 'ev_2025'")))

	// A rule that deletes from a protected table.
	for _, sql := range []string{
		"CREATE RULE purge AS ON INSERT TO note_inbox DO INSTEAD DELETE FROM notes WHERE id = NEW.id",
		"CREATE OR REPLACE RULE purge AS ON UPDATE TO note_inbox DO ALSO (SELECT 1; DELETE FROM notes)",
	} {
		_, err = p.Exec(ctx, sql)
		require.Equal(t, "0A000", errCode(err), sql)
		require.Contains(t, err.Error(), "rule")
	}
	require.Zero(t, e.count("SELECT count(*) FROM pg_rewrite WHERE rulename = 'purge'"))
	_, err = p.Exec(ctx, "CREATE RULE keep AS ON INSERT TO note_inbox DO INSTEAD INSERT INTO notes VALUES (NEW.id, 'via view')")
	require.NoError(t, err, "rules that delete nothing pass")
}

// TestRenamedThenDropped: a protected table renamed earlier in the same
// transaction — under a name the proxy's catalog does not know — still
// goes to the trash when dropped, and a rule that deletes through a view
// is refused like one that names the table.
func TestRenamedThenDropped(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);
CREATE SCHEMA other; CREATE VIEW other.v AS SELECT * FROM public.t; CREATE TABLE other.log (id int);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM t WHERE id = 10") // loads the store
	require.NoError(t, err)
	_, err = p.Exec(ctx, "CREATE RULE r AS ON INSERT TO other.log DO ALSO DELETE FROM other.v WHERE id <= 5")
	require.Equal(t, "0A000", errCode(err))
	_, err = p.Exec(ctx, "ALTER TABLE t RENAME TO foo; DROP TABLE foo CASCADE")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.trash WHERE purged_at IS NULL"))
	_, err = p.Exec(ctx, "UNDROP TABLE foo")
	require.NoError(t, err)
	require.Equal(t, 9, e.count("SELECT count(*) FROM foo"))
}

// TestDDLOutOfProtection (second review): DDL that would take a protected
// table out of protection is undone and refused, and DDL that drops one
// by the way (DROP TYPE … CASCADE of a typed table's type, DROP OWNED)
// sends it to the trash; the same DDL on unprotected tables, or into
// protected places, runs.
func TestDDLOutOfProtection(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);
CREATE TABLE u (id int PRIMARY KEY);
CREATE SCHEMA other; CREATE TABLE other.root (id int) PARTITION BY RANGE (id);
CREATE TABLE other.par (id int); CREATE TYPE other.rt AS (a int); CREATE TABLE typed OF other.rt;`)
	owner := tempRole(t, e, "LOGIN", "")
	ctx := context.Background()
	_, err := testenv.Connect(t, e.direct).Exec(ctx, "CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO "+owner)
	require.NoError(t, err)
	p := testenv.Connect(t, e.proxy)
	_, err = p.Exec(ctx, "DELETE FROM t WHERE id = 10") // loads the store
	require.NoError(t, err)
	for _, sql := range []string{
		"ALTER TABLE t SET SCHEMA other",
		"ALTER SCHEMA public RENAME TO p2",
		"ALTER TABLE other.root ATTACH PARTITION t FOR VALUES FROM (1) TO (100)",
	} {
		_, err := p.Exec(ctx, sql)
		require.Equal(t, "0A000", errCode(err), sql)
		require.Contains(t, err.Error(), "without a tombstone", sql)
	}
	require.Equal(t, 9, e.count("SELECT count(*) FROM public.t"))
	// Those that drop protected tables by the way send them to the trash.
	for _, sql := range []string{"DROP TYPE other.rt CASCADE", "DROP OWNED BY " + owner} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_class WHERE relname IN ('owned', 'typed') AND relnamespace = 'public'::regnamespace"))
	require.Equal(t, "owned,typed", queryText(t, e.direct, "SELECT string_agg(original_name, ',' ORDER BY original_name) FROM tombstone.trash"))
	// Unprotected tables, and into protected places, as ever.
	for _, sql := range []string{
		"CREATE TABLE other.loose (id int); ALTER TABLE other.root ATTACH PARTITION other.loose FOR VALUES FROM (1) TO (100)",
		"ALTER TABLE other.par SET SCHEMA public",
	} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'par'"))
}

// TestDropCascadeTakesChildrenToTheTrash: DROP TABLE … CASCADE of an
// unprotected parent drops its inheritance children with it, as in
// Postgres; a protected child goes to the trash, cut loose from the
// parent, and UNDROP TABLE brings it back on its own (the parent is gone).
func TestDropCascadeTakesChildrenToTheTrash(t *testing.T) {
	e := newEnv(t, `CREATE SCHEMA other; CREATE TABLE other.par (id int);
CREATE TABLE t (v text) INHERITS (other.par); INSERT INTO t VALUES (1, 'a');`)
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "DROP TABLE other.par CASCADE")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_class WHERE relname IN ('par', 't')"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.trash WHERE original_name = 't'"))
	rows, _ := simple(t, p, "UNDROP TABLE t")
	require.Len(t, rows, 1)
	require.Equal(t, 1, e.count("SELECT count(*) FROM public.t WHERE id = 1 AND v = 'a'"))
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.t'::regclass"))
}

// TestDropOwnedTrashesTables (PostgreSQL's privileges and matview
// tests): DROP OWNED sends the roles' protected tables to the trash, as
// DROP TABLE does, and drops the rest as Postgres does — the role can
// then be dropped. What Postgres refuses it refuses the same way, with
// nothing trashed.
func TestDropOwnedTrashesTables(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	owner := tempRole(t, e, "LOGIN", "GRANT CREATE ON SCHEMA public TO %s")
	other := tempRole(t, e, "LOGIN", "GRANT CREATE ON SCHEMA public TO %s")
	u, _ := url.Parse(e.proxy)
	u.User = url.User(owner)
	oc := testenv.Connect(t, u.String())
	_, err := oc.Exec(ctx, `CREATE TABLE o_parent (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE o_part PARTITION OF o_parent FOR VALUES FROM (0) TO (100);
CREATE TABLE o_plain (id int PRIMARY KEY, v text);
INSERT INTO o_parent SELECT generate_series(1, 5); INSERT INTO o_plain VALUES (1, 'a'), (2, 'b');
CREATE VIEW o_view AS SELECT * FROM o_plain; CREATE SEQUENCE o_seq`)
	require.NoError(t, err)
	_, err = oc.Exec(ctx, "GRANT SELECT ON o_plain TO "+other)
	require.NoError(t, err)
	p := testenv.Connect(t, e.proxy)
	_, err = p.Exec(ctx, "SELECT 1 FROM o_plain") // loads the catalog
	require.NoError(t, err)

	// Another role's view on the table: refused as Postgres refuses it.
	d := testenv.Connect(t, e.direct)
	_, err = d.Exec(ctx, fmt.Sprintf("SET ROLE %s; CREATE VIEW other_view AS SELECT * FROM o_plain; RESET ROLE", other))
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DROP OWNED BY "+owner)
	require.Equal(t, "2BP01", errCode(err), "%v", err)
	// A role that does not act for the owner: Postgres's 42501.
	u.User = url.User(other)
	_, err = testenv.Connect(t, u.String()).Exec(ctx, "DROP OWNED BY "+owner)
	require.Equal(t, "42501", errCode(err), "%v", err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM tombstone.trash"))
	require.Equal(t, 3, e.count("SELECT count(*) FROM pg_class WHERE relname IN ('o_parent', 'o_part', 'o_plain')"))

	_, err = p.Exec(ctx, "DROP VIEW other_view; DROP OWNED BY "+owner)
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_class WHERE relname IN ('o_parent', 'o_part', 'o_plain', 'o_view', 'o_seq')"))
	require.Equal(t, "o_parent,o_plain", queryText(t, e.direct,
		"SELECT string_agg(original_name, ',' ORDER BY original_name) FROM tombstone.trash WHERE restored_at IS NULL"))
	_, err = d.Exec(ctx, "DROP ROLE "+owner)
	require.NoError(t, err, "nothing of the role's is left, in the trash either")

	// The tables come back whole (to their new owner: the original one is gone).
	_, _ = simple(t, p, "UNDROP TABLE o_plain")
	_, _ = simple(t, p, "UNDROP TABLE o_parent")
	require.Equal(t, 2, e.count("SELECT count(*) FROM o_plain"))
	require.Equal(t, 5, e.count("SELECT count(*) FROM o_part"))
}

// TestDropTypeCascadeTrashesTypedTables (PostgreSQL's typed_table
// test): DROP TYPE … CASCADE drops the tables of that type; protected
// ones go to the trash, with their rows, as DROP TABLE sends them.
func TestDropTypeCascadeTrashesTypedTables(t *testing.T) {
	e := newEnv(t, `CREATE TYPE person AS (id int, name text);
CREATE TABLE persons OF person (PRIMARY KEY (id)); INSERT INTO persons VALUES (1, 'ann'), (2, 'bob');
CREATE TABLE keeps (id int, who person); INSERT INTO keeps VALUES (1, '(1,ann)')`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	// Without CASCADE: Postgres's own refusal, nothing trashed.
	_, err := p.Exec(ctx, "DROP TYPE person")
	require.Equal(t, "2BP01", errCode(err), "%v", err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM tombstone.trash"))
	// Another table's column of the type goes, as Postgres drops it (as
	// ALTER TABLE … DROP COLUMN would: not captured).
	_, err = p.Exec(ctx, "DROP TYPE person CASCADE")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'keeps'::regclass AND attname = 'who'"))
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_type WHERE typname = 'person'"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.trash WHERE original_name = 'persons' AND restored_at IS NULL"))
	_, _ = simple(t, p, "UNDROP TABLE persons")
	require.Equal(t, "1:ann,2:bob", queryText(t, e.direct, "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM persons"))
}

// TestDropPartitionToTrash: a DROP TABLE naming partitions without their
// table — one, a sub-partitioned one with a sub-partition of it, in a
// transaction too — succeeds as in Postgres: each is detached and goes to
// the trash as a table of its own, its rows kept; UNDROP TABLE brings one
// back, detached, and it can be attached again with every row.
func TestDropPartitionToTrash(t *testing.T) {
	e := newEnv(t, `CREATE TABLE ev (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE ev_2023 PARTITION OF ev FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY RANGE (at);
CREATE TABLE ev_2024a PARTITION OF ev_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE ev_2024b PARTITION OF ev_2024 FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO ev SELECT g, date '2023-01-01' + (g % 1000), 'v' || g FROM generate_series(1, 3000) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	before := e.snapshot("ev_2023")
	n2023, n2024, n2025 := e.count("SELECT count(*) FROM ev_2023"), e.count("SELECT count(*) FROM ev_2024"), e.count("SELECT count(*) FROM ev_2025")

	tag, err := p.Exec(ctx, "DROP TABLE ev_2023")
	require.NoError(t, err)
	require.Equal(t, "DROP TABLE", tag.String())
	_, err = p.Exec(ctx, "DROP TABLE ev_2024, ev_2024a")
	require.NoError(t, err)
	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DROP TABLE ev_2025")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	require.Zero(t, e.count("SELECT count(*) FROM ev"))
	require.Zero(t, e.count("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ev'::regclass"))
	for name, n := range map[string]int{"ev_2023": n2023, "ev_2024": n2024, "ev_2025": n2025} {
		trashed := queryText(t, e.direct, "SELECT trash_name FROM tombstone.trash WHERE original_name = '"+name+"'")
		require.Equal(t, n, e.count("SELECT count(*) FROM tombstone_trash."+trashed), name)
	}
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.trash WHERE original_name LIKE 'ev_20%'"), "ev_2024a went with ev_2024")

	_, err = p.Exec(ctx, "UNDROP TABLE ev_2023")
	require.NoError(t, err)
	require.Equal(t, before, e.snapshot("ev_2023"))
	_, err = p.Exec(ctx, "ALTER TABLE ev ATTACH PARTITION ev_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')")
	require.NoError(t, err)
	require.Equal(t, n2023, e.count("SELECT count(*) FROM ev"))
}

// TestUndroppedPartitionGoesBack (found by TestTrashGenerated): a
// partition dropped alone and undropped is a table of its own, with its
// own shadow and capture triggers; attached again, it must take its
// table's triggers (a SET NULL key's trigger under the partitioned
// table's name blocked the ATTACH with 42710), and the rows deleted from
// it while it stood alone must come back from UNDELETE (the restore read
// its new root's shadow and answered "restored 0"). A sub-partitioned
// partition whose key rows written since violate comes back without the
// key and a WARNING (NOT VALID, which a partitioned table does not take,
// failed the UNDROP with 42809).
func TestUndroppedPartitionGoesBack(t *testing.T) {
	e := newEnv(t, `CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par SELECT generate_series(1, 10);
CREATE TABLE ev (id int, k int, v text, p int REFERENCES par ON DELETE SET NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (10);
CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM (10) TO (20) PARTITION BY RANGE (k);
CREATE TABLE ev_b1 PARTITION OF ev_b FOR VALUES FROM (10) TO (20);
INSERT INTO ev SELECT g, g % 20, 'v' || g, 1 + g % 10 FROM generate_series(1, 40) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	exec := func(sql string) {
		t.Helper()
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	before := e.snapshot("ev")
	exec("DROP TABLE ev_a")
	exec("UNDROP TABLE ev_a")
	exec("DELETE FROM ev_a WHERE id % 4 = 0")
	exec("ALTER TABLE ev ATTACH PARTITION ev_a FOR VALUES FROM (0) TO (10)")
	batch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	rows, tag := simple(t, p, "UNDELETE BATCH "+batch)
	require.Equal(t, "SELECT 1", tag.String())
	require.Equal(t, [][]string{{"public.ev", "6", "0", "0"}}, rows) // moved to ev's shadow at the ATTACH
	require.Equal(t, before, e.snapshot("ev"))

	// A SET NULL through the attached partition is captured once.
	exec("DELETE FROM par WHERE id = 2")
	batch = queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	require.Equal(t, 4, e.count("SELECT count(*) FROM tombstone."+queryText(t, e.direct, "SELECT tombstone.shadow_name('ev')")+
		" WHERE _ts_cause = 'set_null' AND _ts_batch = "+batch))
	exec("UNDELETE BATCH " + batch)
	require.Equal(t, before, e.snapshot("ev"))

	// ev_b goes alone, and par's row 3 while it is in the trash.
	exec("DROP TABLE ev_b")
	exec("DELETE FROM par WHERE id = 3")
	exec("UNDROP TABLE ev_b")
	require.Equal(t, 1, e.count("SELECT count(*) FROM pg_class WHERE relname = 'ev_b' AND relnamespace = 'public'::regnamespace"))
	require.Zero(t, e.count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'ev_b'::regclass AND contype = 'f'"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM ev_b WHERE p = 3"), "the rows that kept the key of a row deleted since")
}

// TestSubPartitionGoesBack: a sub-partitioned partition whose table has
// an ON DELETE SET NULL key, dropped alone, undropped and attached again
// (its SET NULL trigger, made while it was a tree of its own, had the
// name its new root's clone takes: 42710), captures each SET NULL once
// (its own trigger from then is gone); and a store's SET NULL trigger of
// an earlier name is replaced by sync, not kept beside the new one.
func TestSubPartitionGoesBack(t *testing.T) {
	e := newEnv(t, `CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par SELECT generate_series(1, 10);
CREATE TABLE ev (id int, k int, p int REFERENCES par ON DELETE SET NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (10);
CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM (10) TO (20) PARTITION BY RANGE (k);
CREATE TABLE ev_b1 PARTITION OF ev_b FOR VALUES FROM (10) TO (15);
CREATE TABLE ev_b2 PARTITION OF ev_b FOR VALUES FROM (15) TO (20);
INSERT INTO ev SELECT g, g % 20, 1 + g % 10 FROM generate_series(1, 40) g;
CREATE TABLE plain (id int PRIMARY KEY, p int REFERENCES par ON DELETE SET NULL);
INSERT INTO plain SELECT g, 1 + g % 10 FROM generate_series(1, 20) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		_, err := c.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	before := e.snapshot("ev", "plain")
	exec(p, "DROP TABLE ev_b")
	exec(p, "UNDROP TABLE ev_b")
	exec(p, "ALTER TABLE ev ATTACH PARTITION ev_b FOR VALUES FROM (10) TO (20)")
	require.Equal(t, before, e.snapshot("ev", "plain"))

	// An earlier store's name on plain's SET NULL trigger, as a sync of
	// before this one left it: the next sync replaces it.
	d := testenv.Connect(t, e.direct)
	exec(d, "CREATE TRIGGER _ts_set_null AFTER UPDATE ON plain FOR EACH ROW WHEN (pg_trigger_depth() > 0) EXECUTE FUNCTION tombstone._ts_cap_"+
		queryText(t, e.direct, "SELECT 'plain'::regclass::oid::text")+"()")
	exec(d, "SELECT tombstone.sync_all()")
	require.Equal(t, "_ts_set_null_p", queryText(t, e.direct,
		"SELECT string_agg(tgname, ',') FROM pg_trigger WHERE tgrelid = 'plain'::regclass AND tgname LIKE '%set_null%'"))

	exec(p, "DELETE FROM par WHERE id = 3")
	batch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	for tb, n := range map[string]int{"ev": 4, "plain": 2} {
		require.Equal(t, n, e.count("SELECT count(*) FROM tombstone."+queryText(t, e.direct, "SELECT tombstone.shadow_name('"+tb+"')")+
			" WHERE _ts_cause = 'set_null' AND _ts_batch = "+batch), tb)
	}
	exec(p, "UNDELETE BATCH "+batch)
	require.Equal(t, before, e.snapshot("ev", "plain"))
}

// setNullPartitions makes par (ids 1-10) and ev, partitioned in ev_a
// (k 0-9) and ev_b (k 10-19), whose key p takes par's ids ON DELETE SET
// NULL (row g: k = g % 20, p = 1 + g % 10); it returns a connection
// through the proxy and a function that runs a statement on it.
func setNullPartitions(t *testing.T) (*env, *pgx.Conn, func(string)) {
	e := newEnv(t, `CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par SELECT generate_series(1, 10);
CREATE TABLE ev (id int, k int, p int REFERENCES par ON DELETE SET NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (10);
CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM (10) TO (20);
INSERT INTO ev SELECT g, g % 20, 1 + g % 10 FROM generate_series(1, 40) g;`)
	p := testenv.Connect(t, e.proxy)
	return e, p, func(sql string) {
		t.Helper()
		_, err := p.Exec(context.Background(), sql)
		require.NoError(t, err, sql)
	}
}

// TestPartitionTombstonesFollowAttach (found by a review): the
// tombstones of a partition's deletes while it stood alone (dropped
// alone and undropped) join its table's shadow when it is attached again,
// where UNDELETE FROM finds them and a restore of the parent re-links the
// SET NULL keys it took from it (both answered "no tombstones" or
// "restored 0" and left the links unrestorable).
func TestPartitionTombstonesFollowAttach(t *testing.T) {
	e, p, exec := setNullPartitions(t)
	before := e.snapshot("par", "ev")
	exec("DROP TABLE ev_a")
	exec("UNDROP TABLE ev_a")
	exec("DELETE FROM par WHERE id = 3") // SET NULL in ev_a (alone) and in ev_b
	parBatch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	exec("DELETE FROM ev_a WHERE id = 4")
	own := queryText(t, e.direct, "SELECT shadow_name FROM tombstone.shadows WHERE source = 'ev_a'::regclass")
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone."+own))
	exec("ALTER TABLE ev ATTACH PARTITION ev_a FOR VALUES FROM (0) TO (10)")
	require.Zero(t, e.count("SELECT count(*) FROM tombstone."+own), "moved to ev's shadow")

	rows, _ := simple(t, p, "UNDELETE FROM ev WHERE id = 4")
	require.Equal(t, [][]string{{"public.ev", "1", "0", "0"}}, rows)
	exec("UNDELETE BATCH " + parBatch)
	require.Equal(t, before, e.snapshot("par", "ev"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone."+queryText(t, e.direct, "SELECT tombstone.shadow_name('ev')")))
}

// TestSetNullLinksKeptForAbsentRows (found by a review): a restore of a
// parent re-links the SET NULL keys its delete nulled in rows that are
// there; the links of rows that are not (their partition dropped alone
// since, here) stay in the store with their values, where they went with
// the applied ones before — the keys' old values lost for good.
func TestSetNullLinksKeptForAbsentRows(t *testing.T) {
	e, _, exec := setNullPartitions(t)
	exec("DELETE FROM par WHERE id = 3") // nulls p of ids 2, 22 (ev_a) and 12, 32 (ev_b)
	batch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	shadow := "tombstone." + queryText(t, e.direct, "SELECT tombstone.shadow_name('ev')")
	require.Equal(t, 4, e.count("SELECT count(*) FROM "+shadow+" WHERE _ts_cause = 'set_null'"))
	exec("DROP TABLE ev_a")
	exec("UNDELETE BATCH " + batch)
	require.Equal(t, 2, e.count("SELECT count(*) FROM ev WHERE p = 3"), "ev_b's rows re-linked")
	require.Equal(t, "2,22", queryText(t, e.direct, "SELECT string_agg(id::text, ',' ORDER BY id) FROM "+shadow+" WHERE _ts_cause = 'set_null' AND p = 3"),
		"ev_a's links kept, with their values")
}

// TestNoRestoreIntoTrashedPartition (found by a review): tombstones a
// partition kept in its own shadow (ones its attach could not move: a
// column it had then is gone) are not restored while the partition lies
// in the trash with its table — into the trash, where they would go with
// it when the reaper drops it.
func TestNoRestoreIntoTrashedPartition(t *testing.T) {
	e, _, exec := setNullPartitions(t)
	exec("DROP TABLE ev_a")
	exec("UNDROP TABLE ev_a")
	exec("ALTER TABLE ev_a ADD COLUMN x int")
	exec("DELETE FROM ev_a WHERE id < 7")
	exec("ALTER TABLE ev_a DROP COLUMN x")
	batch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	exec("ALTER TABLE ev ATTACH PARTITION ev_a FOR VALUES FROM (0) TO (10)")
	own := "tombstone." + queryText(t, e.direct, "SELECT shadow_name FROM tombstone.shadows WHERE source = 'ev_a'::regclass")
	require.Equal(t, 6, e.count("SELECT count(*) FROM "+own+" WHERE _ts_cause = 'delete'"), "kept in its own shadow")
	exec("DROP TABLE ev")
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "UNDELETE BATCH "+batch)
	require.Equal(t, "55000", pgErrCode(err), "%v", err)
	require.Equal(t, 6, e.count("SELECT count(*) FROM "+own+" WHERE _ts_cause = 'delete'"))
}

// TestRestoreSeesParentDeletedWhileDetached (found by a review): a child
// row whose parent was deleted from the detached partition and replaced
// by a new row of the same key is refused (23503) after the partition
// is attached again, as it is without the detach: the restore, looking
// in the root's shadow only, took the new row for its parent.
func TestRestoreSeesParentDeletedWhileDetached(t *testing.T) {
	e := newEnv(t, `CREATE TABLE ev (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (10);
CREATE TABLE ch (id int PRIMARY KEY, eid int, ek int, FOREIGN KEY (eid, ek) REFERENCES ev ON DELETE CASCADE);
INSERT INTO ev VALUES (1, 1, 'old');
INSERT INTO ch VALUES (100, 1, 1);`)
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{"DELETE FROM ch WHERE id = 100", "ALTER TABLE ev DETACH PARTITION ev_a",
		"DELETE FROM ev_a WHERE id = 1", "INSERT INTO ev_a VALUES (1, 1, 'new')",
		"ALTER TABLE ev ATTACH PARTITION ev_a FOR VALUES FROM (0) TO (10)"} {
		_, err := p.Exec(context.Background(), sql)
		require.NoError(t, err, sql)
	}
	_, err := p.Exec(context.Background(), "UNDELETE BATCH "+queryText(t, e.direct, "SELECT min(id) FROM tombstone.batches"))
	require.Equal(t, "23503", pgErrCode(err), "%v", err)
	require.Zero(t, e.count("SELECT count(*) FROM ch"))
}

// TestSetNullOnceWithPartitionKeys (found by a review): a partition with
// an ON DELETE SET NULL key of its own besides its table's carries both
// capture triggers; each of Postgres's SET NULL updates is captured once,
// as in a table outside partitioning with the same keys (it was twice).
func TestSetNullOnceWithPartitionKeys(t *testing.T) {
	e := newEnv(t, `CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par SELECT generate_series(1, 10);
CREATE TABLE ev (id int, k int, p int REFERENCES par ON DELETE SET NULL, q int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (10);
ALTER TABLE ev_a ADD FOREIGN KEY (q) REFERENCES par ON DELETE SET NULL;
CREATE TABLE pl (id int PRIMARY KEY, k int, p int REFERENCES par ON DELETE SET NULL, q int REFERENCES par ON DELETE SET NULL);
INSERT INTO ev SELECT g, g % 10, 1 + g % 10, 1 + g % 10 FROM generate_series(1, 30) g;
INSERT INTO pl SELECT g, g % 10, 1 + g % 10, 1 + g % 10 FROM generate_series(1, 30) g;`)
	_, err := testenv.Connect(t, e.proxy).Exec(context.Background(), "DELETE FROM par WHERE id = 3")
	require.NoError(t, err)
	n := func(tb string) int {
		return e.count("SELECT count(*) FROM tombstone." + queryText(t, e.direct, "SELECT tombstone.shadow_name('"+tb+"')") + " WHERE _ts_cause = 'set_null'")
	}
	require.Equal(t, 6, n("pl"), "two updates of each of the three rows")
	require.Equal(t, n("pl"), n("ev"))
}

// TestRestoreWithoutItsPartition: rows to restore into a partitioned
// table whose partition for them is detached or in the trash get the
// store's error with what to do (it was Postgres's bare "no partition of
// relation found for row"), and nothing is restored.
func TestRestoreWithoutItsPartition(t *testing.T) {
	e, p, exec := setNullPartitions(t)
	exec("DELETE FROM ev WHERE id % 5 = 0") // rows in ev_a and ev_b
	batch := queryText(t, e.direct, "SELECT max(id) FROM tombstone.batches")
	exec("DROP TABLE ev_a")
	_, err := p.Exec(context.Background(), "UNDELETE BATCH "+batch)
	require.Equal(t, "23514", pgErrCode(err), "%v", err)
	require.Contains(t, err.Error(), "belong in a partition")
	require.Equal(t, 8, e.count("SELECT count(*) FROM tombstone."+queryText(t, e.direct, "SELECT tombstone.shadow_name('ev')")))
}
