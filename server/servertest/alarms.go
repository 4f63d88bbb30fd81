package servertest

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BlockedPublisher is a publishing connection that registered for
// connection.blocked, with confirms on, publishing to an exclusive queue
// of its own on the node it is connected to: what a test of resource
// alarms watches.
type BlockedPublisher struct {
	Node    string // the node's name, for messages
	ch      *amqp.Channel
	queue   string
	blocked chan amqp.Blocking
}

// NewBlockedPublisher connects to url (node's); the connection is closed
// when the test ends.
func NewBlockedPublisher(t testing.TB, url, node string) *BlockedPublisher {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("publisher on %s: %v", node, err)
	}
	t.Cleanup(func() { c.Close() })
	p := &BlockedPublisher{Node: node, blocked: c.NotifyBlocked(make(chan amqp.Blocking, 8))}
	if p.ch, err = c.Channel(); err != nil {
		t.Fatal(err)
	}
	q, err := p.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.queue = q.Name
	if err := p.ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return p
}

// Publish publishes one message and returns its confirm to wait for.
func (p *BlockedPublisher) Publish(t testing.TB) *amqp.DeferredConfirmation {
	t.Helper()
	dc, err := p.ch.PublishWithDeferredConfirm("", p.queue, false, false, amqp.Publishing{Body: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// Expect waits up to within for connection.blocked (active, with reason)
// or connection.unblocked, and returns how long it took.
func (p *BlockedPublisher) Expect(t testing.TB, active bool, reason string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case b := <-p.blocked:
		if b.Active != active || b.Reason != reason {
			t.Fatalf("publisher on %s: blocked %v %q, want %v %q", p.Node, b.Active, b.Reason, active, reason)
		}
	case <-time.After(within):
		t.Fatalf("publisher on %s: no connection.blocked %v %q within %v", p.Node, active, reason, within)
	}
	return time.Since(start)
}

// NotBlocked fails the test if a connection.blocked or unblocked has
// come that Expect did not take; why says when.
func (p *BlockedPublisher) NotBlocked(t testing.TB, why string) {
	t.Helper()
	select {
	case b := <-p.blocked:
		t.Fatalf("publisher on %s: blocked %v %q %s", p.Node, b.Active, b.Reason, why)
	default:
	}
}

// Held fails the test if dc is confirmed within a short while (nothing is
// to come: a bounded look).
func (p *BlockedPublisher) Held(t testing.TB, dc *amqp.DeferredConfirmation, why string) {
	t.Helper()
	select {
	case <-dc.Done():
		t.Fatalf("a publish on %s was confirmed %s", p.Node, why)
	case <-time.After(300 * time.Millisecond):
	}
}

// Confirmed waits up to within for dc's ack.
func Confirmed(t testing.TB, dc *amqp.DeferredConfirmation, within time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("%s: acked %v, err %v", what, ok, err)
	}
}

// NodeAlarms sums up /api/nodes' items by node name: "memory", "disk",
// "memory+disk", "" for none, or "down" for a node not running.
func NodeAlarms(items []map[string]any) map[string]string {
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
