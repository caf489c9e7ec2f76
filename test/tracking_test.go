package test

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// rawMsg is a hand-built frontend message, malformed on purpose; rfq is
// how many ReadyForQuery it brings.
type rawMsg struct {
	frame []byte
	rfq   int
}

func (m rawMsg) Frontend()                         {}
func (m rawMsg) Decode([]byte) error               { return nil }
func (m rawMsg) Encode(dst []byte) ([]byte, error) { return append(dst, m.frame...), nil }
func raw(typ byte, body string, rfq int) rawMsg {
	f := append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))...)
	return rawMsg{append(f, body...), rfq}
}

// q is a simple-protocol Query message.
func q(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }

// converse sends the messages of each step to addr and reads until the
// step's ReadyForQuery count, returning the transcript. The DSN's
// options parameter, if any, goes into the startup packet.
func converse(t *testing.T, dsn string, steps [][]pgproto3.FrontendMessage) string {
	t.Helper()
	return openConversation(t, dsn).steps(steps...)
}

// conversation is one protocol session, driven step by step.
type conversation struct {
	t  *testing.T
	fe *pgproto3.Frontend
}

// openConversation starts a session on dsn, closed at the test's end.
func openConversation(t *testing.T, dsn string) *conversation {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", u.Host, testenv.Hang)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testenv.Hang)))
	fe := pgproto3.NewFrontend(conn, conn)
	params := map[string]string{"user": u.User.Username(), "database": strings.TrimPrefix(u.Path, "/")}
	if o := u.Query().Get("options"); o != "" {
		params["options"] = o // settings the session starts with
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
	require.NoError(t, fe.Flush())
	for {
		m, err := fe.Receive()
		require.NoError(t, err)
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	return &conversation{t: t, fe: fe}
}

// steps sends each step's messages and reads the answers up to its last
// ReadyForQuery, returning them as JSON lines.
func (c *conversation) steps(steps ...[]pgproto3.FrontendMessage) string {
	t, fe := c.t, c.fe
	t.Helper()
	var out strings.Builder
	for _, step := range steps {
		want := 0
		for _, m := range step {
			fe.Send(m)
			switch m.(type) {
			case *pgproto3.Query:
				want++
			case *pgproto3.Sync:
				want++
			case rawMsg:
				want += m.(rawMsg).rfq
			}
		}
		require.NoError(t, fe.Flush())
		// COPY-in mode ignores the Syncs sent before CopyDone: the step
		// ends with one ReadyForQuery.
		for _, m := range step {
			if _, ok := m.(*pgproto3.CopyDone); ok {
				want = 1
			}
		}
		for want > 0 {
			m, err := fe.Receive()
			require.NoError(t, err)
			switch v := m.(type) {
			case *pgproto3.ReadyForQuery:
				want--
			case *pgproto3.ErrorResponse:
				v.File, v.Line, v.Routine = "", 0, ""
			case *pgproto3.RowDescription:
				for i := range v.Fields {
					v.Fields[i].TableOID = 0
				}
			case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
				continue
			}
			b, _ := json.Marshal(m)
			out.Write(b)
			out.WriteByte('\n')
		}
	}
	return out.String()
}

// TestTrackingStaysInStep replays message sequences that once put the
// reply tracker out of step (found in review) directly and through the
// proxy: the answers must be the same, hidden columns never leak.
func TestTrackingStaysInStep(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE plain_u (id int, v text);`)
	del := "DELETE FROM t WHERE id = $1 RETURNING *"
	long := strings.Repeat("a", 63)
	bind := func(portal, stmt string, params ...string) *pgproto3.Bind {
		var ps [][]byte
		for _, p := range params {
			ps = append(ps, []byte(p))
		}
		return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt, Parameters: ps}
	}
	type msgs = []pgproto3.FrontendMessage
	// dropAll prepares name as a plain SELECT, runs each query, then
	// prepares name as the rewritten DELETE and runs it in a transaction
	// rolled back.
	dropAll := func(name string, queries ...string) []msgs {
		steps := []msgs{{&pgproto3.Parse{Name: name, Query: "SELECT 1 AS a, 2 AS b"}, &pgproto3.Sync{}}}
		for _, query := range queries {
			steps = append(steps, msgs{q(query)},
				msgs{&pgproto3.Parse{Name: name, Query: del}, &pgproto3.Sync{}},
				msgs{q("BEGIN")},
				msgs{bind("", name, "7"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
				msgs{q("ROLLBACK")})
		}
		return steps
	}
	cases := map[string][]msgs{
		"copy in extended protocol with two Syncs": {
			{&pgproto3.Parse{Query: "COPY plain_u FROM STDIN"}, bind("", ""), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.CopyData{Data: []byte("1\tx\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{}},
			{q("BEGIN; DELETE FROM t WHERE id = 5 RETURNING id; ROLLBACK")},
		},
		// A COPY the server fails is over at its ReadyForQuery, even if
		// the client sends no CopyDone or CopyFail (the protocol lets it
		// stop): later Syncs count again. The proxy once skipped them and
		// matched answers to the wrong messages (_ts_row leaked).
		"failed COPY the client does not end": {
			{q("COPY plain_u FROM STDIN"), &pgproto3.CopyData{Data: []byte("not-a-number\tx\n")}},
			{&pgproto3.Parse{Query: "SELECT 1"}, bind("", ""), &pgproto3.Execute{}, &pgproto3.Sync{},
				q("BEGIN; DELETE FROM t WHERE id = 1 RETURNING *; ROLLBACK")},
		},
		"failed extended COPY ended by a bare Sync": {
			{&pgproto3.Parse{Query: "COPY plain_u FROM STDIN"}, bind("", ""), &pgproto3.Execute{}, raw('S', "", 0),
				&pgproto3.CopyData{Data: []byte("not-a-number\tx\n")}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Query: "SELECT 1"}, bind("", ""), &pgproto3.Execute{}, &pgproto3.Sync{},
				q("BEGIN; DELETE FROM t WHERE id = 2 RETURNING *; ROLLBACK")},
		},
		// The server reads a Query or Parse to its last byte and refuses
		// one with bytes after its text (08P01) before running anything;
		// the proxy once planned the text up to the first NUL and ran it.
		"Query with bytes after its text": {
			{raw('Q', "DELETE FROM t WHERE id = 1 RETURNING id\x00junk\x00", 1)},
			{q("SELECT count(*) FROM t")},
		},
		// Text pg_query cannot read is refused by the proxy (PostgreSQL
		// 15 might run it uncaptured); for text the server refuses too,
		// the answer is the server's, transaction state included.
		"syntax errors in statements the planner reads": {
			{q("BEGIN")},
			{q("SELECT 1; /* é */ DELETE FROM t WHERE id = 1 WHERE")},
			{q("SELECT 1")},
			{q("ROLLBACK")},
			{&pgproto3.Parse{Name: "se", Query: "DELETE FROM t WHERE id = $1 RETURNING"}, &pgproto3.Sync{}},
			{q("SELECT count(*) FROM t")},
		},
		// A database name goes on with the table's: another database's
		// is Postgres's error, as it is without the proxy.
		// The hidden column's format is added to a Bind that gives one
		// per column; an error counts without it, as Postgres does.
		"a Bind with the wrong number of result formats": {
			{&pgproto3.Parse{Name: "rf", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "rf", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0, 0, 0}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "rf", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0, 0}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("SELECT count(*) FROM t")},
		},
		"database-qualified names in TRUNCATE and DROP": {
			{q("TRUNCATE nosuchdb.public.t")},
			{q("DROP TABLE nosuchdb.public.t")},
			{q("DROP TABLE IF EXISTS nosuchdb.public.t, t")},
			{q("SELECT count(*) FROM t")},
		},
		"Parse with bytes after it": {
			{raw('P', "\x00DELETE FROM t WHERE id = 2\x00\x00\x00junkjunk", 0), bind("", ""), &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("SELECT count(*) FROM t")},
		},
		// A SQL-level PREPARE or DEALLOCATE the server never ran (an
		// earlier statement of its Query failed, or it did) changes
		// nothing: a later EXECUTE once lost a real column or showed the
		// capture's hidden one.
		"PREPARE after a failed statement of its Query": {
			{q("SELECT 1/0; PREPARE q1 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{q("PREPARE q1 AS SELECT $1::int AS a, 2 AS b")},
			{q("EXECUTE q1(1)")},
		},
		// After an error in the extended protocol the server skips a
		// simple Query too, up to the Sync (no ReadyForQuery for it): its
		// PREPARE never ran.
		"PREPARE in a Query skipped after an error": {
			{&pgproto3.Parse{Query: "SELEC 1"}, raw('Q', "PREPARE q5 AS DELETE FROM t WHERE id = $1 RETURNING *\x00", 0), &pgproto3.Sync{}},
			{q("PREPARE q5 AS SELECT id, v FROM t WHERE id = $1")},
			{q("EXECUTE q5(1)")},
		},
		// Everything behind the failed Parse is skipped, the Query's
		// DEALLOCATE ALL with the Close and Parse around it: taken back
		// newest first, the statement stays the rewritten DELETE.
		"DEALLOCATE ALL skipped among Closes and Parses": {
			{&pgproto3.Parse{Name: "m1", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Query: "SELEC"}, &pgproto3.Close{ObjectType: 'S', Name: "m1"}, raw('Q', "DEALLOCATE ALL\x00", 0),
				&pgproto3.Parse{Name: "m1", Query: "SELECT 1 AS a, 2 AS b"}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{bind("", "m1", "8"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"DEALLOCATE in a Query skipped after an error": {
			{q("PREPARE q6 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{&pgproto3.Parse{Query: "SELEC 1"}, raw('Q', "DEALLOCATE q6\x00", 0), &pgproto3.Sync{}},
			{q("BEGIN")},
			{q("EXECUTE q6(2)")},
			{q("ROLLBACK")},
		},
		// Postgres refuses CREATE TABLE AS EXECUTE of a DELETE (42809);
		// rewritten, the DELETE is a SELECT, and the new table would get
		// the hidden column. A plain SELECT still works. (Through the
		// extended protocol the proxy refuses at the Parse, Postgres at
		// the Execute.)
		"CREATE TABLE AS EXECUTE of a rewritten DELETE": {
			{q("PREPARE c1 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{q("BEGIN")},
			{q("CREATE TABLE leak AS EXECUTE c1(1)")},
			{q("ROLLBACK")},
			{q("PREPARE c2 AS SELECT id, v FROM t WHERE id = $1")},
			{q("BEGIN")},
			{q("CREATE TABLE fine AS EXECUTE c2(2)")},
			{q("SELECT * FROM fine")},
			{q("ROLLBACK")},
		},
		// A WITH query that deletes without RETURNING cannot be read
		// from: Postgres's error, at the reference, not a table of that
		// name read instead (plain_u stands in for one). Nor can one name
		// more columns than its RETURNING gives (42P10).
		"reading a WITH query that deletes without RETURNING": {
			{q("WITH d AS (DELETE FROM t WHERE id = 1) SELECT * FROM d")},
			{q("WITH plain_u AS (DELETE FROM t WHERE id = 1), e AS (SELECT * FROM plain_u) SELECT * FROM e")},
			{q("BEGIN")},
			{q("WITH d AS (DELETE FROM t WHERE id = 1) SELECT count(*) FROM t")},
			{q("ROLLBACK")},
			{q("WITH d(a, b, c) AS (DELETE FROM t WHERE id = 1 RETURNING id) SELECT * FROM d")},
			{q("BEGIN")},
			{q("WITH d(a) AS (DELETE FROM t WHERE id = 1 RETURNING id, v) SELECT * FROM d")},
			{q("ROLLBACK")},
		},
		"failed PREPARE, then a rewritten one of the same name": {
			{q("PREPARE q2 AS SELECT nosuch")},
			{q("BEGIN")},
			{q("PREPARE q2 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{q("EXECUTE q2(1)")},
			{q("ROLLBACK")},
		},
		"DEALLOCATE after a failed statement of its Query": {
			{q("PREPARE q3 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{q("SELECT 1/0; DEALLOCATE q3")},
			{q("BEGIN")},
			{q("EXECUTE q3(2)")},
			{q("ROLLBACK")},
			{q("SELECT 1/0; DEALLOCATE ALL")},
			{q("BEGIN")},
			{q("EXECUTE q3(3)")},
			{q("ROLLBACK")},
		},
		// A Bind the server refuses (the portal exists) leaves the portal
		// bound to its first statement.
		"failed Bind keeps the portal's statement": {
			{q("BEGIN")},
			{&pgproto3.Parse{Name: "b1", Query: "SELECT 1 AS a, 2 AS b"}, &pgproto3.Parse{Name: "b2", Query: "DELETE FROM t WHERE id = $1 RETURNING id, v"},
				bind("p", "b1"), &pgproto3.Sync{}},
			{q("SAVEPOINT sp")},
			{bind("p", "b2", "1"), &pgproto3.Sync{}},
			{q("ROLLBACK TO sp")},
			{&pgproto3.Describe{ObjectType: 'P', Name: "p"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		// Messages the server skips after an error are taken back newest
		// first: a skipped Close and re-Parse leave the statement as it was.
		"Close and re-Parse skipped after an error": {
			{&pgproto3.Parse{Name: "s7", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Query: "SELEC"}, &pgproto3.Close{ObjectType: 'S', Name: "s7"},
				&pgproto3.Parse{Name: "s7", Query: "SELECT id, v FROM t WHERE id = $1::int"}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{bind("", "s7", "4"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"failed Parse, then its Close skipped": {
			{&pgproto3.Parse{Name: "s8", Query: "SELECT nosuch"}, &pgproto3.Close{ObjectType: 'S', Name: "s8"}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "s8", Query: del}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{bind("", "s8", "5"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		// A Parse of a name whose own Parse is still unanswered: whether
		// the name exists is known only from the answers. (Both texts go
		// to the planner, so that one pump reads both before any answer.)
		// Outside a transaction block: inside one, the first error would
		// make the server refuse the second Parse too (25P02).
		"pipelined Parse after an unanswered one that fails": {
			{&pgproto3.Parse{Name: "s9", Query: "SELEC 1 /* delete */"}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "s9", Query: "DELETE FROM t WHERE id = $1 RETURNING id"},
				bind("", "s9", "6"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		// DISCARD ALL and DEALLOCATE ALL drop protocol-level statements
		// too: the name is free for a new text.
		"DISCARD ALL frees a protocol-level name":                     dropAll("d1", "DISCARD ALL"),
		"DEALLOCATE ALL frees a protocol-level name, unless it fails": dropAll("d2", "SELECT 1/0; DEALLOCATE ALL", "DEALLOCATE ALL"),
		// One namespace: a statement of either kind used through the other.
		"Bind of a PREPAREd rewritten statement": {
			{q("PREPARE x1 AS DELETE FROM t WHERE id = $1 RETURNING *")},
			{q("BEGIN")},
			{bind("", "x1", "3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Describe{ObjectType: 'S', Name: "x1"}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"EXECUTE of a Parsed rewritten statement": {
			{&pgproto3.Parse{Name: "x2", Query: del}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{q("EXECUTE x2(4)")},
			{q("ROLLBACK")},
		},
		"DEALLOCATE of a Parsed statement frees its name": {
			{&pgproto3.Parse{Name: "x3", Query: del}, &pgproto3.Sync{}},
			{q("SELECT 1/0; DEALLOCATE x3")},
			{q("BEGIN")},
			{bind("", "x3", "4"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
			{q("DEALLOCATE x3")},
			{&pgproto3.Parse{Name: "x3", Query: "SELECT 1 AS a, 2 AS b"}, &pgproto3.Sync{}},
			{bind("", "x3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		"failed redefinition keeps the rewritten statement": {
			{&pgproto3.Parse{Name: "s1", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{bind("", "s1", "3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"failed redefinition keeps the plain statement": {
			{&pgproto3.Parse{Name: "s2", Query: "SELECT id, v FROM t WHERE id = $1::int"}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "s2", Query: del}, &pgproto3.Sync{}},
			{bind("", "s2", "3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		"failed new name, then the same name again": {
			{&pgproto3.Parse{Name: "s3", Query: "DELET FROM t"}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{&pgproto3.Parse{Name: "s3", Query: del}, bind("", "s3", "4"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"names longer than 63 bytes": {
			{q("BEGIN")},
			{&pgproto3.Parse{Name: long + "X", Query: del}, &pgproto3.Sync{}},
			{bind("", long+"Y", "6"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		// Cut at 63 bytes, inside the "é": two names, as in Postgres.
		"names that differ in a character cut at the 63rd byte": {
			{q("BEGIN")},
			{&pgproto3.Parse{Name: strings.Repeat("a", 62) + "é", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: strings.Repeat("a", 62), Query: "SELECT id, v FROM t WHERE id = $1::int"}, &pgproto3.Sync{}},
			{bind("", strings.Repeat("a", 62), "6"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{bind("", strings.Repeat("a", 62)+"é", "7"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"Parse skipped after an error": {
			{&pgproto3.Parse{Query: "SELEC"}, &pgproto3.Parse{Name: "s5", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "s5", Query: "SELECT id, v FROM t WHERE id = $1::int"}, &pgproto3.Sync{}},
			{bind("", "s5", "3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		"Close skipped after an error": {
			{&pgproto3.Parse{Name: "s6", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Query: "SELEC"}, &pgproto3.Close{ObjectType: 'S', Name: "s6"}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{bind("", "s6", "4"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"refused Parse inside a failed transaction": {
			{q("BEGIN")},
			{q("SELECT 1/0")},
			{&pgproto3.Parse{Name: "r", Query: "DELETE FROM t WHERE CURRENT OF c"}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		// The event loop tracks the Bind and Execute of the rewritten
		// statement, then hands the session back at the row larger than
		// its buffer, before their answers come: the pumps must repair
		// them (hidden columns, DELETE tag) where the loop left off.
		"handed back from the event loop with repairs outstanding": {
			{&pgproto3.Parse{Name: "s8", Query: del}, &pgproto3.Sync{}},
			{q("BEGIN")},
			{&pgproto3.Parse{Query: "SELECT repeat('x', 200000)"}, bind("", ""), &pgproto3.Execute{},
				bind("p8", "s8", "2"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{Portal: "p8"},
				bind("p9", "s8", "9"), &pgproto3.Execute{Portal: "p9"}, &pgproto3.Sync{}},
			{bind("", "s8", "3"), &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("ROLLBACK")},
		},
		"SQL PREPARE over an existing name, DEALLOCATE": {
			{q("PREPARE x AS SELECT id, v FROM t WHERE id = 3")},
			{q("PREPARE x AS DELETE FROM t WHERE id = 3 RETURNING *")},
			{q("EXECUTE x")},
			{q("DEALLOCATE x; PREPARE x AS DELETE FROM t WHERE id = 7 RETURNING *")},
			{q("BEGIN; EXECUTE x; ROLLBACK")},
			{q("DEALLOCATE ALL; PREPARE x AS SELECT id FROM t WHERE id = 8")},
			{q("EXECUTE x")},
		},
	}
	reset := "TRUNCATE t, plain_u; INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g"
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			testenv.Exec(t, "SELECT 1")
			d := testenv.Connect(t, e.direct)
			_, err := d.Exec(t.Context(), reset)
			require.NoError(t, err)
			want := converse(t, e.direct, steps)
			_, err = d.Exec(t.Context(), reset)
			require.NoError(t, err)
			got := converse(t, e.proxy, steps)
			require.Equal(t, want, got)
			require.NotContains(t, got, "_ts_")
			require.Contains(t, got, "ReadyForQuery")
		})
	}
}
