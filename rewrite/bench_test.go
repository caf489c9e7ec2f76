package rewrite

import (
	"strings"
	"testing"
)

var benchQuery = "SELECT u.id, u.email, count(*) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 50"

func BenchmarkMayRemoveRows(b *testing.B) {
	b.SetBytes(int64(len(benchQuery)))
	for b.Loop() {
		if MayRemoveRows(benchQuery) {
			b.Fatal("unexpected")
		}
	}
}

func BenchmarkMayRemoveRowsLong(b *testing.B) {
	q := strings.Repeat(benchQuery+"; ", 100)
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		MayRemoveRows(q)
	}
}

func BenchmarkRewriteUncached(b *testing.B) {
	cat := newTestCatalog()
	for b.Loop() {
		if _, err := Rewrite("DELETE FROM t WHERE id = $1", cat, Options{ClientAddr: "10.0.0.1"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteCascadeUncached(b *testing.B) {
	cat := newTestCatalog()
	for b.Loop() {
		if _, err := Rewrite("DELETE FROM sites WHERE tenant_id = $1", cat, Options{ClientAddr: "10.0.0.1"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteCached(b *testing.B) {
	cat := newTestCatalog()
	c := NewCache(1024)
	for b.Loop() {
		if _, err := c.Rewrite("DELETE FROM t WHERE id = $1", cat, Options{ClientAddr: "10.0.0.1"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewritePassThrough(b *testing.B) {
	cat := newTestCatalog()
	for b.Loop() {
		if _, err := Rewrite(benchQuery, cat, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
