package test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// consoleErr runs a console command through the proxy and returns its
// Postgres error (failing the test when it succeeds).
func consoleErr(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	_, err := c.PgConn().Exec(context.Background(), sql).ReadAll()
	pe := pgErrOf(t, err)
	return pe.Code + " " + pe.Message + " | " + pe.Detail + " | " + pe.Hint
}

// lastBatch is the newest batch id.
func (e *env) lastBatch() int { return e.count("SELECT max(id) FROM tombstone.batches") }

// TestRestoreSkipNeverAttachesToNewerRows: a tenant is deleted with its
// documents (cascade); a new customer takes the tenant's key; UNDELETE …
// ON CONFLICT SKIP keeps the new tenant and leaves the old documents as
// tombstones with their tenant, instead of handing them to the new
// customer. DRY RUN says so first.
func TestRestoreSkipNeverAttachesToNewerRows(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE tenants (id int PRIMARY KEY, name text);
CREATE TABLE docs (id int PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants ON DELETE CASCADE, body text);
INSERT INTO tenants VALUES (8, 'Acme'), (9, 'Initech');
INSERT INTO docs VALUES (1, 9, 'Initech secret plan'), (2, 8, 'Acme memo');`)
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "DELETE FROM tenants WHERE id = 9")
	require.NoError(t, err)
	batch := e.lastBatch()
	_, err = p.Exec(context.Background(), "INSERT INTO tenants VALUES (9, 'NewCo')")
	require.NoError(t, err)

	dry, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d DRY RUN ON CONFLICT SKIP", batch))
	require.Equal(t, []string{"public.tenants", "0", "1", "0"}, findRow(dry, "public.tenants"))
	require.Equal(t, []string{"public.docs", "0", "0", "1"}, findRow(dry, "public.docs"), "skipped with their tenant")
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d ON CONFLICT SKIP", batch))
	require.Equal(t, dry, res, "DRY RUN says what the run does")
	require.Zero(t, e.count("SELECT count(*) FROM docs WHERE tenant_id = 9"), "NewCo got nobody's documents")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__docs"), "the document stays a tombstone")

	// FAIL names the conflict; restoring the document alone is refused.
	require.Contains(t, consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch)), "23505")
	require.Contains(t, consoleErr(t, p, "UNDELETE FROM docs WHERE id = 1"), "23503")
	// Once NewCo is gone, the old tenant comes back with its document.
	_, err = p.Exec(context.Background(), "DELETE FROM tenants WHERE id = 9")
	require.NoError(t, err)
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Equal(t, []string{"public.docs", "1", "0", "0"}, findRow(res, "public.docs"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM docs d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'Initech'"))
}

// TestRestoreConflictsOnEveryUniqueKey: a conflict on a UNIQUE key other
// than the primary key (and through a partial, expression or NULLS NOT
// DISTINCT index) is seen by DRY RUN exactly as by the run; NULLs in a
// nullable unique key never conflict and never make a row come back twice.
func TestRestoreConflictsOnEveryUniqueKey(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, handle text, nick text, code text UNIQUE NULLS NOT DISTINCT);
CREATE UNIQUE INDEX users_handle ON users (lower(handle)) WHERE handle IS NOT NULL;
CREATE TABLE loose (k int UNIQUE, v text);
INSERT INTO users VALUES (1, 'a@x', 'Ann', NULL, NULL), (2, 'b@x', 'Bob', NULL, 'c'), (3, 'c@x', NULL, NULL, 'd');
INSERT INTO loose VALUES (NULL, 'null key'), (1, 'one');`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := p.Exec(ctx, "DELETE FROM users")
	require.NoError(t, err)
	batch := e.lastBatch()
	// New rows take: 1's email, 2's handle (another case), and the NULL
	// code of 1 (NULLS NOT DISTINCT); 3 is free.
	_, err = p.Exec(ctx, "INSERT INTO users VALUES (10, 'a@x', NULL, NULL, 'z'), (11, 'new@x', 'BOB', NULL, 'y'), (12, 'n2@x', NULL, NULL, NULL)")
	require.NoError(t, err)
	dry, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d DRY RUN ON CONFLICT SKIP", batch))
	require.Equal(t, []string{"public.users", "1", "2", "0"}, findRow(dry, "public.users"))
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d ON CONFLICT SKIP", batch))
	require.Equal(t, dry, res)
	require.Equal(t, 1, e.count("SELECT count(*) FROM users WHERE id = 3"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__users"))
	msg := consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Contains(t, msg, "23505")
	require.Contains(t, msg, "conflict on")

	// A NULL key: restored once, then there is nothing left.
	_, err = p.Exec(ctx, "DELETE FROM loose WHERE k IS NULL")
	require.NoError(t, err)
	res, _ = simple(t, p, "UNDELETE FROM loose WHERE v = 'null key' ON CONFLICT SKIP")
	require.Equal(t, []string{"public.loose", "1", "0", "0"}, findRow(res, "public.loose"))
	require.Contains(t, consoleErr(t, p, "UNDELETE FROM loose WHERE v = 'null key' ON CONFLICT SKIP"), "P0002")
	require.Equal(t, 1, e.count("SELECT count(*) FROM loose WHERE k IS NULL"))
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.public__loose"))
}

// TestRestoreRefusesTheTrash: a table dropped to the trash takes no rows:
// the restore is refused with a hint to UNDROP it first, and the store is
// untouched; after UNDROP TABLE the rows come back.
func TestRestoreRefusesTheTrash(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1), (2, 1);`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := p.Exec(ctx, "DELETE FROM parent")
	require.NoError(t, err)
	batch := e.lastBatch()
	_, err = p.Exec(ctx, "DROP TABLE child")
	require.NoError(t, err)
	msg := consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Contains(t, msg, "55000")
	require.Contains(t, msg, "UNDROP TABLE public.child first")
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__child"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__parent"))
	require.Zero(t, e.count("SELECT count(*) FROM parent"))
	simple(t, p, "UNDROP TABLE child")
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Equal(t, []string{"public.child", "2", "0", "0"}, findRow(res, "public.child"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM public.child"))
}

// TestRestoreSelfReferenceSetNull: UNDELETE FROM t WHERE id = 1 re-links
// the rows of t that the delete set NULL (t.parent REFERENCES t ON DELETE
// SET NULL), where still NULL.
func TestRestoreSelfReferenceSetNull(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE t (id int PRIMARY KEY, parent int REFERENCES t ON DELETE SET NULL);
INSERT INTO t VALUES (1, NULL), (2, 1), (3, 1), (4, 2);`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := p.Exec(ctx, "DELETE FROM t WHERE id = 1")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "UPDATE t SET parent = 4 WHERE id = 3") // the application re-points one
	require.NoError(t, err)
	res, _ := simple(t, p, "UNDELETE FROM t WHERE id = 1")
	require.Equal(t, []string{"public.t", "2", "0", "0"}, findRow(res, "public.t"), "one row back, one link re-linked")
	require.Equal(t, 1, e.count("SELECT parent FROM t WHERE id = 2"))
	require.Equal(t, 4, e.count("SELECT parent FROM t WHERE id = 3"), "a link the application changed stays")
	require.Zero(t, e.count("SELECT count(*) FROM tombstone.public__t"))
}

// TestRestoreReadsOnce: a condition that reads the table being restored
// is evaluated once: the tombstones that leave the store are exactly the
// rows inserted. TABLESAMPLE is refused.
func TestRestoreReadsOnce(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE cats (id int PRIMARY KEY, parent_id int);
INSERT INTO cats VALUES (1, NULL), (2, 1), (3, 2), (4, 3);`)
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(context.Background(), "DELETE FROM cats WHERE id >= 2")
	require.NoError(t, err)
	res, _ := simple(t, p, "UNDELETE FROM cats WHERE parent_id IN (SELECT id FROM public.cats)")
	require.Equal(t, []string{"public.cats", "1", "0", "0"}, findRow(res, "public.cats"))
	for id := 2; id <= 4; id++ {
		require.Equal(t, 1, e.count(fmt.Sprintf(
			"SELECT (SELECT count(*) FROM cats WHERE id = %[1]d) + (SELECT count(*) FROM tombstone.public__cats WHERE id = %[1]d)", id)),
			"cat %d is live or a tombstone, exactly once", id)
	}
	require.Contains(t, consoleErr(t, p, "UNDELETE FROM cats WHERE id IN (SELECT id FROM public.cats TABLESAMPLE SYSTEM (50))"), "22023")
}

// TestRestoreUserColumnsNamedLikeOurs: user columns named like the
// store's own (_ts_token, _ts_batch, _ts_state) are deleted and restored
// like any other.
func TestRestoreUserColumnsNamedLikeOurs(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE odd (id int PRIMARY KEY, _ts_token text, _ts_batch int, _ts_state text, _ts_v1 int);
INSERT INTO odd VALUES (1, 'tok', 7, 'st', 11), (2, NULL, 8, NULL, 12);`)
	before := e.snapshot("odd")
	p := testenv.Connect(t, e.proxy)
	tag, err := p.Exec(context.Background(), "DELETE FROM odd WHERE _ts_batch = 7 OR _ts_token IS NULL")
	require.NoError(t, err)
	require.Equal(t, "DELETE 2", tag.String())
	show, _ := simple(t, p, "SHOW TOMBSTONES odd WHERE _ts_token = 'tok'")
	require.Len(t, show, 1)
	require.Contains(t, show[0][3], `"_ts_token":"tok"`)
	show, _ = simple(t, p, fmt.Sprintf("SHOW TOMBSTONES odd BATCH %d", e.lastBatch()))
	require.Len(t, show, 2, "SHOW TOMBSTONES … BATCH n")
	show, _ = simple(t, p, fmt.Sprintf("SHOW TOMBSTONES odd BATCH %d", e.lastBatch()+1))
	require.Empty(t, show)
	res, _ := simple(t, p, "UNDELETE FROM odd WHERE _ts_batch = 8")
	require.Equal(t, []string{"public.odd", "1", "0", "0"}, findRow(res, "public.odd"))
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", e.lastBatch()))
	require.Equal(t, []string{"public.odd", "1", "0", "0"}, findRow(res, "public.odd"))
	require.Equal(t, before, e.snapshot("odd"))
}

// TestRestoreRunsAsTheOwner: a restore's conflict check and writes run as
// the table's owner, so code the owner wrote — a trigger, a function in a
// unique index's expression — never runs with the restoring superuser's
// rights; an administrator who may not become the owner is refused on
// such a table (42501) and restores a table without such code as itself.
func TestRestoreRunsAsTheOwner(t *testing.T) {
	e := newEnv(t, `CREATE TABLE audit_log (who text); CREATE TABLE plain (id int PRIMARY KEY); INSERT INTO plain VALUES (1);`)
	owner := tempRole(t, e, "LOGIN", `
CREATE TABLE owned (id int PRIMARY KEY, code text);
ALTER TABLE owned OWNER TO %s;
GRANT INSERT ON audit_log TO %s;
GRANT CREATE ON SCHEMA public TO %s;
CREATE FUNCTION owned_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit_log SELECT current_user || '/' || r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user; RETURN NEW; END $$;
ALTER FUNCTION owned_trg() OWNER TO %s;
CREATE TRIGGER owned_ins AFTER INSERT ON owned FOR EACH ROW EXECUTE FUNCTION owned_trg();
-- An index expression: it refuses to run as a superuser.
CREATE FUNCTION owned_key(c text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN RAISE EXCEPTION 'owned_key ran as a superuser'; END IF; RETURN c; END $$;
ALTER FUNCTION owned_key(text) OWNER TO %s;
SET ROLE %s;
CREATE UNIQUE INDEX owned_code ON owned (owned_key(code));
INSERT INTO owned VALUES (1, 'a'), (2, 'b');
RESET ROLE;`)
	d := testenv.Connect(t, e.direct)
	ctx := context.Background()
	_, err := d.Exec(ctx, "TRUNCATE audit_log")
	require.NoError(t, err)
	e.cats.Invalidate(dbName(t, e.direct))
	p := testenv.Connect(t, e.proxy)
	_, err = p.Exec(ctx, "DELETE FROM owned")
	require.NoError(t, err)
	batch := e.lastBatch()

	// An administrator who is not the owner's member: refused where the
	// owner's code would run, fine elsewhere.
	admin := tempRole(t, e, "LOGIN", "GRANT tombstone_admin TO %s; GRANT INSERT, SELECT ON owned, plain TO %s")
	u, _ := url.Parse(e.proxy)
	u.User = url.User(admin)
	a := testenv.Connect(t, u.String())
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	msg := consoleErr(t, a, fmt.Sprintf("UNDELETE BATCH %d", batch))
	require.Contains(t, msg, "42501")
	require.Contains(t, msg, "Restore as "+owner)
	_, err = p.Exec(ctx, "DELETE FROM plain")
	require.NoError(t, err)
	res, _ := simple(t, a, fmt.Sprintf("UNDELETE BATCH %d", e.lastBatch()))
	require.Equal(t, []string{"public.plain", "1", "0", "0"}, findRow(res, "public.plain"))

	// The superuser, by default, is refused too; opted in, everything of
	// the owner's runs as the owner.
	require.Contains(t, consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch)), "42501")
	_, err = p.Exec(ctx, "SET tombstone.restore_owner_code = on")
	require.NoError(t, err)
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batch))
	require.Equal(t, []string{"public.owned", "2", "0", "0"}, findRow(res, "public.owned"))
	simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", batch))
	var who []string
	rows, err := d.Query(ctx, "SELECT who FROM audit_log")
	require.NoError(t, err)
	who, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{owner + "/false", owner + "/false"}, who)
	require.Equal(t, 2, e.count("SELECT count(*) FROM owned"))
}

// TestRestoreAfterPurgedEvidence: a child deleted before its parent,
// whose parent's batch was then purged and the key taken by a newer row,
// is not attached to the newer row: the purge took away the evidence, and
// the restore says so rather than guess.
func TestRestoreAfterPurgedEvidence(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE tenants (id int PRIMARY KEY, name text);
CREATE TABLE docs (id int PRIMARY KEY, tenant_id int REFERENCES tenants ON DELETE CASCADE);
CREATE TABLE links (id int PRIMARY KEY, tenant_id int REFERENCES tenants ON DELETE SET NULL);
INSERT INTO tenants VALUES (1, 'Initech'), (2, 'Acme'); INSERT INTO docs VALUES (1, 1); INSERT INTO links VALUES (1, 2);`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	for _, sql := range []string{"DELETE FROM docs WHERE id = 1", "DELETE FROM tenants WHERE id = 1"} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err)
	}
	docBatch := e.lastBatch() - 1
	simple(t, p, fmt.Sprintf("PURGE BATCH %d", e.lastBatch()))
	_, err := p.Exec(ctx, "INSERT INTO tenants VALUES (1, 'NewCo')")
	require.NoError(t, err)
	require.Contains(t, consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", docBatch)), "23503")
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d ON CONFLICT SKIP", docBatch))
	require.Equal(t, []string{"public.docs", "0", "0", "1"}, findRow(res, "public.docs"))
	require.Zero(t, e.count("SELECT count(*) FROM docs"))

	// A SET NULL link whose row was deleted (and that batch purged) and
	// whose key a newer row took is not re-linked onto the newer row.
	for _, sql := range []string{"DELETE FROM tenants WHERE id = 2", "DELETE FROM links WHERE id = 1"} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err)
	}
	tenantBatch := e.lastBatch() - 1
	simple(t, p, fmt.Sprintf("PURGE BATCH %d", e.lastBatch()))
	_, err = p.Exec(ctx, "INSERT INTO links VALUES (1, NULL)")
	require.NoError(t, err)
	res, _ = simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", tenantBatch))
	require.Equal(t, []string{"public.links", "0", "0", "0"}, findRow(res, "public.links"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM links WHERE tenant_id IS NULL"), "the newer link row keeps its NULL")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__links WHERE _ts_cause = 'set_null'"), "the link stays in the store")
}

// TestRestoreTablesNamedLikeOurs: tables named like the rewrite's and the
// restore's own names are deleted from and restored like any other.
func TestRestoreTablesNamedLikeOurs(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE _ts_d0 (id int PRIMARY KEY);
CREATE TABLE _ts_bid (id int PRIMARY KEY, d0 int REFERENCES _ts_d0 ON DELETE CASCADE);
CREATE TABLE s (id int PRIMARY KEY, d0 int REFERENCES _ts_d0 ON DELETE SET NULL);
INSERT INTO _ts_d0 VALUES (1), (2); INSERT INTO _ts_bid VALUES (1, 1), (2, 2); INSERT INTO s VALUES (1, 1);`)
	before := e.snapshot("_ts_d0", "_ts_bid", "s")
	p := testenv.Connect(t, e.proxy)
	tag, err := p.Exec(context.Background(), "DELETE FROM _ts_d0 WHERE id IN (SELECT d0 FROM _ts_bid WHERE id = 1)")
	require.NoError(t, err)
	require.Equal(t, "DELETE 1", tag.String())
	res, _ := simple(t, p, fmt.Sprintf("UNDELETE BATCH %d", e.lastBatch()))
	require.Equal(t, []string{"public._ts_bid", "1", "0", "0"}, findRow(res, "public._ts_bid"))
	require.Equal(t, []string{"public.s", "1", "0", "0"}, findRow(res, "public.s"))
	require.Equal(t, before, e.snapshot("_ts_d0", "_ts_bid", "s"))
}

// TestRestoreEveryRowWritten: a trigger that discards some of the rows a
// restore inserts (BEFORE INSERT … RETURN NULL), or an INSTEAD rule, makes
// the restore refuse instead of forgetting rows it never wrote.
func TestRestoreEveryRowWritten(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE items (id int PRIMARY KEY, archived bool NOT NULL DEFAULT false);
CREATE FUNCTION skip_archived() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.archived THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TABLE ruled (id int PRIMARY KEY);
INSERT INTO items SELECT i, i <= 4 FROM generate_series(1, 10) i; INSERT INTO ruled SELECT generate_series(1, 10);`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := p.Exec(ctx, "DELETE FROM items")
	require.NoError(t, err)
	itemsBatch := e.lastBatch()
	_, err = p.Exec(ctx, "DELETE FROM ruled")
	require.NoError(t, err)
	testenv.Exec(t, "SELECT 1")
	d := testenv.Connect(t, e.direct)
	_, err = d.Exec(ctx, `CREATE TRIGGER items_bi BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION skip_archived();
		CREATE RULE ruled_ins AS ON INSERT TO ruled WHERE NEW.id <= 3 DO INSTEAD NOTHING`)
	require.NoError(t, err)

	require.Contains(t, consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", itemsBatch)), "27000")
	require.Zero(t, e.count("SELECT count(*) FROM items"))
	require.Equal(t, 10, e.count("SELECT count(*) FROM tombstone.public__items"), "nothing forgotten")
	require.Contains(t, consoleErr(t, p, fmt.Sprintf("UNDELETE BATCH %d", e.lastBatch())), "0A000")
	require.Equal(t, 10, e.count("SELECT count(*) FROM tombstone.public__ruled"))
}

// TestRestoreHoldsLiveParents: the live parent rows a restore's children
// will reference are locked (FOR KEY SHARE) until the restore commits: the
// application cannot delete one and put a newer row in its place while
// the restore runs.
func TestRestoreHoldsLiveParents(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE p2 (id int PRIMARY KEY, name text);
CREATE TABLE c2 (id int PRIMARY KEY, pid int NOT NULL REFERENCES p2, v text);
CREATE FUNCTION c2_wait() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); RETURN NULL; END $$;
INSERT INTO p2 VALUES (1, 'orig'); INSERT INTO c2 SELECT i, 1, 'v' || i FROM generate_series(1, 5) i;`)
	p := testenv.Connect(t, e.proxy)
	ctx := context.Background()
	_, err := p.Exec(ctx, "DELETE FROM c2")
	require.NoError(t, err)
	batch := e.lastBatch()
	d := testenv.Connect(t, e.direct)
	_, err = d.Exec(ctx, "CREATE TRIGGER c2_wait BEFORE INSERT ON c2 FOR EACH STATEMENT EXECUTE FUNCTION c2_wait()")
	require.NoError(t, err)
	gate := testenv.Connect(t, e.direct)
	_, err = gate.Exec(ctx, "SELECT pg_advisory_lock(4242)")
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		admin, err := pgx.Connect(ctx, e.proxy)
		if err != nil {
			done <- err
			return
		}
		defer admin.Close(ctx)
		_, err = admin.PgConn().Exec(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch)).ReadAll()
		done <- err
	}()
	testenv.WaitFor(t, testenv.Hang, "the restore to wait in the trigger", func() bool {
		return e.count("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") > 0
	})
	app := testenv.Connect(t, e.proxy)
	_, err = app.Exec(ctx, "SET lock_timeout = '200ms'")
	require.NoError(t, err)
	_, err = app.Exec(ctx, "DELETE FROM p2 WHERE id = 1")
	require.Equal(t, "55P03", pgErrOf(t, err).Code, "the parent is held by the restore")
	_, err = gate.Exec(ctx, "SELECT pg_advisory_unlock(4242)")
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Equal(t, 5, e.count("SELECT count(*) FROM c2 JOIN p2 ON p2.id = c2.pid WHERE p2.name = 'orig'"))
}
