package tombstone_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// newDB creates a fresh database for one test (other packages' tests use
// the same server concurrently) and drops it when the test ends. It
// returns the database's URL.
func newDB(t *testing.T) string {
	t.Helper()
	return testenv.FreshDB(t, "ts_store")
}

// withUser returns dsn with user replaced (no password: the test server
// trusts local connections).
func withUser(t *testing.T, dsn, user string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.User(user)
	return u.String()
}

func exec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := c.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

func queryString(t *testing.T, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s *string
	require.NoError(t, c.QueryRow(context.Background(), sql, args...).Scan(&s), sql)
	if s == nil {
		return ""
	}
	return *s
}

func queryInt(t *testing.T, c *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// fixture is a multi-table schema:
//
//	tenants → sites → products → product_users   3-level ON DELETE CASCADE
//	tenants → users (CASCADE), links.site_id → sites (SET NULL),
//	links.user_id → users (SET NULL)
//	tenants → nodes, nodes.parent_id → nodes     self-referencing tree
//	events                                       partitioned by range
//	audit_log                                    excluded
//
// sites.id is GENERATED ALWAYS AS IDENTITY and sites.slug a stored
// generated column.
const fixture = `
CREATE TABLE tenants (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE sites (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name text NOT NULL,
    slug text GENERATED ALWAYS AS (lower(name)) STORED);
CREATE TABLE products (id bigint PRIMARY KEY, site_id bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
    name text, price numeric(10,2), tags text[]);
CREATE TABLE product_users (product_id bigint REFERENCES products ON DELETE CASCADE, email text,
    PRIMARY KEY (product_id, email));
CREATE TABLE users (id bigint PRIMARY KEY, tenant_id bigint REFERENCES tenants ON DELETE CASCADE, email text UNIQUE);
CREATE TABLE links (id bigint PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE SET NULL,
    user_id bigint REFERENCES users ON DELETE SET NULL, url text);
CREATE TABLE nodes (id int PRIMARY KEY, parent_id int REFERENCES nodes ON DELETE CASCADE,
    tenant_id bigint REFERENCES tenants ON DELETE CASCADE, label text);
CREATE TABLE events (id bigint, at date, tenant_id bigint, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE audit_log (id serial PRIMARY KEY, msg text);
`

// seed fills the fixture: 10 tenants, each with 3 sites, each with 4
// products with 2 users each; 2 users per tenant; links; a 3-level tree
// per tenant; events in both partitions.
const seed = `
INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 10) g;
INSERT INTO sites (tenant_id, name) SELECT t, 'Site ' || t || '-' || s FROM generate_series(1, 10) t, generate_series(1, 3) s;
INSERT INTO products SELECT s.id * 10 + p, s.id, 'product ' || p, p * 1.25, ARRAY['a', 'b' || p] FROM sites s, generate_series(1, 4) p;
INSERT INTO product_users SELECT p.id, 'u' || k || '@p' || p.id FROM products p, generate_series(1, 2) k;
INSERT INTO users SELECT t * 10 + k, t, 'user' || k || '@t' || t FROM generate_series(1, 10) t, generate_series(1, 2) k;
INSERT INTO links SELECT s.id, s.id, s.tenant_id * 10 + 1, 'https://x/' || s.id FROM sites s;
INSERT INTO links SELECT 1000 + s.id, s.id, NULL, 'https://y/' || s.id FROM sites s;
INSERT INTO nodes SELECT t * 100, NULL, t, 'root' FROM generate_series(1, 10) t;
INSERT INTO nodes SELECT t * 100 + c, t * 100, t, 'child' FROM generate_series(1, 10) t, generate_series(1, 3) c;
INSERT INTO nodes SELECT t * 100 + 10 + c, t * 100 + 1, t, 'grandchild' FROM generate_series(1, 10) t, generate_series(1, 2) c;
INSERT INTO events SELECT g, date '2024-06-01' + g * 15, g % 10 + 1, jsonb_build_object('n', g) FROM generate_series(1, 20) g;
INSERT INTO audit_log (msg) VALUES ('hello');
`

var fixtureTables = []string{"tenants", "sites", "products", "product_users", "users", "links", "nodes", "events", "audit_log"}

func protection() *tombstone.Protection {
	return &tombstone.Protection{
		Schemas:   []string{"public"},
		Exclude:   []string{"public.audit_log"},
		Retention: 7 * 24 * time.Hour,
		Tables: map[string]tombstone.TableProtection{
			"public.sites": {Retention: 30 * 24 * time.Hour, Column: "tenant_id"},
		},
	}
}

// setup creates a database with the fixture, installs the store and
// returns a superuser connection to it and its URL.
func setup(t *testing.T, withSeed bool) (*pgx.Conn, string) {
	t.Helper()
	dsn := newDB(t)
	c := testenv.Connect(t, dsn)
	exec(t, c, fixture)
	if withSeed {
		exec(t, c, seed)
	}
	require.NoError(t, tombstone.Install(context.Background(), c, tombstone.InstallOptions{Protection: protection()}))
	return c, dsn
}

// dump is every fixture table's content as text, ordered.
func dump(t *testing.T, c *pgx.Conn) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range fixtureTables {
		out[tb] = queryString(t, c, "SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM "+tb+" x")
	}
	return out
}

// deleteVia runs sql in its tombstone form, as the proxy would send it,
// and returns the newest batch id.
func deleteVia(t *testing.T, c *pgx.Conn, cat *tombstone.Catalog, sql string) int64 {
	t.Helper()
	runRewritten(t, c, cat, sql)
	return queryInt(t, c, "SELECT max(id) FROM tombstone.batches")
}

// runRewritten runs sql in its tombstone form.
func runRewritten(t *testing.T, c *pgx.Conn, cat *tombstone.Catalog, sql string) {
	t.Helper()
	res, err := rewrite.Rewrite(sql, cat, rewrite.Options{ClientAddr: "10.0.0.7:5555"})
	require.NoError(t, err)
	require.Nil(t, res.Refusal())
	require.NotEqual(t, sql, res.SQL, "statement was not rewritten")
	tag, err := c.Exec(context.Background(), res.SQL)
	require.NoError(t, err, res.SQL)
	require.True(t, strings.HasPrefix(tag.String(), "DELETE") || strings.HasPrefix(tag.String(), "SELECT"), tag.String())
}

func loadCatalog(t *testing.T, c *pgx.Conn) *tombstone.Catalog {
	t.Helper()
	cat, err := tombstone.LoadCatalog(context.Background(), c, tombstone.CatalogOptions{})
	require.NoError(t, err)
	return cat
}
