package rewrite

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// A golden file is a txtar archive (golang.org/x/tools/txtar): its
// comment, then the files "input.sql" and "want".
type golden struct {
	comment, input, want string
}

func readGolden(t testing.TB, path string) golden {
	t.Helper()
	a, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g := golden{comment: string(a.Comment)}
	for _, f := range a.Files {
		switch f.Name {
		case "input.sql":
			g.input = string(f.Data)
		case "want":
			g.want = string(f.Data)
		default:
			t.Fatalf("%s: unknown section %q", path, f.Name)
		}
	}
	return g
}

func (g golden) format() []byte {
	return txtar.Format(&txtar.Archive{Comment: []byte(g.comment), Files: []txtar.File{
		{Name: "input.sql", Data: []byte(g.input)},
		{Name: "want", Data: []byte(g.want)},
	}})
}

// describe renders a Result for review: metadata, then the rewritten SQL
// with one generated CTE per line.
func describe(res *Result, err error) string {
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "changed: %v\n", res.Changed)
	for i, st := range res.Statements {
		fmt.Fprintf(&b, "stmt %d: kind=%s rewritten=%v", i+1, st.Kind, st.Rewritten)
		if st.Output.TagFrom != "" {
			fmt.Fprintf(&b, " tag=%s->DELETE", st.Output.TagFrom)
		}
		if st.Output.Tag != "" {
			fmt.Fprintf(&b, " tag=%s", st.Output.Tag)
		}
		if st.Output.HiddenColumns != 0 {
			fmt.Fprintf(&b, " hidden=%d", st.Output.HiddenColumns)
		}
		if st.Output.NoRows {
			b.WriteString(" norows")
		}
		if st.Prepares != "" && st.Rewritten {
			fmt.Fprintf(&b, " prepared=%s", st.Prepares)
		}
		b.WriteString("\n")
		if r := st.Refusal; r != nil {
			fmt.Fprintf(&b, "  refused %s: %s\n  hint: %s\n  position: %d\n", r.Code, r.Message, r.Hint, r.Position)
		}
	}
	if res.Changed {
		b.WriteString("sql:\n")
		b.WriteString(pretty(res.SQL))
		b.WriteString("\n")
	}
	return b.String()
}

// pretty breaks the one-line deparser output before each generated CTE
// and before the final statement body. Display only.
func pretty(sql string) string {
	return cteStart.ReplaceAllString(sql, "$1\n  $2")
}

var cteStart = regexp.MustCompile(`((?:^|[^'])WITH(?: RECURSIVE)?|\),) ((?:_ts_[a-z]+\d*|[a-z_][a-z_0-9]*(?:\([^()]*\))?) AS \()`)

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	cat := newTestCatalog()
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			g := readGolden(t, f)
			sql := strings.TrimSuffix(g.input, "\n")
			opt := Options{ClientAddr: "10.0.0.7:51234"}
			// "# policy truncate=reject" / "# policy drop=allow" comment lines.
			for _, line := range strings.Split(g.comment, "\n") {
				if rest, ok := strings.CutPrefix(line, "# policy "); ok {
					k, v, _ := strings.Cut(rest, "=")
					switch k {
					case "truncate":
						opt.Truncate = v
					case "drop":
						opt.Drop = v
					case "require_where":
						opt.RequireWhere = v == "true"
					case "max_rows":
						n, _ := strconv.ParseInt(v, 10, 64)
						opt.MaxRows = n
					}
				}
			}
			res, err := Rewrite(sql, cat, opt)
			got := describe(res, err)
			if *update {
				g.want = got
				if err := os.WriteFile(f, g.format(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != g.want {
				t.Errorf("mismatch (run go test -update and review the diff)\n--- got ---\n%s--- want ---\n%s", got, g.want)
			}
			if err == nil && res.Changed {
				for _, st := range res.Statements {
					if !st.Rewritten {
						continue
					}
					if _, perr := pg.Parse(res.SQL[st.Span.Start:st.Span.End]); perr != nil {
						t.Errorf("rewritten statement does not parse: %v", perr)
					}
				}
			}
		})
	}
}
