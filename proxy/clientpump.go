package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

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
				return false, fatal(pgerrcode.ProgramLimitExceeded, fmt.Sprintf("tombstone: a message of %d bytes is longer than the proxy holds (limits.buffer_budget_bytes is %d)",
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
			f, hidden := s.prepared.follow(typ, cr.buf[cr.start+5:cr.start+min(size, cr.buffered())], s.track.ends.Load())
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

func (s *Session) writeQuery(sql string) error {
	return s.writeMsg(&pgproto3.Query{String: sql})
}

func (s *Session) writeMsg(m pgproto3.FrontendMessage) error {
	b, err := m.Encode(nil)
	if err != nil {
		return fatal(pgerrcode.ProgramLimitExceeded, "rewritten statement too large", err)
	}
	return s.sw.write(b)
}
