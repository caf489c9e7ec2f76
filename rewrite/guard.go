package rewrite

import "regexp"

// confirmHint matches the comment that confirms a guarded statement:
// /* tombstone:confirm */ or -- tombstone: confirm.
var confirmHint = regexp.MustCompile(`(?is)/\*.*?tombstone\s*:\s*confirm.*?\*/|--[^\n]*tombstone\s*:\s*confirm`)

// confirmed reports whether the statement carries the confirmation
// comment. The other way to confirm, SET LOCAL tombstone.confirm = on, is
// checked by the guard functions at run time.
func (sr *stmtRewriter) confirmed() bool {
	return confirmHint.MatchString(sr.text)
}
