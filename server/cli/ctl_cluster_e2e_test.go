package cli_test

import (
	"fmt"
	"strings"
	"testing"
)

// ctl cluster status on two amqp-server processes forming a cluster on
// 127.0.0.1, and on a single node, which is in none.
func TestCtlClusterStatus(t *testing.T) {
	_, single := ctlServer(t)
	ctl(t, single, "cluster", "status").fails(t, "single node", 70, "the node is in no cluster")

	a, b := freePort(t), freePort(t)
	peers := fmt.Sprintf("amqp1=127.0.0.1:%d,amqp2=127.0.0.1:%d", a, b)
	var bases []string
	for i, port := range []int{a, b} {
		_, base := ctlServer(t, fmt.Sprintf("AMQP_CLUSTER_NODENAME=amqp%d", i+1),
			fmt.Sprintf("AMQP_CLUSTER_ADDRESS=127.0.0.1:%d", port), "AMQP_CLUSTER_PEERS="+peers)
		bases = append(bases, base)
	}
	for i, base := range bases {
		out := pollCtl(t, base, func(s string) bool {
			return strings.Contains(s, "Metadata group: leader amqp") && !strings.Contains(s, " no ")
		}, "cluster", "status")
		for _, want := range []string{fmt.Sprintf("Cluster status of node amqp%d ...", i+1), "Cluster name: amqp-go",
			fmt.Sprintf("amqp1   127.0.0.1:%d", a), fmt.Sprintf("amqp2   127.0.0.1:%d", b), "yes (this node)"} {
			if !strings.Contains(out, want) {
				t.Errorf("node %d: no %q in\n%s", i+1, want, out)
			}
		}
	}
	if out := ctl(t, bases[0], "cluster", "status", "--format", "json").ok(t, "json"); !strings.Contains(out, `"cluster_name": "amqp-go"`) {
		t.Errorf("json: %s", out)
	}
}
