package quorumtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/management"
	"github.com/amqp-go/amqp-go/server/monitor"
	amqp "github.com/rabbitmq/amqp091-go"
)

// blockedPublisher is a publishing connection to one member that
// registered for connection.blocked, with confirms on, publishing to an
// exclusive queue of that member's.
type blockedPublisher struct {
	nd      *node
	ch      *amqp.Channel
	queue   string
	blocked chan amqp.Blocking
}

func newBlockedPublisher(t *testing.T, nd *node) *blockedPublisher {
	t.Helper()
	c, ch := dial(t, nd.url)
	p := &blockedPublisher{nd: nd, ch: ch, blocked: c.NotifyBlocked(make(chan amqp.Blocking, 8))}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.queue = q.Name
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return p
}

// publish publishes one message and returns its confirm to wait for.
func (p *blockedPublisher) publish(t *testing.T) *amqp.DeferredConfirmation {
	t.Helper()
	dc, err := p.ch.PublishWithDeferredConfirm("", p.queue, false, false, amqp.Publishing{Body: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// expect waits up to timeout for connection.blocked (active, with
// reason) or connection.unblocked, and returns how long it took.
func (p *blockedPublisher) expect(t *testing.T, active bool, reason string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case b := <-p.blocked:
		if b.Active != active || b.Reason != reason {
			t.Fatalf("publisher on %s: blocked %v %q, want %v %q", p.nd.name, b.Active, b.Reason, active, reason)
		}
	case <-time.After(timeout):
		t.Fatalf("publisher on %s: no connection.blocked %v %q within %v", p.nd.name, active, reason, timeout)
	}
	return time.Since(start)
}

// confirmed waits up to timeout for dc's ack.
func confirmed(t *testing.T, dc *amqp.DeferredConfirmation, timeout time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("%s: acked %v, err %v", what, ok, err)
	}
}

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
	pubs := []*blockedPublisher{newBlockedPublisher(t, nodes[0]), newBlockedPublisher(t, nodes[2])}
	for _, p := range pubs {
		confirmed(t, p.publish(t), 10*time.Second, "a publish before the alarm on "+p.nd.name)
	}

	alarmed.srv.SetAlarm(monitor.DiskReason, true)
	var waiting []*amqp.DeferredConfirmation
	for _, p := range pubs {
		took := p.expect(t, true, "low on disk", 10*time.Second)
		t.Logf("%s blocked %v after %s's disk alarm", p.nd.name, took, alarmed.name)
		waiting = append(waiting, p.publish(t))
	}
	// The publishes wait (a bounded look: nothing is to come).
	for i, dc := range waiting {
		select {
		case <-dc.Done():
			t.Fatalf("a publish on %s was confirmed during %s's alarm", pubs[i].nd.name, alarmed.name)
		case <-time.After(300 * time.Millisecond):
		}
	}
	// Each member's own alarm: /api/nodes on the first shows the
	// second's; the second shows its own first; the cluster's health
	// check on the first fails with it, the local one does not.
	if a := nodeAlarms(t, nodes[0]); a[nodes[0].name] != "" || a[alarmed.name] != "disk" || a[nodes[2].name] != "" {
		t.Fatalf("/api/nodes on %s: %v; want %s's disk alarm only", nodes[0].name, a, alarmed.name)
	}
	if a := nodeAlarms(t, alarmed); a[alarmed.name] != "disk" || a[nodes[0].name] != "" {
		t.Fatalf("/api/nodes on %s: %v; want its own disk alarm only", alarmed.name, a)
	}
	want := fmt.Sprintf(`{"alarms":[{"node":"%s","resource":"disk space"}],"reason":"There are alarms in effect in the cluster","status":"failed"}`, alarmed.name)
	if code, body := apiGet(t, nodes[0], "/api/health/checks/alarms"); code != 503 || body != want {
		t.Fatalf("alarms health check on %s: %d %s; want 503 %s", nodes[0].name, code, body, want)
	}
	if code, body := apiGet(t, nodes[0], "/api/health/checks/local-alarms"); code != 200 {
		t.Fatalf("local alarms health check on %s: %d %s; want 200", nodes[0].name, code, body)
	}

	alarmed.srv.SetAlarm("", false)
	for i, p := range pubs {
		p.expect(t, false, "", 10*time.Second)
		confirmed(t, waiting[i], 10*time.Second, "the publish held by the alarm on "+p.nd.name)
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
		p.expect(t, true, "low on memory", 10*time.Second)
		waiting = append(waiting, p.publish(t))
	}
	alarmed.leave()
	if err := alarmed.srv.Close(); err != nil {
		t.Fatal(err)
	}
	mon.Stop()
	for i, p := range pubs {
		took := p.expect(t, false, "", 5*time.Second)
		t.Logf("%s unblocked %v after %s went down in alarm", p.nd.name, took, alarmed.name)
		confirmed(t, waiting[i], 10*time.Second, "the publish held by the alarm of a member now down, on "+p.nd.name)
	}
	if a := nodeAlarms(t, nodes[0]); a[alarmed.name] != "down" {
		t.Fatalf("/api/nodes on %s with %s down: %v", nodes[0].name, alarmed.name, a)
	}

	// Restarted without an alarm, it replays its old statement from its
	// log and states the new one, before the others count its alarm
	// again: no publisher is blocked meanwhile.
	alarmed.start(t, nil)
	for _, p := range pubs {
		waitFor(t, 15*time.Second, alarmed.name+"'s alarm cleared as "+p.nd.name+" knows it", func() error {
			if a := p.nd.srv.MemberAlarms(alarmed.self.ID); a.Memory || a.Disk {
				return fmt.Errorf("%+v", a)
			}
			return nil
		})
		select {
		case b := <-p.blocked:
			t.Fatalf("publisher on %s: blocked %v %q when %s restarted without an alarm", p.nd.name, b.Active, b.Reason, alarmed.name)
		default:
		}
		confirmed(t, p.publish(t), 10*time.Second, "a publish after the restart on "+p.nd.name)
	}
}

// apiGet is a GET of path from a management API over nd's broker and
// cluster, as guest.
func apiGet(t *testing.T, nd *node, path string) (int, string) {
	t.Helper()
	h := management.New(management.Options{Server: nd.srv, Node: nd.name, Cluster: nd.cl.Status})
	defer h.Close()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.SetBasicAuth("guest", "guest")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// nodeAlarms is /api/nodes on nd, by node name: "memory", "disk", both
// joined, "" for none, or "down" for a node not running.
func nodeAlarms(t *testing.T, nd *node) map[string]string {
	t.Helper()
	code, body := apiGet(t, nd, "/api/nodes")
	var items []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &items) != nil {
		t.Fatalf("GET /api/nodes on %s: %d %s", nd.name, code, body)
	}
	out := map[string]string{}
	for _, it := range items {
		name, _ := it["name"].(string)
		var a string
		switch {
		case it["running"] != true:
			a = "down"
		case it["mem_alarm"] == true && it["disk_free_alarm"] == true:
			a = "memory+disk"
		case it["mem_alarm"] == true:
			a = "memory"
		case it["disk_free_alarm"] == true:
			a = "disk"
		}
		out[name] = a
	}
	return out
}
