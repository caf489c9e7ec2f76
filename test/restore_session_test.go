package test

// The owner's code runs in the restoring administrator's own session: a
// second review made it empty the session's temporary schema (DISCARD
// TEMP) and rebuild the restore's tables with contents of its choosing,
// plant a type named like a built-in for the console's next command,
// and leave settings behind. Each test failed on the code it reviewed.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// tryConsole runs a console command through the proxy and returns its
// SQLSTATE ("" when it succeeded).
func tryConsole(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	_, err := c.PgConn().Exec(context.Background(), sql).ReadAll()
	if err == nil {
		return ""
	}
	return pgErrOf(t, err).Code
}

// hijackSetup: a BEFORE INSERT trigger defers mallory's constraint
// trigger (SET CONSTRAINTS ALL DEFERRED), so it fires at the SECDEF
// wrapper's SET CONSTRAINTS ALL IMMEDIATE, after the INSERT statement has
// closed its relations. There it DISCARD TEMPs the admin's session
// (dropping the restore's candidate and scratch tables, which it does not
// own) and recreates them, owned by mallory, with contents of its choice.
// __CTID__ is the type of mallory's own candidates' _ts_ctid column.
// __FORGE__ fills the other tables' candidates.
const hijackSetup = `
CREATE TYPE public.mtid AS (t tid);
CREATE FUNCTION public.mtid_tid(public.mtid) RETURNS tid LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('step4-cast'); RETURN $1.t; END $f$;
CREATE CAST (public.mtid AS tid) WITH FUNCTION public.mtid_tid(public.mtid) AS IMPLICIT;
CREATE FUNCTION public.defer_all() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN SET CONSTRAINTS ALL DEFERRED; RETURN NEW; END $f$;
CREATE FUNCTION public.hijack() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE r record; defs text[] := '{}'; d text; own text := '_ts_cand_' || TG_RELID;
BEGIN
  PERFORM public.rec('hijack');
  FOR r IN SELECT c.relname, pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname,
              CASE WHEN a.attname = '_ts_ctid' AND c.relname = own THEN '__CTID__'
                   ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END), ', ' ORDER BY a.attnum) AS cols
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' GROUP BY c.relname
  LOOP
    defs := defs || pg_catalog.format('CREATE TEMP TABLE %I (%s)', r.relname, r.cols);
  END LOOP;
  DISCARD TEMP;
  FOREACH d IN ARRAY defs LOOP EXECUTE d; END LOOP;
  FOR r IN SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' LOOP
    EXECUTE pg_catalog.format('GRANT ALL ON pg_temp.%I TO PUBLIC', r.relname);
    PERFORM public.rec('recreated ' || r.relname);
  END LOOP;
  EXECUTE pg_catalog.format('INSERT INTO pg_temp.%I (_ts_ctid, _ts_state) VALUES (__OWNVAL__, ''restore'')', own);
  FOR r IN SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
              AND c.relkind = 'r' AND c.relname LIKE '\_ts\_cand\_%' AND c.relname <> own LOOP
    __FORGE__
  END LOOP;
  RETURN NULL;
END $f$;`

func hijackTable(table string) string {
	return fmt.Sprintf(`
CREATE TRIGGER a_defer BEFORE INSERT ON public.%[1]s FOR EACH ROW EXECUTE FUNCTION public.defer_all();
CREATE CONSTRAINT TRIGGER z_hijack AFTER INSERT ON public.%[1]s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.hijack();`, table)
}

// TestSessionDiscardTempEscalates: mallory's own table only. A superuser's
// UNDELETE BATCH of mallory's batch makes mallory a superuser: the
// restore's step 4 reads mallory's recreated candidate table, whose
// _ts_ctid has mallory's type with an implicit cast to tid; the cast runs
// as the restoring superuser.
func TestSessionDiscardTempEscalates(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, strings.NewReplacer("__CTID__", "public.mtid", "__OWNVAL__", "ROW(''(0,0)'')", "__FORGE__", "NULL;").Replace(hijackSetup)+`
CREATE TABLE public.m_t (id int PRIMARY KEY);
INSERT INTO public.m_t VALUES (1);`+hijackTable("m_t"))
	deleteAs(t, e, m, "DELETE FROM m_t WHERE id = 1")
	logged(t, e)
	require.False(t, isSuper(t, e, m))
	require.Equal(t, "42501", tryConsole(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m))))
	requireNobodyClimbed(t, e, m, "mallory's trigger")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__m_t"), "refused: the tombstone stays")
}

// TestSessionDiscardTempForgesVictim: the victim's child table cascades
// from mallory's parent (the existing hostile test's setup). A
// superuser's UNDELETE BATCH of mallory's batch inserts a row mallory
// chose into the victim's table and deletes the victim's unrelated
// tombstones from the store.
func TestSessionDiscardTempForgesVictim(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	victim := tempRole(t, e, "LOGIN", `GRANT CREATE ON SCHEMA public TO %s;`)
	forge := `EXECUTE pg_catalog.format('INSERT INTO pg_temp.%I (_ts_ctid, _ts_state, _ts_v1, _ts_v2) VALUES (''(0,0)'', ''restore'', 4242, ''forged by mallory'')', r.relname);
    EXECUTE pg_catalog.format('INSERT INTO pg_temp.%I (_ts_ctid, _ts_state) SELECT pg_catalog.format(''(%%s,%%s)'', p, i)::tid, ''linked'' FROM generate_series(0, 9) p, generate_series(1, 300) i', r.relname);`
	execAs(t, e.direct, m, strings.NewReplacer("__CTID__", "tid", "__OWNVAL__", "''(0,0)''", "__FORGE__", forge).Replace(hijackSetup)+`
CREATE TABLE public.m_parent (id int PRIMARY KEY);
INSERT INTO public.m_parent VALUES (1);
GRANT REFERENCES ON public.m_parent TO `+victim+`;`+hijackTable("m_parent"))
	execAs(t, e.direct, victim, `
CREATE TABLE public.v_child (id int PRIMARY KEY, note text, m_id int REFERENCES public.m_parent ON DELETE CASCADE);
INSERT INTO public.v_child VALUES (1, 'precious', 1), (2, 'also precious', 1), (10, 'deleted by victim', NULL), (11, 'deleted by victim', NULL);
GRANT SELECT, DELETE ON public.v_child TO `+m)
	deleteAs(t, e, victim, "DELETE FROM v_child WHERE id IN (10, 11)")
	deleteAs(t, e, m, "DELETE FROM m_parent WHERE id = 1")
	require.Equal(t, 4, e.count("SELECT count(*) FROM tombstone.public__v_child"))
	logged(t, e)
	require.Equal(t, "42501", tryConsole(t, testenv.Connect(t, e.proxy), fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m))))
	require.Zero(t, e.count("SELECT count(*) FROM v_child WHERE id = 4242"), "forged row inserted into the victim's table")
	require.Equal(t, 4, e.count("SELECT count(*) FROM tombstone.public__v_child"), "refused: every tombstone of the victim stays")
}

// TestSessionPlantedTempType: mallory's index expression, evaluated as
// mallory during a superuser's UNDELETE BATCH … DRY RUN, creates a domain
// pg_temp.regclass in the admin's session. pg_temp is searched first for
// types, so the console's next '…'::regclass (SHOW BATCHES FOR t, UNDELETE
// FROM t) runs mallory's CHECK as the superuser.
func TestSessionPlantedTempType(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE FUNCTION public.plant_v() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  IF pg_catalog.to_regtype('pg_temp.regclass') IS NULL THEN
    EXECUTE 'CREATE DOMAIN pg_temp.regclass AS pg_catalog.regclass CHECK (public.escalate(''temp-domain''))';
    PERFORM public.rec('planted');
  END IF;
EXCEPTION WHEN OTHERS THEN PERFORM public.rec('plant failed: ' || SQLERRM);
END $f$;
CREATE FUNCTION public.plant(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM public.plant_v(); RETURN x; END $f$;
CREATE TABLE public.m_p (id int PRIMARY KEY, v int);
CREATE UNIQUE INDEX m_p_x ON public.m_p (public.plant(v));
INSERT INTO public.m_p VALUES (1, 1);`)
	deleteAs(t, e, m, "DELETE FROM m_p WHERE id = 1")
	logged(t, e)
	admin := testenv.Connect(t, e.proxy)
	require.Equal(t, "42501", tryConsole(t, admin, fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batchOf(e, m))))
	res, _ := simple(t, admin, "SHOW BATCHES FOR m_p")
	require.Len(t, res, 1)
	require.Empty(t, logged(t, e), "the planted type is gone with the refused restore")
	require.False(t, isSuper(t, e, m), "mallory became a superuser")
}

// TestSessionNonMemberNestedDomains: tombstone._runs_code looks at the
// constraints of a column's own domain only, not of an array of a domain
// or of the domain a domain is based on: the restore inserts the shadow's
// base values, which Postgres coerces to the domain (array), running the
// CHECK — here as the non-member administrator itself.
func TestSessionNonMemberNestedDomains(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	helen := tempRole(t, e, "LOGIN", `GRANT tombstone_admin TO %s;`)
	execAs(t, e.direct, m, `
CREATE DOMAIN public.d_chk AS int CHECK (public.rec('array-of-domain'));
CREATE DOMAIN public.d_inner AS int CHECK (public.rec('domain-over-domain'));
CREATE DOMAIN public.d_outer AS public.d_inner;
CREATE TABLE public.m_arr (id int PRIMARY KEY, a public.d_chk[], b public.d_outer);
INSERT INTO public.m_arr VALUES (1, '{1}', 1);
GRANT SELECT, INSERT ON public.m_arr TO PUBLIC;`)
	deleteAs(t, e, m, "DELETE FROM m_arr WHERE id = 1")
	logged(t, e)
	h := testenv.Connect(t, as(t, e.proxy, helen))
	require.Equal(t, "42501", tryConsole(t, h, fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m))))
	require.Empty(t, logged(t, e), "mallory's CHECK ran as the non-member admin")
}

// TestSessionSettingsLeftBehind: owner code leaves session-level settings in the
// admin's session after the restore (a function's SET clause restores
// only the settings it names).
func TestSessionSettingsLeftBehind(t *testing.T) {
	e := newEnv(t, pwnLog)
	m := mallory(t, e)
	execAs(t, e.direct, m, `
CREATE TABLE public.m_g (id int PRIMARY KEY);
CREATE FUNCTION public.m_g_trg() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN SET default_transaction_read_only = on; SET statement_timeout = '1ms'; RETURN NEW; END $f$;
CREATE TRIGGER m_g_t BEFORE INSERT ON public.m_g FOR EACH ROW EXECUTE FUNCTION public.m_g_trg();
INSERT INTO public.m_g VALUES (1);`)
	deleteAs(t, e, m, "DELETE FROM m_g WHERE id = 1")
	admin := testenv.Connect(t, e.proxy)
	require.Equal(t, "42501", tryConsole(t, admin, fmt.Sprintf("UNDELETE BATCH %d", batchOf(e, m))))
	res, _ := simple(t, admin, "SELECT current_setting('default_transaction_read_only') || ' ' || current_setting('statement_timeout')")
	require.Equal(t, "off 0", res[0][0])
}
