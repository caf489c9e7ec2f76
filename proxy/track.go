package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// pending is what the server pump expects back for one client message that
// the server answers. The client pump appends one per such message, in
// order; the server pump takes them off as the answers complete. This is
// how a reply is matched to the statement the proxy changed, pipelines
// included. It is copied on the per-message path, so it is small: what
// only a changed statement needs is behind fix.
type pending struct {
	kind byte // client message type: Q P B D E C S F
	// fix is what the answer needs beyond passing through (nil: nothing).
	fix *fix
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
	refusal *rewrite.Error
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
	// whose errors the rewritten text raised; stmtName is the statement.
	rewritten bool
	stmtName  string
	// hidden: a message the proxy sent on its own (reprepare), whose
	// answer the client does not see unless it is an error.
	hidden bool
}

// entry returns the pending entry for a client message of the given kind
// whose answer needs f: without a fix (and without allocating) if f
// changes nothing, else with a copy of f.
func (f *fix) entry(kind byte) pending {
	if f.res == nil && f.out == (rewrite.Output{}) && f.refusal == nil && !f.admin && f.execOut == nil && f.retry == nil && f.undo == nil && f.sqlUndo == nil && !f.rewritten && !f.hidden {
		return pending{kind: kind}
	}
	c := *f
	return pending{kind: kind, fix: &c}
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

// copyEnd marks where a client's CopyDone or CopyFail went: Syncs sent
// before it, during COPY-in mode, get no answer.
const copyEnd = 'c'

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
	case 'B', 'E':
		if !t.executed.Load() {
			t.executed.Store(true)
		}
	case 'S':
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

// endsTransaction: the answer to a client message of this kind ends with
// a ReadyForQuery.
func endsTransaction(kind byte) bool { return kind == 'S' || kind == 'Q' || kind == 'F' }

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
func completes(p *pending, typ byte) bool {
	switch p.kind {
	case 'Q', 'S', 'F':
		return typ == 'Z'
	case 'P':
		return typ == '1' || typ == 'E'
	case 'B':
		return typ == '2' || typ == 'E'
	case 'D':
		return typ == 'T' || typ == 'n' || typ == 'E'
	case 'E':
		return typ == 'C' || typ == 'I' || typ == 's' || typ == 'E'
	case 'C':
		return typ == '3' || typ == 'E'
	}
	return true
}

// async reports server messages that can arrive at any time and answer no
// client message: NoticeResponse, NotificationResponse, ParameterStatus.
func async(typ byte) bool { return typ == 'N' || typ == 'A' || typ == 'S' }
