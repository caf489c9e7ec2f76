-- Delete guards (config guards.require_where, guards.max_rows). The
-- rewritten DELETE calls them inside the same statement, after its rows
-- are known: raising aborts the statement, so nothing is deleted. A
-- statement is confirmed by a /* tombstone:confirm */ comment (the
-- rewriter then leaves the guard out) or by the session setting
-- tombstone.confirm (SET LOCAL tombstone.confirm = on for one transaction).

CREATE OR REPLACE FUNCTION tombstone.confirmed() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
    SELECT lower(coalesce(pg_catalog.current_setting('tombstone.confirm', true), '')) IN ('on', 'true', 'yes', '1')
$$;

CREATE OR REPLACE FUNCTION tombstone.guard_where(p_table text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    IF tombstone.confirmed() THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'TS002',
        MESSAGE = pg_catalog.format('tombstone: DELETE without WHERE on protected table %s refused (guards.require_where)', p_table),
        HINT = 'Add a WHERE clause, or confirm: SET LOCAL tombstone.confirm = on, or put /* tombstone:confirm */ in the statement.';
END
$$;

CREATE OR REPLACE FUNCTION tombstone.guard_rows(p_rows bigint, p_max bigint, p_table text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, tombstone, pg_temp
AS $$
BEGIN
    IF p_rows <= p_max OR tombstone.confirmed() THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'TS003',
        MESSAGE = pg_catalog.format('tombstone: DELETE of %s rows from %s exceeds guards.max_rows (%s); nothing was deleted', p_rows, p_table, p_max),
        HINT = 'Delete in smaller steps, or confirm: SET LOCAL tombstone.confirm = on, or put /* tombstone:confirm */ in the statement.';
END
$$;

GRANT EXECUTE ON FUNCTION tombstone.confirmed(), tombstone.guard_where(text), tombstone.guard_rows(bigint, bigint, text) TO PUBLIC;
