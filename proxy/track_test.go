package proxy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// popKinds pops until the tracker is empty and returns the kinds in order.
func popKinds(t *tracker) string {
	var got []byte
	for p := t.pop(); p != nil; p = t.pop() {
		got = append(got, byte(p.kind))
	}
	return string(got)
}

// TestTrackerOrderAcrossModes: entries keep their order whichever side
// pushed them and however the session moved between an event loop (direct)
// and the pumps (published in batches) while answers were outstanding.
func TestTrackerOrderAcrossModes(t *testing.T) {
	var tr tracker
	tr.push(pending{kind: clientParse}) // pumps: not visible until published
	require.Nil(t, tr.pop())
	tr.publish()
	require.Equal(t, clientParse, tr.pop().kind)

	tr.direct = true // the loop takes the session over
	tr.push(pending{kind: clientBind})
	tr.push(pending{kind: clientExecute})
	require.Equal(t, clientBind, tr.pop().kind, "direct entries need no publish")
	require.False(t, tr.idle())

	tr.direct = false // handed back with E still unanswered
	tr.push(pending{kind: clientSync})
	tr.publish()
	tr.push(pending{kind: clientQuery})
	tr.publish()
	require.Equal(t, "ESQ", popKinds(&tr))
	require.True(t, tr.idle())
}

// TestTrackerDirectReusesItsQueue: on a loop, a session answered as fast as
// it asks keeps one small queue instead of growing it for ever. Driven as
// the loop drives it: the server side pops only the entries it answers
// (no extra empty pop after the last), then the client side pushes again.
func TestTrackerDirectReusesItsQueue(t *testing.T) {
	tr := tracker{direct: true}
	for range 10_000 {
		tr.push(pending{kind: clientBind})
		tr.push(pending{kind: clientSync})
		require.Equal(t, clientBind, tr.pop().kind)
		require.Equal(t, clientSync, tr.pop().kind)
	}
	require.LessOrEqual(t, cap(tr.in), 8)
}

// TestTrackerPopKeepsTheEntry: what pop returned stays intact while the
// client side pushes more, on a loop as on the pumps.
func TestTrackerPopKeepsTheEntry(t *testing.T) {
	for _, direct := range []bool{true, false} {
		tr := tracker{direct: direct}
		f := &fix{admin: true}
		tr.push(pending{kind: clientQuery, fix: f})
		tr.publish()
		cur := tr.pop()
		for range 100 {
			tr.push(pending{kind: clientSync})
		}
		tr.publish()
		require.Equal(t, clientQuery, cur.kind)
		require.Same(t, f, cur.fix)
		require.Len(t, popKinds(&tr), 100)
	}
}

// TestExpect: an answer with nothing to change is relayed, without a fix;
// one with a fix is mended with that fix; the proxy's own messages are
// swallowed.
func TestExpect(t *testing.T) {
	p := expect(clientExecute, nil)
	require.Equal(t, relay, p.act)
	require.Nil(t, p.fix)
	require.Nil(t, p.undo())
	f := &fix{undo: &parseUndo{name: "s"}}
	p = expect(clientClose, f)
	require.Equal(t, mend, p.act)
	require.Same(t, f, p.fix)
	require.Same(t, f.undo, p.undo())
	p = swallowed(clientParse, "s", &rewrite.Result{})
	require.Equal(t, swallow, p.act)
	require.Equal(t, "s", p.fix.stmtName)
}

// TestTrackPlainStatements: the Bind, Describe, Execute and Close of
// statements and portals the proxy did not rewrite need nothing (relayed),
// those of a rewritten one their repair, and a Close of a known name its
// undo.
func TestTrackPlainStatements(t *testing.T) {
	del := rewrite.Output{TagFrom: "SELECT", HiddenColumns: 1}
	st := &statements{}
	for name, out := range map[string]rewrite.Output{"plain": {}, "del": del} {
		u, _ := st.noteParse(name)
		st.setStatement(name, out, out != rewrite.Output{})
		st.parseAnswered(u)
	}
	msg := func(parts ...string) []byte {
		var b []byte
		for _, p := range parts {
			b = append(append(b, p...), 0)
		}
		return b
	}
	for _, c := range []struct {
		kind clientMsg
		body []byte
	}{
		{clientBind, msg("", "plain")},
		{clientDescribe, msg("Splain")},
		{clientDescribe, msg("P")},
		{clientExecute, msg("")},
		{clientClose, msg("Pnone")},
	} {
		f, hidden := st.follow(c.kind, c.body, 0)
		require.Nil(t, f, "%c %q", c.kind, c.body)
		require.Zero(t, hidden)
	}
	f, hidden := st.follow(clientBind, msg("", "del"), 0)
	require.Equal(t, 1, hidden)
	require.Equal(t, del, f.out)
	require.True(t, f.rewritten)
	f, _ = st.follow(clientDescribe, msg("Sdel"), 0)
	require.Equal(t, del, f.out)
	f, _ = st.follow(clientExecute, msg(""), 0)
	require.Equal(t, "del", f.stmtName)
	f, _ = st.follow(clientClose, msg("Splain"), 0)
	require.NotNil(t, f.undo, "a Close of a known statement is taken back if it fails")
}

// TestRegistryWithUnansweredParse: a Parse of a name whose own Parse is
// still unanswered is registered as if that one fails; whichever of the
// two the server fails is taken back without undoing the other.
func TestRegistryWithUnansweredParse(t *testing.T) {
	del := rewrite.Output{TagFrom: "SELECT", HiddenColumns: 1}
	parse := func(st *statements, out rewrite.Output, keep bool) *parseUndo {
		u, redefining := st.noteParse("a")
		require.False(t, redefining, "the first Parse is unanswered: the name may not exist")
		st.setStatement("a", out, keep)
		return u
	}
	t.Run("the first fails", func(t *testing.T) {
		st := &statements{}
		u1 := parse(st, rewrite.Output{}, false)
		u2 := parse(st, del, true)
		st.undoParse(u1) // its error: the second stands
		st.parseAnswered(u2)
		require.Equal(t, del, st.stmts["a"])
		require.True(t, st.names["a"])
		_, redefining := st.noteParse("a")
		require.True(t, redefining, "both answered: the name exists")
	})
	t.Run("the first succeeds", func(t *testing.T) {
		st := &statements{}
		u1 := parse(st, rewrite.Output{}, false)
		u2 := parse(st, del, true)
		st.parseAnswered(u1)
		st.undoParse(u2) // 42P05: the first stays, plain
		_, rewritten := st.stmts["a"]
		require.False(t, rewritten)
		require.True(t, st.names["a"])
	})
	for _, order := range []string{"newest first", "oldest first"} {
		t.Run("a Close and a re-Parse both fail, "+order, func(t *testing.T) {
			st := &statements{}
			u0 := parse(st, del, true)
			st.parseAnswered(u0)
			f, _ := st.follow(clientClose, append([]byte("Sa"), 0), 0)
			uc := f.undo
			require.NotNil(t, uc)
			require.False(t, st.names["a"], "closed")
			up := parse(st, rewrite.Output{}, false)
			if order == "newest first" {
				st.undoParse(up)
				st.undoParse(uc)
			} else {
				st.undoParse(uc)
				st.undoParse(up)
			}
			require.True(t, st.names["a"])
			require.Equal(t, del, st.stmts["a"], "as before both")
			require.Empty(t, st.pending)
		})
	}
	t.Run("both fail", func(t *testing.T) {
		st := &statements{}
		u1 := parse(st, del, true)
		u2 := parse(st, rewrite.Output{}, false)
		st.undoParse(u1)
		st.undoParse(u2)
		require.False(t, st.names["a"])
		require.Empty(t, st.stmts)
		require.Empty(t, st.pending)
	})
}

// TestWithoutOwnContext: an error raised inside the proxy's functions
// keeps the CONTEXT lines of the user's own code (a trigger, say) and
// loses ours, with the statement our function ran.
func TestWithoutOwnContext(t *testing.T) {
	own := "PL/pgSQL function tombstone.capture_truncate(text[],boolean[],boolean,boolean,text,text,text) line 32 at assignment"
	for in, want := range map[string]string{
		"":  "",
		own: "",
		"PL/pgSQL function audit() line 3 at RAISE\nSQL statement \"TRUNCATE public.t\"\n" + own: "PL/pgSQL function audit() line 3 at RAISE",
		"SQL statement \"ALTER TABLE p ATTACH PARTITION c\n  FOR VALUES IN (1)\"\n" + own:        "",
		"PL/pgSQL function audit() line 3 at RAISE\nSQL statement \"TRUNCATE\n t\"\n" + own:      "PL/pgSQL function audit() line 3 at RAISE",
		"SQL function \"f\" statement 1":                             "SQL function \"f\" statement 1",
		"PL/pgSQL function public.tombstone_like() line 1 at RETURN": "PL/pgSQL function public.tombstone_like() line 1 at RETURN",
		// A user's statement over lines that calls a function of ours
		// is text, not a frame of ours.
		"SQL statement \"SELECT 1/0\n + length(tombstone.shadow_name('t'::regclass))\"\nPL/pgSQL function audit() line 3 at PERFORM":                                         "SQL statement \"SELECT 1/0\n + length(tombstone.shadow_name('t'::regclass))\"\nPL/pgSQL function audit() line 3 at PERFORM",
		"SQL statement \"SELECT 1/0\n + length(tombstone.shadow_name('t'::regclass))\"\nPL/pgSQL function audit() line 3 at PERFORM\nSQL statement \"TRUNCATE\n t\"\n" + own: "SQL statement \"SELECT 1/0\n + length(tombstone.shadow_name('t'::regclass))\"\nPL/pgSQL function audit() line 3 at PERFORM",
		// A line of text ending in a quote mark, then a call of ours.
		"SQL statement \"select 1/0 -- \"x\"\n  , tombstone.status()\"\nPL/pgSQL function trg2() line 3 at EXECUTE": "SQL statement \"select 1/0 -- \"x\"\n  , tombstone.status()\"\nPL/pgSQL function trg2() line 3 at EXECUTE",
		// A PL/pgSQL assignment's text is a statement's text too.
		"PL/pgSQL assignment \"x := (select 1/0\n        + (select count(*) from tombstone.show_batches()))\"\nPL/pgSQL function trg6() line 4 at assignment\n" + own:                                         "PL/pgSQL assignment \"x := (select 1/0\n        + (select count(*) from tombstone.show_batches()))\"\nPL/pgSQL function trg6() line 4 at assignment",
		"SQL-Anweisung »SELECT 1/0\n + tombstone.f(1)«\nPL/pgSQL-Funktion audit() Zeile 3 bei PERFORM\nSQL-Anweisung »TRUNCATE t«\nPL/pgSQL-Funktion tombstone.capture_truncate(text[]) Zeile 32 bei PERFORM": "SQL-Anweisung »SELECT 1/0\n + tombstone.f(1)«\nPL/pgSQL-Funktion audit() Zeile 3 bei PERFORM",
	} {
		require.Equal(t, want, withoutOwnContext(in), in)
	}
}

// TestContainsFold: any letter case, and the non-letters of the word as
// they are (a word with '_' never matched before).
func TestContainsFold(t *testing.T) {
	for text, want := range map[string]bool{
		"SET Standard_Conforming_Strings = off": true,
		"set standard_conforming_strings=off":   true,
		"standard-conforming-strings":           false,
		"standard_conforming_string":            false,
		"":                                      false,
	} {
		require.Equal(t, want, containsFold(text, "standard_conforming_strings"), text)
		require.Equal(t, want, containsFold([]byte(text), "standard_conforming_strings"), text)
	}
	require.True(t, containsFold([]byte("x; DEALLOCATE ALL"), "deallocate"))
}

// TestRegistrySQLPrepares: a Query's PREPAREs and DEALLOCATEs are
// registered as sent and taken back, newest first, from the statement the
// server failed on; those before it stay (prepared statements are not
// transactional).
func TestRegistrySQLPrepares(t *testing.T) {
	del := rewrite.Output{TagFrom: "SELECT", NoRows: true}
	st := &statements{}
	prep := st.sqlRegister(&rewrite.Statement{Prepares: "p", Rewritten: true, Output: del}, 0)
	require.NotNil(t, prep)
	require.Nil(t, st.sqlRegister(&rewrite.Statement{Prepares: "p"}, 1), "a PREPARE of a name in use fails on the server")
	out, ok := st.find("p")
	require.True(t, ok)
	require.Equal(t, del, out)

	// PREPARE q; DEALLOCATE p; DEALLOCATE ALL in one Query, failing at
	// the DEALLOCATE ALL (statement 2): p stays gone, q stays prepared.
	u1 := st.sqlRegister(&rewrite.Statement{Prepares: "q"}, 0)
	u2 := st.sqlRegister(&rewrite.Statement{Deallocates: "p"}, 1)
	u3 := st.sqlRegister(&rewrite.Statement{DeallocateAll: true}, 2)
	require.False(t, st.sqlNames["q"], "DEALLOCATE ALL")
	st.undoSQL([]sqlUndo{*u1, *u2, *u3}, 2)
	require.True(t, st.sqlNames["q"])
	_, ok = st.find("p")
	require.False(t, ok, "the DEALLOCATE before the failure ran")

	// The same Query failing at its first statement: everything back.
	st.undoSQL([]sqlUndo{*u1, *u2, *u3}, 0)
	require.False(t, st.sqlNames["q"])
	out, ok = st.find("p")
	require.True(t, ok)
	require.Equal(t, del, out)
	require.True(t, st.sqlInUse.Load())
}
