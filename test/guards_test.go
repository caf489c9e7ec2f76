package test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// TestGuards: DELETE without WHERE and oversized deletes are refused (and
// roll back) unless confirmed by comment or session setting.
func TestGuards(t *testing.T) {
	e := newEnv(t, shopSchema)
	ctx := context.Background()
	// A proxy with the guards on, in front of the same database.
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(e.cats, rewrite.NewCache(64), proxy.Policies{RequireWhere: true, MaxRows: 100})
		c.OnCatalogChanged = e.cats.Invalidate
	})
	p := testenv.Connect(t, withDB(t, px.DSN, dbName(t, e.direct)))
	code := func(err error) string {
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.NotEmpty(t, pe.Hint)
		return pe.Code
	}

	_, err := p.Exec(ctx, "DELETE FROM product_users")
	require.Equal(t, "TS002", code(err))
	require.Equal(t, 400, e.count("SELECT count(*) FROM product_users"), "nothing deleted")

	_, err = p.Exec(ctx, "DELETE FROM links WHERE id <= 150")
	require.Equal(t, "TS003", code(err))
	require.Equal(t, 300, e.count("SELECT count(*) FROM links"), "rolled back")

	tag, err := p.Exec(ctx, "DELETE FROM links WHERE id <= 50")
	require.NoError(t, err, "under the limit")
	require.Equal(t, "DELETE 50", tag.String())

	tag, err = p.Exec(ctx, "DELETE FROM links WHERE id <= 200 /* tombstone:confirm */")
	require.NoError(t, err, "confirmed by comment")
	require.Equal(t, "DELETE 150", tag.String())

	tx, err := p.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL tombstone.confirm = on")
	require.NoError(t, err)
	tag, err = tx.Exec(ctx, "DELETE FROM product_users", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err, "confirmed by session setting")
	require.Equal(t, "DELETE 400", tag.String())
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 3, e.count("SELECT count(*) FROM tombstone.batches"))
}

// TestGuardErrorsAreClean: a guard's error carries no PL/pgSQL context.
func TestGuardErrorsAreClean(t *testing.T) {
	e := newEnv(t, shopSchema)
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(e.cats, rewrite.NewCache(64), proxy.Policies{RequireWhere: true})
	})
	p := testenv.Connect(t, withDB(t, px.DSN, dbName(t, e.direct)))
	_, err := p.Exec(context.Background(), "DELETE FROM links")
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "TS002", pe.Code)
	require.Empty(t, pe.Where)
}
