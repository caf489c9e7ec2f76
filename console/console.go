package console

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// Command is one parsed console command.
type Command struct {
	// Name is the command's canonical name, e.g. "UNDELETE BATCH".
	Name string
	// SQL is the statement that carries it out.
	SQL string
}

// Usage lines, one per command, as TOMBSTONE HELP lists them.
var Usage = []struct{ Syntax, Help string }{
	{"SHOW BATCHES [FOR <table>] [SINCE '<timestamptz>'] [LIMIT n]", "captured deletes, newest first"},
	{"SHOW BATCH <id>", "one batch: tables, rows, cause, role, app, client, xid, SQL, state"},
	{"SHOW TOMBSTONES <table> [WHERE <predicate>] [BATCH n] [LIMIT n]", "the deleted rows themselves"},
	{"UNDELETE BATCH <id> [DRY RUN] [ON CONFLICT FAIL|SKIP|OVERWRITE]", "restore everything one statement deleted"},
	{"UNDELETE TRANSACTION <xid> [DRY RUN] [ON CONFLICT FAIL|SKIP|OVERWRITE]", "restore everything one transaction deleted"},
	{"UNDELETE FROM <table> [WHERE <predicate>] [BATCH <id>] [SINCE '<ts>'] [UNTIL '<ts>'] [DRY RUN] [ON CONFLICT FAIL|SKIP|OVERWRITE]", "restore selected rows with what was deleted because of them"},
	{"UNDROP TABLE <table>", "bring back a dropped table from the trash"},
	{"PURGE BATCH <id>", "hard-delete a batch's tombstones now"},
	{"HOLD BATCH <id>", "keep a batch from the reaper"},
	{"RELEASE BATCH <id>", "let the reaper purge a held batch again"},
	{"PAUSE REAPER", "stop every reaper until RESUME REAPER"},
	{"RESUME REAPER", "let reapers work again"},
	{"FREEZE DELETES", "refuse every DELETE, TRUNCATE and DROP TABLE of a protected table, through every proxy, until THAW DELETES"},
	{"THAW DELETES", "end a freeze"},
	{"SHOW TRASH", "tables dropped to the trash: when, by whom, until when UNDROP TABLE can bring them back"},
	{"SHOW AUDIT [LIMIT n]", "admin actions that took effect, newest first: who, when, from where, what, with what result"},
	{"RESET BREAKER [<role or application>]", "re-arm a tripped delete-rate breaker (not available yet)"},
	{"SHOW TOMBSTONE STATUS", "schema version, tables, tombstones, reaper state"},
	{"TOMBSTONE HELP", "this list"},
}

func usage(prefix string) string {
	var lines []string
	for _, u := range Usage {
		if strings.HasPrefix(u.Syntax, prefix) {
			lines = append(lines, u.Syntax)
		}
	}
	if len(lines) == 0 {
		return "TOMBSTONE HELP lists every command."
	}
	return "Usage: " + strings.Join(lines, " | ")
}

// verbs are the first words of console commands; a text starting with any
// other word is SQL.
var verbs = map[string]bool{
	"UNDELETE": true, "UNDROP": true, "PURGE": true, "HOLD": true, "PAUSE": true,
	"RESUME": true, "FREEZE": true, "THAW": true, "TOMBSTONE": true,
}

// Is reports whether text is meant as a console command. It is cheap enough
// for every Query: it looks at the first one or two words only. SHOW,
// RELEASE and RESET are SQL too, so for them the second word decides.
func Is(text []byte) bool {
	w1, rest := word(text)
	if len(w1) < 4 || len(w1) > 9 {
		return false
	}
	// Upper-cased in buffers on the stack: Is runs on every statement the
	// proxy sees, and must not allocate.
	var b1, b2 [16]byte
	u1 := string(upperASCII(b1[:0], w1))
	if verbs[u1] {
		return true
	}
	w2, after := word(rest)
	if len(w2) > len(b2) {
		return false
	}
	u2 := string(upperASCII(b2[:0], w2))
	after = bytes.TrimLeft(after, " \t\n\r")
	if len(after) > 0 && after[0] == '.' {
		return false // SHOW tombstone.confirm: a setting's name
	}
	switch u1 {
	case "SHOW":
		return u2 == "BATCHES" || u2 == "BATCH" || u2 == "TOMBSTONES" || u2 == "TOMBSTONE" || u2 == "AUDIT" || u2 == "TRASH"
	case "RELEASE":
		// RELEASE batch alone releases a savepoint named batch.
		return u2 == "BATCH" && len(after) > 0 && after[0] != ';' && !bytes.HasPrefix(after, []byte("--"))
	case "RESET":
		return u2 == "BREAKER"
	}
	return false
}

// word returns the first word of b (ASCII letters) after blanks.
// upperASCII appends w upper-cased to dst (w holds ASCII letters and _).
func upperASCII(dst, w []byte) []byte {
	for _, c := range w {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func word(b []byte) ([]byte, []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	j := i
	for j < len(b) && (b[j]|0x20 >= 'a' && b[j]|0x20 <= 'z' || b[j] == '_') {
		j++
	}
	return b[i:j], b[j:]
}

// token is one scanned token.
type token struct {
	text  string // as written
	upper string // upper-cased, for keyword comparisons
	kind  pg.Token
	start int
	end   int
}

// parser walks the tokens of one command.
type parser struct {
	src  string
	toks []token
	i    int
	name string
	// trial trial-parses long predicates (rewrite.CheckNesting).
	trial *rewrite.Trial
}

// Parse parses one console command. Errors are *pgerr.Error values.
func Parse(text string, trial *rewrite.Trial) (*Command, error) {
	text = strings.TrimSpace(text)
	text = strings.TrimSuffix(text, ";")
	sr, err := pg.Scan(text)
	if err != nil {
		return nil, &pgerr.Error{Code: pgerrcode.SyntaxError, Message: "tombstone: cannot read command: " + err.Error(), Hint: usage("")}
	}
	p := &parser{src: text, trial: trial}
	for _, t := range sr.GetTokens() {
		if t.Token == pg.Token_SQL_COMMENT || t.Token == pg.Token_C_COMMENT {
			continue
		}
		s := text[t.Start:t.End]
		p.toks = append(p.toks, token{text: s, upper: strings.ToUpper(s), kind: t.Token, start: int(t.Start), end: int(t.End)})
	}
	for len(p.toks) > 0 && p.toks[len(p.toks)-1].text == ";" {
		p.toks = p.toks[:len(p.toks)-1]
	}
	return p.command()
}

func (p *parser) peek(n int) string {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n].upper
	}
	return ""
}

func (p *parser) accept(words ...string) bool {
	for k, w := range words {
		if p.peek(k) != w {
			return false
		}
	}
	p.i += len(words)
	return true
}

func (p *parser) errf(format string, args ...any) error {
	return &pgerr.Error{Code: pgerrcode.SyntaxError, Message: "tombstone: " + fmt.Sprintf(format, args...), Hint: usage(p.name)}
}

func (p *parser) done() bool { return p.i >= len(p.toks) }

func (p *parser) expectEnd() error {
	if !p.done() {
		return p.errf("unexpected %q in %s", p.toks[p.i].text, p.name)
	}
	return nil
}

func (p *parser) command() (*Command, error) {
	type form struct {
		words []string
		build func() (string, error)
	}
	forms := []form{
		{[]string{"SHOW", "BATCHES"}, p.showBatches},
		{[]string{"SHOW", "BATCH"}, p.idCall("tombstone.show_batch(%d)")},
		{[]string{"SHOW", "TOMBSTONES"}, p.showTombstones},
		{[]string{"SHOW", "TOMBSTONE", "STATUS"}, p.plain("SELECT * FROM tombstone.status()")},
		{[]string{"UNDELETE", "BATCH"}, p.undeleteBatch},
		{[]string{"UNDELETE", "TRANSACTION"}, p.undeleteTransaction},
		{[]string{"UNDELETE", "FROM"}, p.undeleteFrom},
		{[]string{"UNDROP", "TABLE"}, p.undrop},
		{[]string{"PURGE", "BATCH"}, p.idCall("tombstone.purge_batch(%d)")},
		{[]string{"HOLD", "BATCH"}, p.idCall("tombstone.hold_batch(%d, true)")},
		{[]string{"RELEASE", "BATCH"}, p.idCall("tombstone.hold_batch(%d, false)")},
		{[]string{"PAUSE", "REAPER"}, p.plain("SELECT * FROM tombstone.set_reaper_paused(true)")},
		{[]string{"RESUME", "REAPER"}, p.plain("SELECT * FROM tombstone.set_reaper_paused(false)")},
		{[]string{"FREEZE", "DELETES"}, p.plain("SELECT * FROM tombstone.set_deletes_frozen(true)")},
		{[]string{"THAW", "DELETES"}, p.plain("SELECT * FROM tombstone.set_deletes_frozen(false)")},
		{[]string{"SHOW", "AUDIT"}, p.showAudit},
		{[]string{"SHOW", "TRASH"}, p.plain("SELECT * FROM tombstone.show_trash()")},
		{[]string{"RESET", "BREAKER"}, p.resetBreaker},
		{[]string{"TOMBSTONE", "HELP"}, p.help},
	}
	for _, f := range forms {
		if p.accept(f.words...) {
			p.name = strings.Join(f.words, " ")
			sql, err := f.build()
			if err != nil {
				return nil, err
			}
			return &Command{Name: p.name, SQL: sql}, nil
		}
	}
	first := p.peek(0)
	p.name = first
	return nil, &pgerr.Error{Code: pgerrcode.SyntaxError, Message: fmt.Sprintf("tombstone: unknown command %q", strings.TrimSpace(first+" "+p.peek(1))), Hint: usage(first)}
}

func (p *parser) plain(sql string) func() (string, error) {
	return func() (string, error) {
		if err := p.expectEnd(); err != nil {
			return "", err
		}
		return sql, nil
	}
}

// idCall builds "SELECT * FROM f(<id>)" for commands taking one batch id.
func (p *parser) idCall(call string) func() (string, error) {
	return func() (string, error) {
		id, err := p.int64("batch id")
		if err != nil {
			return "", err
		}
		if err := p.expectEnd(); err != nil {
			return "", err
		}
		return "SELECT * FROM " + fmt.Sprintf(call, id), nil
	}
}

func (p *parser) int64(what string) (int64, error) {
	if p.done() {
		return 0, p.errf("%s expects %s", p.name, what)
	}
	t := p.toks[p.i]
	// Past 2^31-1 the scanner calls a number FCONST; digits alone are
	// still an integer (batch ids are bigint, transaction ids xid8).
	n, err := strconv.ParseInt(t.text, 10, 64)
	if t.kind != pg.Token_ICONST && t.kind != pg.Token_FCONST || err != nil || n < 0 {
		return 0, p.errf("%s: %q is not a valid %s", p.name, t.text, what)
	}
	p.i++
	return n, nil
}

// str reads a string literal and returns its value.
func (p *parser) str(what string) (string, error) {
	if p.done() || p.toks[p.i].kind != pg.Token_SCONST {
		got := "end of command"
		if !p.done() {
			got = fmt.Sprintf("%q", p.toks[p.i].text)
		}
		return "", p.errf("%s expects %s as a quoted string, got %s", p.name, what, got)
	}
	t := p.toks[p.i]
	p.i++
	v := t.text
	if len(v) >= 2 && v[0] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'"), nil
	}
	return "", p.errf("%s: use a plain quoted string for %s", p.name, what)
}

// table reads a possibly qualified, possibly quoted table name and returns
// it in regclass input form.
func (p *parser) table() (string, error) {
	var parts []string
	for {
		if p.done() {
			return "", p.errf("%s expects a table name", p.name)
		}
		t := p.toks[p.i]
		if t.kind != pg.Token_IDENT && t.kind < pg.Token_ABORT_P {
			return "", p.errf("%s: %q is not a table name", p.name, t.text)
		}
		name := t.text
		if strings.HasPrefix(name, `"`) {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		} else {
			name = strings.ToLower(name)
		}
		parts = append(parts, `"`+strings.ReplaceAll(name, `"`, `""`)+`"`)
		p.i++
		if p.peek(0) != "." {
			break
		}
		p.i++
	}
	if len(parts) > 2 {
		return "", p.errf("%s: table names are schema.table at most", p.name)
	}
	return strings.Join(parts, "."), nil
}

// lit quotes s as a SQL string literal.
func lit(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (p *parser) showBatches() (string, error) {
	args := []string{}
	for !p.done() {
		switch {
		case p.accept("FOR"):
			t, err := p.table()
			if err != nil {
				return "", err
			}
			args = append(args, "p_table => "+lit(t)+"::regclass")
		case p.accept("SINCE"):
			s, err := p.str("a timestamp")
			if err != nil {
				return "", err
			}
			args = append(args, "p_since => "+lit(s)+"::timestamptz")
		case p.accept("LIMIT"):
			n, err := p.int64("row count")
			if err != nil {
				return "", err
			}
			args = append(args, fmt.Sprintf("p_limit => %d", n))
		default:
			return "", p.expectEnd()
		}
	}
	return "SELECT * FROM tombstone.show_batches(" + strings.Join(args, ", ") + ")", nil
}

func (p *parser) showAudit() (string, error) {
	limit := ""
	if p.accept("LIMIT") {
		n, err := p.int64("row count")
		if err != nil {
			return "", err
		}
		limit = fmt.Sprintf("%d", n)
	}
	if err := p.expectEnd(); err != nil {
		return "", err
	}
	return "SELECT * FROM tombstone.show_audit(" + limit + ")", nil
}

func (p *parser) showTombstones() (string, error) {
	t, err := p.table()
	if err != nil {
		return "", err
	}
	// (A table in the trash is named as such: tombstone._live_or_trashed.)
	args := []string{"tombstone._live_or_trashed(pg_catalog.to_regclass(" + lit(t) + "), " + lit(t) + ")"}
	if p.accept("WHERE") {
		pred, err := p.predicate(t, "BATCH", "LIMIT")
		if err != nil {
			return "", err
		}
		args = append(args, "p_where => "+lit(pred))
	}
	if p.accept("BATCH") {
		n, err := p.int64("batch id")
		if err != nil {
			return "", err
		}
		args = append(args, fmt.Sprintf("p_batch => %d", n))
	}
	if p.accept("LIMIT") {
		n, err := p.int64("row count")
		if err != nil {
			return "", err
		}
		args = append(args, fmt.Sprintf("p_limit => %d", n))
	}
	if err := p.expectEnd(); err != nil {
		return "", err
	}
	return "SELECT * FROM tombstone.show_tombstones(" + strings.Join(args, ", ") + ")", nil
}

// restoreOptions reads [DRY RUN] [ON CONFLICT FAIL|SKIP|OVERWRITE] in any
// order, appending named arguments.
func (p *parser) restoreOption(args *[]string) (bool, error) {
	switch {
	case p.accept("DRY", "RUN"):
		*args = append(*args, "p_dry_run => true")
		return true, nil
	case p.accept("ON", "CONFLICT"):
		mode := p.peek(0)
		switch mode {
		case "FAIL", "SKIP", "OVERWRITE":
			p.i++
			*args = append(*args, "p_on_conflict => "+lit(strings.ToLower(mode)))
			return true, nil
		}
		return false, p.errf("%s: ON CONFLICT takes FAIL, SKIP or OVERWRITE", p.name)
	}
	return false, nil
}

func (p *parser) undeleteBatch() (string, error) {
	return p.undeleteByID("batch id", "p_batch => %d", "undelete_batch")
}

func (p *parser) undeleteTransaction() (string, error) {
	return p.undeleteByID("transaction id", "p_xid => '%d'::xid8", "undelete_transaction")
}

// undeleteByID reads "<id> [restore options]" and calls fn with the id as
// the named argument format gives.
func (p *parser) undeleteByID(what, format, fn string) (string, error) {
	id, err := p.int64(what)
	if err != nil {
		return "", err
	}
	args := []string{fmt.Sprintf(format, id)}
	for !p.done() {
		ok, err := p.restoreOption(&args)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", p.expectEnd()
		}
	}
	return "SELECT * FROM tombstone." + fn + "(" + strings.Join(args, ", ") + ")", nil
}

func (p *parser) undeleteFrom() (string, error) {
	t, err := p.table()
	if err != nil {
		return "", err
	}
	args := []string{"p_table => " + lit(t) + "::regclass"}
	if p.accept("WHERE") {
		pred, err := p.predicate(t, "BATCH", "SINCE", "UNTIL", "DRY", "ON")
		if err != nil {
			return "", err
		}
		args = append(args, "p_where => "+lit(pred))
	}
	for !p.done() {
		switch {
		case p.accept("BATCH"):
			id, err := p.int64("batch id")
			if err != nil {
				return "", err
			}
			args = append(args, fmt.Sprintf("p_batch => %d", id))
		case p.accept("SINCE"):
			s, err := p.str("a timestamp")
			if err != nil {
				return "", err
			}
			args = append(args, "p_since => "+lit(s)+"::timestamptz")
		case p.accept("UNTIL"):
			s, err := p.str("a timestamp")
			if err != nil {
				return "", err
			}
			args = append(args, "p_until => "+lit(s)+"::timestamptz")
		default:
			ok, err := p.restoreOption(&args)
			if err != nil {
				return "", err
			}
			if !ok {
				return "", p.expectEnd()
			}
		}
	}
	return "SELECT * FROM tombstone.undelete_rows(" + strings.Join(args, ", ") + ")", nil
}

func (p *parser) undrop() (string, error) {
	t, err := p.table()
	if err != nil {
		return "", err
	}
	if err := p.expectEnd(); err != nil {
		return "", err
	}
	return "SELECT * FROM tombstone.undrop_table(" + lit(t) + ")", nil
}

func (p *parser) resetBreaker() (string, error) {
	if p.done() {
		return "RESET BREAKER", nil
	}
	t := p.toks[p.i]
	p.i++
	if err := p.expectEnd(); err != nil {
		return "", err
	}
	name := t.text
	if t.kind == pg.Token_SCONST {
		name = strings.ReplaceAll(name[1:len(name)-1], "''", "'")
	}
	return "RESET BREAKER " + lit(name), nil
}

func (p *parser) help() (string, error) {
	if err := p.expectEnd(); err != nil {
		return "", err
	}
	var rows []string
	for _, u := range Usage {
		rows = append(rows, "("+lit(u.Syntax)+", "+lit(u.Help)+")")
	}
	return "SELECT * FROM (VALUES " + strings.Join(rows, ", ") + ") AS help(command, description)", nil
}

// predicate takes the text up to the first of the given keywords at
// parenthesis depth 0 (or the end) and checks with the Postgres parser that
// it is exactly one boolean expression over the table's rows: parsed as
// the WHERE clause of "SELECT FROM <table> WHERE <text>", nothing else
// may come out. The validated text is returned.
func (p *parser) predicate(table string, stops ...string) (string, error) {
	start := p.i
	depth := 0
	for ; !p.done(); p.i++ {
		t := p.toks[p.i]
		switch t.text {
		case "(", "[":
			depth++
		case ")", "]":
			depth--
		}
		if depth == 0 && contains(stops, t.upper) {
			break
		}
	}
	if p.i == start {
		return "", p.errf("%s: WHERE needs a condition", p.name)
	}
	text := p.src[p.toks[start].start:p.toks[p.i-1].end]
	if err := ValidatePredicate(table, text, p.trial); err != nil {
		if deep, ok := pgerr.As(err); ok {
			return "", deep
		}
		return "", &pgerr.Error{Code: pgerrcode.SyntaxError, Message: "tombstone: " + err.Error(), Hint: usage(p.name)}
	}
	return text, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ValidatePredicate checks that pred is exactly one SQL expression usable
// as the WHERE clause over table (in regclass input form).
// A predicate nested too deeply for pg_query to parse safely is refused
// with a *pgerr.Error (54001).
func ValidatePredicate(table, pred string, trial *rewrite.Trial) error {
	if strings.IndexByte(pred, 0) >= 0 || !utf8.ValidString(pred) {
		// pg_query would read up to a NUL, and lexes bytes that are not
		// UTF-8 as it likes; the server refuses both.
		return fmt.Errorf("bad WHERE condition: it holds a NUL byte or bytes that are not UTF-8")
	}
	sql := "SELECT FROM " + table + " WHERE " + pred
	if e := rewrite.CheckNesting(sql, trial); e != nil {
		return e
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		return fmt.Errorf("bad WHERE condition: %v", err)
	}
	stmts := tree.GetStmts()
	if len(stmts) != 1 {
		return fmt.Errorf("bad WHERE condition: it must be one expression")
	}
	sel := stmts[0].GetStmt().GetSelectStmt()
	if sel == nil || sel.WhereClause == nil || len(sel.FromClause) != 1 || sel.Op > pg.SetOperation_SETOP_NONE ||
		len(sel.TargetList) != 0 || len(sel.GroupClause) != 0 || sel.HavingClause != nil || len(sel.SortClause) != 0 ||
		sel.LimitCount != nil || sel.LimitOffset != nil || len(sel.LockingClause) != 0 || len(sel.WindowClause) != 0 ||
		sel.WithClause != nil || len(sel.DistinctClause) != 0 || sel.IntoClause != nil {
		return fmt.Errorf("bad WHERE condition: it must be one expression over the table's columns")
	}
	return nil
}
