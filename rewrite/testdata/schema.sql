-- Objects matching newTestCatalog (fixture_test.go), for the integration
-- test. The tombstone schema here is a hand-made stand-in for the one the
-- tombstone package installs: same batches table, typed shadow tables and
-- a check_catalog whose "signature" is simply 'sig:' || schema.name.
CREATE SCHEMA tombstone;
CREATE SCHEMA app;
CREATE SEQUENCE tombstone.batches_id_seq;
CREATE TABLE tombstone.batches (
  id bigint PRIMARY KEY DEFAULT nextval('tombstone.batches_id_seq'),
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  stmt_time timestamptz NOT NULL DEFAULT statement_timestamp(),
  role name NOT NULL DEFAULT current_user,
  application_name text NOT NULL DEFAULT current_setting('application_name'),
  client_addr text,
  sql text NOT NULL,
  tables jsonb NOT NULL DEFAULT '{}',
  purge_after timestamptz NOT NULL,
  held bool NOT NULL DEFAULT false,
  restored_at timestamptz,
  purged_at timestamptz,
  token uuid);
CREATE FUNCTION tombstone.check_catalog(rel regclass, sig text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE cur text;
BEGIN
  SELECT 'sig:' || n.nspname || '.' || c.relname INTO cur
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
  IF cur IS DISTINCT FROM sig THEN
    RAISE EXCEPTION 'tombstone: catalog changed' USING ERRCODE = 'TS001';
  END IF;
  RETURN true;
END $$;
-- Every table of the fixture catalog is known to the rewriter, so an
-- unprotected table's guard always passes here.
CREATE FUNCTION tombstone.check_unprotected(rel regclass, only_rel boolean) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT true $$;

CREATE TABLE t (id int PRIMARY KEY, name text);
CREATE TABLE sites (id bigint PRIMARY KEY, tenant_id int, name text);
CREATE TABLE products (id bigint PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE CASCADE, name text);
CREATE TABLE users (id bigint PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE CASCADE, email text);
CREATE TABLE links (id bigint PRIMARY KEY, product_id bigint REFERENCES products ON DELETE CASCADE,
                    user_id bigint REFERENCES users ON DELETE SET NULL);
CREATE TABLE site_notes (id int PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE CASCADE);
CREATE TABLE tree (id int PRIMARY KEY, parent_id int REFERENCES tree ON DELETE CASCADE, label text);
CREATE TABLE measurements (id int, ts timestamptz, v float8) PARTITION BY RANGE (ts);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE cyc_a (id int PRIMARY KEY, b_id int);
CREATE TABLE cyc_b (id int PRIMARY KEY, a_id int REFERENCES cyc_a ON DELETE CASCADE);
ALTER TABLE cyc_a ADD FOREIGN KEY (b_id) REFERENCES cyc_b ON DELETE CASCADE;
CREATE TABLE pair (a int, b int, v text, PRIMARY KEY (a, b));
CREATE TABLE pair_child (id int PRIMARY KEY, pa int, pb int, FOREIGN KEY (pa, pb) REFERENCES pair ON DELETE CASCADE);
CREATE TABLE app.orders (id int PRIMARY KEY, note text);
CREATE TABLE app."Mixed Case" (id int PRIMARY KEY, "Weird ""col" text);
CREATE TABLE wide (id int PRIMARY KEY, wide text);
CREATE TABLE logs (id int, msg text);
-- The fixture's readings references a partition by an oid no table here
-- has: its cascade finds nothing, as no key is declared.
CREATE TABLE readings (id int PRIMARY KEY, m_id int);
CREATE TABLE hub (id int PRIMARY KEY);
CREATE TABLE spoke_a (id int PRIMARY KEY, hub_id int REFERENCES hub ON DELETE CASCADE);
CREATE TABLE spoke_b (id int PRIMARY KEY, hub_id int REFERENCES hub ON DELETE CASCADE, a_id int REFERENCES spoke_a ON DELETE SET NULL, _ts_token text);

-- Shadow tables: metadata columns, then the source columns.
CREATE TABLE tombstone.public_t (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, name text);
CREATE TABLE tombstone.public_sites (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id bigint, tenant_id int, name text);
CREATE TABLE tombstone.public_products (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id bigint, site_id bigint, name text);
CREATE TABLE tombstone.public_users (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id bigint, site_id bigint, email text);
CREATE TABLE tombstone.public_links (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id bigint, product_id bigint, user_id bigint);
CREATE TABLE tombstone.public_tree (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, parent_id int, label text);
CREATE TABLE tombstone.public_measurements (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, ts timestamptz, v float8);
CREATE TABLE tombstone.public_cyc_a (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, b_id int);
CREATE TABLE tombstone.public_cyc_b (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, a_id int);
CREATE TABLE tombstone.public_pair (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, a int, b int, v text);
CREATE TABLE tombstone.public_pair_child (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, pa int, pb int);
CREATE TABLE tombstone.app_orders (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, note text);
CREATE TABLE tombstone."app_Mixed Case" (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, "Weird ""col" text);
CREATE TABLE tombstone.public_readings (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, m_id int);
CREATE TABLE tombstone.public_wide (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, wide text);
CREATE TABLE tombstone.public_hub (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int);
CREATE TABLE tombstone.public_spoke_a (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, hub_id int);
CREATE TABLE tombstone.public_spoke_b (_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamptz DEFAULT statement_timestamp(), _ts_token uuid, id int, hub_id int, a_id int, _ts_user__ts_token text);
