// Package proxy is tombstone's PostgreSQL wire-protocol proxy: listener,
// per-connection Session, startup/TLS/auth relay, cancel routing, the event
// loops and the message pumps.
//
// # A connection's life
//
// One client connection is one server connection; there is no pooling.
// Startup: the proxy answers SSLRequest itself ('S' and a TLS handshake when
// a certificate is configured, else 'N'), refuses GSSENCRequest ('N'),
// forwards CancelRequest packets to the upstream unchanged, and on a
// StartupMessage dials the upstream (with TLS when configured) and replays
// the client's startup packet. Authentication (trust, password, md5,
// SCRAM-SHA-256) is relayed message by message; the proxy only removes
// SCRAM-SHA-256-PLUS from the server's mechanism list, because channel
// binding cannot span the proxy's two TLS connections. The server's
// BackendKeyData goes to the client as is, so cancel requests need no
// translation and work through any proxy of a fleet.
//
// After the first ReadyForQuery two pumps run: client → server and server →
// client. Each frames messages by their 5-byte header and forwards the raw
// bytes, coalescing a burst of messages into one write and flushing only
// before it would block on a read. Frames larger than the buffers (big
// CopyData or DataRow messages) are streamed, never held whole. Nothing is
// decoded except what the proxy must look at: the transaction status in
// ReadyForQuery, and — for the statement rewriting built on top — Query and
// Parse messages and the replies to statements the proxy changed.
//
// With Loops configured (Linux), a session whose legs are plain sockets
// runs on an event loop instead, with the same per-message code
// (clientMessage, serverMessage) driven by epoll readiness: see Loops. It
// goes to the pumps for what the loop does not do — a statement for the
// planner, a frame larger than the buffer, the end of the session — and
// rejoins the loop once everything it sent is answered (relay).
//
// # Errors
//
// Whatever the proxy itself reports reaches the client as an ErrorResponse
// with a SQLSTATE (see Error): an unreachable upstream is 08001, a broken
// frame 08P01, a server connection lost at a message boundary 08006, a
// shutdown 57P01. A session's panic is contained to that session.
package proxy
