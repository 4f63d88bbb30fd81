package quorumtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A resource alarm is the whole cluster's, as in RabbitMQ: one member
// raising its disk alarm (SetAlarm, as monitor.Monitor calls it) blocks
// the publishers on the two others with RabbitMQ's reason, and their
// publishes wait; cleared, they are unblocked and confirmed. The
// management API shows each member's own alarm. A member whose monitor
// raises a memory alarm (a limit below its use) and that then goes down
// stops blocking the others within a few seconds, as RabbitMQ clears a
// dead node's alarms; restarted without an alarm, it blocks no one.
func TestClusterAlarm(t *testing.T) {
	nodes := startCluster(t, 3)
	alarmed := nodes[1]
	var pubs []*servertest.BlockedPublisher
	for _, nd := range []*node{nodes[0], nodes[2]} {
		p := servertest.NewBlockedPublisher(t, nd.url, nd.name)
		servertest.Confirmed(t, p.Publish(t), 10*time.Second, "a publish before the alarm on "+nd.name)
		pubs = append(pubs, p)
	}

	alarmed.srv.SetAlarm(monitor.DiskReason, true)
	var waiting []*amqp.DeferredConfirmation
	for _, p := range pubs {
		took := p.Expect(t, true, "low on disk", 10*time.Second)
		t.Logf("%s blocked %v after %s's disk alarm", p.Node, took, alarmed.name)
		waiting = append(waiting, p.Publish(t))
	}
	for i, p := range pubs {
		p.Held(t, waiting[i], "during "+alarmed.name+"'s alarm")
	}
	// Each member's own alarm: /api/nodes on the first shows the
	// second's; the second shows its own; the cluster's health check on
	// the first fails with it, the local one does not.
	if a := nodeAlarms(t, nodes[0]); a[nodes[0].name] != "" || a[alarmed.name] != "disk" || a[nodes[2].name] != "" {
		t.Fatalf("/api/nodes on %s: %v; want %s's disk alarm only", nodes[0].name, a, alarmed.name)
	}
	if a := nodeAlarms(t, alarmed); a[alarmed.name] != "disk" || a[nodes[0].name] != "" {
		t.Fatalf("/api/nodes on %s: %v; want its own disk alarm only", alarmed.name, a)
	}
	want := fmt.Sprintf(`{"alarms":[{"node":"%s","resource":"disk space"}],"reason":"There are alarms in effect in the cluster","status":"failed"}`, alarmed.name)
	if code, body := apiText(nodes[0], "/api/health/checks/alarms"); code != 503 || body != want {
		t.Fatalf("alarms health check on %s: %d %s; want 503 %s", nodes[0].name, code, body, want)
	}
	if code, body := apiText(nodes[0], "/api/health/checks/local-alarms"); code != 200 {
		t.Fatalf("local alarms health check on %s: %d %s; want 200", nodes[0].name, code, body)
	}

	alarmed.srv.SetAlarm("", false)
	for i, p := range pubs {
		p.Expect(t, false, "", 10*time.Second)
		servertest.Confirmed(t, waiting[i], 10*time.Second, "the publish held by the alarm on "+p.Node)
	}
	if a := nodeAlarms(t, nodes[2]); a[alarmed.name] != "" {
		t.Fatalf("/api/nodes on %s after the clear: %v", nodes[2].name, a)
	}

	// In alarm again, raised this time by its own monitor with a memory
	// limit below what the process uses (as server.memorylimitbytes set
	// too low would), then down: the others unblock.
	mon := monitor.Start(monitor.Options{MemoryLimit: 1, Interval: 50 * time.Millisecond, SetAlarm: alarmed.srv.SetAlarm})
	waiting = waiting[:0]
	for _, p := range pubs {
		p.Expect(t, true, "low on memory", 10*time.Second)
		waiting = append(waiting, p.Publish(t))
	}
	alarmed.leave()
	if err := alarmed.srv.Close(); err != nil {
		t.Fatal(err)
	}
	mon.Stop()
	for i, p := range pubs {
		took := p.Expect(t, false, "", 5*time.Second)
		t.Logf("%s unblocked %v after %s went down in alarm", p.Node, took, alarmed.name)
		servertest.Confirmed(t, waiting[i], 10*time.Second, "the publish held by the alarm of a member now down, on "+p.Node)
	}
	if a := nodeAlarms(t, nodes[0]); a[alarmed.name] != "down" {
		t.Fatalf("/api/nodes on %s with %s down: %v", nodes[0].name, alarmed.name, a)
	}

	// Restarted without an alarm, it replays its old statement from its
	// log and states the new one, before the others count its alarm
	// again: no publisher is blocked meanwhile.
	alarmed.start(t, nil)
	for i, p := range pubs {
		nd := []*node{nodes[0], nodes[2]}[i]
		waitFor(t, 15*time.Second, alarmed.name+"'s alarm cleared as "+nd.name+" knows it", func() error {
			if a := nd.srv.MemberAlarms(alarmed.self.ID); a.Memory || a.Disk {
				return fmt.Errorf("%+v", a)
			}
			return nil
		})
		p.NotBlocked(t, "when "+alarmed.name+" restarted without an alarm")
		servertest.Confirmed(t, p.Publish(t), 10*time.Second, "a publish after the restart on "+p.Node)
	}
}

// nodeAlarms is /api/nodes on nd summed up (servertest.NodeAlarms).
func nodeAlarms(t *testing.T, nd *node) map[string]string {
	t.Helper()
	code, body := apiText(nd, "/api/nodes")
	var items []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &items) != nil {
		t.Fatalf("GET /api/nodes on %s: %d %s", nd.name, code, body)
	}
	return servertest.NodeAlarms(items)
}

// apiText is apiGet with the body as a string.
func apiText(nd *node, path string) (int, string) {
	code, body := apiGet(nd, path)
	return code, string(body)
}
