package proxy

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// needsRepair reports whether server message typ, answering p, must be
// decoded and changed.
func needsRepair(p *fix, typ serverMsg) bool {
	switch typ {
	case serverErrorResponse:
		return true
	case serverCommandComplete, serverRowDescription, serverDataRow:
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
	if e.Code == pgerr.CatalogChanged {
		s.srv.catalogChanged(s)
	} else if strings.HasPrefix(e.Code, "TS") {
		s.srv.cfg.Metrics.Refusals.WithLabelValues(e.Code).Inc()
	}
}

// noData is a NoData message.
var noData = []byte{byte(serverNoData), 0, 0, 0, 4}

// repair rewrites one server frame answering p; nil: it is not sent.
func (s *Session) repair(p *fix, frame []byte) []byte {
	switch serverMsg(frame[0]) {
	case serverCommandComplete:
		if len(frame) < 6 {
			return frame
		}
		tag := string(frame[5 : len(frame)-1])
		fixed := outputOf(p).CommandTag(tag)
		if fixed != tag && strings.HasPrefix(fixed, "DELETE ") {
			// (A rewritten DELETE answers as the SELECT it became.)
			if n, err := strconv.ParseUint(fixed[len("DELETE "):], 10, 64); err == nil && n > 0 {
				s.srv.cfg.Metrics.DeletedRows.WithLabelValues(s.Params["database"]).Add(float64(n))
			}
		}
		if fixed == tag {
			return frame
		}
		out, err := (&pgproto3.CommandComplete{CommandTag: []byte(fixed)}).Encode(nil)
		if err != nil {
			return frame
		}
		return out
	case serverRowDescription:
		if outputOf(p).NoRows {
			// The original statement returns no rows: a Describe of it is
			// answered NoData, and a Query sends no RowDescription.
			if s.reply.cur != nil && s.reply.cur.kind == clientQuery {
				return nil
			}
			return noData
		}
		return stripRowDescription(frame, outputOf(p).HiddenColumns)
	case serverDataRow:
		if outputOf(p).NoRows {
			return nil
		}
		return stripDataRow(frame, outputOf(p).HiddenColumns)
	case serverErrorResponse:
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
	case e.Code == pgerrcode.InFailedSQLTransaction:
		// In a failed transaction the server refuses everything first;
		// that is what Postgres would have said, refusal or not.
		return frame
	case p.refusal != nil:
		r := p.refusal
		e = pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.SeverityUnlocalized,
			Code: r.Code, Message: r.Message, Detail: r.Detail, Hint: r.Hint, Position: int32(r.Position)}
	case p.admin:
		// A failed admin command leaves no row in the store's audit trail
		// (it rolls back with the command): the log keeps the attempt.
		s.log.Info("admin command failed", zap.String("sqlstate", e.Code), zap.String("message", e.Message),
			zap.String("user", s.Params["user"]), zap.String("client", s.ClientAddr))
		e.Position = 0
		e.Where = ""
	case e.Code == pgerrcode.ProtocolViolation && p.out.HiddenColumns > 0 && e.Routine == "PortalSetResultFormat":
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
		if e.Code == pgerr.CatalogChanged || missingObject(e.Code) {
			// Out of date: prepared again at its next Bind, against a
			// catalog loaded anew (a 42703, 42P01 or 42704 — a column,
			// table or type its rewrite names is gone — says the
			// catalog is stale too).
			if e.Code != pgerr.CatalogChanged {
				s.srv.catalogChanged(s)
			}
			s.prepared.markStale(p.stmtName)
		}
	default:
		if e.Code == pgerr.CatalogChanged {
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
// (see ownContext and statementText), not their words. The text of a
// statement in a frame ("SQL statement \"%s\"") may run over lines,
// which are read as text, never as frames, up to the closing quote mark.
func withoutOwnContext(where string) string {
	lines := strings.Split(where, "\n")
	inText := false
	for i, l := range lines {
		if inText {
			inText = !endsQuoted(l)
			continue
		}
		if text, ok := statementText(l); ok {
			inText = !endsQuoted(text)
			continue
		}
		if !ownContext(l) {
			continue
		}
		// The statement our function ran ends on the line above with a
		// closing quote mark, over as many lines as its text has: it goes
		// too.
		if i > 0 && endsQuoted(lines[i-1]) {
			for j := i - 1; j >= 0; j-- {
				if _, ok := statementText(lines[j]); ok {
					i = j
					break
				}
			}
		}
		return strings.Join(lines[:i], "\n")
	}
	return where
}

// statementText returns what a CONTEXT line that starts a statement's
// text ("SQL statement \"%s\"", "SQL expression \"%s\"", "PL/pgSQL
// assignment \"%s\"") holds of that text, which may go on over lines;
// ok is false for any other line. Before its first quote mark such a
// line names SQL, in every translation; one that quotes a name and goes
// on in words ("SQL function \"%s\" statement %d", Korean's "PL/pgSQL
// function \"%s\"…") is a frame of code (nameFrame).
func statementText(line string) (text string, ok bool) {
	before, after, ok := cutQuote(line)
	if !ok || !strings.Contains(before, "SQL") || nameFrame(after) {
		return "", false
	}
	return after, true
}

// cutQuote returns s before and after its first quote mark of
// contextQuotes; ok is false when it has none.
func cutQuote(s string) (before, after string, ok bool) {
	q := strings.IndexAny(s, contextQuotes)
	if q < 0 {
		return s, "", false
	}
	_, size := utf8.DecodeRuneInString(s[q:])
	return s[:q], s[q+size:], true
}

// nameFrame reports whether after, the rest of a frame's line after its
// first quote mark, is a quoted name and words after it ("SQL function
// \"%s\" statement %d", "fonction SQL « %s », instruction %d") rather
// than the start of a statement's text: one word up to the closing quote,
// and no quote mark after it.
func nameFrame(after string) bool {
	name, rest, ok := cutQuote(after)
	if !ok {
		return false
	}
	name = strings.TrimSpace(name)
	if i := strings.IndexByte(name, '('); i >= 0 && strings.HasSuffix(name, ")") {
		name = name[:i] // a function's argument types may hold spaces
	}
	return name != "" && !strings.ContainsAny(name, " \t") &&
		strings.TrimSpace(rest) != "" && !strings.ContainsAny(rest, contextQuotes)
}

// endsQuoted reports whether s ends with a quote mark of contextQuotes.
func endsQuoted(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r != utf8.RuneError && strings.ContainsRune(contextQuotes, r)
}

// contextQuotes are the quote marks PostgreSQL's translations put around
// a statement's text in CONTEXT ("SQL statement \"%s\"" is
// "SQL-Anweisung »%s«" in German, "instruction SQL « %s »" in French).
const contextQuotes = "\"«»“”„「」"

// ownFunctions are the store's functions that run Postgres's own
// statements for a rewritten one (TRUNCATE, DROP TABLE), and its event
// triggers: their frames in an error's CONTEXT are the proxy's doing. Functions of the tombstone
// schema run with tombstone on their search_path, so Postgres names them
// unqualified in the frames below the first.
var ownFunctions = []string{"capture_truncate(", "trash_tables(", "detach_partition(", "guarded_ddl(", "_resolve_as(", "_exec_as(", "_names_as(",
	"_on_drop(", "_on_ddl("}

// ownContext reports whether a CONTEXT line that is not a statement's
// text is a frame of the store's functions. Postgres names the function
// (format_procedure, not translated) where the language puts it
// ("PL/pgSQL function %s line %d at %s", "PL/pgSQL-Funktion %s Zeile %d
// bei %s", "在%3$s的第%2$d行的PL/pgSQL函数%1$s"): a name of the store
// starting a word.
func ownContext(line string) bool {
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
			open := k + len(f) - 1 // ownFunctions' names end with "("
			if f == "tombstone." {
				n := k + len(f)
				for n < len(line) && nameByte(line[n]) && line[n] != '.' && line[n] != '$' {
					n++
				}
				if n == k+len(f) || n >= len(line) || line[n] != '(' {
					continue
				}
				open = n
			}
			// The name, then its argument types in brackets (no values, no
			// quotes), and, outside them, the frame's line number: a call
			// in a statement's text is not a frame.
			end := strings.IndexByte(line[open:], ')')
			if end < 0 || strings.ContainsAny(line[open:open+end], contextQuotes+"'") {
				continue
			}
			if !strings.ContainsAny(line[:k]+line[open+end+1:], "0123456789") {
				continue
			}
			return true
		}
	}
	return false
}

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
	return e.Code == pgerr.CatalogChanged || missingObject(e.Code) && p.res.Generated(int(e.Position))
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
	case pgerrcode.UndefinedColumn, pgerrcode.UndefinedTable, pgerrcode.UndefinedObject, pgerrcode.UndefinedFunction, pgerrcode.DatatypeMismatch:
		return true
	}
	return false
}
