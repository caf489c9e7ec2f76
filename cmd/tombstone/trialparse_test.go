package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary stand in for the tombstone binary when
// trialParse runs it as `parse-check`, as the proxy runs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "parse-check" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestTrialParse: the trial parse in a child process reports a statement
// that crashes pg_query (a 40,000-operator chain overflows its C stack)
// instead of crashing, and passes what pg_query parses or refuses.
func TestTrialParse(t *testing.T) {
	require.NoError(t, trialParse("SELECT 1"))
	require.NoError(t, trialParse("SELEC 1"), "a syntax error is the server's to report")
	require.NoError(t, trialParse("DELETE FROM t WHERE id IN ("+strings.Repeat("1, ", 20000)+"1)"))
	err := trialParse("SELECT 1" + strings.Repeat("+1", 40000))
	require.Error(t, err)
	require.Contains(t, err.Error(), "crashed")
}
