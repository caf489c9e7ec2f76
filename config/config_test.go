package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/config"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../configs/tombstone.yaml")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6432", cfg.Listen)
	require.Equal(t, []string{"public"}, cfg.Protect.Schemas)
	require.Equal(t, 168*time.Hour, time.Duration(cfg.Protect.Retention))
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
// names the key.
func TestRefused(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"listne: 1.2.3.4:5", "listne"},
		{"protect:\n  schemaz: [x]", "schemaz"},
		{"protect:\n  retention: forever", "forever"},
		{"protect:\n  retention: 0s", "protect.retention"},
		{"protect:\n  schemas: []", "protect.schemas"},
		{"protect:\n  schemas: [tombstone]", "protect.schemas"},
		{"protect:\n  tables:\n    sites: {retention: 1h}", "protect.tables.sites"},
		{"protect:\n  tables:\n    public.sites: {mode: soft}", "protect.tables.public.sites.mode"},
		{"policies:\n  truncate: maybe", "policies.truncate"},
		{"policies:\n  drop: yes", "policies.drop"},
		{"guards:\n  max_rows: -1", "guards.max_rows"},
		{"guards:\n  require_where: perhaps", "perhaps"},
		{"upstream: nowhere", "upstream"},
		{"redis:\n  addr: redis", "redis.addr"},
		{"log:\n  level: loud", "log.level"},
		{"log:\n  format: xml", "log.format"},
		{"tls:\n  cert_file: a.pem", "tls.cert_file"},
		{"tls:\n  upstream: always", "tls.upstream"},
		{"event_loops: -1", "event_loops"},
		{"event_loops: 1000", "event_loops"},
		{"- just\n- a list", "cannot unmarshal"},
	} {
		cfg := config.Default()
		err := config.Parse([]byte(c.yaml), &cfg)
		require.Error(t, err, c.yaml)
		require.Contains(t, err.Error(), c.key, c.yaml)
	}
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
