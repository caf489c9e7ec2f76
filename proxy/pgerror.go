package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tombstone-proxy/tombstone/pgerr"
)

// fatal builds a FATAL error with a SQLSTATE: the session ends after the
// client has read it.
func fatal(code, msg string, cause error) *pgerr.Error {
	return &pgerr.Error{Severity: "FATAL", Code: code, Message: msg, Err: cause}
}

// encodeError renders e as an ErrorResponse frame (its cause stays out).
func encodeError(e *pgerr.Error, dst []byte) []byte {
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
