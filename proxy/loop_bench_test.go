//go:build linux

package proxy

import (
	"context"
	"io"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// BenchmarkLoopPassThrough measures the event loop's own work for one
// pgbench select-only transaction in prepared mode (Bind, Describe,
// Execute, Sync; BindComplete, RowDescription, DataRow, CommandComplete,
// ReadyForQuery), system calls left out: what the proxy adds per
// transaction to a bare forwarder's recv and send. "rewritten" is a
// session that has prepared a rewritten statement before, so that every
// Bind, Describe and Execute is looked up.
func BenchmarkLoopPassThrough(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchLoopPassThrough(b, false) })
	b.Run("rewritten", func(b *testing.B) { benchLoopPassThrough(b, true) })
}

func benchLoopPassThrough(b *testing.B, rewritten bool) {
	planner := NewPlanner(fixedCatalogs{}, rewrite.NewCache(64), Policies{})
	srv := NewServer(Config{Upstream: "127.0.0.1:1", Logger: zap.NewNop(), Planner: planner})
	s := &Session{srv: srv, log: zap.NewNop(),
		cr: newFrameReader(nil), sr: newFrameReader(nil),
		cw: newFrameWriter(io.Discard), sw: newFrameWriter(io.Discard)}
	s.sw.beforeWrite = s.track.publish
	s.prepared.rewritten.Store(rewritten)
	s.track.direct = true
	lc := &loopConn{s: s, ctx: context.Background(), cw: &fdWriter{fd: -1}, sw: &fdWriter{fd: -1},
		cmask: syscall.EPOLLIN, smask: syscall.EPOLLIN, back: make(chan struct{})}
	s.lc = lc
	var fromClient, fromServer []byte
	for _, m := range [][]byte{
		msg('B', "\x00P0_1\x00\x00\x00\x00\x01\x00\x00\x00\x0512345\x00\x00"),
		msg('D', "P\x00"),
		msg('E', "\x00\x00\x00\x00\x00"),
		msg('S', ""),
	} {
		fromClient = append(fromClient, m...)
	}
	for _, m := range [][]byte{
		msg('2', ""),
		msg('T', "\x00\x01abalance\x00\x00\x00\x40\x06\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"),
		msg('D', "\x00\x01\x00\x00\x00\x010"),
		msg('C', "SELECT 1\x00"),
		msg('Z', "I"),
	} {
		fromServer = append(fromServer, m...)
	}
	feed := func(r *frameReader, data []byte) {
		r.start, r.end = 0, copy(r.buf, data)
	}
	b.ReportAllocs()
	for b.Loop() {
		feed(s.cr, fromClient)
		lc.clientFrames()
		feed(s.sr, fromServer)
		lc.serverFrames()
		if lc.gone {
			b.Fatal("the session left the loop")
		}
	}
}
