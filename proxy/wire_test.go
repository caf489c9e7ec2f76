package proxy_test

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/internal/wirescript"
	"github.com/tombstone-proxy/tombstone/proxy"
)

var update = flag.Bool("update", false, "rewrite golden transcripts in testdata/wire")

// TestWireScripts replays each testdata/wire/*.script conversation
// (internal/wirescript describes the script language) directly against
// PostgreSQL and through the proxy: the two transcripts must be
// identical, and equal to the reviewed golden transcript (*.golden).
func TestWireScripts(t *testing.T) {
	proxies := []*testenv.Proxy{
		// Goroutine pumps, plain and tracked (used when statements may be
		// rewritten): a planner that looks at everything and changes
		// nothing drives every message through the tracking code.
		testenv.StartProxy(t, testenv.Pumps),
		testenv.StartProxy(t, testenv.Pumps, func(c *proxy.Config) { c.Planner = lookAtEverything{} }),
		// The event loop: plain; tracking every message itself (a planner
		// that wants nothing); and handing the session back to the pumps
		// at the first Query or Parse (a planner that wants everything).
		testenv.StartProxy(t),
		testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtNothing{} }),
		testenv.StartProxy(t, func(c *proxy.Config) { c.Planner = lookAtEverything{} }),
	}
	suite := wirescript.Suite{
		Dir:    "testdata/wire",
		Direct: wiretest(t, testenv.PGURL(t)),
		Reset:  setup,
		Update: *update,
	}
	for _, px := range proxies {
		suite.Through = append(suite.Through, wiretest(t, px.DSN))
	}
	suite.Run(t)
}

// wiretest returns dsn with the application name the scripts' sessions
// start with.
func wiretest(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", "wiretest")
	u.RawQuery = q.Encode()
	return u.String()
}

// lookAtEverything is a Planner that plans every text and changes none.
type lookAtEverything struct{}

func (lookAtEverything) Wants([]byte) bool                              { return true }
func (lookAtEverything) Plan(context.Context, proxy.Request) proxy.Plan { return proxy.Pass{} }

// lookAtNothing plans nothing: the proxy tracks every message but passes
// every statement through unread.
type lookAtNothing struct{ lookAtEverything }

func (lookAtNothing) Wants([]byte) bool { return false }

// setup gives each script an empty table wire_<name>.
func setup(t *testing.T, name string) {
	testenv.Exec(t, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS wire_%[1]s (id int PRIMARY KEY, v text); TRUNCATE wire_%[1]s`, name))
}
