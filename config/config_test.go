package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/config"
)

// TestExampleConfigLoads: the shipped file (also the container's config)
// shows every key with its default, as its first line says.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../configs/tombstone.yaml")
	require.NoError(t, err)
	want := config.Default()
	want.Protect.Exclude, want.Protect.Tables = []string{}, map[string]config.TableRules{} // written as [] and {}
	require.Equal(t, want, cfg)
}

func TestPerTableRetention(t *testing.T) {
	cfg := config.Default()
	require.NoError(t, config.Parse([]byte("protect:\n  tables:\n    public.audit_log:\n      retention: 30d\n"), &cfg))
	require.Equal(t, 30*24*time.Hour, cfg.Protect.RetentionFor("public.audit_log"))
	require.Equal(t, 168*time.Hour, cfg.Protect.RetentionFor("public.other"))
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, "capture", cfg.Policies.Truncate)
	require.Equal(t, "trash", cfg.Policies.Drop)
	require.True(t, cfg.Guards.RequireWhere)
}

// TestRefused: unknown keys and bad values are refused with a message that
// names the key (its dotted path, and the line when the YAML itself is
// wrong: an unknown key, a value of the wrong kind).
func TestRefused(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"listne: 1.2.3.4:5", "line 1: listne: unknown key (known: listen, upstream, "},
		{"protect:\n  schemaz: [x]", "line 2: protect.schemaz: unknown key (known: schemas, exclude, retention, tables)"},
		{"protect:\n  retention: forever", `line 2: protect.retention: bad duration "forever"`},
		{"protect:\n  tables:\n    public.sites: {retention: 7x}", "protect.tables.public.sites.retention: bad duration"},
		{"protect:\n  tables:\n    public.sites:\n      retension: 7d", "line 4: protect.tables.public.sites.retension: unknown key"},
		{"protect:\n  schemas:\n    - [a]", "line 3: protect.schemas[0]: a list where a value belongs"},
		{"protect:\n  retention: 0s", "protect.retention"},
		{"protect:\n  schemas: []", "protect.schemas"},
		{"protect:\n  schemas: [tombstone]", "protect.schemas"},
		{"protect:\n  tables:\n    sites: {retention: 1h}", "protect.tables.sites"},
		{"protect:\n  tables:\n    public.sites: {mode: soft}", "protect.tables.public.sites.mode"},
		{"policies:\n  truncate: maybe", "policies.truncate"},
		{"policies:\n  drop: yes", "policies.drop"},
		{"guards:\n  max_rows: -1", "guards.max_rows"},
		{"guards:\n  require_where: perhaps", "line 2: guards.require_where: `perhaps` is not a boolean (true or false)"},
		{"guards:\n  max_rows: lots", "line 2: guards.max_rows: `lots` is not an integer"},
		{"protect:\n  tables: [a]", "line 2: protect.tables: a list where a map belongs"},
		{"protect:\n  tables:\n    - a", "line 3: protect.tables: a list where a map belongs"},
		{"protect:\n  tables:\n    [a]: {}", "line 3: protect.tables: a list as a key"},
		{"protect:\n  retention: 7d\n  schemas: {a: 1}", "line 3: protect.schemas: a map where a list belongs"},
		{"guards:\n  max_rows: 99999999999999999999", "line 2: guards.max_rows: `99999999999999999999` is not an integer"},
		{"protect:\n  <<: {retentoin: 1d}", "line 2: protect.retentoin: unknown key"},
		{"listen: [a\n", "line 1: did not find expected"},
		// Every problem at once.
		{"listne: x\nguards: {max_rows: lots}", "line 1: listne: unknown key (known: listen, upstream, control_dsn, shutdown_timeout, event_loops, protect, policies, guards, limits, redis, metrics, log, tls); line 2: guards.max_rows: `lots` is not an integer"},
		{"upstream: nowhere", "upstream"},
		{"redis:\n  addr: redis", "redis.addr"},
		{"log:\n  level: loud", "log.level"},
		{"log:\n  format: xml", "log.format"},
		{"tls:\n  cert_file: a.pem", "tls.cert_file"},
		{"tls:\n  upstream: always", "tls.upstream"},
		{"event_loops: -1", "event_loops"},
		{"event_loops: 1000", "event_loops"},
		{"- just\n- a list", "line 1: (top level): a list where a map of keys belongs"},
		{"x: &x {b: 1}\n? [a]\n: c\n<<: *x\n", "line 2: (top level): a list as a key"}, // yaml.v3's Decode panics on it
	} {
		cfg := config.Default()
		err := config.Parse([]byte(c.yaml), &cfg)
		require.Error(t, err, c.yaml)
		require.Contains(t, err.Error(), c.key, c.yaml)
	}
}

// TestMergeKeys: "<<" merges another map's keys, checked as if written
// in place.
func TestMergeKeys(t *testing.T) {
	cfg := config.Default()
	require.NoError(t, config.Parse([]byte("protect:\n  <<: {retention: 1d}\n  schemas: [app]\n"), &cfg))
	require.Equal(t, 24*time.Hour, time.Duration(cfg.Protect.Retention))
	require.Equal(t, []string{"app"}, cfg.Protect.Schemas)

	// Several maps at once, by a list of aliases; a bad key in one of
	// them is still named.
	cfg = config.Default()
	doc := "protect:\n  tables:\n    public.a: &r {retention: 2h}\n    public.b: &c {column: tenant}\n    public.t: {<<: [*r, *c]}\n"
	require.NoError(t, config.Parse([]byte(doc), &cfg))
	require.Equal(t, 2*time.Hour, time.Duration(cfg.Protect.Tables["public.t"].Retention))
	require.Equal(t, "tenant", cfg.Protect.Tables["public.t"].Column)
	err := config.Parse([]byte("protect:\n  tables:\n    public.a: &r {retentoin: 2h}\n    public.t: {<<: [*r]}\n"), &cfg)
	require.ErrorContains(t, err, "retentoin: unknown key")
}

func TestDurationsAndEmptyFile(t *testing.T) {
	cfg := config.Default()
	require.NoError(t, config.Parse([]byte("protect:\n  retention: 14d\nshutdown_timeout: 5s\n"), &cfg))
	require.Equal(t, 14*24*time.Hour, time.Duration(cfg.Protect.Retention))
	require.Equal(t, 5*time.Second, time.Duration(cfg.ShutdownTimeout))

	path := filepath.Join(t.TempDir(), "empty.yaml")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	got, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, config.Default(), got)
}

// TestControlConninfo: with no control_dsn the proxy's own connections go
// where its clients' do — unless the libpq environment says where.
func TestControlConninfo(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		name, upstream, dsn string
		getenv              func(string) string
		want                string
		host                string // what libpq (pgconn) reads back from want
		port                uint16
	}{
		{"upstream host and port", "127.0.0.1:55432", "", env(), "host='127.0.0.1' port='55432'", "127.0.0.1", 55432},
		{"host name", "db.internal:6000", "", env("PGUSER", "app"), "host='db.internal' port='6000'", "db.internal", 6000},
		{"IPv6", "[::1]:5433", "", env(), "host='::1' port='5433'", "::1", 5433},
		{"Unix socket", "/run/postgresql/.s.PGSQL.5434", "", env(), "host='/run/postgresql' port='5434'", "/run/postgresql", 5434},
		{"socket in the root", "/.s.PGSQL.5432", "", env(), "host='/' port='5432'", "/", 5432},
		{"quoted", "/tmp/it's a dir\\/.s.PGSQL.5432", "", env(), `host='/tmp/it\'s a dir\\' port='5432'`, `/tmp/it's a dir\`, 5432},
		{"not a socket file", "/tmp/pg.sock", "", env(), "", "", 0},
		{"PGHOST wins", "127.0.0.1:55432", "", env("PGHOST", "/var/run/postgresql"), "", "", 0},
		{"PGHOSTADDR wins", "127.0.0.1:55432", "", env("PGHOSTADDR", "10.0.0.1"), "", "", 0},
		{"PGPORT wins", "127.0.0.1:55432", "", env("PGPORT", "5432"), "", "", 0},
		{"control_dsn wins", "127.0.0.1:55432", "host=db user=tombstone", env(), "host=db user=tombstone", "", 0},
	} {
		cfg := config.Default()
		cfg.Upstream, cfg.ControlDSN = c.upstream, c.dsn
		got := cfg.ControlConninfo(c.getenv)
		require.Equal(t, c.want, got, c.name)
		if c.host != "" {
			pc, err := pgconn.ParseConfig(got)
			require.NoError(t, err, c.name)
			require.Equal(t, c.host, pc.Host, c.name)
			require.Equal(t, c.port, pc.Port, c.name)
		}
	}
}
