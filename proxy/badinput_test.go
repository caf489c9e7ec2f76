package proxy_test

import (
	"context"
	"encoding/binary"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
)

// startup opens a raw protocol connection to addr, authenticated.
func startup(t *testing.T, addr string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn := dial(t, addr)
	return conn, login(t, conn)
}

// dial connects to addr, closed when the test ends, with testenv.Hang as
// its deadline.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testenv.Hang)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	return conn
}

// sendStartup sends a startup packet for the test database on conn, as
// the test user unless params say otherwise.
func sendStartup(t *testing.T, conn net.Conn, params map[string]string) *pgproto3.Frontend {
	t.Helper()
	fe := pgproto3.NewFrontend(conn, conn)
	u, _ := url.Parse(testenv.PGURL(t))
	p := map[string]string{"user": u.User.Username(), "database": strings.TrimPrefix(u.Path, "/")}
	maps.Copy(p, params)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: p})
	require.NoError(t, fe.Flush())
	return fe
}

// login sends the test user's startup packet on conn and reads up to the
// first ReadyForQuery.
func login(t *testing.T, conn net.Conn) *pgproto3.Frontend {
	t.Helper()
	fe := sendStartup(t, conn, nil)
	for {
		msg, err := fe.Receive()
		require.NoError(t, err)
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return fe
		}
	}
}

// expectFatal reads until an ErrorResponse and checks its code, then checks
// the connection is closed.
func expectFatal(t *testing.T, conn net.Conn, fe *pgproto3.Frontend, code string) *pgproto3.ErrorResponse {
	t.Helper()
	for {
		msg, err := fe.Receive()
		require.NoError(t, err, "expected an ErrorResponse %s before the connection closes", code)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			require.Equal(t, code, e.Code, e.Message)
			_, err := conn.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF, "connection must be closed after a FATAL error")
			return e
		}
	}
}

// TestOversizedAuthAnswer: before login, a password message longer than
// Postgres reads (64 KiB) closes the connection at its header, as from
// Postgres; the proxy once waited for a 1 GiB body to arrive, holding a
// buffer that size (startup timeout set long so that a wait shows).
func TestOversizedAuthAnswer(t *testing.T) {
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.StartupTimeout = 10 * time.Minute })
	conn := dial(t, px.Addr)
	fe := sendStartup(t, conn, map[string]string{"user": "passuser"})
	msg, err := fe.Receive()
	require.NoError(t, err)
	require.IsType(t, &pgproto3.AuthenticationCleartextPassword{}, msg)
	_, err = conn.Write([]byte{'p', 0x3f, 0xff, 0xff, 0xff})
	require.NoError(t, err)
	_, err = conn.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
}

// expectSilentClose: the connection ends with no further message, as
// Postgres ends it on a frame length it will not read (it logs the
// violation and tells the client nothing).
func expectSilentClose(t *testing.T, conn net.Conn, fe *pgproto3.Frontend) {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	for {
		msg, err := fe.Receive()
		if err != nil {
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the connection stays open")
			return
		}
		_, isErr := msg.(*pgproto3.ErrorResponse)
		require.False(t, isErr, "an error sent: %+v", msg)
	}
}

func TestMalformedMessages(t *testing.T) {
	px := testenv.StartProxy(t)
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"length below 4", []byte{'Q', 0, 0, 0, 2}},
		{"length over 1 GiB", []byte{'Q', 0x7f, 0xff, 0xff, 0xff}},
		{"negative length", []byte{'P', 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, fe := startup(t, px.Addr)
			_, err := conn.Write(c.raw)
			require.NoError(t, err)
			expectSilentClose(t, conn, fe)
		})
	}
	t.Run("startup packet length out of range", func(t *testing.T) {
		for _, raw := range [][]byte{
			{0, 0, 0, 3},             // length too small
			{0, 1, 0, 0, 0, 3, 0, 0}, // length 65536: too large
			{'X', 0, 0, 0, 4},        // a Terminate before any startup packet (node-postgres)
		} {
			conn, err := net.DialTimeout("tcp", px.Addr, testenv.Hang)
			require.NoError(t, err)
			_, err = conn.Write(raw)
			require.NoError(t, err)
			expectSilentClose(t, conn, pgproto3.NewFrontend(conn, conn))
			conn.Close()
		}
	})
	t.Run("bad startup packet", func(t *testing.T) {
		for _, raw := range [][]byte{
			{0, 0, 0, 8, 0, 2, 0, 0},        // protocol 2.0
			{0, 0, 0, 9, 0, 3, 0, 0, 'x'},   // 3.0 without a terminator
			{0, 0, 0, 10, 0, 3, 0, 0, 0, 0}, // no user
		} {
			conn, err := net.DialTimeout("tcp", px.Addr, testenv.Hang)
			require.NoError(t, err)
			require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
			_, err = conn.Write(raw)
			require.NoError(t, err)
			fe := pgproto3.NewFrontend(conn, conn)
			msg, err := fe.Receive()
			require.NoError(t, err, "startup %x", raw)
			e, ok := msg.(*pgproto3.ErrorResponse)
			require.True(t, ok, "startup %x: got %T", raw, msg)
			require.Equal(t, "FATAL", e.Severity)
			require.Contains(t, []string{"08P01", "0A000", "28000"}, e.Code)
			conn.Close()
		}
	})
	t.Run("huge statement", func(t *testing.T) {
		conn := testenv.Connect(t, px.DSN)
		lit := strings.Repeat("x", 20<<20) // a 20 MB statement
		var n int
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT length('"+lit+"')").Scan(&n))
		require.Equal(t, 20<<20, n)
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT 1").Scan(&n))
	})
	testenv.WaitFor(t, testenv.Hang, "sessions to end", func() bool { return px.Sessions() == 0 })
}

func TestUnreachableUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close() // nothing listens here now
	px := testenv.StartProxy(t, func(c *proxy.Config) { c.Upstream = dead })
	_, err = pgx.Connect(context.Background(), px.DSN)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "08001", pe.Code)
	require.Contains(t, pe.Hint, dead)
}

// TestServerGoesAway: the server ends a session (pg_terminate_backend) and a
// server that drops connections without a word; the client gets an error
// with a SQLSTATE either way.
func TestServerGoesAway(t *testing.T) {
	px := testenv.StartProxy(t)
	ctx := context.Background()
	victim := testenv.Connect(t, px.DSN)
	var pid int
	require.NoError(t, victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	killer := testenv.Connect(t, testenv.PGURL(t))
	_, err := killer.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	_, err = victim.Exec(ctx, "SELECT 1")
	require.Error(t, err)

	// A "server" that accepts and hangs up straight away.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	bad := testenv.StartProxy(t, func(c *proxy.Config) { c.Upstream = ln.Addr().String() })
	_, err = pgx.Connect(ctx, bad.DSN)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "08006", pe.Code)
}

// TestClientFinishesSending: a client that ends its side of the
// connection right behind a query — a half-close, or a Terminate in the
// same write — still gets every answer, as from Postgres, which answers
// all it read before the end; then the connection closes. On the event
// loop and on the goroutine pumps.
func TestClientFinishesSending(t *testing.T) {
	for name, mod := range map[string]func(*proxy.Config){"loop": func(*proxy.Config) {}, "pumps": testenv.Pumps} {
		t.Run(name, func(t *testing.T) {
			px := testenv.StartProxy(t, mod)
			for _, end := range []string{"half-close", "terminate"} {
				conn, fe := startup(t, px.Addr)
				fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.2); SELECT 42 AS answer"})
				if end == "terminate" {
					fe.Send(&pgproto3.Terminate{})
				}
				require.NoError(t, fe.Flush())
				if end == "half-close" {
					require.NoError(t, conn.(*net.TCPConn).CloseWrite())
				}
				var got []string
				for {
					msg, err := fe.Receive()
					if err != nil {
						require.ErrorIs(t, err, io.ErrUnexpectedEOF, end)
						break
					}
					switch m := msg.(type) {
					case *pgproto3.DataRow:
						got = append(got, string(m.Values[0]))
					case *pgproto3.CommandComplete:
						got = append(got, string(m.CommandTag))
					case *pgproto3.ReadyForQuery:
						got = append(got, "Z")
					}
				}
				require.Equal(t, []string{"", "SELECT 1", "42", "SELECT 1", "Z"}, got, end)
			}
			testenv.WaitFor(t, testenv.Hang, "sessions to end", func() bool { return px.Sessions() == 0 })
		})
	}
}

// TestClientVanishes: clients that disappear mid-query, mid-message and
// mid-startup leave no session, goroutine or server backend behind.
func TestClientVanishes(t *testing.T) {
	px := testenv.StartProxy(t)
	before := runtime.NumGoroutine()
	ctx := context.Background()
	for range 10 {
		conn, fe := startup(t, px.Addr)
		fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.2) /* vanish */"})
		require.NoError(t, fe.Flush())
		conn.Close()

		conn, _ = startup(t, px.Addr)
		_, _ = conn.Write([]byte{'Q', 0, 0, 0, 100, 'S', 'E'}) // half a message
		conn.Close()

		conn, err := net.Dial("tcp", px.Addr)
		require.NoError(t, err)
		_, _ = conn.Write([]byte{0, 0, 0, 40, 0, 3}) // half a startup packet
		conn.Close()
	}
	// Normal sessions, some closed without Terminate.
	for i := range 10 {
		c, err := pgx.Connect(ctx, px.DSN)
		require.NoError(t, err)
		require.NoError(t, c.Ping(ctx))
		if i%2 == 0 {
			c.PgConn().Conn().Close()
		} else {
			c.Close(ctx)
		}
	}
	testenv.WaitFor(t, testenv.Hang, "all sessions to end", func() bool { return px.Sessions() == 0 })
	testenv.WaitFor(t, testenv.Hang, "goroutines to wind down", func() bool { return runtime.NumGoroutine() <= before+2 })
	direct := testenv.Connect(t, testenv.PGURL(t))
	testenv.WaitFor(t, testenv.Hang, "server backends to end", func() bool {
		var n int
		require.NoError(t, direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/* vanish */%' AND pid <> pg_backend_pid()").Scan(&n))
		return n == 0
	})
}

// TestShutdown: Shutdown waits for sessions until its deadline, then ends
// them with 57P01 and refuses new connections.
func TestShutdown(t *testing.T) {
	px := testenv.StartProxy(t)
	conn, fe := startup(t, px.Addr)
	start := time.Now() // before the deadline is set: it counts from then
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, px.Shutdown(ctx), context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "idle sessions get the grace period")
	e := expectFatal(t, conn, fe, "57P01")
	require.Contains(t, e.Message, "shutdown")
	_, err := net.DialTimeout("tcp", px.Addr, time.Second)
	require.Error(t, err, "no new connections after shutdown")
}

// TestCancelRequestForwarded: a raw CancelRequest for a session's backend
// key reaches the server.
func TestCancelRequestForwarded(t *testing.T) {
	px := testenv.StartProxy(t)
	conn, err := net.DialTimeout("tcp", px.Addr, testenv.Hang)
	require.NoError(t, err)
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	u, _ := url.Parse(testenv.PGURL(t))
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": u.User.Username(), "database": strings.TrimPrefix(u.Path, "/")}})
	require.NoError(t, fe.Flush())
	var key *pgproto3.BackendKeyData
	for {
		msg, err := fe.Receive()
		require.NoError(t, err)
		if k, ok := msg.(*pgproto3.BackendKeyData); ok {
			key = &pgproto3.BackendKeyData{ProcessID: k.ProcessID, SecretKey: append([]byte(nil), k.SecretKey...)}
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	require.NotNil(t, key)
	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(600)"})
	require.NoError(t, fe.Flush())
	time.Sleep(100 * time.Millisecond)
	cc, err := net.Dial("tcp", px.Addr)
	require.NoError(t, err)
	pkt := binary.BigEndian.AppendUint32(nil, uint32(12+len(key.SecretKey)))
	pkt = binary.BigEndian.AppendUint32(pkt, 80877102)
	pkt = binary.BigEndian.AppendUint32(pkt, key.ProcessID)
	pkt = append(pkt, key.SecretKey...)
	_, err = cc.Write(pkt)
	require.NoError(t, err)
	cc.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	for {
		msg, err := fe.Receive()
		require.NoError(t, err)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			require.Equal(t, "57014", e.Code) // query_canceled
			return
		}
	}
}

// TestGSSENCRequestRefused: GSS encryption is answered 'N' and the client
// goes on with a normal startup on the same connection.
func TestGSSENCRequestRefused(t *testing.T) {
	px := testenv.StartProxy(t)
	conn := encryptionRequests(t, px.Addr, gssRequest)
	login(t, conn)
}

var (
	sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	gssRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}
)

// encryptionRequests connects to addr and sends each request, expecting
// 'N' for each.
func encryptionRequests(t *testing.T, addr string, reqs ...[]byte) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testenv.Hang)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	for _, req := range reqs {
		_, err = conn.Write(req)
		require.NoError(t, err)
		b := make([]byte, 1)
		_, err = io.ReadFull(conn, b)
		require.NoError(t, err)
		require.Equal(t, byte('N'), b[0])
	}
	return conn
}

// TestEncryptionRequestsOnce: as in Postgres, an SSLRequest and a
// GSSENCRequest are each answered once (either order); a second of either
// reads as an unknown protocol version, FATAL 0A000.
func TestEncryptionRequestsOnce(t *testing.T) {
	px := testenv.StartProxy(t)
	ssl, gss := sslRequest, gssRequest
	for name, c := range map[string]struct {
		answered [][]byte // each gets 'N'
		again    []byte   // then refused; nil: a normal startup follows
	}{
		"ssl twice":         {[][]byte{ssl}, ssl},
		"gss twice":         {[][]byte{gss}, gss},
		"ssl, gss, ssl":     {[][]byte{ssl, gss}, ssl},
		"gss, ssl, gss":     {[][]byte{gss, ssl}, gss},
		"ssl, gss, startup": {[][]byte{ssl, gss}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			conn := encryptionRequests(t, px.Addr, c.answered...)
			if c.again == nil {
				login(t, conn)
				return
			}
			_, err := conn.Write(c.again)
			require.NoError(t, err)
			e := expectFatal(t, conn, pgproto3.NewFrontend(conn, conn), "0A000")
			require.Contains(t, e.Message, "unsupported frontend protocol 1234.")
		})
	}
}

// TestStartupMinorVersions: a startup packet of any 3.x version goes to
// the server, which answers a minor version it does not speak with
// NegotiateProtocolVersion and carries on, as without the proxy; a packet
// with no parameters at all is refused for its missing user (28000).
func TestStartupMinorVersions(t *testing.T) {
	px := testenv.StartProxy(t)
	u, _ := url.Parse(testenv.PGURL(t))
	packet := func(version uint32, params ...string) []byte {
		body := binary.BigEndian.AppendUint32(nil, version)
		for _, p := range params {
			body = append(append(body, p...), 0)
		}
		body = append(body, 0)
		return append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...)
	}
	for _, minor := range []uint32{1, 3, 9999} {
		for _, addr := range []string{testenv.PGAddr(t), px.Addr} {
			conn := dial(t, addr)
			_, err := conn.Write(packet(3<<16|minor, "user", u.User.Username(), "database", strings.TrimPrefix(u.Path, "/")))
			require.NoError(t, err)
			fe := pgproto3.NewFrontend(conn, conn)
			negotiated := false
			for {
				msg, err := fe.Receive()
				require.NoError(t, err, "3.%d via %s", minor, addr)
				if _, ok := msg.(*pgproto3.NegotiateProtocolVersion); ok {
					negotiated = true
				}
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			require.True(t, negotiated, "3.%d via %s", minor, addr)
		}
	}
	conn := dial(t, px.Addr)
	_, err := conn.Write(packet(3 << 16))
	require.NoError(t, err)
	expectFatal(t, conn, pgproto3.NewFrontend(conn, conn), "28000")
}
