package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// Planner decides what the proxy does with the statement text of a Query or
// Parse message: pass it through, rewrite it, refuse it, or answer it as a
// console command.
type Planner interface {
	// Wants is a cheap pre-check on the raw text: false means the text
	// certainly passes through untouched and Plan is not called.
	Wants(sql []byte) bool
	// Plan returns the plan for sql in session s; nil means unchanged. An
	// error refuses the statement: it reaches the client as an
	// ErrorResponse (an *Error or *rewrite.Error keeps its SQLSTATE).
	Plan(ctx context.Context, s *Session, sql string, extended bool) (*Plan, error)
}

// Plan is how one statement text runs.
type Plan struct {
	// Result is the rewrite: statements, output repairs, refusals.
	Result *rewrite.Result
	// Admin marks a console command, Result.SQL being what runs instead.
	Admin bool
}

// refusedParse is sent in place of a refused Parse: the server fails it at
// parse time (no such function — and nobody can create one in pg_catalog),
// entering the same error state Postgres would be in, and the proxy
// replaces that error with the refusal. Inside a failed transaction the
// server answers 25P02 first, as it would have for the original.
const refusedParse = "SELECT pg_catalog.tombstone_refused()"

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
func (s *Session) parseAnswered(u *parseUndo) {
	if u.portal {
		return
	}
	st := &s.prepared
	st.mu.Lock()
	st.resolve(u)
	st.mu.Unlock()
}

// undoParse rolls the registry back after the server failed or skipped a
// Parse or Close (server pump).
func (s *Session) undoParse(u *parseUndo) {
	st := &s.prepared
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

// clientToServer is the client → server pump. Messages are forwarded as
// raw frames; with a Planner, Query and Parse texts are planned and every
// message the server answers is recorded in the tracker.
func (s *Session) clientToServer(ctx context.Context) error {
	cr, sw := s.cr, s.sw
	for {
		rejoin := s.rejoin.Load()
		if !cr.hasHeader() || rejoin {
			if err := sw.flush(); err != nil {
				return s.serverGone(err)
			}
		}
		if rejoin {
			return errRejoin
		}
		s.clientBetween = true
		typ, size, err := cr.peekHeader()
		s.clientBetween = false
		if err != nil {
			if errors.Is(err, errRejoin) {
				return errRejoin
			}
			if errors.Is(err, errMessageLength) {
				s.protocolViolation(err)
			}
			if errors.Is(err, io.EOF) {
				return errClientFinished // at a message boundary: a half-close, or gone
			}
			return errSessionDone
		}
		if err := s.clientMessage(ctx, clientMsg(typ), size, true); err != nil {
			return err
		}
	}
}

// planAtHand reports whether the planner has the plan of the Query or
// Parse frame at hand (cachedPlanner), and keeps it for plan.
func (s *Session) planAtHand(typ clientMsg, frame []byte) bool {
	cp, ok := s.srv.planner.(cachedPlanner)
	if !ok {
		return false
	}
	body := frame[5:]
	var sql string
	if typ == clientQuery {
		sql = string(body[:len(body)-1])
	} else {
		_, rest, _ := cstring(body)
		sql = string(rest[:bytes.IndexByte(rest, 0)])
	}
	plan, ok := cp.PlanCached(s, sql)
	if ok {
		s.atHand = &atHand{sql: sql, plan: plan}
	}
	return ok
}

// atHand is a plan made before its message was taken (planAtHand).
type atHand struct {
	sql  string
	plan *Plan
}

// plan is the planner's plan of sql, or the one at hand for it.
func (s *Session) plan(ctx context.Context, sql string, extended bool) (*Plan, error) {
	if h := s.atHand; h != nil {
		s.atHand = nil
		if h.sql == sql {
			return h.plan, nil
		}
	}
	return s.srv.planner.Plan(ctx, s, sql, extended)
}

// errNeedsPumps: the server's frame at the front of s.sr needs what the
// event loop must not do (re-planning a statement); nothing was consumed.
var errNeedsPumps = errors.New("answer for the pumps")

// errNeedsPlanner: the message at the front of s.cr is a statement for the
// planner, which clientMessage was told not to call (the event loop must
// not wait on it); nothing was consumed.
var errNeedsPlanner = errors.New("statement for the planner")

// clientMessage handles the client message whose header is at the front of
// s.cr: forwarded as is, or planned and replaced (only if mayPlan, else
// errNeedsPlanner). It reads more of the client's bytes only for a frame
// that is not buffered whole.
func (s *Session) clientMessage(ctx context.Context, typ clientMsg, size int, mayPlan bool) error {
	if typ == clientTerminate {
		// Terminate: pass it on so the server ends cleanly, then stop.
		s.terminating.Store(true)
		_ = s.forward(s.cr, s.sw, size)
		_ = s.sw.flush()
		return errClientFinished
	}
	if s.srv.planner != nil {
		handled, err := s.intercept(ctx, typ, size, mayPlan)
		if err != nil || handled {
			return err
		}
	}
	return s.forward(s.cr, s.sw, size)
}

// plans reports whether a whole Query or Parse frame goes to the planner,
// which may take a while (it can load a catalog from the database); every
// other frame passes through at once.
//
// A malformed frame is never planned: the server refuses it (08P01)
// before running anything, so it goes as it came. Planning would run the
// text up to its first NUL — a statement the server never would.
func (s *Session) plans(frame []byte) bool {
	body := frame[5:]
	if clientMsg(frame[0]) == clientParse {
		if !wellFormedParse(body) {
			return false
		}
		_, rest, _ := cstring(body)
		return s.srv.planner.Wants(rest[:bytes.IndexByte(rest, 0)])
	}
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		return false
	}
	text := body[:len(body)-1]
	return s.srv.planner.Wants(text) || (s.prepared.sqlInUse.Load() || s.prepared.protoInUse.Load()) &&
		(containsFold(text, "deallocate") || containsFold(text, "discard"))
}

// wellFormedParse reports whether body is a Parse message the server
// reads to its last byte: a name, a query, a parameter count and that
// many type oids, nothing more.
func wellFormedParse(body []byte) bool {
	_, rest, ok := cstring(body)
	if !ok {
		return false
	}
	_, rest, ok = cstring(rest)
	if !ok || len(rest) < 2 {
		return false
	}
	n := int(binary.BigEndian.Uint16(rest))
	return len(rest) == 2+4*n
}

// intercept records what the server will answer to the next message and
// plans Query and Parse texts. handled means the message was consumed
// (and whatever replaces it queued); otherwise the caller forwards it.
func (s *Session) intercept(ctx context.Context, typ clientMsg, size int, mayPlan bool) (handled bool, err error) {
	cr := s.cr
	switch typ {
	case clientQuery, clientParse:
		if size > cr.buffered() {
			if err := s.sw.flush(); err != nil {
				return false, s.serverGone(err)
			}
		}
		if size > largeFrame && size > cr.buffered() {
			if size > s.srv.cfg.BufferBudgetBytes {
				// Read to its end, so that the client, done writing, reads
				// the error.
				_ = cr.discard(size)
				return false, fatal("54000", fmt.Sprintf("tombstone: a message of %d bytes is longer than the proxy holds (limits.buffer_budget_bytes is %d)",
					size, s.srv.cfg.BufferBudgetBytes), nil)
			}
			if err := s.srv.buffers.Acquire(ctx, int64(size)); err != nil {
				return false, errSessionDone
			}
			defer s.srv.buffers.Release(int64(size))
			// The budget is held for bytes still to come: a client that
			// stops sending holds it only this long (1 MB/s at least).
			_ = s.client.SetReadDeadline(time.Now().Add(s.srv.cfg.LargeFrameTimeout + time.Duration(size)*time.Microsecond))
			defer func() { _ = s.client.SetReadDeadline(time.Time{}) }()
		}
		if err := cr.fill(size); err != nil {
			return false, errSessionDone
		}
		planned := s.plans(cr.buf[cr.start : cr.start+size])
		if planned && !mayPlan {
			// A plan at hand is used here; any other is the pumps' to
			// make (not consumed).
			if !s.planAtHand(typ, cr.buf[cr.start:cr.start+size]) {
				return false, errNeedsPlanner
			}
		}
		frame := cr.take(size)
		if typ == clientQuery {
			return true, s.query(ctx, frame, planned)
		}
		return true, s.parse(ctx, frame, planned)
	case clientBind, clientDescribe, clientExecute, clientClose:
		if s.prepared.rewritten.Load() || typ == clientClose {
			if err := cr.fill(min(size, len(cr.buf))); err != nil {
				return false, errSessionDone
			}
			if typ == clientBind {
				s.outdated()
			}
			if typ == clientBind && s.prepared.anyStale.Load() {
				if err := s.reprepareBound(ctx, size, mayPlan); err != nil {
					return false, err
				}
			}
			f, hidden := s.track_(typ, cr.buf[cr.start+5:cr.start+min(size, cr.buffered())])
			s.track.push(expect(typ, f))
			if typ == clientBind && hidden > 0 {
				return true, s.bindHidden(size, hidden)
			}
			if typ == clientExecute && f != nil && f.out.NoRows && size >= 9 && size <= cr.buffered() {
				// The client's statement returns no rows, so a row limit
				// does not stop it; the rewritten one returns rows of no
				// column, which a limit would suspend: no limit.
				clear(cr.buf[cr.start+size-4 : cr.start+size])
			}
			return false, nil
		}
		s.track.push(relayed(typ))
	case clientSync, clientFunctionCall:
		s.track.push(relayed(typ))
	case clientCopyDone, clientCopyFail:
		s.track.push(relayed(copyEnd))
	}
	return false, nil
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

// track_ returns what the answer to a Bind, Describe, Execute or Close
// (kind) needs, from the start of its body (nil: nothing), and keeps the
// statement/portal registry current. For a Bind of a statement with
// hidden columns it returns how many.
func (s *Session) track_(kind clientMsg, body []byte) (f *fix, hidden int) {
	st := &s.prepared
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
			st.portals[portal] = boundPortal{out: out, stmt: stmt, bound: s.track.ends.Load()}
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
func (s *Session) portalsEnded() {
	st := &s.prepared
	st.mu.Lock()
	defer st.mu.Unlock()
	for name, pt := range st.portals {
		if pt.bound < s.track.ended {
			delete(st.portals, name)
		}
	}
}

// bindHidden forwards a Bind of a statement whose rewrite returns hidden
// columns: a client that gives one result format per column gives one too
// few, so the hidden columns get text format.
func (s *Session) bindHidden(size, hidden int) error {
	if size > s.cr.buffered() {
		if err := s.sw.flush(); err != nil {
			return s.serverGone(err)
		}
	}
	frame, err := s.cr.next()
	if err != nil {
		return errSessionDone
	}
	var b pgproto3.Bind
	if err := b.Decode(frame[5:]); err != nil || len(b.ResultFormatCodes) <= 1 {
		return s.sw.write(frame)
	}
	if enc, err := b.Encode(nil); err != nil || len(enc) != len(frame) {
		return s.sw.write(frame) // bytes the decoder skipped: the server refuses it
	}
	b.ResultFormatCodes = append(b.ResultFormatCodes, make([]int16, hidden)...)
	return s.writeMsg(&b)
}

// query handles a Query message.
func (s *Session) query(ctx context.Context, frame []byte, planned bool) error {
	if !planned {
		s.track.push(relayed(clientQuery))
		return s.sw.write(frame)
	}
	sql := string(frame[5 : len(frame)-1])
	plan, err := s.plan(ctx, sql, false)
	if err != nil {
		// Refuse the whole text: the server runs a statement that raises
		// the error, so transaction state ends up exactly as Postgres
		// leaves it after a failed statement.
		r := refusalOf(err)
		s.log.Info("statement refused", zap.String("sqlstate", r.Code), zap.String("reason", r.Message))
		s.track.push(expect(clientQuery, &fix{refusal: r}))
		return s.writeQuery(raiseStatement(r))
	}
	if plan == nil || plan.Result == nil {
		s.track.push(relayed(clientQuery))
		return s.sw.write(frame)
	}
	res := plan.Result
	if r := s.createAsRewritten(res); r != nil {
		s.track.push(expect(clientQuery, &fix{refusal: r}))
		return s.writeQuery(raiseStatement(r))
	}
	p := fix{res: res, admin: plan.Admin}
	out := res.SQL
	for i := range res.Statements {
		st := &res.Statements[i]
		switch {
		case st.Prepares != "" || st.Deallocates != "" || st.DeallocateAll || st.DiscardAll:
			if u := s.sqlRegister(st, i); u != nil {
				p.sqlUndo = append(p.sqlUndo, *u)
			}
		case st.ExecuteName != "":
			if o, ok := s.prepared.find(st.ExecuteName); ok {
				if p.execOut == nil {
					p.execOut = map[int]rewrite.Output{}
				}
				p.execOut[i] = o
			}
		}
		if st.Refusal != nil {
			// Statements before it run as usual; it raises the refusal
			// and the server stops there, as it would on any error.
			s.log.Info("statement refused", zap.String("sqlstate", st.Refusal.Code), zap.String("reason", st.Refusal.Message))
			out = out[:st.Span.Start] + raiseStatement(st.Refusal) + out[st.Span.End:]
			break
		}
	}
	if !res.Changed && res.Refusal() == nil {
		// Sent as it came; its answer needs mending only for what the
		// registry knows (an EXECUTE of a rewritten PREPARE) or must
		// take back if the server fails a PREPARE or DEALLOCATE in it.
		if p.execOut == nil && p.sqlUndo == nil && !p.admin {
			s.track.push(relayed(clientQuery))
		} else {
			if p.execOut == nil {
				p.res = nil
			}
			s.track.push(expect(clientQuery, &p))
		}
		return s.sw.write(frame)
	}
	if !plan.Admin {
		s.srv.cfg.Metrics.StatementsRewritten.Inc()
		if len(res.Statements) == 1 && res.Statements[0].Rewritten && s.TxStatus() == TxIdle {
			p.retry = &retry{sql: sql}
		}
	}
	s.track.push(expect(clientQuery, &p))
	return s.writeQuery(out)
}

// createAsRewritten refuses a CREATE TABLE … AS EXECUTE of a rewritten
// prepared DELETE … RETURNING as Postgres refuses one of any DELETE
// (42809): rewritten, it is a SELECT, and the new table would get the
// hidden capture column. The whole Query is refused, as a syntax error
// would be (nil: nothing to refuse).
func (s *Session) createAsRewritten(res *rewrite.Result) *rewrite.Error {
	for _, st := range res.Statements {
		if st.CreateAsExecute == "" {
			continue
		}
		if _, rewritten := s.prepared.find(st.CreateAsExecute); rewritten {
			return &rewrite.Error{Code: "42809", Message: "prepared statement is not a SELECT"}
		}
	}
	return nil
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
func (s *Session) sqlRegister(st *rewrite.Statement, i int) *sqlUndo {
	r := &s.prepared
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
func (s *Session) undoSQL(us []sqlUndo, from int) {
	r := &s.prepared
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

// parse handles a Parse message.
func (s *Session) parse(ctx context.Context, frame []byte, planned bool) error {
	body := frame[5:]
	name, rest, ok := cstring(body)
	end := bytes.IndexByte(rest, 0)
	if !ok || end < 0 {
		s.track.push(relayed(clientParse))
		return s.sw.write(frame)
	}
	undo, redefining := s.noteParse(name)
	var p *fix
	if undo != nil {
		p = &fix{undo: undo}
	}
	// What the registry will say about the statement: its output repair,
	// or nothing (keep false).
	var out rewrite.Output
	keep := false
	defer func() {
		// The server refuses to redefine a named statement (42P05): the
		// registry keeps what it says about the one that stays.
		if !redefining {
			s.setStatement(name, out, keep)
		}
	}()
	if !planned {
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	}
	var msg pgproto3.Parse
	if err := msg.Decode(body); err != nil {
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	}
	plan, err := s.plan(ctx, msg.Query, true)
	var refusal *rewrite.Error
	switch {
	case err != nil:
		refusal = refusalOf(err)
	case plan != nil && plan.Result != nil && plan.Result.Refusal() != nil:
		refusal = plan.Result.Refusal()
	case plan != nil && plan.Admin:
		// A console command prepared like any statement: it runs as the
		// SQL it stands for; errors carry no position into that SQL.
		p = p.orNew()
		p.admin = true
		s.track.push(expect(clientParse, p))
		msg.Query = plan.Result.SQL
		return s.writeMsg(&msg)
	case plan != nil && plan.Result != nil:
		refusal = s.createAsRewritten(plan.Result)
	}
	if refusal != nil {
		s.log.Info("statement refused", zap.String("sqlstate", refusal.Code), zap.String("reason", refusal.Message))
		p = p.orNew()
		p.refusal = refusal
		s.track.push(expect(clientParse, p))
		msg.Query = refusedParse
		return s.writeMsg(&msg)
	}
	if plan == nil || plan.Result == nil || !plan.Result.Changed {
		if plan != nil && plan.Result != nil && len(plan.Result.Statements) == 1 && plan.Result.Statements[0].ExecuteName != "" {
			// Parse("EXECUTE p") of a rewritten SQL-level PREPARE. (Any
			// other statement has no name to look up: "" is the unnamed
			// statement, which this Parse replaces.)
			out, keep = s.prepared.find(plan.Result.Statements[0].ExecuteName)
		}
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	}
	res := plan.Result
	if len(res.Statements) == 1 {
		out, keep = res.Statements[0].Output, true
		if !redefining {
			s.setOrigin(name, origin{msg.Query, msg.ParameterOIDs, res.Generation})
		}
	}
	s.srv.cfg.Metrics.StatementsRewritten.Inc()
	p = p.orNew()
	p.res = res
	s.track.push(expect(clientParse, p))
	msg.Query = res.SQL
	return s.writeMsg(&msg)
}

// setOrigin records what statement name was Parsed from.
func (s *Session) setOrigin(name string, o origin) {
	st := &s.prepared
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
	cur := p.freshGeneration(s)
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

// markStale notes that statement name's rewrite is out of date (server
// pump).
func (s *Session) markStale(name string) {
	st := &s.prepared
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.origins[name]; ok {
		st.stale[name] = true
		st.anyStale.Store(true)
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
	plan, err := s.srv.planner.Plan(ctx, s, o.sql, true)
	if err != nil || plan == nil || plan.Result == nil || !plan.Result.Changed || plan.Result.Refusal() != nil ||
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
	s.setStatement(name, plan.Result.Statements[0].Output, true)
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

// forgetStatement drops statement name from the registry: the server no
// longer has it (a hidden Parse of it failed after its Close ran).
func (s *Session) forgetStatement(name string) {
	st := &s.prepared
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

// noteParse records a Parse of name. A Parse of a named statement that
// exists fails on the server (redefining); a new one is remembered, with
// how to take it back should the server fail or skip the Parse.
func (s *Session) noteParse(name string) (undo *parseUndo, redefining bool) {
	if name == "" {
		return nil, false
	}
	st := &s.prepared
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
func (s *Session) setStatement(name string, out rewrite.Output, keep bool) {
	st := &s.prepared
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

func (s *Session) writeQuery(sql string) error {
	return s.writeMsg(&pgproto3.Query{String: sql})
}

func (s *Session) writeMsg(m pgproto3.FrontendMessage) error {
	b, err := m.Encode(nil)
	if err != nil {
		return fatal(CodeProgramLimitExceeded, "rewritten statement too large", err)
	}
	return s.sw.write(b)
}

// refusalOf turns a planning error into the error the client sees.
func refusalOf(err error) *rewrite.Error {
	var re *rewrite.Error
	if errors.As(err, &re) {
		return re
	}
	if pe, ok := asError(err); ok {
		return &rewrite.Error{Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint}
	}
	return &rewrite.Error{Code: CodeInternalError, Message: "tombstone: " + err.Error(),
		Hint: "The statement was not run because its deleted rows could not be captured safely."}
}

// raiseStatement returns a DO statement that raises e on the server. The
// message goes in as escaped string literals inside a dollar-quoted body
// whose tag does not occur in it.
func raiseStatement(e *rewrite.Error) string {
	lit := func(s string) string {
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	code := e.Code
	if len(code) != 5 {
		code = CodeInternalError
	}
	opts := "ERRCODE = " + lit(code) + ", MESSAGE = " + lit(e.Message)
	if e.Detail != "" {
		opts += ", DETAIL = " + lit(e.Detail)
	}
	if e.Hint != "" {
		opts += ", HINT = " + lit(e.Hint)
	}
	body := "BEGIN RAISE EXCEPTION USING " + opts + "; END"
	tag := "$ts$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$ts%d$", i)
	}
	return "DO " + tag + body + tag
}

// containsFold reports whether b contains the lower-case ASCII text w
// in any letter case, without copying b (it runs on every Query of a
// session that has prepared statements).
func containsFold[T string | []byte](b T, w string) bool {
	for i := 0; i+len(w) <= len(b); i++ {
		j := 0
		for j < len(w) && lowerASCII(b[i+j]) == w[j] {
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
