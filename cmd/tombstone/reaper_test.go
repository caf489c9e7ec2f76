package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// reaperDB creates a fresh database with one protected table, items,
// installs the store and fills it with batches × perBatch due tombstones
// (written straight into the shadow table). It returns the URL and a
// superuser connection.
func reaperDB(t *testing.T, batches, perBatch int) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.FreshDB(t, "ts_reaper")
	c := testenv.Connect(t, dsn)
	_, err := c.Exec(ctx, "CREATE TABLE items (id bigint PRIMARY KEY, v text)")
	require.NoError(t, err)
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	_, err = c.Exec(ctx, `INSERT INTO tombstone.batches (id, sql, tables, purge_after)
		SELECT g, 'DELETE FROM items', jsonb_build_object('public.items', $2::int), now() - interval '1 hour'
		FROM generate_series(1, $1::int) g`, batches, perBatch)
	require.NoError(t, err)
	_, err = c.Exec(ctx, `SELECT setval('tombstone.batches_id_seq', $1)`, batches)
	require.NoError(t, err)
	_, err = c.Exec(ctx, "SET session_replication_role = replica") // tombstones loaded, not captured
	require.NoError(t, err)
	_, err = c.Exec(ctx, `INSERT INTO tombstone.public__items (_ts_batch, _ts_cause, _ts_deleted_at, id, v)
		SELECT g / $2 + 1, 'delete', now(), g, 'value ' || g FROM generate_series(0, $1::int * $2 - 1) g`, batches, perBatch)
	require.NoError(t, err)
	_, err = c.Exec(ctx, "RESET session_replication_role")
	require.NoError(t, err)
	return dsn, c
}

func count(t *testing.T, c *pgx.Conn, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(context.Background(), sql).Scan(&n), sql)
	return n
}

// consistentStore fails when a batch is marked purged while tombstones
// of it remain.
func consistentStore(t *testing.T, c *pgx.Conn) {
	t.Helper()
	require.Equal(t, int64(0), count(t, c, `SELECT count(*) FROM tombstone.public__items s
		JOIN tombstone.batches b ON b.id = s._ts_batch WHERE b.purged_at IS NOT NULL`),
		"a batch is marked purged while its tombstones remain")
}

func TestReaperCLI(t *testing.T) {
	dsn, c := reaperDB(t, 20, 10)
	_, err := c.Exec(context.Background(), "UPDATE tombstone.batches SET held = true WHERE id = 3")
	require.NoError(t, err)

	code, out, stderr := tomb(t, "reaper", "--dsn", dsn, "--dry-run")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "public.items")
	require.Contains(t, out, "would purge 190 tombstones")
	require.NotContains(t, out, "\n3 ")
	require.Equal(t, int64(200), count(t, c, "SELECT count(*) FROM tombstone.public__items"))

	code, out, stderr = tomb(t, "reaper", "--dsn", dsn, "--once", "--chunk", "25")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "purged 190 tombstones in 19 batches")
	require.Contains(t, stderr, `"msg":"reaper run completed"`)
	require.Equal(t, int64(10), count(t, c, "SELECT count(*) FROM tombstone.public__items"))

	code, out, _ = tomb(t, "reaper", "--dsn", dsn, "--once", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"rows_purged": 0`)

	code, _, stderr = tomb(t, "reaper", "--dsn", dsn, "--once", "--chunk", "0")
	require.Equal(t, exitUsage, code, stderr)
	// 0 is "no timeout" to Postgres, never a reaper's: refused, not
	// turned into a default behind the operator's back.
	for _, bad := range [][]string{{"--lock-timeout", "0s"}, {"--statement-timeout", "0s"}, {"--lease-ttl", "0s"}, {"--lock-retries", "-1"},
		{"--lock-timeout", "500us"}, {"--statement-timeout", "999us"}} {
		code, _, stderr = tomb(t, append([]string{"reaper", "--dsn", dsn, "--once"}, bad...)...)
		require.Equal(t, exitUsage, code, "%v: %s", bad, stderr)
		require.Contains(t, stderr, bad[0], bad)
	}
	code, _, stderr = tomb(t, "reaper", "--dsn", dsn, "--once", "--lock-retries", "0")
	require.Equal(t, 0, code, stderr)
	code, _, stderr = tomb(t, "reaper", "--dsn", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "--once")
	require.Equal(t, exitError, code, stderr)
}

// TestReaperTogether starts two reaper processes at the same moment, with
// the advisory lock and with the Redis lease: both exit 0, one purges
// everything, the other stands by.
func TestReaperTogether(t *testing.T) {
	bin := buildBinary(t)
	for _, mode := range []string{"advisory", "redis"} {
		t.Run(mode, func(t *testing.T) {
			dsn, c := reaperDB(t, 2000, 100)
			args := []string{"reaper", "--dsn", dsn, "--once", "--chunk", "500"}
			if mode == "redis" {
				var b [4]byte
				_, _ = rand.Read(b[:])
				args = append(args, "--redis", testenv.RedisAddr(t), "--redis-prefix", "tombstone-test-"+hex.EncodeToString(b[:])+":")
			}
			var wg sync.WaitGroup
			outs := make([]string, 2)
			codes := make([]int, 2)
			start := make(chan struct{})
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command(bin, args...)
					var out bytes.Buffer
					cmd.Stdout = &out
					cmd.Stderr = io.Discard
					<-start
					err := cmd.Run()
					codes[i] = cmd.ProcessState.ExitCode()
					outs[i] = out.String()
					_ = err
				}()
			}
			close(start)
			wg.Wait()
			require.Equal(t, []int{0, 0}, codes, "%q", outs)
			all := outs[0] + outs[1]
			require.Contains(t, all, "purged 200000 tombstones in 2000 batches")
			require.Contains(t, all, "another reaper holds the lease")
			require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tombstone.public__items"))
			require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tombstone.batches WHERE purged_at IS NULL"))
		})
	}
}

// TestReaperKill9 kills a reaper mid-run: the store stays consistent
// (no batch marked purged while rows remain), and the next run finishes.
func TestReaperKill9(t *testing.T) {
	bin := buildBinary(t)
	dsn, c := reaperDB(t, 3000, 100)
	// And one big batch that is cut into chunks.
	_, err := c.Exec(context.Background(), `INSERT INTO tombstone.batches (id, sql, tables, purge_after)
		VALUES (3001, 'DELETE FROM items', '{"public.items": 50000}', now() - interval '2 hours')`)
	require.NoError(t, err)
	_, err = c.Exec(context.Background(), `SET session_replication_role = replica;
		INSERT INTO tombstone.public__items (_ts_batch, _ts_cause, _ts_deleted_at, id, v)
		SELECT 3001, 'delete', now(), 1000000 + g, 'big' FROM generate_series(1, 50000) g;
		RESET session_replication_role`)
	require.NoError(t, err)
	const total = 350000

	// The big batch is due first: the first kill lands inside it, the
	// others among the small batches.
	for round, killAt := range []int64{20000, 80000, 150000} {
		cmd := exec.Command(bin, "reaper", "--dsn", dsn, "--once", "--chunk", "100")
		cmd.Stderr = io.Discard
		require.NoError(t, cmd.Start())
		left := int64(total)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && left > total-killAt {
			time.Sleep(2 * time.Millisecond)
			if round == 0 {
				// The big batch alone, through its index: a quick poll, so
				// the kill lands inside it even on a loaded machine.
				left = total - 50000 + count(t, c, "SELECT count(*) FROM tombstone.public__items WHERE _ts_batch = 3001")
				continue
			}
			// Cheap on a loaded machine: the small batches are 100 rows each.
			left = total - 50000 - 100*count(t, c, "SELECT count(*) FROM tombstone.batches WHERE purged_at IS NOT NULL AND id <> 3001")
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		left = count(t, c, "SELECT count(*) FROM tombstone.public__items")
		require.Greater(t, left, int64(0), "the run finished before the kill")
		consistentStore(t, c)
		t.Logf("killed with %d tombstones left", left)
		if round == 0 {
			require.Greater(t, count(t, c, "SELECT count(*) FROM tombstone.public__items WHERE _ts_batch = 3001"), int64(0),
				"the first kill should land inside the big batch")
			require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tombstone.batches WHERE purged_at IS NOT NULL"))
		}
	}

	out, err := exec.Command(bin, "reaper", "--dsn", dsn, "--once", "--chunk", "5000").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "purged ")
	require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tombstone.public__items"))
	require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tombstone.batches WHERE purged_at IS NULL"))
}

// TestReaperDaemonMetrics runs the daemon with --metrics-listen: after
// its first run the counters show the work, and SIGTERM stops it with 0.
func TestReaperDaemonMetrics(t *testing.T) {
	bin := buildBinary(t)
	dsn, _ := reaperDB(t, 10, 10)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "reaper", "--dsn", dsn, "--interval", "1h", "--metrics-listen", addr)
	cmd.Stderr = io.Discard
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, `tombstone_reaper_runs_total{result="ok"} 1`)
	}, testenv.Hang, 50*time.Millisecond)
	for _, want := range []string{"tombstone_reaper_rows_purged_total 100", "tombstone_reaper_batches_purged_total 10", "tombstone_reaper_lease_held 0", "tombstone_reaper_last_success_timestamp_seconds "} {
		require.Contains(t, body, want, fmt.Sprintf("metrics:\n%s", body))
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}

// TestReaperAllDatabases: --all-databases reaps every database of the
// server that has the store (here those --databases-like selects), and
// names the ones without it.
func TestReaperAllDatabases(t *testing.T) {
	dsn1, c1 := reaperDB(t, 4, 10)
	dsn2, c2 := reaperDB(t, 2, 5)
	bare := testenv.FreshDB(t, "ts_reaper")
	names := []string{dbOf(t, dsn1), dbOf(t, dsn2), dbOf(t, bare)}
	// One pattern that selects exactly these three: their names differ
	// only in the random suffix FreshDB gives them.
	like := "ts_reaper_%"
	for _, n := range names {
		require.True(t, strings.HasPrefix(n, "ts_reaper_"), n)
	}

	code, out, stderr := tomb(t, "reaper", "--dsn", dsn1, "--all-databases", "--databases-like", like, "--once", "--json")
	require.Equal(t, 0, code, stderr)
	var reports []struct {
		Database string
		Report   *struct {
			Rows int64 `json:"rows_purged"`
		}
		Skipped string
		Error   string
	}
	require.NoError(t, json.Unmarshal([]byte(out), &reports), out)
	got := map[string]string{}
	for _, r := range reports {
		switch {
		case r.Report != nil:
			got[r.Database] = fmt.Sprintf("purged %d", r.Report.Rows)
		case r.Skipped != "":
			got[r.Database] = r.Skipped
		default:
			got[r.Database] = "error " + r.Error
		}
	}
	require.Equal(t, "purged 40", got[names[0]])
	require.Equal(t, "purged 10", got[names[1]])
	require.Equal(t, "no tombstone store", got[names[2]])
	require.Equal(t, int64(0), count(t, c1, "SELECT count(*) FROM tombstone.public__items"))
	require.Equal(t, int64(0), count(t, c2, "SELECT count(*) FROM tombstone.public__items"))
}

// dbOf returns the database a URL names.
func dbOf(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	return cfg.Database
}
