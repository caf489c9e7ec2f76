package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// buildBinary builds cmd/tombstone once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tombstone")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startProxyBinary starts bin (`tombstone proxy` and args) with the given
// environment. Its output is kept and shown if the test fails; exited
// delivers how it ended. The test's end kills it and waits for it.
func startProxyBinary(t *testing.T, bin string, env []string, args ...string) (cmd *exec.Cmd, exited <-chan error) {
	t.Helper()
	cmd = exec.Command(bin, append([]string{"proxy"}, args...)...)
	cmd.Env = env
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	ch, done := make(chan error, 1), make(chan struct{})
	go func() {
		ch <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("proxy output:\n%s", logs.String())
		}
	})
	return cmd, ch
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestProxyBinary runs `tombstone proxy` as users do: the metrics
// endpoints answer, a client works through it, SIGHUP reloads, and SIGTERM
// ends open sessions with 57P01 after shutdown_timeout and exits 0.
func TestProxyBinary(t *testing.T) {
	upstream := testenv.PGAddr(t)
	bin := buildBinary(t)
	listen, metrics := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "tombstone.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("shutdown_timeout: 1s\nlog:\n  level: warn\n"), 0o600))
	u, _ := url.Parse(testenv.PGURL(t))
	cmd, exited := startProxyBinary(t, bin,
		append(os.Environ(), "PGUSER="+u.User.Username(), "PGHOST="+u.Hostname(), "PGPORT="+u.Port(), "PGSSLMODE=disable"),
		"--config", cfg, "--listen", listen, "--upstream", upstream, "--metrics-listen", metrics)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.WaitFor(t, testenv.Hang, "/healthz", func() bool { c, _ := get("/healthz"); return c == 200 })
	code, _ := get("/readyz")
	require.Equal(t, 200, code, "upstream reachable: ready")

	dsn := testenv.WithHostPort(t, testenv.PGURL(t), listen, nil)
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT 41 + 1").Scan(&n))
	require.Equal(t, 42, n)
	_, body := get("/metrics")
	require.Contains(t, body, "tombstone_proxy_connections_active 1")
	// A long statement the planner looks at is first parsed in a child
	// process (tombstone parse-check), then runs as usual.
	long := "SELECT count(*) FROM (VALUES (1)" + strings.Repeat(", (1)", 10000) + ") v(x) -- delete"
	require.Greater(t, len(long), rewrite.TrialParseOver)
	require.NoError(t, conn.QueryRow(context.Background(), long).Scan(&n))
	require.Equal(t, 10001, n)
	// Planned, it needed the database's catalog: one load.
	_, body = get("/metrics")
	require.Regexp(t, `tombstone_proxy_catalog_loads_total\{result="ok"\} [1-9]`, body)
	require.Contains(t, body, `tombstone_proxy_catalog_loads_total{result="error"} 0`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT 1").Scan(&n), "still serving after SIGHUP")

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(testenv.Hang):
		t.Fatal("proxy did not exit after SIGTERM")
	}
	require.GreaterOrEqual(t, time.Since(start), time.Second, "open sessions get shutdown_timeout")
	require.Error(t, conn.QueryRow(context.Background(), "SELECT 1").Scan(&n), "session ended by shutdown")
}

// TestProxyBinaryRefusesBadConfig: a bad key stops the start, naming it.
func TestProxyBinaryRefusesBadConfig(t *testing.T) {
	bin := buildBinary(t)
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("guards:\n  max_rowz: 5\n"), 0o600))
	out, err := exec.Command(bin, "proxy", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "max_rowz")
}

// TestProxyBinaryControlFollowsUpstream: without control_dsn, PGHOST or
// PGPORT, the proxy's own connections (catalog, schema install) go to the
// upstream it was given — here a server on a port that is not 5432 — and
// a DELETE through it is tombstoned.
func TestProxyBinaryControlFollowsUpstream(t *testing.T) {
	dbURL := testenv.FreshDB(t, "ts_ctl")
	direct := testenv.Connect(t, dbURL)
	ctx := context.Background()
	_, err := direct.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 3) i")
	require.NoError(t, err)

	bin := buildBinary(t)
	listen := freeAddr(t)
	u, _ := url.Parse(dbURL)
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "PGHOST" && k != "PGHOSTADDR" && k != "PGPORT" && k != "TOMBSTONE_CONTROL_DSN" {
			env = append(env, kv)
		}
	}
	startProxyBinary(t, bin, append(env, "PGUSER="+u.User.Username(), "PGSSLMODE=disable"),
		"--listen", listen, "--upstream", testenv.PGAddr(t), "--log-level", "warn")

	var conn *pgx.Conn
	testenv.WaitFor(t, testenv.Hang, "the proxy to accept", func() bool {
		conn, err = pgx.Connect(ctx, testenv.WithHostPort(t, dbURL, listen, nil))
		return err == nil
	})
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, "DELETE FROM items WHERE id = 2")
	require.NoError(t, err, "the control connection reached the upstream")
	require.Equal(t, "DELETE 1", tag.String())
	var batches, stored int
	require.NoError(t, direct.QueryRow(ctx, "SELECT (SELECT count(*) FROM tombstone.batches), (SELECT count(*) FROM tombstone.public__items WHERE id = 2)").Scan(&batches, &stored))
	require.Equal(t, 1, batches)
	require.Equal(t, 1, stored)
}

// TestProxyBinaryFreezeMetric: FREEZE DELETES and THAW DELETES show in
// tombstone_proxy_deletes_frozen of the database (the freeze notifies the
// proxies, which load the catalog again).
func TestProxyBinaryFreezeMetric(t *testing.T) {
	// (The database first: cleanups run last first, so the proxy and its
	// connections to it are gone before it is dropped.)
	dsn := testenv.FreshDB(t, "ts_freeze")
	db := dbOf(t, dsn)
	upstream := testenv.PGAddr(t)
	bin := buildBinary(t)
	listen, metrics := freeAddr(t), freeAddr(t)
	u, _ := url.Parse(testenv.PGURL(t))
	startProxyBinary(t, bin,
		append(os.Environ(), "PGUSER="+u.User.Username(), "PGHOST="+u.Hostname(), "PGPORT="+u.Port(), "PGSSLMODE=disable"),
		"--listen", listen, "--upstream", upstream, "--metrics-listen", metrics, "--log-level", "warn")
	testenv.WaitFor(t, testenv.Hang, "/healthz", func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	conn := testenv.Connect(t, testenv.WithHostPort(t, dsn, listen, nil))
	ctx := context.Background()
	_, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); DELETE FROM t WHERE id = 1")
	require.NoError(t, err)
	gauge := func() string {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, `tombstone_proxy_deletes_frozen{database="`+db+`"}`) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		return ""
	}
	testenv.WaitFor(t, testenv.Hang, "gauge 0", func() bool { return gauge() == "0" })
	_, err = conn.Exec(ctx, "FREEZE DELETES", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	testenv.WaitFor(t, testenv.Hang, "gauge 1 after FREEZE", func() bool { return gauge() == "1" })
	_, err = conn.Exec(ctx, "THAW DELETES", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	testenv.WaitFor(t, testenv.Hang, "gauge 0 after THAW", func() bool { return gauge() == "0" })
}
