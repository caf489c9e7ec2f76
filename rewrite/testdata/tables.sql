-- The user tables of the integration test (integration_test.go), the
-- tables of newTestCatalog (fixture_test.go) that it deletes from. The
-- store itself (schema tombstone, shadow tables, capture triggers) is
-- installed by tombstone.Install from its own migrations.
CREATE SCHEMA app;
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
