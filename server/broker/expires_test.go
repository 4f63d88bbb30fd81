package broker_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// waitGone polls until queue q no longer exists. It asks with mandatory
// publishes, which do not count as uses of the queue (a passive declare
// would restart its expiry clock).
func waitGone(t *testing.T, conn *amqp.Connection, q string, within time.Duration) {
	t.Helper()
	ch := openChan(t, conn)
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	deadline := time.Now().Add(within)
	for {
		if err := ch.Publish("", q, true, false, amqp.Publishing{Body: []byte("probe")}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-returns:
			if r.ReplyCode != 312 {
				t.Fatalf("return %d %s", r.ReplyCode, r.ReplyText)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s still exists after %v", q, within)
		}
	}
}

func TestQueueExpiresWhenUnused(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	idle, busy := uname(t, "idle"), uname(t, "busy")
	cleanupQueues(t, url, idle, busy)
	for _, q := range []string{idle, busy} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-expires": int32(300)}); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer keeps busy alive well past its expiry.
	cch := openChan(t, conn)
	if _, err := cch.Consume(busy, "keeper", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitGone(t, conn, idle, 5*time.Second)
	if _, err := ch.QueueDeclarePassive(busy, false, false, false, false, nil); err != nil {
		t.Fatalf("queue with a consumer expired: %v", err)
	}
	// Once the consumer goes, the clock starts.
	if err := cch.Cancel("keeper", false); err != nil {
		t.Fatal(err)
	}
	waitGone(t, conn, busy, 5*time.Second)
}

func TestQueueExpiresValidation(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	q := uname(t, "q")
	cleanupQueues(t, url, q)
	_, err := openChan(t, conn).QueueDeclare(q, false, false, false, false, amqp.Table{"x-expires": int32(0)})
	wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-expires' for queue '"+q+"' in vhost '/': {value_zero,0}")
}
