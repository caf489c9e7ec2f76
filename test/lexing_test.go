package test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// TestLexingSettings: pg_query reads text as UTF-8 with
// standard_conforming_strings on. Under other settings the server reads
// the same bytes as another statement, so text the planner looks at is
// refused (0A000) and nothing runs; found by a review, where each of
// these removed rows without a tombstone, or other rows.
func TestLexingSettings(t *testing.T) {
	e := newEnv(t, `CREATE TABLE sc (id int PRIMARY KEY, v text);
		INSERT INTO sc SELECT g, 'v' || g FROM generate_series(1, 15) g;
		CREATE TABLE "Ã©" (id int PRIMARY KEY); INSERT INTO "Ã©" VALUES (1);`)
	refused := `"Code":"0A000"`
	for name, c := range map[string]struct {
		steps   [][]pgproto3.FrontendMessage
		refused int
	}{
		// The server reads 'a\', ' as one literal and runs the DELETE.
		"standard_conforming_strings off, a literal ending early": {steps: [][]pgproto3.FrontendMessage{
			{q("SET standard_conforming_strings = off")},
			{q(`SELECT 'a\', '; DELETE FROM sc WHERE id >= 4; --'`)},
		}, refused: 1},
		// Set in the same Query, before the server has reported it.
		"standard_conforming_strings off in the same Query": {steps: [][]pgproto3.FrontendMessage{
			{q(`SET standard_conforming_strings = off; DELETE FROM sc WHERE v = 'zz\' OR id > 0 --'`)},
		}, refused: 1},
		// Pipelined: planned before the server has run the SET, or a
		// set_config no text search would find (issue 15, item 8).
		"standard_conforming_strings off, pipelined in one write": {steps: [][]pgproto3.FrontendMessage{
			{q("SET standard_conforming_strings = off"), q(`SELECT 'a\', '; DELETE FROM sc WHERE id >= 4; SELECT ''--'`)},
		}, refused: 1},
		"set_config of a computed name, pipelined": {steps: [][]pgproto3.FrontendMessage{
			{q(`DO $$BEGIN PERFORM set_config('standard_' || 'conforming_strings', 'off', false); END$$`),
				q(`SELECT 'a\', '; DELETE FROM sc WHERE id >= 4; SELECT ''--'`)},
		}, refused: 1},
		"extended protocol, set in the same batch": {steps: [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Query: "SET standard_conforming_strings = off"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: `DELETE FROM sc WHERE v = 'zz\' OR id > 0 --'`}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		}, refused: 1},
		"pipelined, backslashes only in E'' strings read alike": {steps: [][]pgproto3.FrontendMessage{
			{q("SET standard_conforming_strings = off"), q(`DELETE FROM sc WHERE v = E'x\\y'`)},
		}, refused: 0},
		"on again: escapes in E'' strings are read alike": {steps: [][]pgproto3.FrontendMessage{
			{q("SET standard_conforming_strings = off")},
			{q("SET standard_conforming_strings = on")},
			{q(`DELETE FROM sc WHERE v = E'x\\y'`)},
		}, refused: 0},
		// LATIN1 "Ã©" is the bytes c3 a9, which read as UTF-8 name "é".
		"client_encoding LATIN1": {steps: [][]pgproto3.FrontendMessage{
			{q("SET client_encoding = 'LATIN1'")},
			{q("DELETE FROM \"\xc3\xa9\" WHERE id = 1")},
			{q("DELETE FROM sc WHERE v = 'caf\xe9'")},
			{&pgproto3.Parse{Query: "DELETE FROM sc WHERE v = 'caf\xe9' OR id = $1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("1")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{q("SET client_encoding = 'UTF8'")},
			{q("DELETE FROM sc WHERE v = 'café'")},
		}, refused: 3},
	} {
		t.Run(name, func(t *testing.T) {
			before := e.snapshot("sc", `"Ã©"`)
			got := converse(t, e.proxy, c.steps)
			require.Equal(t, c.refused, strings.Count(got, refused), got)
			require.Equal(t, before, e.snapshot("sc", `"Ã©"`), "nothing may run")
		})
	}
	// Settings the session starts with come in the startup's
	// ParameterStatus reports, before any Query.
	for options, sql := range map[string]string{
		"-c client_encoding=LATIN1":          "DELETE FROM \"\xc3\xa9\" WHERE id = 1",
		"-c standard_conforming_strings=off": `SELECT 'a\', '; DELETE FROM sc WHERE id >= 4; --'`,
	} {
		t.Run("at startup: "+options, func(t *testing.T) {
			u, err := url.Parse(e.proxy)
			require.NoError(t, err)
			v := u.Query()
			v.Set("options", options)
			u.RawQuery = v.Encode()
			before := e.snapshot("sc", `"Ã©"`)
			got := converse(t, u.String(), [][]pgproto3.FrontendMessage{{q(sql)}})
			require.Equal(t, 1, strings.Count(got, refused), got)
			require.Equal(t, before, e.snapshot("sc", `"Ã©"`), "nothing may run")
		})
	}
}

// TestGrammarErrorsAsTheServers (PostgreSQL's errors test): text the
// proxy's parser rejects is answered as the server answers it — the
// grammar's own SQLSTATE and hint, its message and position — for the
// grammar's checks that carry either (rewrite/grammar_errors.go, from
// the parser's C source). Each text holds a DELETE, so that the proxy
// parses it rather than pass it on.
func TestGrammarErrorsAsTheServers(t *testing.T) {
	e := newEnv(t, "CREATE TABLE h (a int) PARTITION BY HASH (a)")
	ctx := context.Background()
	d := testenv.Connect(t, e.direct)
	p := testenv.Connect(t, e.proxy)
	for _, sql := range []string{
		"drop operator === (int4); DELETE FROM h", // missing argument, with the grammar's hint
		"CREATE USER nobody UNENCRYPTED PASSWORD 'x'; DELETE FROM h",
		"DELETE FROM h WHERE a IN (SELECT 1 LIMIT 1, 2)",
		"DELETE FROM h WHERE a IN (SELECT sum(1) OVER (ROWS BETWEEN UNBOUNDED FOLLOWING AND CURRENT ROW))",
		"CREATE TABLE h1 PARTITION OF h FOR VALUES WITH (MODULUS 2, MODULUS 2); DELETE FROM h",
		"DELETE FROM h WHERE a = 1::float(0)",
		"CREATE POLICY p ON h AS SOMETIMES; DELETE FROM h",
		"DELETE FROM h WHERE a = 1 AND b = )", // a plain syntax error: 42601, no hint
	} {
		_, derr := d.Exec(ctx, sql)
		_, perr := p.Exec(ctx, sql)
		var dpg, ppg *pgconn.PgError
		require.ErrorAs(t, derr, &dpg, sql)
		require.ErrorAs(t, perr, &ppg, sql)
		require.Equal(t, [4]any{dpg.Code, dpg.Message, dpg.Hint, dpg.Position}, [4]any{ppg.Code, ppg.Message, ppg.Hint, ppg.Position}, sql)
	}
}
