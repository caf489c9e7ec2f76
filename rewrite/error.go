package rewrite

import (
	"fmt"
	"regexp"

	"github.com/jackc/pgerrcode"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// IsRefusal reports whether err is (or wraps) an error for the client.
func IsRefusal(err error) bool {
	_, ok := pgerr.As(err)
	return ok
}

func refuse(msg, hint string) *pgerr.Error {
	return &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: msg, Hint: hint}
}

func internalErr(format string, args ...any) *pgerr.Error {
	return &pgerr.Error{
		Code:    pgerrcode.InternalError,
		Message: "tombstone: " + fmt.Sprintf(format, args...),
		Hint:    "The statement was not executed because its deleted rows could not be captured safely.",
	}
}

// unfaithful is the refusal of a statement whose rewrite would not run as
// written: deparsed, it would parse as another statement.
func unfaithful() *pgerr.Error {
	return &pgerr.Error{
		Code:    pgerrcode.FeatureNotSupported,
		Message: "tombstone: this statement cannot be rewritten faithfully",
		Detail:  "The SQL generator (pg_query's deparser) would drop parentheses this statement needs, so the server would run a different statement.",
		Hint:    "Nothing was executed. Rephrase the expression so that no operator needs parentheses around its operand: (a OR b) IS NULL, say, as COALESCE(a OR b) IS NULL.",
	}
}

//go:generate go run ./internal/gengrammar

// grammarError is an error PostgreSQL's grammar raises with its own
// SQLSTATE or a hint (grammar_errors.go).
type grammarError struct {
	message *regexp.Regexp
	code    string
	hint    string
}

// syntaxError is the error for text pg_query's parser rejects with
// message msg at 1-based position pos: the server's own SQLSTATE and hint
// for that message (pg_query reports neither), else 42601.
func syntaxError(msg string, pos int) *pgerr.Error {
	e := &pgerr.Error{Code: pgerrcode.SyntaxError, Message: msg, Position: pos}
	for _, g := range grammarErrors {
		if g.message.MatchString(msg) {
			e.Code, e.Hint = g.code, g.hint
			break
		}
	}
	return e
}
