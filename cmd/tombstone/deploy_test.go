package main

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tombstone-proxy/tombstone/proxy"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// TestDeployMetricNames: every metric the sample alert rules and the
// Grafana dashboard (deploy/) query is one the proxy or the reaper
// exports, so that renaming a metric cannot silently blind an alert.
func TestDeployMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	pm := proxy.NewMetrics(reg)
	pm.Refusals.WithLabelValues("TS020")
	pm.DeletedRows.WithLabelValues("db")
	catalogLoads(reg)("db", &tombstone.Catalog{}, nil)
	rm := newReaperMetrics(reg)
	rm.runs.WithLabelValues("ok")
	families, err := reg.Gather()
	require.NoError(t, err)
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("../../deploy/prometheus/tombstone-alerts.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &rules))
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert)
			exprs = append(exprs, r.Expr)
		}
	}
	require.GreaterOrEqual(t, len(exprs), 3)

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err = os.ReadFile("../../deploy/grafana/tombstone.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.Panels)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}

	name := regexp.MustCompile(`tombstone_[a-z_]+`)
	for _, e := range exprs {
		names := name.FindAllString(e, -1)
		require.NotEmpty(t, names, e)
		for _, n := range names {
			require.True(t, exported[n], "%s (in %q) is not a metric tombstone exports", n, e)
		}
	}
}
