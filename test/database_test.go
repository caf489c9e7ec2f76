package test

// A database used through the proxy can be dropped, renamed and created
// again under its name (issue 16, item 5): the proxy lets go of its own
// connection to it (the catalog's LISTEN) when such a statement passes
// through it, and installs the store in a database it finds without one.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// deleteThrough creates table t in database db if it is not there,
// inserts row id and deletes it through the proxy (which loads the
// catalog and starts the listener), and ends the session.
func deleteThrough(t *testing.T, e *env, db string, id int) {
	t.Helper()
	ctx := context.Background()
	c := testenv.Connect(t, withDB(t, e.proxy, db))
	_, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY); INSERT INTO t VALUES (%d)", id))
	require.NoError(t, err)
	_, err = c.Exec(ctx, fmt.Sprintf("DELETE FROM t WHERE id = %d", id))
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))
}

func TestDropAndRecreateDatabase(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	name := fmt.Sprintf("ts_dropme_%d", rand.Uint32())
	admin := testenv.Connect(t, e.proxy) // the env's own database
	t.Cleanup(func() {
		_, _ = testenv.Connect(t, e.direct).Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_, _ = testenv.Connect(t, e.direct).Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+"_2 WITH (FORCE)")
	})
	use := func(db string, id int) {
		t.Helper()
		deleteThrough(t, e, db, id)
		d := testenv.Connect(t, withDB(t, e.direct, db))
		var n int
		require.NoError(t, d.QueryRow(ctx, "SELECT count(*) FROM tombstone.public__t WHERE id = $1", id).Scan(&n))
		require.Equal(t, 1, n)
		require.NoError(t, d.Close(ctx))
	}
	_, err := admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	use(name, 1)
	_, err = admin.Exec(ctx, "ALTER DATABASE "+name+" RENAME TO "+name+"_2")
	require.NoError(t, err, "the proxy's listener let go of it")
	use(name+"_2", 2)
	_, err = admin.Exec(ctx, "DROP DATABASE "+name+"_2")
	require.NoError(t, err, "the proxy's listener let go of it")
	// Created again under a name the proxy knew: a new store, captured.
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	use(name, 3)
}

// TestDatabaseLetGoOnDirectDDL: a database the proxy's clients used and
// left can be renamed, used as a template and dropped on a direct
// connection (a DBA's psql, dropdb): the proxy lets go of its own
// connections to it once no session uses it (tombstone.ListenIdle), and
// catches up when the next one comes.
func TestDatabaseLetGoOnDirectDDL(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	name := fmt.Sprintf("ts_direct_%d", rand.Uint32())
	direct := testenv.Connect(t, e.direct) // another database, as psql -d postgres would be
	t.Cleanup(func() {
		for _, n := range []string{name, name + "_2", name + "_copy"} {
			_, _ = testenv.Connect(t, e.direct).Exec(context.Background(), "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
		}
	})
	_, err := direct.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	deleteThrough(t, e, name, 1)
	_, err = direct.Exec(ctx, "ALTER DATABASE "+name+" RENAME TO "+name+"_2")
	require.NoError(t, err, "Postgres waits 5 s for the proxy's connections to go")
	deleteThrough(t, e, name+"_2", 2)
	_, err = direct.Exec(ctx, "CREATE DATABASE "+name+"_copy TEMPLATE "+name+"_2")
	require.NoError(t, err)
	// While a session uses it, Postgres refuses, as without the proxy.
	c := testenv.Connect(t, withDB(t, e.proxy, name+"_2"))
	_, err = c.Exec(ctx, "DELETE FROM t WHERE id = 0")
	require.NoError(t, err)
	_, err = direct.Exec(ctx, "DROP DATABASE "+name+"_2")
	require.Equal(t, "55006", pgErrCode(err), "%v", err)
	require.NoError(t, c.Close(ctx))
	_, err = direct.Exec(ctx, "DROP DATABASE "+name+"_2")
	require.NoError(t, err)
	deleteThrough(t, e, name+"_copy", 3) // the copy's store, its catalog loaded anew
	d := testenv.Connect(t, withDB(t, e.direct, name+"_copy"))
	var n int
	require.NoError(t, d.QueryRow(ctx, "SELECT count(*) FROM tombstone.public__t").Scan(&n))
	require.Equal(t, 3, n, "the tombstones of 1 and 2 came with the copy; 3 is captured")
}
