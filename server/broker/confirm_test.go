package broker_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestConfirmAcksInOrder(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 500
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	q := tempQueue(t, ch)
	for i := 0; i < n; i++ {
		// Routed, unroutable and mandatory-unroutable publishes are all acked.
		switch i % 3 {
		case 0:
			publish(t, ch, "", q, body(fmt.Sprint(i)))
		case 1:
			publish(t, ch, "amq.direct", "nowhere", body(fmt.Sprint(i)))
		case 2:
			if err := ch.Publish("amq.direct", "nowhere", true, false, body(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 1; i <= n; i++ {
		select {
		case c := <-confirms:
			if c.DeliveryTag != uint64(i) || !c.Ack {
				t.Fatalf("confirm %d: %+v", i, c)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for confirm %d", i)
		}
	}
}

func TestConfirmSelectIdempotent(t *testing.T) {
	_, ch := dial(t, brokerURL(t))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("second confirm.select: %v", err)
	}
}

// TestConfirmRawMultiple checks the wire: every sequence number is covered
// exactly once, in increasing order, whether single or multiple acks.
func TestConfirmRawMultiple(t *testing.T) {
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.ConfirmSelect{})
	if _, m := r.readMethod(); m.MethodName() != "confirm.select-ok" {
		t.Fatalf("got %s", m.MethodName())
	}
	r.send(1, &wire.QueueDeclare{Exclusive: true})
	_, m := r.readMethod()
	q := m.(*wire.QueueDeclareOk).Queue
	const n = 300
	var batch []byte
	for i := 0; i < n; i++ {
		batch = wire.AppendMethodFrame(batch, 1, &wire.BasicPublish{RoutingKey: q})
		batch = wire.AppendHeaderFrameProps(batch, 1, 1, &wire.Properties{})
		batch = wire.AppendBodyFrames(batch, 1, []byte("x"), 0)
	}
	r.write(batch)
	var confirmed uint64
	frames, multiples := 0, 0
	for confirmed < n {
		_, m := r.readMethod()
		ack, ok := m.(*wire.BasicAck)
		if !ok {
			t.Fatalf("got %s", m.MethodName())
		}
		frames++
		switch {
		case ack.Multiple && ack.DeliveryTag > confirmed:
			multiples++
		case !ack.Multiple && ack.DeliveryTag == confirmed+1:
		default:
			t.Fatalf("ack %+v after %d confirmed", ack, confirmed)
		}
		confirmed = ack.DeliveryTag
	}
	t.Logf("%d publishes confirmed by %d acks (%d multiple)", n, frames, multiples)
	if f, err := r.readFrame(200 * time.Millisecond); err == nil && f.Type != wire.FrameHeartbeat {
		t.Fatalf("extra frame type %d after all confirms", f.Type)
	}
}

func TestConfirmModeConflicts(t *testing.T) {
	u := brokerURL(t)
	t.Run("confirm on tx channel", func(t *testing.T) {
		_, ch := dial(t, u)
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		wantErr(t, ch.Confirm(false), 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")
	})
	t.Run("tx on confirm channel", func(t *testing.T) {
		_, ch := dial(t, u)
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		wantErr(t, ch.Tx(), 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
	})
}

// A confirmed message is in its queues: a basic.get on another connection,
// made as the confirm arrives, finds it, however long the publish takes
// between the store, which may answer at once, and the queues. The server
// is held there for 50 ms on each publish.
func TestConfirmAfterQueuesHaveIt(t *testing.T) {
	inProcessOnly(t, "holds the server between a publish's store put and its pushes")
	srv, u := servertest.StartServer(t, broker.Config{})
	srv.SetBeforePush(func() { time.Sleep(50 * time.Millisecond) })
	_, pch := dial(t, u)
	_, gch := dial(t, u)
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	durable, transient := uname(t, "durable"), uname(t, "transient")
	for _, q := range []string{durable, transient} {
		if _, err := pch.QueueDeclare(q, q == durable, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		queue string
		mode  uint8
	}{{durable, amqp.Persistent}, {durable, amqp.Transient}, {transient, amqp.Persistent}, {transient, amqp.Transient}} {
		b := fmt.Sprintf("m%d", i)
		dc, err := pch.PublishWithDeferredConfirm("", c.queue, false, false, amqp.Publishing{DeliveryMode: c.mode, Body: []byte(b)})
		if err != nil {
			t.Fatal(err)
		}
		if !dc.Wait() {
			t.Fatalf("%s nacked", b)
		}
		m, ok, err := gch.Get(c.queue, true)
		if err != nil || !ok || string(m.Body) != b {
			t.Fatalf("get from %s after the confirm of %s (delivery mode %d): %q, ok %v, err %v", c.queue, b, c.mode, m.Body, ok, err)
		}
	}
}

// A mandatory publish that reaches no queue comes back (basic.return)
// before its basic.ack, as RabbitMQ sends them: a client that counts an
// ack not preceded by a return as routed must never be wrong. In
// process, every writer round is held for 2 ms between taking the
// output and adding the confirms, while the reader goes on returning and
// confirming the publishes that follow.
func TestReturnBeforeItsAck(t *testing.T) {
	u := os.Getenv("BROKER_TEST_URL")
	if u == "" {
		var srv *broker.Server
		srv, u = servertest.StartServer(t, broker.Config{})
		srv.SetBeforeConfirms(func() { time.Sleep(2 * time.Millisecond) })
	}
	_, ch := dial(t, u)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 500
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	returns := ch.NotifyReturn(make(chan amqp.Return, n))
	go func() {
		for i := range n {
			if err := ch.Publish("amq.direct", uname(t, "nowhere"), true, false, amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
				return
			}
		}
	}()
	returned := 0
	for range n {
		var cf amqp.Confirmation
		select {
		case cf = <-confirms:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d confirms of %d after 10 s", returned, n)
		}
		for drained := false; !drained; {
			select {
			case <-returns:
				returned++
			default:
				drained = true
			}
		}
		if !cf.Ack || uint64(returned) < cf.DeliveryTag {
			t.Fatalf("confirm of publish %d (ack %v) came with %d returns before it: a return after its ack", cf.DeliveryTag, cf.Ack, returned)
		}
	}
}
