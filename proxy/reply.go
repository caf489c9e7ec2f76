package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
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
		if err := s.serverMessage(typ, size); err != nil {
			return err
		}
		if typ == 'Z' && s.mayRejoin() {
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
func (s *Session) serverMessage(typ byte, size int) error {
	sr, cw, st := s.sr, s.cw, &s.reply
	tracking := s.srv.planner != nil
	st.lastError = typ == 'E'
	if tracking && typ == 'S' && size <= maxSettingReport {
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
		for st.cur != nil && (st.cur.kind == copyEnd || st.skipping && st.cur.kind != 'S' || st.copyIn && st.cur.kind == 'S') {
			if st.cur.kind == copyEnd {
				st.copyIn = false
			}
			if u := st.cur.undo(); st.skipping && u != nil {
				// A Parse, Bind or Close the server skipped changed nothing.
				st.undos = append(st.undos, func() { s.undoParse(u) })
			}
			if f := st.cur.fix; st.skipping && st.cur.kind == 'P' && f != nil && f.hidden {
				// A re-prepare the server skipped: the statement is still
				// the old one, to prepare again at its next Bind.
				s.markStale(f.stmtName)
			}
			if f := st.cur.fix; st.skipping && st.cur.kind == 'Q' && f != nil && f.sqlUndo != nil {
				// Nor did a Query: the server skips those too up to the
				// Sync, and its PREPAREs and DEALLOCATEs never ran.
				st.undos = append(st.undos, func() { s.undoSQL(f.sqlUndo, 0) })
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
	if typ == 'G' {
		st.copyIn = true
	}
	if st.cur == nil && tracking {
		s.log.Debug("answer matches no pending message", zap.String("type", string(typ)))
	}
	cur := st.cur
	if cur != nil && cur.fix != nil && cur.fix.retry != nil && (typ == 'E' || typ == 'Z' && cur.fix.retry.savedErr != nil) {
		if s.track.direct {
			// A re-send re-plans, which may wait on a catalog load: not
			// on the event loop. Untouched, the frame goes to the pumps.
			return errNeedsPumps
		}
		return s.retryAnswer(typ)
	}
	if typ == 'Z' && size == 6 {
		if err := sr.fill(6); err != nil {
			s.serverClosed(err)
			return errSessionDone
		}
		s.txStatus.Store(uint32(sr.buf[sr.start+5]))
		if sr.buf[sr.start+5] == 'I' && tracking && s.prepared.rewritten.Load() {
			s.portalsEnded()
		}
		// No ReadyForQuery in COPY-in mode: a COPY that failed is over
		// even if the client never sends CopyDone or CopyFail (the
		// protocol lets it stop), and later Syncs count again.
		st.copyIn = false
	}
	if cur != nil && (cur.kind == 'P' && typ == '1' || cur.kind == 'C' && typ == '3') && cur.undo() != nil {
		s.parseAnswered(cur.undo())
	}
	if cur != nil && (cur.kind == 'P' || cur.kind == 'C' || cur.kind == 'B') && typ == 'E' && cur.undo() != nil {
		// The server skips what follows up to the Sync: taken back with
		// those messages, after them.
		u := cur.undo()
		st.undos = append(st.undos, func() { s.undoParse(u) })
	}
	if cur != nil && cur.kind == 'Q' && typ == 'E' && cur.fix != nil && cur.fix.sqlUndo != nil {
		s.undoSQL(cur.fix.sqlUndo, cur.fix.stmt)
	}
	if cur == nil || cur.fix == nil || !cur.fix.hidden && !needsRepair(cur.fix, typ) {
		if err := s.forward(sr, cw, size); err != nil {
			return errSessionDone
		}
	} else if cur.fix.hidden && typ != 'E' {
		// The answer to a message the client never sent.
		if _, err := s.wholeFrame(); err != nil {
			return err
		}
	} else {
		if cur.fix.hidden && cur.kind == 'P' {
			s.forgetStatement(cur.fix.stmtName) // its Close ran; the client sees the error
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
	if cur.kind == 'Q' && cur.fix != nil && (typ == 'C' || typ == 'I') {
		cur.fix.stmt++
	}
	if completes(cur, typ) {
		if typ == 'Z' {
			s.track.answered.Add(1)
		}
		st.cur = nil
		if typ == 'E' && cur.kind != 'Q' && cur.kind != 'S' && cur.kind != 'F' {
			st.skipping = true
		}
	}
	return nil
}

// retryAnswer handles an ErrorResponse to a Query that may be re-sent after
// a stale catalog, and the ReadyForQuery after a held-back one.
func (s *Session) retryAnswer(typ byte) error {
	cur, cw := s.reply.cur.fix, s.cw
	frame, err := s.wholeFrame()
	if err != nil {
		return err
	}
	if typ == 'E' {
		out := s.repair(cur, frame)
		if !cur.retry.done && staleCatalog(cur, frame) {
			s.srv.catalogChanged(s)
			// Hold the error back: if the statement can run again with a
			// fresh catalog, the client never sees it.
			cur.retry.savedErr = append([]byte(nil), out...)
			return nil
		}
		if cur.sqlUndo != nil {
			s.undoSQL(cur.sqlUndo, cur.stmt) // the error stands: a PREPARE in it did not run
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
	if len(frame) == 6 && frame[5] == 'I' && s.resend(cur) {
		return nil
	}
	saved := cur.retry.savedErr
	cur.retry.savedErr = nil
	if cur.sqlUndo != nil {
		s.undoSQL(cur.sqlUndo, cur.stmt) // not re-sent: the error stands
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

// needsRepair reports whether server message typ, answering p, must be
// decoded and changed.
func needsRepair(p *fix, typ byte) bool {
	switch typ {
	case 'E':
		return true
	case 'C', 'T', 'D':
		o := outputOf(p)
		return o.TagFrom != "" || o.Tag != "" || o.HiddenColumns > 0 || o.NoRows
	}
	return false
}

// outputOf returns the output repair for the statement p is answering now.
func outputOf(p *fix) rewrite.Output {
	if out, ok := p.execOut[p.stmt]; ok {
		return out
	}
	if p.res != nil {
		if p.stmt < len(p.res.Statements) {
			return p.res.Statements[p.stmt].Output
		}
		return rewrite.Output{}
	}
	return p.out
}

// rewrittenError drops from an error the rewritten text raised what only
// the rewrite caused — the CONTEXT of the proxy's own PL/pgSQL, all of it
// for its own guards (SQLSTATE TS…) — and reports a stale catalog.
func (s *Session) rewrittenError(e *pgproto3.ErrorResponse) {
	if strings.HasPrefix(e.Code, "TS") {
		// Where in our PL/pgSQL our guards raised is noise to the client.
		e.Where = ""
	}
	e.Where = withoutOwnContext(e.Where)
	if e.Code == CodeCatalogChanged {
		s.srv.catalogChanged(s)
	}
}

// noData is a NoData message.
var noData = []byte{'n', 0, 0, 0, 4}

// repair rewrites one server frame answering p; nil: it is not sent.
func (s *Session) repair(p *fix, frame []byte) []byte {
	switch frame[0] {
	case 'C':
		if len(frame) < 6 {
			return frame
		}
		tag := string(frame[5 : len(frame)-1])
		fixed := outputOf(p).CommandTag(tag)
		if fixed == tag {
			return frame
		}
		out, err := (&pgproto3.CommandComplete{CommandTag: []byte(fixed)}).Encode(nil)
		if err != nil {
			return frame
		}
		return out
	case 'T':
		if outputOf(p).NoRows {
			// The original statement returns no rows: a Describe of it is
			// answered NoData, and a Query sends no RowDescription.
			if s.reply.cur != nil && s.reply.cur.kind == 'Q' {
				return nil
			}
			return noData
		}
		return stripRowDescription(frame, outputOf(p).HiddenColumns)
	case 'D':
		if outputOf(p).NoRows {
			return nil
		}
		return stripDataRow(frame, outputOf(p).HiddenColumns)
	case 'E':
		return s.repairError(p, frame)
	}
	return frame
}

// repairError maps an error's position back into the client's text, or
// replaces it with the refusal it stands for.
func (s *Session) repairError(p *fix, frame []byte) []byte {
	var e pgproto3.ErrorResponse
	if err := e.Decode(frame[5:]); err != nil {
		return frame
	}
	switch {
	case e.Code == "25P02":
		// In a failed transaction the server refuses everything first;
		// that is what Postgres would have said, refusal or not.
		return frame
	case p.refusal != nil:
		r := p.refusal
		e = pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.SeverityUnlocalized,
			Code: r.Code, Message: r.Message, Detail: r.Detail, Hint: r.Hint, Position: int32(r.Position)}
	case p.admin:
		e.Position = 0
		e.Where = ""
	case e.Code == "08P01" && p.out.HiddenColumns > 0 && e.Routine == "PortalSetResultFormat":
		// A Bind given one result format per column, and the hidden
		// columns' formats (bindHidden): Postgres counts both without
		// them. Its message ("bind message has %d result formats but
		// query has %d columns", translated under lc_messages) is told
		// from the Bind's other protocol errors by the routine raising
		// it (src/backend/tcop/pquery.c), which is not translated, and
		// holds the two counts and no other number in every language.
		h := p.out.HiddenColumns
		var msg strings.Builder
		counts := 0
		for i := 0; i < len(e.Message); {
			j, n := i, 0
			for ; j < len(e.Message) && '0' <= e.Message[j] && e.Message[j] <= '9' && j-i < 9; j++ {
				n = n*10 + int(e.Message[j]-'0')
			}
			if j == i {
				msg.WriteByte(e.Message[i])
				i++
				continue
			}
			if n < h {
				return frame
			}
			msg.WriteString(fmt.Sprint(n - h))
			counts++
			i = j
		}
		if counts != 2 {
			return frame
		}
		e.Message = msg.String()
	case p.res != nil && (p.res.Changed || p.res.Refusal() != nil):
		// A refused statement leaves the text unchanged but for the DO
		// block that raises the refusal.
		if p.stmt < len(p.res.Statements) && p.res.Statements[p.stmt].Refusal != nil {
			r := p.res.Statements[p.stmt].Refusal
			e = pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.SeverityUnlocalized,
				Code: r.Code, Message: r.Message, Detail: r.Detail, Hint: r.Hint, Position: int32(r.Position)}
			break
		}
		if e.Position > 0 {
			e.Position = int32(p.res.OriginalPosition(int(e.Position)))
		}
		s.rewrittenError(&e)
	case p.rewritten:
		// A Bind or Execute of a rewritten statement: no position into
		// the client's text to map to (Postgres reports positions at the
		// Parse), and no CONTEXT of the proxy's own PL/pgSQL.
		e.Position = 0
		s.rewrittenError(&e)
		if e.Code == CodeCatalogChanged || missingObject(e.Code) {
			// Out of date: prepared again at its next Bind, against a
			// catalog loaded anew (a 42703, 42P01 or 42704 — a column,
			// table or type its rewrite names is gone — says the
			// catalog is stale too).
			if e.Code != CodeCatalogChanged {
				s.srv.catalogChanged(s)
			}
			s.markStale(p.stmtName)
		}
	default:
		if e.Code == CodeCatalogChanged {
			// Our guard, in a statement the proxy did not rewrite this
			// time (the EXECUTE of a PREPAREd rewrite): stale all the same.
			s.srv.catalogChanged(s)
		}
		return frame
	}
	out, err := e.Encode(nil)
	if err != nil {
		return frame
	}
	return out
}

// withoutOwnContext cuts an error's CONTEXT where the proxy's own
// functions (TRUNCATE and DROP TABLE run inside them) begin: the client
// sees the lines Postgres would have sent for its statement alone. The
// lines are translated under lc_messages, so it decides by their shape
// (see ownContext and contextFrame), not their words.
func withoutOwnContext(where string) string {
	lines := strings.Split(where, "\n")
	for i, l := range lines {
		if !ownContext(l) {
			continue
		}
		// The statement our function ran ("SQL statement \"%s\"") ends
		// on the line above with a closing quote mark, over as many
		// lines as its text has: it goes too.
		if i > 0 && strings.ContainsAny(lastRune(lines[i-1]), contextQuotes) {
			for j := i - 1; j >= 0; j-- {
				if contextFrame(lines[j]) {
					i = j
					break
				}
			}
		}
		return strings.Join(lines[:i], "\n")
	}
	return where
}

// contextQuotes are the quote marks PostgreSQL's translations put around
// a statement's text in CONTEXT ("SQL statement \"%s\"" is
// "SQL-Anweisung »%s«" in German, "instruction SQL « %s »" in French).
const contextQuotes = "\"«»“”„「」"

// lastRune returns the last character of s, or "".
func lastRune(s string) string {
	r := []rune(s)
	if len(r) == 0 {
		return ""
	}
	return string(r[len(r)-1])
}

// contextFrame reports whether a CONTEXT line starts the frame of a
// statement's text (not a line of that text, which goes on over lines):
// before its first quote mark it names SQL, as every translation of
// "SQL statement \"%s\"" and "SQL expression \"%s\"" does — and not
// PL/pgSQL, which some languages quote a function's name after.
func contextFrame(line string) bool {
	q := strings.IndexAny(line, contextQuotes)
	if q < 0 {
		return false
	}
	return strings.Contains(strings.ReplaceAll(line[:q], "PL/pgSQL", ""), "SQL")
}

// ownFunctions are the store's functions that run Postgres's own
// statements for a rewritten one (TRUNCATE, DROP TABLE), and its event
// triggers: their frames in an error's CONTEXT are the proxy's doing. Functions of the tombstone
// schema run with tombstone on their search_path, so Postgres names them
// unqualified in the frames below the first.
var ownFunctions = []string{"capture_truncate(", "trash_tables(", "detach_partition(", "guarded_ddl(", "_resolve_as(", "_exec_as(", "_names_as(",
	"_on_drop(", "_on_ddl("}

// ownContext reports whether a CONTEXT line is a frame of the store's
// functions. Postgres names the function (format_procedure, not
// translated) where the language puts it ("PL/pgSQL function %s line %d
// at %s", "PL/pgSQL-Funktion %s Zeile %d bei %s", "在%3$s的第%2$d行的PL/pgSQL函数%1$s"):
// a name of the store starting a word, in a line that is not a
// statement's text.
func ownContext(line string) bool {
	if contextFrame(line) {
		return false
	}
	nameByte := func(b byte) bool {
		return b == '_' || b == '$' || b == '.' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
	for _, f := range append([]string{"tombstone."}, ownFunctions...) {
		for from := 0; ; {
			k := strings.Index(line[from:], f)
			if k < 0 {
				break
			}
			k += from
			from = k + 1
			if k > 0 && nameByte(line[k-1]) {
				continue
			}
			if f != "tombstone." {
				return true
			}
			// tombstone.name(
			rest := line[k+len(f):]
			n := 0
			for n < len(rest) && nameByte(rest[n]) && rest[n] != '.' && rest[n] != '$' {
				n++
			}
			if n > 0 && n < len(rest) && rest[n] == '(' {
				return true
			}
		}
	}
	return false
}

// CodeCatalogChanged is raised by tombstone.check_catalog when the catalog a
// rewrite was planned with no longer matches the database.
const CodeCatalogChanged = "TS001"

// stripRowDescription removes the last n fields of a RowDescription frame.
func stripRowDescription(frame []byte, n int) []byte {
	var rd pgproto3.RowDescription
	if n <= 0 || rd.Decode(frame[5:]) != nil || len(rd.Fields) < n {
		return frame
	}
	rd.Fields = rd.Fields[:len(rd.Fields)-n]
	out, err := rd.Encode(nil)
	if err != nil {
		return frame
	}
	return out
}

// stripDataRow removes the last n values of a DataRow frame in place.
func stripDataRow(frame []byte, n int) []byte {
	if n <= 0 || len(frame) < 7 {
		return frame
	}
	count := int(binary.BigEndian.Uint16(frame[5:7]))
	if count < n {
		return frame
	}
	keep := count - n
	off := 7
	for range keep {
		if off+4 > len(frame) {
			return frame
		}
		l := int(int32(binary.BigEndian.Uint32(frame[off:])))
		off += 4
		if l > 0 {
			off += l
		}
		if off > len(frame) {
			return frame
		}
	}
	frame = frame[:off]
	binary.BigEndian.PutUint16(frame[5:7], uint16(keep))
	binary.BigEndian.PutUint32(frame[1:5], uint32(off-1))
	return frame
}

// staleCatalog reports whether an ErrorResponse to a rewritten statement
// means the catalog it was planned with is out of date: TS001 from the
// signature guard, or — when a column or table was dropped or renamed a
// moment ago, before the guard could run — an undefined column, table or
// type in the capture the proxy generated (judged by where the error
// points, not by its wording, which follows the server's lc_messages).
func staleCatalog(p *fix, frame []byte) bool {
	var e pgproto3.ErrorResponse
	if e.Decode(frame[5:]) != nil {
		return false
	}
	return e.Code == CodeCatalogChanged || missingObject(e.Code) && p.res.Generated(int(e.Position))
}

// missingObject reports whether SQLSTATE code says a column (42703), a
// table (42P01) or a type (42704) a statement names does not exist, or
// that no operator takes the types it compares (42883, 42804): when the
// statement is a rewrite's, a sign of the catalog it was planned with
// being out of date (a cascade's table the capture names was dropped,
// renamed or made again with other types since — the regression suite
// drops and creates its tables again under the same names, and a DELETE
// sent right after, before the catalog's NOTIFY arrived, compared an
// integer key with a text column of the table's earlier self).
func missingObject(code string) bool {
	switch code {
	case "42703", "42P01", "42704", "42883", "42804":
		return true
	}
	return false
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
	plan, err := s.srv.planner.Plan(ctx, s, cur.retry.sql, false)
	if err != nil || plan == nil || plan.Result == nil || !plan.Result.Changed || plan.Result.Refusal() != nil {
		return false
	}
	frame, err := (&pgproto3.Query{String: plan.Result.SQL}).Encode(nil)
	if err != nil {
		return false
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.track.idle() || s.midFrame.Load() {
		return false
	}
	if _, err := s.server.Write(frame); err != nil {
		return false
	}
	s.log.Info("statement planned against a stale catalog: re-planned and re-sent")
	s.srv.cfg.Metrics.StaleResends.Inc()
	if cur.sqlUndo != nil {
		// A PREPARE: registered again as re-planned.
		s.undoSQL(cur.sqlUndo, 0)
		cur.sqlUndo = nil
		for i := range plan.Result.Statements {
			if u := s.sqlRegister(&plan.Result.Statements[i], i); u != nil {
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
