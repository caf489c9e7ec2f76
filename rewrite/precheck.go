package rewrite

import "strings"

// MayRemoveRows is a cheap pre-check for the proxy, run on every Query:
// it reports whether sql contains, as a whole word and in any letter
// case, one of the keywords delete, truncate, drop, merge, execute,
// prepare, detach or alter (DDL that can take a table out of
// protection). False means the text certainly needs no parsing; true means
// it may (keywords inside literals or comments give false positives).
// It does not allocate.
func MayRemoveRows(sql string) bool {
	n := len(sql)
	for i := 0; i < n; i++ {
		c := sql[i] | 0x20 // ASCII lower case; harmless for non-letters
		if c != 'd' && c != 't' && c != 'm' && c != 'e' && c != 'p' && c != 'a' {
			continue
		}
		// A keyword cannot continue an identifier.
		if i > 0 && identStart(sql[i-1]) {
			continue
		}
		var kw string
		switch c {
		case 'd':
			if matchFold(sql, i, "delete") {
				kw = "delete"
			} else if matchFold(sql, i, "drop") {
				kw = "drop"
			} else if matchFold(sql, i, "detach") {
				kw = "detach"
			}
		case 't':
			if matchFold(sql, i, "truncate") {
				kw = "truncate"
			}
		case 'm':
			if matchFold(sql, i, "merge") {
				kw = "merge"
			}
		case 'e':
			if matchFold(sql, i, "execute") {
				kw = "execute"
			}
		case 'p':
			if matchFold(sql, i, "prepare") {
				kw = "prepare"
			}
		case 'a':
			if matchFold(sql, i, "alter") {
				kw = "alter"
			}
		}
		if kw == "" {
			continue
		}
		if j := i + len(kw); j == n || !identCont(sql[j]) {
			return true
		}
	}
	return false
}

// identStart reports whether b can precede a keyword inside one
// identifier (letters, '_', bytes of multi-byte characters). Digits are
// left out on purpose: older lexers split "1delete" into two tokens.
func identStart(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b >= 0x80
}

func identCont(b byte) bool {
	return identStart(b) || b >= '0' && b <= '9' || b == '$'
}

// matchFold reports whether s[i:] starts with the lower-case ASCII kw,
// ignoring case.
func matchFold(s string, i int, kw string) bool {
	if len(s)-i < len(kw) {
		return false
	}
	for k := 0; k < len(kw); k++ {
		if s[i+k]|0x20 != kw[k] {
			return false
		}
	}
	return true
}

// MayRemoveRowsOutsideLiterals is MayRemoveRows for texts too large to
// parse: it looks for the same keywords, skipping the string constants
// ('…', E'…', $tag$…$tag$), quoted identifiers and comments a keyword may
// sit in without being one, as Postgres reads them with
// standard_conforming_strings on and client_encoding UTF8 (the caller
// checks both). A backslash in a '…' string, which another setting reads
// differently, counts as a keyword. It does not allocate.
func MayRemoveRowsOutsideLiterals(sql string) bool {
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c == '\'':
			end, backslash := skipQuoted(sql, i+1, '\'', false)
			if backslash {
				return true
			}
			i = end
		case c == '"':
			i, _ = skipQuoted(sql, i+1, '"', false)
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			i = skipComment(sql, i)
		case c == '$':
			i = skipDollar(sql, i)
		case identStart(c):
			j := i + 1
			for j < n && identCont(sql[j]) {
				j++
			}
			if j < n && sql[j] == '\'' && j == i+1 && (c|0x20 == 'e') {
				i, _ = skipQuoted(sql, j+1, '\'', true)
				continue
			}
			if MayRemoveRows(sql[i:j]) {
				return true
			}
			i = j
		default:
			i++
		}
	}
	return false
}

// skipQuoted returns the index after the closing quote of a constant or
// quoted identifier whose text starts at i (a doubled quote is one
// character; with escapes, so is a backslash and what follows it), and
// whether a backslash appeared in it. Unterminated, it returns len(s):
// the server refuses the text.
func skipQuoted(s string, i int, quote byte, escapes bool) (int, bool) {
	backslash := false
	for i < len(s) {
		switch s[i] {
		case '\\':
			backslash = true
			if escapes {
				i++
			}
		case quote:
			if i+1 < len(s) && s[i+1] == quote {
				i++
				break
			}
			return i + 1, backslash
		}
		i++
	}
	return len(s), backslash
}

// skipComment returns the index after the /* … */ comment at i, which
// may nest.
func skipComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// skipDollar returns the index after the dollar-quoted constant starting
// at i ($$…$$ or $tag$…$tag$), or i+1 when the $ starts none (a
// parameter, $1).
func skipDollar(s string, i int) int {
	j := i + 1
	if j < len(s) && identStart(s[j]) {
		for j < len(s) && identCont(s[j]) && s[j] != '$' {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	if k := strings.Index(s[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return len(s)
}
