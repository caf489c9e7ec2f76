package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFlagsOverrideConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("listen: 127.0.0.1:7000\nupstream: 127.0.0.1:7001\nredis:\n  addr: 127.0.0.1:7002\n"), 0o600))
	c := proxyCmd{Config: path, Upstream: "127.0.0.1:9001", LogLevel: "debug"}
	cfg, err := c.load()
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7000", cfg.Listen, "file value kept when no flag")
	require.Equal(t, "127.0.0.1:9001", cfg.Upstream, "flag wins over file")
	require.Equal(t, "127.0.0.1:7002", cfg.Redis.Addr)
	require.Equal(t, "debug", cfg.Log.Level)

	require.Equal(t, 1, cfg.EventLoops, "one event loop by default")
	zero := 0
	c = proxyCmd{Config: path, EventLoops: &zero}
	cfg, err = c.load()
	require.NoError(t, err)
	require.Equal(t, 0, cfg.EventLoops, "--event-loops 0 wins over the default")

	c = proxyCmd{Config: path, LogLevel: "chatty"}
	_, err = c.load()
	require.ErrorContains(t, err, "log.level")
}
