package tombstone_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/tombstone"
)

// TestShadowsHoldNoUserTypes: a shadow table keeps the values of columns
// of a user's types (enum, composite, a table's row type, arrays of
// them) as text, so no DDL on those types is blocked by it, and a
// restore reads them back in their types. A type whose text form would
// check a domain on the way back stays as it is.
func TestShadowsHoldNoUserTypes(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	exec(t, c, `
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TYPE pair AS (a int, b text);
		CREATE TABLE other (x int, y text);
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE TYPE wrapped AS (v posint);
		CREATE TABLE feelings (id int PRIMARY KEY, m mood, p pair, o other, ms mood[], w wrapped, k mood UNIQUE);
		INSERT INTO feelings VALUES
			(1, 'sad', (1, 'x'), (7, 'seven'), '{sad,happy}', ROW(3), 'ok'),
			(2, 'happy', NULL, (8, NULL), '{}', NULL, 'happy'),
			(3, NULL, (3, 'z"q'), NULL, NULL, ROW(5), NULL);`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	rows := func() string {
		return queryString(t, c, "SELECT string_agg(f::text, E'\\n' ORDER BY id) FROM feelings f")
	}
	before := rows()
	require.Equal(t, "k:text,m:text,ms:text,o:text,p:text,w:wrapped", queryString(t, c, `
		SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attname) FROM pg_attribute
		 WHERE attrelid = 'tombstone.public__feelings'::regclass AND attname IN ('m', 'p', 'o', 'ms', 'w', 'k')`))

	batch := deleteVia(t, c, loadCatalog(t, c), "DELETE FROM feelings")
	_, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, before, rows())

	// UNDELETE FROM … WHERE reads a user's type as that type.
	batch = deleteVia(t, c, loadCatalog(t, c), "DELETE FROM feelings")
	res, err := c.Query(ctx, "SELECT * FROM tombstone.undelete_rows('feelings', $1)", "m > 'sad' OR ms @> '{sad}'::public.mood[]")
	require.NoError(t, err)
	res.Close()
	require.NoError(t, res.Err())
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM feelings"))
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, before, rows())

	// Once the columns have gone, their types can change or go, as after
	// a plain DELETE: the shadow keeps the values, as text.
	deleteVia(t, c, loadCatalog(t, c), "DELETE FROM feelings WHERE id = 1")
	exec(t, c, "ALTER TABLE feelings DROP COLUMN ms, DROP COLUMN m, DROP COLUMN k, DROP COLUMN o, DROP COLUMN p")
	exec(t, c, "DROP TYPE mood")
	exec(t, c, "ALTER TYPE pair ADD ATTRIBUTE c int")
	exec(t, c, "ALTER TABLE other ALTER COLUMN y TYPE varchar(20)")
	exec(t, c, "DROP TABLE other")
	require.Equal(t, "sad|(7,seven)", queryString(t, c, "SELECT m || '|' || o FROM tombstone.public__feelings WHERE id = 1"))

	// A shadow made before (its column in the type itself) turns to text
	// at the next sync, values kept.
	exec(t, c, `CREATE TYPE color AS ENUM ('red', 'blue'); ALTER TABLE feelings ADD COLUMN col color DEFAULT 'blue'`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	deleteVia(t, c, loadCatalog(t, c), "DELETE FROM feelings WHERE id = 2")
	exec(t, c, `ALTER TABLE tombstone.public__feelings ALTER COLUMN col TYPE color USING col::color;
		UPDATE tombstone.shadow_columns SET type = 'color' WHERE shadow_column = 'col'`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	require.Equal(t, "text|blue", queryString(t, c, `SELECT format_type(a.atttypid, a.atttypmod) || '|' || s.col
		FROM pg_attribute a, tombstone.public__feelings s WHERE a.attrelid = 'tombstone.public__feelings'::regclass AND a.attname = 'col' AND s.id = 2`))
	exec(t, c, "DROP TYPE color CASCADE")
}
