package rewrite

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// Result is the outcome of rewriting one Query (or Parse) message text.
// A Result may be shared between goroutines (see Cache) and must not be
// modified.
type Result struct {
	// Changed is false when no statement was rewritten; the caller then
	// forwards the original bytes. A refusal alone does not set Changed.
	Changed bool
	// SQL is the text to send to the server: the original text with every
	// rewritten statement spliced in at its place. It equals the input
	// when Changed is false.
	SQL string
	// Statements describes each top-level statement in order. It is nil
	// when the text did not parse (the server will report the error).
	Statements []Statement
	// Generation is the generation of the catalog the text was planned
	// against, when the cache planned it (0: not known).
	Generation uint64

	orig string
}

// Span is a half-open byte range [Start, End) in a SQL text.
type Span struct{ Start, End int }

// Output tells the proxy how to repair what the server sends back for a
// rewritten statement so that the client sees what plain Postgres sends.
type Output struct {
	// TagFrom is the command tag verb the rewritten statement completes
	// with ("INSERT" or "SELECT"), which must be reported as "DELETE".
	// Empty means the tag needs no change.
	TagFrom string
	// HiddenColumns is the number of trailing columns to strip from
	// RowDescription and every DataRow.
	HiddenColumns int
	// NoRows: the rewritten statement returns rows (of no column) where
	// the original returns none; its RowDescription and DataRows are not
	// sent (a Describe is answered NoData).
	NoRows bool
	// Tag, when set, replaces the server's command tag entirely (a
	// TRUNCATE or DROP TABLE run through a CALL answers "CALL").
	Tag string
}

// CommandTag returns the tag the client must see for the server's tag:
// "INSERT 0 5" or "SELECT 5" become "DELETE 5" when o says so.
func (o Output) CommandTag(tag string) string {
	if o.Tag != "" {
		return o.Tag
	}
	if o.TagFrom == "" {
		return tag
	}
	verb, rest, ok := strings.Cut(tag, " ")
	if !ok || verb != o.TagFrom {
		return tag
	}
	if i := strings.LastIndexByte(rest, ' '); i >= 0 {
		rest = rest[i+1:]
	}
	return "DELETE " + rest
}

// Statement describes one top-level statement of the input.
type Statement struct {
	Kind Kind
	// Rewritten says the statement's text in Result.SQL differs from the
	// original.
	Rewritten bool
	// Original is the statement's byte range in the input text and Span
	// its byte range in Result.SQL (both without the trailing ';').
	Original Span
	Span     Span
	// Output describes how to fix the server's answer to this statement.
	// For a rewritten PREPARE (Prepares set), Output applies to every
	// later EXECUTE of that prepared statement instead (PREPARE itself
	// answers "PREPARE").
	Output Output
	// ExecuteName is the prepared statement an EXECUTE runs; the proxy
	// applies the Output it remembered for that PREPARE.
	ExecuteName string
	// CreateAsExecute is the prepared statement a CREATE TABLE … AS
	// EXECUTE runs: Postgres refuses one that is not a SELECT, and the
	// proxy refuses a rewritten DELETE (a SELECT once rewritten) alike.
	CreateAsExecute string
	// Prepares names the statement any PREPARE creates (rewritten or
	// not), Deallocates the one a DEALLOCATE drops ("" with
	// DeallocateAll): the proxy keeps its registry in step.
	Prepares      string
	Deallocates   string
	DeallocateAll bool
	// DiscardAll: a DISCARD ALL, which drops every prepared statement
	// (SQL-level and protocol-level) as DEALLOCATE ALL does.
	DiscardAll bool
	// ReleasesDatabase names the database a DROP DATABASE or ALTER
	// DATABASE … RENAME ends: the proxy lets go of its own connections
	// to it first, which would otherwise keep Postgres from doing it.
	ReleasesDatabase string
	// Refusal is set when the statement would remove rows from a
	// protected table in a way that cannot be captured. The proxy must
	// not forward the message and sends Refusal to the client instead.
	Refusal *pgerr.Error

	// pairs map byte offsets relative to Span.Start in the rewritten
	// text to absolute byte offsets in the original text, sorted by rew.
	pairs []posPair
}

// Refusal returns the first refused statement's error, or nil.
func (r *Result) Refusal() *pgerr.Error {
	for i := range r.Statements {
		if r.Statements[i].Refusal != nil {
			return r.Statements[i].Refusal
		}
	}
	return nil
}

// Rewrite turns every statement of sql that removes rows from a protected
// table into its tombstone form. sql is the text of one Query message
// (possibly several statements) or of one Parse message.
//
// A non-nil error means the statement must not be forwarded: text
// pg_query's parser rejects (42601, its message and position), text
// nested too deeply to inspect (54001), a rewrite that would not be
// faithful (0A000) or an internal failure. The error is an *pgerr.Error
// suitable for the client.
func Rewrite(sql string, cat Catalog, opt Options) (res *Result, err error) {
	res = &Result{SQL: sql, orig: sql}
	if i := strings.IndexByte(sql, 0); i >= 0 {
		// Postgres (and pg_query) read a query string up to its first NUL;
		// analyse exactly what they would see.
		sql = sql[:i]
		res.orig = sql
	}
	if e := CheckNesting(sql, opt.Trial); e != nil {
		return nil, e
	}
	tree, perr := pg.Parse(sql)
	if perr != nil {
		var syntax *parser.Error
		if errors.As(perr, &syntax) {
			// pg_query's grammar is PostgreSQL 17's; the server's may be
			// older and run text this one cannot read (a function named
			// json_value, say), removing rows uncaptured. So the error is
			// the proxy's answer: for text the server refuses too, it is
			// the server's own message, from the same parser.
			// pg_query reports no SQLSTATE or hint: those of the grammar's
			// own checks come from its source (grammar_errors.go).
			return nil, syntaxError(syntax.Message, syntax.Cursorpos)
		}
		// Not the server's kind of error (the Go side failed to read the
		// tree): what the text does cannot be known, so it does not go
		// through uncaptured.
		return nil, &pgerr.Error{Code: pgerrcode.StatementTooComplex, Message: "tombstone: statement could not be inspected: " + perr.Error()}
	}
	type piece struct {
		span Span
		text string
	}
	var pieces []piece
	for _, raw := range tree.GetStmts() {
		st := Statement{Original: stmtSpan(sql, raw)}
		st.Kind = Classify(raw.GetStmt())
		st.Span = st.Original
		if st.Kind == KindExecute {
			st.ExecuteName = raw.GetStmt().GetExecuteStmt().GetName()
		}
		if e := raw.GetStmt().GetCreateTableAsStmt().GetQuery().GetExecuteStmt(); e != nil {
			st.CreateAsExecute = e.GetName()
		}
		if p := raw.GetStmt().GetPrepareStmt(); p != nil {
			st.Prepares = p.GetName()
		}
		if d := raw.GetStmt().GetDeallocateStmt(); d != nil {
			st.Deallocates, st.DeallocateAll = d.GetName(), d.GetIsall()
		}
		if d := raw.GetStmt().GetDiscardStmt(); d != nil && d.GetTarget() == pg.DiscardMode_DISCARD_ALL {
			st.DiscardAll = true
		}
		if d := raw.GetStmt().GetDropdbStmt(); d != nil {
			st.ReleasesDatabase = d.GetDbname()
		}
		if r := raw.GetStmt().GetRenameStmt(); r != nil && r.GetRenameType() == pg.ObjectType_OBJECT_DATABASE {
			st.ReleasesDatabase = r.GetSubname()
		}
		if st.Kind == KindOther || st.Kind == KindExecute {
			res.Statements = append(res.Statements, st)
			continue
		}
		sr := &stmtRewriter{cat: cat, opt: opt, full: sql, span: st.Original, version: tree.GetVersion()}
		sr.text = strings.TrimSpace(sql[st.Original.Start:st.Original.End])
		sr.record = opt.recordAs
		node, rerr := sr.statement(raw.GetStmt(), st.Kind, &st)
		if rerr == nil {
			check := node
			if check == nil {
				check = raw.GetStmt()
			}
			rerr = sr.verifyCaptured(check)
		}
		if rerr != nil {
			if e, ok := rerr.(*pgerr.Error); ok && e.Code != pgerrcode.InternalError {
				st.Refusal = e
				res.Statements = append(res.Statements, st)
				continue
			}
			return nil, rerr
		}
		if node == nil {
			st.Output = Output{}
			res.Statements = append(res.Statements, st)
			continue
		}
		text, pairs, derr := sr.finish(node, raw.GetStmt())
		if derr != nil {
			return nil, derr
		}
		st.Rewritten = true
		st.pairs = pairs
		// Keep the leading white space so the statement stays where it was.
		lead := st.Original.Start
		for lead < st.Original.End && isSpace(sql[lead]) {
			lead++
		}
		end := st.Original.End
		for end > lead && isSpace(sql[end-1]) {
			end--
		}
		pieces = append(pieces, piece{Span{lead, end}, text})
		res.Statements = append(res.Statements, st)
	}
	if len(pieces) == 0 {
		return res, nil
	}
	var b strings.Builder
	prev, shift, pi := 0, 0, 0
	for i := range res.Statements {
		st := &res.Statements[i]
		st.Span = Span{st.Original.Start + shift, st.Original.End + shift}
		if !st.Rewritten {
			continue
		}
		p := pieces[pi]
		pi++
		b.WriteString(sql[prev:p.span.Start])
		start := b.Len()
		b.WriteString(p.text)
		st.Span = Span{start, b.Len()}
		shift = b.Len() - p.span.End
		prev = p.span.End
	}
	b.WriteString(sql[prev:])
	res.SQL = b.String()
	res.Changed = true
	return res, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// stmtSpan returns a RawStmt's byte range. stmt_len 0 means "to the end".
func stmtSpan(sql string, raw *pg.RawStmt) Span {
	start := int(raw.GetStmtLocation())
	if start < 0 || start > len(sql) {
		start = 0
	}
	end := len(sql)
	if l := int(raw.GetStmtLen()); l > 0 && start+l <= len(sql) {
		end = start + l
	}
	return Span{start, end}
}

// OriginalPosition maps an error position reported by the server for
// Result.SQL (1-based, in characters, as in ErrorResponse field 'P') to
// the corresponding position in the original text. Positions inside
// generated text map to the start of the statement they belong to.
func (r *Result) OriginalPosition(pos int) int {
	if !r.Changed || pos <= 0 {
		return pos
	}
	b := charToByte(r.SQL, pos-1)
	if len(r.Statements) == 0 {
		return pos
	}
	// The statement at or before b.
	st := &r.Statements[0]
	for i := range r.Statements {
		if r.Statements[i].Span.Start <= b {
			st = &r.Statements[i]
		}
	}
	var ob int
	switch {
	case b >= st.Span.End:
		// Between statements: same distance from the statement's end.
		ob = b - st.Span.End + st.Original.End
	case !st.Rewritten || b < st.Span.Start:
		ob = b - st.Span.Start + st.Original.Start
	default:
		ob = mapPairs(st.pairs, b-st.Span.Start, firstNonSpace(r.orig, st.Original))
	}
	ob = max(0, min(ob, len(r.orig)))
	return byteToChar(r.orig, ob) + 1
}

// Generated reports whether an error position reported by the server for
// Result.SQL (1-based characters) lies in text the rewrite generated — the
// capture around the client's statement — rather than in the client's own
// text. An undefined column there means the catalog the rewrite was
// planned with is out of date.
func (r *Result) Generated(pos int) bool {
	if r == nil || !r.Changed || pos <= 0 {
		return false
	}
	b := charToByte(r.SQL, pos-1)
	for i := range r.Statements {
		st := &r.Statements[i]
		if !st.Rewritten || b < st.Span.Start || b >= st.Span.End {
			continue
		}
		rel := b - st.Span.Start
		j := sort.Search(len(st.pairs), func(k int) bool { return st.pairs[k].rew > rel }) - 1
		return j < 0 || st.pairs[j].exact
	}
	return false
}

func firstNonSpace(s string, sp Span) int {
	i := sp.Start
	for i < sp.End && isSpace(s[i]) {
		i++
	}
	return i
}

// charToByte converts a 0-based character offset to a byte offset.
func charToByte(s string, chars int) int {
	if chars <= 0 {
		return 0
	}
	n := 0
	for i := range s {
		if n == chars {
			return i
		}
		n++
	}
	return len(s)
}

// byteToChar converts a byte offset to a 0-based character offset.
func byteToChar(s string, b int) int {
	if b > len(s) {
		b = len(s)
	}
	// A byte inside a character counts as that character.
	for b > 0 && b < len(s) && !utf8.RuneStart(s[b]) {
		b--
	}
	return utf8.RuneCountInString(s[:b])
}

// errorAt sets a refusal's position from a 0-based byte location.
func (sr *stmtRewriter) errorAt(e *pgerr.Error, loc int32) *pgerr.Error {
	if loc >= 0 && int(loc) <= len(sr.full) {
		e.Position = byteToChar(sr.full, int(loc)) + 1
	}
	return e
}

// finish deparses the rewritten statement, proves the text parses back
// to exactly one statement and builds the position map.
func (sr *stmtRewriter) finish(node, orig *pg.Node) (string, []posPair, error) {
	text, err := deparse(node, sr.version)
	if err != nil {
		return "", nil, err
	}
	tree, err := pg.Parse(text)
	if err != nil {
		return "", nil, internalErr("rewritten statement does not parse: %v", err)
	}
	if len(tree.GetStmts()) != 1 {
		return "", nil, internalErr("rewritten statement parses to %d statements", len(tree.GetStmts()))
	}
	if !sameTree(node, tree.GetStmts()[0].GetStmt()) {
		// pg_query's deparser drops parentheses it needs in a few shapes
		// ("(a OR b) IS NULL" comes out as "a OR b IS NULL"): the server
		// would run another statement, deleting other rows. Refused.
		return "", nil, unfaithful()
	}
	pairs := sr.positionPairs(orig, tree.GetStmts()[0].GetStmt())
	return text, pairs, nil
}

// deparse runs pg_query's deparser on a single statement.
func deparse(node *pg.Node, version int32) (text string, err error) {
	defer func() {
		// The Go side of pg_query can panic on unexpected trees; the C side
		// cannot be guarded, which is why trees are built with care.
		if r := recover(); r != nil {
			err = internalErr("deparse panicked: %v", r)
		}
	}()
	text, err = pg.Deparse(&pg.ParseResult{Version: version, Stmts: []*pg.RawStmt{{Stmt: node}}})
	if err != nil {
		return "", internalErr("deparse failed: %v", err)
	}
	return text, nil
}

// quoteIdent double-quotes an identifier for regclass input.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func sprintName(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, n) }
