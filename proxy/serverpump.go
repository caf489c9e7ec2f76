package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// serverToClient is the server → client pump. Answers are forwarded as
// raw bytes; only answers to statements the proxy rewrote are decoded and
// repaired so the client sees what plain Postgres sends: the command tag
// DELETE n, RowDescription and DataRows without the hidden capture column,
// error positions in the client's own text, refusals. Without a Planner
// nothing is tracked at all.
func (s *Session) serverToClient() error {
	sr, cw := s.sr, s.cw
	for {
		stop := s.clientStopped.Load()
		if !sr.hasHeader() || stop {
			if err := cw.flush(); err != nil {
				return errSessionDone
			}
		}
		if stop {
			return errRejoin
		}
		s.serverBetween = true
		typ, size, err := sr.peekHeader()
		s.serverBetween = false
		if err != nil {
			if errors.Is(err, errRejoin) {
				return errRejoin // what was queued went out above
			}
			if s.reply.lastError && errors.Is(err, io.EOF) {
				_ = cw.flush()
				return errSessionDone
			}
			s.serverClosed(err)
			return errSessionDone
		}
		if err := s.serverMessage(serverMsg(typ), size); err != nil {
			return err
		}
		if serverMsg(typ) == serverReadyForQuery && s.mayRejoin() {
			// Everything is answered: the client pump stops at its next
			// message boundary (a deadline in the past wakes it if it
			// waits for the client), then this pump at its next one.
			s.rejoin.Store(true)
			_ = s.client.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// replyState is where the server → client pump stands in the answers.
type replyState struct {
	// cur is the client message being answered (nil: none): the
	// tracker's, until the next pop.
	cur *pending
	// skipping: an extended-protocol message failed; the server skips to
	// the next Sync.
	skipping bool
	// lastError: the last message was an ErrorResponse.
	lastError bool
	// copyIn: the server is in COPY-in mode.
	copyIn bool
	// undos take back what the failed message and those the server
	// skips after it registered (Parses, Binds, Closes, a Query's
	// PREPAREs and DEALLOCATEs), newest first, at the Sync.
	undos []func()
}

// serverMessage handles the server message whose header is at the front of
// s.sr: forwarded as is, or repaired. It reads more of the server's bytes
// only for a frame that is not buffered whole.
func (s *Session) serverMessage(typ serverMsg, size int) error {
	sr, cw, st := s.sr, s.cw, &s.reply
	tracking := s.srv.planner != nil
	st.lastError = typ == serverErrorResponse
	if tracking && typ == serverParameterStatus && size <= maxSettingReport {
		// client_encoding and standard_conforming_strings decide how the
		// server reads text; it reports each change (only the planner
		// needs to know).
		if err := sr.fill(size); err != nil {
			s.serverClosed(err)
			return errSessionDone
		}
		s.lexing.reported(sr.buf[sr.start+5 : sr.start+size])
	}
	if async(typ) {
		if err := s.forward(sr, cw, size); err != nil {
			return errSessionDone
		}
		return nil
	}
	if st.cur == nil && tracking {
		st.cur = s.track.pop()
		// After an error in an extended-protocol message the server skips
		// everything up to Sync: so do we. In COPY-in mode it ignores
		// Syncs (libpq sends one right after the Execute), up to the
		// client's CopyDone or CopyFail (marker entries).
		for st.cur != nil && (st.cur.kind == copyEnd || st.skipping && st.cur.kind != clientSync || st.copyIn && st.cur.kind == clientSync) {
			if st.cur.kind == copyEnd {
				st.copyIn = false
			}
			if u := st.cur.undo(); st.skipping && u != nil {
				// A Parse, Bind or Close the server skipped changed nothing.
				st.undos = append(st.undos, func() { s.prepared.undoParse(u) })
			}
			if st.skipping && st.cur.kind == clientParse && st.cur.act == swallow {
				// A re-prepare the server skipped: the statement is still
				// the old one, to prepare again at its next Bind.
				s.prepared.markStale(st.cur.fix.stmtName)
			}
			if f := st.cur.fix; st.skipping && st.cur.kind == clientQuery && f != nil && f.sqlUndo != nil {
				// Nor did a Query: the server skips those too up to the
				// Sync, and its PREPAREs and DEALLOCATEs never ran.
				st.undos = append(st.undos, func() { s.prepared.undoSQL(f.sqlUndo, 0) })
			}
			st.cur = s.track.pop()
		}
		st.skipping = false
		// Taken back newest first, the failed message's last: each undo
		// restores what its message found.
		for i := len(st.undos) - 1; i >= 0; i-- {
			st.undos[i]()
		}
		clear(st.undos)
		st.undos = st.undos[:0]
	}
	if typ == serverCopyInResponse {
		st.copyIn = true
	}
	if st.cur == nil && tracking {
		s.log.Debug("answer matches no pending message", zap.String("type", string(typ)))
	}
	cur := st.cur
	if cur != nil && cur.fix != nil && cur.fix.retry != nil && (typ == serverErrorResponse || typ == serverReadyForQuery && cur.fix.retry.savedErr != nil) {
		if s.track.direct {
			// A re-send re-plans, which may wait on a catalog load: not
			// on the event loop. Untouched, the frame goes to the pumps.
			return errNeedsPumps
		}
		return s.retryAnswer(typ)
	}
	if typ == serverReadyForQuery && size == 6 {
		if err := sr.fill(6); err != nil {
			s.serverClosed(err)
			return errSessionDone
		}
		s.txStatus.Store(uint32(sr.buf[sr.start+5]))
		if sr.buf[sr.start+5] == TxIdle && tracking && s.prepared.rewritten.Load() {
			s.prepared.portalsEnded(s.track.ended)
		}
		// No ReadyForQuery in COPY-in mode: a COPY that failed is over
		// even if the client never sends CopyDone or CopyFail (the
		// protocol lets it stop), and later Syncs count again.
		st.copyIn = false
	}
	if cur != nil && (cur.kind == clientParse && typ == serverParseComplete || cur.kind == clientClose && typ == serverCloseComplete) && cur.undo() != nil {
		s.prepared.parseAnswered(cur.undo())
	}
	if cur != nil && (cur.kind == clientParse || cur.kind == clientClose || cur.kind == clientBind) && typ == serverErrorResponse && cur.undo() != nil {
		// The server skips what follows up to the Sync: taken back with
		// those messages, after them.
		u := cur.undo()
		st.undos = append(st.undos, func() { s.prepared.undoParse(u) })
	}
	if cur != nil && cur.kind == clientQuery && typ == serverErrorResponse && cur.fix != nil && cur.fix.sqlUndo != nil {
		s.prepared.undoSQL(cur.fix.sqlUndo, cur.fix.stmt)
	}
	act := relay
	if cur != nil {
		act = cur.act
	}
	switch {
	case act == relay, act == mend && !needsRepair(cur.fix, typ):
		if err := s.forward(sr, cw, size); err != nil {
			return errSessionDone
		}
	case act == swallow && typ != serverErrorResponse:
		// The answer to a message the client never sent.
		if _, err := s.wholeFrame(); err != nil {
			return err
		}
	default:
		if act == swallow && cur.kind == clientParse {
			s.prepared.forgetStatement(cur.fix.stmtName) // its Close ran; the client sees the error
		}
		frame, err := s.wholeFrame()
		if err != nil {
			return err
		}
		if err := cw.write(s.repair(cur.fix, frame)); err != nil {
			return errSessionDone
		}
	}
	if cur == nil {
		return nil
	}
	if cur.kind == clientQuery && cur.fix != nil && (typ == serverCommandComplete || typ == serverEmptyQueryResponse) {
		cur.fix.stmt++
	}
	if completes(cur, typ) {
		if typ == serverReadyForQuery {
			s.track.answered.Add(1)
		}
		st.cur = nil
		if typ == serverErrorResponse && !endsTransaction(cur.kind) {
			st.skipping = true
		}
	}
	return nil
}

// retryAnswer handles an ErrorResponse to a Query that may be re-sent after
// a stale catalog, and the ReadyForQuery after a held-back one.
func (s *Session) retryAnswer(typ serverMsg) error {
	cur, cw := s.reply.cur.fix, s.cw
	frame, err := s.wholeFrame()
	if err != nil {
		return err
	}
	if typ == serverErrorResponse {
		out := s.repair(cur, frame)
		if !cur.retry.done && staleCatalog(cur, frame) {
			s.srv.catalogChanged(s)
			// Hold the error back: if the statement can run again with a
			// fresh catalog, the client never sees it.
			cur.retry.savedErr = append([]byte(nil), out...)
			return nil
		}
		if cur.sqlUndo != nil {
			s.prepared.undoSQL(cur.sqlUndo, cur.stmt) // the error stands: a PREPARE in it did not run
		}
		if err := cw.write(out); err != nil {
			return errSessionDone
		}
		return nil
	}
	// ReadyForQuery after a held-back TS001.
	if len(frame) == 6 {
		s.txStatus.Store(uint32(frame[5]))
	}
	if len(frame) == 6 && frame[5] == TxIdle && s.resend(cur) {
		return nil
	}
	saved := cur.retry.savedErr
	cur.retry.savedErr = nil
	if cur.sqlUndo != nil {
		s.prepared.undoSQL(cur.sqlUndo, cur.stmt) // not re-sent: the error stands
	}
	if err := cw.write(saved); err != nil {
		return errSessionDone
	}
	if err := cw.write(frame); err != nil {
		return errSessionDone
	}
	s.track.answered.Add(1)
	s.reply.cur = nil
	return nil
}

// resend plans a Query again after TS001 (the catalog was reloaded) and
// sends it, if nothing else is in flight; the answer then goes to the
// client as if the first attempt never happened.
func (s *Session) resend(cur *fix) bool {
	cur.retry.done = true
	if s.terminating.Load() {
		return false // the client's Terminate went out behind the Query: the server would not run it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// (Nothing but this statement is outstanding once it may be re-sent,
	// and it failed before it ran: the session's settings are what they
	// were, so text whose reading depends on them can be planned.)
	req := s.request(cur.retry.sql)
	req.Lexing = s.lexing.now(s.track.settledButCurrent())
	planned := s.srv.planner.Plan(ctx, req)
	plan, ok := planned.(Rewrite)
	if !ok || !plan.Result.Changed || plan.Result.Refusal() != nil {
		why := fmt.Sprintf("%T", planned)
		if r, refused := planned.(Refuse); refused {
			why = r.Err.Error()
		}
		s.log.Info("statement planned against a stale catalog: not re-sent, planned again it is not a rewrite to run", zap.String("plan", why))
		return false
	}
	frame, err := (&pgproto3.Query{String: plan.Result.SQL}).Encode(nil)
	if err != nil {
		return false
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.track.idle() || s.midFrame.Load() {
		s.log.Info("statement planned against a stale catalog: not re-sent, the client has sent more since")
		return false
	}
	if _, err := s.server.Write(frame); err != nil {
		return false
	}
	s.log.Info("statement planned against a stale catalog: re-planned and re-sent")
	s.srv.cfg.Metrics.StaleResends.Inc()
	if cur.sqlUndo != nil {
		// A PREPARE: registered again as re-planned.
		s.prepared.undoSQL(cur.sqlUndo, 0)
		cur.sqlUndo = nil
		for i := range plan.Result.Statements {
			if u := s.prepared.sqlRegister(&plan.Result.Statements[i], i); u != nil {
				cur.sqlUndo = append(cur.sqlUndo, *u)
			}
		}
	}
	cur.res = plan.Result
	cur.stmt = 0
	cur.retry.savedErr = nil
	return true
}

// wholeFrame reads the next server frame whole, to be decoded: what is
// queued for the client goes out first (the frame may take a while).
func (s *Session) wholeFrame() ([]byte, error) {
	if err := s.cw.flush(); err != nil {
		return nil, errSessionDone
	}
	frame, err := s.sr.next()
	if err != nil {
		s.serverClosed(err)
		return nil, errSessionDone
	}
	return frame, nil
}

// errNeedsPumps: the server's frame at the front of s.sr needs what the
// event loop must not do (re-planning a statement); nothing was consumed.
var errNeedsPumps = errors.New("answer for the pumps")
