package tombstone_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// fakeTombstones writes batches × perBatch tombstones of table items
// straight into its shadow, as postgres, with purge_after = now() + age
// (negative: already due). It returns the first batch id.
func fakeTombstones(t *testing.T, c *pgx.Conn, batches, perBatch int, age string) int64 {
	t.Helper()
	first := queryInt(t, c, "SELECT nextval('tombstone.batches_id_seq')")
	exec(t, c, `SELECT setval('tombstone.batches_id_seq', $1::bigint + $2 - 1)`, first, batches)
	exec(t, c, `INSERT INTO tombstone.batches (id, sql, tables, purge_after)
		SELECT $1::bigint + g, 'DELETE FROM items', jsonb_build_object('public.items', $3::int), now() + $4::interval
		FROM generate_series(0, $2 - 1) g`, first, batches, perBatch, age)
	exec(t, c, "SET session_replication_role = replica") // tombstones loaded, not captured
	exec(t, c, `INSERT INTO tombstone.public__items (_ts_batch, _ts_cause, _ts_deleted_at, id, v)
		SELECT $1::bigint + g / $3, 'delete', now(), $4::bigint + g, 'v' || g FROM generate_series(0, $2::int * $3 - 1) g`,
		first, batches, perBatch, first*1_000_000)
	exec(t, c, "RESET session_replication_role")
	return first
}

// itemsDB is a database with one protected table, items, installed.
func itemsDB(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	dsn := newDB(t)
	c := testenv.Connect(t, dsn)
	exec(t, c, "CREATE TABLE items (id bigint PRIMARY KEY, v text)")
	require.NoError(t, tombstone.Install(context.Background(), c, tombstone.InstallOptions{
		Protection: &tombstone.Protection{Schemas: []string{"public"}}}))
	return c, dsn
}

// consistent fails if a batch is marked purged while tombstones of it
// remain.
func consistent(t *testing.T, c *pgx.Conn) {
	t.Helper()
	require.Equal(t, int64(0), queryInt(t, c, `SELECT count(*) FROM tombstone.public__items s
		JOIN tombstone.batches b ON b.id = s._ts_batch WHERE b.purged_at IS NOT NULL`),
		"a batch is marked purged while its tombstones remain")
}

func reap(t *testing.T, dsn string, opts tombstone.ReaperOptions) tombstone.ReapReport {
	t.Helper()
	c := testenv.Connect(t, dsn)
	rep, err := tombstone.Reap(context.Background(), c, opts)
	require.NoError(t, err)
	return rep
}

// TestReaperExpiryHoldsDryRun: only batches due by the database clock
// are purged (through real rewritten deletes), held ones never, a dry run
// changes nothing, and the report says when the next one falls due.
func TestReaperExpiryHoldsDryRun(t *testing.T) {
	c, dsn := setup(t, true)
	cat := loadCatalog(t, c)
	due := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id = 1")   // cascades
	held := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id = 2")  // due but held
	young := deleteVia(t, c, cat, "DELETE FROM tenants WHERE id = 3") // not due
	// Due by the database clock: purge_after moved into the past with SQL.
	exec(t, c, "UPDATE tombstone.batches SET purge_after = now() - interval '1 minute' WHERE id = ANY($1)", []int64{due, held})
	require.NoError(t, tombstone.HoldBatch(context.Background(), c, held))
	stored := func(b int64) int64 {
		rows, err := tombstone.ShowBatch(context.Background(), c, b)
		require.NoError(t, err)
		var n int64
		for _, r := range rows {
			n += r.Stored
		}
		return n
	}
	dueRows := stored(due)
	require.Greater(t, dueRows, int64(10))

	rep := reap(t, dsn, tombstone.ReaperOptions{DryRun: true})
	var listed int64
	for _, d := range rep.Due {
		require.Equal(t, due, d.Batch, "dry run lists only the due, unheld batch: %+v", d)
		listed += d.Rows
	}
	require.Equal(t, dueRows, listed)
	require.Equal(t, dueRows, stored(due), "dry run purged something")
	require.NotNil(t, rep.NextExpiry)

	rep = reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 5})
	require.Equal(t, dueRows, rep.Rows)
	require.Equal(t, int64(1), rep.Batches)
	require.False(t, rep.Busy)
	require.Equal(t, int64(0), stored(due))
	require.Equal(t, "purged", queryString(t, c, "SELECT tombstone._state(b) FROM tombstone.batches b WHERE id = $1", due))
	require.Greater(t, stored(held), int64(0))
	require.Greater(t, stored(young), int64(0))
	// The next expiry is the young batch's (the held one waits).
	var next time.Time
	require.NoError(t, c.QueryRow(context.Background(), "SELECT purge_after FROM tombstone.batches WHERE id = $1", young).Scan(&next))
	require.NotNil(t, rep.NextExpiry)
	require.WithinDuration(t, next, *rep.NextExpiry, time.Millisecond)

	// Released, it goes with the next run; the young one still stays.
	require.NoError(t, tombstone.ReleaseBatch(context.Background(), c, held))
	rep = reap(t, dsn, tombstone.ReaperOptions{})
	require.Equal(t, int64(1), rep.Batches)
	require.Equal(t, int64(0), stored(held))
	require.Greater(t, stored(young), int64(0))
}

// TestReaperPause: nothing is touched while reaper.paused is true.
func TestReaperPause(t *testing.T) {
	c, dsn := itemsDB(t)
	fakeTombstones(t, c, 10, 100, "-1 hour")
	exec(t, c, "UPDATE tombstone.settings SET value = 'true' WHERE key = 'reaper.paused'")
	rep := reap(t, dsn, tombstone.ReaperOptions{})
	require.True(t, rep.Paused)
	require.Equal(t, int64(0), rep.Rows)
	require.Equal(t, int64(1000), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))

	// Paused mid-run: the chunk after the pause does not run.
	exec(t, c, "UPDATE tombstone.settings SET value = 'false' WHERE key = 'reaper.paused'")
	pauser := testenv.Connect(t, dsn)
	var chunks int
	rep = reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 100, OnChunk: func(tombstone.Chunk) {
		chunks++
		if chunks == 3 {
			exec(t, pauser, "UPDATE tombstone.settings SET value = 'true' WHERE key = 'reaper.paused'")
		}
	}})
	require.True(t, rep.Paused)
	require.Equal(t, int64(300), rep.Rows)
	require.Equal(t, int64(700), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))
	consistent(t, c)
}

// TestReaperBigBatchCut: a batch larger than a chunk is purged over
// several transactions and marked purged only by the one that removes its
// last row; stopping in between leaves it unmarked, and the next run
// finishes it.
func TestReaperBigBatchCut(t *testing.T) {
	c, dsn := itemsDB(t)
	b := fakeTombstones(t, c, 1, 1000, "-1 hour")
	ctx, cancel := context.WithCancel(context.Background())
	rc := testenv.Connect(t, dsn)
	var chunks int
	_, err := tombstone.Reap(ctx, rc, tombstone.ReaperOptions{ChunkRows: 300, OnChunk: func(tombstone.Chunk) {
		chunks++
		if chunks == 2 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, int64(400), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))
	require.Equal(t, "", queryString(t, c, "SELECT purged_at::text FROM tombstone.batches WHERE id = $1", b))
	consistent(t, c)

	rep := reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 300})
	require.Equal(t, int64(400), rep.Rows)
	require.Equal(t, int64(1), rep.Batches)
	require.NotEqual(t, "", queryString(t, c, "SELECT purged_at::text FROM tombstone.batches WHERE id = $1", b))
	// Exactly a multiple of the chunk: the last chunk finds nothing and
	// still marks it.
	b = fakeTombstones(t, c, 1, 600, "-1 hour")
	rep = reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 300})
	require.Equal(t, int64(600), rep.Rows)
	require.Equal(t, int64(1), rep.Batches)
	require.NotEqual(t, "", queryString(t, c, "SELECT purged_at::text FROM tombstone.batches WHERE id = $1", b))
}

// TestReaperLockTimeout: a chunk that cannot get its lock gives up after
// lock_timeout (it is never forced, and never waits long), is retried,
// and the run fails cleanly when the lock stays taken; the next run does
// the work.
func TestReaperLockTimeout(t *testing.T) {
	c, dsn := itemsDB(t)
	fakeTombstones(t, c, 5, 10, "-1 hour")
	blocker := testenv.Connect(t, dsn)
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE tombstone.public__items IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	start := time.Now()
	rc := testenv.Connect(t, dsn)
	rep, err := tombstone.Reap(ctx, rc, tombstone.ReaperOptions{LockTimeout: 100 * time.Millisecond, LockRetries: 2, RetryPause: 20 * time.Millisecond})
	require.Error(t, err)
	require.Contains(t, err.Error(), "left for the next run")
	require.Equal(t, int64(2), rep.LockRetries)
	// Not forced and not waiting: 3 attempts of 100 ms plus pauses. The
	// bound is loose so a loaded machine cannot fail it; a reaper waiting
	// on the lock would wait for the blocker, i.e. forever.
	require.Less(t, time.Since(start), 20*time.Second)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, int64(50), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))

	// A batch row locked by someone else (a restore in progress) is
	// skipped, not waited for.
	tx, err = blocker.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT 1 FROM tombstone.batches WHERE id = (SELECT min(id) FROM tombstone.batches) FOR UPDATE")
	require.NoError(t, err)
	rep = reap(t, dsn, tombstone.ReaperOptions{})
	require.Equal(t, int64(40), rep.Rows)
	require.True(t, rep.Busy)
	require.NoError(t, tx.Rollback(ctx))
	rep = reap(t, dsn, tombstone.ReaperOptions{})
	require.Equal(t, int64(10), rep.Rows)
	require.False(t, rep.Busy)
}

// TestReaperTrash: an expired trash table is dropped and marked purged;
// held and young ones stay.
func TestReaperTrash(t *testing.T) {
	c, dsn := setup(t, true)
	cat := loadCatalog(t, c)
	mustCall(t, c, cat, "DROP TABLE product_users")
	mustCall(t, c, cat, "DROP TABLE links")
	mustCall(t, c, cat, "DROP TABLE events")
	trashName := func(orig string) string {
		return queryString(t, c, "SELECT trash_schema || '.' || trash_name FROM tombstone.trash WHERE original_name = $1", orig)
	}
	pu, links, events := trashName("product_users"), trashName("links"), trashName("events")
	exec(t, c, "UPDATE tombstone.trash SET purge_after = now() - interval '1 second' WHERE original_name IN ('product_users', 'links', 'events')")
	exec(t, c, "UPDATE tombstone.trash SET held = true WHERE original_name = 'links'")

	rep := reap(t, dsn, tombstone.ReaperOptions{DryRun: true})
	var listed int
	for _, d := range rep.Due {
		if d.Batch == 0 {
			listed++
		}
	}
	require.Equal(t, 2, listed)

	rep = reap(t, dsn, tombstone.ReaperOptions{})
	require.Equal(t, int64(2), rep.TrashTables)
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass($1)::text", pu))
	require.Equal(t, "", queryString(t, c, "SELECT to_regclass($1)::text", events))
	require.Equal(t, "", queryString(t, c, "SELECT string_agg(relname, ',') FROM pg_class WHERE relnamespace = 'tombstone_trash'::regnamespace AND relname LIKE 'events%' AND relkind IN ('r', 'p')"),
		"partitions go with their table")
	require.NotEqual(t, "", queryString(t, c, "SELECT to_regclass($1)::text", links))
	require.Equal(t, int64(2), queryInt(t, c, "SELECT count(*) FROM tombstone.trash WHERE purged_at IS NOT NULL"))
}

// TestReaperFence: a reaper whose token is older than one the database
// has seen cannot purge anything (TS010).
func TestReaperFence(t *testing.T) {
	c, dsn := itemsDB(t)
	fakeTombstones(t, c, 3, 10, "-1 hour")
	rep := reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 10, Fence: fixedFence(7)})
	require.Equal(t, int64(30), rep.Rows)
	require.Equal(t, int64(7), queryInt(t, c, "SELECT tombstone.reaper_fence_token()"))
	fakeTombstones(t, c, 3, 10, "-1 hour")
	rc := testenv.Connect(t, dsn)
	rep, err := tombstone.Reap(context.Background(), rc, tombstone.ReaperOptions{Fence: fixedFence(6)})
	require.True(t, tombstone.IsLeaseLost(err), "%v", err)
	require.Equal(t, int64(0), rep.Rows)
	require.Equal(t, int64(30), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))
	rep = reap(t, dsn, tombstone.ReaperOptions{Fence: fixedFence(8)})
	require.Equal(t, int64(30), rep.Rows)
}

type fixedFence int64

func (f fixedFence) Check(context.Context) (int64, error) { return int64(f), nil }

// TestReaperConcurrentRuns: reapers running at the same time over the
// same database (no lease: only the row locks keep them apart) purge
// every due tombstone exactly once and leave a consistent store.
func TestReaperConcurrentRuns(t *testing.T) {
	c, dsn := itemsDB(t)
	fakeTombstones(t, c, 200, 50, "-1 hour")
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close(context.Background())
			rep, err := tombstone.Reap(context.Background(), rc, tombstone.ReaperOptions{ChunkRows: 200})
			if err != nil {
				errs <- err
				return
			}
			total.Add(rep.Rows)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(10000), total.Load())
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone.public__items"))
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone.batches WHERE purged_at IS NULL"))
}

// TestReaperBesideWorkload: application deletes (captured into the same
// shadow table) and inserts keep running while the reaper purges with a
// tiny chunk; none of them waits anywhere near lock_timeout.
func TestReaperBesideWorkload(t *testing.T) {
	c, dsn := setup(t, false)
	cat := loadCatalog(t, c)
	exec(t, c, "INSERT INTO tenants SELECT g, 't' || g FROM generate_series(1, 4000) g")
	exec(t, c, "INSERT INTO users SELECT g, g, 'u' || g FROM generate_series(1, 4000) g")
	// 2000 due batches of real captured deletes.
	for i := 1; i <= 2000; i++ {
		runRewritten(t, c, cat, fmt.Sprintf("DELETE FROM tenants WHERE id = %d", i))
	}
	exec(t, c, "UPDATE tombstone.batches SET purge_after = now() - interval '1 hour'")

	// The workload's deletes, rewritten as the proxy would send them.
	stmts := map[int]string{}
	for i := 2001; i <= 4000; i++ {
		res, err := rewrite.Rewrite(fmt.Sprintf("DELETE FROM tenants WHERE id = %d", i), cat, rewrite.Options{})
		require.NoError(t, err)
		stmts[i] = res.SQL
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var worst atomic.Int64
	var ops atomic.Int64
	var wg sync.WaitGroup
	werr := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			wc, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				werr <- err
				return
			}
			defer wc.Close(context.Background())
			for i := 2001 + w; i <= 4000 && ctx.Err() == nil; i += 2 {
				start := time.Now()
				if _, err := wc.Exec(context.Background(), stmts[i]); err != nil {
					werr <- err
					return
				}
				if _, err := wc.Exec(context.Background(), "INSERT INTO tenants VALUES ($1, 'again')", 100000+i); err != nil {
					werr <- err
					return
				}
				if d := time.Since(start).Microseconds(); d > worst.Load() {
					worst.Store(d)
				}
				ops.Add(1)
			}
		}(w)
	}
	// Let the workload get going, then count what it completes while the
	// reaper runs.
	testenv.WaitFor(t, testenv.Hang, "the workload to start", func() bool { return ops.Load() > 0 })
	before := ops.Load()
	rep := reap(t, dsn, tombstone.ReaperOptions{ChunkRows: 20, LockTimeout: 500 * time.Millisecond})
	during := ops.Load() - before
	cancel()
	wg.Wait()
	close(werr)
	for err := range werr {
		require.NoError(t, err)
	}
	require.Equal(t, int64(2000), rep.Batches)
	require.Equal(t, int64(4000), rep.Rows) // a tenant and its user each
	t.Logf("reaper: %d rows in %v; workload: %d ops during the run (%d in all), worst %v",
		rep.Rows, rep.Duration, during, ops.Load(), time.Duration(worst.Load())*time.Microsecond)
	// Statements stalled behind the reaper would not complete while it
	// runs: at most the two in flight would. No timed bound here (make
	// bench measures the latency).
	require.Greater(t, during, int64(2), "the workload kept running beside the reaper")
	require.Equal(t, int64(0), queryInt(t, c, "SELECT count(*) FROM tombstone.batches b WHERE b.purged_at IS NOT NULL AND EXISTS (SELECT 1 FROM tombstone.public__tenants s WHERE s._ts_batch = b.id)"))
}
