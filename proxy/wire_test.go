package proxy_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/proxy"
)

var update = flag.Bool("update", false, "rewrite golden transcripts in testdata/wire")

// TestWireScripts replays each testdata/wire/*.script conversation directly
// against PostgreSQL and through the proxy: the two transcripts must be
// identical, and equal to the reviewed golden transcript (*.golden).
//
// Script lines:
//
//	send <Message> <json>   a frontend message (pgproto3 JSON form)
//	copydata "<go string>"  a CopyData message
//	sendraw <hex>           raw bytes
//	until <Message> [n]     receive until the n-th message of that type
//	sleep <duration>
func TestWireScripts(t *testing.T) {
	direct := testenv.PGAddr(t)
	proxies := []*testenv.Proxy{
		// Goroutine pumps, plain and tracked (used when statements may be
		// rewritten): a planner that looks at everything and changes
		// nothing drives every message through the tracking code.
		testenv.StartProxy(t, testenv.Pumps),
		testenv.StartProxy(t, testenv.Pumps, func(c *proxy.Config) { c.Planner = lookAtEverything{} }),
		// The event loop: plain; tracking every message itself (a planner
		// that wants nothing); and handing the session back to the pumps
		// at the first Query or Parse (a planner that wants everything).
		testenv.StartProxy(t),
		testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtNothing{} }),
		testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtEverything{} }),
	}
	scripts, err := filepath.Glob("testdata/wire/*.script")
	require.NoError(t, err)
	require.NotEmpty(t, scripts)
	for _, path := range scripts {
		name := strings.TrimSuffix(filepath.Base(path), ".script")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			require.NoError(t, err)
			setup(t, name)
			want := runScript(t, direct, string(src))
			for _, px := range proxies {
				setup(t, name)
				got := runScript(t, px.Addr, string(src))
				require.Equal(t, want, got, "transcript through the proxy differs from direct")
			}
			golden := strings.TrimSuffix(path, ".script") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(want), 0o644))
				return
			}
			exp, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden; run go test ./proxy -run TestWireScripts -update")
			require.Equal(t, string(exp), want, "direct transcript differs from golden")
		})
	}
}

// lookAtEverything is a Planner that plans every text and changes none.
type lookAtEverything struct{}

func (lookAtEverything) Wants([]byte) bool                              { return true }
func (lookAtEverything) Plan(context.Context, proxy.Request) proxy.Plan { return proxy.Pass{} }

// lookAtNothing plans nothing: the proxy tracks every message but passes
// every statement through unread.
type lookAtNothing struct{ lookAtEverything }

func (lookAtNothing) Wants([]byte) bool { return false }

// setup gives each script an empty table wire_<name>.
func setup(t *testing.T, name string) {
	testenv.Exec(t, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS wire_%[1]s (id int PRIMARY KEY, v text); TRUNCATE wire_%[1]s`, name))
}

// runScript runs a script against addr and returns the transcript of what
// the server sent back, normalized for values that differ between any two
// connections (backend pids).
func runScript(t *testing.T, addr, script string) string {
	t.Helper()
	conn := dial(t, addr)
	defer conn.Close()
	fe := sendStartup(t, conn, map[string]string{"application_name": "wiretest"})
	for {
		msg, err := fe.Receive()
		require.NoError(t, err)
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("startup: %s", e.Message)
		}
	}
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, rest, _ := strings.Cut(line, " ")
		switch verb {
		case "send":
			typ, body, _ := strings.Cut(rest, " ")
			msg := frontendMessage(t, typ, body)
			fe.Send(msg)
			require.NoError(t, fe.Flush())
		case "copydata":
			data, err := strconv.Unquote(rest)
			require.NoError(t, err, "copydata takes a Go-quoted string")
			fe.Send(&pgproto3.CopyData{Data: []byte(data)})
			require.NoError(t, fe.Flush())
		case "sendraw":
			b, err := hex.DecodeString(strings.ReplaceAll(rest, " ", ""))
			require.NoError(t, err)
			_, err = conn.Write(b)
			require.NoError(t, err)
		case "sleep":
			d, err := time.ParseDuration(rest)
			require.NoError(t, err)
			time.Sleep(d)
		case "until":
			typ, nstr, _ := strings.Cut(rest, " ")
			n := 1
			if nstr != "" {
				_, err := fmt.Sscan(nstr, &n)
				require.NoError(t, err)
			}
			for n > 0 {
				msg, err := fe.Receive()
				if err != nil {
					fmt.Fprintf(&out, "<connection closed>\n")
					return out.String()
				}
				out.WriteString(render(t, msg))
				out.WriteByte('\n')
				if msgName(msg) == typ {
					n--
				}
			}
		default:
			t.Fatalf("bad script line %q", line)
		}
	}
	return out.String()
}

func msgName(msg pgproto3.BackendMessage) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

// render prints a backend message as JSON, minus fields that legitimately
// differ per connection or per build.
func render(t *testing.T, msg pgproto3.BackendMessage) string {
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
func frontendMessage(t *testing.T, typ, body string) pgproto3.FrontendMessage {
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
		t.Fatalf("unknown message type %q", typ)
	}
	if body != "" {
		require.NoError(t, json.Unmarshal([]byte(body), msg), "decoding %s %s", typ, body)
	}
	return msg
}
