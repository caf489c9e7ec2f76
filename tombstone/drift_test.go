package tombstone_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/tombstone"
)

func TestShadowFollowsAlterTable(t *testing.T) {
	for _, trigger := range []bool{true, false} {
		name := "event trigger"
		if !trigger {
			name = "Sync"
		}
		t.Run(name, func(t *testing.T) {
			c, _ := setup(t, true)
			ctx := context.Background()
			cols := func() string {
				return queryString(t, c, `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attname)
					FROM pg_attribute WHERE attrelid = 'tombstone.public__products'::regclass AND attnum > 0 AND NOT attisdropped`)
			}
			require.Equal(t, "_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamp with time zone, _ts_token uuid, id bigint, name text, "+
				"price numeric(10,2), site_id bigint, tags text[]", cols())
			cat := loadCatalog(t, c)
			batch := deleteVia(t, c, cat, "DELETE FROM products WHERE site_id = 1")
			old := queryString(t, c, "SELECT string_agg(format('%s|%s|%s|%s', id, name, price, tags), ';' ORDER BY id) FROM tombstone.public__products")

			if !trigger {
				exec(t, c, "SET tombstone.ddl_sync = off")
			}
			exec(t, c, "ALTER TABLE products ADD COLUMN sku text NOT NULL DEFAULT 'none'")
			exec(t, c, "ALTER TABLE products RENAME COLUMN name TO title")
			exec(t, c, "ALTER TABLE products ALTER COLUMN price TYPE integer USING round(price)")
			exec(t, c, "ALTER TABLE products ALTER COLUMN tags TYPE text USING array_to_string(tags, ',')")
			exec(t, c, "ALTER TABLE products DROP COLUMN site_id CASCADE")
			exec(t, c, "ALTER TABLE products ADD COLUMN site_id int")
			if !trigger {
				exec(t, c, "RESET tombstone.ddl_sync")
				require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
			}
			// Renamed; retyped in place where every stored value survives
			// the round trip (text[] → text); set aside where not (1.25
			// does not survive numeric → integer); dropped and re-added.
			require.Equal(t, "_ts_batch bigint, _ts_cause text, _ts_deleted_at timestamp with time zone, _ts_token uuid, id bigint, "+
				"price integer, price__old_1 numeric(10,2), site_id integer, site_id__old_1 bigint, sku text, tags text, title text", cols())
			require.Equal(t, old, queryString(t, c,
				"SELECT string_agg(format('%s|%s|%s|%s', id, title, price__old_1, tags), ';' ORDER BY id) FROM tombstone.public__products"),
				"old tombstones are intact")
			require.Equal(t, int64(4), queryInt(t, c, "SELECT count(*) FROM tombstone.public__products WHERE site_id__old_1 = 1"))

			// The catalog follows; a new delete writes the new columns.
			cat = loadCatalog(t, c)
			deleteVia(t, c, cat, "DELETE FROM products WHERE id = 21")
			require.Equal(t, "none", queryString(t, c, "SELECT sku FROM tombstone.public__products WHERE id = 21"))

			// Restore after drift: sku takes its default, dropped columns
			// are ignored.
			_, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
			require.NoError(t, err)
			require.Equal(t, "11|product 1||{a,b1}|none|", queryString(t, c,
				"SELECT format('%s|%s|%s|%s|%s|%s', id, title, price, tags, sku, site_id) FROM products WHERE id = 11"))

			// A rename of the table keeps its shadow.
			exec(t, c, "ALTER TABLE products RENAME TO goods")
			if !trigger {
				require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
			}
			require.Equal(t, "goods", queryString(t, c, "SELECT source_name FROM tombstone.shadows WHERE shadow_name = 'public__products'"))
			// A new table in a protected schema gets a shadow.
			exec(t, c, "CREATE TABLE later (id int PRIMARY KEY)")
			if !trigger {
				require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
			}
			require.Equal(t, "public__later", queryString(t, c, "SELECT tombstone.shadow_name('later')"))
		})
	}
}

func TestShadowNames(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	long := "a_table_with_a_name_that_is_exactly_sixty_three_bytes_long_xxxx"[:63]
	exec(t, c, `CREATE TABLE "`+long+`" (id int)`)
	exec(t, c, `CREATE SCHEMA "Odd Schema"`)
	exec(t, c, `CREATE TABLE "Odd Schema"."T" ("Weird ""col" text)`)
	name, err := tombstone.EnsureShadow(ctx, c, "public", long)
	require.NoError(t, err)
	require.LessOrEqual(t, len(name), 63)
	require.Regexp(t, `^public__a_table_with_.*_[0-9a-f]{8}$`, name)
	name2, err := tombstone.EnsureShadow(ctx, c, "public", long)
	require.NoError(t, err)
	require.Equal(t, name, name2)
	name, err = tombstone.EnsureShadow(ctx, c, "Odd Schema", "T")
	require.NoError(t, err)
	require.Equal(t, "Odd Schema__T", name)
	require.Equal(t, int64(1), queryInt(t, c, `SELECT count(*) FROM pg_attribute WHERE attrelid = 'tombstone."Odd Schema__T"'::regclass AND attname = 'Weird "col'`))
	// Indexes: batch, key, filter column (sites.tenant_id), cascade FKs.
	require.Equal(t, "(_ts_batch),(id),(tenant_id)", queryString(t, c, `SELECT string_agg(substring(indexdef from '\(.*\)$'), ',' ORDER BY indexdef)
		FROM pg_indexes WHERE schemaname = 'tombstone' AND tablename = 'public__sites'`))
	require.Equal(t, "(_ts_batch),(id),(parent_id),(tenant_id)", queryString(t, c, `SELECT string_agg(substring(indexdef from '\(.*\)$'), ',' ORDER BY indexdef)
		FROM pg_indexes WHERE schemaname = 'tombstone' AND tablename = 'public__nodes'`))
}

// The event triggers that keep shadow tables in step with DDL run in the
// client's own session: they must not add NOTICEs (or take the shadow's
// lock) when nothing changes.
func TestShadowSyncIsSilent(t *testing.T) {
	_, dsn := setup(t, true)
	c, note := connectWithNotices(t, dsn)
	cat := loadCatalog(t, c)
	exec(t, c, "CREATE TABLE public.fresh (id int PRIMARY KEY, v text)")
	exec(t, c, "ALTER TABLE products ADD COLUMN note text")
	exec(t, c, "COMMENT ON TABLE products IS 'no shadow change'")
	mustCall(t, c, cat, "TRUNCATE links")
	require.Empty(t, note.all())
	require.Equal(t, int64(1), queryInt(t, c,
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 'tombstone.public__products'::regclass AND attname = 'note'"),
		"the shadow followed the ALTER")
}
