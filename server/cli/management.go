package cli

import (
	"crypto/tls"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
)

// startManagement serves RabbitMQ's management API for srv on addr
// (management.*), over HTTPS with tlsCfg (management.tls*) if it is not
// nil: the returned Service is closed by run on the way out.
// The overview lists the AMQP listeners, the TLS one as amqp/ssl.
func startManagement(srv *broker.Server, addr string, tlsCfg *tls.Config) (*management.Service, error) {
	// Addr is the TLS listener's when the plain one is off.
	var ls []management.Listener
	tls := srv.TLSAddr()
	if tls == nil || srv.Addr().String() != tls.String() {
		ls = append(ls, management.Listener{Protocol: "amqp", Addr: srv.Addr()})
	}
	if tls != nil {
		ls = append(ls, management.Listener{Protocol: "amqp/ssl", Addr: tls})
	}
	return management.ServeTLS(addr, management.New(management.Options{Server: srv, Listeners: ls}), tlsCfg)
}
