//go:build !linux

package proxy

import (
	"context"
	"errors"

	"go.uber.org/zap"
)

// Loops are event loops; they exist on Linux only. Elsewhere every session
// runs on goroutine pumps.
type Loops struct{}

// NewLoops reports that event loops are not available on this system.
func NewLoops(n int, log *zap.Logger) (*Loops, error) {
	return nil, errors.New("event loops need Linux (epoll)")
}

// Close does nothing.
func (ls *Loops) Close() {}

func (ls *Loops) adopt(context.Context, *Session) bool { return false }

// loopConn is never created here.
type loopConn struct{ back chan struct{} }

func (lc *loopConn) release() {}

func (s *Session) resume(*loopConn) error { return nil }
