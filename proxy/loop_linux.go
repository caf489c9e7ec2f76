//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// Loops are event loops that carry sessions' ordinary traffic, the way
// PgBouncer does: one OS thread per loop waits in epoll_wait on the sockets
// of many sessions and, when some are readable, reads, frames and writes
// their bytes with plain non-blocking system calls.
//
// The goroutine pumps cost a read that finds nothing after every burst
// (Go's netpoller reads before it waits), and a thread wake-up per
// goroutine that becomes runnable; for the small messages of an OLTP
// workload that is most of the proxy's CPU. A loop waits first and reads
// only what is there, for all its sessions in one wait.
//
// A session joins a loop after authentication when both of its connections
// are plain sockets (no TLS). The loop handles every message that passes
// through or is only tracked; whatever needs more — a statement for the
// planner, a frame larger than the buffer, Terminate, an error or the end
// of a connection, shutdown — hands the session back to its goroutine
// pumps for good, with its buffers and its place in the protocol, before
// that message is touched.
//
// The loop blocks in epoll_wait without telling the Go scheduler (a raw
// system call), so its thread keeps its P: NewLoops adds one to GOMAXPROCS
// per loop. The runtime's preemption signals (a stop of the world, a stack
// scan, sysmon every 10 ms) interrupt the wait, and the loop yields.
type Loops struct {
	log    *zap.Logger
	loops  []*eventLoop
	mu     sync.Mutex
	next   int
	closed bool
}

// NewLoops starts n event loops; log (nil: none) hears of their own
// failures.
func NewLoops(n int, log *zap.Logger) (*Loops, error) {
	if n <= 0 {
		return nil, fmt.Errorf("event loops: need at least one, got %d", n)
	}
	if log == nil {
		log = zap.NewNop()
	}
	ls := &Loops{log: log}
	for range n {
		l, err := newEventLoop(log)
		if err != nil {
			ls.Close()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + n)
	for _, l := range ls.loops {
		l.started = true
		go l.run()
	}
	return ls, nil
}

// Close stops the loops; sessions still in them, and sessions that ask to
// join later, stay on goroutine pumps.
func (ls *Loops) Close() {
	if ls == nil {
		return
	}
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		return
	}
	ls.closed = true
	ls.mu.Unlock()
	started := 0
	for _, l := range ls.loops {
		if l.started {
			started++
			l.request(loopCmd{stop: true})
			<-l.done
		}
		l.mu.Lock()
		l.stopped = true
		_ = syscall.Close(l.ep)
		_ = syscall.Close(l.wake)
		l.mu.Unlock()
	}
	if started > 0 {
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-started))
	}
}

// adopt moves the session's connections into a loop. false: they stay with
// the goroutine pumps (TLS, a socket the proxy cannot take over).
func (ls *Loops) adopt(ctx context.Context, s *Session) bool {
	if ls == nil {
		return false
	}
	ls.mu.Lock()
	closed := ls.closed
	ls.mu.Unlock()
	if closed {
		return false
	}
	cfd, err := takeFD(s.client)
	if err != nil {
		return false
	}
	sfd, err := takeFD(s.server)
	if err != nil {
		_ = syscall.Close(cfd)
		return false
	}
	s.loopable = true
	ls.mu.Lock()
	l := ls.loops[ls.next%len(ls.loops)]
	ls.next++
	ls.mu.Unlock()
	lc := &loopConn{s: s, l: l, ctx: ctx, cfd: cfd, sfd: sfd,
		cw: &fdWriter{fd: cfd}, sw: &fdWriter{fd: sfd}, back: make(chan struct{})}
	s.modeMu.Lock()
	if s.closed || s.killed.Load() {
		// Closed or killed (shutdown) while the descriptors were taken.
		s.modeMu.Unlock()
		_ = syscall.Close(cfd)
		_ = syscall.Close(sfd)
		return false
	}
	// The sockets now live in cfd and sfd only: closing the net.Conns
	// takes them out of Go's netpoller, which would otherwise wake a
	// thread for every event the loop handles.
	_ = s.client.Close()
	_ = s.server.Close()
	s.client, s.server = nil, nil
	s.cr.r, s.sr.r = fdReader{cfd}, fdReader{sfd}
	// No lock on the server's writer: on the loop its thread is the only
	// writer (the server pump's re-sends answer planned statements, which
	// the pumps carry).
	s.cw.w, s.sw.w = lc.cw, lc.sw
	s.lc = lc
	s.modeMu.Unlock()
	l.request(loopCmd{lc: lc, add: true})
	return true
}

// takeFD returns a close-on-exec duplicate of a plain socket's descriptor.
func takeFD(c any) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a plain socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			dupErr = e
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, dupErr
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// loopCmd is a request to a loop from another goroutine.
type loopCmd struct {
	lc   *loopConn
	add  bool // take lc in; otherwise hand it back
	stop bool
}

// eventLoop is one loop thread and the sessions it carries.
type eventLoop struct {
	log      *zap.Logger
	ep, wake int // epoll and eventfd descriptors
	started  bool
	done     chan struct{}

	mu    sync.Mutex
	queue []loopCmd
	// stopped: the loop thread has ended; requests are answered by the
	// caller (a session to add or release is handed back at once).
	stopped bool

	// loop thread only
	// byFD finds a session by either of its descriptors.
	byFD []*loopConn
	// cur is the session being served, for the panic handler.
	cur *loopConn
	evs []syscall.EpollEvent
}

func newEventLoop(log *zap.Logger) (*eventLoop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	r, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		_ = syscall.Close(ep)
		return nil, fmt.Errorf("event loop: eventfd: %w", e)
	}
	l := &eventLoop{log: log, ep: ep, wake: int(r), done: make(chan struct{}),
		evs: make([]syscall.EpollEvent, 256)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wake)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, l.wake, &ev); err != nil {
		_ = syscall.Close(ep)
		_ = syscall.Close(l.wake)
		return nil, fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	return l, nil
}

// request queues a command for the loop and wakes it.
func (l *eventLoop) request(c loopCmd) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		if c.lc != nil {
			c.lc.handBack() // no loop thread any more: this is the only hand
		}
		return
	}
	l.queue = append(l.queue, c)
	one := uint64(1)
	_, _, _ = syscall.Syscall(syscall.SYS_WRITE, uintptr(l.wake), uintptr(unsafe.Pointer(&one)), 8)
}

// run is the loop thread.
func (l *eventLoop) run() {
	// Not locked to its thread: when it yields (below), the goroutine
	// goes on any thread, without the hand-off a locked one needs.
	defer close(l.done)
	yielded := time.Now()
	for {
		// A raw system call: the scheduler is not told, so no other
		// thread is woken to take over this one's P while it waits.
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep),
			uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 100, 0, 0)
		if e == 0 && n > 0 && l.dispatch(l.evs[:n]) {
			return
		}
		// Neither the raw call nor this loop between two of them can be
		// preempted, so it yields: on EINTR, most likely the runtime's
		// preemption signal (a stop of the world, a stack scan); after
		// 100 ms without events, so that a runtime without preemption
		// signals (GODEBUG=asyncpreemptoff=1) waits at most that long to
		// stop the world; and, busy, every loopYieldEvery, before the
		// runtime's monitor finds it running for 10 ms and sends it a
		// preemption signal, which costs more (it interrupts the wait,
		// and the yield follows anyway).
		if e != 0 || n == 0 || time.Since(yielded) >= loopYieldEvery {
			runtime.Gosched()
			yielded = time.Now()
		}
	}
}

// loopYieldEvery is how often a busy event loop yields of its own accord:
// under the runtime's 10 ms preemption threshold.
const loopYieldEvery = 5 * time.Millisecond

// dispatch serves one batch of events; true means stop. A panic (a bug)
// while serving a session ends that session, as it would on goroutine
// pumps, and not the loop; the rest of the batch comes again from epoll.
func (l *eventLoop) dispatch(evs []syscall.EpollEvent) (stop bool) {
	defer func() {
		if r := recover(); r != nil {
			lc := l.cur
			l.cur = nil
			if lc == nil {
				l.log.Error("event loop panic", zap.Any("panic", r), zap.Stack("stack"))
				return
			}
			lc.s.log.Error("session panic in event loop", zap.Any("panic", r), zap.Stack("stack"))
			lc.s.modeMu.Lock()
			lc.s.closing = true
			lc.s.modeMu.Unlock()
			lc.handBack()
		}
	}()
	for i := range evs {
		ev := &evs[i]
		fd := int(ev.Fd)
		if fd == l.wake {
			if l.commands() {
				return true
			}
			continue
		}
		if fd >= len(l.byFD) || l.byFD[fd] == nil || l.byFD[fd].gone {
			continue
		}
		l.cur = l.byFD[fd]
		l.cur.event(fd, ev.Events)
		l.cur = nil
	}
	return false
}

// commands runs the queued requests; true means stop.
func (l *eventLoop) commands() bool {
	var b [8]byte
	_, _, _ = syscall.RawSyscall(syscall.SYS_READ, uintptr(l.wake), uintptr(unsafe.Pointer(&b[0])), 8)
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, c := range q {
		switch {
		case c.stop:
			// Every session is handed back, with whatever is queued
			// behind the stop; what comes later, request hands back
			// itself once stopped is set. All under l.mu, so that a
			// session is never handed back by two goroutines at once.
			l.mu.Lock()
			defer l.mu.Unlock()
			l.stopped = true
			for _, lc := range l.byFD {
				if lc != nil {
					lc.handBack()
				}
			}
			for _, c := range append(q, l.queue...) {
				if c.lc != nil {
					c.lc.handBack()
				}
			}
			l.queue = nil
			return true
		case c.add:
			l.cur = c.lc
			l.add(c.lc)
			l.cur = nil
		default:
			c.lc.handBack()
		}
	}
	return false
}

// add takes a session in and passes on what its buffers already hold.
func (l *eventLoop) add(lc *loopConn) {
	if lc.gone {
		// Released (kill, close) before it was added: the session's
		// goroutine owns it again.
		return
	}
	lc.s.track.direct = true
	for _, fd := range []int{lc.cfd, lc.sfd} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			lc.handBack()
			return
		}
		if fd >= len(l.byFD) {
			l.byFD = append(l.byFD, make([]*loopConn, fd+1-len(l.byFD))...)
		}
		l.byFD[fd] = lc
	}
	lc.cmask, lc.smask = syscall.EPOLLIN, syscall.EPOLLIN
	lc.clientFrames()
	if !lc.gone {
		lc.serverFrames()
	}
}

// loopConn is a session while a loop carries it. Only the loop thread
// touches it (and the session) until back is closed.
type loopConn struct {
	s        *Session
	l        *eventLoop
	ctx      context.Context
	cfd, sfd int
	cw, sw   *fdWriter // under s.cw and s.sw
	// cmask and smask are the events asked for now on each socket.
	cmask, smask uint32
	gone         bool
	back         chan struct{} // closed when the session is handed back
}

// event handles readiness of one of the session's sockets.
func (lc *loopConn) event(fd int, ev uint32) {
	if ev&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
		// The goroutine pumps read what is left and report the end.
		lc.handBack()
		return
	}
	client := fd == lc.cfd
	if ev&syscall.EPOLLOUT != 0 {
		w := lc.sw
		if client {
			w = lc.cw
		}
		if err := w.drain(); err != nil {
			lc.handBack()
			return
		}
	}
	if ev&syscall.EPOLLIN != 0 {
		r := lc.s.sr
		if client {
			r = lc.s.cr
		}
		if err := r.readSome(); err != nil && !errors.Is(err, errWouldBlock) {
			lc.handBack()
			return
		}
		if client {
			lc.clientFrames()
		} else {
			lc.serverFrames()
		}
		return
	}
	lc.interest()
}

// clientFrames passes on every whole client frame in the buffer; a
// statement for the planner or a Terminate goes to the pumps.
func (lc *loopConn) clientFrames() {
	s := lc.s
	lc.frames(s.cr, s.sw, func(typ byte, size int) bool {
		return clientMsg(typ) != clientTerminate && s.clientMessage(lc.ctx, clientMsg(typ), size, false) == nil
	})
}

// serverFrames passes on every whole server frame in the buffer.
func (lc *loopConn) serverFrames() {
	lc.frames(lc.s.sr, lc.s.cw, func(typ byte, size int) bool {
		return lc.s.serverMessage(serverMsg(typ), size) == nil
	})
}

// frames hands every whole frame buffered in r to pass, then writes what
// they queued on w. A frame larger than the buffer (streamed by the pumps)
// or one pass refuses hands the session back before it is touched.
func (lc *loopConn) frames(r *frameReader, w *frameWriter, pass func(typ byte, size int) bool) {
	for r.hasHeader() {
		typ, size, err := r.peekHeader()
		if err != nil || size > len(r.buf) {
			lc.handBack()
			return
		}
		if size > r.buffered() {
			break
		}
		if !pass(typ, size) {
			lc.handBack()
			return
		}
	}
	if err := w.flush(); err != nil {
		lc.handBack()
		return
	}
	lc.interest()
}

// interest asks epoll for what each socket waits for: reading stops while
// the other side has bytes it could not take yet; writing is watched while
// there are such bytes.
func (lc *loopConn) interest() {
	cmask, smask := uint32(0), uint32(0)
	if len(lc.sw.pending) == 0 {
		cmask |= syscall.EPOLLIN
	} else {
		smask |= syscall.EPOLLOUT
	}
	if len(lc.cw.pending) == 0 {
		smask |= syscall.EPOLLIN
	} else {
		cmask |= syscall.EPOLLOUT
	}
	if cmask != lc.cmask && !lc.modify(lc.cfd, cmask) || smask != lc.smask && !lc.modify(lc.sfd, smask) {
		lc.handBack()
		return
	}
	lc.cmask, lc.smask = cmask, smask
}

func (lc *loopConn) modify(fd int, mask uint32) bool {
	ev := syscall.EpollEvent{Events: mask, Fd: int32(fd)}
	return syscall.EpollCtl(lc.l.ep, syscall.EPOLL_CTL_MOD, fd, &ev) == nil
}

// handBack gives the session back to its goroutine, which turns the
// sockets into net.Conns again and runs the pumps from where the loop
// stopped.
func (lc *loopConn) handBack() {
	if lc.gone {
		return
	}
	lc.gone = true
	lc.s.track.direct = false
	for _, fd := range []int{lc.cfd, lc.sfd} {
		if fd < len(lc.l.byFD) && lc.l.byFD[fd] == lc {
			_ = syscall.EpollCtl(lc.l.ep, syscall.EPOLL_CTL_DEL, fd, nil)
			lc.l.byFD[fd] = nil
		}
	}
	close(lc.back)
}

// release asks the loop to hand the session back (any goroutine).
func (lc *loopConn) release() { lc.l.request(loopCmd{lc: lc}) }

// resume turns a handed-back session's sockets into net.Conns and sends
// what the loop could not write yet (session goroutine, after back).
func (s *Session) resume(lc *loopConn) error {
	client, cerr := fdConn(lc.cfd, "client")
	server, serr := fdConn(lc.sfd, "server")
	if cerr != nil || serr != nil {
		for _, c := range []io.Closer{client, server} {
			if c != nil {
				_ = c.Close()
			}
		}
		s.modeMu.Lock()
		s.lc = nil
		s.modeMu.Unlock()
		return fmt.Errorf("leaving the event loop: %w", errors.Join(cerr, serr))
	}
	// What the loop could not write yet goes out first, by the pumps: a
	// blocking write here could wait for ever on a server that is itself
	// blocked writing to us, with no pump reading it.
	if len(lc.cw.pending) > 0 && lc.cw.err == nil {
		s.cw.buf = append(lc.cw.pending, s.cw.buf...)
	}
	if len(lc.sw.pending) > 0 && lc.sw.err == nil {
		s.sw.buf = append(lc.sw.pending, s.sw.buf...)
	}
	s.modeMu.Lock()
	s.client, s.server, s.lc = client, server, nil
	s.cr.r = pumpReader{c: client, stop: &s.rejoin, between: &s.clientBetween}
	s.sr.r = pumpReader{c: server, stop: &s.clientStopped, between: &s.serverBetween}
	s.cw.w, s.sw.w = client, lockedWriter{&s.wmu, server}
	closing := s.closing
	s.modeMu.Unlock()
	if s.killed.Load() {
		_ = server.Close()
	}
	if closing {
		s.close()
	}
	return nil
}

// fdReader reads a non-blocking socket; errWouldBlock when it has nothing.
type fdReader struct{ fd int }

func (r fdReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		// recvfrom rather than read: the socket call skips the VFS layer.
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return 0, errWouldBlock
		case e != 0:
			return 0, e
		case n == 0:
			return 0, io.EOF
		}
		return int(n), nil
	}
}

// fdWriter writes a non-blocking socket. What the socket does not take at
// once is kept (pending) and written when it can take more; meanwhile the
// loop stops reading the side these bytes come from, which bounds pending.
type fdWriter struct {
	fd      int
	pending []byte
	err     error
}

func (w *fdWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(b)
	if len(w.pending) == 0 {
		m, err := send(w.fd, b)
		if err != nil {
			w.err = err
			return 0, err
		}
		b = b[m:]
	}
	w.pending = append(w.pending, b...)
	return n, nil
}

// drain writes what is pending.
func (w *fdWriter) drain() error {
	if w.err != nil {
		return w.err
	}
	m, err := send(w.fd, w.pending)
	if err != nil {
		w.err = err
		return err
	}
	w.pending = w.pending[:copy(w.pending, w.pending[m:])]
	if len(w.pending) == 0 && cap(w.pending) > 4*bufSize {
		w.pending = nil
	}
	return nil
}

// send writes what the socket takes now (MSG_NOSIGNAL: a closed peer is an
// EPIPE error, not a signal).
func send(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		default:
			return 0, e
		}
	}
}

// fdConn turns a socket descriptor back into a net.Conn (on Go's
// netpoller), closing fd.
func fdConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return net.FileConn(f)
}
