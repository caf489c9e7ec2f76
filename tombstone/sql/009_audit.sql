-- 009_audit: the admin actions that took effect — UNDELETE, UNDROP,
-- PURGE, HOLD, RELEASE, PAUSE, RESUME, FREEZE, THAW — one row each,
-- written by the action's own function in the action's own transaction
-- (tombstone._audit), so that a row exists exactly when the action took
-- effect. Administrators read it (SHOW AUDIT); nobody but the store's
-- owner may change or delete a row (functions_privileges.sql).
--   actor        session_user: the role that logged in
--   set_role     the SET ROLE in force, if any
--   client_addr  inet_client_addr(): the proxy's or the CLI's host
--   application  application_name
--   command      the command, as the console names it
--   args         its arguments; result: what it did (counts, states)
CREATE TABLE IF NOT EXISTS tombstone.audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT statement_timestamp(),
    actor       name NOT NULL DEFAULT session_user,
    set_role    name,
    client_addr inet DEFAULT inet_client_addr(),
    application text DEFAULT current_setting('application_name'),
    command     text NOT NULL,
    args        jsonb NOT NULL DEFAULT '{}',
    result      jsonb
);
CREATE INDEX IF NOT EXISTS audit_at_idx ON tombstone.audit (at);

-- FREEZE DELETES' row, 'null' while thawed (functions_audit.sql).
INSERT INTO tombstone.settings (key, value) VALUES ('deletes.frozen', 'null') ON CONFLICT (key) DO NOTHING;
