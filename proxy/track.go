package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// pending is what the server pump expects back for one client message that
// the server answers. The client pump appends one per such message, in
// order; the server pump takes them off as the answers complete. This is
// how a reply is matched to the statement the proxy changed, pipelines
// included. It is copied on the per-message path, so it is small: what
// only a changed statement needs is behind fix.
type pending struct {
	kind clientMsg // Query, Parse, Bind, Describe, Execute, Close, Sync, FunctionCall, CopyDone
	act  action
	// fix is how act mends or swallows the answer (nil when act is relay).
	fix *fix
}

// action is what the server pump does with the answer to one client
// message (PgBouncer's OutstandingRequest says the same: forward, skip,
// fake).
type action uint8

const (
	// relay: the answer goes to the client as it comes; nothing of it is
	// decoded. Every message of a session that touches no rewritten
	// statement is answered so.
	relay action = iota
	// mend: the answer goes to the client repaired as fix says — a
	// rewritten statement's command tag, rows and errors put back to
	// what its client's text would have had, a refusal's error — and
	// fix's bookkeeping runs as the answer comes (registry undo on
	// failure, a retry after a stale catalog).
	mend
	// swallow: the answer to a message the proxy sent on its own (a
	// re-prepare's Close and Parse): the client sees it only if it is an
	// error.
	swallow
)

// relayed is the entry for a client message whose answer passes through.
func relayed(kind clientMsg) pending { return pending{kind: kind} }

// expect is the entry for a client message whose answer needs f: relayed
// when f is nil, else mended.
func expect(kind clientMsg, f *fix) pending {
	if f == nil {
		return relayed(kind)
	}
	return pending{kind: kind, act: mend, fix: f}
}

// swallowed is the entry for a message the proxy sends on its own, for
// statement stmtName (its Parse's rewrite res, if a Parse).
func swallowed(kind clientMsg, stmtName string, res *rewrite.Result) pending {
	return pending{kind: kind, act: swallow, fix: &fix{stmtName: stmtName, res: res}}
}

// fix is how the answer to a client message is changed, and what the
// server pump must do once it comes.
type fix struct {
	// res is the rewrite of a Query or Parse text (nil: untouched).
	res *rewrite.Result
	// out repairs the answer to a Describe or Execute of a rewritten
	// prepared statement.
	out rewrite.Output
	// stmt counts the statements of a Query answered so far.
	stmt int
	// execOut repairs answers to SQL-level EXECUTEs of rewritten PREPAREs,
	// by statement index (Results are shared and never modified).
	execOut map[int]rewrite.Output
	// refusal: the server's error for this message is replaced by it.
	refusal *pgerr.Error
	// admin: a console command; its errors carry no position.
	admin bool
	// undo takes back what a Parse registered if the server fails it.
	undo *parseUndo
	// sqlUndo takes back the SQL-level PREPAREs and DEALLOCATEs of a
	// Query from the statement the server fails on.
	sqlUndo []sqlUndo
	// retry is set on a Query that may be planned and sent again if the
	// server reports a stale catalog (TS001).
	retry *retry
	// rewritten: a Bind or Execute of a rewritten statement's portal,
	// whose errors the rewritten text raised; stmtName is the statement
	// (or the one a swallowed message re-prepares).
	rewritten bool
	stmtName  string
}

// orNew returns f, or a new fix if f is nil: the answer will need one.
func (f *fix) orNew() *fix {
	if f == nil {
		return &fix{}
	}
	return f
}

// undo returns what takes back p's Parse or Close, if anything.
func (p *pending) undo() *parseUndo {
	if p.fix == nil {
		return nil
	}
	return p.fix.undo
}

// retry is the state of a Query that can be re-sent once after TS001: a
// single rewritten statement sent outside a transaction block, so the
// failed attempt left nothing behind.
type retry struct {
	sql      string
	done     bool
	savedErr []byte // the error to forward if the retry does not happen
}

// copyEnd is the kind of the entry that marks where a client's CopyDone or
// CopyFail went: Syncs sent before it, during COPY-in mode, get no answer,
// and neither does it.
const copyEnd = clientCopyDone

// tracker is the FIFO of pending answers shared by the two pumps. Each side
// batches: the client pump collects entries locally and publishes them in
// one step right before its bytes reach the server (the server cannot
// answer what it has not received), and the server pump takes everything
// published in one step when its local queue runs dry. So a round trip
// costs two lock operations, not one per message.
//
// On an event loop one thread plays both sides, one after the other: the
// tracker is direct, and entries go straight to the server side's queue,
// with no lock and no copy.
type tracker struct {
	mu     sync.Mutex
	shared []pending

	out []pending // client pump only: not yet published

	in   []pending // server pump only: taken, not yet answered
	inHd int
	cur  pending // server pump only: the entry pop returned last

	// ends counts the Syncs, Queries and FunctionCalls pushed (written by
	// the client pump), ended those popped (server pump), answered the
	// ReadyForQuery that finished each (server pump): each such answer is
	// where an implicit or committed transaction ends. ends and answered
	// differ while an answer is outstanding; either pump reads them
	// (settled).
	ends, answered atomic.Uint64
	ended          uint64
	// executed: a Bind or an Execute was pushed since the last Sync
	// (written by the client pump).
	executed atomic.Bool

	// direct: an event loop carries the session. Set when the loop takes
	// the session in and cleared when it hands it back, both with the
	// pumps stopped.
	direct bool
}

// push records an entry (client pump).
func (t *tracker) push(p pending) {
	if endsTransaction(p.kind) {
		t.ends.Add(1)
	}
	// A Bind runs code too: it plans the statement, evaluating immutable
	// functions (a set_config among them) and domain checks. Stored only
	// when it changes: this runs for every message of a pipeline.
	switch p.kind {
	case clientBind, clientExecute:
		if !t.executed.Load() {
			t.executed.Store(true)
		}
	case clientSync:
		if t.executed.Load() {
			t.executed.Store(false)
		}
	}
	if t.direct {
		if t.inHd == len(t.in) {
			t.in, t.inHd = t.in[:0], 0
		}
		t.in = append(t.in, p)
		return
	}
	t.out = append(t.out, p)
}

// publish hands the recorded entries to the server pump (client pump).
func (t *tracker) publish() {
	if len(t.out) == 0 {
		return
	}
	t.mu.Lock()
	t.shared = append(t.shared, t.out...)
	t.mu.Unlock()
	clear(t.out)
	t.out = t.out[:0]
}

// pop removes the oldest published entry and returns it, or nil (server
// pump). The entry is the tracker's until the next pop.
func (t *tracker) pop() *pending {
	if t.inHd == len(t.in) {
		t.in, t.inHd = t.in[:0], 0
		if t.direct {
			return nil
		}
		t.mu.Lock()
		t.in, t.shared = t.shared, t.in
		t.mu.Unlock()
		if len(t.in) == 0 {
			return nil
		}
	}
	t.cur = t.in[t.inHd]
	t.in[t.inHd] = pending{}
	t.inHd++
	if endsTransaction(t.cur.kind) {
		t.ended++
	}
	return &t.cur
}

// settled reports whether the server has answered everything the client
// pump sent before the message it is handling now, to the end: then every
// setting change those messages made has been reported (ParameterStatus
// comes before the ReadyForQuery). Client pump; within an extended-protocol
// batch, a Bind or Execute not yet followed by a Sync counts as unanswered.
func (t *tracker) settled() bool {
	return !t.executed.Load() && t.ends.Load() == t.answered.Load()
}

// settledButCurrent is settled with the answer being handled counted in:
// the server pump is at the ReadyForQuery of the one message outstanding
// (a statement refused before it ran, which changed no setting).
func (t *tracker) settledButCurrent() bool {
	return !t.executed.Load() && t.ends.Load() == t.answered.Load()+1
}

// endsTransaction: the answer to a client message of this kind ends with
// a ReadyForQuery.
func endsTransaction(kind clientMsg) bool {
	return kind == clientSync || kind == clientQuery || kind == clientFunctionCall
}

// idle reports whether no answer is outstanding besides the current one
// (server pump).
func (t *tracker) idle() bool {
	if t.inHd != len(t.in) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.shared) == 0
}

// completes reports whether server message typ finishes the answer to a
// client message of the given kind (an ErrorResponse finishes everything
// but a Query, Sync or FunctionCall, which end with ReadyForQuery).
func completes(p *pending, typ serverMsg) bool {
	switch p.kind {
	case clientQuery, clientSync, clientFunctionCall:
		return typ == serverReadyForQuery
	case clientParse:
		return typ == serverParseComplete || typ == serverErrorResponse
	case clientBind:
		return typ == serverBindComplete || typ == serverErrorResponse
	case clientDescribe:
		return typ == serverRowDescription || typ == serverNoData || typ == serverErrorResponse
	case clientExecute:
		return typ == serverCommandComplete || typ == serverEmptyQueryResponse || typ == serverPortalSuspended || typ == serverErrorResponse
	case clientClose:
		return typ == serverCloseComplete || typ == serverErrorResponse
	}
	return true
}

// async reports server messages that can arrive at any time and answer no
// client message: NoticeResponse, NotificationResponse, ParameterStatus.
func async(typ serverMsg) bool {
	return typ == serverNoticeResponse || typ == serverNotification || typ == serverParameterStatus
}
