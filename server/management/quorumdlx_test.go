package management_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A quorum queue's dead-letters held at least once show as RabbitMQ's
// messages_dlx and message_bytes_dlx until their target confirms them; a
// classic queue has no such fields.
func TestQuorumHeldDeadLetters(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if err := ch.ExchangeDeclare("dlx", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("target", true, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("target", "", "dlx", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, amqp.Table{"x-queue-type": "quorum",
		"x-dead-letter-exchange": "dlx", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for q, body := range map[string]string{"target": "filler", "q": "abcde"} {
		dc, err := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish to %s: %v", q, err)
		}
	}
	m := pollQueue(t, a, "/queues/%2F/q", func(m map[string]any) bool { return m["messages_ready"] == 1.0 })
	if m["messages_dlx"] != 0.0 || m["message_bytes_dlx"] != 0.0 {
		t.Fatalf("before any dead-letter: messages_dlx %v, message_bytes_dlx %v", m["messages_dlx"], m["message_bytes_dlx"])
	}
	d, ok, err := ch.Get("q", false)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if err := d.Nack(false, false); err != nil {
		t.Fatal(err)
	}
	// The target is full: the dead-letter stays held.
	pollQueue(t, a, "/queues/%2F/q", func(m map[string]any) bool {
		return m["messages_dlx"] == 1.0 && m["message_bytes_dlx"] == 5.0 && m["messages"] == 0.0
	})
	if _, ok, err := ch.Get("target", true); err != nil || !ok {
		t.Fatalf("get the filler: %v %v", ok, err)
	}
	// The queue republishes it within DLXRetry (5 s, inside pollQueue's
	// deadline); once confirmed it is gone.
	pollQueue(t, a, "/queues/%2F/q", func(m map[string]any) bool {
		return m["messages_dlx"] == 0.0 && m["message_bytes_dlx"] == 0.0
	})
	if d, ok, err := ch.Get("target", true); err != nil || !ok || string(d.Body) != "abcde" {
		t.Fatalf("the target: %q %v %v", d.Body, ok, err)
	}
	if m := a.guest("GET", "/queues/%2F/target", "").obj(t); m["messages_dlx"] != nil {
		t.Errorf("a classic queue shows messages_dlx %v", m["messages_dlx"])
	}
}
