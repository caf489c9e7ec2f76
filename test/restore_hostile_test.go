package test

// A hostile table owner ("mallory": LOGIN, CREATE on public, no superuser)
// against the restore: none of its code may run with the rights of the
// administrator who restores, and rows it plants in the store may neither
// block nor join another role's restore. Found by an adversarial review of
// the restore; each test failed on the code it reviewed.

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// pwnLog records who ran mallory's code.
const pwnLog = `
CREATE TABLE public.pwn_log (what text, cur text, su boolean);
GRANT INSERT ON public.pwn_log TO PUBLIC;`

// mallorySetup: rec() logs who runs it; escalate() also takes the
// session's role back (RESET ROLE) and, if that makes it a superuser,
// makes the attacker one; irec()/iconst() are IMMUTABLE wrappers usable in
// indexes and generated columns.
const mallorySetup = `
CREATE FUNCTION public.rec(tag text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
BEGIN INSERT INTO public.pwn_log SELECT tag, current_user, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
RETURN true; END $f$;
CREATE FUNCTION public.escalate(tag text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
DECLARE attacker text := (SELECT p.proowner::regrole::text FROM pg_catalog.pg_proc p WHERE p.oid = 'public.escalate(text)'::regprocedure);
BEGIN
  BEGIN
    PERFORM pg_catalog.set_config('role', 'none', true);
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  PERFORM public.rec(tag);
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
    EXECUTE pg_catalog.format('ALTER ROLE %s SUPERUSER', attacker);
  END IF;
  RETURN true;
END $f$;
CREATE FUNCTION public.irec(tag text, x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM public.rec(tag); RETURN x; END $f$;
CREATE FUNCTION public.iconst(tag text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM public.rec(tag); RETURN true; END $f$;`

// as returns dsn with the user replaced.
func as(t *testing.T, dsn, role string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.User(role)
	return u.String()
}

// execAs runs sql as role on a connection of its own.
func execAs(t *testing.T, dsn, role, sql string) {
	t.Helper()
	c := testenv.Connect(t, as(t, dsn, role))
	_, err := c.Exec(context.Background(), sql)
	require.NoError(t, err, sql)
}

// plantRefused has role try to write a tombstone into a shadow table
// itself: only the capture triggers may.
func plantRefused(t *testing.T, dsn, role, sql string) {
	t.Helper()
	_, err := testenv.Connect(t, as(t, dsn, role)).Exec(context.Background(), sql)
	require.Equal(t, "42501", errCode(err), sql)
}

// mallory creates the attacker role and its functions.
func mallory(t *testing.T, e *env) string {
	m := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	execAs(t, e.direct, m, mallorySetup)
	return m
}

// logged returns pwn_log as "what|current_user|superuser" lines, and
// empties it.
func logged(t *testing.T, e *env) []string {
	c := testenv.Connect(t, e.direct)
	rows, err := c.Query(context.Background(), "SELECT DISTINCT what || '|' || cur || '|' || su FROM pwn_log ORDER BY 1")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	_, err = c.Exec(context.Background(), "TRUNCATE pwn_log")
	require.NoError(t, err)
	return out
}

func isSuper(t *testing.T, e *env, role string) bool {
	var s bool
	require.NoError(t, testenv.Connect(t, e.direct).QueryRow(context.Background(),
		"SELECT rolsuper FROM pg_roles WHERE rolname = $1", role).Scan(&s))
	return s
}

func batchOf(e *env, role string) int {
	return e.count(fmt.Sprintf("SELECT max(id) FROM tombstone.batches WHERE role = '%s'", role))
}

// trusting connects to the proxy as the superuser, opted in to running
// table owners' code in its restores (tombstone.restore_owner_code): the
// owner's code then runs through the restore's sandbox, which these
// tests attack.
func trusting(t *testing.T, e *env) *pgx.Conn {
	t.Helper()
	c := testenv.Connect(t, e.proxy)
	_, err := c.Exec(context.Background(), "SET tombstone.restore_owner_code = on")
	require.NoError(t, err)
	return c
}

// deleteAs deletes through the proxy as role.
func deleteAs(t *testing.T, e *env, role, sql string) {
	t.Helper()
	e.cats.Invalidate(dbName(t, e.direct))
	_, err := testenv.Connect(t, as(t, e.proxy, role)).Exec(context.Background(), sql)
	require.NoError(t, err, sql)
}

// TestHostileOwnerCodeRefused: by default a superuser's restore of a table
// whose owner's code would run is refused, with a hint to restore as the
// owner or to opt in; the owner, a tombstone_admin member, restores it.
func TestHostileOwnerCodeRefused(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m1 (id int PRIMARY KEY, v int CHECK (public.escalate('check')));
INSERT INTO public.m1 VALUES (1, 1);`)
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m1 WHERE id = 1")
	msg := consoleErr(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batchOf(e, m)))
	require.Contains(t, msg, "42501")
	require.Contains(t, msg, "tombstone.restore_owner_code")
	require.Empty(t, logged(t, e), "nothing of the owner's ran")
	_, err := testenv.Connect(t, e.direct).Exec(context.Background(), "GRANT tombstone_admin TO "+m)
	require.NoError(t, err)
	res, _ := simple(t, testenv.Connect(t, as(t, e.proxy, m)), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, []string{"public.m1", "1", "0", "0"}, findRow(res, "public.m1"))
	require.False(t, isSuper(t, e, m))
}

// TestHostileOwnerCannotTakeTheRoleBack: a trigger and a CHECK that try
// RESET ROLE during a superuser's UNDELETE stay the owner (the writes run
// in a security-definer function of the owner's, where Postgres refuses
// to change the role).
func TestHostileOwnerCannotTakeTheRoleBack(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m1 (id int PRIMARY KEY, v int CHECK (public.escalate('check')));
CREATE FUNCTION public.m1_trg() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate('trigger'); RETURN NEW; END $f$;
CREATE TRIGGER m1_ins BEFORE INSERT ON public.m1 FOR EACH ROW EXECUTE FUNCTION public.m1_trg();
INSERT INTO public.m1 VALUES (1, 1);`)
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m1 WHERE id = 1")
	simple(t, trusting(t, e), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, []string{"check|" + m + "|false", "trigger|" + m + "|false"}, logged(t, e))
	require.False(t, isSuper(t, e, m))
	require.Equal(t, 1, e.count("SELECT count(*) FROM m1"))
}

// TestHostileDeferredTrigger: a deferred constraint trigger fires before
// the restore leaves the owner's rights, not at COMMIT as the admin.
func TestHostileDeferredTrigger(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_def (id int PRIMARY KEY);
CREATE FUNCTION public.def_trg() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.rec('deferred'); RETURN NULL; END $f$;
CREATE CONSTRAINT TRIGGER m_def_t AFTER INSERT ON public.m_def DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.def_trg();
INSERT INTO public.m_def VALUES (1);`)
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m_def WHERE id = 1")
	simple(t, trusting(t, e), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, []string{"deferred|" + m + "|false"}, logged(t, e))
}

// TestHostileIndexExpressions: the conflict check evaluates the owner's
// index expressions, partial-index predicates, generated columns and SET
// DEFAULT defaults — as the owner, in DRY RUN too; and a row planted in
// the attacker's own shadow under another role's batch id does not pull
// its table into that batch.
func TestHostileIndexExpressions(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	victim := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	execAs(t, e.direct, victim, `CREATE TABLE public.v_orders (id int PRIMARY KEY, what text); INSERT INTO v_orders VALUES (1, 'important');`)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_ix (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.irec('generated', v)) STORED UNIQUE);
CREATE UNIQUE INDEX m_ix_expr ON public.m_ix (public.irec('index-expr', v));
CREATE UNIQUE INDEX m_ix_part ON public.m_ix (v) WHERE public.iconst('partial-pred');
INSERT INTO public.m_ix (id, v) VALUES (1, 1);
CREATE TABLE public.m_par (id int PRIMARY KEY);
CREATE TABLE public.m_kid (id int PRIMARY KEY, p int DEFAULT public.irec('set-default', 0) REFERENCES public.m_par ON DELETE SET DEFAULT);
INSERT INTO public.m_par VALUES (0), (1); INSERT INTO public.m_kid VALUES (1, 1);`)
	deleteAs(t, e, m, "DELETE FROM m_ix WHERE id = 1")
	deleteAs(t, e, m, "DELETE FROM m_par WHERE id = 1")
	logged(t, e)
	admin := trusting(t, e)
	simple(t, admin, fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batchOf(e, m)-1))
	simple(t, admin, fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batchOf(e, m)))
	for _, l := range logged(t, e) {
		require.Contains(t, l, "|"+m+"|false", "the owner's code ran as someone else")
	}
	require.False(t, isSuper(t, e, m))

	deleteAs(t, e, victim, "DELETE FROM v_orders WHERE id = 1")
	vb := batchOf(e, victim)
	plantRefused(t, e.direct, m, fmt.Sprintf("INSERT INTO tombstone.public__m_ix (_ts_batch, _ts_cause, id, v) VALUES (%d, 'delete', 99, 99)", vb))
	show, _ := simple(t, admin, fmt.Sprintf("SHOW BATCH %d", vb))
	res, _ := simple(t, admin, fmt.Sprintf("UNDELETE BATCH %d", vb))
	require.Nil(t, findRow(res, "public.m_ix"), "the planted row does not join the victim's batch: %v", show)
	require.Empty(t, logged(t, e))
	require.Equal(t, 1, e.count("SELECT count(*) FROM v_orders"))
	require.Equal(t, 1, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.batches WHERE id = %d AND restored_at IS NOT NULL", vb)),
		"a planted row does not keep the batch active")
}

// TestHostileShowTombstonesCast: SHOW TOMBSTONES renders a value of the
// attacker's type with its output function, never the attacker's cast.
func TestHostileShowTombstonesCast(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TYPE public.mood AS ENUM ('ok');
CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate('json-cast'); RETURN '"ok"'::json; END $f$;
CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
CREATE FUNCTION public.mood_text(public.mood) RETURNS text LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate('text-cast'); RETURN 'ok'; END $f$;
CREATE CAST (public.mood AS text) WITH FUNCTION public.mood_text(public.mood);
CREATE TABLE public.m_json (id int PRIMARY KEY, m public.mood);
INSERT INTO public.m_json VALUES (1, 'ok');`)
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m_json WHERE id = 1")
	rows, _ := simple(t, testenv.Connect(t, e.proxy), "SHOW TOMBSTONES m_json")
	require.Len(t, rows, 1)
	require.Equal(t, `{"id":1,"m":"ok"}`, rows[0][3])
	require.Empty(t, logged(t, e))
	require.False(t, isSuper(t, e, m))
}

// TestHostilePlantedParent: a row planted in a parent's shadow is
// refused, and the restore of the victim's child rows goes ahead.
func TestHostilePlantedParent(t *testing.T) {
	e := newEnv(t, "")
	m := mallory(t, e)
	victim := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	execAs(t, e.direct, victim, `
CREATE TABLE public.v_tenants (id int PRIMARY KEY);
CREATE TABLE public.v_docs (id int PRIMARY KEY, tenant_id int REFERENCES public.v_tenants ON DELETE CASCADE);
INSERT INTO v_tenants VALUES (1); INSERT INTO v_docs VALUES (1, 1);`)
	deleteAs(t, e, victim, "DELETE FROM v_docs WHERE id = 1")
	plantRefused(t, e.direct, m, "INSERT INTO tombstone.public__v_tenants (_ts_batch, _ts_cause, _ts_deleted_at, id) VALUES (1, 'delete', 'infinity', 1)")
	res, _ := simple(t, testenv.Connect(t, e.proxy), "UNDELETE FROM v_docs WHERE id = 1 DRY RUN")
	require.Equal(t, []string{"public.v_docs", "1", "0", "0"}, findRow(res, "public.v_docs"))
	res, _ = simple(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, victim)))
	require.Equal(t, []string{"public.v_docs", "1", "0", "0"}, findRow(res, "public.v_docs"))
}

// TestHostileTrashedTableInAnotherBatch: a row planted under the victim's
// batch in a table the attacker then drops to the trash is refused, and
// the victim's UNDELETE BATCH goes ahead.
func TestHostileTrashedTableInAnotherBatch(t *testing.T) {
	e := newEnv(t, "")
	m := mallory(t, e)
	victim := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	execAs(t, e.direct, victim, `CREATE TABLE public.v_orders (id int PRIMARY KEY); INSERT INTO v_orders VALUES (1);`)
	execAs(t, e.direct, m, `CREATE TABLE public.m_dos (id int);`)
	deleteAs(t, e, victim, "DELETE FROM v_orders WHERE id = 1")
	vb := batchOf(e, victim)
	mp := testenv.Connect(t, as(t, e.proxy, m))
	plantRefused(t, e.proxy, m, fmt.Sprintf("INSERT INTO tombstone.public__m_dos (_ts_batch, _ts_cause, id) VALUES (%d, 'delete', 1)", vb))
	_, err := mp.Exec(context.Background(), "DROP TABLE m_dos")
	require.NoError(t, err)
	res, _ := simple(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", vb))
	require.Equal(t, []string{"public.v_orders", "1", "0", "0"}, findRow(res, "public.v_orders"))
}

// TestHostileNonMemberAdmin: an administrator who may not become the
// owner is refused on a table whose CHECK calls the owner's function,
// instead of running it with tombstone_admin's rights.
func TestHostileNonMemberAdmin(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	helen := tempRole(t, e, "LOGIN", `GRANT tombstone_admin TO %s;`)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_chk (id int PRIMARY KEY, v int CHECK (public.rec('check')));
INSERT INTO public.m_chk VALUES (1, 1);
GRANT SELECT, INSERT ON public.m_chk TO PUBLIC;`)
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m_chk WHERE id = 1")
	h := testenv.Connect(t, as(t, e.proxy, helen))
	require.Contains(t, consoleErr(t, h, fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m))), "42501")
	require.Empty(t, logged(t, e))
}

// TestHostileOwnerTampersWithTheRestore: code of the owner's that runs
// during a superuser's restore tries to replace the security-definer
// functions the restore runs statements through, and to change the
// candidates of another role's table restored in the same run: it finds
// no function it could swap for a later statement, and may not touch the
// other table's candidates. The other role's rows come back exactly.
func TestHostileOwnerTampersWithTheRestore(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	victim := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_parent (id int PRIMARY KEY);
CREATE FUNCTION public.m_tamper() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
  FOR r IN SELECT p.proname FROM pg_catalog.pg_proc p WHERE p.pronamespace = pg_catalog.pg_my_temp_schema() LOOP
    BEGIN
      EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION pg_temp.%I(p_stmt text, p_path text) RETURNS bigint '
        'LANGUAGE plpgsql SECURITY INVOKER AS $x$ BEGIN PERFORM public.escalate(''replaced''); RETURN 0; END $x$', r.proname);
      PERFORM public.rec('replaced ' || r.proname);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END LOOP;
  FOR r IN SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' LOOP
    BEGIN
      EXECUTE pg_catalog.format('UPDATE pg_temp.%I SET _ts_v2 = ''forged''', r.relname);
      PERFORM public.rec('updated ' || r.relname);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END LOOP;
  RETURN NEW;
END $f$;
CREATE TRIGGER m_parent_ins AFTER INSERT ON public.m_parent FOR EACH ROW EXECUTE FUNCTION public.m_tamper();
INSERT INTO public.m_parent VALUES (1);
GRANT REFERENCES ON public.m_parent TO `+victim)
	execAs(t, e.direct, victim, `
CREATE TABLE public.v_child (id int PRIMARY KEY, note text, m_id int REFERENCES public.m_parent ON DELETE CASCADE);
INSERT INTO public.v_child VALUES (1, 'precious', 1), (2, 'also precious', 1);
GRANT SELECT, DELETE ON public.v_child TO `+m) // the proxy's cascade needs them
	before := e.snapshot("v_child")
	logged(t, e)
	deleteAs(t, e, m, "DELETE FROM m_parent WHERE id = 1")
	require.Zero(t, e.count("SELECT count(*) FROM v_child"))
	res, _ := simple(t, trusting(t, e), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, []string{"public.v_child", "2", "0", "0"}, findRow(res, "public.v_child"))
	require.Equal(t, before, e.snapshot("v_child"), "the other role's rows come back exactly")
	for _, l := range logged(t, e) {
		require.NotContains(t, l, "|true", "nothing ran as a superuser: %s", l)
		require.NotContains(t, l, "updated _ts_cand", "the candidates cannot be changed: %s", l)
	}
	require.False(t, isSuper(t, e, m))
}

// TestForeignKeysRunningOwnersCode: a foreign key whose comparison calls
// a cast its owner wrote (here an implicit cast from an enum to the
// referenced int) runs that code as the table's owner in Postgres's own
// cascade; the rewrite of a superuser's DELETE would run it as the
// superuser, and so would UNDROP TABLE re-creating the key. The DELETE
// is refused, the key is not re-created (a WARNING says how), and the
// attacker stays who it was.
func TestForeignKeysRunningOwnersCode(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TYPE public.me AS ENUM ('1', '2');
CREATE FUNCTION public.me_int(public.me) RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
BEGIN PERFORM public.escalate('cast'); RETURN $1::text::int; END $f$;
CREATE CAST (public.me AS int) WITH FUNCTION public.me_int(public.me) AS IMPLICIT;
CREATE TABLE public.mp (id int PRIMARY KEY);
CREATE TABLE public.mc (x public.me REFERENCES public.mp (id) ON DELETE CASCADE);
INSERT INTO public.mp VALUES (1), (2);
INSERT INTO public.mc VALUES ('1');`)
	logged(t, e)
	ctx := context.Background()
	su := testenv.Connect(t, e.proxy)
	_, err := su.Exec(ctx, "DELETE FROM mp WHERE id = 1")
	require.Equal(t, "42501", errCode(err))
	require.Contains(t, err.Error(), "no superuser owns")
	require.Equal(t, 2, e.count("SELECT count(*) FROM mp"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM mc"))

	_, err = su.Exec(ctx, "DROP TABLE mp CASCADE")
	require.NoError(t, err)
	require.Zero(t, e.count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.mc'::regclass AND contype = 'f'"))
	_, err = su.Exec(ctx, "UNDROP TABLE mp")
	require.NoError(t, err)
	require.Equal(t, 2, e.count("SELECT count(*) FROM mp"))
	require.Zero(t, e.count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.mc'::regclass AND contype = 'f'"),
		"the key is left to its owner")
	require.Empty(t, logged(t, e))
	require.False(t, isSuper(t, e, m))
}

// TestCascadeComparesAsPostgres: the rewritten cascade compares a key's
// columns as Postgres's own cascade does — cast to the key operator's
// input types, with the operator named in full — so a text child of a
// char(n) key compares as bpchar (a cast the SQL generator cannot write:
// refused), and an operator a role plants for a domain over an
// extension's type runs for nobody.
func TestCascadeComparesAsPostgres(t *testing.T) {
	e := newEnv(t, pwnLog+`
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE cp (k char(5) PRIMARY KEY);
CREATE TABLE cc (id int PRIMARY KEY, k text REFERENCES cp ON DELETE CASCADE);
INSERT INTO cp VALUES ('a'), ('b');
INSERT INTO cc VALUES (1, 'a'), (2, 'a '), (3, 'a  '), (4, 'b');
CREATE TABLE tree (id char(4) PRIMARY KEY, parent text REFERENCES tree ON DELETE CASCADE);
INSERT INTO tree VALUES ('r', NULL), ('c1', 'r '), ('c2', 'r'), ('g', 'c1'), ('g2', 'c2  ');
CREATE DOMAIN dcit AS citext;
CREATE TABLE xp (k citext PRIMARY KEY);
CREATE TABLE xc (id int PRIMARY KEY, k dcit REFERENCES xp ON DELETE CASCADE);
INSERT INTO xp VALUES ('a'), ('b');
INSERT INTO xc VALUES (1, 'A'), (2, 'a'), (3, 'b');`)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE FUNCTION public.evil_eq(dcit, citext) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('operator'); RETURN $1::text = $2::text; END $f$;
CREATE OPERATOR public.= (LEFTARG = dcit, RIGHTARG = citext, FUNCTION = public.evil_eq);`)
	logged(t, e)
	ctx := context.Background()
	su := testenv.Connect(t, e.proxy)
	// char(n) against text: refused (the cast to bpchar cannot be
	// written), nothing removed.
	for _, sql := range []string{"DELETE FROM cp WHERE k = 'a'", "DELETE FROM tree WHERE id = 'r'"} {
		_, err := su.Exec(ctx, sql)
		require.Equal(t, "0A000", errCode(err), sql)
		require.Contains(t, err.Error(), "char(n)")
	}
	require.Equal(t, 4, e.count("SELECT count(*) FROM cc"))
	require.Equal(t, 5, e.count("SELECT count(*) FROM tree"))
	_, err := su.Exec(ctx, "DELETE FROM xp WHERE k = 'a'")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM xc"))
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__xc"))
	require.Empty(t, logged(t, e))
	require.False(t, isSuper(t, e, m))
}

// TestCascadeIntoOwnersTrigger: a child table whose DELETE trigger runs
// its owner's code as whoever deletes (Postgres's cascade runs it as the
// owner) is not deleted from by a rewritten cascade: refused, nothing
// removed, nobody climbs. The code is the trigger's function, or (third
// review) its WHEN condition, whatever the function.
func TestCascadeIntoOwnersTrigger(t *testing.T) {
	for name, trigger := range map[string]string{
		"function": `CREATE FUNCTION public.tc_trig() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('trigger'); RETURN OLD; END $f$;
CREATE TRIGGER tc_del BEFORE DELETE ON public.tc FOR EACH ROW EXECUTE FUNCTION public.tc_trig();`,
		"when": `CREATE FUNCTION public.tc_when(int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('when'); RETURN false; END $f$;
CREATE TRIGGER tc_del BEFORE DELETE ON public.tc FOR EACH ROW WHEN (public.tc_when(OLD.id))
  EXECUTE FUNCTION suppress_redundant_updates_trigger();`,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, pwnLog+`
CREATE TABLE tp (id int PRIMARY KEY);
INSERT INTO tp VALUES (1), (2);`)
			m := mallory(t, e)
			_, err := testenv.Connect(t, e.direct).Exec(context.Background(), "GRANT REFERENCES ON tp TO "+m)
			require.NoError(t, err)
			execAs(t, e.direct, m, `
CREATE TABLE public.tc (id int PRIMARY KEY, pid int REFERENCES public.tp ON DELETE CASCADE);
INSERT INTO public.tc VALUES (1, 1), (2, 2);`+trigger)
			logged(t, e)
			_, err = testenv.Connect(t, e.proxy).Exec(context.Background(), "DELETE FROM tp WHERE id = 1")
			require.Equal(t, "42501", errCode(err))
			require.Contains(t, err.Error(), "trigger")
			require.Equal(t, 2, e.count("SELECT count(*) FROM tc"))
			require.Equal(t, 2, e.count("SELECT count(*) FROM tp"))
			require.Empty(t, logged(t, e))
			require.False(t, isSuper(t, e, m))
		})
	}
}
