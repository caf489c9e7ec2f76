package rewrite

import (
	"errors"
	"fmt"
	"regexp"
)

// SQLSTATE codes used by refusals.
const (
	CodeFeatureNotSupported   = "0A000"
	CodeInternalError         = "XX000"
	CodeSyntaxError           = "42601"
	CodeInsufficientPrivilege = "42501"
)

// Error is a refusal or failure that can be sent to the client as an
// ErrorResponse: it always carries a SQLSTATE, a message and, where
// useful, a hint.
type Error struct {
	// Code is the SQLSTATE.
	Code    string
	Message string
	Detail  string
	Hint    string
	// Position is a 1-based character offset into the original SQL text,
	// or 0 when the error has no position.
	Position int
}

// Error implements error.
func (e *Error) Error() string {
	s := fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)
	if e.Hint != "" {
		s += " hint: " + e.Hint
	}
	return s
}

// IsRefusal reports whether err is (or wraps) an *Error.
func IsRefusal(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func refuse(msg, hint string) *Error {
	return &Error{Code: CodeFeatureNotSupported, Message: msg, Hint: hint}
}

func internalErr(format string, args ...any) *Error {
	return &Error{
		Code:    CodeInternalError,
		Message: "tombstone: " + fmt.Sprintf(format, args...),
		Hint:    "The statement was not executed because its deleted rows could not be captured safely.",
	}
}

// unfaithful is the refusal of a statement whose rewrite would not run as
// written: deparsed, it would parse as another statement.
func unfaithful() *Error {
	return &Error{
		Code:    CodeFeatureNotSupported,
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
func syntaxError(msg string, pos int) *Error {
	e := &Error{Code: CodeSyntaxError, Message: msg, Position: pos}
	for _, g := range grammarErrors {
		if g.message.MatchString(msg) {
			e.Code, e.Hint = g.code, g.hint
			break
		}
	}
	return e
}
