package tombstone

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSQLFilesAllApplied: every file in sql/ is a numbered migration or
// one of functionFiles, listed once, with functions_zz_harden.sql last — a
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
	require.Equal(t, "functions_zz_harden.sql", functionFiles[len(functionFiles)-1])
}
