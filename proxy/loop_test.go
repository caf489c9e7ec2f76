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
// planner does not want stays on the event loop; one it wants hands the
// session to the goroutine pumps, and once it is answered the session
// rejoins the loop.
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

	for i := range 3 {
		tag, err := conn.Exec(ctx, fmt.Sprintf("DELETE FROM loop_t WHERE id = %d", i))
		require.NoError(t, err)
		require.Equal(t, "DELETE 1", tag.String())
		_, back = loopCounts(px)
		require.Equal(t, float64(i+1), back, "a statement for the planner hands the session back")
		// Once the DELETE is answered the session rejoins the loop.
		require.Eventually(t, func() bool { j, _ := loopCounts(px); return j == float64(i+2) }, testenv.Hang, time.Millisecond)
		var n int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM loop_t`).Scan(&n))
		require.Equal(t, 49-i, n)
	}
	_, back = loopCounts(px)
	require.Equal(t, 3.0, back, "the SELECTs after each rejoin stay on the loop")
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
	before := liveHeap()
	rs, err := conn.Query(ctx, `SELECT g, repeat('x', 100) FROM generate_series(1, $1) g`, rows)
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond) // ~30 MB wait, in socket buffers only
	require.Less(t, liveHeap()-before, int64(8<<20), "the loop buffered the result instead of leaving it in the server")
	require.Equal(t, rows, countInOrder(t, rs, 1, 100))

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
	case <-time.After(testenv.Hang):
		t.Fatal("runtime.GC did not finish while a session sat on the event loop")
	}
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 2`).Scan(&one))
	require.Equal(t, 2, one)
}

// TestLoopRejoinUnderLoad: a session goes back and forth between the loop
// and the pumps while the client keeps pipelines and large results coming
// right after each handed-back statement — nothing is lost, reordered or
// stuck (the rejoin waits for message boundaries on both sides and never
// stops reading the server while the client pump still writes to it).
func TestLoopRejoinUnderLoad(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = wantsDelete{} })
	conn := testenv.Connect(t, px.DSN)
	_, err := conn.Exec(ctx, `DROP TABLE IF EXISTS loop_r; CREATE TABLE loop_r (id int, v text)`)
	require.NoError(t, err)
	total := 0
	for round := range 10 {
		_, err := conn.Exec(ctx, fmt.Sprintf("DELETE FROM loop_r WHERE id < 0 AND %d = %d", round, round))
		require.NoError(t, err)
		b := &pgx.Batch{}
		for i := range 3000 {
			b.Queue(`INSERT INTO loop_r VALUES ($1, repeat('z', 300))`, round*3000+i)
		}
		require.NoError(t, conn.SendBatch(ctx, b).Close())
		total += 3000
		rows, err := conn.Query(ctx, `SELECT id, v FROM loop_r ORDER BY id`)
		require.NoError(t, err)
		require.Equal(t, total, countInOrder(t, rows, 0, 300))
	}
	_, back := loopCounts(px)
	require.Equal(t, 10.0, back, "each DELETE hands the session back")
	// Between rounds the next DELETE may come before the rejoin (then the
	// pumps go on); once the client is idle, the session rejoins.
	require.Eventually(t, func() bool { j, _ := loopCounts(px); return j >= 2 }, testenv.Hang, time.Millisecond,
		"an idle session rejoins the loop")
}

// countInOrder reads (int, text) rows, checking that the ints count up
// from first and every text has width bytes; it returns how many came.
func countInOrder(t *testing.T, rows pgx.Rows, first, width int) int {
	t.Helper()
	n := 0
	for rows.Next() {
		var id int
		var v string
		require.NoError(t, rows.Scan(&id, &v))
		require.Equal(t, first+n, id)
		require.Len(t, v, width)
		n++
	}
	require.NoError(t, rows.Err())
	return n
}

// TestLoopHandBackWithBytesInFlight: a 15 MB pipeline whose answers carry
// rows larger than the loop's buffer, so the session is handed back in the
// middle of it, with bytes still coming from both sides; every answer
// arrives whole and in order. (Bytes the loop could not write yet at that
// moment are sent by the pumps, which read the server meanwhile; a
// blocking write there could deadlock against a server busy answering.)
func TestLoopHandBackWithBytesInFlight(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := testenv.StartProxy(t)
	conn := testenv.Connect(t, px.DSN)
	arg := strings.Repeat("a", 50_000)
	b := &pgx.Batch{}
	for range 300 {
		b.Queue(`SELECT length($1::text), repeat('x', 100000)`, arg)
	}
	res := conn.SendBatch(ctx, b)
	for range 300 {
		var n int
		var x string
		require.NoError(t, res.QueryRow().Scan(&n, &x))
		require.Equal(t, 50_000, n)
		require.Len(t, x, 100_000)
	}
	require.NoError(t, res.Close())
	_, back := loopCounts(px)
	require.GreaterOrEqual(t, back, 1.0, "a row larger than the buffer hands the session back")
}

// TestLoopsClose: closing the loops hands their sessions to goroutine
// pumps, which go on; later sessions never join; GOMAXPROCS is given back.
func TestLoopsClose(t *testing.T) {
	if testenv.Loops(t) == nil { // started first: it raises GOMAXPROCS too
		t.Skip("no event loops on this system")
	}
	procs := runtime.GOMAXPROCS(0)
	loops, err := proxy.NewLoops(2, nil)
	require.NoError(t, err)
	require.Equal(t, procs+2, runtime.GOMAXPROCS(0))
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.Loops = loops })
	conn := testenv.Connect(t, px.DSN)
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 1`).Scan(&n))
	loops.Close()
	require.Equal(t, procs, runtime.GOMAXPROCS(0))
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT 2`).Scan(&n))
	require.Equal(t, 2, n)
	later := testenv.Connect(t, px.DSN)
	require.NoError(t, later.QueryRow(context.Background(), `SELECT 3`).Scan(&n))
	require.Equal(t, 3, n)
	joined, back := loopCounts(px)
	require.Equal(t, 1.0, joined, "only the session from before Close joined")
	require.Equal(t, 1.0, back, "and Close handed it back")
	loops.Close() // twice is fine
}

// TestLoopsCloseWhileSessionsEnd: a shutdown ends the sessions (each asks
// its loop to hand it back, some twice) while the loops stop, as the
// binary does on SIGTERM: every session is handed back exactly once, and
// nothing panics or hangs (run it with -race).
func TestLoopsCloseWhileSessionsEnd(t *testing.T) {
	if testenv.Loops(t) == nil {
		t.Skip("no event loops on this system")
	}
	for round := range 5 {
		loops, err := proxy.NewLoops(1, nil)
		require.NoError(t, err)
		px := testenv.StartProxy(t, func(c *proxy.Config) { c.Loops = loops })
		for range 10 {
			conn := testenv.Connect(t, px.DSN)
			var n int
			require.NoError(t, conn.QueryRow(context.Background(), `SELECT 1`).Scan(&n))
		}
		require.Eventually(t, func() bool { j, _ := loopCounts(px); return j == 10 }, testenv.Hang, time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace period: kill every session at once
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = px.Shutdown(ctx)
		}()
		loops.Close()
		select {
		case <-done:
		case <-time.After(testenv.Hang):
			t.Fatalf("round %d: the sessions did not end", round)
		}
		require.Zero(t, px.Sessions(), "round %d", round)
	}
}

// liveHeap returns the bytes on the heap still in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// panicky is a planner with a bug: it panics on statements that mention
// boom.
type panicky struct{ lookAtEverything }

func (panicky) Wants(sql []byte) bool {
	if strings.Contains(string(sql), "boom") {
		panic("planner bug")
	}
	return false
}

// TestPanicEndsOnlyItsSession: a bug that panics while a session's message
// is handled — on the event loop or on the pumps — ends that session, not
// the loop, the proxy or the other sessions.
func TestPanicEndsOnlyItsSession(t *testing.T) {
	for _, mode := range []struct {
		name string
		mod  func(*proxy.Config)
	}{{"loop", func(*proxy.Config) {}}, {"pumps", testenv.Pumps}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := context.Background()
			px := testenv.StartProxy(t, mode.mod, func(c *proxy.Config) { c.Planner = panicky{} })
			other := testenv.Connect(t, px.DSN)
			victim := testenv.Connect(t, px.DSN)
			var n int
			require.Error(t, victim.QueryRow(ctx, `SELECT 'boom'::text`).Scan(new(string)))
			require.Eventually(t, func() bool { return px.Sessions() == 1 }, testenv.Hang, 10*time.Millisecond,
				"the panicking session ends")
			require.NoError(t, other.QueryRow(ctx, `SELECT 7`).Scan(&n))
			require.Equal(t, 7, n)
			later := testenv.Connect(t, px.DSN)
			require.NoError(t, later.QueryRow(ctx, `SELECT 8`).Scan(&n))
			require.Equal(t, 8, n)
		})
	}
}
