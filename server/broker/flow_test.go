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
	url, conn, cconn, q := stuckConsumer(t, 10)
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
			if err := pch.Publish("", q, false, false, amqp.Publishing{Body: body}); err != nil {
				return
			}
			published.Add(1)
		}
	}()
	// The broker holds the backlog near its 4096-message threshold; a few
	// read buffers' worth may be in flight.
	const bound = 4096 + 3000
	// Watch the backlog while the publisher runs flat out for 1.5 s,
	// stopping early once it is over the bound (unthrottled, it gets
	// there in a fraction of a second).
	var ready int
	for watch := time.Now().Add(1500 * time.Millisecond); time.Now().Before(watch); time.Sleep(50 * time.Millisecond) {
		if ready, _ = queueCounts(t, conn, q); ready > bound {
			break
		}
	}
	close(stop)
	cconn.Close() // without consumers nothing is throttled: the publisher stops
	<-done
	if ready > bound {
		t.Fatalf("backlog grew to %d ready messages (published %d); flow control should hold it under %d",
			ready, published.Load(), bound)
	}
	if published.Load() < 4096 {
		t.Fatalf("publisher only managed %d messages; the test did not reach the threshold", published.Load())
	}
}

// stuckConsumer starts a server with a queue whose one consumer takes
// prefetch messages and never acks: the queue has a consumer, so a growing
// backlog means publishers outrun it. It returns the server's URL, a
// connection for checking the queue, the consumer's connection and the
// queue's name.
func stuckConsumer(t *testing.T, prefetch int) (string, *amqp.Connection, *amqp.Connection, string) {
	t.Helper()
	url := servertest.Start(t)
	conn := openConn(t, url)
	q, err := openChan(t, conn).QueueDeclare("", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	cconn := openConn(t, url)
	cch := openChan(t, cconn)
	if err := cch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cch.Consume(q.Name, "", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return url, conn, cconn, q.Name
}
