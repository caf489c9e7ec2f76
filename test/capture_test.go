package test

// The tables' capture triggers write the tombstones (issue 15: no role
// may write one itself). A DELETE whose rows no trigger would copy is
// refused, not let through; the triggers keep themselves enabled.

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

func TestCaptureTriggersKeepThemselves(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g;
CREATE TABLE kid (id int PRIMARY KEY, t_id int REFERENCES t ON DELETE SET NULL); INSERT INTO kid VALUES (1, 1), (2, 2);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	d := testenv.Connect(t, e.direct)
	_, err := p.Exec(ctx, "DELETE FROM t WHERE id = 1") // loads the store
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 1 AND _ts_cause = 'delete'"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__kid WHERE id = 1 AND t_id = 1 AND _ts_cause = 'set_null'"))

	// Disabled by the owner: the DDL event trigger enables it again.
	_, err = d.Exec(ctx, "ALTER TABLE t DISABLE TRIGGER ALL")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND tgname LIKE '\\_ts\\_%' AND tgenabled <> 'A'"))
	// session_replication_role does not silence it either.
	_, err = p.Exec(ctx, "SET session_replication_role = replica; DELETE FROM t WHERE id = 2; RESET session_replication_role")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 2"))

	// Dropped: the DELETE is refused, nothing deleted, until a sync.
	_, err = d.Exec(ctx, "DROP TRIGGER _ts_capture ON t")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM t WHERE id = 3")
	require.Equal(t, "55000", errCode(err))
	require.Equal(t, 1, e.count("SELECT count(*) FROM t WHERE id = 3"))
	_, err = d.Exec(ctx, "SELECT tombstone.sync_all()")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM t WHERE id = 3")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 3"))

	// Deletes that do not pass through the proxy are not captured, as
	// before: no batch, no tombstone.
	_, err = d.Exec(ctx, "DELETE FROM t WHERE id = 4")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 4"))
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.batches"))
}

// TestCaptureInheritanceRowwise: members of an inheritance tree are
// captured row by row into their own shadows, with all their columns —
// also a child that joined the tree after its parent was protected.
func TestCaptureInheritanceRowwise(t *testing.T) {
	e := newEnv(t, `CREATE TABLE animals (id int, name text); INSERT INTO animals VALUES (1, 'ant');`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM animals WHERE id = 0") // loads the store
	require.NoError(t, err)
	_, err = p.Exec(ctx, "CREATE TABLE dogs (breed text) INHERITS (animals); INSERT INTO dogs VALUES (2, 'ace', 'collie'), (3, 'bo', 'pug')")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM animals WHERE name LIKE 'a%'")
	require.NoError(t, err)
	require.Equal(t, "1:ant", queryText(t, e.direct, "SELECT string_agg(id || ':' || name, ',') FROM tombstone.public__animals"))
	require.Equal(t, "2:ace:collie", queryText(t, e.direct, "SELECT string_agg(id || ':' || name || ':' || breed, ',') FROM tombstone.public__dogs"))
	_, err = p.Exec(ctx, "UNDELETE BATCH "+queryText(t, e.direct, "SELECT max(id)::text FROM tombstone.batches"))
	require.NoError(t, err)
	require.Equal(t, 3, e.count("SELECT count(*) FROM animals"))
	require.Equal(t, "collie,pug", queryText(t, e.direct, "SELECT string_agg(breed, ',' ORDER BY breed) FROM dogs"))
}

// TestCaptureHostileOwner (review of the capture triggers): a role's own
// statement cannot keep its rows from being captured; its casts never
// run in the capture trigger, which runs as the installer; a look-alike
// trigger in place of a table's capture trigger refuses the DELETE or
// is replaced.
func TestCaptureHostileOwner(t *testing.T) {
	e := newEnv(t, `CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts SELECT generate_series(1, 5);
CREATE TABLE mylog (x text);`)
	ctx := context.Background()
	alice := tempRole(t, e, "LOGIN", "GRANT CREATE ON SCHEMA public TO %s; GRANT SELECT, INSERT, DELETE ON accounts, mylog TO %s")
	ap := testenv.Connect(t, as(t, e.proxy, alice))
	_, err := ap.Exec(ctx, "WITH x AS (INSERT INTO mylog SELECT pg_catalog.set_config('tombstone.batch', '', true)) DELETE FROM accounts WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__accounts WHERE id = 2"))

	execAs(t, e.direct, alice, `
CREATE TYPE evil AS ENUM ('1', '2');
CREATE FUNCTION evil_to_int(e evil) RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
  END IF;
  RETURN e::text::int;
END $f$;
CREATE CAST (evil AS int) WITH FUNCTION evil_to_int(evil) AS IMPLICIT;
CREATE TABLE aparent (id int PRIMARY KEY);
CREATE TABLE achild (id int PRIMARY KEY, pid evil REFERENCES aparent ON DELETE CASCADE);
INSERT INTO aparent VALUES (1), (2); INSERT INTO achild VALUES (1, '1'), (2, '2');
WITH b AS (INSERT INTO tombstone.batches (sql, tables) VALUES ('x', '{"public.achild": 1}')) DELETE FROM achild WHERE id = 2;`)
	require.False(t, isSuper(t, e, alice))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__achild WHERE id = 2 AND _ts_cause = 'delete'"))

	// A look-alike, enabled ALWAYS: the DDL event trigger puts the real
	// one back. Created without that ALTER: the DELETE is refused.
	execAs(t, e.direct, alice, `CREATE TABLE tt (id int); INSERT INTO tt VALUES (1), (2), (3);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
DROP TRIGGER _ts_capture ON tt;
CREATE TRIGGER _ts_capture AFTER DELETE ON tt FOR EACH STATEMENT EXECUTE FUNCTION noop();
ALTER TABLE tt ENABLE ALWAYS TRIGGER _ts_capture;`)
	e.cats.Invalidate(dbName(t, e.direct))
	_, err = ap.Exec(ctx, "DELETE FROM tt WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__tt WHERE id = 1"))
	execAs(t, e.direct, alice, `DROP TRIGGER _ts_capture ON tt;
CREATE TRIGGER _ts_capture AFTER DELETE ON tt FOR EACH STATEMENT EXECUTE FUNCTION noop();`)
	_, err = ap.Exec(ctx, "DELETE FROM tt WHERE id = 2")
	require.Equal(t, "55000", errCode(err))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tt WHERE id = 2"))
}

// TestCapturePartitionKeys (review of the capture triggers): foreign keys
// declared on one partition alone cascade into it under its own name,
// and set its links NULL — captured all the same.
func TestCapturePartitionKeys(t *testing.T) {
	e := newEnv(t, `CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p VALUES (3), (4);
CREATE TABLE q (id int PRIMARY KEY, pid int, sid int) PARTITION BY RANGE (id);
CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (100);
CREATE TABLE q2 PARTITION OF q FOR VALUES FROM (100) TO (200);
ALTER TABLE q2 ADD FOREIGN KEY (pid) REFERENCES p ON DELETE CASCADE;
ALTER TABLE q2 ADD FOREIGN KEY (sid) REFERENCES p ON DELETE SET NULL;
INSERT INTO q VALUES (101, 3, NULL), (102, NULL, 4);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{"DELETE FROM p WHERE id = 3", "DELETE FROM p WHERE id = 4"} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.Equal(t, "101:cascade,102:set_null", queryText(t, e.direct,
		"SELECT string_agg(id || ':' || _ts_cause, ',' ORDER BY id) FROM tombstone.public__q"))
	for _, b := range []string{"1", "2"} {
		_, err := p.Exec(ctx, "UNDELETE BATCH "+b)
		require.NoError(t, err)
	}
	// The old link is recorded; the restore re-links keys declared on
	// the partitioned table, not yet one declared on a partition alone
	// (README, edge cases).
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__q WHERE id = 102 AND sid = 4"))
	require.Equal(t, "101:3:,102::", queryText(t, e.direct,
		"SELECT string_agg(concat_ws(':', id, coalesce(pid::text, ''), coalesce(sid::text, '')), ',' ORDER BY id) FROM q"))
}

// TestCascadeOnlyWherePostgresWould (issue 16, item 2): under
// session_replication_role = replica, or with the referenced table's
// triggers disabled, Postgres runs no ON DELETE action; neither does the
// rewritten DELETE — the children stay, as Postgres leaves them.
func TestCascadeOnlyWherePostgresWould(t *testing.T) {
	e := newEnv(t, `CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT generate_series(1, 4);
CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE CASCADE); INSERT INTO c SELECT g, g FROM generate_series(1, 4) g;
CREATE TABLE n (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE SET NULL); INSERT INTO n SELECT g, g FROM generate_series(1, 4) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "SET session_replication_role = replica; DELETE FROM p WHERE id = 1; RESET session_replication_role")
	require.NoError(t, err)
	require.Equal(t, "1:1", queryText(t, e.direct, "SELECT (SELECT count(*) FROM c WHERE p_id = 1) || ':' || (SELECT count(*) FROM n WHERE p_id = 1)"))
	_, err = testenv.Connect(t, e.direct).Exec(ctx, "ALTER TABLE p DISABLE TRIGGER ALL")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM p WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, "1:1", queryText(t, e.direct, "SELECT (SELECT count(*) FROM c WHERE p_id = 2) || ':' || (SELECT count(*) FROM n WHERE p_id = 2)"))
	_, err = testenv.Connect(t, e.direct).Exec(ctx, "ALTER TABLE p ENABLE TRIGGER ALL")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM p WHERE id = 3")
	require.NoError(t, err)
	require.Equal(t, "0:0", queryText(t, e.direct, "SELECT (SELECT count(*) FROM c WHERE p_id = 3) || ':' || (SELECT count(*) FROM n WHERE p_id = 3)"))
	require.Equal(t, "1:delete,2:delete,3:delete", queryText(t, e.direct, "SELECT string_agg(id || ':' || _ts_cause, ',' ORDER BY id) FROM tombstone.public__p"))
	require.Equal(t, "3:cascade", queryText(t, e.direct, "SELECT string_agg(id || ':' || _ts_cause, ',' ORDER BY id) FROM tombstone.public__c"))
	require.Equal(t, "3:set_null", queryText(t, e.direct, "SELECT string_agg(id || ':' || _ts_cause, ',' ORDER BY id) FROM tombstone.public__n"))
}

// TestSetNullColumnsCanChangeType: the capture's SET NULL trigger is on
// no column, so ALTER COLUMN … TYPE of a key's column goes through, as
// without the proxy (PostgreSQL's foreign_key test); the old values are
// kept as before, and an application's own UPDATE of the key — of a row
// whose parent is gone, or whose parent stays — is not taken for the
// action.
func TestSetNullColumnsCanChangeType(t *testing.T) {
	e := newEnv(t, `CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT generate_series(1, 4);
CREATE TABLE n (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE SET NULL, v text); INSERT INTO n SELECT g, g, 'v' FROM generate_series(1, 4) g;`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM p WHERE id = 1")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "ALTER TABLE n ALTER COLUMN p_id TYPE bigint")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM p WHERE id = 2")
	require.NoError(t, err)
	require.Equal(t, "1:1:set_null,2:2:set_null", queryText(t, e.direct,
		"SELECT string_agg(id || ':' || p_id || ':' || _ts_cause, ',' ORDER BY id) FROM tombstone.public__n"))
	// Not the action's: updates of the key by the application, one inside
	// a trigger of its own, and of other columns.
	_, err = p.Exec(ctx, `CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE n SET p_id = NULL, v = 'w' WHERE id = NEW.id; RETURN NULL; END $$;
CREATE TABLE log (id int); CREATE TRIGGER bump AFTER INSERT ON log FOR EACH ROW EXECUTE FUNCTION bump()`)
	require.NoError(t, err)
	_, err = p.Exec(ctx, "UPDATE n SET p_id = NULL WHERE id = 3; INSERT INTO log VALUES (4); UPDATE n SET v = 'x'")
	require.NoError(t, err)
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__n"))
	require.Equal(t, "", queryText(t, e.direct,
		"SELECT coalesce(string_agg(tgname || ':' || tgattr::text, ','), '') FROM pg_trigger WHERE tgrelid = 'n'::regclass AND tgattr::text <> ''"))
	// And the restore links the rows again.
	_, err = p.Exec(ctx, "UNDELETE FROM p WHERE id IN (1, 2)")
	require.NoError(t, err)
	require.Equal(t, "1:1,2:2,3:,4:", queryText(t, e.direct,
		"SELECT string_agg(id || ':' || coalesce(p_id::text, ''), ',' ORDER BY id) FROM n"))
}

// TestIncludeColumnsWithoutBtree (issue 16, item 4): a key with INCLUDE
// columns of a type btree cannot index (json, point) does not stop
// CREATE TABLE — the shadow's index is on the key columns alone — and its
// deletes are captured and restored.
func TestIncludeColumnsWithoutBtree(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, `CREATE TABLE inc (id int, j json, pt point, PRIMARY KEY (id) INCLUDE (j, pt));
INSERT INTO inc VALUES (1, '{"a": 1}', '(1,2)'), (2, '[]', '(3,4)')`)
	require.NoError(t, err)
	_, err = testenv.Connect(t, e.direct).Exec(ctx, "CREATE TABLE inc2 (id int, j json, UNIQUE (id) INCLUDE (j))")
	require.NoError(t, err, "direct connections too (the DDL event trigger syncs)")
	_, err = p.Exec(ctx, "DELETE FROM inc WHERE id = 1")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "UNDELETE FROM inc WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, `1:{"a": 1}:(1,2)`, queryText(t, e.direct, "SELECT id || ':' || j::text || ':' || pt::text FROM inc WHERE id = 1"))
}

// TestDropTypeKeepsTombstones (issue 16, item 3): a shadow table keeps a
// user's type as text, so DROP TYPE … CASCADE drops the type and the
// live column, as Postgres would, while the tombstones keep the deleted
// rows' values (as text, in the detached column), through the proxy and
// directly.
func TestDropTypeKeepsTombstones(t *testing.T) {
	e := newEnv(t, `CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE moods (id int PRIMARY KEY, m mood);
INSERT INTO moods VALUES (1, 'sad'), (2, 'ok');
CREATE TYPE color AS ENUM ('red'); CREATE TABLE colors (id int PRIMARY KEY, c color); INSERT INTO colors VALUES (1, 'red');`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{"DELETE FROM moods WHERE id = 1", "DELETE FROM colors"} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err)
	}
	_, err := testenv.Connect(t, e.direct).Exec(ctx, "DROP TYPE mood CASCADE")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DROP TYPE color CASCADE")
	require.NoError(t, err)
	require.Equal(t, "sad", queryText(t, e.direct, "SELECT m FROM tombstone.public__moods WHERE id = 1"))
	require.Equal(t, "red", queryText(t, e.direct, "SELECT c FROM tombstone.public__colors WHERE id = 1"))
	_, err = p.Exec(ctx, "UNDELETE FROM moods WHERE id = 1")
	require.NoError(t, err)
	require.Equal(t, 2, e.count("SELECT count(*) FROM moods"))
}

// TestDeleteWithColumnPrivileges: a role with DELETE and SELECT on the
// key column alone deletes as it would directly — the rewritten DELETE
// reads only what the plain one reads — and the whole row is captured; RETURNING a column it may not read is
// refused as Postgres refuses it.
func TestDeleteWithColumnPrivileges(t *testing.T) {
	e := newEnv(t, `CREATE TABLE secrets (id int PRIMARY KEY, secret text);
INSERT INTO secrets SELECT i, 'secret ' || i FROM generate_series(1, 5) i;`)
	ctx := context.Background()
	bob := tempRole(t, e, "LOGIN", "GRANT DELETE, SELECT (id) ON secrets TO %s")
	bp := testenv.Connect(t, as(t, e.proxy, bob))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		tag, err := bp.Exec(ctx, "DELETE FROM secrets WHERE id = (SELECT min(id) FROM secrets)", mode)
		require.NoError(t, err)
		require.Equal(t, "DELETE 1", tag.String())
		var id int
		require.NoError(t, bp.QueryRow(ctx, "DELETE FROM secrets WHERE id = (SELECT max(id) FROM secrets) RETURNING id", mode).Scan(&id))
		_, err = bp.Exec(ctx, "DELETE FROM secrets WHERE id = 3 RETURNING secret", mode)
		require.Equal(t, "42501", pgErrCode(err))
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM secrets"))
	require.Equal(t, 4, e.count("SELECT count(*) FROM tombstone.public__secrets WHERE secret LIKE 'secret %'"))
}
