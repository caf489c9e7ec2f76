-- functions_audit.sql: the admin audit trail (SHOW AUDIT) and FREEZE /
-- THAW DELETES. Re-runnable, like every functions_*.sql file.

-- _audit records an admin action that is taking effect, in the calling
-- action's own transaction: if the action fails, its row goes with it.
-- Who and from where come from the session, never from the caller:
-- session_user (the login role), the SET ROLE in force, the client
-- address and application_name. SECURITY DEFINER, because nobody but the
-- store's owner writes tombstone.audit; EXECUTE for tombstone_admin only,
-- so an administrator can add rows in their own name but change none.
CREATE OR REPLACE FUNCTION tombstone._audit(p_command text, p_args jsonb, p_result jsonb) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    INSERT INTO tombstone.audit (actor, set_role, client_addr, application, command, args, result)
    VALUES (session_user, NULLIF(pg_catalog.current_setting('role'), 'none'), pg_catalog.inet_client_addr(),
            pg_catalog.current_setting('application_name'), p_command, coalesce(p_args, '{}'), p_result);
END
$$;
REVOKE ALL ON FUNCTION tombstone._audit(text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._audit(text, jsonb, jsonb) TO tombstone_admin;

-- show_audit is SHOW AUDIT: the newest p_limit actions first.
CREATE OR REPLACE FUNCTION tombstone.show_audit(p_limit bigint DEFAULT 50)
RETURNS TABLE (id bigint, at timestamptz, actor name, set_role name, client_addr inet, application text,
               command text, args jsonb, result jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    PERFORM tombstone._require_admin();
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'tombstone: SHOW AUDIT LIMIT must be positive';
    END IF;
    RETURN QUERY SELECT a.id, a.at, a.actor, a.set_role, a.client_addr, a.application, a.command, a.args, a.result
                   FROM tombstone.audit a ORDER BY a.id DESC LIMIT p_limit;
END
$$;

-- _frozen is the freeze in force ({"by", "at"}), or NULL. Read in the
-- statement's snapshot, which under READ COMMITTED sees every freeze
-- committed before the statement began; a REPEATABLE READ or
-- SERIALIZABLE transaction's snapshot may be older than a freeze, so
-- there the row (always there: 009_audit) is also locked FOR KEY SHARE,
-- which fails with a serialization error (40001) when a FREEZE changed
-- it since — retried, the transaction sees it. SECURITY DEFINER: the
-- lock needs a privilege on settings that application roles lack.
CREATE OR REPLACE FUNCTION tombstone._frozen() RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    f jsonb;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') = 'read committed' THEN
        SELECT st.value INTO f FROM tombstone.settings st WHERE st.key = 'deletes.frozen';
    ELSE
        SELECT st.value INTO f FROM tombstone.settings st WHERE st.key = 'deletes.frozen' FOR KEY SHARE;
    END IF;
    RETURN NULLIF(f, 'null');
END
$$;

-- _refuse_frozen raises TS020 while deletes are frozen (_frozen): the
-- statement that would remove rows of a protected table fails, and with
-- it everything it did.
DROP FUNCTION IF EXISTS tombstone._refuse_frozen(jsonb);
CREATE OR REPLACE FUNCTION tombstone._refuse_frozen() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    f jsonb := tombstone._frozen();
BEGIN
    IF f IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'TS020',
            MESSAGE = pg_catalog.format('tombstone: deletes are frozen (FREEZE DELETES by %s at %s)',
                                        f ->> 'by', f ->> 'at'),
            HINT = 'Nothing was removed. Reads and other writes go on; an administrator ends the freeze with THAW DELETES (or tombstone thaw).';
    END IF;
END
$$;

-- _write_freeze sets or clears the freeze and returns the one before:
-- the row is always there ('null' when thawed) and locked, so two
-- FREEZEs at once keep the first one's author, and an UPDATE is what a
-- REPEATABLE READ transaction's _frozen notices. SECURITY DEFINER, for
-- tombstone_admin only: administrators do not write tombstone.settings
-- themselves (functions_privileges.sql).
CREATE OR REPLACE FUNCTION tombstone._write_freeze(p_frozen boolean) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    before jsonb;
BEGIN
    INSERT INTO tombstone.settings (key, value) VALUES ('deletes.frozen', 'null') ON CONFLICT (key) DO NOTHING;
    SELECT NULLIF(st.value, 'null') INTO before FROM tombstone.settings st WHERE st.key = 'deletes.frozen' FOR UPDATE;
    IF p_frozen AND before IS NULL THEN
        UPDATE tombstone.settings st
           SET value = pg_catalog.jsonb_build_object('by', session_user, 'at', pg_catalog.statement_timestamp()),
               updated_at = pg_catalog.statement_timestamp()
         WHERE st.key = 'deletes.frozen';
    ELSIF NOT p_frozen AND before IS NOT NULL THEN
        UPDATE tombstone.settings st SET value = 'null', updated_at = pg_catalog.statement_timestamp()
         WHERE st.key = 'deletes.frozen';
    END IF;
    IF (before IS NULL) = p_frozen THEN
        -- The proxies load their catalogs again: their metrics show it.
        PERFORM pg_catalog.pg_notify('tombstone_catalog', 'freeze');
    END IF;
    RETURN before;
END
$$;
REVOKE ALL ON FUNCTION tombstone._write_freeze(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tombstone._write_freeze(boolean) TO tombstone_admin;

-- set_deletes_frozen is FREEZE DELETES / THAW DELETES. The freeze lives
-- in tombstone.settings ('deletes.frozen'), in the database every proxy
-- and the CLI use, so it holds for all of them from the moment it
-- commits, and for proxies started later: the batch row every captured
-- DELETE and TRUNCATE writes (_batch_defaults), DROP TABLE's move to the
-- trash (trash_tables) and the capture triggers refuse while it is set.
-- A repeated FREEZE keeps the first one's author and time.
CREATE OR REPLACE FUNCTION tombstone.set_deletes_frozen(p_frozen boolean)
RETURNS TABLE (deletes_frozen boolean, frozen_by name, frozen_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
DECLARE
    before jsonb;
BEGIN
    PERFORM tombstone._require_admin();
    before := tombstone._write_freeze(p_frozen);
    SELECT p_frozen, (f ->> 'by')::name, (f ->> 'at')::timestamptz
      INTO deletes_frozen, frozen_by, frozen_at
      FROM (SELECT tombstone._frozen() AS f) x;
    PERFORM tombstone._audit(CASE WHEN p_frozen THEN 'FREEZE DELETES' ELSE 'THAW DELETES' END, '{}',
                             pg_catalog.jsonb_build_object('changed', (before IS NULL) = p_frozen,
                                                           'frozen_before', before));
    RETURN NEXT;
END
$$;
