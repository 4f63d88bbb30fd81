package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// dial connects to a fresh in-process broker and returns a channel.
func dial(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return conn, ch
}

// recv waits for one delivery or fails the test.
func recv(t *testing.T, ds <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d, ok := <-ds:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a delivery")
	}
	return amqp.Delivery{}
}

// amqpErr extracts the broker's exception from err.
func amqpErr(t *testing.T, err error) *amqp.Error {
	t.Helper()
	var e *amqp.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *amqp.Error, got %v", err)
	}
	return e
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	url := servertest.Start(t)
	_, ch := dial(t, url)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = ch.Publish("", q.Name, false, false, amqp.Publishing{
		ContentType: "text/plain", Headers: amqp.Table{"k": "v", "n": int32(7)}, Body: []byte("hello"),
		CorrelationId: "c1", Priority: 3, DeliveryMode: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, ds)
	if string(d.Body) != "hello" || d.ContentType != "text/plain" || d.CorrelationId != "c1" || d.Priority != 3 ||
		d.Headers["k"] != "v" || d.Headers["n"] != int32(7) || d.DeliveryMode != 2 || d.RoutingKey != q.Name || d.Redelivered {
		t.Fatalf("delivery mismatch: %+v", d)
	}
	if err := d.Ack(false); err != nil {
		t.Fatal(err)
	}
}
