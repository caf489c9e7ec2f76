package rewrite

// MayRemoveRows is a cheap pre-check for the proxy, run on every Query:
// it reports whether sql contains, as a whole word and in any letter
// case, one of the keywords delete, truncate, drop, merge, execute or
// prepare. False means the text certainly needs no parsing; true means
// it may (keywords inside literals or comments give false positives).
// It does not allocate.
func MayRemoveRows(sql string) bool {
	n := len(sql)
	for i := 0; i < n; i++ {
		c := sql[i] | 0x20 // ASCII lower case; harmless for non-letters
		if c != 'd' && c != 't' && c != 'm' && c != 'e' && c != 'p' {
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
