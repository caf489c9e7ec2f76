package test

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/internal/wirescript"
)

var update = flag.Bool("update", false, "rewrite golden transcripts in testdata/tracking")

// TestTrackingStaysInStep replays message sequences that once put the
// reply tracker out of step (found in review), testdata/tracking/*.script
// (internal/wirescript describes the script language), directly and
// through the proxy with the real planner: the answers must be the same
// and equal to the golden transcript, and hidden columns never leak. Each
// script runs on the tables t (ten rows) and plain_u (empty). Notices and
// ParameterStatus messages are left out of the transcripts.
func TestTrackingStaysInStep(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE plain_u (id int, v text);`)
	wirescript.Suite{
		Dir:     "testdata/tracking",
		Direct:  e.direct,
		Through: []string{e.proxy},
		Skip:    []string{"NoticeResponse", "ParameterStatus"},
		Reset: func(t *testing.T, _ string) {
			_, err := testenv.Connect(t, e.direct).Exec(t.Context(),
				"TRUNCATE t, plain_u; INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g")
			require.NoError(t, err)
		},
		Check: func(t *testing.T, transcript string) {
			require.NotContains(t, transcript, "_ts_")
			require.Contains(t, transcript, "ReadyForQuery")
		},
		Update: *update,
	}.Run(t)
}
