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
	// Refusals counts statements refused, by SQLSTATE: by the proxy (a
	// delete it cannot capture, a guard, a text too long to plan) and by
	// the store inside a rewritten statement (TS002, TS003, TS020, …;
	// TS001 is counted as a re-send, or reaches the client as such).
	Refusals *prometheus.CounterVec
	// DeletedRows counts the rows rewritten statements reported removed
	// (their CommandComplete: the tables the statements name; the rows
	// their cascades removed are in the store's batches), by database.
	DeletedRows *prometheus.CounterVec
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
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tombstone", Subsystem: "proxy", Name: "refusals_total",
			Help: "Statements refused, by SQLSTATE: by the proxy (a delete it cannot capture, a guard) or by the store in a rewritten statement (TS002 no WHERE, TS003 too many rows, TS020 deletes frozen)."},
			[]string{"sqlstate"}),
		DeletedRows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tombstone", Subsystem: "proxy", Name: "deleted_rows_total",
			Help: "Rows that rewritten (captured) statements reported removed from the tables they name, by database; cascaded rows are counted in the store's batches."},
			[]string{"database"}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.ActiveConnections, m.CancelRequests, m.StatementsRewritten, m.LoopSessions, m.LoopHandBacks, m.StaleResends,
			m.Refusals, m.DeletedRows)
	}
	return m
}
