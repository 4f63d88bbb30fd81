package broker

import "net"

// TLSConn is a connection of the AMQPS listener, served over TLS
// (tlsconf.Conn). The broker reaches TLS only through it and Config.TLS,
// and imports no TLS package, so that a program that serves no TLS does
// not link the TLS stack: in FuzzConn's binary it was a third of the
// coverage counters, which every execution of the fuzz target pays for.
type TLSConn interface {
	net.Conn
	// Handshake runs the TLS handshake, if it has not run yet.
	Handshake() error
	// VerifiedSubject is the DER subject of the client's certificate if
	// the handshake verified it against the CA bundle, else nil.
	VerifiedSubject() []byte
	// NetConn is the socket beneath TLS.
	NetConn() net.Conn
}
