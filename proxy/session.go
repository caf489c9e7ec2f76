package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"go.uber.org/zap"
)

// errSessionDone ends a session quietly (cancel requests, client gone).
var errSessionDone = errors.New("session done")

// errClientFinished: the client sent Terminate, or ended its side at a
// message boundary. What it sent before still gets its answers, as from
// Postgres, which answers everything it read before the end.
var errClientFinished = errors.New("client finished sending")

// finishDrain bounds how long a session whose client has finished
// sending waits for the server's last answers.
const finishDrain = 30 * time.Second

// Session is one client connection and its one server connection. It relays
// the startup and authentication exchange, then runs two pumps: client to
// server and server to client. Messages are framed by their 5-byte header
// and forwarded as raw bytes; only the few the proxy must look at are
// decoded.
type Session struct {
	ID  uint64
	srv *Server
	log *zap.Logger

	client net.Conn
	server net.Conn
	cr, sr *frameReader
	cw, sw *frameWriter

	// Params are the client's startup parameters (user, database, …).
	Params map[string]string
	// ClientAddr is the real client's address as the proxy saw it.
	ClientAddr string

	backendKey []byte // BackendKeyData body, for cancel routing
	txStatus   atomic.Uint32
	// lexing is how the server reads statement text, from its
	// ParameterStatus reports (lexing.reported).
	lexing lexing
	// atHand: the plan the event loop made of the frame it is about to
	// take (planAtHand).
	atHand *atHand

	track    tracker
	reply    replyState // server → client pump only
	wmu      sync.Mutex // serializes writes to the server (client pump, retries)
	prepared statements

	// modeMu guards the switch between the event loop and the goroutine
	// pumps: client, server, lc, closing and closed.
	modeMu sync.Mutex
	// lc is set while an event loop carries the session.
	lc *loopConn
	// closing: close was asked for while in the loop; closed: the
	// connections were closed.
	closing, closed bool

	killed   atomic.Bool
	midFrame atomic.Bool // the client pump is streaming a frame to the server
	// rejoin: the server pump offered the session back to its event loop;
	// the client pump stops at its next message boundary.
	rejoin atomic.Bool
	// clientStopped: the client pump stopped for the rejoin; the server
	// pump stops at its next message boundary.
	clientStopped atomic.Bool
	// clientBetween and serverBetween: the pump waits for the next message
	// (each pump's own).
	clientBetween, serverBetween bool
	// loopable: the session's sockets can be carried by an event loop.
	loopable    bool
	terminating atomic.Bool
}

// TxStatus returns the last transaction status the server reported in
// ReadyForQuery: TxIdle, TxInBlock, TxFailed, or
// 0 before the first ReadyForQuery.
func (s *Session) TxStatus() byte { return byte(s.txStatus.Load()) }

// run drives the session to its end. It never panics on client input; a
// panic from a bug is contained to this session and logged.
func (s *Session) run(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session panic", zap.Any("panic", r), zap.Stack("stack"))
		}
		s.close()
	}()
	if err := s.startup(ctx); err != nil {
		s.fail(err)
		return
	}
	s.log.Info("session ready",
		zap.String("user", s.Params["user"]),
		zap.String("database", s.Params["database"]),
		zap.String("application_name", s.Params["application_name"]))
	if on := s.srv.cfg.OnSession; on != nil {
		defer on(s.Params["database"])()
	}
	s.relay(ctx)
}

// relay carries the session's messages until one side ends it: on an
// event loop while it can, on goroutine pumps while it must. A session the
// loop handed back (for a statement the planner wanted, say) rejoins it
// once everything it sent has been answered.
func (s *Session) relay(ctx context.Context) {
	loop := true
	for {
		if loop && s.srv.cfg.Loops.adopt(ctx, s) {
			s.srv.cfg.Metrics.LoopSessions.Inc()
			lc := s.lc
			<-lc.back
			if err := s.resume(lc); err != nil {
				s.log.Warn("session ended", zap.Error(err))
				return
			}
			s.srv.cfg.Metrics.LoopHandBacks.Inc()
		} else if loop {
			s.loopable = false // no loop takes it (closed, TLS): no more offers
		}
		err, serr := s.pumps(ctx)
		if errors.Is(err, errRejoin) && errors.Is(serr, errRejoin) {
			// Both pumps stopped at a message boundary: back to the
			// loop if nothing is in flight, else on with the pumps.
			s.rejoin.Store(false)
			s.clientStopped.Store(false)
			_ = s.client.SetReadDeadline(time.Time{})
			_ = s.server.SetReadDeadline(time.Time{})
			loop = s.quiet()
			continue
		}
		s.log.Info("session closed", zap.NamedError("client_side", quiet(err)), zap.NamedError("server_side", quiet(serr)))
		return
	}
}

// pumps runs the two goroutine pumps until both stop. To rejoin the loop,
// the client pump stops first (at a message boundary), then the server
// pump at its next boundary: it keeps reading the server until then, so
// the server is never left blocked on a full socket.
func (s *Session) pumps(ctx context.Context) (clientSide, serverSide error) {
	done := make(chan error, 1)
	go func() {
		err := errSessionDone
		defer func() {
			// A panic (a bug) ends this session, as one in the client
			// pump does (run), never the process.
			if r := recover(); r != nil {
				serverPumpPanicked(s, r)
				err = errSessionDone
			}
			if !errors.Is(err, errRejoin) {
				s.close() // wakes the client pump
			}
			done <- err
		}()
		err = s.serverToClient()
	}()
	err := s.clientToServer(ctx)
	switch {
	case errors.Is(err, errRejoin):
		s.clientStopped.Store(true)
		_ = s.server.SetReadDeadline(time.Unix(1, 0))
	case errors.Is(err, errClientFinished):
		// The server sees the end of the client's stream too (Terminate
		// was forwarded; an end of stream becomes one), answers what came
		// before and closes; the server pump passes that on, then ends.
		if !s.terminating.Swap(true) {
			if cw, ok := s.server.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			} else {
				s.close()
			}
		}
		t := time.NewTimer(finishDrain)
		defer t.Stop()
		select {
		case serr := <-done:
			s.close()
			return err, serr
		case <-t.C:
			s.close()
		}
	default:
		if pe, ok := pgerr.As(err); ok && pe.Severity == "FATAL" {
			// A refusal that ends the session: the client reads why. The
			// server pump owns s.cw; one Write is never split by another.
			s.log.Warn("session refused", zap.String("sqlstate", pe.Code), zap.String("message", pe.Message))
			_ = s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = s.client.Write(encodeError(pe, nil))
			s.linger()
		}
		s.close()
	}
	return err, <-done
}

// serverPumpPanicked reports a panic in a session's server pump (a
// variable so that the fuzz tests can fail on one).
var serverPumpPanicked = func(s *Session, r any) {
	s.log.Error("session panic in the server pump", zap.Any("panic", r), zap.Stack("stack"))
}

// errRejoin stops a pump at a message boundary so that the session can
// go back to its event loop.
var errRejoin = errors.New("rejoining the event loop")

// mayRejoin reports whether the server pump, having just passed on a
// ReadyForQuery, should offer the session back to the event loop: it came
// from one, and every message the client sent has been answered (server
// pump).
func (s *Session) mayRejoin() bool {
	return s.loopable && !s.rejoin.Load() && s.settled() && s.track.idle()
}

// settled reports whether the server pump expects no further answer and
// the session is not ending.
func (s *Session) settled() bool {
	return s.reply.cur == nil && !s.reply.skipping && !s.reply.copyIn && !s.killed.Load() && !s.terminating.Load()
}

// quiet reports whether nothing is in flight, so that an event loop can
// take the session over (both pumps stopped).
func (s *Session) quiet() bool {
	t := &s.track
	return s.settled() && len(t.out) == 0 && t.idle() && len(s.cw.buf) == 0 && len(s.sw.buf) == 0
}

// pumpReader reads one of the session's connections for its pump. When
// the session is to rejoin its event loop, a read deadline in the past
// interrupts the pump's wait: between messages that stops the pump
// (errRejoin); inside a message the read simply goes on.
type pumpReader struct {
	c net.Conn
	// stop reports whether the pump is asked to stop; between whether it
	// waits for the next message.
	stop    *atomic.Bool
	between *bool
}

func (r pumpReader) Read(b []byte) (int, error) {
	for {
		n, err := r.c.Read(b)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !r.stop.Load() {
			return n, err
		}
		if *r.between {
			return n, errRejoin
		}
		_ = r.c.SetReadDeadline(time.Time{})
		if n > 0 {
			return n, nil
		}
	}
}

// quiet drops the errors every normal session end produces.
func quiet(err error) error {
	if err == nil || errors.Is(err, errSessionDone) || errors.Is(err, errClientFinished) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// fail reports err to the client when it is a proxy error, and logs it.
func (s *Session) fail(err error) {
	if pe, ok := pgerr.As(err); ok {
		s.log.Warn("session refused", zap.String("sqlstate", pe.Code), zap.String("message", pe.Message), zap.NamedError("cause", pe.Err))
		_ = s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if s.cw != nil {
			_ = s.cw.flush()
		}
		_, _ = s.client.Write(encodeError(pe, nil))
		if pe.Severity == "FATAL" {
			s.linger()
		}
		return
	}
	if errors.Is(err, errSessionDone) || errors.Is(err, io.EOF) {
		return
	}
	s.log.Warn("session ended", zap.Error(err))
}

// linger lets a FATAL error reach a client that is still sending: closed
// with unread bytes, the socket would reset, and the client lose the
// error. It ends the proxy's side and reads what still comes, for a
// second at most.
func (s *Session) linger() {
	tc, ok := s.client.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.CloseWrite()
	_ = tc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, tc, 64<<20)
}

// close closes both connections once.
func (s *Session) close() {
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if s.lc != nil {
		s.closing = true
		s.lc.release()
		return
	}
	if s.closed {
		return
	}
	s.closed = true
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.server != nil {
		_ = s.server.Close()
	}
}

// kill ends the session on shutdown: the server side is closed, and the
// server pump tells the client why at the next message boundary.
func (s *Session) kill() {
	s.killed.Store(true)
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if s.lc != nil {
		s.lc.release() // the session's goroutine closes the server side
		return
	}
	switch {
	case s.server != nil:
		_ = s.server.Close()
	case s.client != nil:
		_ = s.client.Close()
	}
}

// forward copies one frame of the given size from r to w without decoding
// it, streaming frames larger than the buffer.
func (s *Session) forward(r *frameReader, w *frameWriter, size int) error {
	if size <= r.buffered() {
		return w.write(r.take(size))
	}
	if size <= len(r.buf) {
		if err := w.flush(); err != nil {
			return err
		}
		if err := r.fill(size); err != nil {
			return err
		}
		return w.write(r.take(size))
	}
	// A frame larger than the buffer (a big CopyData or DataRow): stream it.
	// Towards the server, a re-sent statement must not land inside it.
	if w == s.sw {
		s.midFrame.Store(true)
		defer s.midFrame.Store(false)
	}
	for size > 0 {
		if r.buffered() == 0 {
			if err := w.flush(); err != nil {
				return err
			}
			if err := r.fill(1); err != nil {
				return err
			}
		}
		b := r.take(size)
		size -= len(b)
		if err := w.write(b); err != nil {
			return err
		}
	}
	return nil
}

// protocolViolation ends the session (client pump) on a message whose
// length is out of range. Postgres logs "invalid message length"
// (COMMERROR) and closes the connection without a word to the client;
// so does the proxy: answers the server pump has not passed on yet are
// dropped with the connection, as the client's garbage ends it anyway.
func (s *Session) protocolViolation(err error) {
	s.log.Warn("protocol violation from client: invalid message length", zap.Error(err))
}

// serverGone handles a failed write to the server.
func (s *Session) serverGone(err error) error {
	return fmt.Errorf("write to server: %w", err)
}

// serverClosed tells the client why the server side went away, when it went
// away at a message boundary (the only place an ErrorResponse can go).
func (s *Session) serverClosed(err error) {
	var e *pgerr.Error
	switch {
	case s.terminating.Load():
		return // the client said goodbye; the server closing is expected
	case s.killed.Load():
		e = fatal(pgerrcode.AdminShutdown, "terminating connection due to proxy shutdown", err)
	case errors.Is(err, net.ErrClosed):
		return // we closed it ourselves: the client side ended first
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, os.ErrDeadlineExceeded):
		e = fatal(pgerrcode.ConnectionFailure, "server closed the connection unexpectedly", err)
	case errors.Is(err, errMessageLength):
		e = fatal(pgerrcode.ProtocolViolation, "invalid message from server", err)
	default:
		if strings.Contains(err.Error(), "use of closed") {
			return
		}
		e = fatal(pgerrcode.ConnectionFailure, "lost connection to server", err)
	}
	e.Hint = "The proxy's connection to the database server ended; reconnect."
	s.log.Warn("server connection ended", zap.Error(err))
	_ = s.cw.flush()
	_, _ = s.client.Write(encodeError(e, nil))
}

// lockedWriter serializes writes to the server connection: the client
// pump's flushes and the server pump's rare re-sends.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
