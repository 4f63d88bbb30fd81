package netnstest_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// A disk alarm that a user causes on one of three amqp-server processes
// (server.diskfreelimit above the disk's free space, given at a restart)
// blocks a publisher on another with RabbitMQ's "low on disk" and holds
// its publishes; that process killed with SIGKILL, the publisher is
// unblocked within a few seconds and confirmed; restarted without the
// limit, it blocks no one.
func TestClusterAlarmAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	waitAgree(t, nodes, 15*time.Second, "formation")
	pubNode, alarmed := nodes[0], nodes[1]
	p := servertest.NewBlockedPublisher(t, pubNode.amqpURL(n, "guest", "guest", "/"), pubNode.name)
	servertest.Confirmed(t, p.Publish(t), 10*time.Second, "a publish before the alarm")

	env := slices.Clone(alarmed.env)
	alarmed.stop(t)
	alarmed.env = append(alarmed.env, "AMQP_SERVER_DISKFREELIMIT=1000000000000000000") // 1 EB
	alarmed.start(t, n)
	took := p.Expect(t, true, "low on disk", 20*time.Second)
	t.Logf("%s's publisher blocked %v after %s's restart with a disk limit above its free space", pubNode.name, took, alarmed.name)
	held := p.Publish(t)
	p.Held(t, held, "during "+alarmed.name+"'s alarm")
	if a := apiNodeAlarms(t, pubNode)[alarmed.name]; a != "disk" {
		t.Fatalf("/api/nodes on %s: %s's alarm %q, want disk", pubNode.name, alarmed.name, a)
	}
	if !pubNode.logs.Contains(`cluster: resource alarm on another member: blocking publishers" members="amqp2 (low on disk)"`) {
		t.Errorf("%s's log does not say why its publishers are blocked", pubNode.name)
	}

	alarmed.kill()
	took = p.Expect(t, false, "", 10*time.Second)
	t.Logf("%s's publisher unblocked %v after %s was killed in alarm", pubNode.name, took, alarmed.name)
	servertest.Confirmed(t, held, 10*time.Second, "the publish held by the alarm of a member killed since")

	alarmed.env = env
	alarmed.start(t, n)
	deadline := time.Now().Add(20 * time.Second)
	for a := apiNodeAlarms(t, pubNode)[alarmed.name]; a != ""; a = apiNodeAlarms(t, pubNode)[alarmed.name] {
		if time.Now().After(deadline) {
			t.Fatalf("/api/nodes on %s: %s's alarm %q 20 s after its restart without the limit", pubNode.name, alarmed.name, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.NotBlocked(t, "when "+alarmed.name+" restarted without an alarm")
	servertest.Confirmed(t, p.Publish(t), 10*time.Second, "a publish after the restart")
}

// apiNodeAlarms is cn's GET /api/nodes summed up (servertest.NodeAlarms).
func apiNodeAlarms(t *testing.T, cn *clusterNode) map[string]string {
	t.Helper()
	resp, err := cn.call("GET", "/nodes", "")
	if err != nil {
		t.Fatalf("GET /api/nodes on %s: %v", cn.name, err)
	}
	defer resp.Body.Close()
	var items []map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&items) != nil {
		t.Fatalf("GET /api/nodes on %s: %s", cn.name, resp.Status)
	}
	return servertest.NodeAlarms(items)
}
