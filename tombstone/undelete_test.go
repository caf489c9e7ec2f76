package tombstone_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/tombstone"
)

func pgErr(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "want a Postgres error, got %v", err)
	return pe
}

// skippedOf returns the rows of table skipped with their parents.
func skippedOf(rs []tombstone.Restored, table string) int64 {
	for _, r := range rs {
		if r.Table == table {
			return r.Skipped
		}
	}
	return -1
}

func restoredMap(rs []tombstone.Restored) map[string][2]int64 {
	m := map[string][2]int64{}
	for _, r := range rs {
		m[r.Table] = [2]int64{r.Restored, r.Conflicts}
	}
	return m
}

func TestUndeleteBatchRoundTrip(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)

	batch := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id IN (2, 5)")
	afterDelete := dump(t, c)
	require.NotEqual(t, before["product_users"], afterDelete["product_users"])
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM sites WHERE tenant_id IN (2, 5)"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM links WHERE site_id IS NOT NULL AND site_id NOT IN (SELECT id FROM sites)"))

	// The batch row.
	var role, app, addr, tables string
	require.NoError(t, c.QueryRow(ctx, `SELECT role, application_name, client_addr, tables::text FROM tombstone.batches WHERE id = $1`, batch).
		Scan(&role, &app, &addr, &tables))
	require.Equal(t, "postgres", role)
	require.Equal(t, "10.0.0.7:5555", addr)
	require.JSONEq(t, `{"public.tenants": 2, "public.sites": 6, "public.products": 24, "public.product_users": 48,
		"public.users": 4, "public.nodes": 12, "public.links": 18}`, tables)

	bs, err := tombstone.ShowBatches(ctx, c, tombstone.BatchFilter{})
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, batch, bs[0].ID)
	require.Equal(t, int64(114), bs[0].Rows)
	require.Equal(t, tombstone.StateActive, bs[0].State)
	require.Contains(t, bs[0].Tables, "public.product_users=48")
	bs, err = tombstone.ShowBatches(ctx, c, tombstone.BatchFilter{Table: "product_users"})
	require.NoError(t, err)
	require.Len(t, bs, 1)
	bs, err = tombstone.ShowBatches(ctx, c, tombstone.BatchFilter{Table: "events"})
	require.NoError(t, err)
	require.Len(t, bs, 0)

	bt, err := tombstone.ShowBatch(ctx, c, batch)
	require.NoError(t, err)
	byTable := map[string]tombstone.BatchTable{}
	for _, x := range bt {
		byTable[x.Table] = x
	}
	require.Equal(t, "cascade=12", byTable["public.nodes"].Causes)
	require.Equal(t, "delete=2", byTable["public.tenants"].Causes)
	require.Equal(t, "set_null=18", byTable["public.links"].Causes)
	require.Equal(t, int64(48), byTable["public.product_users"].Stored)

	// Dry run: reports, changes nothing.
	rs, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{DryRun: true})
	require.NoError(t, err)
	m := restoredMap(rs)
	require.Equal(t, [2]int64{2, 0}, m["public.tenants"])
	require.Equal(t, [2]int64{48, 0}, m["public.product_users"])
	require.Equal(t, afterDelete, dump(t, c))

	rs, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	m = restoredMap(rs)
	require.Equal(t, [2]int64{6, 0}, m["public.sites"])
	require.Equal(t, [2]int64{12, 0}, m["public.nodes"])
	require.Equal(t, int64(18), m["public.links"][0], "links re-linked (site_id and user_id)")
	require.Equal(t, before, dump(t, c))
	for _, sh := range []string{"public__tenants", "public__sites", "public__products", "public__product_users", "public__links", "public__nodes"} {
		require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone."+sh), sh)
	}
	bs, err = tombstone.ShowBatches(ctx, c, tombstone.BatchFilter{})
	require.NoError(t, err)
	require.Equal(t, tombstone.StateRestored, bs[0].State)

	// Restoring again is refused.
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.Equal(t, "55000", pgErr(t, err).Code)
	_, err = tombstone.UndeleteBatch(ctx, c, 999999, tombstone.UndeleteOptions{})
	require.Equal(t, "P0002", pgErr(t, err).Code)

	// The identity keeps working after restoring explicit values.
	exec(t, c, "INSERT INTO sites (tenant_id, name) VALUES (1, 'New')")
}

func TestUndeleteTreeAndPartition(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)

	// A subtree of the self-referencing tree: the root and its
	// descendants at two levels.
	b1 := deleteVia(t, c, cat, "DELETE FROM nodes n WHERE n.id = 300")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM nodes WHERE tenant_id = 3"))
	// A partition named directly.
	b2 := deleteVia(t, c, cat, "DELETE FROM events_2024 WHERE tenant_id IN (3, 4)")
	require.Equal(t, `{"public.events": 4}`, queryString(t, c, "SELECT tables::text FROM tombstone.batches WHERE id = $1", b2))
	b3 := deleteVia(t, c, cat, "DELETE FROM events WHERE id > 15")

	for _, b := range []int64{b3, b2, b1} {
		_, err := tombstone.UndeleteBatch(ctx, c, b, tombstone.UndeleteOptions{})
		require.NoError(t, err)
	}
	require.Equal(t, before, dump(t, c))
}

func TestUndeleteConflicts(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)
	batch := deleteVia(t, c, cat, "DELETE FROM sites WHERE id = 1")
	// Rows written since the delete take two of the deleted keys.
	exec(t, c, "INSERT INTO products VALUES (11, 2, 'newer 11', 9.99, NULL), (12, 2, 'newer 12', 9.99, NULL)")

	_, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	pe := pgErr(t, err)
	require.Equal(t, "23505", pe.Code)
	require.Contains(t, pe.Message, "2 row(s) to restore into public.products conflict")
	require.Equal(t, "Key (id)=(11), (12) already exist in public.products.", pe.Detail)
	require.Equal(t, "products", pe.TableName)
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM sites WHERE id = 1"), "failed undelete is atomic")

	rs, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{DryRun: true, OnConflict: tombstone.ConflictSkip})
	require.NoError(t, err)
	require.Equal(t, [2]int64{2, 2}, restoredMap(rs)["public.products"])

	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	rs, err = tombstone.UndeleteBatch(ctx, tx, batch, tombstone.UndeleteOptions{OnConflict: tombstone.ConflictOverwrite})
	require.NoError(t, err)
	require.Equal(t, [2]int64{4, 2}, restoredMap(rs)["public.products"])
	require.Equal(t, before, dump(t, c), "overwrite restores the deleted rows exactly")
	require.NoError(t, tx.Rollback(ctx))

	rs, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{OnConflict: tombstone.ConflictSkip})
	require.NoError(t, err)
	m := restoredMap(rs)
	require.Equal(t, [2]int64{1, 0}, m["public.sites"])
	require.Equal(t, [2]int64{2, 2}, m["public.products"])
	// Children of the skipped products stay tombstones with them: their
	// parent key is taken by a newer row, which they never belonged to.
	require.Equal(t, [2]int64{4, 0}, m["public.product_users"])
	require.Equal(t, int64(4), skippedOf(rs, "public.product_users"))
	require.Equal(t, "newer 11", queryString(t, c, "SELECT name FROM products WHERE id = 11"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM product_users WHERE product_id IN (11, 12)"),
		"no restored row is attached to the newer products")
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM tombstone.public__products"), "skipped rows stay tombstones")
	require.Equal(t, int64(4), queryInt(t, c, "SELECT count(*) FROM tombstone.public__product_users"), "and their children too")
}

func TestUndeleteRowsSelective(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)
	tenantRows := func(ids string) string {
		return queryString(t, c, `SELECT concat_ws(E'\n',
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM tenants x WHERE id IN (`+ids+`)),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM sites x WHERE tenant_id IN (`+ids+`)),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM products x WHERE site_id IN (SELECT id FROM sites WHERE tenant_id IN (`+ids+`))),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM product_users x WHERE product_id / 10 IN (SELECT id FROM sites WHERE tenant_id IN (`+ids+`))),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM users x WHERE tenant_id IN (`+ids+`)),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM links x WHERE id % 1000 IN (SELECT id FROM sites WHERE tenant_id IN (`+ids+`))),
			(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM nodes x WHERE tenant_id IN (`+ids+`)))`)
	}
	want := tenantRows("2, 4")
	batch := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id <= 5")
	// The rest of the database keeps changing.
	exec(t, c, "INSERT INTO tenants VALUES (11, 'eleven')")
	exec(t, c, "UPDATE products SET name = 'changed' WHERE site_id IN (SELECT id FROM sites WHERE tenant_id = 7)")
	changed := tenantRows("6, 7, 8, 9, 10, 11")

	rs, err := tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "tenants", Where: "id IN (2, 4)", Batch: batch},
		tombstone.UndeleteOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, [2]int64{2, 0}, restoredMap(rs)["public.tenants"])
	require.Equal(t, [2]int64{48, 0}, restoredMap(rs)["public.product_users"])

	rs, err = tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "tenants", Where: "id IN (2, 4)", Batch: batch},
		tombstone.UndeleteOptions{})
	require.NoError(t, err)
	m := restoredMap(rs)
	require.Equal(t, [2]int64{2, 0}, m["public.tenants"])
	require.Equal(t, [2]int64{6, 0}, m["public.sites"])
	require.Equal(t, [2]int64{12, 0}, m["public.nodes"])
	require.Equal(t, want, tenantRows("2, 4"))
	require.Equal(t, changed, tenantRows("6, 7, 8, 9, 10, 11"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tenants WHERE id IN (1, 3, 5)"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM nodes WHERE tenant_id IN (1, 3, 5)"))
	bs, err := tombstone.ShowBatches(ctx, c, tombstone.BatchFilter{})
	require.NoError(t, err)
	require.Equal(t, tombstone.StatePartlyRestored, bs[0].State)
	require.Less(t, bs[0].Remaining, bs[0].Rows, "some rows came back")
	require.Positive(t, bs[0].Remaining, "others are still tombstones")

	// Selecting inside the cascade: one site of tenant 3 with its products.
	rs, err = tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "public.tenants", Where: "id = 3"}, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), restoredMap(rs)["public.tenants"][0])

	// The rest of the batch, then everything is as before (but tenant 11
	// and the changed products).
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	exec(t, c, "DELETE FROM tenants WHERE id = 11")
	exec(t, c, "UPDATE products SET name = 'product ' || (id % 10) WHERE site_id IN (SELECT id FROM sites WHERE tenant_id = 7)")
	require.Equal(t, before, dump(t, c))
}

func TestUndeleteSelectedSubtree(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)
	batch := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id = 4")
	// One tree node (a cascaded row) and its subtree come back only with
	// the tenant they were deleted with: a newer tenant 4 is another
	// customer, and the nodes are not attached to it.
	exec(t, c, "INSERT INTO tenants VALUES (4, 'tenant 4')")
	_, err := tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "nodes", Where: "id = 400", Batch: batch}, tombstone.UndeleteOptions{})
	pe := pgErr(t, err)
	require.Equal(t, "23503", pe.Code)
	require.Contains(t, pe.Message, "would not reference the rows they referenced when deleted")
	rs, err := tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "nodes", Where: "id = 400", Batch: batch},
		tombstone.UndeleteOptions{DryRun: true, OnConflict: tombstone.ConflictSkip})
	require.NoError(t, err)
	require.Equal(t, [2]int64{0, 0}, restoredMap(rs)["public.nodes"])
	require.Equal(t, int64(6), skippedOf(rs, "public.nodes"), "the node and its subtree, skipped with their tenant")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM nodes WHERE tenant_id = 4"))
	// OVERWRITE replaces the newer tenant 4 with the deleted one: then its
	// subtree may come back with it.
	rs, err = tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "tenants", Where: "id = 4", Batch: batch},
		tombstone.UndeleteOptions{OnConflict: tombstone.ConflictOverwrite})
	require.NoError(t, err)
	require.Equal(t, [2]int64{1, 1}, restoredMap(rs)["public.tenants"])
	require.Equal(t, int64(0), skippedOf(rs, "public.nodes"))
	require.Equal(t, before, dump(t, c))
}

func TestUndeleteTransaction(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	before := dump(t, c)
	exec(t, c, "BEGIN")
	b1 := deleteVia(t, c, cat, "DELETE FROM products WHERE id = 11")
	b2 := deleteVia(t, c, cat, "DELETE FROM users WHERE id = 11")
	exec(t, c, "COMMIT")
	var xid string
	require.NoError(t, c.QueryRow(ctx, "SELECT xid::text FROM tombstone.batches WHERE id = $1", b1).Scan(&xid))
	require.Equal(t, xid, queryString(t, c, "SELECT xid::text FROM tombstone.batches WHERE id = $1", b2))
	var x uint64
	for _, ch := range xid {
		x = x*10 + uint64(ch-'0')
	}
	_, err := tombstone.UndeleteTransaction(ctx, c, x, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, before, dump(t, c))
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM tombstone.batches WHERE restored_at IS NOT NULL"))

	// Nothing is left to restore a second time: 55000, naming what was
	// asked for (a batch gets a hint, a transaction does not).
	_, err = tombstone.UndeleteTransaction(ctx, c, x, tombstone.UndeleteOptions{})
	e := pgErr(t, err)
	require.Equal(t, "55000", e.Code)
	require.Equal(t, "tombstone: transaction "+xid+" has no tombstones left to restore", e.Message)
	require.Empty(t, e.Hint)
	_, err = c.Exec(ctx, "SELECT * FROM tombstone.undelete_batch($1)", b1)
	e = pgErr(t, err)
	require.Equal(t, "55000", e.Code)
	require.Equal(t, fmt.Sprintf("tombstone: batch %d has no tombstones left to restore", b1), e.Message)
	require.Equal(t, "SHOW BATCH shows its state; it may have been restored already.", e.Hint)
}

func TestPurgeAndHold(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	cat := loadCatalog(t, c)
	batch := deleteVia(t, c, cat, "DELETE FROM sites WHERE id = 2")
	require.NoError(t, tombstone.HoldBatch(ctx, c, batch))
	_, err := tombstone.PurgeBatch(ctx, c, batch)
	require.Equal(t, "55000", pgErr(t, err).Code)
	require.NoError(t, tombstone.ReleaseBatch(ctx, c, batch))
	ps, err := tombstone.PurgeBatch(ctx, c, batch)
	require.NoError(t, err)
	require.Equal(t, []tombstone.Purged{{Table: "public.links", Purged: 2}, {Table: "public.product_users", Purged: 8},
		{Table: "public.products", Purged: 4}, {Table: "public.sites", Purged: 1}}, ps)
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.Equal(t, "55000", pgErr(t, err).Code)
}

// TestUndeleteRowsRefusesVolatileConditions: a condition evaluated twice
// must give the same answer twice, or rows would be lost.
func TestUndeleteRowsRefusesVolatileConditions(t *testing.T) {
	c, _ := setup(t, true)
	ctx := context.Background()
	exec(t, c, "INSERT INTO tenants VALUES (900, 'v')")
	deleteVia(t, c, loadCatalog(t, c), "DELETE FROM tenants WHERE id = 900")
	_, err := tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "tenants", Where: "random() < 0.5"}, tombstone.UndeleteOptions{})
	pe := pgErr(t, err)
	require.Equal(t, "22023", pe.Code)
	require.Contains(t, pe.Message, "random")
	rs, err := tombstone.UndeleteRows(ctx, c, tombstone.RowSelection{Table: "tenants", Where: "lower(name) = 'v'"}, tombstone.UndeleteOptions{})
	require.NoError(t, err, "stable functions are fine")
	require.Equal(t, int64(1), restoredMap(rs)["public.tenants"][0])
}
