package tombstone

import (
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/require"
)

// functionSearchPath is the search_path every function of the store sets in its
// own CREATE FUNCTION (sql/functions_check.sql asserts it at install).
const functionSearchPath = "pg_catalog, tombstone, pg_temp"

// dynamicBody is what made the old functions_zz_harden.sql pin
// standard_conforming_strings: a body that EXECUTEs statements it builds,
// or holds a backslash (a regular expression), lexes alike under the
// caller's setting only if the function sets it.
var dynamicBody = regexp.MustCompile(`(?i)EXECUTE|\\`)

// unpinnedFunctions parses text, a functions_*.sql file, and returns how
// many functions and procedures it creates and, for each that does not
// pin its settings in its own CREATE, what is missing: SET search_path =
// functionSearchPath always; SET standard_conforming_strings = on exactly when
// its body is dynamic (the others keep one setting less to save and
// restore per call).
func unpinnedFunctions(name, text string) (int, []string, error) {
	tree, err := pg_query.Parse(text)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", name, err)
	}
	n := 0
	var problems []string
	for _, raw := range tree.Stmts {
		fn := raw.Stmt.GetCreateFunctionStmt()
		if fn == nil {
			continue
		}
		n++
		var parts []string
		for _, p := range fn.Funcname {
			parts = append(parts, p.GetString_().GetSval())
		}
		// (A statement's location is the end of the one before it: its
		// line is the one its CREATE is on, past the comments.)
		at := int(raw.StmtLocation)
		at += strings.Index(strings.ToUpper(text[at:]), "CREATE")
		where := fmt.Sprintf("%s:%d: %s", name, 1+strings.Count(text[:at], "\n"), strings.Join(parts, "."))
		set := map[string]string{}
		body := ""
		for _, o := range fn.Options {
			d := o.GetDefElem()
			switch d.GetDefname() {
			case "set":
				v := d.GetArg().GetVariableSetStmt()
				var vals []string
				for _, a := range v.GetArgs() {
					c := a.GetAConst()
					if s, ok := c.GetVal().(*pg_query.A_Const_Sval); ok {
						vals = append(vals, s.Sval.GetSval())
					} else if i, ok := c.GetVal().(*pg_query.A_Const_Ival); ok {
						vals = append(vals, strconv.Itoa(int(i.Ival.GetIval())))
					}
				}
				set[v.GetName()] = strings.Join(vals, ", ")
			case "as":
				if items := d.GetArg().GetList().GetItems(); len(items) > 0 {
					body = items[0].GetString_().GetSval()
				}
			}
		}
		if set["search_path"] != functionSearchPath {
			problems = append(problems, where+": no SET search_path = "+functionSearchPath)
		}
		scs, ok := set["standard_conforming_strings"]
		switch dynamic := dynamicBody.MatchString(body); {
		case dynamic && scs != "on":
			problems = append(problems, where+": builds statements or holds a backslash, but has no SET standard_conforming_strings = on")
		case !dynamic && ok:
			problems = append(problems, where+": sets standard_conforming_strings, which its body does not need")
		}
	}
	return n, problems, nil
}

// TestFunctionsPinSettings: every CREATE FUNCTION and CREATE PROCEDURE in
// the files Install applies carries its own SET search_path (and
// standard_conforming_strings where it builds statements), so that no
// later file has to fix them up.
func TestFunctionsPinSettings(t *testing.T) {
	total := 0
	for i, text := range functionTexts() {
		n, problems, err := unpinnedFunctions(functionFiles[i], text)
		require.NoError(t, err)
		require.Empty(t, problems)
		total += n
	}
	require.Greater(t, total, 150, "the parser found the store's functions")
}

// TestUnpinnedFunctionsFound: the check above fails for a function that
// does not pin its settings.
func TestUnpinnedFunctionsFound(t *testing.T) {
	text := `
CREATE OR REPLACE FUNCTION tombstone.ok() RETURNS int LANGUAGE sql
SET search_path = pg_catalog, tombstone, pg_temp AS $$ SELECT 1 $$;
CREATE OR REPLACE FUNCTION tombstone.bare() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE OR REPLACE PROCEDURE tombstone.other_path() LANGUAGE sql
SET search_path = public AS $$ SELECT 1 $$;
CREATE OR REPLACE FUNCTION tombstone.dyn() RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, tombstone, pg_temp AS $$ BEGIN EXECUTE 'SELECT 1'; END $$;
CREATE OR REPLACE FUNCTION tombstone.needless() RETURNS int LANGUAGE sql
SET search_path = pg_catalog, tombstone, pg_temp SET standard_conforming_strings = on AS $$ SELECT 1 $$;`
	n, problems, err := unpinnedFunctions("t.sql", text)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, []string{
		"t.sql:4: tombstone.bare: no SET search_path = pg_catalog, tombstone, pg_temp",
		"t.sql:5: tombstone.other_path: no SET search_path = pg_catalog, tombstone, pg_temp",
		"t.sql:7: tombstone.dyn: builds statements or holds a backslash, but has no SET standard_conforming_strings = on",
		"t.sql:9: tombstone.needless: sets standard_conforming_strings, which its body does not need",
	}, problems)
}

// TestSQLFilesAllApplied: every file in sql/ is a numbered migration or
// one of functionFiles, listed once, with functions_check.sql last — a
// new file left out of the list would never be installed.
func TestSQLFilesAllApplied(t *testing.T) {
	all, err := fs.Glob(sqlFiles, "sql/*.sql")
	require.NoError(t, err)
	applied := map[string]int{}
	for _, m := range migrations() {
		applied[m.name]++
	}
	for _, f := range functionFiles {
		applied[f]++
	}
	for _, f := range all {
		f = strings.TrimPrefix(f, "sql/")
		require.Equal(t, 1, applied[f], "%s: applied once, as a migration or in functionFiles", f)
		delete(applied, f)
	}
	require.Empty(t, applied, "listed but not in sql/")
	require.Equal(t, "functions_check.sql", functionFiles[len(functionFiles)-1])
}
