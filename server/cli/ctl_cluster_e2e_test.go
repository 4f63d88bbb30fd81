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
	_, bases := twoNodeCluster(t, a, b)
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

// TestCtlClusterJoinLeave, through the built binary on 127.0.0.1: two
// nodes form a cluster; a third, started with cluster.join, is added by
// ctl cluster join run against the first and takes part; it leaves
// (ctl cluster leave, against itself); forget-node removes the second
// from the first; and the refusals read clearly.
func TestCtlClusterJoinLeave(t *testing.T) {
	a, b, c := freePort(t), freePort(t), freePort(t)
	peers, bases := twoNodeCluster(t, a, b)
	formed := func(s string) bool {
		return strings.Contains(s, "Metadata group: leader amqp") && !strings.Contains(s, " no ") && !strings.Contains(s, "not a member")
	}
	pollCtl(t, bases[0], formed, "cluster", "status")
	_, joiner := ctlServer(t, "AMQP_CLUSTER_NODENAME=amqp3", fmt.Sprintf("AMQP_CLUSTER_ADDRESS=127.0.0.1:%d", c),
		"AMQP_CLUSTER_PEERS="+peers, "AMQP_CLUSTER_JOIN=true")
	if out := ctl(t, joiner, "cluster", "status").ok(t, "joiner's status"); !strings.Contains(out, "This node is not a member") {
		t.Errorf("joiner before join:\n%s", out)
	}
	addr3 := fmt.Sprintf("127.0.0.1:%d", c)
	ctl(t, bases[0], "cluster", "join", "amqp3", addr3).ok(t, "join")
	for _, base := range append(bases, joiner) {
		out := pollCtl(t, base, func(s string) bool { return formed(s) && strings.Contains(s, "amqp3   "+addr3) }, "cluster", "status")
		t.Logf("%s", out)
	}
	ctl(t, bases[1], "cluster", "join", "amqp3", addr3).fails(t, "join twice", 70, "already a member")
	ctl(t, joiner, "cluster", "leave").ok(t, "leave")
	pollCtl(t, bases[0], func(s string) bool { return formed(s) && !strings.Contains(s, "amqp3") }, "cluster", "status")
	ctl(t, bases[0], "cluster", "forget-node", "nope").fails(t, "forget an unknown node", 70, "node 'nope' is not a member")
	ctl(t, bases[0], "cluster", "forget-node", "amqp2").ok(t, "forget-node")
	pollCtl(t, bases[0], func(s string) bool { return formed(s) && !strings.Contains(s, "amqp2") }, "cluster", "status")
	ctl(t, bases[0], "cluster", "forget-node", "amqp1").fails(t, "forget the last member", 70, "cannot remove the last member")
}

// twoNodeCluster starts amqp1 and amqp2 with inter-node ports a and b
// and returns cluster.peers and their API bases.
func twoNodeCluster(t *testing.T, a, b int) (peers string, bases []string) {
	t.Helper()
	peers = fmt.Sprintf("amqp1=127.0.0.1:%d,amqp2=127.0.0.1:%d", a, b)
	for i, port := range []int{a, b} {
		_, base := ctlServer(t, fmt.Sprintf("AMQP_CLUSTER_NODENAME=amqp%d", i+1),
			fmt.Sprintf("AMQP_CLUSTER_ADDRESS=127.0.0.1:%d", port), "AMQP_CLUSTER_PEERS="+peers)
		bases = append(bases, base)
	}
	return peers, bases
}
