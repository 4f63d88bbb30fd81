package cli

import (
	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
)

// clusterGroups is the cluster's Service as the broker's quorum queues
// use it: a broker.GroupMachine is a cluster.StateMachine.
type clusterGroups struct{ *cluster.Service }

func (g clusterGroups) AddGroupOnLoop(id uint64, peers []uint64, sm broker.GroupMachine) error {
	return g.Service.AddGroupOnLoop(id, peers, sm)
}

// The broker keeps its own copy of the metadata group's id.
var _ [0]struct{} = [broker.MetadataGroup - cluster.MetadataGroup]struct{}{}
