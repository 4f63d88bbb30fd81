package cli

import (
	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
)

// startManagement serves RabbitMQ's management API for srv on addr
// (management.*): the returned Service is closed by run on the way out.
func startManagement(srv *broker.Server, addr string) (*management.Service, error) {
	h := management.New(management.Options{Server: srv,
		Listeners: []management.Listener{{Protocol: "amqp", Addr: srv.Addr()}}})
	return management.Serve(addr, h)
}
