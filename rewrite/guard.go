package rewrite

import (
	"regexp"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// confirmWord is what a comment says to confirm a guarded statement:
// /* tombstone:confirm */ or -- tombstone: confirm.
var confirmWord = regexp.MustCompile(`(?i)tombstone\s*:\s*confirm`)

// confirmed reports whether the statement carries the confirmation
// comment: in a comment token, not in a string literal or an identifier
// (RETURNING '-- tombstone:confirm' confirms nothing). The other way to
// confirm, SET LOCAL tombstone.confirm = on, is checked by the guard
// functions at run time.
func (sr *stmtRewriter) confirmed() bool {
	res, err := pg.Scan(sr.text)
	if err != nil {
		return false
	}
	for _, t := range res.GetTokens() {
		if (t.Token == pg.Token_SQL_COMMENT || t.Token == pg.Token_C_COMMENT) &&
			int(t.Start) >= 0 && int(t.End) <= len(sr.text) && t.Start <= t.End &&
			confirmWord.MatchString(sr.text[t.Start:t.End]) {
			return true
		}
	}
	return false
}
