package proxy

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readCatalog reads a GNU gettext .mo file: msgid → msgstr (the
// untranslated ones left out).
func readCatalog(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), 20, path)
	var bo binary.ByteOrder = binary.LittleEndian
	if bo.Uint32(b) != 0x950412de {
		bo = binary.BigEndian
	}
	require.Equal(t, uint32(0x950412de), bo.Uint32(b), "%s: not a .mo file", path)
	n, orig, trans := bo.Uint32(b[8:]), bo.Uint32(b[12:]), bo.Uint32(b[16:])
	str := func(table, i uint32) string {
		l, o := bo.Uint32(b[table+8*i:]), bo.Uint32(b[table+8*i+4:])
		return string(b[o : o+l])
	}
	out := map[string]string{}
	for i := uint32(0); i < n; i++ {
		if tr := str(trans, i); tr != "" {
			out[str(orig, i)] = tr
		}
	}
	return out
}

// cPositional is C's positional argument ("%2$s"), Go's "%[2]s".
var cPositional = regexp.MustCompile(`%(\d+)\$`)

// sprintfC formats like Postgres's snprintf, with the translation of
// format in cat (format itself when it has none).
func sprintfC(cat map[string]string, format string, args ...any) string {
	if tr, ok := cat[format]; ok {
		format = tr
	}
	return fmt.Sprintf(cPositional.ReplaceAllString(format, "%[$1]"), args...)
}

// TestRepairsInEveryCatalog: the CONTEXT lines the store's functions add
// are cut, and the user's kept, in every language PostgreSQL's installed
// message catalogs translate them to; a Bind's result-format error holds
// its two counts and no other number in each.
func TestRepairsInEveryCatalog(t *testing.T) {
	catalogs, _ := filepath.Glob("/usr/share/locale/*/LC_MESSAGES/postgres-[0-9]*.mo")
	if len(catalogs) == 0 {
		t.Skip("no PostgreSQL message catalogs in /usr/share/locale (package postgresql)")
	}
	// English first: no catalog at all.
	langs := map[string][2]map[string]string{"en": {{}, {}}}
	for _, c := range catalogs {
		lang := filepath.Base(filepath.Dir(filepath.Dir(c)))
		pl := strings.Replace(filepath.Base(c), "postgres-", "plpgsql-", 1)
		pg := readCatalog(t, c)
		plCat := map[string]string{}
		if _, err := os.Stat(filepath.Join(filepath.Dir(c), pl)); err == nil {
			plCat = readCatalog(t, filepath.Join(filepath.Dir(c), pl))
		}
		langs[lang] = [2]map[string]string{pg, plCat}
	}
	require.Contains(t, langs, "de")
	for lang, cats := range langs {
		pg, pl := cats[0], cats[1]
		frame := func(fn string, line int, at string) string {
			return sprintfC(pl, "PL/pgSQL function %s line %d at %s", fn, line, sprintfC(pl, at))
		}
		stmt := func(text string) string { return sprintfC(pg, "SQL statement \"%s\"", text) }
		expr := func(text string) string { return sprintfC(pg, "SQL expression \"%s\"", text) }
		trigger := frame("refuse()", 2, "RAISE")
		userSQL := stmt("INSERT INTO log VALUES (1)") + "\n" + frame("audit()", 3, "SQL statement")
		guarded := "\n" + frame("_exec_as(text,text)", 4, "EXECUTE") + "\n" +
			stmt("SELECT tombstone._exec_as(p_sql, p_path)") + "\n" + frame("tombstone.guarded_ddl(text,text)", 12, "PERFORM")
		truncate := frame("capture_truncate(text[],boolean[],boolean,boolean,text,text,text)", 32, "assignment")
		sqlFn := sprintfC(pg, "SQL function \"%s\" statement %d", "f", 1)
		for in, want := range map[string]string{
			trigger + "\n" + stmt("ALTER TABLE ev ATTACH PARTITION ev_1\n  FOR VALUES IN (1)") + guarded: trigger,
			stmt("TRUNCATE public.parent") + guarded:                                                     "",
			userSQL + "\n" + stmt("TRUNCATE \"SQL\"\n \"t\"") + guarded:                                  userSQL,
			trigger + "\n" + expr("tombstone.check(x)") + "\n" + truncate:                                trigger,
			trigger + "\n" + truncate:                                                                    trigger,
			sqlFn + "\n" + truncate:                                                                      sqlFn,
			userSQL:                                                                                      userSQL,
			frame("public.tombstone_like()", 1, "RETURN"):                                                frame("public.tombstone_like()", 1, "RETURN"),
			stmt("SELECT public.capture_truncate(1)") + "\n" + frame("audit()", 1, "PERFORM"):            stmt("SELECT public.capture_truncate(1)") + "\n" + frame("audit()", 1, "PERFORM"),
		} {
			require.Equal(t, want, withoutOwnContext(in), "%s: %q", lang, in)
		}

		bind := sprintfC(pg, "bind message has %d result formats but query has %d columns", 41, 37)
		require.Len(t, regexp.MustCompile(`[0-9]+`).FindAllString(bind, -1), 2, "%s: %q", lang, bind)
	}
}
