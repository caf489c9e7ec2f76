package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
)

// UpstreamTLS says whether the proxy speaks TLS to the server.
type UpstreamTLS int

// Upstream TLS modes, named after libpq's sslmode values.
const (
	UpstreamTLSDisable UpstreamTLS = iota // never
	UpstreamTLSPrefer                     // if the server offers it
	UpstreamTLSRequire                    // or fail
)

// Config configures a Server.
type Config struct {
	// Upstream is the server's address, host:port.
	Upstream string
	// ClientTLS, when set, answers clients' SSLRequest with Yes ('S').
	ClientTLS *tls.Config
	// ClientTLSRequired refuses clients that did not start TLS, with the
	// error Postgres sends when pg_hba.conf allows only hostssl.
	ClientTLSRequired bool
	// BufferBudgetBytes bounds the statement text (Query and Parse
	// frames over largeFrame bytes) all sessions hold whole at once for
	// the planner (limits.buffer_budget_bytes; 0:
	// DefaultBufferBudgetBytes). A session whose frame does not fit yet
	// waits; one whose frame is larger than the whole budget ends with
	// 54000.
	BufferBudgetBytes int
	// LargeFrameTimeout bounds how long a session may take to send a
	// frame that holds buffer budget, beyond 1 µs per byte (0: 30 s): a
	// client that stops mid-frame does not keep the budget from others.
	LargeFrameTimeout time.Duration
	// UpstreamTLS and UpstreamTLSConfig control TLS to the server.
	UpstreamTLS       UpstreamTLS
	UpstreamTLSConfig *tls.Config
	// ConnectTimeout bounds dialing the server.
	ConnectTimeout time.Duration
	// StartupTimeout bounds the startup and authentication phase.
	StartupTimeout time.Duration
	Logger         *zap.Logger
	Metrics        *Metrics
	// Planner rewrites statements; nil makes a pure pass-through proxy.
	Planner Planner
	// Loops, when set, carry sessions' ordinary traffic on event loops
	// (Linux; see Loops). Nil: every session runs on goroutine pumps.
	Loops *Loops
	// OnCatalogChanged is called when the server reports that a rewrite
	// was planned with a stale catalog (SQLSTATE TS001).
	OnCatalogChanged func(database string)
	// OnSession, when set, is called as a client's session starts (once
	// authenticated) with its database, and what it returns as the
	// session ends: the catalogs keep connections to a database only
	// while a session uses it.
	OnSession func(database string) (ended func())
}

// Server accepts client connections and runs a Session for each.
type Server struct {
	cfg    Config
	log    *zap.Logger
	nextID atomic.Uint64

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*Session]struct{}
	closing  bool
	wg       sync.WaitGroup
	cancels  sync.Map // backend key → *Session
	planner  Planner
	// buffers is BufferBudgetBytes.
	buffers *semaphore.Weighted
}

// DefaultBufferBudgetBytes is BufferBudgetBytes's default.
const DefaultBufferBudgetBytes = 128 << 20

// largeFrame is the size from which a Query or Parse frame held whole for
// the planner counts against the buffer budget.
const largeFrame = 1 << 20

// NewServer returns a Server for cfg, filling in defaults.
func NewServer(cfg Config) *Server {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.LargeFrameTimeout <= 0 {
		cfg.LargeFrameTimeout = 30 * time.Second
	}
	if cfg.BufferBudgetBytes <= 0 {
		cfg.BufferBudgetBytes = DefaultBufferBudgetBytes
	}
	return &Server{cfg: cfg, log: cfg.Logger, sessions: map[*Session]struct{}{}, planner: cfg.Planner,
		buffers: semaphore.NewWeighted(int64(cfg.BufferBudgetBytes))}
}

// Serve accepts connections on ln until Shutdown is called or ln fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.startSession(ctx, conn)
	}
}

func (s *Server) startSession(ctx context.Context, conn net.Conn) {
	id := s.nextID.Add(1)
	sess := &Session{
		ID:         id,
		srv:        s,
		log:        s.log.With(zap.Uint64("conn", id)),
		client:     conn,
		cr:         newFrameReader(conn),
		cw:         newFrameWriter(conn),
		ClientAddr: conn.RemoteAddr().String(),
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.cfg.Metrics.Connections.Inc()
	s.cfg.Metrics.ActiveConnections.Inc()
	go func() {
		defer func() {
			s.unregister(sess)
			s.cfg.Metrics.ActiveConnections.Dec()
			s.wg.Done()
		}()
		sess.run(ctx)
	}()
}

func (s *Server) unregister(sess *Session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.cancels.Delete(string(sess.backendKey))
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.cfg.Metrics }

// Sessions returns how many sessions are open.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops accepting connections and waits for open sessions to end
// until ctx is done; then it ends the remaining sessions, telling their
// clients why (57P01), and waits for them to wind down.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.sessions)
	for sess := range s.sessions {
		sess.kill()
	}
	s.mu.Unlock()
	s.log.Warn("shutdown timeout: terminating sessions", zap.Int("sessions", n))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.mu.Lock()
		for sess := range s.sessions {
			sess.close()
		}
		s.mu.Unlock()
		<-done
	}
	return ctx.Err()
}

// dialUpstream connects to the server, with TLS when configured. Errors are
// *pgerr.Error values the client can be told.
func (s *Server) dialUpstream(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	network, addr := "tcp", s.cfg.Upstream
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		e := fatal(pgerrcode.SQLClientUnableToEstablishSQLConnection, "could not connect to upstream server", err)
		e.Detail = err.Error()
		e.Hint = fmt.Sprintf("Is PostgreSQL running and accepting connections at %s?", addr)
		return nil, e
	}
	if s.cfg.UpstreamTLS == UpstreamTLSDisable {
		return conn, nil
	}
	tc, err := s.upstreamTLS(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tc, nil
}

// upstreamTLS sends an SSLRequest on conn and wraps it in TLS if the server
// agrees.
func (s *Server) upstreamTLS(conn net.Conn) (net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer conn.SetDeadline(time.Time{})
	req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), codeSSLRequest)
	if _, err := conn.Write(req); err != nil {
		return nil, fatal(pgerrcode.ConnectionFailure, "could not send SSL request to server", err)
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		return nil, fatal(pgerrcode.ConnectionFailure, "server closed the connection during SSL negotiation", err)
	}
	switch b[0] {
	case negotiateYes:
		cfg := s.cfg.UpstreamTLSConfig
		if cfg == nil {
			cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // mode "require" does not verify, like libpq
		}
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, fatal(pgerrcode.ConnectionFailure, "TLS handshake with server failed", err)
		}
		return tc, nil
	case negotiateNo:
		if s.cfg.UpstreamTLS == UpstreamTLSRequire {
			return nil, fatal(pgerrcode.ConnectionFailure, "server does not support SSL, but the proxy requires it", nil)
		}
		return conn, nil
	default:
		return nil, fatal(pgerrcode.ProtocolViolation, fmt.Sprintf("unexpected answer %q to SSL request from server", b[0]), nil)
	}
}

// catalogChanged passes a stale-catalog report on.
func (s *Server) catalogChanged(sess *Session) {
	if s.cfg.OnCatalogChanged != nil {
		s.cfg.OnCatalogChanged(sess.Params["database"])
	}
}
