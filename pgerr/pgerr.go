// Package pgerr is the one error type tombstone's packages report a
// PostgreSQL error with — a refusal of the rewrite, a console command's
// syntax error, the proxy's own wire errors — and the SQLSTATEs that are
// the project's own. PostgreSQL's SQLSTATEs are pgerrcode's constants
// (github.com/jackc/pgerrcode, kept by pgx's author from errcodes.txt).
package pgerr

import (
	"errors"
	"fmt"
)

// The project's own SQLSTATEs, class TS. The README's table lists them
// for users; the store's SQL (tombstone/sql) raises the same text.
const (
	// CatalogChanged: a rewritten statement was planned against a
	// catalog that has changed since (check_catalog, the capture
	// trigger's column check). Nothing was done; the proxy plans again.
	CatalogChanged = "TS001"
	// NoWhere: a DELETE without WHERE on a protected table, refused by
	// guards.require_where unless confirmed.
	NoWhere = "TS002"
	// TooManyRows: a DELETE that would remove more than guards.max_rows
	// rows, aborted unless confirmed.
	TooManyRows = "TS003"
	// LeaseLost: a reaper's fencing token is older than the newest one
	// seen; another reaper has taken over.
	LeaseLost = "TS010"
	// DeletesFrozen: FREEZE DELETES is in force; a statement that would
	// remove rows of a protected table (DELETE, TRUNCATE, DROP TABLE)
	// is refused, with nothing removed, until THAW DELETES.
	DeletesFrozen = "TS020"
)

// Error is an error a client receives as an ErrorResponse.
type Error struct {
	// Severity is ERROR ("" too) or FATAL, which ends the session.
	Severity string
	// Code is the SQLSTATE.
	Code    string
	Message string
	Detail  string
	Hint    string
	// Position is a 1-based character offset into the client's text, or
	// 0 when the error has no position.
	Position int
	// Err is the cause, for logs; never sent to the client.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)
	if e.Hint != "" {
		s += " hint: " + e.Hint
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Fatal reports whether the error ends the session.
func (e *Error) Fatal() bool { return e.Severity == "FATAL" }

// As returns err as an *Error if it is (or wraps) one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
