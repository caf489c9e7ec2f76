package rewrite

import (
	"fmt"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// MaxNesting bounds how deep a parse tree the proxy lets pg_query build.
// pg_query's C code turns a tree into protobuf recursively, without the
// stack check the server has: a chain of some 30,000 operators
// (`1+1+…`, `x::int::int…`, `… UNION SELECT …`) overflows the C stack and
// kills the process, and from about 5,000 tree levels (10,000 protobuf
// levels) the Go side refuses to unmarshal. Real statements stay far
// below 2,000.
const MaxNesting = 2000

// Trial parses a long statement (TrialParseOver bytes or more) somewhere
// a crash cannot take the process down — the proxy's runs a child
// process — and reports whether pg_query survived it. The nesting bound
// is counted by hand from the grammar; this catches what it might miss.
// Every input that crashed pg_query so far was 50 kB or more. (A pointer
// in Options, which the rewrite cache compares.)
type Trial struct {
	Parse func(sql string) error
}

// TrialParseOver is the length from which a statement is trial-parsed.
const TrialParseOver = 32 << 10

// nestingWeight is what one level of brackets may add to the tree: a
// subquery in parentheses is a SubLink, a SelectStmt, its target or WHERE
// and the expression inside.
const nestingWeight = 8

// nestingSlack covers the few levels an operand without brackets has (a
// column reference, a literal, a type name).
const nestingSlack = 4

// CheckNesting returns an error (SQLSTATE 54001) when sql's parse tree
// could be deeper than MaxNesting, or trial (nil: none) finds it unsafe;
// nil when it cannot be. It works on pg_query's scanner, which does not
// recurse, and bounds the depth from above (see nestingBound), so a
// statement that passes is safe to parse.
func CheckNesting(sql string, trial *Trial) *pgerr.Error {
	depth, err := nestingBound(sql)
	if err != nil {
		// The scanner refused the text (an unterminated literal, say):
		// the parser refuses it too, before building any tree.
		return nil
	}
	if depth <= MaxNesting {
		if trial != nil && len(sql) >= TrialParseOver {
			if err := trial.Parse(sql); err != nil {
				return &pgerr.Error{
					Code:    pgerrcode.StatementTooComplex,
					Message: "tombstone: statement could not be inspected safely: " + err.Error(),
					Hint:    "Split long chains of operators, UNIONs or JOINs, or use a list (IN, VALUES, an array) instead.",
				}
			}
		}
		return nil
	}
	return &pgerr.Error{
		Code:    pgerrcode.StatementTooComplex,
		Message: fmt.Sprintf("tombstone: statement too deeply nested to inspect (more than %d levels)", MaxNesting),
		Hint:    "Split long chains of operators, UNIONs or JOINs, or use a list (IN, VALUES, an array) instead.",
	}
}

// nestLevel is one open bracket (or CASE) while nestingBound scans, or
// the statement itself.
type nestLevel struct {
	closer pg.Token // the token that closes it (0: the statement)
	// The element being read (a list item, a conjunct): the deepest
	// bracket closed in it (base) and the operators since it began (ops).
	// Its depth is at most base + ops: each operator adds one level over
	// its operands, the deepest of which is at most base.
	base, ops int
	// elems: the deepest element done since the level began, or since
	// the last set operation or JOIN.
	elems int
	// left: a set operation or JOIN builds a left-deep tree across list
	// items and conjuncts: everything before it is its left operand.
	left    int
	chained bool
	// between: BETWEENs waiting for their AND, which is theirs, not a
	// conjunction: `a BETWEEN b AND c IS TRUE BETWEEN …` is left-deep.
	between int
}

func (l *nestLevel) element() int { return l.base + l.ops }

// depth is the level's depth bound so far.
func (l *nestLevel) depth() int {
	d := max(l.elems, l.element())
	if l.chained {
		d = max(l.left, d+1)
	}
	return d
}

// nestingBound bounds the depth of sql's parse tree from above, from its
// tokens: operators add a level each within an element; commas, AND, OR
// and a CASE's WHEN, THEN and ELSE start a new element of a flat list
// (Postgres flattens AND and OR chains), except the AND of a BETWEEN; a bracket adds nestingWeight
// over its deepest content and counts as an operand of the element it is
// in; UNION, INTERSECT, EXCEPT and JOIN take everything before them as
// their left operand. A level closes only on its own closer (`END` is
// also a column name).
func nestingBound(sql string) (int, error) {
	sr, err := pg.Scan(sql)
	if err != nil {
		return 0, err
	}
	stack := make([]nestLevel, 1, 16)
	worst := 0
	// closeTop folds the innermost level into the one around it.
	closeTop := func() {
		d := stack[len(stack)-1].depth()
		stack = stack[:len(stack)-1]
		top := &stack[len(stack)-1]
		top.base = max(top.base, d+nestingWeight)
	}
	endStatement := func() {
		for len(stack) > 1 {
			closeTop()
		}
		worst = max(worst, stack[0].depth()+nestingSlack)
		stack[0] = nestLevel{}
	}
	for _, t := range sr.GetTokens() {
		top := &stack[len(stack)-1]
		switch tok := t.GetToken(); tok {
		case pg.Token_ASCII_40: // (
			stack = append(stack, nestLevel{closer: pg.Token_ASCII_41})
		case pg.Token_ASCII_91: // [
			stack = append(stack, nestLevel{closer: pg.Token_ASCII_93})
		case pg.Token_CASE:
			stack = append(stack, nestLevel{closer: pg.Token_END_P})
		case pg.Token_ASCII_41, pg.Token_ASCII_93, pg.Token_END_P: // ) ] END
			// Only the innermost level's own closer closes it; any other
			// (a column named end, a stray bracket the parser will
			// refuse) closes nothing and the bound only grows.
			if len(stack) > 1 && top.closer == tok {
				closeTop()
			}
		case pg.Token_BETWEEN:
			top.ops++
			top.between++
		case pg.Token_AND:
			if top.between > 0 { // the BETWEEN's own AND
				top.between--
				top.ops++
				break
			}
			top.elems = max(top.elems, top.element())
			top.base, top.ops = 0, 0
		case pg.Token_ASCII_44, pg.Token_OR, pg.Token_WHEN, pg.Token_THEN, pg.Token_ELSE: // , OR WHEN THEN ELSE
			top.elems = max(top.elems, top.element())
			top.base, top.ops = 0, 0
		case pg.Token_UNION, pg.Token_INTERSECT, pg.Token_EXCEPT, pg.Token_JOIN:
			top.left = top.depth() + 1
			top.chained = true
			top.elems, top.base, top.ops = 0, 0, 0
		case pg.Token_ASCII_59: // ; ends a statement
			endStatement()
		case pg.Token_Op, pg.Token_ASCII_43, pg.Token_ASCII_45, pg.Token_ASCII_42, pg.Token_ASCII_47,
			pg.Token_ASCII_37, pg.Token_ASCII_94, pg.Token_ASCII_60, pg.Token_ASCII_61, pg.Token_ASCII_62,
			pg.Token_LESS_EQUALS, pg.Token_GREATER_EQUALS, pg.Token_NOT_EQUALS, pg.Token_TYPECAST,
			pg.Token_NOT, pg.Token_IS, pg.Token_ISNULL, pg.Token_NOTNULL, pg.Token_LIKE, pg.Token_ILIKE,
			pg.Token_SIMILAR, pg.Token_IN_P, pg.Token_COLLATE, pg.Token_AT,
			pg.Token_OPERATOR:
			top.ops++
		}
	}
	endStatement()
	return worst, nil
}
