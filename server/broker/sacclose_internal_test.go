package broker

import (
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	amqp "github.com/rabbitmq/amqp091-go"
)

// slowCloses is a queue that widens the windows of a channel's close
// that a test otherwise hits about once in a hundred runs: its Cancel
// returns only once the queue has handed out what it holds ready to the
// consumers left (or after 5 s), so the consumer the cancel made active
// is delivered to before the caller goes on; a requeue returns only once
// the queue has delivered again (or after 50 ms).
type slowCloses struct {
	queue.Queue[qhandle]
}

func (q slowCloses) Settle(tags []uint64, outcome queue.Outcome) {
	before := q.Info().Stats.Delivered
	q.Queue.Settle(tags, outcome)
	if outcome != queue.Requeue {
		return
	}
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if q.Info().Stats.Delivered != before {
			break
		}
	}
}

func (q slowCloses) Cancel(id queue.ConsumerID) bool {
	left := q.Queue.Cancel(id)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if ready, _, consumers := q.Backlog(); ready == 0 || consumers == 0 {
			break
		}
	}
	return left
}

// A closed channel's unacked messages are requeued before its single
// active consumer is cancelled: the next consumer gets them back, in
// their places, before the message that waited behind them, however soon
// the queue's driver runs after the cancel; and the closing consumer is
// not given them again in between.
func TestSACCloseRequeuesBeforeCancel(t *testing.T) {
	s, conn := startDurable(t, Config{})
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", false, false, false, false, amqp.Table{"x-single-active-consumer": true}); err != nil {
		t.Fatal(err)
	}
	v := s.vhost("/")
	v.mu.Lock() // the rate sampler reads cq under v.mu
	q := v.queues["q"]
	q.cq = slowCloses{q.cq}
	v.mu.Unlock()
	consume := func(tag string, prefetch int) (*amqp.Channel, <-chan amqp.Delivery) {
		t.Helper()
		c, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Qos(prefetch, 0, false); err != nil {
			t.Fatal(err)
		}
		ds, err := c.Consume("q", tag, false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, ds
	}
	take := func(ds <-chan amqp.Delivery, want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case d := <-ds:
				got := string(d.Body)
				if d.Redelivered {
					got += "*"
				}
				if got != w {
					t.Fatalf("got %q, want %q (of %q)", got, w, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no delivery, want %q", w)
			}
		}
	}
	ch1, ds1 := consume("c1", 2)
	_, ds2 := consume("c2", 10)
	for _, b := range []string{"1", "2", "3"} {
		if err := ch.Publish("", "q", false, false, amqp.Publishing{Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	take(ds1, "1", "2")
	if err := ch1.Close(); err != nil {
		t.Fatal(err)
	}
	take(ds2, "1*", "2*", "3")
	if st := q.cq.Info().Stats; st.Delivered != 5 || st.Redelivered != 2 {
		t.Errorf("%d deliveries, %d redelivered; want 5 and 2: the closing consumer was given its requeued messages", st.Delivered, st.Redelivered)
	}
}
