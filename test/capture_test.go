package test

// The tables' capture triggers write the tombstones (issue 15: no role
// may write one itself). A DELETE whose rows no trigger would copy is
// refused, not let through; the triggers keep themselves enabled.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

func TestCaptureTriggersKeepThemselves(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g;
CREATE TABLE kid (id int PRIMARY KEY, t_id int REFERENCES t ON DELETE SET NULL); INSERT INTO kid VALUES (1, 1), (2, 2);`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	d := testenv.Connect(t, e.direct)
	_, err := p.Exec(ctx, "DELETE FROM t WHERE id = 1") // loads the store
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 1 AND _ts_cause = 'delete'"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__kid WHERE id = 1 AND t_id = 1 AND _ts_cause = 'set_null'"))

	// Disabled by the owner: the DDL event trigger enables it again.
	_, err = d.Exec(ctx, "ALTER TABLE t DISABLE TRIGGER ALL")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND tgname LIKE '\\_ts\\_%' AND tgenabled <> 'A'"))
	// session_replication_role does not silence it either.
	_, err = p.Exec(ctx, "SET session_replication_role = replica; DELETE FROM t WHERE id = 2; RESET session_replication_role")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 2"))

	// Dropped: the DELETE is refused, nothing deleted, until a sync.
	_, err = d.Exec(ctx, "DROP TRIGGER _ts_capture ON t")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM t WHERE id = 3")
	require.Equal(t, "55000", errCode(err))
	require.Equal(t, 1, e.count("SELECT count(*) FROM t WHERE id = 3"))
	_, err = d.Exec(ctx, "SELECT tombstone.sync_all()")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM t WHERE id = 3")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 3"))

	// Deletes that do not pass through the proxy are not captured, as
	// before: no batch, no tombstone.
	_, err = d.Exec(ctx, "DELETE FROM t WHERE id = 4")
	require.NoError(t, err)
	require.Equal(t, 0, e.count("SELECT count(*) FROM tombstone.public__t WHERE id = 4"))
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.batches"))
}

// TestCaptureInheritanceRowwise: members of an inheritance tree are
// captured row by row into their own shadows, with all their columns —
// also a child that joined the tree after its parent was protected.
func TestCaptureInheritanceRowwise(t *testing.T) {
	e := newEnv(t, `CREATE TABLE animals (id int, name text); INSERT INTO animals VALUES (1, 'ant');`)
	ctx := context.Background()
	p := testenv.Connect(t, e.proxy)
	_, err := p.Exec(ctx, "DELETE FROM animals WHERE id = 0") // loads the store
	require.NoError(t, err)
	_, err = p.Exec(ctx, "CREATE TABLE dogs (breed text) INHERITS (animals); INSERT INTO dogs VALUES (2, 'ace', 'collie'), (3, 'bo', 'pug')")
	require.NoError(t, err)
	_, err = p.Exec(ctx, "DELETE FROM animals WHERE name LIKE 'a%'")
	require.NoError(t, err)
	require.Equal(t, "1:ant", queryText(t, e.direct, "SELECT string_agg(id || ':' || name, ',') FROM tombstone.public__animals"))
	require.Equal(t, "2:ace:collie", queryText(t, e.direct, "SELECT string_agg(id || ':' || name || ':' || breed, ',') FROM tombstone.public__dogs"))
	_, err = p.Exec(ctx, "UNDELETE BATCH "+queryText(t, e.direct, "SELECT max(id)::text FROM tombstone.batches"))
	require.NoError(t, err)
	require.Equal(t, 3, e.count("SELECT count(*) FROM animals"))
	require.Equal(t, "collie,pug", queryText(t, e.direct, "SELECT string_agg(breed, ',' ORDER BY breed) FROM dogs"))
}
