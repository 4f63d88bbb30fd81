package quorumtest

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var (
	errEmpty    = errors.New("empty")
	errFull     = errors.New("nacked: full")
	errAdmitted = errors.New("acked: not full")
)

// publishOne publishes body to queue on url with a confirm and reports
// whether it was acked.
func publishOne(t *testing.T, url, queue, body string) bool {
	t.Helper()
	_, ch := dial(t, url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		t.Fatalf("confirm of %s: %v", body, err)
	}
	return ok
}

// x-dead-letter-strategy at-least-once (with reject-publish), as
// RabbitMQ's quorum queues have it: a dead-letter that its target
// refuses (full) stays with the source queue, counted in its limit,
// survives the loss of the source's leader, and reaches the target once
// it has room, once; at most once, the same dead-letter is lost.
func TestQuorumQueueDeadLetterAtLeastOnce(t *testing.T) {
	nodes := startCluster(t, 3)
	_, ch := dial(t, nodes[0].url)
	if err := ch.ExchangeDeclare("dlx", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	// The target: a quorum queue of one message, full.
	if _, err := ch.QueueDeclare("target", true, false, false, false, amqp.Table{"x-queue-type": "quorum",
		"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("target", "", "dlx", false, nil); err != nil {
		t.Fatal(err)
	}
	if !publishOne(t, nodes[0].url, "target", "filler") {
		t.Fatal("filler nacked")
	}
	for _, s := range []string{"at-most-once", "at-least-once"} {
		if _, err := ch.QueueDeclare(s, true, false, false, false, amqp.Table{"x-queue-type": "quorum",
			"x-dead-letter-exchange": "dlx", "x-dead-letter-strategy": s, "x-overflow": "reject-publish", "x-max-length": int32(1)}); err != nil {
			t.Fatal(err)
		}
		if !publishOne(t, nodes[1].url, s, "m-"+s) {
			t.Fatalf("m-%s nacked", s)
		}
		var d amqp.Delivery
		waitFor(t, 10*time.Second, "get from "+s, func() error {
			var err error
			var ok bool
			if d, ok, err = ch.Get(s, false); err == nil && !ok {
				err = errEmpty
			}
			return err
		})
		if err := d.Nack(false, false); err != nil {
			t.Fatal(err)
		}
	}
	// The held dead-letter fills the at-least-once queue; the other's is
	// gone, and its queue has room.
	waitFor(t, 10*time.Second, "at-least-once full", func() error {
		if publishOne(t, nodes[2].url, "at-least-once", "over") {
			return errAdmitted
		}
		return nil
	})
	if !publishOne(t, nodes[2].url, "at-most-once", "room") {
		t.Fatal("the at-most-once queue is full: its dead-letter was kept")
	}
	// Its leader goes; the next one republishes.
	lead := leaderOf(t, nodes, "at-least-once")
	lead.stop(t)
	var rest []*node
	for _, nd := range nodes {
		if nd != lead {
			rest = append(rest, nd)
		}
	}
	// The target gets room.
	_, tch := dial(t, rest[0].url)
	waitFor(t, 15*time.Second, "the filler taken", func() error {
		d, ok, err := tch.Get("target", true)
		if err == nil && (!ok || string(d.Body) != "filler") {
			err = errEmpty
		}
		return err
	})
	var got amqp.Delivery
	waitFor(t, 20*time.Second, "the dead-letter in the target", func() error {
		d, ok, err := tch.Get("target", true)
		if err == nil && !ok {
			err = errEmpty
		}
		got = d
		return err
	})
	deaths, _ := got.Headers["x-death"].([]any)
	var death amqp.Table
	if len(deaths) > 0 {
		death, _ = deaths[0].(amqp.Table)
	}
	if string(got.Body) != "m-at-least-once" || death["reason"] != "rejected" || death["queue"] != "at-least-once" {
		t.Fatalf("the target got %q with x-death %v", got.Body, got.Headers["x-death"])
	}
	// Once, and the source has room again.
	waitFor(t, 15*time.Second, "the at-least-once queue admits", func() error {
		if !publishOne(t, rest[0].url, "at-least-once", "after") {
			return errFull
		}
		return nil
	})
	if d, ok, err := tch.Get("target", true); err != nil || ok {
		t.Fatalf("the target got a second message %q (%v)", d.Body, err)
	}
}
