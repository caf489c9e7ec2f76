package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/proxy"
)

// TestRaiseStatement: the DO block a refusal is raised with gives the
// server's error exactly the refusal's fields, whatever their text holds,
// and no empty DETAIL or HINT.
func TestRaiseStatement(t *testing.T) {
	c := testenv.Connect(t, testenv.PGURL(t))
	for _, e := range []pgerr.Error{
		{Code: "0A000", Message: "plain"},
		{Code: "42P01", Message: `quotes ' and \ and $ts$ and $ts0$`, Detail: "a detail's $$", Hint: `hint \n`},
		{Code: "XX000", Message: "hint only", Hint: "do this"},
		{Code: "bad", Message: "a code that is not five characters"},
	} {
		_, err := c.PgConn().Exec(context.Background(), proxy.RaiseStatement(&e)).ReadAll()
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, e.Message)
		want := e.Code
		if len(want) != 5 {
			want = pgerrcode.InternalError
		}
		require.Equal(t, want, pe.Code)
		require.Equal(t, e.Message, pe.Message)
		require.Equal(t, e.Detail, pe.Detail)
		require.Equal(t, e.Hint, pe.Hint)
	}
}
