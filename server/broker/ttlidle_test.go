package broker_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A per-message TTL runs from the publish, even when the publishing
// connection had been idle: the broker reads its clock once per socket
// read, and a read that waited must not give the publish the time before
// the wait (the message would expire on arrival).
func TestTTLStartsAtPublishAfterIdle(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	ch := openChan(t, conn)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", q.Name, amqp.Publishing{Body: []byte("first")})
	if _, ok, err := ch.Get(q.Name, true); err != nil || !ok {
		t.Fatalf("first message: %v %v", ok, err)
	}
	// The scenario itself, not a wait for something: the connection idle
	// for longer than the next message's TTL.
	time.Sleep(1500 * time.Millisecond)
	publish(t, ch, "", q.Name, amqp.Publishing{Body: []byte("second"), Expiration: "1000"})
	d, ok, err := ch.Get(q.Name, true)
	if err != nil || !ok || string(d.Body) != "second" {
		t.Fatalf("a 1 s TTL message got right after its publish: %v %q %v (expired on arrival?)", ok, d.Body, err)
	}
}
