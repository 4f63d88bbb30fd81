package cli_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
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

// ctl add-member, delete-member, grow and shrink (rabbitmq-queues') on two
// processes: a quorum queue of group size 1 declared on the first gets
// the second, loses the first to shrink, keeps its last member, and the
// refusals read clearly.
func TestCtlQuorumMembers(t *testing.T) {
	a, b := freePort(t), freePort(t)
	_, bases := twoNodeCluster(t, a, b)
	pollCtl(t, bases[0], func(s string) bool {
		return strings.Contains(s, "Metadata group: leader amqp") && !strings.Contains(s, " no ")
	}, "cluster", "status")
	addr := strings.TrimPrefix(bases[0], "http://")
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, body := managementCall(t, addr, "PUT", "/queues/%2F/qq",
			`{"durable": true, "arguments": {"x-queue-type": "quorum", "x-quorum-initial-group-size": 1}}`)
		if st/100 == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("declare qq: %d %s", st, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	members := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, body := managementCall(t, addr, "GET", "/queues/%2F/qq", "")
			var q struct{ Members []string }
			if json.Unmarshal(body, &q) == nil && strings.Join(slices.Sorted(slices.Values(q.Members)), ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("qq's members: %s, want %s", body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	members("amqp1")
	if out := ctl(t, bases[1], "add-member", "qq", "amqp2").ok(t, "add-member"); !strings.Contains(out, "Adding a member for queue qq on node amqp2 ...\nDone.") {
		t.Errorf("add-member:\n%s", out)
	}
	members("amqp1,amqp2")
	ctl(t, bases[0], "add-member", "nope", "amqp2").fails(t, "add-member of an unknown queue", 70, "queue 'nope' in vhost '/' not found")
	ctl(t, bases[0], "add-member", "qq", "amqp9").fails(t, "add-member of an unknown node", 70, "node 'amqp9' is not a running member")
	ctl(t, bases[0], "grow", "amqp9", "all").fails(t, "grow on an unknown node", 70, "node 'amqp9' is not a running member")
	ctl(t, bases[0], "grow", "amqp2", "odd").fails(t, "grow with an unknown strategy", 64, "strategy 'odd' is not recognised")
	if out := ctl(t, bases[0], "grow", "amqp2", "all").ok(t, "grow, nothing to do"); strings.Contains(out, "qq") {
		t.Errorf("grow where qq has amqp2 already:\n%s", out)
	}
	out := ctl(t, bases[1], "shrink", "amqp1").ok(t, "shrink")
	if !strings.Contains(out, "Shrinking quorum queues on amqp1 ...") || !regexp.MustCompile(`/\s+qq\s+1\s+ok`).MatchString(out) {
		t.Errorf("shrink amqp1:\n%s", out)
	}
	members("amqp2")
	out = ctl(t, bases[0], "shrink", "--errors-only", "amqp2").ok(t, "shrink of the last member")
	if !strings.Contains(out, "error: the last member of queue 'qq' in vhost '/' cannot be removed") {
		t.Errorf("shrink amqp2:\n%s", out)
	}
	ctl(t, bases[0], "delete-member", "qq", "amqp2").fails(t, "delete the last member", 70, "cannot be removed")
	if out := ctl(t, bases[0], "delete-member", "qq", "amqp1").ok(t, "delete a non-member"); !strings.Contains(out, "Done.") {
		t.Errorf("delete-member of a non-member:\n%s", out)
	}
	members("amqp2")
}
