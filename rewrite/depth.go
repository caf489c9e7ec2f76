package rewrite

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// MaxNesting bounds how deep a parse tree the proxy lets pg_query build.
// pg_query's C code turns a tree into protobuf recursively, without the
// stack check the server has: a chain of some 30,000 operators
// (`1+1+…`, `x::int::int…`) overflows the C stack and kills the process,
// and from 10,000 protobuf levels the Go side refuses to unmarshal. Real
// statements stay far below 1,000.
const MaxNesting = 1000

// CodeStatementTooComplex is Postgres's SQLSTATE for "stack depth limit
// exceeded" and "statement too complex".
const CodeStatementTooComplex = "54001"

// nestingWeight is what one level of brackets may add to the tree: a
// subquery in parentheses is a SubLink, a SelectStmt, its target or WHERE
// and the expression inside.
const nestingWeight = 8

// CheckNesting returns an error (SQLSTATE 54001) when sql's parse tree
// could be deeper than MaxNesting; nil when it cannot. It works on
// pg_query's scanner, which does not recurse, and bounds the depth from
// above: every operator of an expression may add a level (a left-deep
// chain adds one per operator), except that commas, AND, OR and the
// branches of a CASE start a new element of a flat list; every bracket
// level may add nestingWeight. The bound overestimates, never
// underestimates, so a statement that passes is safe to parse.
func CheckNesting(sql string) *Error {
	depth, err := nestingBound(sql)
	if err != nil {
		// The scanner refused the text (an unterminated literal, say):
		// the parser refuses it too, before building any tree.
		return nil
	}
	if depth <= MaxNesting {
		return nil
	}
	return &Error{
		Code:    CodeStatementTooComplex,
		Message: fmt.Sprintf("tombstone: statement too deeply nested to inspect (more than %d levels)", MaxNesting),
		Hint:    "Split long chains of operators, UNIONs or JOINs, or use a list (IN, VALUES, an array) instead.",
	}
}

// nestingBound is the upper bound CheckNesting compares with MaxNesting.
func nestingBound(sql string) (int, error) {
	sr, err := pg.Scan(sql)
	if err != nil {
		return 0, err
	}
	// ops[i] counts the operators since the last list separator at
	// bracket level i; sum is their total over all open levels.
	ops := make([]int, 1, 16)
	sum, worst := 0, 0
	for _, t := range sr.GetTokens() {
		switch t.GetToken() {
		case pg.Token_ASCII_40, pg.Token_ASCII_91, pg.Token_CASE: // ( [ CASE
			ops = append(ops, 0)
		case pg.Token_ASCII_41, pg.Token_ASCII_93, pg.Token_END_P: // ) ] END
			if len(ops) > 1 {
				sum -= ops[len(ops)-1]
				ops = ops[:len(ops)-1]
			}
		case pg.Token_ASCII_44, pg.Token_AND, pg.Token_OR, pg.Token_WHEN, pg.Token_THEN, pg.Token_ELSE: // , AND OR WHEN THEN ELSE
			sum -= ops[len(ops)-1]
			ops[len(ops)-1] = 0
		case pg.Token_ASCII_59: // ; ends a statement
			ops = ops[:1]
			ops[0], sum = 0, 0
		case pg.Token_Op, pg.Token_ASCII_43, pg.Token_ASCII_45, pg.Token_ASCII_42, pg.Token_ASCII_47,
			pg.Token_ASCII_37, pg.Token_ASCII_94, pg.Token_ASCII_60, pg.Token_ASCII_61, pg.Token_ASCII_62,
			pg.Token_LESS_EQUALS, pg.Token_GREATER_EQUALS, pg.Token_NOT_EQUALS, pg.Token_TYPECAST,
			pg.Token_NOT, pg.Token_IS, pg.Token_ISNULL, pg.Token_NOTNULL, pg.Token_LIKE, pg.Token_ILIKE,
			pg.Token_SIMILAR, pg.Token_BETWEEN, pg.Token_IN_P, pg.Token_COLLATE, pg.Token_AT,
			pg.Token_OPERATOR, pg.Token_UNION, pg.Token_INTERSECT, pg.Token_EXCEPT, pg.Token_JOIN:
			ops[len(ops)-1]++
			sum++
		default:
			continue
		}
		if d := nestingWeight*(len(ops)-1) + sum; d > worst {
			worst = d
		}
	}
	return worst, nil
}
