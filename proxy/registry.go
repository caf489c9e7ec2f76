package proxy

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// statements is the per-session registry of prepared statements and
// portals whose answers need repair (only rewritten ones are kept).
type statements struct {
	stmts   map[string]rewrite.Output
	portals map[string]boundPortal
	// sqlPrepared are SQL-level PREPAREd statements that were rewritten;
	// sqlNames every SQL-level prepared statement name in use.
	sqlPrepared map[string]rewrite.Output
	sqlNames    map[string]bool
	// names are the named protocol-level statements in use.
	names map[string]bool
	// mu guards names and stmts, which the server pump rolls back when a
	// Parse or Close fails or is skipped, and sqlPrepared and sqlNames,
	// which it rolls back when a PREPARE or DEALLOCATE does not run.
	mu sync.Mutex
	// sqlInUse: sqlNames is not empty; protoInUse: a named statement was
	// registered since the last DEALLOCATE ALL or DISCARD ALL (both read
	// without the lock).
	sqlInUse, protoInUse atomic.Bool
	// pending holds, per named statement, the newest of its Parses and
	// Closes the server has not answered yet; each links to the one
	// before (older) and after (newer). While one is out, whether the
	// name exists is not known.
	pending map[string]*parseUndo
	// origins are the texts (and parameter types) clients Parsed the
	// rewritten statements from; stale names those whose rewrite the
	// server has refused as planned against another catalog (TS001), or
	// that name a column no longer there: the next Bind of one prepares
	// it again first (reprepare).
	origins map[string]origin
	stale   map[string]bool
	// anyStale: stale is not empty (read without the lock, so that Binds
	// look only then).
	anyStale atomic.Bool
	// oldest is the oldest catalog generation a rewrite in origins was
	// planned against (0: none known): once a newer catalog is loaded,
	// those rewrites are prepared again at their next Bind (outdated),
	// so that a statement planned before some DDL does not keep the
	// catalog check's full path.
	oldest atomic.Uint64
	// rewritten turns true with the session's first rewritten prepared
	// statement. Until then Bind, Describe and Execute need no look-up —
	// the per-message path of ordinary traffic takes no lock.
	rewritten atomic.Bool
}

// boundPortal is a rewritten statement's portal: the repair its answers need,
// the statement it was bound from, and the tracker's count of messages
// answered with ReadyForQuery sent before its Bind — the portal ends with
// the transaction of the first of those after it that leaves the session
// idle (portalsEnded).
type boundPortal struct {
	out   rewrite.Output
	stmt  string
	bound uint64
}

// origin is what a client Parsed a rewritten statement from.
type origin struct {
	sql  string
	oids []uint32
	gen  uint64 // the catalog generation it was planned against (0: not known)
}

// parseUndo is how to take back what a Parse of a new named statement
// registered, or what a Close of one removed, should the server fail or
// skip the message.
type parseUndo struct {
	name    string
	prev    rewrite.Output
	hadPrev bool
	// prevPortal is, for a Bind's undo, the portal the name had.
	prevPortal boundPortal
	// closed: the undo of a Close, which puts the statement back.
	closed bool
	// portal: the undo of a Bind, which puts the portal's repair back.
	portal bool
	// hadName: the name was in use before the Parse (one whose own Parse
	// was still unanswered).
	hadName bool
	// older and newer are the unanswered changes of the same name made
	// before and after this one (statements.pending).
	older, newer *parseUndo
}

// lookup returns the repair for the answers of named statement name,
// prepared by a Parse or by a SQL PREPARE: Postgres has one namespace for
// both, and either kind can be bound or executed (under st.mu).
func (st *statements) lookup(name string) (rewrite.Output, bool) {
	if out, ok := st.stmts[name]; ok {
		return out, true
	}
	out, ok := st.sqlPrepared[name]
	return out, ok
}

// find is lookup for callers that do not hold st.mu.
func (st *statements) find(name string) (rewrite.Output, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lookup(name)
}

// maps makes the registry's maps on first use, and again after a
// DEALLOCATE ALL or DISCARD ALL (under st.mu): every change starts here,
// so none needs a guard of its own.
func (st *statements) maps() {
	if st.stmts == nil {
		st.stmts, st.portals = map[string]rewrite.Output{}, map[string]boundPortal{}
		st.origins, st.stale = map[string]origin{}, map[string]bool{}
	}
	if st.names == nil {
		st.names, st.pending = map[string]bool{}, map[string]*parseUndo{}
	}
	if st.sqlNames == nil {
		st.sqlNames, st.sqlPrepared = map[string]bool{}, map[string]rewrite.Output{}
	}
}

// change records u, a Parse or Close of a named statement the server has
// yet to answer (under st.mu).
func (st *statements) change(u *parseUndo) {
	if last := st.pending[u.name]; last != nil {
		last.newer, u.older = u, last
	}
	st.pending[u.name] = u
}

// resolve takes u out of its name's chain of unanswered changes (under
// st.mu).
func (st *statements) resolve(u *parseUndo) {
	if u.newer != nil {
		u.newer.older = u.older
	} else if st.pending[u.name] == u {
		if u.older != nil {
			st.pending[u.name] = u.older
		} else {
			delete(st.pending, u.name)
		}
	}
	if u.older != nil {
		u.older.newer = u.newer
	}
	u.older, u.newer = nil, nil
}

// parseAnswered: the server carried out the Parse or Close u registered.
func (st *statements) parseAnswered(u *parseUndo) {
	if u.portal {
		return
	}
	st.mu.Lock()
	st.resolve(u)
	st.mu.Unlock()
}

// undoParse rolls the registry back after the server failed or skipped a
// Parse or Close (server pump).
func (st *statements) undoParse(u *parseUndo) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.maps()
	if u.portal {
		if u.hadPrev {
			st.portals[u.name] = u.prevPortal
		} else {
			delete(st.portals, u.name)
		}
		return
	}
	if n := u.newer; n != nil {
		// A newer change of the name stands; it now takes the registry
		// back, should it fail too, to what this one found.
		n.prev, n.hadPrev, n.hadName, n.closed = u.prev, u.hadPrev, u.hadName, u.closed
		st.resolve(u)
		return
	}
	st.resolve(u)
	if u.hadName || u.closed {
		st.names[u.name] = true
	} else {
		delete(st.names, u.name)
	}
	if u.hadPrev {
		st.stmts[u.name] = u.prev
	} else {
		delete(st.stmts, u.name)
	}
}

// cstring returns the NUL-terminated name at the start of b, cut as
// Postgres cuts identifiers, and the rest.
func cstring(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return pgName(b[:i]), b[i+1:], true
}

// pgName cuts a statement or portal name to NAMEDATALEN-1 (63) bytes, as
// Postgres's hash tables of prepared statements and portals compare them
// (byte-wise, even inside a character), so that two names Postgres
// treats as one are one here too, and two it tells apart stay two.
func pgName(b []byte) string {
	return string(b[:min(len(b), 63)])
}

// follow returns what the answer to a Bind, Describe, Execute or Close
// (kind) needs, from the start of its body (nil: nothing), and keeps the
// statement/portal registry current. For a Bind of a statement with
// hidden columns it returns how many. ends is the tracker's count of
// transaction ends so far: a portal bound now lives until an end after it.
func (st *statements) follow(kind clientMsg, body []byte, ends uint64) (f *fix, hidden int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.maps()
	switch kind {
	case clientBind:
		portal, rest, ok := cstring(body)
		if !ok {
			return nil, 0
		}
		stmt, _, ok := cstring(rest)
		if !ok {
			return nil, 0
		}
		// A Bind the server fails or skips leaves the portal as it was.
		prev, had := st.portals[portal]
		out, rewritten := st.lookup(stmt)
		if had || rewritten {
			f = &fix{undo: &parseUndo{name: portal, prevPortal: prev, hadPrev: had, portal: true}}
		}
		if rewritten {
			st.portals[portal] = boundPortal{out: out, stmt: stmt, bound: ends}
			// For the error of a Bind the server refuses: the rewritten
			// text's, repaired as an Execute's.
			f.out, f.rewritten, f.stmtName = out, true, stmt
			return f, out.HiddenColumns
		}
		delete(st.portals, portal)
	case clientDescribe:
		if len(body) < 1 {
			return nil, 0
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return nil, 0
		}
		var out rewrite.Output
		if body[0] == targetStatement {
			out, _ = st.lookup(name)
		} else {
			out = st.portals[name].out
		}
		if out != (rewrite.Output{}) {
			f = &fix{out: out}
		}
	case clientExecute:
		portal, _, ok := cstring(body)
		if !ok {
			return nil, 0
		}
		if pt, ok := st.portals[portal]; ok {
			f = &fix{out: pt.out, rewritten: true, stmtName: pt.stmt}
		}
	case clientClose:
		if len(body) < 1 {
			return nil, 0
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return nil, 0
		}
		if body[0] == targetStatement {
			if st.names[name] {
				prev, had := st.stmts[name]
				f = &fix{undo: &parseUndo{name: name, prev: prev, hadPrev: had, closed: true}}
				st.change(f.undo)
			}
			st.drop(name)
			delete(st.names, name)
		} else {
			delete(st.portals, name)
		}
	}
	return f, 0
}

// portalsEnded forgets the rewritten portals bound before the message
// whose ReadyForQuery has just reported the session idle: their
// transaction is over, and they with it; a cursor DECLAREd under one of
// their names later is another portal (server pump).
func (st *statements) portalsEnded(ended uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for name, pt := range st.portals {
		if pt.bound < ended {
			delete(st.portals, name)
		}
	}
}

// sqlUndo takes back what a SQL-level PREPARE or DEALLOCATE of a Query
// registered, should the server not run it: statement stmt of the Query,
// or one before it, failed.
type sqlUndo struct {
	stmt int
	name string
	// prepare: the PREPARE of a new name; else a DEALLOCATE, which had
	// (the name was in use) and prev/hadPrev (its repair) to restore.
	prepare bool
	had     bool
	prev    rewrite.Output
	hadPrev bool
	// protoHad, protoPrev, protoHadPrev: a DEALLOCATE drops a statement
	// a Parse made too (one namespace); what to put back.
	protoHad     bool
	protoPrev    rewrite.Output
	protoHadPrev bool
	// all: a DEALLOCATE ALL or DISCARD ALL; names and prepared are the
	// SQL-level maps before it, proto the protocol-level registry.
	all      bool
	names    map[string]bool
	prepared map[string]rewrite.Output
	proto    *protoSnapshot
}

// protoSnapshot is the protocol-level registry as a DEALLOCATE ALL or
// DISCARD ALL found it.
type protoSnapshot struct {
	names   map[string]bool
	stmts   map[string]rewrite.Output
	portals map[string]boundPortal
}

// sqlRegister records the SQL-level PREPARE or DEALLOCATE st, statement i
// of a Query, and returns how to take it back (nil: nothing changed — a
// PREPARE of a name in use fails on the server).
func (r *statements) sqlRegister(st *rewrite.Statement, i int) *sqlUndo {
	r.mu.Lock()
	defer func() {
		r.sqlInUse.Store(len(r.sqlNames) > 0)
		r.mu.Unlock()
	}()
	r.maps()
	switch {
	case st.Prepares != "":
		if r.sqlNames[st.Prepares] {
			return nil
		}
		r.sqlNames[st.Prepares] = true
		if st.Rewritten {
			r.sqlPrepared[st.Prepares] = st.Output
			r.rewritten.Store(true) // Binds of it need a look-up too
		}
		return &sqlUndo{stmt: i, name: st.Prepares, prepare: true}
	case st.DeallocateAll || st.DiscardAll:
		// Every named statement goes, protocol-level ones too; the
		// unnamed statement and portal stay.
		u := &sqlUndo{stmt: i, all: true, names: r.sqlNames, prepared: r.sqlPrepared,
			proto: &protoSnapshot{names: r.names, stmts: r.stmts, portals: r.portals}}
		r.sqlNames, r.sqlPrepared, r.names, r.pending = nil, nil, nil, nil
		r.stmts, r.portals = keepUnnamed(r.stmts), keepUnnamed(r.portals)
		r.maps()
		r.protoInUse.Store(false)
		return u
	default:
		u := &sqlUndo{stmt: i, name: st.Deallocates, had: r.sqlNames[st.Deallocates]}
		u.prev, u.hadPrev = r.sqlPrepared[st.Deallocates]
		delete(r.sqlNames, st.Deallocates)
		delete(r.sqlPrepared, st.Deallocates)
		if r.pending[st.Deallocates] == nil { // a Parse of it unanswered: left alone
			u.protoHad = r.names[st.Deallocates]
			u.protoPrev, u.protoHadPrev = r.stmts[st.Deallocates]
			delete(r.names, st.Deallocates)
			delete(r.stmts, st.Deallocates)
		}
		return u
	}
}

// keepUnnamed returns a map of m's unnamed ("") entry alone.
func keepUnnamed[V any](m map[string]V) map[string]V {
	out, ok := m[""]
	if !ok {
		return map[string]V{}
	}
	return map[string]V{"": out}
}

// undoSQL takes back, newest first, the SQL-level PREPAREs and
// DEALLOCATEs of a Query from statement from on: the server failed that
// statement and skipped the rest (server pump). Prepared statements are
// not transactional: those before it stay.
func (r *statements) undoSQL(us []sqlUndo, from int) {
	r.mu.Lock()
	defer func() {
		r.sqlInUse.Store(len(r.sqlNames) > 0)
		r.mu.Unlock()
	}()
	for i := len(us) - 1; i >= 0; i-- {
		u := &us[i]
		r.maps()
		switch {
		case u.stmt < from:
			continue
		case u.prepare:
			delete(r.sqlNames, u.name)
			delete(r.sqlPrepared, u.name)
		case u.all:
			r.sqlNames, r.sqlPrepared = u.names, u.prepared
			r.names, r.stmts, r.portals = u.proto.names, u.proto.stmts, u.proto.portals
			r.protoInUse.Store(len(r.names) > 0)
		default:
			if u.had {
				r.sqlNames[u.name] = true
			}
			if u.hadPrev {
				r.sqlPrepared[u.name] = u.prev
			}
			if u.protoHad {
				r.names[u.name] = true
			}
			if u.protoHadPrev {
				r.stmts[u.name] = u.protoPrev
			}
		}
	}
}

// setOrigin records what statement name was Parsed from.
func (st *statements) setOrigin(name string, o origin) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.maps()
	st.origins[name] = o
	st.unstale(name)
	st.noteGeneration(o.gen)
}

// noteGeneration lowers oldest to gen (st.mu held).
func (st *statements) noteGeneration(gen uint64) {
	if old := st.oldest.Load(); gen != 0 && (old == 0 || gen < old) {
		st.oldest.Store(gen)
	}
}

// markStale notes that statement name's rewrite is out of date (server
// pump).
func (st *statements) markStale(name string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.origins[name]; ok {
		st.stale[name] = true
		st.anyStale.Store(true)
	}
}

// forgetStatement drops statement name from the registry: the server no
// longer has it (a hidden Parse of it failed after its Close ran).
func (st *statements) forgetStatement(name string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drop(name)
	delete(st.names, name)
}

// drop forgets what the registry says of statement name's rewrite
// (under st.mu).
func (st *statements) drop(name string) {
	delete(st.stmts, name)
	delete(st.origins, name)
	st.unstale(name)
}

// unstale: statement name is not (or no longer) out of date (under
// st.mu).
func (st *statements) unstale(name string) {
	delete(st.stale, name)
	st.anyStale.Store(len(st.stale) > 0)
}

// noteParse records a Parse of name. A Parse of a named statement that
// exists fails on the server (redefining); a new one is remembered, with
// how to take it back should the server fail or skip the Parse.
func (st *statements) noteParse(name string) (undo *parseUndo, redefining bool) {
	if name == "" {
		return nil, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.names[name] && st.pending[name] == nil {
		return nil, true
	}
	// A new name, or one whose own Parse is still unanswered: registered
	// as if that one fails (if it does not, this one does, and is taken
	// back).
	u := &parseUndo{name: name, hadName: st.names[name]}
	st.maps()
	st.names[name] = true
	st.protoInUse.Store(true)
	u.prev, u.hadPrev = st.stmts[name]
	st.change(u)
	return u, false
}

// setStatement records what the answers to statement name need: out when
// keep, nothing otherwise.
func (st *statements) setStatement(name string, out rewrite.Output, keep bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !keep {
		st.drop(name)
		return
	}
	st.maps()
	st.stmts[name] = out
	st.rewritten.Store(true)
}
