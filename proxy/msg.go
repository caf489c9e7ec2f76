package proxy

// The protocol's message types, named and typed by direction (PostgreSQL's
// protocol.h and pgproto3 name the same bytes): a client's message and a
// server's are different types, so that a test mixing the two — a Parse
// answered by a ParseComplete — reads as such, and comparing a client's
// type with a server's does not compile. Only the types the proxy looks at
// are here; every other message passes through by its length.

// clientMsg is the type byte of a message a client sends after startup.
type clientMsg byte

const (
	clientQuery        clientMsg = 'Q'
	clientParse        clientMsg = 'P'
	clientBind         clientMsg = 'B'
	clientDescribe     clientMsg = 'D'
	clientExecute      clientMsg = 'E'
	clientClose        clientMsg = 'C'
	clientSync         clientMsg = 'S'
	clientFunctionCall clientMsg = 'F'
	clientCopyDone     clientMsg = 'c'
	clientCopyFail     clientMsg = 'f'
	clientTerminate    clientMsg = 'X'
	// clientPassword is every authentication answer: PasswordMessage,
	// SASLInitialResponse, SASLResponse, GSSResponse.
	clientPassword clientMsg = 'p'
)

// serverMsg is the type byte of a message a server sends.
type serverMsg byte

const (
	serverAuthentication     serverMsg = 'R'
	serverBackendKeyData     serverMsg = 'K'
	serverParameterStatus    serverMsg = 'S'
	serverReadyForQuery      serverMsg = 'Z'
	serverErrorResponse      serverMsg = 'E'
	serverNoticeResponse     serverMsg = 'N'
	serverNotification       serverMsg = 'A'
	serverCommandComplete    serverMsg = 'C'
	serverEmptyQueryResponse serverMsg = 'I'
	serverPortalSuspended    serverMsg = 's'
	serverRowDescription     serverMsg = 'T'
	serverDataRow            serverMsg = 'D'
	serverNoData             serverMsg = 'n'
	serverParseComplete      serverMsg = '1'
	serverBindComplete       serverMsg = '2'
	serverCloseComplete      serverMsg = '3'
	serverCopyInResponse     serverMsg = 'G'
)

// The Authentication requests the proxy tells apart (the code after the
// message's length).
const (
	authOK        uint32 = 0
	authSASL      uint32 = 10
	authSASLFinal uint32 = 12
)

// What a Describe or Close names: a prepared statement or a portal.
const (
	targetStatement byte = 'S'
	targetPortal    byte = 'P'
)

// A ReadyForQuery's transaction status (Session.TxStatus).
const (
	TxIdle    byte = 'I' // not in a transaction block
	TxInBlock byte = 'T' // in a transaction block
	TxFailed  byte = 'E' // in a failed transaction block
)

// Answers to an SSLRequest or GSSENCRequest: go ahead, or not.
const (
	negotiateYes byte = 'S'
	negotiateNo  byte = 'N'
)
