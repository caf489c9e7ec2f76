-- functions_check.sql: applied after every other functions_*.sql file,
-- it changes nothing and fails the install when a function of the
-- tombstone schema runs without the fixed search_path — each
-- CREATE FUNCTION carries its own SET search_path = pg_catalog,
-- tombstone, pg_temp, so that no object a role creates in a schema on
-- the caller's path (a public.unnest(text[]) overload, say) can stand in
-- for a built-in while an administrator or the installer runs our code.
-- (Those that build statements and EXECUTE them, or whose own text holds
-- a backslash, also SET standard_conforming_strings = on, so that what
-- they run lexes as the console or the CLI validated it whatever the
-- caller's session says; the others read alike under either setting and
-- keep one GUC less to save and restore per call. TestFunctionsPinSettings
-- checks that from the files' text.)
-- capture_truncate and trash_tables resolve the user's table names as the
-- user's statement would through tombstone._resolve_as, under the caller's
-- search_path passed as the default of their last argument.
DO $$
DECLARE
    unpinned text;
BEGIN
    SELECT pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::pg_catalog.text, ', '
                                 ORDER BY p.oid::pg_catalog.regprocedure::pg_catalog.text)
      INTO unpinned
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace OPERATOR(pg_catalog.=) 'tombstone'::pg_catalog.regnamespace
       AND NOT coalesce('search_path=pg_catalog, tombstone, pg_temp' OPERATOR(pg_catalog.=) ANY (p.proconfig), false);
    IF unpinned IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42P13',
            MESSAGE = pg_catalog.format('tombstone: functions without the fixed search_path: %s', unpinned),
            HINT = 'Give each one SET search_path = pg_catalog, tombstone, pg_temp in its CREATE FUNCTION.';
    END IF;
END
$$;
