package proxy

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Connections       prometheus.Counter
	ActiveConnections prometheus.Gauge
	CancelRequests    prometheus.Counter
	// StatementsRewritten counts Query and Parse texts the proxy changed.
	StatementsRewritten prometheus.Counter
	// LoopSessions counts joins of an event loop (after authentication,
	// and rejoins once a handed-back session has everything answered);
	// LoopHandBacks hand-backs to goroutine pumps (a planned statement, a
	// big frame, the session's end, …).
	LoopSessions  prometheus.Counter
	LoopHandBacks prometheus.Counter
	// StaleResends counts statements the server refused because they were
	// planned against a catalog that had changed (TS001), planned again
	// and re-sent by the proxy, unseen by the client.
	StaleResends prometheus.Counter
}

// NewMetrics creates the proxy metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tombstone", Subsystem: "proxy", Name: name, Help: help})
	}
	m := &Metrics{
		Connections: counter("connections_total", "Client connections accepted."),
		ActiveConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tombstone", Subsystem: "proxy", Name: "connections_active",
			Help: "Client connections open now.",
		}),
		CancelRequests:      counter("cancel_requests_total", "Cancel requests forwarded to the server."),
		StatementsRewritten: counter("statements_rewritten_total", "Query and Parse texts rewritten to capture deleted rows."),
		LoopSessions: counter("loop_sessions_total",
			"Times a session joined an event loop: after authentication, and again whenever a session handed back has everything answered."),
		LoopHandBacks: counter("loop_handbacks_total",
			"Hand-backs of a session from an event loop to goroutine pumps (a planned statement, a frame larger than the buffer, the end of the session)."),
		StaleResends: counter("stale_catalog_resends_total",
			"Statements planned against a catalog that had changed (refused by the server with TS001, nothing done), planned again and re-sent."),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.ActiveConnections, m.CancelRequests, m.StatementsRewritten, m.LoopSessions, m.LoopHandBacks, m.StaleResends)
	}
	return m
}
