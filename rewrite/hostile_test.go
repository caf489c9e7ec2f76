package rewrite

import (
	"strings"
	"testing"
)

// TestHostileCatalog feeds catalog entries that a buggy loader could
// produce (empty names, quotes, huge names, no columns, FKs with missing
// columns) through every rewrite path. pg_query's C deparser trusts its
// input, so this is the "malformed tree" check: Rewrite must return a
// result or an error, never crash, and whatever it returns must parse.
func TestHostileCatalog(t *testing.T) {
	names := []string{"", `"`, `a"b`, "x y", "ünï", strings.Repeat("n", 200), "select", "_ts_row", "tableoid", "*", "a.b", "$1", "\\", "'"}
	for _, n := range names {
		for _, withCols := range []bool{false, true} {
			tbl := &Table{Schema: n, Name: "t", Shadow: n, Signature: n}
			if withCols {
				tbl.Columns = []Column{{Name: n, Type: n}, {Name: "id", Type: "int"}}
			}
			child := &Table{Schema: n, Name: n, Shadow: n, Columns: tbl.Columns}
			tbl.Referencing = []ForeignKey{
				{Name: n, Child: child, ChildColumns: []string{n}, ParentColumns: []string{n}, OnDelete: Cascade},
				{Name: n, Child: child, ChildColumns: []string{n, "id"}, ParentColumns: []string{"id"}, OnDelete: Cascade},
				{Name: n, Child: child, ChildColumns: nil, ParentColumns: nil, OnDelete: SetNull},
				{Name: n, Child: tbl, ChildColumns: []string{n}, ParentColumns: []string{n}, OnDelete: Cascade},
				{Name: n, Child: child, ChildColumns: []string{n}, ParentColumns: []string{"id"}, OnDelete: SetDefault},
			}
			cat := &testCatalog{tables: map[string]*Table{"public.t": tbl, n + ".t": tbl}, schemas: []string{"public"}}
			for _, sql := range []string{
				"DELETE FROM t",
				"DELETE FROM t RETURNING *",
				"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
				"WITH x AS (DELETE FROM t AS a RETURNING a.*, 1) SELECT * FROM x",
				"PREPARE p AS DELETE FROM t",
			} {
				res, err := Rewrite(sql, cat, Options{ClientAddr: n})
				if err != nil {
					if !IsRefusal(err) {
						t.Errorf("%q / %q: non-*pgerr.Error error %v", n, sql, err)
					}
					continue
				}
				if res.Changed && !strings.Contains(res.SQL, "_ts_d0") {
					t.Errorf("%q / %q: changed but no capture: %s", n, sql, res.SQL)
				}
			}
		}
	}
}
