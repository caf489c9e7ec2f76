//go:build linux

package proxy

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestLoopStopHandsBackOnce: a loop stopping hands back every session it
// was asked to release — behind its stop in the queue, or meanwhile from
// another goroutine — exactly once, never from two goroutines at the same
// time (run it with -race; before the fix it found that race, or closed a
// channel twice).
func TestLoopStopHandsBackOnce(t *testing.T) {
	for range 50 {
		l, err := newEventLoop(zap.NewNop())
		require.NoError(t, err)
		lcs := make([]*loopConn, 4)
		for i := range lcs {
			// Descriptors the loop never registered.
			lcs[i] = &loopConn{s: &Session{}, l: l, cfd: 1 << 20, sfd: 1<<20 + 1, back: make(chan struct{})}
		}
		release := func() {
			for _, lc := range lcs {
				l.request(loopCmd{lc: lc})
			}
		}
		l.request(loopCmd{stop: true})
		release() // queued behind the stop
		var wg sync.WaitGroup
		var stopped atomic.Bool
		spinning := make(chan struct{})
		wg.Add(1)
		go func() { // releases them again and again while the loop stops
			defer wg.Done()
			close(spinning)
			for !stopped.Load() {
				release()
			}
			release()
		}()
		<-spinning
		require.True(t, l.commands(), "the stop ends the loop")
		stopped.Store(true)
		wg.Wait()
		release() // stopped: handed back by the caller, already done
		for _, lc := range lcs {
			select {
			case <-lc.back:
			default:
				t.Fatal("a released session was not handed back")
			}
		}
		_ = syscall.Close(l.ep)
		_ = syscall.Close(l.wake)
	}
}
