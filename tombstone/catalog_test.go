package tombstone_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

func fkByChild(t *rewrite.Table, child string) *rewrite.ForeignKey {
	for i := range t.Referencing {
		if t.Referencing[i].ChildName == child {
			return &t.Referencing[i]
		}
	}
	return nil
}

func TestLoadCatalog(t *testing.T) {
	c, _ := setup(t, false)
	cat := loadCatalog(t, c)
	cat2 := loadCatalog(t, c)
	require.Greater(t, cat2.Generation(), cat.Generation())

	require.Equal(t, []string{"public"}, cat.Schemas())
	require.Len(t, cat.Tables(), 8)

	sites, ok := cat.Lookup("", "sites")
	require.True(t, ok)
	same, ok := cat.Lookup("public", "sites")
	require.True(t, ok)
	require.Same(t, sites, same)
	require.Equal(t, "public__sites", sites.Shadow)
	require.Equal(t, 30*24*time.Hour, sites.Retention)
	require.Equal(t, []rewrite.Column{{Name: "id", Type: "bigint"}, {Name: "tenant_id", Type: "bigint"},
		{Name: "name", Type: "text"}, {Name: "slug", Type: "text"}}, sites.Columns)
	require.NotEmpty(t, sites.Signature)

	tenants, _ := cat.Lookup("", "tenants")
	require.Equal(t, 7*24*time.Hour, tenants.Retention)
	for _, child := range []string{"sites", "users", "nodes"} {
		fk := fkByChild(tenants, child)
		require.NotNil(t, fk, child)
		require.Equal(t, rewrite.Cascade, fk.OnDelete)
		require.NotNil(t, fk.Child)
		require.Equal(t, []string{"tenant_id"}, fk.ChildColumns)
		require.Equal(t, []string{"id"}, fk.ParentColumns)
	}
	products, _ := cat.Lookup("", "products")
	require.Same(t, products, fkByChild(sites, "products").Child)
	require.Equal(t, rewrite.SetNull, fkByChild(sites, "links").OnDelete)
	pu := fkByChild(products, "product_users")
	require.Equal(t, rewrite.Cascade, pu.OnDelete)
	nodes, _ := cat.Lookup("", "nodes")
	self := fkByChild(nodes, "nodes")
	require.NotNil(t, self)
	require.Same(t, nodes, self.Child)
	require.Equal(t, []string{"parent_id"}, self.ChildColumns)

	// Partitions resolve to their root; excluded tables are unknown.
	events, ok := cat.Lookup("", "events")
	require.True(t, ok)
	part, ok := cat.Lookup("public", "events_2024")
	require.True(t, ok)
	require.Same(t, events, part)
	_, ok = cat.Lookup("", "audit_log")
	require.False(t, ok)
	_, ok = cat.Lookup("other", "sites")
	require.False(t, ok)

	// A partition's signature is its root's, so the guard written with
	// the partition's name agrees.
	// (Then the root's oid and the snapshot of the load: check_catalog's
	// fast path.)
	sig, _, _ := strings.Cut(events.Signature, ";")
	require.Equal(t, sig, queryString(t, c, "SELECT tombstone.catalog_signature('events_2024')"))
}

func TestSignature(t *testing.T) {
	c, _ := setup(t, false)
	sig := func(table string) string {
		return queryString(t, c, "SELECT tombstone.catalog_signature($1::regclass)", table)
	}
	tenants, products := sig("tenants"), sig("products")

	// Not part of the signature: indexes, RESTRICT foreign keys,
	// unrelated tables, unrelated rows.
	exec(t, c, "CREATE INDEX ON product_users (email)")
	exec(t, c, "ALTER TABLE audit_log ADD COLUMN extra int")
	exec(t, c, "CREATE TABLE notes (id int PRIMARY KEY, site_id bigint REFERENCES sites ON DELETE RESTRICT)")
	exec(t, c, "INSERT INTO tenants VALUES (99, 'x')")
	require.Equal(t, tenants, sig("tenants"))
	require.Equal(t, products, sig("products"))

	// A column three levels down the cascade changes the root's signature.
	exec(t, c, "ALTER TABLE product_users ADD COLUMN role text")
	t2 := sig("tenants")
	require.NotEqual(t, tenants, t2)
	require.NotEqual(t, products, sig("products"))

	// A new cascading foreign key changes it.
	exec(t, c, "CREATE TABLE reviews (id int PRIMARY KEY, product_id bigint REFERENCES products ON DELETE CASCADE)")
	t3 := sig("tenants")
	require.NotEqual(t, t2, t3)
	// So does a SET NULL one, and a column of that child.
	exec(t, c, "CREATE TABLE refs (id int PRIMARY KEY, user_id bigint REFERENCES users ON DELETE SET NULL)")
	t4 := sig("tenants")
	require.NotEqual(t, t3, t4)
	exec(t, c, "ALTER TABLE refs ADD COLUMN note text")
	require.NotEqual(t, t4, sig("tenants"))
	// A change of the protection rules changes every signature.
	t5 := sig("tenants")
	p := protection()
	p.Exclude = append(p.Exclude, "public.notes")
	require.NoError(t, tombstone.Sync(context.Background(), c, tombstone.InstallOptions{Protection: p}))
	require.NotEqual(t, t5, sig("tenants"))
}

func TestCheckCatalog(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	var ok bool
	require.NoError(t, c.QueryRow(ctx, "SELECT tombstone.check_catalog('sites', tombstone.catalog_signature('sites'))").Scan(&ok))
	require.True(t, ok)
	_, err := c.Exec(ctx, "SELECT tombstone.check_catalog('sites', 'stale')")
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Equal(t, "TS001", pe.Code)
	require.Equal(t, "tombstone: catalog changed since the proxy planned this statement", pe.Message)
	require.Equal(t, "the proxy reloads its catalog; retry the statement", pe.Hint)
	require.True(t, tombstone.IsCatalogChanged(err))

	// A rewrite planned before a new cascade is refused, not silently
	// incomplete.
	exec(t, c, seed)
	cat := loadCatalog(t, c)
	exec(t, c, "CREATE TABLE reviews (id int PRIMARY KEY, product_id bigint REFERENCES products ON DELETE CASCADE)")
	exec(t, c, "INSERT INTO reviews SELECT id, id FROM products")
	res, err := rewrite.Rewrite("DELETE FROM sites WHERE id = 1", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = c.Exec(ctx, res.SQL)
	require.True(t, tombstone.IsCatalogChanged(err), "%v", err)
	require.Equal(t, int64(4), queryInt(t, c, "SELECT count(*) FROM reviews WHERE product_id / 10 = 1"))
	// After a reload the cascade is captured.
	cat = loadCatalog(t, c)
	deleteVia(t, c, cat, "DELETE FROM sites WHERE id = 1")
	require.Equal(t, int64(4), queryInt(t, c, "SELECT count(*) FROM tombstone.public__reviews"))
}

// TestSignatureCost measures catalog_signature on the 3-level cascade
// schema (it runs once per table of every captured DELETE). Reported, not
// asserted.
func TestSignatureCost(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	const n = 2000
	for _, table := range []string{"tenants", "sites", "product_users"} {
		_, err := c.Exec(ctx, "SELECT tombstone.check_catalog($1::regclass, tombstone.catalog_signature($1::regclass))", table)
		require.NoError(t, err)
		start := time.Now()
		var cnt int64
		require.NoError(t, c.QueryRow(ctx, `SELECT count(tombstone.check_catalog($1::regclass, $2))
			FROM generate_series(1, $3)`, table, queryString(t, c, "SELECT tombstone.catalog_signature($1::regclass)", table), n).Scan(&cnt))
		el := time.Since(start)
		t.Logf("check_catalog(%s): %v per call", table, el/n)
	}
}

// TestLoadCatalogThrough: unprotected tables whose ON DELETE CASCADE
// reaches protected tables are known (Cascading), with the foreign keys
// that lead there; partitions of one under their own names; tables that
// lead nowhere protected, and protected tables, are not among them.
func TestLoadCatalogThrough(t *testing.T) {
	c, _ := setup(t, false)
	exec(t, c, `CREATE SCHEMA other;
		CREATE TABLE other.accounts (id int PRIMARY KEY);
		CREATE TABLE other.regions (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE other.regions_low PARTITION OF other.regions FOR VALUES FROM (0) TO (100);
		CREATE TABLE other.hops (id int PRIMARY KEY, region_id int REFERENCES other.regions ON DELETE CASCADE);
		CREATE TABLE ledger (id int PRIMARY KEY, account_id int REFERENCES other.accounts ON DELETE SET NULL,
		                     hop_id int REFERENCES other.hops ON DELETE CASCADE);
		CREATE TABLE other.leaf (id int PRIMARY KEY, account_id int REFERENCES other.accounts ON DELETE CASCADE);
		CREATE TABLE other.restricted (id int PRIMARY KEY);
		CREATE TABLE ledger2 (id int PRIMARY KEY, r int REFERENCES other.restricted ON DELETE RESTRICT);`)
	cat := loadCatalog(t, c)

	accounts, ok := cat.Cascading("other", "accounts")
	require.True(t, ok)
	require.True(t, accounts.Unprotected)
	require.Empty(t, accounts.Shadow)
	require.NotEmpty(t, accounts.Signature)
	ledger, ok := cat.Lookup("", "ledger")
	require.True(t, ok)
	require.Same(t, ledger, fkByChild(accounts, "ledger").Child)
	require.Equal(t, rewrite.SetNull, fkByChild(accounts, "ledger").OnDelete)
	require.Nil(t, fkByChild(accounts, "leaf").Child, "an unprotected child that leads nowhere: left to Postgres")

	_, ok = cat.Cascading("", "hops")
	require.False(t, ok, "unqualified: through the protected schemas only")
	hops, ok := cat.Cascading("other", "hops")
	require.True(t, ok)
	regions, ok := cat.Cascading("other", "regions")
	require.True(t, ok, "two cascade steps from ledger")
	require.Same(t, hops, fkByChild(regions, "hops").Child)
	low, ok := cat.Cascading("other", "regions_low")
	require.True(t, ok, "a partition, under its own name")
	require.Equal(t, regions.Referencing, low.Referencing)

	for _, name := range []string{"leaf", "restricted", "ledger"} {
		_, ok := cat.Cascading("", name)
		require.False(t, ok, name)
	}
	_, ok = cat.Lookup("other", "accounts")
	require.False(t, ok, "not protected")
}
