package rewrite

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// TestNesting: statements whose tree could be deeper than MaxNesting are
// refused with 54001 before pg_query builds the tree — chains of 30,000
// operators crashed the process in pg_query's C code, and deep casts the
// Go side could not read went through uncaptured — while long flat lists
// of real statements still pass.
func TestNesting(t *testing.T) {
	cat := newTestCatalog()
	deep := map[string]string{
		"operators":       "DELETE FROM t WHERE id = 1" + strings.Repeat("+1", 30000),
		"casts":           "DELETE FROM t WHERE id = 5" + strings.Repeat("::int", 6000),
		"in a comment":    "SELECT 1" + strings.Repeat("+1", 30000) + " -- delete",
		"parentheses":     "DELETE FROM t WHERE id = " + strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300),
		"unions":          "DELETE FROM t WHERE id IN (SELECT 1" + strings.Repeat(" UNION SELECT 1", 3000) + ")",
		"not":             "DELETE FROM t WHERE " + strings.Repeat("NOT ", 3000) + "true",
		"concatenation":   "DELETE FROM t WHERE name = 'a'" + strings.Repeat(" || 'a'", 3000),
		"second of three": "SELECT 1; DELETE FROM t WHERE id = 1" + strings.Repeat("-1", 3000) + "; SELECT 2",
		// Chains that cross what starts a new list element, and brackets
		// whose content is the left operand of what follows (each of
		// these passed an earlier bound and crashed the process at
		// 100,000 repetitions).
		"unions across commas":   "DELETE FROM t WHERE id IN (SELECT 1, 1" + strings.Repeat(" UNION SELECT 1, 1", 3000) + ")",
		"joins across AND":       "DELETE FROM t USING t a" + strings.Repeat(" JOIN t b ON true AND true", 3000),
		"a bracket, then casts":  "SELECT (1" + strings.Repeat("+1", 1500) + ")" + strings.Repeat("::int", 1500) + " -- delete",
		"end as a column":        "DELETE FROM t WHERE id = 1" + strings.Repeat("+t.end", 3000),
		"left operands stacked":  "SELECT " + strings.Repeat("(", 60) + "1" + strings.Repeat(strings.Repeat("+1", 40)+")", 60) + " -- delete",
		"cases closed by commas": "SELECT CASE WHEN true THEN 1" + strings.Repeat("+1", 1500) + " END" + strings.Repeat("+1", 1500) + " -- delete",
		// The AND of a BETWEEN is not a conjunction: each repeat nests
		// the whole expression before it (this one rated 6 and crashed).
		"betweens":             "DELETE FROM t WHERE 1" + strings.Repeat(" BETWEEN 1 AND 1 IS TRUE", 2500),
		"not betweens":         "DELETE FROM t WHERE 1" + strings.Repeat(" NOT BETWEEN SYMMETRIC 1 AND 1 ISNULL", 2500),
		"end inside a bracket": "SELECT CASE WHEN (SELECT 1 AS end) = 1 THEN 1 END" + strings.Repeat("+1", 2500) + " -- delete",
	}
	for name, sql := range deep {
		res, err := Rewrite(sql, cat, Options{})
		var e *pgerr.Error
		require.True(t, errors.As(err, &e), "%s: %v", name, err)
		assert.Nil(t, res, name)
		assert.Equal(t, pgerrcode.StatementTooComplex, e.Code, name)
	}

	ids := make([]string, 50000)
	for i := range ids {
		ids[i] = "-1"
	}
	when := strings.Repeat(" WHEN id = 1 THEN 1", 3000)
	flat := map[string]string{
		"a long IN list":        "DELETE FROM t WHERE id IN (" + strings.Join(ids, ", ") + ")",
		"many ANDs and ORs":     "DELETE FROM t WHERE " + strings.Repeat("id = 1 AND id <> 2 OR ", 3000) + "true",
		"many BETWEENs":         "DELETE FROM t WHERE " + strings.Repeat("id BETWEEN 1 AND 2 AND ", 3000) + "true",
		"a long CASE":           "DELETE FROM t WHERE id = CASE" + when + " END",
		"many short statements": strings.Repeat("DELETE FROM t WHERE id = 1 + 1 + 1; ", 500),
		"nested parentheses":    "DELETE FROM t WHERE id = " + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200),
		"nested COALESCE":       "DELETE FROM t WHERE id = " + strings.Repeat("COALESCE(NULL, ", 150) + "1" + strings.Repeat(")", 150),
		"a long UNION ALL":      "DELETE FROM t WHERE id IN (SELECT 1" + strings.Repeat(" UNION ALL SELECT 1", 1500) + ")",
	}
	for name, sql := range flat {
		_, err := Rewrite(sql, cat, Options{})
		assert.NoError(t, err, name)
	}
	// Text the parser or the scanner rejects is refused as a syntax
	// error, not as too deep.
	for _, sql := range []string{"DELETE FROM t WHERE id = 1) + 1", "DELETE FROM t WHERE name = 'unterminated"} {
		_, err := Rewrite(sql, cat, Options{})
		var e *pgerr.Error
		require.ErrorAs(t, err, &e, sql)
		assert.Equal(t, pgerrcode.SyntaxError, e.Code, sql)
	}
}

// TestTrialOption: the trial parse the options carry runs on long texts
// only, and what it finds unsafe is refused with 54001 before pg_query
// parses it; without one nothing is tried.
func TestTrialOption(t *testing.T) {
	cat := newTestCatalog()
	var tried []int
	crash := &Trial{Parse: func(sql string) error {
		tried = append(tried, len(sql))
		return errors.New("the parser crashed on it")
	}}
	long := "DELETE FROM t WHERE id IN (1" + strings.Repeat(", 1", TrialParseOver/3) + ")"
	_, err := Rewrite(long, cat, Options{Trial: crash})
	var re *pgerr.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, pgerrcode.StatementTooComplex, re.Code)
	require.Equal(t, []int{len(long)}, tried)

	_, err = Rewrite("DELETE FROM t WHERE id = 1", cat, Options{Trial: crash})
	require.NoError(t, err, "a short text is not tried")
	require.Len(t, tried, 1)
	_, err = Rewrite(long, cat, Options{})
	require.NoError(t, err)
}
