package proxy

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes the proxy itself raises. Names follow
// src/backend/utils/errcodes.txt.
const (
	CodeProtocolViolation        = "08P01"
	CodeConnectionFailure        = "08006"
	CodeSQLClientUnableToConnect = "08001"
	CodeAdminShutdown            = "57P01"
	CodeFeatureNotSupported      = "0A000"
	CodeProgramLimitExceeded     = "54000"
	CodeInternalError            = "XX000"
)

// Error is an error the proxy reports to a client as an ErrorResponse.
type Error struct {
	Severity string // ERROR or FATAL
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
	Err      error // cause, for logs; never sent to the client
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Fatal reports whether the error ends the session.
func (e *Error) Fatal() bool { return e.Severity == "FATAL" }

// fatal builds a FATAL error with a SQLSTATE.
func fatal(code, msg string, cause error) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: msg, Err: cause}
}

// encode renders e as an ErrorResponse frame.
func (e *Error) encode(dst []byte) []byte {
	sev := e.Severity
	if sev == "" {
		sev = "ERROR"
	}
	msg := pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	out, err := msg.Encode(dst)
	if err != nil {
		// Encode only fails on a frame over 1 GiB, which our messages never
		// are; fall back to a bare message rather than crash.
		out, _ = (&pgproto3.ErrorResponse{Severity: sev, Code: e.Code, Message: "error"}).Encode(dst)
	}
	return out
}

// asError returns err as an *Error if it is one.
func asError(err error) (*Error, bool) {
	var pe *Error
	ok := errors.As(err, &pe)
	return pe, ok
}
