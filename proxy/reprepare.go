package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// outdated marks stale the rewritten statements planned against an older
// catalog than the database's own, once one newer than the oldest of
// them has been loaded (the cheap test first: no lock, no look-up).
func (s *Session) outdated() {
	st := &s.prepared
	p, ok := s.srv.planner.(*planner)
	if !ok {
		return
	}
	oldest := st.oldest.Load()
	if oldest == 0 || p.latestGeneration() <= oldest {
		return
	}
	cur := p.freshGeneration(s.Params["database"])
	if cur == 0 {
		return // reloading: the next Bind looks again
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.oldest.Store(0)
	for name, o := range st.origins {
		if o.gen != 0 && o.gen < cur {
			// Prepared again at its next Bind (or left as it is, if
			// its rewrite has not changed): either way checked against
			// cur, and not again until a newer catalog.
			st.stale[name] = true
			st.anyStale.Store(true)
			o.gen = cur
			st.origins[name] = o
		}
		st.noteGeneration(o.gen)
	}
	if st.oldest.Load() == 0 {
		st.oldest.Store(cur)
	}
}

// reprepare prepares statement name again, from the text the client
// Parsed it from, against the current catalog, when the server refused
// its rewrite as out of date: a Close and a Parse the client never sees
// the answers of go out ahead of its Bind, as Postgres re-plans a
// prepared statement after DDL by itself. A statement that needs no new
// Parse, or cannot have one, stays as it is.
func (s *Session) reprepare(ctx context.Context, name string) error {
	st := &s.prepared
	st.mu.Lock()
	o, ok := st.origins[name]
	// Only a named statement the registry still holds as the rewrite it
	// was Parsed into (a DEALLOCATE, DISCARD ALL or another Parse of the
	// name drops it); the unnamed one lives one Query at most, and
	// drivers Parse it again anyway. Not in a failed transaction, where
	// the Parse would fail after the Close had run.
	_, live := st.stmts[name]
	ok = ok && live && st.stale[name] && name != ""
	aborted := s.TxStatus() == TxFailed
	if !ok || !aborted {
		// Done with (or for nothing to do); an aborted transaction
		// leaves it stale for after the rollback.
		st.unstale(name)
	}
	st.mu.Unlock()
	if !ok || aborted {
		return nil
	}
	plan, ok := s.srv.planner.Plan(ctx, s.request(o.sql)).(Rewrite)
	if !ok || !plan.Result.Changed || plan.Result.Refusal() != nil ||
		len(plan.Result.Statements) != 1 || s.createAsRewritten(plan.Result) != nil {
		return nil
	}
	s.log.Info("prepared statement re-planned against a new catalog and prepared again", zap.String("statement", name))
	s.track.push(swallowed(clientClose, name, nil))
	if err := s.writeMsg(&pgproto3.Close{ObjectType: targetStatement, Name: name}); err != nil {
		return err
	}
	s.track.push(swallowed(clientParse, name, plan.Result))
	if err := s.writeMsg(&pgproto3.Parse{Name: name, Query: plan.Result.SQL, ParameterOIDs: o.oids}); err != nil {
		return err
	}
	s.prepared.setStatement(name, plan.Result.Statements[0].Output, true)
	st.mu.Lock()
	if o, ok := st.origins[name]; ok {
		o.gen = plan.Result.Generation
		st.origins[name] = o
		st.noteGeneration(o.gen)
	}
	st.mu.Unlock()
	return nil
}

// reprepareBound prepares again the statement the Bind at the front of
// s.cr names, if its rewrite is out of date (errNeedsPlanner: not here,
// the pumps take the Bind from here).
func (s *Session) reprepareBound(ctx context.Context, size int, mayPlan bool) error {
	stmt, stale := s.staleBind(size)
	switch {
	case !stale:
		return nil
	case !mayPlan:
		return errNeedsPlanner
	}
	if err := s.reprepare(ctx, stmt); err != nil {
		return s.serverGone(err)
	}
	return nil
}

// staleBind returns the statement a Bind at the front of s.cr names if
// its rewrite is out of date.
func (s *Session) staleBind(size int) (string, bool) {
	st := &s.prepared
	body := s.cr.buf[s.cr.start+5 : s.cr.start+min(size, s.cr.buffered())]
	_, rest, ok := cstring(body)
	if !ok {
		return "", false
	}
	stmt, _, ok := cstring(rest)
	if !ok {
		return "", false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return stmt, st.stale[stmt]
}
