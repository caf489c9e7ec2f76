package proxy

// RaiseStatement exposes raiseStatement to the external tests, which can
// reach a server.
var RaiseStatement = raiseStatement
