package broker_test

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A higher x-priority consumer gets every message while it has credit;
// lower ones get only what it cannot take.
func TestConsumerPriorities(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := uname(t, "prio")
	cleanupQueues(t, url, q)
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	high := openChan(t, conn)
	if err := high.Qos(3, 0, false); err != nil {
		t.Fatal(err)
	}
	hi, err := high.Consume(q, "high", false, false, false, false, amqp.Table{"x-priority": int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	low := openChan(t, conn)
	lo, err := low.Consume(q, "low", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		publish(t, ch, "", q, body(fmt.Sprint(i)))
	}
	// high holds 3 unacked (its prefetch) and acks none: the other 5 go low.
	var gotHigh, gotLow int
	deadline := time.After(5 * time.Second)
	for gotHigh+gotLow < 8 {
		select {
		case <-hi:
			gotHigh++
		case d := <-lo:
			gotLow++
			_ = d.Ack(false)
		case <-deadline:
			t.Fatalf("got %d high, %d low of 8", gotHigh, gotLow)
		}
	}
	if gotHigh != 3 || gotLow != 5 {
		t.Fatalf("high got %d (want its prefetch, 3), low got %d (want 5)", gotHigh, gotLow)
	}
}

func TestConsumerPriorityCapability(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	caps, _ := conn.Properties["capabilities"].(amqp.Table)
	if caps["consumer_priorities"] != true {
		t.Fatalf("capabilities %v lack consumer_priorities", caps)
	}
}
