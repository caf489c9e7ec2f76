package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
)

// TestPgx runs pgx's normal workload through the proxy: extended protocol,
// SendBatch pipelines, CopyFrom, cancel on context timeout, LISTEN/NOTIFY.
func TestPgx(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testPgx(t, testenv.StartProxy(t)) })
	t.Run("tracked", func(t *testing.T) {
		testPgx(t, testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtEverything{} }))
	})
}

func testPgx(t *testing.T, px *testenv.Proxy) {
	ctx := context.Background()
	conn := testenv.Connect(t, px.DSN)
	_, err := conn.Exec(ctx, `DROP TABLE IF EXISTS pgx_t; CREATE TABLE pgx_t (id int PRIMARY KEY, name text, at timestamptz, data bytea)`)
	require.NoError(t, err)

	t.Run("extended", func(t *testing.T) {
		var n int
		var s string
		require.NoError(t, conn.QueryRow(ctx, "SELECT $1::int + 1, $2::text", 41, "x").Scan(&n, &s))
		require.Equal(t, 42, n)
		require.Equal(t, "x", s)
	})

	t.Run("copyfrom", func(t *testing.T) {
		rows := make([][]any, 5000)
		for i := range rows {
			rows[i] = []any{i, fmt.Sprintf("name %d", i), time.Unix(int64(i), 0), []byte(strings.Repeat("b", i%300))}
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"pgx_t"}, []string{"id", "name", "at", "data"}, pgx.CopyFromRows(rows))
		require.NoError(t, err)
		require.EqualValues(t, 5000, n)
		var sum int64
		require.NoError(t, conn.QueryRow(ctx, "SELECT sum(length(data)) FROM pgx_t").Scan(&sum))
		var want int64
		for i := range 5000 {
			want += int64(i % 300)
		}
		require.Equal(t, want, sum)
	})

	t.Run("batch pipeline", func(t *testing.T) {
		b := &pgx.Batch{}
		for i := range 100 {
			b.Queue("SELECT name FROM pgx_t WHERE id = $1", i)
		}
		b.Queue("SELECT 1/0")
		b.Queue("SELECT 2")
		br := conn.SendBatch(ctx, b)
		for i := range 100 {
			var name string
			require.NoError(t, br.QueryRow().Scan(&name))
			require.Equal(t, fmt.Sprintf("name %d", i), name)
		}
		var one int
		err := br.QueryRow().Scan(&one)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "22012", pe.Code)
		require.Error(t, br.QueryRow().Scan(&one), "statement after the failed one is skipped")
		require.ErrorAs(t, br.Close(), &pe, "Close reports the pipeline's first error")
		require.NoError(t, conn.QueryRow(ctx, "SELECT 3").Scan(&one), "connection usable after a failed pipeline")
		require.Equal(t, 3, one)
	})

	t.Run("large values", func(t *testing.T) {
		big := strings.Repeat("0123456789", 300_000) // 3 MB: larger than the proxy's buffers
		var got string
		require.NoError(t, conn.QueryRow(ctx, "SELECT $1::text", big).Scan(&got))
		require.Equal(t, big, got)
	})

	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := conn.Exec(cctx, "SELECT pg_sleep(600)")
		require.Error(t, err)
		require.Less(t, time.Since(start), testenv.Hang, "cancel must reach the server")
		// pgx closes the connection after a context cancel mid-query; a new
		// one must work, and the server backend must have been cancelled.
		conn2 := testenv.Connect(t, px.DSN)
		testenv.WaitFor(t, testenv.Hang, "sleeping backend to go away", func() bool {
			var n int
			require.NoError(t, conn2.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)' AND state = 'active'").Scan(&n))
			return n == 0
		})
	})

	t.Run("listen notify", func(t *testing.T) {
		l := testenv.Connect(t, px.DSN)
		_, err := l.Exec(ctx, "LISTEN proxy_chan")
		require.NoError(t, err)
		other := testenv.Connect(t, px.DSN)
		_, err = other.Exec(ctx, "SELECT pg_notify('proxy_chan', 'hi there')")
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, testenv.Hang)
		defer cancel()
		n, err := l.WaitForNotification(wctx)
		require.NoError(t, err)
		require.Equal(t, "hi there", n.Payload)
	})
}

// TestAuth relays md5, SCRAM-SHA-256 and cleartext password authentication
// (roles and pg_hba lines from scripts/testenv.sh), and passes wrong
// passwords' errors through.
func TestAuth(t *testing.T) {
	px := testenv.StartProxy(t)
	for _, c := range []struct{ user, pass string }{
		{"md5user", "md5pass"}, {"scramuser", "scrampass"}, {"passuser", "plainpass"},
	} {
		t.Run(c.user, func(t *testing.T) {
			dsn := testenv.WithHostPort(t, px.DSN, px.Addr, url.UserPassword(c.user, c.pass))
			conn := testenv.Connect(t, dsn)
			var who string
			require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_user").Scan(&who))
			require.Equal(t, c.user, who)

			bad := testenv.WithHostPort(t, px.DSN, px.Addr, url.UserPassword(c.user, "wrong"))
			_, err := pgx.Connect(context.Background(), bad)
			var pe *pgconn.PgError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, "28P01", pe.Code)
		})
	}
}

// TestTLS: TLS from client to proxy (a certificate is configured), and from
// proxy to the server (which has ssl=on in the test setup). SCRAM is relayed
// without SCRAM-SHA-256-PLUS, which cannot work across two TLS legs.
func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	ctx := context.Background()
	both := testenv.StartProxy(t, func(c *proxy.Config) {
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.UpstreamTLS = proxy.UpstreamTLSRequire
	})
	tlsDSN := func(px *testenv.Proxy, user, pass, extra string) string {
		dsn := strings.Replace(px.DSN, "sslmode=disable", "sslmode=require"+extra, 1)
		return testenv.WithHostPort(t, dsn, px.Addr, url.UserPassword(user, pass))
	}
	check := func(conn *pgx.Conn, upstreamTLS bool) {
		var ssl bool
		require.NoError(t, conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl))
		require.Equal(t, upstreamTLS, ssl, "proxy → server leg TLS")
		_, isTLS := conn.PgConn().Conn().(*tls.Conn)
		require.True(t, isTLS, "client → proxy leg must be TLS")
	}
	check(testenv.Connect(t, tlsDSN(both, "postgres", "", "")), true)
	check(testenv.Connect(t, tlsDSN(both, "md5user", "md5pass", "")), true)
	// SCRAM over two TLS legs: a client that supports channel binding says
	// so ("y"), and a TLS server must then refuse (downgrade protection).
	// With channel_binding=disable it works; without, the client gets a
	// clean authentication error, not a dropped connection.
	check(testenv.Connect(t, tlsDSN(both, "scramuser", "scrampass", "&channel_binding=disable")), true)
	_, err := pgx.Connect(ctx, tlsDSN(both, "scramuser", "scrampass", ""))
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "28000", pe.Code, pe.Message)

	// TLS to clients only: SCRAM works with every client setting.
	clientOnly := testenv.StartProxy(t, func(c *proxy.Config) {
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	check(testenv.Connect(t, tlsDSN(clientOnly, "scramuser", "scrampass", "")), false)
	// The event loop speaks plain sockets only: TLS sessions stay on the
	// goroutine pumps.
	for _, px := range []*testenv.Proxy{both, clientOnly} {
		require.Zero(t, testutil.ToFloat64(px.Metrics().LoopSessions), "a TLS session joined the event loop")
	}

	// Without a certificate the proxy answers 'N': sslmode=require fails,
	// sslmode=prefer falls back to plain.
	plain := testenv.StartProxy(t)
	_, err = pgx.Connect(ctx, strings.Replace(plain.DSN, "sslmode=disable", "sslmode=require", 1))
	require.Error(t, err)
	testenv.Connect(t, strings.Replace(plain.DSN, "sslmode=disable", "sslmode=prefer", 1))
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestPsql runs psql scripts (COPY FROM STDIN, cursors, \; multi-statements,
// errors) directly and through the proxy; the outputs must be identical.
func TestPsql(t *testing.T) {
	psql := testenv.Tool(t, "psql")
	px := testenv.StartProxy(t)
	script := `\set ON_ERROR_STOP 0
SET client_min_messages = warning;
DROP TABLE IF EXISTS psql_t;
CREATE TABLE psql_t (id int PRIMARY KEY, v text);
COPY psql_t FROM STDIN;
1	one
2	two
3	three
\.
SELECT * FROM psql_t ORDER BY id;
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM psql_t ORDER BY id;
FETCH 2 FROM c;
FETCH NEXT FROM c;
CLOSE c;
COMMIT;
SELECT 1 AS a \; SELECT 2 AS b \; SELECT 3 AS c;
SELECT 1/0;
INSERT INTO psql_t VALUES (1, 'dup');
\copy psql_t TO STDOUT WITH (FORMAT csv)
SELECT count(*) FROM psql_t;
`
	run := func(dsn string) string {
		cmd := exec.Command(psql, "-X", "-q", dsn)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	direct := run(testenv.PGURL(t))
	through := run(px.DSN)
	require.Equal(t, direct, through)
	require.Contains(t, direct, "three")
	require.Contains(t, direct, "division by zero")
	require.Contains(t, direct, "3,three")
}

// TestPgbench runs a short pgbench in simple, extended and prepared mode
// through the proxy: zero failed transactions.
func TestPgbench(t *testing.T) {
	pgbench := testenv.Tool(t, "pgbench")
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtEverything{} })
	u, _ := url.Parse(px.DSN)
	host, port := u.Hostname(), u.Port()
	fresh, _ := url.Parse(testenv.FreshDB(t, "ts_pgbench"))
	db := strings.TrimPrefix(fresh.Path, "/")
	out, err := exec.Command(pgbench, "-i", "-q", "-s", "1", "-h", host, "-p", port, "-U", "postgres", db).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			// A count, not a duration: on a loaded machine a short run
			// could end before its clients had connected.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, pgbench, "-c", "4", "-j", "2", "-t", "250", "-M", mode, "-h", host, "-p", port, "-U", "postgres", db).CombinedOutput()
			require.NoError(t, err, string(out))
			require.Contains(t, string(out), "number of failed transactions: 0 (0.000%)")
			require.Contains(t, string(out), "number of transactions actually processed: 1000/1000")
		})
	}
}

// TestClientTLSRequired (issue 15, item 11): with tls.client: require, a
// client that does not start TLS is refused with the error Postgres sends
// when pg_hba.conf allows only hostssl (the server, seeing only the
// proxy's connection, cannot tell); one that does start TLS is served.
func TestClientTLSRequired(t *testing.T) {
	cert := selfSigned(t)
	ctx := context.Background()
	px := testenv.StartProxy(t, func(c *proxy.Config) {
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.ClientTLSRequired = true
	})
	for _, mode := range []string{"disable", "prefer"} {
		if mode == "prefer" {
			conn := testenv.Connect(t, strings.Replace(px.DSN, "sslmode=disable", "sslmode=prefer", 1))
			_, isTLS := conn.PgConn().Conn().(*tls.Conn)
			require.True(t, isTLS, "prefer starts TLS and is served")
			continue
		}
		_, err := pgx.Connect(ctx, px.DSN)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "28000", pe.Code)
		require.Equal(t, "FATAL", pe.Severity)
		require.Regexp(t, `^no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "[a-z_0-9]+", no encryption$`, pe.Message)
	}
	testenv.Connect(t, strings.Replace(px.DSN, "sslmode=disable", "sslmode=require", 1))
}
