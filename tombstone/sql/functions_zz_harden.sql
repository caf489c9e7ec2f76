-- Applied last, and the one place that sets it: every function of the
-- tombstone schema runs with a fixed search_path, so that no object a role creates in a schema on the
-- caller's path (a public.unnest(text[]) overload, say) can stand in for a
-- built-in while an administrator or the installer runs our code; and
-- those that build statements and EXECUTE them with
-- standard_conforming_strings on, so that a WHERE condition they run
-- (validated by the console or the CLI, whose parser treats backslashes
-- in strings as Postgres does by default) lexes as it was validated
-- whatever the caller's session says; so are those whose own text holds
-- a backslash (a regular expression), which the caller's setting would
-- read otherwise. The others read alike under either setting and keep
-- one GUC less to save and restore per call.
-- capture_truncate and trash_tables resolve the user's table names as the
-- user's statement would through tombstone._resolve_as, under the caller's
-- search_path passed as the default of their last argument.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS sig, p.prokind,
               p.prosrc OPERATOR(pg_catalog.~*) 'EXECUTE'
               OR pg_catalog.strpos(p.prosrc, pg_catalog.chr(92)) OPERATOR(pg_catalog.>) 0 AS dynamic
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'tombstone'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('ALTER %s %s SET search_path = pg_catalog, tombstone, pg_temp',
                                  CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
        IF f.dynamic THEN
            EXECUTE pg_catalog.format('ALTER %s %s SET standard_conforming_strings = on',
                                      CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
        ELSE
            EXECUTE pg_catalog.format('ALTER %s %s RESET standard_conforming_strings',
                                      CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
        END IF;
    END LOOP;
END
$$;
