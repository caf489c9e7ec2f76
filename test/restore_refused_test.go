package test

// A third review got out of the restore's sandbox (the session
// fingerprint) through state no fingerprint sees. Each test asserts the
// secure behaviour; each failed on the reviewed commit (ba33a4b) and
// passes because an administrator's restore now refuses to run a table
// owner's code at all (tombstone._check_owner_code) unless opted in.

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// TestDefaultRefusesRedeferEscapesWrapper: a deferred constraint trigger of
// mallory's fires inside the wrapper's SET CONSTRAINTS ALL IMMEDIATE; there
// it runs SET CONSTRAINTS ALL DEFERRED (transaction state, not a setting:
// the fingerprint does not see it) and queues another deferred event,
// which the IMMEDIATE loop no longer fires. It fires at COMMIT, as the
// restoring superuser.
func TestDefaultRefusesRedeferEscapesWrapper(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_q (x int);
CREATE FUNCTION public.t2() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM public.escalate('t2-at-commit');
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AND (SELECT count(*) FROM public.m_q) < 50 THEN
    SET CONSTRAINTS ALL DEFERRED; INSERT INTO public.m_q VALUES (1);  -- survive any later wrapper
  END IF;
  RETURN NULL;
END $f$;
CREATE CONSTRAINT TRIGGER t2 AFTER INSERT ON public.m_q DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.t2();
CREATE FUNCTION public.defer_all() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN SET CONSTRAINTS ALL DEFERRED; RETURN NEW; END $f$;
CREATE FUNCTION public.t1() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN SET CONSTRAINTS ALL DEFERRED; INSERT INTO public.m_q VALUES (1); RETURN NULL; END $f$;
CREATE TABLE public.m_t (id int PRIMARY KEY);
CREATE TRIGGER a_defer BEFORE INSERT ON public.m_t FOR EACH ROW EXECUTE FUNCTION public.defer_all();
CREATE CONSTRAINT TRIGGER z_t1 AFTER INSERT ON public.m_t DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.t1();
INSERT INTO public.m_t VALUES (1);`)
	deleteAs(t, e, m, "DELETE FROM m_t WHERE id = 1")
	logged(t, e)
	code := tryConsole(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, "42501", code, "refused: mallory's trigger would run in the admin's restore")
	requireNobodyClimbed(t, e, m, "mallory's trigger")
}

// TestDefaultRefusesPreparedStatementSwap: prepared statements are session state
// the fingerprint does not cover, and not transactional (a refused,
// rolled-back restore keeps them). mallory's trigger replaces the admin
// client's cached prepared statement (pgx's stmtcache_…); the client's
// next execution of it runs mallory's query as the superuser.
func TestDefaultRefusesPreparedStatementSwap(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_ps (id int PRIMARY KEY);
CREATE FUNCTION public.swap() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
  FOR r IN SELECT name, statement, parameter_types FROM pg_catalog.pg_prepared_statements LOOP
    EXECUTE pg_catalog.format('DEALLOCATE %I', r.name);
    EXECUTE pg_catalog.format('PREPARE %I%s AS SELECT * FROM (%s) _q WHERE public.escalate(''prepared'')', r.name,
      CASE WHEN cardinality(r.parameter_types) > 0 THEN '(' || pg_catalog.array_to_string(r.parameter_types::text[], ',') || ')' ELSE '' END,
      r.statement);
    PERFORM public.rec('swapped ' || r.name);
  END LOOP;
  RETURN NEW;
END $f$;
CREATE TRIGGER m_ps_t BEFORE INSERT ON public.m_ps FOR EACH ROW EXECUTE FUNCTION public.swap();
INSERT INTO public.m_ps VALUES (1);`)
	deleteAs(t, e, m, "DELETE FROM m_ps WHERE id = 1")
	logged(t, e)
	ctx := context.Background()
	admin := testenv.Connect(t, e.proxy) // pgx default mode: cached, named prepared statements
	const q = "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = $1"
	var n int
	require.NoError(t, admin.QueryRow(ctx, q, "pg_class").Scan(&n)) // prepared (stmtcache_…)
	code := tryConsole(t, admin, fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, "42501", code, "refused: mallory's trigger would run in the admin's restore")
	require.NoError(t, admin.QueryRow(ctx, q, "pg_class").Scan(&n), "the admin's next use of its own statement")
	requireNobodyClimbed(t, e, m, "mallory's statement")
}

// TestDefaultRefusesUserCastInMarkSkipped: _mark_skipped compares a child's
// stored key with its parent's as the administrator itself (not through
// _owned). mallory's FK column has mallory's composite type with an
// implicit cast to int (FKs accept that): the cast runs as the superuser.
// DRY RUN suffices.
func TestDefaultRefusesUserCastInMarkSkipped(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TYPE public.mc AS (v int);
CREATE FUNCTION public.mc_int(public.mc) RETURNS int LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('fk-cast'); RETURN ($1).v; END $f$;
CREATE CAST (public.mc AS int) WITH FUNCTION public.mc_int(public.mc) AS IMPLICIT;
CREATE TABLE public.m_par (id int PRIMARY KEY);
CREATE TABLE public.m_kid (id int PRIMARY KEY, p public.mc REFERENCES public.m_par (id));
INSERT INTO public.m_par VALUES (1); INSERT INTO public.m_kid VALUES (1, ROW(1));`)
	deleteAs(t, e, m, "DELETE FROM m_kid WHERE id = 1")
	logged(t, e)
	code := tryConsole(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batchOf(e, m)))
	require.Equal(t, "42501", code, "refused: mallory's cast would run in the admin's restore")
	requireNobodyClimbed(t, e, m, "mallory's cast")
}

// TestDefaultRefusesLeftovers: session state the fingerprint does not cover,
// left behind by a restore that succeeds: a custom setting (placeholders
// are not in pg_settings), a session-level advisory lock (kept even by a
// rollback), a LISTEN, a WITH HOLD cursor.
func TestDefaultRefusesLeftovers(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_lo (id int PRIMARY KEY);
CREATE FUNCTION public.leave() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM pg_catalog.set_config('app.tenant_id', '666', false);
  PERFORM pg_catalog.pg_advisory_lock(4343);
  LISTEN mallory_chan;
  BEGIN EXECUTE 'DECLARE mal_cur CURSOR WITH HOLD FOR SELECT public.rec(''cursor'') FROM pg_catalog.generate_series(1, 3)';
  EXCEPTION WHEN OTHERS THEN PERFORM public.rec('cursor failed: ' || SQLERRM); END;
  RETURN NEW;
END $f$;
CREATE TRIGGER m_lo_t BEFORE INSERT ON public.m_lo FOR EACH ROW EXECUTE FUNCTION public.leave();
ALTER TABLE public.m_lo DISABLE TRIGGER m_lo_t; INSERT INTO public.m_lo VALUES (1); ALTER TABLE public.m_lo ENABLE TRIGGER m_lo_t;`)
	deleteAs(t, e, m, "DELETE FROM m_lo WHERE id = 1")
	logged(t, e)
	admin := testenv.Connect(t, e.proxy)
	code := tryConsole(t, admin, fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	res, _ := simple(t, admin, `SELECT coalesce(current_setting('app.tenant_id', true), '<unset>'),
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::text,
  (SELECT string_agg(c, ',') FROM pg_listening_channels() c),
  (SELECT string_agg(name, ',') FROM pg_cursors)`)
	t.Logf("UNDELETE sqlstate=%q; admin session after: setting=%s advisory_locks=%s listening=%s cursors=%s; log=%v",
		code, res[0][0], res[0][1], res[0][2], res[0][3], logged(t, e))
	require.NotEqual(t, "", code, "the restore should have been refused")
	require.Equal(t, "<unset>", res[0][0])
	require.Equal(t, "0", res[0][1])
}

// TestDefaultRefusesHoldCursor: a WITH HOLD cursor declared by mallory's trigger
// inside the wrapper is materialized at COMMIT, outside the wrapper: its
// query runs with the restoring superuser's rights.
func TestDefaultRefusesHoldCursor(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_cur (id int PRIMARY KEY);
CREATE FUNCTION public.cur() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE 'DECLARE mal_cur CURSOR WITH HOLD FOR SELECT public.escalate(''hold-cursor'') FROM pg_catalog.generate_series(1, 1)';
  RETURN NEW;
END $f$;
INSERT INTO public.m_cur VALUES (1);
CREATE TRIGGER m_cur_t BEFORE INSERT ON public.m_cur FOR EACH ROW EXECUTE FUNCTION public.cur();`)
	deleteAs(t, e, m, "DELETE FROM m_cur WHERE id = 1")
	logged(t, e)
	code := tryConsole(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m)))
	require.Equal(t, "42501", code, "refused: mallory's cursor would run in the admin's restore")
	requireNobodyClimbed(t, e, m, "mallory's cursor")
}

var _ = pgx.ErrNoRows

// requireNobodyClimbed checks, after a restore that ran or refused to run
// mallory's code, that none of it ran as a superuser (pwn_log) and that
// mallory did not become one.
func requireNobodyClimbed(t *testing.T, e *env, m, what string) {
	t.Helper()
	for _, l := range logged(t, e) {
		require.NotContains(t, l, "|true", "%s ran as a superuser: %s", what, l)
	}
	require.False(t, isSuper(t, e, m), "mallory became a superuser")
}
