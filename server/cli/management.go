package cli

import (
	"context"
	"crypto/tls"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/config"
	"github.com/amqp-go/amqp-go/server/management"
)

// startManagement serves RabbitMQ's management API for srv on addr
// (management.*), over HTTPS with tlsCfg (management.tls*) if it is not
// nil: the returned Service is closed by run on the way out.
// The overview lists the AMQP listeners, the TLS one as amqp/ssl. With
// cl (not nil) the API names this node and its cluster as cluster.*
// does and reports the members.
func startManagement(srv *broker.Server, addr string, tlsCfg *tls.Config, cl *cluster.Service, cc config.Cluster) (*management.Service, error) {
	// Addr is the TLS listener's when the plain one is off.
	var ls []management.Listener
	tls := srv.TLSAddr()
	if tls == nil || srv.Addr().String() != tls.String() {
		ls = append(ls, management.Listener{Protocol: "amqp", Addr: srv.Addr()})
	}
	if tls != nil {
		ls = append(ls, management.Listener{Protocol: "amqp/ssl", Addr: tls})
	}
	o := management.Options{Server: srv, Listeners: ls}
	if cl != nil {
		o.Node, o.ClusterName, o.Cluster = cc.NodeName, cc.Name, cl.Status
		o.Membership = clusterMembership{cl}
	}
	return management.ServeTLS(addr, management.New(o), tlsCfg)
}

// clusterMembership is the management API's Membership on the Service,
// with node ids derived from names as cluster.nodename's are.
type clusterMembership struct{ *cluster.Service }

func (m clusterMembership) AddMember(ctx context.Context, name, address string) error {
	return m.Service.AddMember(ctx, cluster.Peer{ID: config.NodeID(name), Name: name, Address: address})
}
