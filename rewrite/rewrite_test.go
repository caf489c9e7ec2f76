package rewrite

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

func TestMayRemoveRows(t *testing.T) {
	for sql, want := range map[string]bool{
		"DELETE FROM t":                      true,
		"delete from t":                      true,
		"with x as (DeLeTe from t) select 1": true,
		"select 1;truncate t":                true,
		"DROP TABLE t":                       true,
		"MERGE INTO t USING u ON true WHEN MATCHED THEN DO NOTHING": true,
		"EXECUTE p(1)":                      true,
		"prepare p as select 1":             true,
		"/*x*/delete from t":                true,
		"(delete":                           true,
		"delete":                            true,
		"SELECT deleted_at FROM t":          false,
		"SELECT * FROM undeleted":           false,
		"UPDATE t SET dropped = true":       false,
		"SELECT merged, executed FROM t":    false,
		"SELECT 1":                          false,
		"INSERT INTO t VALUES (1)":          false,
		"":                                  false,
		"SELECT xdelete, delete_me, é_drop": false,
		"SELECT 'héllo' ; Delete FROM t":    true,
	} {
		assert.Equal(t, want, MayRemoveRows(sql), sql)
	}
}

// Every statement Rewrite changes contains one of the keywords, so the
// pre-check never hides a rewrite.
func TestMayRemoveRowsCoversGoldens(t *testing.T) {
	cat := newTestCatalog()
	for _, sql := range fuzzSeeds {
		res, err := Rewrite(sql, cat, Options{})
		if err == nil && !res.Changed && res.Refusal() == nil {
			continue
		}
		assert.True(t, MayRemoveRows(sql), sql)
	}
}

func TestCommandTag(t *testing.T) {
	assert.Equal(t, "DELETE 5", Output{TagFrom: "INSERT"}.CommandTag("INSERT 0 5"))
	assert.Equal(t, "DELETE 0", Output{TagFrom: "SELECT", HiddenColumns: 1}.CommandTag("SELECT 0"))
	assert.Equal(t, "EXPLAIN", Output{}.CommandTag("EXPLAIN"))
	assert.Equal(t, "UPDATE 1", Output{TagFrom: "INSERT"}.CommandTag("UPDATE 1"))
}

func TestClassify(t *testing.T) {
	for sql, want := range map[string]Kind{
		"DELETE FROM t": KindDelete,
		"WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x":           KindWithDelete,
		"WITH x AS (SELECT 1) SELECT * FROM x":                            KindOther,
		"MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE":           KindMerge,
		"MERGE INTO t USING u ON true WHEN MATCHED THEN UPDATE SET a = 1": KindOther,
		"TRUNCATE t":                                 KindTruncate,
		"DROP TABLE t":                               KindDropTable,
		"DROP VIEW v":                                KindOther,
		"PREPARE p AS DELETE FROM t":                 KindPrepare,
		"PREPARE p AS SELECT 1":                      KindOther,
		"EXPLAIN ANALYZE DELETE FROM t":              KindExplainAnalyze,
		"EXPLAIN (ANALYZE off) DELETE FROM t":        KindOther,
		"EXPLAIN DELETE FROM t":                      KindOther,
		"EXECUTE p":                                  KindExecute,
		"COPY (DELETE FROM t RETURNING *) TO STDOUT": KindEmbedded,
	} {
		tree, err := pg.Parse(sql)
		require.NoError(t, err, sql)
		assert.Equal(t, want, Classify(tree.GetStmts()[0].GetStmt()), sql)
	}
}

func TestOriginalPosition(t *testing.T) {
	cat := newTestCatalog()
	// "é" is two bytes: positions are characters on both sides.
	sql := "SELECT 'é';  DELETE FROM t WHERE nosuch = 1; SELECT 'ü', broken"
	res, err := Rewrite(sql, cat, Options{})
	require.NoError(t, err)
	require.True(t, res.Changed)
	charPos := func(s, sub string) int { return len([]rune(s[:strings.Index(s, sub)])) + 1 }
	// A token of the user's DELETE.
	assert.Equal(t, charPos(sql, "nosuch"), res.OriginalPosition(charPos(res.SQL, "nosuch")))
	assert.Equal(t, charPos(sql, "t WHERE"), res.OriginalPosition(charPos(res.SQL, "t WHERE")))
	// Text after the rewritten statement keeps its place.
	assert.Equal(t, charPos(sql, "broken"), res.OriginalPosition(charPos(res.SQL, "broken")))
	// Text before it is unchanged.
	assert.Equal(t, 3, res.OriginalPosition(3))
	// Generated text maps to the start of the statement.
	assert.Equal(t, charPos(sql, "DELETE"), res.OriginalPosition(charPos(res.SQL, "tombstone.batches")))
}

func TestPassThroughKeepsBytes(t *testing.T) {
	cat := newTestCatalog()
	for _, sql := range []string{"SELECT 1", "DELETE FROM logs WHERE CURRENT OF c", "  select * from t -- delete"} {
		res, err := Rewrite(sql, cat, Options{})
		require.NoError(t, err)
		assert.False(t, res.Changed, sql)
		assert.Equal(t, sql, res.SQL)
	}
}

func TestMaxCascadeCTEs(t *testing.T) {
	cat := newTestCatalog()
	res, err := Rewrite("DELETE FROM sites", cat, Options{MaxCascadeCTEs: 3})
	require.NoError(t, err)
	require.NotNil(t, res.Refusal())
	assert.Equal(t, pgerrcode.FeatureNotSupported, res.Refusal().Code)
	res, err = Rewrite("DELETE FROM sites", cat, Options{MaxCascadeCTEs: 4})
	require.NoError(t, err)
	assert.Nil(t, res.Refusal())
}

// A statement's batch text is exactly its own text, even in a
// multi-statement query.
func TestBatchTextIsStatementText(t *testing.T) {
	res, err := Rewrite("SELECT 1; DELETE FROM t WHERE id = 1 ; SELECT 2", newTestCatalog(), Options{})
	require.NoError(t, err)
	assert.Contains(t, res.SQL, "'DELETE FROM t WHERE id = 1'")
	assert.True(t, strings.HasPrefix(res.SQL, "SELECT 1; WITH "))
	assert.True(t, strings.HasSuffix(res.SQL, " ; SELECT 2"))
}

func TestCache(t *testing.T) {
	cat := newTestCatalog()
	c := NewCache(2)
	r1, err := c.Rewrite("DELETE FROM t", cat, Options{})
	require.NoError(t, err)
	r2, _ := c.Rewrite("DELETE FROM t", cat, Options{})
	assert.Same(t, r1, r2)
	r3, _ := c.Rewrite("DELETE FROM t", cat, Options{ClientAddr: "x"})
	assert.NotSame(t, r1, r3)
	cat.gen++
	r4, _ := c.Rewrite("DELETE FROM t", cat, Options{})
	assert.NotSame(t, r1, r4)
	assert.Equal(t, 2, c.Len())

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_, err := c.Rewrite(fmt.Sprintf("DELETE FROM t WHERE id = %d", j%5), cat, Options{})
				assert.NoError(t, err)
			}
		}(i)
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 2)
}

// TestCacheBytes: the texts a client chooses cannot pin the proxy's
// memory: long ones are not cached, and the total is bounded.
func TestCacheBytes(t *testing.T) {
	cat := newTestCatalog()
	c := NewCache(4096)
	long := "SELECT '" + strings.Repeat("x", cacheMaxSQL) + "' /* delete */"
	_, err := c.Rewrite(long, cat, Options{})
	require.NoError(t, err)
	assert.Equal(t, 0, c.Len(), "longer than cacheMaxSQL: not cached")
	pad := strings.Repeat("y", cacheMaxSQL-100)
	for i := 0; i < 2*cacheMaxBytes/cacheMaxSQL; i++ {
		_, err := c.Rewrite(fmt.Sprintf("SELECT %d, '%s' /* delete */", i, pad), cat, Options{})
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, c.Bytes(), cacheMaxBytes)
	assert.Greater(t, c.Bytes(), cacheMaxBytes/2, "the cache still fills up to its bound")
	assert.Less(t, c.Len(), 2*cacheMaxBytes/cacheMaxSQL)
}

// TestGenerated tells the client's own text from the generated capture.
func TestGenerated(t *testing.T) {
	res, err := Rewrite("DELETE FROM sites WHERE nosuch = 1", newTestCatalog(), Options{})
	if err != nil || !res.Changed {
		t.Fatalf("not rewritten: %v", err)
	}
	pos := func(sub string) int { return utf8.RuneCountInString(res.SQL[:strings.Index(res.SQL, sub)]) + 1 }
	if res.Generated(pos("nosuch")) {
		t.Error("the client's column counts as generated")
	}
	if !res.Generated(pos("SELECT _ts_k0")) {
		t.Error("the capture's column reference does not count as generated")
	}
	if res.Generated(0) {
		t.Error("no position is not generated")
	}
}

// TestSyntaxErrorRefused: pg_query's grammar is PostgreSQL 17's, the
// server's may be older; text pg_query cannot read is refused with its
// syntax error (position in characters, as the server's), never passed
// through: PostgreSQL 15 runs both of these, removing rows uncaptured.
func TestSyntaxErrorRefused(t *testing.T) {
	cat := newTestCatalog()
	for sql, pos := range map[string]int{
		"DELETE FROM t WHERE json_value(doc) = 'x'":  35,
		"DELETE FROM system_user WHERE id = 1":       13,
		"/* é */ DELETE FROM WHERE":                  21,
		"SELECT 1; DELETE FROM t WHERE id = 1 WHERE": 38,
	} {
		_, err := Rewrite(sql, cat, Options{})
		var e *pgerr.Error
		require.ErrorAs(t, err, &e, sql)
		assert.Equal(t, pgerrcode.SyntaxError, e.Code, sql)
		assert.Contains(t, e.Message, "syntax error", sql)
		assert.Equal(t, pos, e.Position, sql)
	}
}

// TestUnfaithfulDeparse: pg_query's deparser drops parentheses some
// shapes need, so the server would run another statement (for the first,
// other rows: "(a OR b) IS NULL" would run as "a OR (b IS NULL)"). Such a
// rewrite is refused; shapes it deparses faithfully still rewrite.
func TestUnfaithfulDeparse(t *testing.T) {
	cat := newTestCatalog()
	for _, sql := range []string{
		"DELETE FROM t WHERE (a OR b) IS NULL",
		"DELETE FROM t WHERE (NOT a) IS NULL",
		"DELETE FROM t USING t AS t2 WHERE t.id = t2.id AND (t2.a OR t2.b) IS NULL",
		"DELETE FROM t WHERE z IS NOT DISTINCT FROM (x OR y)",
		"DELETE FROM t WHERE a BETWEEN b AND (x OR y)",
		"DELETE FROM t WHERE xmlparse(document a preserve whitespace) IS NULL",
		"DELETE FROM t RETURNING (a OR b) IS NULL",
		"WITH d AS (DELETE FROM t WHERE (a AND b) IS NOT NULL RETURNING id) SELECT * FROM d",
	} {
		_, err := Rewrite(sql, cat, Options{})
		var e *pgerr.Error
		require.ErrorAs(t, err, &e, sql)
		assert.Equal(t, pgerrcode.FeatureNotSupported, e.Code, sql)
		assert.Contains(t, e.Message, "faithfully", sql)
	}
	for _, sql := range []string{
		"DELETE FROM t WHERE (a OR b) AND c",
		"DELETE FROM t WHERE COALESCE(a OR b) IS NULL",
		"DELETE FROM t WHERE a IS NULL OR (b AND c)",
	} {
		res, err := Rewrite(sql, cat, Options{})
		require.NoError(t, err, sql)
		assert.Nil(t, res.Refusal(), sql)
		assert.True(t, res.Changed, sql)
	}
}

// TestConfirmOnlyInComments: the confirmation counts in a comment, in
// either form, and nowhere else: a review got past require_where with
// RETURNING '-- tombstone:confirm'.
func TestConfirmOnlyInComments(t *testing.T) {
	for sql, confirmed := range map[string]bool{
		"DELETE FROM sites /* tombstone:confirm */":                 true,
		"DELETE FROM sites -- Tombstone : Confirm, says alice":      true,
		"/* a */ DELETE FROM sites /* x\ntombstone:confirm */":      true,
		"DELETE FROM sites RETURNING '-- tombstone:confirm'":        false,
		"DELETE FROM sites RETURNING '/* tombstone:confirm */'":     false,
		`DELETE FROM sites RETURNING 1 AS "-- tombstone:confirm"`:   false,
		"DELETE FROM sites RETURNING $$ /* tombstone:confirm */ $$": false,
	} {
		res, err := Rewrite(sql, newTestCatalog(), Options{RequireWhere: true})
		require.NoError(t, err, sql)
		assert.Equal(t, !confirmed, strings.Contains(res.SQL, "guard_where"), sql)
	}
}

// TestGrammarErrorsGenerated: grammar_errors.go is what gengrammar makes
// of the pg_query_go version go.mod names (run go generate ./rewrite
// after upgrading it).
func TestGrammarErrorsGenerated(t *testing.T) {
	out := filepath.Join(t.TempDir(), "grammar_errors.go")
	cmd := exec.Command("go", "run", "./internal/gengrammar", "-o", out)
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", msg)
	want, err := os.ReadFile(out)
	require.NoError(t, err)
	got, err := os.ReadFile("grammar_errors.go")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "run go generate ./rewrite")
	e := syntaxError("UNENCRYPTED PASSWORD is no longer supported", 20)
	require.Equal(t, "0A000", e.Code)
	require.Equal(t, "42601", syntaxError(`syntax error at or near ")"`, 3).Code)
}
