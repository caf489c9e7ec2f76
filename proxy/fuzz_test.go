package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// discardConn is a net.Conn that reads from a fixed input and discards
// writes.
type discardConn struct{ r io.Reader }

func (c discardConn) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// FuzzClientMessages feeds arbitrary bytes to the client → server pump of an
// established session. Whatever the bytes, it must end without panicking.
func FuzzClientMessages(f *testing.F) {
	f.Add(msg('Q', "SELECT 1\x00"))
	f.Add(append(msg('P', "s\x00DELETE FROM t\x00\x00\x00"), msg('S', "")...))
	f.Add([]byte{'Q', 0, 0, 0, 2})
	f.Add([]byte{'d', 0x7f, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Add(append(msg('d', string(make([]byte, 100_000))), msg('c', "")...))
	f.Add(msg('X', ""))
	f.Add(msg('Q', "DELETE FROM sites WHERE id = 1 RETURNING *\x00"))
	f.Add(msg('Q', "SHOW BATCHES LIMIT 3\x00"))
	f.Add(msg('Q', "DELETE FROM sites WHERE CURRENT OF c\x00"))
	f.Add(append(append(msg('P', "s\x00DELETE FROM sites WHERE id = $1\x00\x00\x00"), msg('B', "p\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00")...), msg('E', "p\x00\x00\x00\x00\x00")...))
	planner := NewPlanner(fixedCatalogs{}, rewrite.NewCache(64), Policies{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range []Planner{nil, planner} {
			srv := NewServer(Config{Upstream: "127.0.0.1:1", Logger: zap.NewNop(), Planner: p})
			client := discardConn{bytes.NewReader(data)}
			s := &Session{srv: srv, log: zap.NewNop(), client: client, server: discardConn{bytes.NewReader(nil)},
				cr: newFrameReader(client), cw: newFrameWriter(io.Discard), sw: newFrameWriter(io.Discard),
				Params: map[string]string{"database": "db"}, ClientAddr: "127.0.0.1:5000"}
			_ = s.clientToServer(context.Background())
		}
	})
}

// FuzzStartup feeds arbitrary bytes to the startup phase (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage) with an upstream that
// refuses connections. It must end without panicking.
func FuzzStartup(f *testing.F) {
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f})                                   // SSLRequest
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x30})                                   // GSSENCRequest
	f.Add([]byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})          // CancelRequest
	f.Add(append([]byte{0, 0, 0, 23, 0, 3, 0, 0}, "user\x00bob\x00\x00\x00\x00"...)) // StartupMessage
	f.Add([]byte{0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := NewServer(Config{Upstream: "127.0.0.1:1", Logger: zap.NewNop(), ConnectTimeout: 50 * time.Millisecond})
		client := discardConn{bytes.NewReader(data)}
		s := &Session{srv: srv, log: zap.NewNop(), client: client, cr: newFrameReader(client), cw: newFrameWriter(io.Discard)}
		err := s.startup(context.Background())
		if err != nil {
			s.fail(err)
		}
	})
}

// FuzzAuthSASL checks the SCRAM-SHA-256-PLUS filter on arbitrary
// AuthenticationSASL bodies: the result is a well-formed frame without PLUS.
func FuzzAuthSASL(f *testing.F) {
	f.Add([]byte("SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"))
	f.Add([]byte("\x00"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := msg('R', "\x00\x00\x00\x0a"+string(body))
		out := withoutChannelBinding(m)
		if int(binary.BigEndian.Uint32(out[1:5])) != len(out)-1 {
			t.Fatalf("bad frame length in %q", out)
		}
		// Mechanism names are NUL-terminated; "0SCRAM-SHA-256-PLUS" is
		// another mechanism, not PLUS.
		for _, mech := range bytes.Split(out[9:], []byte{0}) {
			if string(mech) == "SCRAM-SHA-256-PLUS" {
				t.Fatalf("PLUS survived in %q", out)
			}
		}
	})
}

// fixedCatalogs serves one protected table, sites(id, tenant_id, name),
// with a cascading child, for every database.
type fixedCatalogs struct{}

type fixedCatalog struct{ sites *rewrite.Table }

func (c fixedCatalog) Lookup(schema, name string) (*rewrite.Table, bool) {
	if (schema == "" || schema == "public") && name == "sites" {
		return c.sites, true
	}
	return nil, false
}

func (fixedCatalog) Generation() uint64 { return 1 }

func (fixedCatalogs) Catalog(context.Context, string) (rewrite.GenerationalCatalog, error) {
	products := &rewrite.Table{OID: 2, Schema: "public", Name: "products", Shadow: "public__products", Retention: time.Hour, Signature: "p",
		Columns: []rewrite.Column{{Name: "id", Type: "bigint"}, {Name: "site_id", Type: "bigint"}}}
	sites := &rewrite.Table{OID: 1, Schema: "public", Name: "sites", Shadow: "public__sites", Retention: time.Hour, Signature: "s",
		Columns: []rewrite.Column{{Name: "id", Type: "bigint"}, {Name: "tenant_id", Type: "integer"}, {Name: "name", Type: "text"}},
		Referencing: []rewrite.ForeignKey{{Name: "fk", Child: products, ChildSchema: "public", ChildName: "products",
			ChildColumns: []string{"site_id"}, ParentColumns: []string{"id"}, OnDelete: rewrite.Cascade}}}
	return fixedCatalog{sites}, nil
}
