package rewrite

import (
	"fmt"
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Statements sent with the simple protocol carry their values as
// constants: "DELETE FROM accounts WHERE id = 41", then "… = 42". Each one
// is a new text, and a full rewrite (parse, rewrite, deparse, parse again
// and compare) costs the proxy several times what the server spends on the
// DELETE. So the cache also keeps, per shape — the text with each
// constant token replaced by $1, $2, … — a template: the rewrite of the
// shape itself, cut at the places its parameters landed. A text of a
// known shape is rewritten by putting its own constants' tokens, exactly
// as the client wrote them, back into those places.
//
// A template is kept only when, for the text that made it, it gives the
// statement the full rewrite gives (the same tree, the same repairs), and
// the rewrite never looks at a constant's value, only carries it: any
// text of the shape then comes out as its full rewrite would, with the
// client's spelling of each constant. Texts with parameters of their own,
// several statements, constants glued to a word (N'x', a typed literal's
// string) or a shape that does not parse, have no template.

// maxShapeConstants bounds the constants of a text with a shape: a
// template is for the statements applications send over and over, and a
// long IN list is cheaper to rewrite in full than to make a template of
// (and checking it costs a full rewrite and two more parses).
const maxShapeConstants = 64

// shape is a statement text with its constants taken out.
type shape struct {
	key    string // the text, each constant token replaced by $1, $2, …
	consts []string
	// keySlots are the $n in key, in order (n = index+1).
	keySlots []Span
	// kinds are the constants' token kinds: texts of one shape with
	// other kinds of constants have their own template (and check).
	kinds []byte
}

// id is what the cache knows the shape by.
func (sh shape) id() string { return sh.key + "\x00" + string(sh.kinds) }

// constantToken: the tokens a shape takes out. USCONST (U&'…', which an
// UESCAPE clause may follow) stays in.
func constantToken(t pg.Token) bool {
	switch t {
	case pg.Token_ICONST, pg.Token_FCONST, pg.Token_SCONST, pg.Token_BCONST, pg.Token_XCONST:
		return true
	}
	return false
}

// wordByte: a byte that may continue an identifier, keyword or number
// (and '.', '\” and '"', which glue to a constant too).
func wordByte(c byte) bool {
	return c == '_' || c == '$' || c == '.' || c == '\'' || c == '"' || c >= 0x80 ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// shapeOf returns sql's shape; false when it has none (no constants, a
// parameter, a constant glued to its neighbours, a text the scanner
// refuses).
func shapeOf(sql string) (shape, bool) {
	if strings.IndexByte(sql, 0) >= 0 {
		return shape{}, false
	}
	res, err := pg.Scan(sql)
	if err != nil {
		return shape{}, false
	}
	var sh shape
	var b strings.Builder
	prev := 0
	for _, t := range res.GetTokens() {
		if t.Token == pg.Token_PARAM {
			return shape{}, false
		}
		if !constantToken(t.Token) {
			continue
		}
		if len(sh.consts) == maxShapeConstants {
			return shape{}, false
		}
		start, end := int(t.Start), int(t.End)
		if start < prev || end > len(sql) || start >= end ||
			start > 0 && wordByte(sql[start-1]) || end < len(sql) && wordByte(sql[end]) {
			return shape{}, false
		}
		b.WriteString(sql[prev:start])
		slot := fmt.Sprintf("$%d", len(sh.consts)+1)
		sh.keySlots = append(sh.keySlots, Span{b.Len(), b.Len() + len(slot)})
		b.WriteString(slot)
		sh.consts = append(sh.consts, sql[start:end])
		sh.kinds = append(sh.kinds, byte(t.Token-pg.Token_FCONST))
		prev = end
	}
	if len(sh.consts) == 0 {
		return shape{}, false
	}
	b.WriteString(sql[prev:])
	sh.key = b.String()
	return sh, true
}

// template is the rewrite of a shape, cut at its slots.
type template struct {
	segs []string // len(slots)+1 pieces of text around the slots
	// slots: the constant (index into shape.consts) each slot takes, or
	// recordSlot for the statement's text as the batch row records it.
	slots []int
	spans []Span // the slots in the template's text
	res   *Result
}

const recordSlot = -1

// recordSentinel stands for the recorded statement text while a template
// is made.
const recordSentinel = "tombstone shape template: the statement text"

// newTemplate rewrites sh's key and checks that, filled with sh's own
// constants, it gives what full, the full rewrite of the text sh was taken
// from, gives. nil: no template for this shape.
func newTemplate(sh shape, sql string, full *Result, cat Catalog, opt Options) *template {
	if !full.Changed || len(full.Statements) != 1 || !full.Statements[0].Rewritten || full.Refusal() != nil {
		return nil
	}
	opt.recordAs = recordSentinel
	res, err := Rewrite(sh.key, cat, opt)
	if err != nil || !res.Changed || len(res.Statements) != 1 || !res.Statements[0].Rewritten || res.Refusal() != nil {
		return nil
	}
	toks, err := pg.Scan(res.SQL)
	if err != nil {
		return nil
	}
	t := &template{res: res}
	seen := make([]bool, len(sh.consts))
	records, prev := 0, 0
	for _, tk := range toks.GetTokens() {
		start, end := int(tk.Start), int(tk.End)
		slot := 0
		switch {
		case tk.Token == pg.Token_PARAM:
			var n int
			if _, err := fmt.Sscanf(res.SQL[start:end], "$%d", &n); err != nil || n < 1 || n > len(sh.consts) ||
				fmt.Sprintf("$%d", n) != res.SQL[start:end] {
				return nil
			}
			slot = n - 1
			seen[slot] = true
		case tk.Token == pg.Token_SCONST && res.SQL[start:end] == "'"+recordSentinel+"'":
			slot = recordSlot
			records++
		default:
			continue
		}
		// What goes in must stay one token: nothing glued on either side.
		if start > 0 && wordByte(res.SQL[start-1]) || end < len(res.SQL) && wordByte(res.SQL[end]) || start < prev {
			return nil
		}
		t.segs = append(t.segs, res.SQL[prev:start])
		t.slots = append(t.slots, slot)
		t.spans = append(t.spans, Span{start, end})
		prev = end
	}
	t.segs = append(t.segs, res.SQL[prev:])
	for _, s := range seen {
		if !s {
			return nil
		}
	}
	if records > 1 {
		return nil
	}
	got := t.fill(sh, sql)
	if !sameResult(got, full) {
		return nil
	}
	return t
}

// sameResult reports whether two rewrites of one text are the same
// statement with the same repairs (their texts may spell constants
// differently).
func sameResult(a, b *Result) bool {
	if a.Changed != b.Changed || len(a.Statements) != 1 || len(b.Statements) != 1 {
		return false
	}
	x, y := a.Statements[0], b.Statements[0]
	if x.Kind != y.Kind || x.Rewritten != y.Rewritten || x.Original != y.Original || x.Output != y.Output ||
		x.ExecuteName != y.ExecuteName || x.CreateAsExecute != y.CreateAsExecute || x.Prepares != y.Prepares ||
		x.Deallocates != y.Deallocates || x.DeallocateAll != y.DeallocateAll || x.DiscardAll != y.DiscardAll ||
		x.ReleasesDatabase != y.ReleasesDatabase || x.Refusal != nil || y.Refusal != nil {
		return false
	}
	ta, err := pg.Parse(a.SQL)
	if err != nil {
		return false
	}
	tb, err := pg.Parse(b.SQL)
	if err != nil || len(ta.GetStmts()) != 1 || len(tb.GetStmts()) != 1 {
		return false
	}
	return sameTree(ta.GetStmts()[0].GetStmt(), tb.GetStmts()[0].GetStmt())
}

// fill is the rewrite of sql, a text of shape sh, from the template.
func (t *template) fill(sh shape, sql string) *Result {
	inText := sh.constSpans()
	var b strings.Builder
	b.Grow(len(t.res.SQL) + len(sql)*2)
	// The slots' places in the new text.
	spans := make([]Span, len(t.slots))
	for i, seg := range t.segs {
		b.WriteString(seg)
		if i == len(t.slots) {
			break
		}
		start := b.Len()
		if k := t.slots[i]; k == recordSlot {
			o := t.res.Statements[0].Original
			b.WriteString(stringLiteral(strings.TrimSpace(sql[moved(sh.keySlots, inText, o.Start):moved(sh.keySlots, inText, o.End)])))
		} else {
			b.WriteString(sh.consts[k])
		}
		spans[i] = Span{start, b.Len()}
	}
	st := t.res.Statements[0]
	ost := st
	origin := func(off int) int { return moved(sh.keySlots, inText, off) }
	st.Original = Span{origin(ost.Original.Start), origin(ost.Original.End)}
	st.Span = Span{moved(t.spans, spans, ost.Span.Start), moved(t.spans, spans, ost.Span.End)}
	st.pairs = make([]posPair, len(ost.pairs))
	for i, p := range ost.pairs {
		st.pairs[i] = posPair{
			rew:   moved(t.spans, spans, p.rew+ost.Span.Start) - st.Span.Start,
			orig:  origin(p.orig),
			exact: p.exact,
		}
	}
	return &Result{Changed: true, SQL: b.String(), Statements: []Statement{st}, orig: sql}
}

// constSpans are the places of sh's constants in the text it was taken
// from: where each slot is in the key, moved by the constants before it.
func (sh shape) constSpans() []Span {
	to := make([]Span, len(sh.keySlots))
	shift := 0
	for i, s := range sh.keySlots {
		start := s.Start + shift
		to[i] = Span{start, start + len(sh.consts[i])}
		shift += len(sh.consts[i]) - (s.End - s.Start)
	}
	return to
}

// moved maps offset off of a text whose slots are at from to the text
// where they are at to: past a slot by the difference of their lengths,
// inside one to its start.
func moved(from, to []Span, off int) int {
	i := sort.Search(len(from), func(i int) bool { return from[i].End > off })
	// Slots before i end at or before off.
	shift := 0
	if i > 0 {
		shift = to[i-1].End - from[i-1].End
	}
	if i < len(from) && from[i].Start < off {
		return to[i].Start
	}
	return off + shift
}

// stringLiteral quotes s as pg_query's deparser does: E” when it holds a
// backslash (read alike whatever standard_conforming_strings says).
func stringLiteral(s string) string {
	var b strings.Builder
	if strings.IndexByte(s, '\\') >= 0 {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b.WriteByte(s[i])
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}
