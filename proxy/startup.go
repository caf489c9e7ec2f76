package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
)

// Startup-phase request codes (src/include/libpq/pqcomm.h).
const (
	codeCancelRequest = 80877102
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
)

// startup handles the startup phase: SSL/GSS negotiation, cancel requests,
// then the StartupMessage, which it relays to a fresh server connection
// together with the whole authentication exchange.
func (s *Session) startup(ctx context.Context) error {
	_ = s.client.SetReadDeadline(time.Now().Add(s.srv.cfg.StartupTimeout))
	// As in Postgres, each encryption request is answered once: a second
	// one reads as an unknown protocol version (and after TLS is on,
	// neither may come again).
	sslDone, gssDone := false, false
	for {
		pkt, err := s.cr.readStartup()
		if err != nil {
			if errors.Is(err, errMessageLength) {
				// Postgres logs this (COMMERROR) and closes without a
				// word; so does the proxy. node-postgres, for one, sends
				// a Terminate before its startup packet when a client
				// ends at once, and treats an answer to it as a crash.
				s.log.Info("invalid length of startup packet", zap.Error(err))
			}
			return errSessionDone
		}
		code := binary.BigEndian.Uint32(pkt[4:8])
		switch {
		case code == codeSSLRequest && sslDone, code == codeGSSENCRequest && gssDone:
			return unsupportedProtocol(code)
		case code == codeSSLRequest:
			if err := s.negotiateTLS(); err != nil {
				return err
			}
			sslDone = true
			_, encrypted := s.client.(*tls.Conn)
			gssDone = gssDone || encrypted
		case code == codeGSSENCRequest:
			// We never do GSS encryption; No lets libpq fall back.
			if _, err := s.client.Write([]byte{negotiateNo}); err != nil {
				return errSessionDone
			}
			gssDone = true
		case code == codeCancelRequest:
			s.srv.forwardCancel(ctx, pkt)
			return errSessionDone
		default:
			if code>>16 != 3 {
				return unsupportedProtocol(code)
			}
			// Any 3.x: the server answers a minor version it does not
			// speak with NegotiateProtocolVersion, which goes back to the
			// client like any other message.
			params, ok := startupParams(pkt[8:])
			if !ok {
				return fatal(pgerrcode.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte", nil)
			}
			if params["user"] == "" {
				return fatal(pgerrcode.InvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet", nil)
			}
			s.Params = params
			if s.Params["database"] == "" {
				s.Params["database"] = s.Params["user"]
			}
			if _, encrypted := s.client.(*tls.Conn); s.srv.cfg.ClientTLSRequired && !encrypted {
				// The server sees only the proxy's connection, so its
				// hostssl rules cannot; the proxy applies tls.client.
				return fatal(pgerrcode.InvalidAuthorizationSpecification, fmt.Sprintf(`no pg_hba.conf entry for host "%s", user "%s", database "%s", no encryption`,
					clientHost(s.ClientAddr), params["user"], s.Params["database"]), nil)
			}
			if err := s.connectServer(ctx, pkt); err != nil {
				return err
			}
			if err := s.relayAuth(); err != nil {
				return err
			}
			_ = s.client.SetReadDeadline(time.Time{})
			return nil
		}
	}
}

// startupParams reads a startup packet's parameters (after the version):
// name and value strings, each NUL-terminated, then a final NUL, as
// Postgres's ProcessStartupPacket reads them.
func startupParams(b []byte) (map[string]string, bool) {
	params := map[string]string{}
	for {
		name, rest, ok := bytes.Cut(b, []byte{0})
		if !ok {
			return nil, false
		}
		if len(name) == 0 {
			return params, len(rest) == 0
		}
		value, rest, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return nil, false
		}
		params[string(name)] = string(value)
		b = rest
	}
}

// unsupportedProtocol is Postgres's answer to a startup packet of an
// unknown protocol version.
func unsupportedProtocol(code uint32) error {
	return fatal(pgerrcode.FeatureNotSupported, fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", code>>16, code&0xffff), nil)
}

// negotiateTLS answers an SSLRequest: 'S' and a TLS handshake when a
// certificate is configured, else No.
func (s *Session) negotiateTLS() error {
	if s.cr.buffered() > 0 {
		// Bytes sent before our answer would be read as if they came over
		// TLS (CVE-2021-23222); Postgres refuses this too.
		return fatal(pgerrcode.ProtocolViolation, "received unencrypted data after SSL request", nil)
	}
	if _, ok := s.client.(*tls.Conn); ok || s.srv.cfg.ClientTLS == nil {
		_, err := s.client.Write([]byte{negotiateNo})
		if err != nil {
			return errSessionDone
		}
		return nil
	}
	if _, err := s.client.Write([]byte{negotiateYes}); err != nil {
		return errSessionDone
	}
	tc := tls.Server(s.client, s.srv.cfg.ClientTLS)
	if err := tc.Handshake(); err != nil {
		s.log.Info("client TLS handshake failed", zap.Error(err))
		return errSessionDone
	}
	s.client = tc
	s.cr = newFrameReader(tc)
	s.cw = newFrameWriter(tc)
	return nil
}

// connectServer dials the upstream, negotiates TLS to it when configured,
// and sends the client's startup packet unchanged.
func (s *Session) connectServer(ctx context.Context, startup []byte) error {
	conn, err := s.srv.dialUpstream(ctx)
	if err != nil {
		return err
	}
	s.server = conn
	s.sr = newFrameReader(conn)
	s.sw = newFrameWriter(lockedWriter{&s.wmu, conn})
	s.sw.beforeWrite = s.track.publish
	if _, err := conn.Write(startup); err != nil {
		return fatal(pgerrcode.ConnectionFailure, "could not send startup packet to server", err)
	}
	return nil
}

// relayAuth relays the authentication exchange between client and server
// until the server's first ReadyForQuery. The proxy never sees a password in
// clear unless the server asks for one in clear; it never logs it.
func (s *Session) relayAuth() error {
	_ = s.server.SetReadDeadline(time.Now().Add(s.srv.cfg.StartupTimeout))
	defer s.server.SetReadDeadline(time.Time{})
	for {
		msg, err := s.sr.next()
		if err != nil {
			return fatal(pgerrcode.ConnectionFailure, "server closed the connection during authentication", err)
		}
		switch serverMsg(msg[0]) {
		case serverAuthentication:
			if len(msg) < 9 {
				return fatal(pgerrcode.ProtocolViolation, "invalid authentication request from server", nil)
			}
			code := binary.BigEndian.Uint32(msg[5:9])
			if code == authSASL {
				msg = withoutChannelBinding(msg)
			}
			if _, err := s.client.Write(msg); err != nil {
				return errSessionDone
			}
			// AuthenticationOk and SASLFinal expect no answer; every
			// other request does.
			if code == authOK || code == authSASLFinal {
				continue
			}
			// Postgres reads an authentication answer of at most 64 KiB
			// (PG_MAX_AUTH_TOKEN_LENGTH) and closes on a longer one.
			if _, size, err := s.cr.peekHeader(); err != nil || size > maxAuthResponse {
				return errSessionDone
			}
			resp, err := s.cr.next()
			if err != nil {
				return errSessionDone
			}
			if clientMsg(resp[0]) != clientPassword {
				return fatal(pgerrcode.ProtocolViolation, fmt.Sprintf("expected password response, got message type %q", resp[0]), nil)
			}
			if _, err := s.server.Write(resp); err != nil {
				return fatal(pgerrcode.ConnectionFailure, "server closed the connection during authentication", err)
			}
		case serverBackendKeyData:
			s.backendKey = append([]byte(nil), msg[5:]...)
			s.srv.registerCancel(s)
			if _, err := s.client.Write(msg); err != nil {
				return errSessionDone
			}
		case serverErrorResponse:
			_, _ = s.client.Write(msg)
			return errSessionDone
		case serverReadyForQuery:
			if len(msg) == 6 {
				s.txStatus.Store(uint32(msg[5]))
			}
			if _, err := s.client.Write(msg); err != nil {
				return errSessionDone
			}
			return nil
		default: // ParameterStatus, NoticeResponse, NegotiateProtocolVersion
			if serverMsg(msg[0]) == serverParameterStatus {
				s.lexing.reported(msg[5:])
			}
			if _, err := s.client.Write(msg); err != nil {
				return errSessionDone
			}
		}
	}
}

// withoutChannelBinding removes SCRAM-SHA-256-PLUS from an
// AuthenticationSASL mechanism list. Channel binding ties the SCRAM exchange
// to one TLS connection; across the proxy there are two, so a client that
// picked PLUS could never authenticate.
func withoutChannelBinding(msg []byte) []byte {
	body := msg[9:]
	out := make([]byte, 0, len(msg))
	out = append(out, msg[:9]...)
	for len(body) > 0 {
		i := bytes.IndexByte(body, 0)
		if i <= 0 {
			break
		}
		mech := body[:i]
		body = body[i+1:]
		if string(mech) == "SCRAM-SHA-256-PLUS" {
			continue
		}
		out = append(out, mech...)
		out = append(out, 0)
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	return out
}
