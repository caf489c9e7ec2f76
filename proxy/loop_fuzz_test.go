//go:build linux

package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// socketPair returns the two ends of a connected Unix stream socket pair
// as net.Conns.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		c, err := fdConn(fd, "socketpair")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// peer plays one side of a session: it sends data, says it is done
// sending, and reads whatever comes back until the session closes.
func peer(wg *sync.WaitGroup, c net.Conn, data []byte) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = c.Write(data)
		_ = c.(*net.UnixConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	}()
}

var (
	fuzzLoopsOnce sync.Once
	fuzzLoops     *Loops
)

// FuzzLoop feeds arbitrary bytes as what the client and the server send to
// an established session on an event loop, over real sockets. Whatever the
// bytes, the session must end — without a panic, a hang or a leak — once
// both peers have sent everything and hung up.
func FuzzLoop(f *testing.F) {
	f.Add(msg('Q', "SELECT 1\x00"), append(msg('C', "SELECT 1\x00"), msg('Z', "I")...))
	f.Add(append(msg('P', "s\x00DELETE FROM sites WHERE id = $1\x00\x00\x00"), msg('S', "")...), msg('1', ""))
	f.Add(append(append(msg('P', "\x00SELECT 1\x00\x00\x00"), msg('B', "\x00\x00\x00\x00\x00\x00\x00\x00")...), append(msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")...)...),
		append(append(msg('1', ""), msg('2', "")...), append(msg('C', "SELECT 1\x00"), msg('Z', "I")...)...))
	f.Add([]byte{'Q', 0, 0, 0, 2}, []byte{'Z', 0, 0, 0, 2})
	f.Add(append(msg('d', string(make([]byte, 100_000))), msg('c', "")...), msg('D', string(make([]byte, 70_000))))
	f.Add(msg('X', ""), msg('E', "SFATAL\x00C57P01\x00Mbye\x00\x00"))
	f.Add(msg('Q', "SHOW BATCHES\x00"), []byte{})
	// An invalid length from the client while the server's bytes are
	// being passed on: the client pump's error must not touch the server
	// pump's writer (a data race, found by fuzzing under -race).
	f.Add([]byte("X\xef\x00\x00\x04"), []byte("0)Z07"))
	fuzzLoopsOnce.Do(func() {
		var err error
		if fuzzLoops, err = NewLoops(1, nil); err != nil {
			f.Fatal(err)
		}
	})
	planner := NewPlanner(fixedCatalogs{}, rewrite.NewCache(64), Policies{})
	var pumpPanic atomic.Value
	serverPumpPanicked = func(_ *Session, r any) { pumpPanic.Store(fmt.Sprint(r)) }
	f.Fuzz(func(t *testing.T, fromClient, fromServer []byte) {
		for _, p := range []Planner{nil, planner} {
			srv := NewServer(Config{Upstream: "127.0.0.1:1", Logger: zap.NewNop(), Planner: p, Loops: fuzzLoops})
			clientPeer, client := socketPair(t)
			serverPeer, server := socketPair(t)
			s := &Session{srv: srv, log: zap.NewNop(), client: client, server: server,
				cr: newFrameReader(client), cw: newFrameWriter(client), sr: newFrameReader(server),
				Params: map[string]string{"database": "db", "user": "u"}, ClientAddr: "127.0.0.1:5000"}
			s.sw = newFrameWriter(lockedWriter{&s.wmu, server})
			s.sw.beforeWrite = s.track.publish
			var wg sync.WaitGroup
			peer(&wg, clientPeer, fromClient)
			peer(&wg, serverPeer, fromServer)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.relay(context.Background())
				s.close()
			}()
			select {
			case <-done:
			case <-time.After(2 * time.Minute): // testenv.Hang (that package imports this one)
				t.Fatal("the session did not end after both peers hung up")
			}
			wg.Wait()
			if p := pumpPanic.Load(); p != nil {
				t.Fatalf("server pump panic: %v", p)
			}
		}
	})
}
