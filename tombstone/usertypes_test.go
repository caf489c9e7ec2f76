package tombstone_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
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
		CREATE DOMAIN dmood AS mood;
		CREATE TABLE feelings (id int PRIMARY KEY, m mood, p pair, o other, ms mood[], w wrapped, k mood UNIQUE, dm dmood);
		INSERT INTO feelings VALUES
			(1, 'sad', (1, 'x'), (7, 'seven'), '{sad,happy}', ROW(3), 'ok', 'ok'),
			(2, 'happy', NULL, (8, NULL), '{}', NULL, 'happy', NULL),
			(3, NULL, (3, 'z"q'), NULL, NULL, ROW(5), NULL, 'sad');`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	rows := func() string {
		return queryString(t, c, "SELECT string_agg(f::text, E'\\n' ORDER BY id) FROM feelings f")
	}
	before := rows()
	require.Equal(t, "dm:text,k:text,m:text,ms:text,o:text,p:text,w:wrapped", queryString(t, c, `
		SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attname) FROM pg_attribute
		 WHERE attrelid = 'tombstone.public__feelings'::regclass AND attname IN ('m', 'p', 'o', 'ms', 'w', 'k', 'dm')`))

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
	exec(t, c, "ALTER TABLE feelings DROP COLUMN ms, DROP COLUMN m, DROP COLUMN k, DROP COLUMN o, DROP COLUMN p, DROP COLUMN dm")
	exec(t, c, "DROP DOMAIN dmood; DROP TYPE mood")
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

// TestUserTypesHostileCasts: a type's owner may write casts to and from
// text; the capture writes the type's text with its output function and
// a restore reads it back only where no such cast would run (42501,
// naming it), so no cast of the owner's runs as the capture's definer or
// the restoring admin.
func TestUserTypesHostileCasts(t *testing.T) {
	c, dsn := setup(t, false)
	ctx := context.Background()
	owner := newRole(t, dsn, "ts_caster")
	exec(t, c, "GRANT CREATE ON SCHEMA public TO "+owner+"; CREATE TABLE cast_log (who text); GRANT INSERT ON cast_log TO "+owner)
	exec(t, testenv.Connect(t, withUser(t, dsn, owner)), `
		CREATE TYPE mood AS ENUM ('sad', 'ok');
		CREATE FUNCTION mood_out(mood) RETURNS text LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO public.cast_log VALUES ('out'); RETURN 'forged'; END $$;
		CREATE CAST (mood AS text) WITH FUNCTION mood_out(mood) AS ASSIGNMENT;
		CREATE FUNCTION mood_in(text) RETURNS mood LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO public.cast_log VALUES ('in'); RETURN 'ok'; END $$;
		CREATE CAST (text AS mood) WITH FUNCTION mood_in(text);
		CREATE TABLE moody (id int PRIMARY KEY, m mood, ms mood[]);
		INSERT INTO moody VALUES (1, 'sad', '{sad,ok}');`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	batch := deleteVia(t, c, loadCatalog(t, c), "DELETE FROM moody")
	require.Equal(t, "sad|{sad,ok}", queryString(t, c, "SELECT m || '|' || ms FROM tombstone.public__moody"))
	_, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	pe := pgErr(t, err)
	require.Equal(t, "42501", pe.Code)
	require.Contains(t, pe.Message, "mood_in(text)")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM cast_log"))
	exec(t, c, "DROP CAST (text AS mood)")
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM cast_log"))
	require.Equal(t, "sad|{sad,ok}", queryString(t, c, "SELECT format('%s|%s', m, ms) FROM moody WHERE id = 1"))
}

// TestUserTypesTextIsSettled: the text a composite is kept in does not
// follow the deleting session's settings (DateStyle, float digits), and
// a change of the composite's shape sets the old text aside rather than
// read it back into the wrong attributes.
func TestUserTypesTextIsSettled(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	exec(t, c, `
		CREATE TYPE stamp AS (d date, f float8, i interval);
		CREATE TYPE person AS (first text, last text);
		CREATE TABLE events2 (id int PRIMARY KEY, s stamp, p person);
		INSERT INTO events2 VALUES (1, ROW('2024-03-05', 0.1::float8 + 0.2::float8, '1 day 2 hours'), ROW('Ada', 'Lovelace'));`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	before := queryString(t, c, "SELECT e::text FROM events2 e")
	exec(t, c, "SET DateStyle = 'SQL, DMY'; SET extra_float_digits = 0; SET IntervalStyle = 'sql_standard'")
	batch := deleteVia(t, c, loadCatalog(t, c), "DELETE FROM events2")
	exec(t, c, "RESET DateStyle; RESET extra_float_digits; RESET IntervalStyle")
	_, err := tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, before, queryString(t, c, "SELECT e::text FROM events2 e"))

	// A renamed attribute keeps its place: the text reads back.
	batch = deleteVia(t, c, loadCatalog(t, c), "DELETE FROM events2")
	exec(t, c, "ALTER TYPE person RENAME ATTRIBUTE last TO surname")
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, "Lovelace", queryString(t, c, "SELECT (p).surname FROM events2"))

	// A dropped and re-added one does not: the old text is set aside at
	// once, and a restore of those rows is refused rather than bring them
	// back without it (or with first and last swapped).
	batch = deleteVia(t, c, loadCatalog(t, c), "DELETE FROM events2")
	exec(t, c, "ALTER TYPE person DROP ATTRIBUTE first, ADD ATTRIBUTE first text")
	aside := queryString(t, c, `SELECT attname::text FROM pg_attribute WHERE attrelid = 'tombstone.public__events2'::regclass
		AND attname::text LIKE 'p%' AND attname <> 'p' AND NOT attisdropped`)
	require.NotEmpty(t, aside, "the old shape's text is set aside at once")
	require.Equal(t, "(Ada,Lovelace)", queryString(t, c, "SELECT "+aside+" FROM tombstone.public__events2"))
	_, err = tombstone.UndeleteBatch(ctx, c, batch, tombstone.UndeleteOptions{})
	pe := pgErr(t, err)
	require.Equal(t, "55000", pe.Code)
	require.Contains(t, pe.Message, "public.person")
	require.Equal(t, "(Ada,Lovelace)", queryString(t, c, "SELECT "+aside+" FROM tombstone.public__events2"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM events2"))
}

// TestArrayOfDomainOverArray (PostgreSQL's domain test): an array of a
// domain over an array of a domain is kept as the scalar's array, with
// no dependency on either domain: DROP DOMAIN posint CASCADE drops the
// table's column, as without the store, and no shadow column.
func TestArrayOfDomainOverArray(t *testing.T) {
	c, _ := setup(t, false)
	ctx := context.Background()
	exec(t, c, `
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE DOMAIN dposinta AS posint[];
		CREATE TABLE dposintatable (id int PRIMARY KEY, f1 dposinta[]);
		INSERT INTO dposintatable VALUES (1, array[array[42]::dposinta])`)
	require.NoError(t, tombstone.Sync(ctx, c, tombstone.InstallOptions{}))
	require.Equal(t, "integer[]", queryString(t, c,
		"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'tombstone.public__dposintatable'::regclass AND attname = 'f1'"))
	exec(t, c, "DROP DOMAIN posint CASCADE")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'dposintatable'::regclass AND attname = 'f1' AND NOT attisdropped"))
	require.Equal(t, int64(1), queryInt(t, c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tombstone.public__dposintatable'::regclass AND attname = 'f1' AND NOT attisdropped"))
}
