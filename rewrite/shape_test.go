package rewrite

import (
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/require"
)

// shapeInputs are statements with constants in the places clients put
// them, plus every golden file's input.
func shapeInputs(t *testing.T) []string {
	in := []string{
		"DELETE FROM t WHERE id = 1",
		"DELETE FROM t WHERE id = 1;",
		"  DELETE FROM t WHERE id = -1  ",
		"DELETE FROM t WHERE id IN (1, 2, 3) RETURNING id, 'gone' AS what, 2.5 * id",
		"DELETE FROM t WHERE id = 1 AND 'a' = 'a' /* tombstone:confirm */",
		"DELETE FROM t WHERE id = (SELECT 7 LIMIT 1) RETURNING *",
		"DELETE FROM t WHERE id::text = E'x\\\\y' OR id::text = $$d$$ OR B'101' = B'101'",
		"DELETE FROM t WHERE id > 1e3 AND id < .5 AND x'1F'::int = 31",
		"DELETE FROM parent WHERE id = 10",
		"DELETE FROM t USING (SELECT 1 AS k ORDER BY 1) s WHERE t.id = s.k",
		"WITH d AS (DELETE FROM t WHERE id = 4 RETURNING id) SELECT id, 'x' FROM d",
		"DELETE FROM t WHERE id = 1 -- trailing comment with 'quote'",
		"DELETE FROM t WHERE id = 'ab''c'",
		"DELETE FROM t WHERE id = 1; DELETE FROM t WHERE id = 2",
		"DELETE FROM t WHERE id = $1",
		"DELETE FROM t WHERE id = N'x'",
		"DELETE FROM t WHERE id = interval '1 day'",
	}
	files, err := filepath.Glob("testdata/*.txtar")
	require.NoError(t, err)
	for _, f := range files {
		in = append(in, strings.TrimSuffix(readGolden(t, f).input, "\n"))
	}
	return in
}

// respelled returns sql with its constant tokens replaced by others (of
// any kind and length), and the offsets of the new constants.
func respelled(sql string, rng *rand.Rand) (string, []int, bool) {
	res, err := pg.Scan(sql)
	if err != nil {
		return "", nil, false
	}
	alts := map[pg.Token][]string{
		pg.Token_ICONST: {"0", "7", "123456789", "42"},
		pg.Token_FCONST: {"0.25", "1.5e3", ".125"},
		pg.Token_SCONST: {"'x'", "''", "'it''s'", "E'a\\\\b'", "$$dollar 'quoted'$$", "'ünïcode'", "'2024-01-01'"},
		pg.Token_BCONST: {"B'1'", "B'0110'"},
		pg.Token_XCONST: {"X'FF'", "x'0'"},
	}
	var b strings.Builder
	var at []int
	prev, n := 0, 0
	for _, tk := range res.GetTokens() {
		a, ok := alts[tk.Token]
		if !ok {
			continue
		}
		b.WriteString(sql[prev:tk.Start])
		at = append(at, b.Len())
		b.WriteString(a[rng.Intn(len(a))])
		prev = int(tk.End)
		n++
	}
	b.WriteString(sql[prev:])
	return b.String(), at, n > 0
}

// TestShapeTemplates: a text filled in from its shape's template is the
// statement its full rewrite is — same tree, same repairs, the same
// statement text recorded — and errors at its constants point at them in
// the client's text. Generated: every golden input and the list above,
// with their constants respelled at random, after the cache has seen
// another spelling of the same shape.
func TestShapeTemplates(t *testing.T) {
	cat := newTestCatalog()
	seed := int64(17)
	if v := os.Getenv("TOMBSTONE_SHAPE_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	rng := rand.New(rand.NewSource(seed))
	templated := 0
	for _, sql := range shapeInputs(t) {
		for _, opt := range []Options{{ClientAddr: "10.0.0.7:51234"}, {RequireWhere: true, MaxRows: 10}} {
			c := NewCache(64)
			first, err := c.Rewrite(sql, cat, opt)
			full, ferr := Rewrite(sql, cat, opt)
			require.Equal(t, ferr == nil, err == nil, sql)
			if err != nil {
				continue
			}
			require.Equal(t, full.SQL, first.SQL, sql)
			sh, ok := shapeOf(sql)
			if !ok {
				continue
			}
			e, _ := c.get(cacheKey{sql: sh.id(), generation: cat.Generation(), opt: opt, shape: true})
			if e == nil || e.tpl == nil {
				continue
			}
			templated++
			for i := 0; i < 8; i++ {
				v, at, ok := respelled(sql, rng)
				if !ok {
					break
				}
				got, gerr := c.Rewrite(v, cat, opt)
				want, werr := Rewrite(v, cat, opt)
				// (The spellings keep each constant's kind of token, so the
				// text stays as valid as it was.)
				require.NoError(t, werr, v)
				require.NoError(t, gerr, v)
				require.True(t, sameResult(got, want), "%s\ntemplate: %s\nfull:     %s", v, got.SQL, want.SQL)
				require.Equal(t, want.Statements[0].Original, got.Statements[0].Original, v)
				// Each constant of the client's text is in the rewritten
				// one, and maps back to where the client wrote it.
				for _, o := range at {
					tok := v[o : o+constantLen(v[o:])]
					want := utf8.RuneCountInString(v[:o]) + 1
					found := false
					for p := 0; p+len(tok) <= len(got.SQL); p++ {
						if got.SQL[p:p+len(tok)] == tok && isSlotStart(got, p) &&
							got.OriginalPosition(utf8.RuneCountInString(got.SQL[:p])+1) == want {
							found = true
							break
						}
					}
					require.True(t, found, "%s: constant %q (character %d) is mapped back from nowhere in %s", v, tok, want, got.SQL)
				}
			}
		}
	}
	t.Logf("seed %d: %d shapes with a template", seed, templated)
	require.Greater(t, templated, 20, "too few shapes got a template")
}

// constantLen is the length of the constant token at the start of s.
func constantLen(s string) int {
	res, err := pg.Scan(s)
	if err != nil || len(res.GetTokens()) == 0 {
		return 0
	}
	return int(res.GetTokens()[0].End)
}

// isSlotStart: offset p of r.SQL starts a constant the template put
// there (not the same characters elsewhere).
func isSlotStart(r *Result, p int) bool {
	for _, pr := range r.Statements[0].pairs {
		if pr.rew+r.Statements[0].Span.Start == p && !pr.exact {
			return true
		}
	}
	return false
}

// TestShapeTemplateUsed: the statements clients send most get a template,
// and texts that must not have one do not.
func TestShapeTemplateUsed(t *testing.T) {
	cat := newTestCatalog()
	list := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
		return "DELETE FROM t WHERE id IN (" + strings.Join(ids, ", ") + ")"
	}
	for sql, want := range map[string]bool{
		// (A longer list is rewritten in full each time: no template
		// whose making and filling grow with it.)
		list(maxShapeConstants):                                  true,
		list(maxShapeConstants + 1):                              false,
		"DELETE FROM t WHERE id = 1":                             true,
		"DELETE FROM t WHERE id = 'x' RETURNING *":               true,
		"DELETE FROM parent WHERE id IN (1, 2)":                  true,
		"DELETE FROM t WHERE id = 1; DELETE FROM t WHERE id = 2": false,
		"DELETE FROM t WHERE id = $1":                            false,
		"DELETE FROM t WHERE id = N'x'":                          false,
		"DELETE FROM t WHERE id = interval '1 day'":              true,
		"DELETE FROM t":                                          false,
		"SELECT 1":                                               false,
	} {
		c := NewCache(8)
		_, err := c.Rewrite(sql, cat, Options{})
		require.NoError(t, err, sql)
		sh, ok := shapeOf(sql)
		has := false
		if ok {
			e, _ := c.get(cacheKey{sql: sh.id(), generation: cat.Generation(), opt: Options{}, shape: true})
			has = e != nil && e.tpl != nil
		}
		require.Equal(t, want, has, sql)
	}
}
