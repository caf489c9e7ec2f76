// Package testenv gives integration tests the real PostgreSQL and Redis that
// `make test` starts (scripts/testenv.sh), and an in-process proxy in front
// of that PostgreSQL.
//
// Tests skip with a clear message when TOMBSTONE_TEST_PG is not set — except
// under CI (CI=true), where a missing database is a failure, never a skip.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tombstone-proxy/tombstone/proxy"
)

// PGURL returns the test database URL (TOMBSTONE_TEST_PG).
func PGURL(t testing.TB) string {
	t.Helper()
	return need(t, "TOMBSTONE_TEST_PG")
}

// RedisAddr returns the test Redis address (TOMBSTONE_TEST_REDIS).
func RedisAddr(t testing.TB) string {
	t.Helper()
	return need(t, "TOMBSTONE_TEST_REDIS")
}

func need(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must run integration tests (use `make test`)", name)
		}
		t.Skipf("%s is not set; run `make test` to start a real PostgreSQL and Redis", name)
	}
	return v
}

// PGAddr returns host:port of the test database.
func PGAddr(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(PGURL(t))
	if err != nil {
		t.Fatalf("TOMBSTONE_TEST_PG: %v", err)
	}
	return u.Host
}

// WithHostPort returns dsn (a postgres:// URL) pointed at addr, with user
// and password replaced when given.
func WithHostPort(t testing.TB, dsn, addr string, userinfo *url.Userinfo) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("bad dsn %q: %v", dsn, err)
	}
	u.Host = addr
	if userinfo != nil {
		u.User = userinfo
	}
	return u.String()
}

// Proxy is an in-process proxy in front of the test database.
type Proxy struct {
	*proxy.Server
	Addr string // host:port the proxy listens on
	DSN  string // the test database URL, through the proxy
}

var (
	loopsOnce sync.Once
	loops     *proxy.Loops
)

// Loops returns the event loop the test proxies share (started once per
// test binary, as the proxy binary starts its own once).
func Loops(t testing.TB) *proxy.Loops {
	t.Helper()
	loopsOnce.Do(func() {
		var err error
		if loops, err = proxy.NewLoops(1, nil); err != nil {
			t.Logf("no event loops: %v", err)
		}
	})
	return loops
}

// Pumps makes a proxy run every session on goroutine pumps, without the
// event loop.
func Pumps(c *proxy.Config) { c.Loops = nil }

// StartProxy starts a proxy on a free loopback port in front of the test
// database and stops it when the test ends. Like the binary's, its
// sessions run on the event loop (Pumps turns that off).
func StartProxy(t testing.TB, mod ...func(*proxy.Config)) *Proxy {
	t.Helper()
	cfg := proxy.Config{Upstream: PGAddr(t), Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Loops: Loops(t)}
	for _, m := range mod {
		m(&cfg)
	}
	srv := proxy.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	addr := ln.Addr().String()
	return &Proxy{Server: srv, Addr: addr, DSN: WithHostPort(t, PGURL(t), addr, nil)}
}

// Hang is how long a test waits for something that takes milliseconds
// when all is well before it calls it a hang. It is long on purpose: a
// CI machine can stall for most of a minute (a stop's CI run once did,
// in the middle of a conversation that then timed out at 20 s), and a
// real hang shows at two minutes as well as at twenty seconds.
const Hang = 2 * time.Minute

// Connect opens a pgx connection to dsn, closed when the test ends.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Hang)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Exec runs sql on a fresh direct connection (for setup).
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn := Connect(t, PGURL(t))
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("setup %q: %v", sql, err)
	}
}

// WaitFor polls cond until it is true or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreshDB creates a database of its own for one test (tests of several
// packages share the server concurrently), drops it when the test ends,
// and returns its URL. prefix names it, e.g. "ts_e2e".
func FreshDB(t testing.TB, prefix string) string {
	t.Helper()
	base := PGURL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	admin := Connect(t, base)
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TOMBSTONE_TEST_PG: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Tool finds a PostgreSQL client program (psql, pgbench) in
// TOMBSTONE_TEST_PGBIN or on PATH. Missing, it skips the test — or fails
// it under CI, where `make test` installs the clients.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("TOMBSTONE_TEST_PGBIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: CI must run the client tests (use `make test`)", name)
		}
		t.Skipf("%s not found; run `make test`", name)
	}
	return p
}
