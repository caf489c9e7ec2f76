package proxy_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
)

func loopCounts(px *testenv.Proxy) (joined, handedBack float64) {
	m := px.Metrics()
	return testutil.ToFloat64(m.LoopSessions), testutil.ToFloat64(m.LoopHandBacks)
}

// TestLoopCarriesOrdinaryTraffic: a session that only runs statements the
// planner does not want stays on the event loop; the first one it wants
// hands the session to the goroutine pumps, and the session goes on.
func TestLoopCarriesOrdinaryTraffic(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	ctx := context.Background()
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = wantsDelete{} })
	conn := testenv.Connect(t, px.DSN)
	_, err := conn.Exec(ctx, `DROP TABLE IF EXISTS loop_t; CREATE TABLE loop_t (id int PRIMARY KEY, v text)`)
	require.NoError(t, err)
	for i := range 50 {
		_, err := conn.Exec(ctx, `INSERT INTO loop_t VALUES ($1, $2)`, i, fmt.Sprint("v", i))
		require.NoError(t, err)
	}
	b := &pgx.Batch{}
	for i := range 20 {
		b.Queue(`SELECT v FROM loop_t WHERE id = $1`, i)
	}
	res := conn.SendBatch(ctx, b)
	for i := range 20 {
		var v string
		require.NoError(t, res.QueryRow().Scan(&v))
		require.Equal(t, fmt.Sprint("v", i), v)
	}
	require.NoError(t, res.Close())
	joined, back := loopCounts(px)
	require.Equal(t, 1.0, joined, "the session joined the loop")
	require.Equal(t, 0.0, back, "ordinary traffic stays on the loop")

	tag, err := conn.Exec(ctx, `DELETE FROM loop_t WHERE id < 10`)
	require.NoError(t, err)
	require.Equal(t, "DELETE 10", tag.String())
	_, back = loopCounts(px)
	require.Equal(t, 1.0, back, "a statement for the planner hands the session back")
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM loop_t`).Scan(&n))
	require.Equal(t, 40, n)
}

// wantsDelete is a planner that wants DELETE statements and changes
// nothing.
type wantsDelete struct{ lookAtEverything }

func (wantsDelete) Wants(sql []byte) bool {
	return strings.Contains(strings.ToUpper(string(sql)), "DELETE")
}

// TestLoopBackpressure: a client that does not read while a large result
// comes makes the loop stop reading the server (no unbounded buffering);
// when it reads again, every row arrives, in order, and the session stays
// on the loop. The same for a client that sends faster than the server
// takes (a long pipeline of inserts).
func TestLoopBackpressure(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	ctx := context.Background()
	px := testenv.StartProxy(t)
	conn := testenv.Connect(t, px.DSN)

	const rows = 300_000
	rs, err := conn.Query(ctx, `SELECT g, repeat('x', 100) FROM generate_series(1, $1) g`, rows)
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond) // ~30 MB wait in socket buffers and the loop
	next := 1
	for rs.Next() {
		var g int
		var s string
		require.NoError(t, rs.Scan(&g, &s))
		require.Equal(t, next, g)
		require.Len(t, s, 100)
		next++
	}
	require.NoError(t, rs.Err())
	require.Equal(t, rows+1, next)

	_, err = conn.Exec(ctx, `DROP TABLE IF EXISTS loop_bp; CREATE TABLE loop_bp (id int, v text)`)
	require.NoError(t, err)
	b := &pgx.Batch{}
	for i := range 20_000 {
		b.Queue(`INSERT INTO loop_bp VALUES ($1, repeat('y', 200))`, i)
	}
	require.NoError(t, conn.SendBatch(ctx, b).Close())
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM loop_bp`).Scan(&n))
	require.Equal(t, 20_000, n)
	_, back := loopCounts(px)
	require.Equal(t, 0.0, back, "backpressure is handled on the loop")
}

// TestLoopGarbageCollection: the loop thread waits in a system call the
// scheduler does not know about; a stop-the-world must still get through
// (the runtime's preemption signal interrupts the wait). Before that was
// handled, runtime.GC() hung here for good.
func TestLoopGarbageCollection(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	px := testenv.StartProxy(t)
	conn := testenv.Connect(t, px.DSN)
	var one int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 1`).Scan(&one))
	done := make(chan struct{})
	go func() {
		for range 5 {
			runtime.GC()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("runtime.GC did not finish while a session sat on the event loop")
	}
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 2`).Scan(&one))
	require.Equal(t, 2, one)
}
