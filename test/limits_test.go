package test

// Bounded memory (issue 15, item 9): the planner parses no statement
// longer than limits.plan_bytes. A longer one that may remove rows is
// refused (54000) and nothing runs; one whose keywords sit only in
// constants, comments or quoted names is passed on unparsed.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

func TestStatementsTooLongToPlan(t *testing.T) {
	e := newEnv(t, shopSchema+"CREATE TABLE notes (id int PRIMARY KEY, body text);")
	ctx := context.Background()
	p := testenv.Connect(t, limitedProxy(t, e, proxy.Policies{PlanBytes: 4096, PlanBudgetBytes: 4096}, nil))
	in := ids(2000) // ~12 kB
	for _, sql := range []string{
		"DELETE FROM products WHERE id IN (" + in + ")",
		"SELECT 1 WHERE 1 IN (" + in + "); DELETE FROM tenants",
		"/* " + in + " */ TRUNCATE links",
		"INSERT INTO notes VALUES (1, 'a\\'); DELETE FROM links; SELECT ''--" + in + "')",
		"UNDELETE FROM links WHERE id IN (" + in + ")",
	} {
		before := e.snapshot(shopTables...)
		_, err := p.Exec(ctx, sql)
		require.Equal(t, "54000", errCode(err), sql[:40])
		require.Contains(t, err.Error(), "limits.plan_bytes")
		require.Equal(t, before, e.snapshot(shopTables...), "nothing ran")
	}
	// Keywords in constants, comments and quoted names only: passed on.
	for _, sql := range []string{
		"INSERT INTO notes SELECT g, 'please delete ' || g FROM generate_series(1, 3) g WHERE g NOT IN (" + in + ")",
		"SELECT count(*) /* drop table */ FROM products WHERE id IN (" + in + ") -- truncate",
		"INSERT INTO notes VALUES (100, $$ merge, drop $$), (101, E'it\\'s delete " + in + "')",
	} {
		_, err := p.Exec(ctx, sql)
		require.NoError(t, err, sql[:40])
	}
	require.Equal(t, 5, e.count("SELECT count(*) FROM notes"))
	// Within the limit, planned and captured as ever.
	_, err := p.Exec(ctx, "DELETE FROM links WHERE id IN (1, 2)")
	require.NoError(t, err)
	require.Equal(t, 2, e.count("SELECT count(*) FROM tombstone.public__links"))
}

// limitedProxy starts a proxy with pol (and mod) in front of e's database
// and returns its URL for that database.
func limitedProxy(t *testing.T, e *env, pol proxy.Policies, mod func(*proxy.Config)) string {
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.Planner = proxy.NewPlanner(e.cats, rewrite.NewCache(64), pol)
		c.OnCatalogChanged = e.cats.Invalidate
		if mod != nil {
			mod(c)
		}
	})
	return withDB(t, px.DSN, dbName(t, e.direct))
}

// ids is a list of n integers, "1000, 1001, …".
func ids(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, 1000+i)
	}
	return b.String()
}

// TestMessagesBeyondTheBufferBudget: messages over 1 MiB count against
// limits.buffer_budget_bytes while the proxy holds them whole; sessions
// wait their turn, and a message longer than the whole budget ends its
// session with 54000 while the proxy serves on.
func TestMessagesBeyondTheBufferBudget(t *testing.T) {
	e := newEnv(t, "CREATE TABLE notes (id int PRIMARY KEY, body text);")
	ctx := context.Background()
	dsn := limitedProxy(t, e, proxy.Policies{}, func(c *proxy.Config) { c.BufferBudgetBytes = 3 << 20 })
	big := strings.Repeat("x", 2<<20)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close(ctx)
			_, errs[i] = c.Exec(ctx, fmt.Sprintf("INSERT INTO notes VALUES (%d, '%s') -- delete", i, big))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 4, e.count("SELECT count(*) FROM notes"))

	c := testenv.Connect(t, dsn)
	_, err := c.Exec(ctx, "SELECT '"+strings.Repeat("y", 4<<20)+"' -- drop")
	t.Logf("err: %v", err)
	require.Equal(t, "54000", errCode(err))
	require.Contains(t, err.Error(), "limits.buffer_budget_bytes")
	_, err = testenv.Connect(t, dsn).Exec(ctx, "DELETE FROM notes WHERE id = 1")
	require.NoError(t, err, "the proxy serves on")
}

// TestStalledFrameReleasesTheBudget (third review): a client that
// announces a long message and stops sending holds the buffer budget only
// until its frame times out; then another session's long message runs.
func TestStalledFrameReleasesTheBudget(t *testing.T) {
	e := newEnv(t, "CREATE TABLE notes (id int PRIMARY KEY, body text);")
	ctx := context.Background()
	dsn := limitedProxy(t, e, proxy.Policies{}, func(c *proxy.Config) {
		c.BufferBudgetBytes = 4 << 20
		c.LargeFrameTimeout = time.Second
	})
	stall := testenv.Connect(t, dsn)
	hdr := []byte{'Q', 0, 0x3f, 0, 0} // announces 4 MiB - 256 KiB
	_, err := stall.PgConn().Conn().Write(append(hdr, []byte("SELECT '")...))
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	// Without the timeout this waits for the stalled client, which never
	// comes: the context ends it and the test fails.
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = testenv.Connect(t, dsn).Exec(wait, "INSERT INTO notes VALUES (1, '"+strings.Repeat("x", 2<<20)+"') -- delete")
	require.NoError(t, err)
	require.Equal(t, 1, e.count("SELECT count(*) FROM notes"))
}
