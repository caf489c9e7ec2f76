package console

import (
	"errors"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"

	"github.com/stretchr/testify/require"
)

func TestIs(t *testing.T) {
	for text, want := range map[string]bool{
		"SHOW BATCHES":                true,
		"  show batches limit 3":      true,
		"show batch 4":                true,
		"SHOW search_path":            false,
		"SHOW ALL":                    false,
		"undelete batch 1":            true,
		"UNDROP TABLE t":              true,
		"release batch 3":             true,
		"RELEASE SAVEPOINT a":         false,
		"RESET BREAKER":               true,
		"RESET search_path":           false,
		"SELECT 1":                    false,
		"DELETE FROM t":               false,
		"TOMBSTONE HELP":              true,
		"":                            false,
		"freeze deletes":              true,
		"hold batch 1":                true,
		"SHOW TOMBSTONE STATUS":       true,
		"PAUSE REAPER":                true,
		"purge batch 9":               true,
		"SHOWBATCHES":                 false,
		"\n\tundelete from t":         true,
		"resume reaper":               true,
		"thaw deletes":                true,
		"UNDELETEX":                   false,
		"SHOW TOMBSTONES sites":       true,
		"release 1":                   false,
		"reset breaker 'app'":         true,
		"WITH x AS (SELECT 1) SELECT": false,
		// SQL the console once took for its own.
		"SHOW tombstone.confirm":   false,
		"show TOMBSTONE . confirm": false,
		"RELEASE batch":            false,
		"release batch ;":          false,
		"RELEASE batch -- done":    false,
		"RELEASE BATCH\n 3":        true,
	} {
		require.Equal(t, want, Is([]byte(text)), text)
	}
}

func TestParse(t *testing.T) {
	for text, want := range map[string]string{
		"SHOW BATCHES": "SELECT * FROM tombstone.show_batches()",
		"show batches for sites since '2026-01-01' limit 5":                                 `SELECT * FROM tombstone.show_batches(p_table => '"sites"'::regclass, p_since => '2026-01-01'::timestamptz, p_limit => 5)`,
		`SHOW BATCHES FOR app."Sites";`:                                                     `SELECT * FROM tombstone.show_batches(p_table => '"app"."Sites"'::regclass)`,
		"SHOW BATCH 42":                                                                     "SELECT * FROM tombstone.show_batch(42)",
		"SHOW BATCH 3000000001":                                                             "SELECT * FROM tombstone.show_batch(3000000001)",
		"UNDELETE BATCH 9223372036854775807":                                                "SELECT * FROM tombstone.undelete_batch(p_batch => 9223372036854775807)",
		"UNDELETE BATCH 42":                                                                 "SELECT * FROM tombstone.undelete_batch(p_batch => 42)",
		"undelete batch 42 dry run on conflict skip":                                        "SELECT * FROM tombstone.undelete_batch(p_batch => 42, p_dry_run => true, p_on_conflict => 'skip')",
		"UNDELETE TRANSACTION 777 ON CONFLICT OVERWRITE":                                    "SELECT * FROM tombstone.undelete_transaction(p_xid => '777'::xid8, p_on_conflict => 'overwrite')",
		"UNDELETE FROM sites WHERE tenant_id IN (7, 9) BATCH 42 DRY RUN":                    `SELECT * FROM tombstone.undelete_rows(p_table => '"sites"'::regclass, p_where => 'tenant_id IN (7, 9)', p_batch => 42, p_dry_run => true)`,
		"UNDELETE FROM sites WHERE name = 'it''s on' SINCE '2026-01-01' UNTIL '2026-02-01'": `SELECT * FROM tombstone.undelete_rows(p_table => '"sites"'::regclass, p_where => 'name = ''it''''s on''', p_since => '2026-01-01'::timestamptz, p_until => '2026-02-01'::timestamptz)`,
		"SHOW TOMBSTONES sites WHERE id > 3 LIMIT 10":                                       `SELECT * FROM tombstone.show_tombstones(tombstone._live_or_trashed(pg_catalog.to_regclass('"sites"'), '"sites"'), p_where => 'id > 3', p_limit => 10)`,
		"SHOW TOMBSTONES sites WHERE id > 3 BATCH 42":                                       `SELECT * FROM tombstone.show_tombstones(tombstone._live_or_trashed(pg_catalog.to_regclass('"sites"'), '"sites"'), p_where => 'id > 3', p_batch => 42)`,
		"UNDROP TABLE public.sites":                                                         `SELECT * FROM tombstone.undrop_table('"public"."sites"')`,
		"PURGE BATCH 3":                                                                     "SELECT * FROM tombstone.purge_batch(3)",
		"HOLD BATCH 3":                                                                      "SELECT * FROM tombstone.hold_batch(3, true)",
		"RELEASE BATCH 3":                                                                   "SELECT * FROM tombstone.hold_batch(3, false)",
		"PAUSE REAPER":                                                                      "SELECT * FROM tombstone.set_reaper_paused(true)",
		"SHOW TOMBSTONE STATUS":                                                             "SELECT * FROM tombstone.status()",
	} {
		c, err := Parse(text, nil)
		require.NoError(t, err, text)
		require.Equal(t, want, c.SQL, text)
	}
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"UNDELETE BATCH":                          "expects batch id",
		"UNDELETE BATCH x":                        "not a valid batch id",
		"UNDELETE BATCH -1":                       "not a valid batch id",
		"UNDELETE BATCH 1.5":                      "not a valid batch id",
		"UNDELETE BATCH 1e3":                      "not a valid batch id",
		"UNDELETE BATCH 9223372036854775808":      "not a valid batch id",
		"UNDELETE BATCH 1 ON CONFLICT MAYBE":      "FAIL, SKIP or OVERWRITE",
		"UNDELETE BATCH 1 NOW":                    `unexpected "NOW"`,
		"UNDELETE SOMETHING":                      "unknown command",
		"SHOW BATCHES SINCE yesterday":            "quoted string",
		"UNDELETE FROM t WHERE 1=1; DROP TABLE x": "bad WHERE condition",
		"UNDELETE FROM t WHERE true) OR (1=1":     "bad WHERE condition",
		"UNDELETE FROM t WHERE id = 1 ORDER BY 1": "bad WHERE condition",
		"UNDELETE FROM t WHERE":                   "needs a condition",
		"SHOW TOMBSTONES":                         "expects a table name",
		"HOLD BATCH 1 2":                          "unexpected",
		"TOMBSTONE HELP ME":                       "unexpected",
		"UNDELETE FROM a.b.c":                     "schema.table at most",
	} {
		_, err := Parse(text, nil)
		var ce *pgerr.Error
		require.True(t, errors.As(err, &ce), text)
		require.Equal(t, "42601", ce.Code, text)
		require.Contains(t, ce.Message, want, text)
		require.NotEmpty(t, ce.Hint, text)
	}
	_, err := Parse("UNDELETE BATCH", nil)
	require.Contains(t, err.(*pgerr.Error).Hint, "UNDELETE BATCH <id>", "the hint is the command's usage")

	// A predicate nested too deeply for pg_query (its C code crashed the
	// process from some 30,000 levels) is refused as Postgres refuses
	// one too deep for its stack.
	_, err = Parse("SHOW TOMBSTONES t WHERE id = 1"+strings.Repeat("+1", 30000), nil)
	var ce *pgerr.Error
	require.True(t, errors.As(err, &ce), err)
	require.Equal(t, "54001", ce.Code)
}

func TestHelpListsEveryCommand(t *testing.T) {
	c, err := Parse("TOMBSTONE HELP", nil)
	require.NoError(t, err)
	for _, u := range Usage {
		require.Contains(t, c.SQL, lit(u.Syntax))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"SHOW BATCHES FOR t", "UNDELETE FROM t WHERE a = 'x' BATCH 1 DRY RUN", "UNDELETE BATCH 1 ON CONFLICT SKIP", "RESET BREAKER 'x'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s, nil)
		if err == nil && c.SQL == "" {
			t.Fatal("empty SQL without error")
		}
	})
}

// TestIsDoesNotAllocate: Is runs on every statement through the proxy.
func TestIsDoesNotAllocate(t *testing.T) {
	texts := [][]byte{[]byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1"), []byte("show batches"),
		[]byte("undelete batch 7"), []byte("RESET BREAKER"), []byte("update x set y = 1")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range texts {
			Is(b)
		}
	})
	if allocs != 0 {
		t.Fatalf("console.Is allocates %.1f times per call set", allocs)
	}
}

// FuzzValidatePredicate: a WHERE condition the console and the CLI accept
// means one thing wherever the store puts it. Embedded as the store's
// restore and SHOW TOMBSTONES embed it ("… AND (<pred>) …", and more
// conditions after it) it either fails to parse or parses to the very
// WHERE clause that was validated — it cannot close its parentheses and
// add conditions, nor hide the ones that follow; and the console's
// literal of it reads back as the same text.
func FuzzValidatePredicate(f *testing.F) {
	for _, s := range []string{"id = 1", "a = 'x' OR b IN (1, 2)", "id = 1) OR (true", "true --", "x = $$a$$",
		"(select 1) = 1", "a = 'it''s'", "b @> '{}'::jsonb AND c IS NULL", "a = E'\\''", "/* c */ id > 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pred string) {
		if ValidatePredicate("t", pred, nil) != nil {
			return
		}
		want, err := pg.Parse("SELECT FROM t WHERE " + pred)
		if err != nil {
			t.Fatalf("validated but does not parse: %q", pred)
		}
		wantWhere, _ := pg.Deparse(&pg.ParseResult{Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
			WhereClause: want.GetStmts()[0].GetStmt().GetSelectStmt().GetWhereClause()}}}}}})
		embedded := "SELECT FROM t WHERE s.k = 1 AND (" + pred + ") AND s.b = 2"
		got, err := pg.Parse(embedded)
		if err == nil {
			w := got.GetStmts()
			if len(w) != 1 || w[0].GetStmt().GetSelectStmt() == nil {
				t.Fatalf("%q embedded is %d statements", pred, len(w))
			}
			outer := w[0].GetStmt().GetSelectStmt().GetWhereClause().GetBoolExpr()
			if outer == nil || len(outer.GetArgs()) != 3 {
				t.Fatalf("%q embedded changed the conditions around it: %s", pred, embedded)
			}
			mid, _ := pg.Deparse(&pg.ParseResult{Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
				WhereClause: outer.GetArgs()[1]}}}}}})
			if mid != wantWhere {
				t.Fatalf("%q embedded reads as %s, validated as %s", pred, mid, wantWhere)
			}
		}
		lt, err := pg.Parse("SELECT " + lit(pred))
		if err != nil {
			t.Fatalf("literal of %q does not parse", pred)
		}
		if v := lt.GetStmts()[0].GetStmt().GetSelectStmt().GetTargetList()[0].GetResTarget().GetVal().GetAConst().GetSval().GetSval(); v != pred {
			t.Fatalf("literal of %q reads back as %q", pred, v)
		}
	})
}
