package proxy

import (
	"bytes"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"
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

// Lexing is how the server reads a statement's text when the planner is
// asked about it: the session's lexing settings at that moment.
type Lexing struct {
	// Escapes: standard_conforming_strings is off.
	Escapes bool
	// Encoding is client_encoding when it is not UTF8 ("": UTF8).
	Encoding string
	// Settled: the server has answered everything the session sent
	// before (tracker.settled), so neither setting can still change
	// under the text.
	Settled bool
}

// now is what l says at this moment; settled as for Lexing.Settled.
func (l *lexing) now(settled bool) Lexing {
	n := Lexing{Escapes: l.escapes.Load(), Settled: settled}
	if enc := l.encoding.Load(); enc != nil {
		n.Encoding = *enc
	}
	return n
}

// check refuses text the planner would read differently from the server
// (nil: the readings agree). Until the session is settled an earlier
// statement may still change either setting — a SET, a set_config call
// in any function, a ROLLBACK of one — and only text that reads the same
// under every value is planned.
func (l Lexing) check(sql string) *pgerr.Error {
	if !ascii(sql) {
		if e := l.nonASCII(); e != nil {
			return e
		}
	}
	if strings.IndexByte(sql, '\\') < 0 || !plainBackslash(sql) {
		return nil // read the same whatever standard_conforming_strings says
	}
	if l.Escapes || containsFold(sql, "standard_conforming_strings") {
		return &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
			Message: "tombstone: a statement that may remove rows cannot hold backslashes in '...' strings while standard_conforming_strings is off",
			Hint:    "SET standard_conforming_strings = on (the default) and write escapes in E'...' strings. The statement was not run: a backslash can end a string literal early, making it another statement."}
	}
	if !l.Settled {
		return unsettledError("a backslash in a '...' string", "standard_conforming_strings")
	}
	return nil
}

// nonASCII refuses text with non-ASCII bytes unless the server surely
// reads it as UTF-8.
func (l Lexing) nonASCII() *pgerr.Error {
	if l.Encoding != "" {
		return &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
			Message: "tombstone: a statement that may remove rows and holds non-ASCII characters must be sent in UTF8 (client_encoding is " + l.Encoding + ")",
			Hint:    "SET client_encoding = 'UTF8'. The statement was not run: read as UTF-8 it could name another table."}
	}
	if !l.Settled {
		return unsettledError("non-ASCII characters", "client_encoding")
	}
	return nil
}

func unsettledError(what, setting string) *pgerr.Error {
	return &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
		Message: "tombstone: a statement that may remove rows and holds " + what + " cannot be planned while earlier statements of the session are still running",
		Hint: "Send it once their results are in (after a Sync, in a pipeline): they may change " + setting +
			", which decides how the server reads it. The statement was not run."}
}

// plainBackslash reports whether a string literal without an E prefix
// (standard_conforming_strings decides what a backslash in it means)
// holds a backslash, as pg_query reads sql (standard strings). Up to the
// first such literal, both readings are the same text; without one, they
// are the same throughout. Text it cannot scan counts as holding one.
func plainBackslash(sql string) bool {
	res, err := pg.Scan(sql)
	if err != nil {
		return true
	}
	for _, tok := range res.GetTokens() {
		if tok.GetToken() != pg.Token_SCONST || int(tok.GetEnd()) > len(sql) || tok.GetStart() < 0 {
			continue
		}
		lit := sql[tok.GetStart():tok.GetEnd()]
		if (lit[0] == '\'' || lit[0] == 'n' || lit[0] == 'N') && strings.IndexByte(lit, '\\') >= 0 {
			return true
		}
	}
	return false
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// containsFold reports whether b contains the lower-case ASCII text w
// in any letter case, without copying b (it runs on every Query of a
// session that has prepared statements).
func containsFold[T string | []byte](b T, w string) bool {
	for i := 0; i+len(w) <= len(b); i++ {
		j := 0
		for j < len(w) && lowerASCII(b[i+j]) == w[j] {
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
