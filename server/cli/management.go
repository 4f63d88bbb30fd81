package cli

import (
	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
)

// startManagement serves RabbitMQ's management API for srv on addr
// (management.*): the returned Service is closed by run on the way out.
// The overview lists the AMQP listeners, the TLS one as amqp/ssl.
func startManagement(srv *broker.Server, addr string) (*management.Service, error) {
	// Addr is the TLS listener's when the plain one is off.
	var ls []management.Listener
	tls := srv.TLSAddr()
	if tls == nil || srv.Addr().String() != tls.String() {
		ls = append(ls, management.Listener{Protocol: "amqp", Addr: srv.Addr()})
	}
	if tls != nil {
		ls = append(ls, management.Listener{Protocol: "amqp/ssl", Addr: tls})
	}
	return management.Serve(addr, management.New(management.Options{Server: srv, Listeners: ls}))
}
