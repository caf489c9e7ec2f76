package proxy

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// The proxy hands clients the server's own BackendKeyData, so a
// CancelRequest carries exactly the key the server expects: it is forwarded
// unchanged on a fresh connection to the upstream. Proxies in a fleet share
// one upstream, so a cancel that lands on another proxy than the session's
// still reaches the right backend.

// registerCancel records the session under its backend key (for logs and
// metrics; routing needs no lookup).
func (s *Server) registerCancel(sess *Session) {
	s.cancels.Store(string(sess.backendKey), sess)
}

// forwardCancel relays a CancelRequest packet to the upstream server.
func (s *Server) forwardCancel(ctx context.Context, pkt []byte) {
	known := false
	if len(pkt) > 8 {
		if v, ok := s.cancels.Load(string(pkt[8:])); ok {
			known = true
			v.(*Session).log.Info("cancel request")
		}
	}
	s.cfg.Metrics.CancelRequests.Inc()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	conn, err := s.dialUpstream(ctx)
	if err != nil {
		s.log.Warn("cancel request not delivered", zap.Error(err))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if _, err := conn.Write(pkt); err != nil {
		s.log.Warn("cancel request not delivered", zap.Error(err))
		return
	}
	// The server answers a cancel by closing the connection; wait for that
	// so the cancel is processed before the client's next move.
	var b [1]byte
	_, _ = conn.Read(b[:])
	if !known {
		s.log.Debug("cancel request for a session of another proxy forwarded")
	}
}
