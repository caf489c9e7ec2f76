package proxy

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Connections       prometheus.Counter
	ActiveConnections prometheus.Gauge
	CancelRequests    prometheus.Counter
	// StatementsRewritten counts Query and Parse texts the proxy changed.
	StatementsRewritten prometheus.Counter
}

// NewMetrics creates the proxy metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tombstone", Subsystem: "proxy", Name: "connections_total",
			Help: "Client connections accepted.",
		}),
		ActiveConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tombstone", Subsystem: "proxy", Name: "connections_active",
			Help: "Client connections open now.",
		}),
		CancelRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tombstone", Subsystem: "proxy", Name: "cancel_requests_total",
			Help: "Cancel requests forwarded to the server.",
		}),
		StatementsRewritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tombstone", Subsystem: "proxy", Name: "statements_rewritten_total",
			Help: "Query and Parse texts rewritten to capture deleted rows.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.ActiveConnections, m.CancelRequests, m.StatementsRewritten)
	}
	return m
}
