// Package proxy is tombstone's PostgreSQL wire-protocol proxy: listener,
// per-connection Session, startup/TLS/auth relay, cancel routing, the event
// loops and the message pumps, and the bookkeeping that lets a rewritten
// statement's answers read as the client's own statement's.
//
// # Files
//
//	server.go      the listener, sessions' life cycle in the server, dialing the upstream
//	session.go     one client connection and its server connection: run, relay between
//	               the event loop and the pumps, shutdown and failure
//	startup.go     SSL/GSS negotiation, cancel requests, the startup packet, the
//	               authentication relay
//	cancel.go      CancelRequest routing by BackendKeyData
//	frame.go       framing by the 5-byte header; writer.go the coalescing writer
//	msg.go         the message types, named and typed per direction
//	loop_linux.go  the epoll event loops (loop_other.go: none elsewhere)
//	clientpump.go  client → server: each message forwarded, or intercepted (Query and
//	               Parse to planning, Bind/Describe/Execute/Close to the registry)
//	planning.go    a Query's or Parse's plan carried out: sent as is, rewritten, refused,
//	               or a console command run in its place
//	planner.go     the Planner: what a statement text becomes (Pass, Rewrite, Refuse,
//	               Console), from a Request — the text and the little of the session
//	               a plan depends on; catalogs, budgets, trial parses
//	lexing.go      how the server reads text (encoding, standard strings) and what the
//	               planner therefore refuses to read; case-blind word search
//	refusal.go     a refusal sent as a statement that fails the way Postgres would
//	registry.go    the session's prepared statements and portals that were rewritten,
//	               and taking back what a failed Parse, Close, PREPARE or DEALLOCATE
//	               registered (pure: no I/O, unit-tested in track_test.go)
//	reprepare.go   a prepared statement planned against an older catalog, prepared again
//	               ahead of its Bind
//	track.go       the queue of expected answers: one entry per client message the
//	               server answers, with its action (relay, mend, swallow)
//	serverpump.go  server → client: each answer matched to its entry and relayed,
//	               mended or swallowed; a Query re-sent after a stale catalog
//	reply.go       the repairs: command tags, hidden columns, error positions and
//	               contexts, refusals
//	pgerror.go     FATAL errors and the ErrorResponse frames of the proxy's own errors
//	               (pgerr.Error; SQLSTATEs from pgerrcode)
//	metrics.go     the Prometheus counters
//
// # A DELETE, from the socket to the shadow table
//
// A client sends Query "DELETE FROM accounts WHERE id = 7". The event loop
// (or the client pump) reads its header; clientMessage hands it to
// intercept, which asks the Planner whether it wants the text (Wants: a
// cheap scan for words that may remove rows) and then for its plan
// (planning.go, query). The planner checks that it reads the text as the
// server will (lexing), takes the database's catalog of protected tables
// (tombstone.Catalogs, loaded from the database and reloaded on its NOTIFY)
// and asks the rewrite package, through its cache, for the rewrite:
//
//	WITH _ts_d0 AS (DELETE FROM accounts WHERE id = 7 RETURNING 1 AS _ts_row),
//	     _ts_b AS (INSERT INTO tombstone.batches … WHERE EXISTS (SELECT 1 FROM _ts_d0)
//	               AND tombstone.check_catalog(…)) SELECT FROM _ts_d0
//
// with its Output: the server will answer "SELECT 1" where the client
// expects "DELETE 1", and no rows. query pushes an entry (mend, with a fix
// holding the result) onto the tracker and sends the rewritten Query.
//
// In PostgreSQL the DELETE removes the row; the INSERT writes the batch
// row (who, when, which statement), once check_catalog has confirmed that
// the proxy planned against the catalog in force (else TS001); at the end
// of the statement the table's capture trigger (tombstone/sql,
// functions_capture.sql) finds that batch and copies the deleted rows from
// the statement's transition table into the table's shadow table,
// tombstone.public__accounts. The tombstone commits or rolls back with
// the delete.
//
// The server pump (serverpump.go, serverMessage) pops the entry as the
// answers come: CommandComplete "SELECT 1" is mended to "DELETE 1" (reply.go,
// repair), ReadyForQuery completes the entry. An error is mended too: its
// position mapped back into the client's text, the store's own CONTEXT
// lines dropped. A TS001 (the catalog changed under the plan) reloads the
// catalog; for a single rewritten statement sent outside a transaction
// block it is held back and the Query planned and sent again, so the
// client never sees it (inside a block the failed statement has aborted
// the transaction, and the client gets the error).
//
// In the extended protocol the Parse is planned the same way; the registry
// remembers the statement's Output, so that the Describe, Bind and Execute
// of it, and of its portals, are mended too; a statement planned against an
// older catalog is prepared again ahead of its next Bind (reprepare.go).
//
// # An UNDELETE, back
//
// "UNDELETE BATCH 42" is a console command: the planner wants it
// (console.Is), console.Parse turns it into the call of the store's
// function (tombstone.undelete_batch(p_batch => 42, …)), and the plan is
// Console with that SQL, sent in the command's place; its errors carry no
// position into text the client never wrote. In the database the store's
// restore (functions_restore.sql) reads the batch's tombstones from the
// shadow tables, decides row by row (conflicts, rows restored already,
// parents before children) and inserts them back into the tables they
// were deleted from, in one transaction; its result rows go back to the
// client as they come.
//
// # A connection's life
//
// One client connection is one server connection; there is no pooling.
// Startup: the proxy answers SSLRequest itself (Yes and a TLS handshake
// when a certificate is configured, else No), refuses GSSENCRequest (No),
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
// with a SQLSTATE (see pgerr.Error): an unreachable upstream is 08001, a broken
// frame 08P01, a server connection lost at a message boundary 08006, a
// shutdown 57P01. A session's panic is contained to that session.
package proxy
