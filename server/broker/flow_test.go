package broker_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A publisher faster than the consumers is throttled (publisher flow
// control): the queue's backlog stays bounded instead of growing with the
// publish rate, well below any memory alarm.
func TestFastPublisherIsThrottled(t *testing.T) {
	url := servertest.Start(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q, err := ch.QueueDeclare("", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A consumer that takes 10 messages and never acks: the queue has a
	// consumer, so a growing backlog means publishers outrun it.
	cconn := openConn(t, url)
	cch := openChan(t, cconn)
	if err := cch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cch.Consume(q.Name, "", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	pconn := openConn(t, url)
	pch := openChan(t, pconn)
	var published atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		body := make([]byte, 100)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := pch.Publish("", q.Name, false, false, amqp.Publishing{Body: body}); err != nil {
				return
			}
			published.Add(1)
		}
	}()
	time.Sleep(1500 * time.Millisecond) // let the publisher run flat out
	ready, _ := queueCounts(t, conn, q.Name)
	close(stop)
	cconn.Close() // without consumers nothing is throttled: the publisher stops
	<-done
	// The broker holds the backlog near its 4096-message threshold; a few
	// read buffers' worth may be in flight.
	const bound = 4096 + 3000
	if ready > bound {
		t.Fatalf("backlog grew to %d ready messages (published %d); flow control should hold it under %d",
			ready, published.Load(), bound)
	}
	if published.Load() < 4096 {
		t.Fatalf("publisher only managed %d messages; the test did not reach the threshold", published.Load())
	}
}
