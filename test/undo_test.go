package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// saasSchema is a small multi-tenant SaaS: tenants own sites (GENERATED
// ALWAYS identity, a stored generated column), sites own products, products
// own product_users, tenants own users, sites own a self-referencing tree
// of nodes (three levels), and links point at products and users with ON
// DELETE SET NULL. Twenty tenants.
const saasSchema = `
CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL DEFAULT 'free');
CREATE TABLE sites (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id int NOT NULL REFERENCES tenants ON DELETE CASCADE,
  name text NOT NULL, slug text GENERATED ALWAYS AS (lower(replace(name, ' ', '-'))) STORED, meta jsonb);
CREATE TABLE products (id bigint PRIMARY KEY, site_id bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
  name text, price numeric(10,2), tags text[]);
CREATE TABLE product_users (product_id bigint REFERENCES products ON DELETE CASCADE, user_name text,
  since timestamptz NOT NULL DEFAULT '2024-01-01', PRIMARY KEY (product_id, user_name));
CREATE TABLE users (id int PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants ON DELETE CASCADE, email text UNIQUE);
CREATE TABLE links (id bigint PRIMARY KEY, product_id bigint REFERENCES products ON DELETE SET NULL,
  user_id int REFERENCES users ON DELETE SET NULL, url text);
CREATE TABLE nodes (id int PRIMARY KEY, parent_id int REFERENCES nodes ON DELETE CASCADE,
  site_id bigint REFERENCES sites ON DELETE CASCADE, label text);
INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 20) g;
INSERT INTO sites (tenant_id, name, meta) SELECT t, 'Site ' || t || ' ' || s, jsonb_build_object('t', t, 's', s)
  FROM generate_series(1, 20) t, generate_series(1, 3) s ORDER BY t, s;
INSERT INTO products SELECT s.id * 10 + p, s.id, 'product ' || p, p * 1.25, ARRAY['a', 'b' || p] FROM sites s, generate_series(1, 4) p;
INSERT INTO product_users SELECT p.id, 'u' || k || '@p' || p.id FROM products p, generate_series(1, 2) k;
INSERT INTO users SELECT t * 10 + k, t, 'user' || k || '@t' || t FROM generate_series(1, 20) t, generate_series(1, 2) k;
INSERT INTO links SELECT p.id, p.id, NULL, 'https://p/' || p.id FROM products p;
INSERT INTO links SELECT 100000 + u.id, NULL, u.id, 'https://u/' || u.id FROM users u;
INSERT INTO nodes SELECT s.id * 100, NULL, s.id, 'root' FROM sites s;
INSERT INTO nodes SELECT s.id * 100 + c, s.id * 100, NULL, 'child ' || c FROM sites s, generate_series(1, 2) c;
INSERT INTO nodes SELECT s.id * 100 + 10 + c, s.id * 100 + c, NULL, 'grandchild ' || c FROM sites s, generate_series(1, 2) c;
`

var saasTables = []string{"tenants", "sites", "products", "product_users", "users", "links", "nodes"}

// owned is, per table, the predicate selecting the rows that belong to
// the tenants in the array $1 (links belong to nobody: they are only
// re-linked).
var owned = map[string]string{
	"tenants":       "t.id = ANY ($1)",
	"sites":         "t.tenant_id = ANY ($1)",
	"products":      "t.site_id IN (SELECT id FROM sites WHERE tenant_id = ANY ($1))",
	"product_users": "t.product_id IN (SELECT p.id FROM products p JOIN sites s ON s.id = p.site_id WHERE s.tenant_id = ANY ($1))",
	"users":         "t.tenant_id = ANY ($1)",
	"nodes": `t.id IN (WITH RECURSIVE r AS (SELECT n.id FROM nodes n JOIN sites s ON s.id = n.site_id WHERE s.tenant_id = ANY ($1)
	                   UNION SELECT n.id FROM nodes n JOIN r ON n.parent_id = r.id) SELECT id FROM r)`,
}

// rowsText returns the rows of table matching pred as text, sorted.
func rowsText(t *testing.T, c *pgx.Conn, table, pred string, args ...any) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), fmt.Sprintf("SELECT t::text FROM %s t WHERE %s ORDER BY 1", table, pred), args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// linkRow is one link: its key, text and foreign keys.
type linkRow struct {
	text    string
	product *int64
	user    *int32
}

func links(t *testing.T, c *pgx.Conn) map[int64]linkRow {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT id, t::text, product_id, user_id FROM links t")
	require.NoError(t, err)
	out := map[int64]linkRow{}
	for rows.Next() {
		var id int64
		var l linkRow
		require.NoError(t, rows.Scan(&id, &l.text, &l.product, &l.user))
		out[id] = l
	}
	require.NoError(t, rows.Err())
	return out
}

// TestUndoThreeOfTenTenants is the headline: one statement
// deletes ten tenants with everything cascaded from them (three levels,
// a self-referencing tree, SET NULL links); the rest of the database keeps
// changing — other tenants updated, new rows in the same tables, new rows
// that take keys of deleted ones, links re-pointed by the application;
// then, through the proxy's console, UNDELETE FROM tenants WHERE id IN
// (…three…) BATCH n restores exactly those three tenants: every row of
// theirs byte-identical, links re-linked where still NULL, nothing else,
// and nobody's newer data touched.
func TestUndoThreeOfTenTenants(t *testing.T) {
	e := newEnv(t, saasSchema)
	ctx := context.Background()
	d := testenv.Connect(t, e.direct)
	p := testenv.Connect(t, e.proxy)
	restore := []int32{2, 5, 7}

	// What the three tenants own before the delete.
	before := map[string][]string{}
	for _, tb := range saasTables {
		if tb != "links" {
			before[tb] = rowsText(t, d, tb, owned[tb], restore)
			require.NotEmpty(t, before[tb], tb)
		}
	}
	var ownedProducts, ownedUsers []int64
	require.NoError(t, d.QueryRow(ctx, `SELECT array_agg(p.id) FROM products p JOIN sites s ON s.id = p.site_id WHERE s.tenant_id = ANY ($1)`, restore).Scan(&ownedProducts))
	require.NoError(t, d.QueryRow(ctx, `SELECT array_agg(id::bigint) FROM users WHERE tenant_id = ANY ($1)`, restore).Scan(&ownedUsers))
	linksBefore := links(t, d)

	// The bad statement, through the proxy.
	tag, err := p.Exec(ctx, "DELETE FROM tenants WHERE id BETWEEN 1 AND 10")
	require.NoError(t, err)
	require.Equal(t, "DELETE 10", tag.String())
	require.Zero(t, e.count("SELECT count(*) FROM nodes n JOIN sites s ON s.id = n.site_id WHERE s.tenant_id <= 10"))
	require.Equal(t, 10*3*5, e.count("SELECT count(*) FROM tombstone.public__nodes"), "the whole tree went, three levels")
	batch := e.count("SELECT max(id) FROM tombstone.batches")

	// The rest of the database keeps changing, through the proxy.
	for _, sql := range []string{
		"UPDATE tenants SET name = name || ' (renamed)', plan = 'pro' WHERE id IN (11, 15)",
		"UPDATE products SET price = price * 2 WHERE site_id IN (SELECT id FROM sites WHERE tenant_id = 12)",
		"INSERT INTO tenants VALUES (21, 'tenant 21 (new)', 'pro')",
		"INSERT INTO sites (tenant_id, name) VALUES (15, 'Late Site'), (21, 'New Site')",
		"INSERT INTO products SELECT 900000 + s.id, s.id, 'new product', 9.99, '{}' FROM sites s WHERE s.tenant_id IN (15, 21)",
		"INSERT INTO nodes SELECT 900000 + s.id, NULL, s.id, 'new root' FROM sites s WHERE s.tenant_id = 21",
		"INSERT INTO users VALUES (211, 21, 'new@t21')",
		"DELETE FROM product_users WHERE product_id IN (SELECT p.id FROM products p JOIN sites s ON s.id = p.site_id WHERE s.tenant_id = 13)",
		// Rows that take keys of deleted rows of tenants that stay deleted.
		"INSERT INTO tenants VALUES (9, 'a new tenant 9')",
		"INSERT INTO users VALUES (81, 9, 'someone@t9')",
		`INSERT INTO products VALUES ((SELECT min(id) FROM tombstone.public__products
		   WHERE site_id IN (SELECT id FROM tombstone.public__sites WHERE tenant_id = 8)),
		  (SELECT min(id) FROM sites WHERE tenant_id = 11), 'reused key', 1, '{}')`,
		// The application re-points two links that the delete set NULL
		// (to surviving products): the restore must leave them be.
		fmt.Sprintf("UPDATE links SET product_id = (SELECT min(id) FROM products) WHERE id IN (%d, %d)", ownedProducts[0], ownedProducts[2]),
	} {
		if strings.Contains(sql, "tombstone.") {
			_, err = d.Exec(ctx, sql) // reads the store: direct, as the superuser
		} else {
			_, err = p.Exec(ctx, sql)
		}
		require.NoError(t, err, sql)
	}
	preRestore := map[string][]string{}
	for _, tb := range saasTables {
		preRestore[tb] = rowsText(t, d, tb, "true")
	}
	linksPre := links(t, d)

	// Dry run first: nothing changes, and it says what would come back.
	dry, _ := simple(t, p, fmt.Sprintf("UNDELETE FROM tenants WHERE id IN (2, 5, 7) BATCH %d DRY RUN", batch))
	require.Equal(t, []string{"public.tenants", "3", "0", "0"}, findRow(dry, "public.tenants"))
	for _, tb := range saasTables {
		require.Equal(t, preRestore[tb], rowsText(t, d, tb, "true"), "dry run changed %s", tb)
	}

	// The restore, through the proxy's console.
	res, tag2 := simple(t, p, fmt.Sprintf("UNDELETE FROM tenants WHERE id IN (2, 5, 7) BATCH %d", batch))
	t.Logf("%s: %v", tag2, res)
	require.Equal(t, []string{"public.tenants", "3", "0", "0"}, findRow(res, "public.tenants"))
	require.Equal(t, []string{"public.sites", "9", "0", "0"}, findRow(res, "public.sites"))
	require.Equal(t, []string{"public.products", "36", "0", "0"}, findRow(res, "public.products"))
	require.Equal(t, []string{"public.product_users", "72", "0", "0"}, findRow(res, "public.product_users"))
	require.Equal(t, []string{"public.nodes", "45", "0", "0"}, findRow(res, "public.nodes"))

	// Every row of the three tenants is back, byte-identical; every other
	// row is exactly as it was just before the restore.
	for _, tb := range saasTables {
		if tb == "links" {
			continue
		}
		want := slices.Concat(preRestore[tb], before[tb])
		slices.Sort(want)
		require.Equal(t, want, rowsText(t, d, tb, "true"), "table %s", tb)
	}
	// Links: those the delete set NULL that pointed at the three tenants'
	// products or users, and are still NULL, point there again, exactly as
	// before; the ones the application re-pointed keep the new value; all
	// others are untouched.
	isOwned := func(v *int64, set []int64) bool { return v != nil && slices.Contains(set, *v) }
	linksNow := links(t, d)
	require.Len(t, linksNow, len(linksPre))
	relinked := 0
	for id, pre := range linksPre {
		old := linksBefore[id]
		var oldUser *int64
		if old.user != nil {
			u := int64(*old.user)
			oldUser = &u
		}
		switch {
		case pre.product == nil && pre.user == nil && (isOwned(old.product, ownedProducts) || isOwned(oldUser, ownedUsers)):
			require.Equal(t, old.text, linksNow[id].text, "link %d re-linked as before", id)
			relinked++
		default:
			require.Equal(t, pre.text, linksNow[id].text, "link %d untouched", id)
		}
	}
	require.Equal(t, len(ownedProducts)-2+len(ownedUsers), relinked)
	require.Equal(t, fmt.Sprint(relinked), findRow(res, "public.links")[1])

	// The identity sequence still works after restoring explicit ids, and
	// the generated column was recomputed (identical to before).
	_, err = p.Exec(ctx, "INSERT INTO sites (tenant_id, name) VALUES (2, 'After Restore')")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM sites WHERE name = 'After Restore' AND slug = 'after-restore'"))

	// The other seven tenants are still tombstones of the same batch; it
	// is not fully restored, and restoring the rest meets the rows that
	// took their keys.
	require.Equal(t, 7, e.count(fmt.Sprintf("SELECT count(*) FROM tombstone.public__tenants WHERE _ts_batch = %d", batch)))
	show, _ := simple(t, p, fmt.Sprintf("SHOW BATCH %d", batch))
	tenants := findRowAt(show, 1, "public.tenants")
	require.Equal(t, "10", tenants[2], "rows the statement removed: %v", show)
	require.Equal(t, "7", tenants[3], "stored tombstones: %v", show)
	require.Equal(t, "partly restored", tenants[10])
	dry, _ = simple(t, p, fmt.Sprintf("UNDELETE BATCH %d DRY RUN", batch))
	require.Equal(t, []string{"public.tenants", "6", "1", "0"}, findRow(dry, "public.tenants"))
	require.Equal(t, "1", findRow(dry, "public.users")[2])
	require.Equal(t, "1", findRow(dry, "public.products")[2])
	err = p.PgConn().Exec(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch)).Close()
	pe := pgErrOf(t, err)
	require.Equal(t, "23505", pe.Code)
	require.Contains(t, pe.Detail, "Key (id)=(9)")
}

// pgErrOf returns err as a Postgres error.
func pgErrOf(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "want a Postgres error, got %v", err)
	return pe
}

// findRow returns the row whose first column is key (nil when none).
func findRow(rows [][]string, key string) []string { return findRowAt(rows, 0, key) }

// findRowAt returns the row whose column i is key (nil when none).
func findRowAt(rows [][]string, i int, key string) []string {
	for _, r := range rows {
		if len(r) > i && r[i] == key {
			return r
		}
	}
	return nil
}
