package test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/wirescript"
)

// q is a simple-protocol Query message.
func q(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }

// converse sends the messages of each step to dsn and reads until the
// step's ReadyForQuery count, returning the transcript. The DSN's
// options parameter, if any, goes into the startup packet. It is for
// conversations built in Go next to checks of their own; a conversation
// that is only replayed and compared belongs in a script
// (internal/wirescript).
func converse(t *testing.T, dsn string, steps [][]pgproto3.FrontendMessage) string {
	t.Helper()
	return openConversation(t, dsn).steps(steps...)
}

// conversation is one protocol session, driven step by step.
type conversation struct {
	t    *testing.T
	conn *wirescript.Conn
}

// openConversation starts a session on dsn, closed at the test's end.
// Notices and ParameterStatus messages are left out of its transcripts.
func openConversation(t *testing.T, dsn string) *conversation {
	t.Helper()
	return &conversation{t: t, conn: wirescript.Dial(t, dsn, "NoticeResponse", "ParameterStatus")}
}

// steps writes each step's messages at once and reads the answers up to
// its last ReadyForQuery: one per Query and Sync, or one for a step that
// ends a COPY (COPY-in mode ignores the Syncs sent before CopyDone).
func (c *conversation) steps(steps ...[]pgproto3.FrontendMessage) string {
	c.t.Helper()
	var out strings.Builder
	for _, step := range steps {
		want := 0
		for _, m := range step {
			switch m.(type) {
			case *pgproto3.Query, *pgproto3.Sync:
				want++
			}
		}
		for _, m := range step {
			if _, ok := m.(*pgproto3.CopyDone); ok {
				want = 1
			}
		}
		c.conn.Send(step...)
		got, closed := c.conn.Until("ReadyForQuery", want)
		require.False(c.t, closed, "connection closed: %s", got)
		out.WriteString(got)
	}
	return out.String()
}
