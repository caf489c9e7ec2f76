package test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// TestPipelineAfterCapturedDelete (review of the capture triggers): in
// one pipeline under a single Sync, the answer to a statement after a
// captured DELETE (whose rewrite returns rows the proxy drops) is that
// statement's own — also when its text made the proxy plan it (a string
// that reads DELETE) and the plan changed nothing.
func TestPipelineAfterCapturedDelete(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5);`)
	out := converse(t, e.proxy, [][]pgproto3.FrontendMessage{{
		&pgproto3.Parse{Query: "DELETE FROM t WHERE id = 2"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 'DELETE me' AS s"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	}})
	require.Equal(t, 1, strings.Count(out, `"CommandTag":"DELETE 1"`), out)
	require.Equal(t, 1, strings.Count(out, `"CommandTag":"SELECT 1"`), out)
	require.Contains(t, out, `"Type":"RowDescription"`, out)
	require.Contains(t, out, `DELETE me`, out)
}
