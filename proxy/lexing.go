package proxy

import (
	"bytes"
	"strings"
	"sync/atomic"
)

// lexing follows the two settings that decide how the server reads a
// statement's text, from the ParameterStatus messages it sends at startup
// and after every change. pg_query reads text as UTF-8 with
// standard_conforming_strings on; under other settings the same bytes can
// be another statement (a backslash ends a string literal early, a byte
// is another character), so text the planner cannot read as the server
// will is refused.
type lexing struct {
	// escapes: standard_conforming_strings is off (backslashes escape in
	// every string literal).
	escapes atomic.Bool
	// encoding is client_encoding when it is not UTF8 (nil: UTF8).
	encoding atomic.Pointer[string]
}

// maxSettingReport bounds the ParameterStatus frames read for lexing: the
// two settings' reports are a few dozen bytes.
const maxSettingReport = 128

// reported records a ParameterStatus body (name NUL value NUL).
func (l *lexing) reported(body []byte) {
	name, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return
	}
	value, _, _ := bytes.Cut(rest, []byte{0})
	switch string(name) {
	case "standard_conforming_strings":
		l.escapes.Store(string(value) != "on")
	case "client_encoding":
		if strings.EqualFold(string(value), "UTF8") {
			l.encoding.Store(nil)
			return
		}
		v := string(value)
		l.encoding.Store(&v)
	}
}

// check refuses text the planner would read differently from the server
// (nil: the readings agree).
func (l *lexing) check(sql string) *Error {
	if enc := l.encoding.Load(); enc != nil && !ascii(sql) {
		return &Error{Code: CodeFeatureNotSupported,
			Message: "tombstone: a statement that may remove rows and holds non-ASCII characters must be sent in UTF8 (client_encoding is " + *enc + ")",
			Hint:    "SET client_encoding = 'UTF8'. The statement was not run: read as UTF-8 it could name another table."}
	}
	if strings.IndexByte(sql, '\\') >= 0 && (l.escapes.Load() || containsFold(sql, "standard_conforming_strings")) {
		return &Error{Code: CodeFeatureNotSupported,
			Message: "tombstone: a statement that may remove rows cannot hold backslashes while standard_conforming_strings is off",
			Hint:    "SET standard_conforming_strings = on (the default) and write escapes in E'...' strings. The statement was not run: a backslash can end a string literal early, making it another statement."}
	}
	return nil
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
