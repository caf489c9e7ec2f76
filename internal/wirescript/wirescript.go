// Package wirescript replays scripted PostgreSQL wire-protocol
// conversations and records what the server sends back, so that the same
// script can run straight against PostgreSQL and through a proxy and the
// two transcripts be compared with each other and with a reviewed golden
// transcript. It is the one harness for wire conversations: the proxy's
// own scripts (proxy/testdata/wire) and the end-to-end ones with the real
// planner (test/testdata/tracking) both run on it.
//
// A script is a text file, one command a line; blank lines and lines
// starting with # are ignored:
//
//	send <Message> <json>   a frontend message (pgproto3 JSON form), written at once
//	copydata "<go string>"  a CopyData message, written at once
//	frame <T> "<go string>" a message of type byte T with that body (its
//	                        length is computed), malformed on purpose
//	                        where the test needs it, written at once
//	batch                   send, copydata and frame lines up to the next
//	...                     "end" are written together, in one write, as a
//	end                     client that pipelines them does
//	sendraw <hex>           raw bytes, written at once
//	until <Message> [n]     receive until the n-th message of that type
//	sleep <duration>
//
// The transcript holds each message received as a JSON line (pgproto3's
// form), minus what legitimately differs between two connections or two
// databases: backend pids, table OIDs (only whether one is set), the
// server's source file, line and routine in errors and notices; a value
// longer than 1 KiB in a DataRow is shown as its length and a hash. If the
// server closes the connection, the transcript ends with
// "<connection closed>" and the rest of the script is not run.
package wirescript

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// Suite is a directory of scripts (Dir/*.script), each replayed against
// Direct and then against every address in Through, with its golden
// transcript beside it (Dir/<name>.golden).
type Suite struct {
	Dir     string
	Direct  string   // postgres:// URL straight to the server
	Through []string // postgres:// URLs of the set-ups under test
	// Skip names message types left out of every transcript (such as
	// NoticeResponse where the proxy adds notices of its own).
	Skip []string
	// Reset, if set, runs before each replay of the script name.
	Reset func(t *testing.T, name string)
	// Check, if set, makes further assertions on each transcript through
	// a set-up under test.
	Check func(t *testing.T, transcript string)
	// Update rewrites the golden transcripts instead of comparing them.
	Update bool
}

// Run replays every script of the suite as a subtest named after its
// file: each transcript through a set-up under test must equal the direct
// one, and the direct one the golden.
func (s Suite) Run(t *testing.T) {
	t.Helper()
	scripts, err := filepath.Glob(filepath.Join(s.Dir, "*.script"))
	require.NoError(t, err)
	require.NotEmpty(t, scripts, "no scripts in %s", s.Dir)
	for _, path := range scripts {
		name := strings.TrimSuffix(filepath.Base(path), ".script")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			require.NoError(t, err)
			replay := func(dsn string) string {
				if s.Reset != nil {
					s.Reset(t, name)
				}
				return Dial(t, dsn, s.Skip...).Run(string(src))
			}
			want := replay(s.Direct)
			for _, dsn := range s.Through {
				got := replay(dsn)
				require.Equal(t, want, got, "transcript through the proxy differs from direct")
				if s.Check != nil {
					s.Check(t, got)
				}
			}
			golden := strings.TrimSuffix(path, ".script") + ".golden"
			if s.Update {
				require.NoError(t, os.WriteFile(golden, []byte(want), 0o644))
				return
			}
			exp, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden; run the test with -update")
			require.Equal(t, string(exp), want, "direct transcript differs from golden %s", golden)
		})
	}
}

// Conn is one protocol session, started and authenticated (trust) and
// closed when the test ends.
type Conn struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
	skip map[string]bool
}

// Dial starts a session on dsn, a postgres:// URL: its user and database,
// and its options and application_name parameters if given, go into the
// startup packet. Messages of the types in skip are left out of its
// transcripts.
func Dial(t testing.TB, dsn string, skip ...string) *Conn {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", u.Host, testenv.Hang)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	fe := pgproto3.NewFrontend(conn, conn)
	params := map[string]string{"user": u.User.Username(), "database": strings.TrimPrefix(u.Path, "/")}
	for _, p := range []string{"options", "application_name"} {
		if v := u.Query().Get(p); v != "" {
			params[p] = v
		}
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
	require.NoError(t, fe.Flush())
	for {
		msg, err := fe.Receive()
		require.NoError(t, err)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("startup: %s", e.Message)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	c := &Conn{t: t, conn: conn, fe: fe, skip: map[string]bool{}}
	for _, s := range skip {
		c.skip[s] = true
	}
	return c
}

// Send writes msgs in one write.
func (c *Conn) Send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	require.NoError(c.t, c.fe.Flush())
}

// Until receives until the n-th message of type typ (a pgproto3 type
// name, "ReadyForQuery") and returns the transcript of what came; closed
// reports that the server closed the connection first.
func (c *Conn) Until(typ string, n int) (transcript string, closed bool) {
	c.t.Helper()
	var out strings.Builder
	for n > 0 {
		msg, err := c.fe.Receive()
		if err != nil {
			out.WriteString("<connection closed>\n")
			return out.String(), true
		}
		name := msgName(msg)
		if name == typ {
			n--
		}
		if c.skip[name] {
			continue
		}
		out.WriteString(Render(c.t, msg))
		out.WriteByte('\n')
	}
	return out.String(), false
}

// Run runs a script (see the package comment) and returns the transcript.
func (c *Conn) Run(script string) string {
	t := c.t
	t.Helper()
	var out strings.Builder
	var batch []pgproto3.FrontendMessage
	inBatch := false
	for i, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("script line %d: %q", i+1, line)
		verb, rest, _ := strings.Cut(line, " ")
		var msg pgproto3.FrontendMessage
		switch verb {
		case "send":
			typ, body, _ := strings.Cut(rest, " ")
			msg = frontendMessage(t, where, typ, body)
		case "copydata":
			data, err := strconv.Unquote(rest)
			require.NoError(t, err, "%s: copydata takes a Go-quoted string", where)
			msg = &pgproto3.CopyData{Data: []byte(data)}
		case "frame":
			typ, body, _ := strings.Cut(rest, " ")
			data, err := strconv.Unquote(body)
			require.NoError(t, err, "%s: frame takes a type byte and a Go-quoted string", where)
			require.Len(t, typ, 1, "%s: frame takes a type byte", where)
			msg = frame(append(append([]byte{typ[0]}, binary.BigEndian.AppendUint32(nil, uint32(4+len(data)))...), data...))
		case "batch":
			require.False(t, inBatch, "%s: batch inside a batch", where)
			inBatch = true
			continue
		case "end":
			require.True(t, inBatch, "%s: end without batch", where)
			c.Send(batch...)
			batch, inBatch = nil, false
			continue
		}
		if msg != nil {
			if inBatch {
				batch = append(batch, msg)
			} else {
				c.Send(msg)
			}
			continue
		}
		require.False(t, inBatch, "%s: only send, copydata and frame go in a batch", where)
		switch verb {
		case "sendraw":
			b, err := hex.DecodeString(strings.ReplaceAll(rest, " ", ""))
			require.NoError(t, err, where)
			_, err = c.conn.Write(b)
			require.NoError(t, err, where)
		case "sleep":
			d, err := time.ParseDuration(rest)
			require.NoError(t, err, where)
			time.Sleep(d)
		case "until":
			typ, nstr, _ := strings.Cut(rest, " ")
			n := 1
			if nstr != "" {
				var err error
				n, err = strconv.Atoi(nstr)
				require.NoError(t, err, where)
			}
			got, closed := c.Until(typ, n)
			out.WriteString(got)
			if closed {
				return out.String()
			}
		default:
			t.Fatalf("bad %s", where)
		}
	}
	require.False(t, inBatch, "script ends inside a batch")
	return out.String()
}

// frame is a hand-built frontend message, written as it is.
type frame []byte

func (frame) Frontend()                           {}
func (frame) Decode([]byte) error                 { return nil }
func (f frame) Encode(dst []byte) ([]byte, error) { return append(dst, f...), nil }

func msgName(msg pgproto3.BackendMessage) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

// longValue is the size above which a DataRow value is shown as its
// length and hash.
const longValue = 1024

// Render prints a backend message as a JSON line, minus fields that
// legitimately differ per connection or per database (see the package
// comment).
func Render(t testing.TB, msg pgproto3.BackendMessage) string {
	t.Helper()
	switch m := msg.(type) {
	case *pgproto3.NotificationResponse:
		c := *m
		c.PID = 0
		msg = &c
	case *pgproto3.RowDescription:
		// Table OIDs differ between databases: keep only whether one is set.
		c := *m
		c.Fields = append([]pgproto3.FieldDescription(nil), m.Fields...)
		for i := range c.Fields {
			if c.Fields[i].TableOID != 0 {
				c.Fields[i].TableOID = 1
			}
		}
		msg = &c
	case *pgproto3.DataRow:
		c := *m
		c.Values = append([][]byte(nil), m.Values...)
		for i, v := range c.Values {
			if len(v) > longValue {
				sum := sha256.Sum256(v)
				c.Values[i] = fmt.Appendf(nil, "(%d bytes, sha256 %x)", len(v), sum)
			}
		}
		msg = &c
	case *pgproto3.ErrorResponse:
		c := *m
		c.File, c.Line, c.Routine = "", 0, ""
		msg = &c
	case *pgproto3.NoticeResponse:
		c := *m
		c.File, c.Line, c.Routine = "", 0, ""
		msg = &c
	}
	b, err := json.Marshal(msg)
	require.NoError(t, err)
	return string(b)
}

// frontendMessage builds a frontend message from its name and JSON body.
func frontendMessage(t testing.TB, where, typ, body string) pgproto3.FrontendMessage {
	t.Helper()
	var msg pgproto3.FrontendMessage
	switch typ {
	case "Query":
		msg = &pgproto3.Query{}
	case "Parse":
		msg = &pgproto3.Parse{}
	case "Bind":
		msg = &pgproto3.Bind{}
	case "Describe":
		msg = &pgproto3.Describe{}
	case "Execute":
		msg = &pgproto3.Execute{}
	case "Sync":
		msg = &pgproto3.Sync{}
	case "Flush":
		msg = &pgproto3.Flush{}
	case "Close":
		msg = &pgproto3.Close{}
	case "CopyData":
		msg = &pgproto3.CopyData{}
	case "CopyDone":
		msg = &pgproto3.CopyDone{}
	case "CopyFail":
		msg = &pgproto3.CopyFail{}
	case "Terminate":
		msg = &pgproto3.Terminate{}
	default:
		t.Fatalf("%s: unknown message type %q", where, typ)
	}
	if body != "" {
		require.NoError(t, json.Unmarshal([]byte(body), msg), "%s: decoding %s", where, body)
	}
	return msg
}
