package broker

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
	amqp "github.com/rabbitmq/amqp091-go"
)

// startDurable runs a server with a data directory (cfg's, else a new
// one) on a random port and connects to it; both are closed when the test
// ends.
func startDurable(t *testing.T, cfg Config) (*Server, *amqp.Connection) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Address, cfg.OpenDefinitions = "127.0.0.1:0", openBadger
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Close() })
	conn, err := amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}

// A failed fsync nacks the publishes it covered and raises an alarm that
// blocks publishers.
func TestLogFailureNacksAndRaisesAlarm(t *testing.T) {
	fsys := wal.NewMemFS()
	s, conn := startDurable(t, Config{logFS: fsys})
	// The failure's alarm lasts until a restart, and a publishing
	// connection held by an alarm is not read, so its client's
	// connection.close would wait for ever (as with RabbitMQ's blocked
	// connections): the server goes first, ending the connection.
	defer s.Close()
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 2))
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4))
	pub := func() amqp.Confirmation {
		t.Helper()
		if err := ch.Publish("", "q", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-confirms:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no confirm")
		}
		return amqp.Confirmation{}
	}
	if c := pub(); !c.Ack {
		t.Fatal("healthy log nacked a publish")
	}
	fsys.FailSyncs(errors.New("injected: disk on fire"))
	if c := pub(); c.Ack {
		t.Fatal("a publish whose fsync failed was acked")
	}
	select {
	case b := <-blocked:
		if !b.Active || b.Reason != "message store failure" {
			t.Fatalf("got %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked after the log failed")
	}
}

// Ready persistent messages beyond the global ring budget stay on disk and
// are read back, in order, when consumers reach them.
func TestRingBudgetPagesToTheLog(t *testing.T) {
	s, conn := startDurable(t, Config{RingBufferBytes: 1 << 20})
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("paged", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 300))
	const n, size = 300, 10 << 10
	for i := 0; i < n; i++ {
		body := make([]byte, size)
		body[0], body[1] = byte(i>>8), byte(i)
		if err := ch.Publish("", "paged", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatal("nack")
		}
	}
	if hot := s.hotBytes.Load(); hot > 1<<20+size {
		t.Fatalf("%d bytes of ready messages in memory, budget 1 MiB", hot)
	}
	for i := 0; i < n; i++ {
		d, ok, err := ch.Get("paged", true)
		if err != nil || !ok {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		if got := int(d.Body[0])<<8 | int(d.Body[1]); got != i || len(d.Body) != size {
			t.Fatalf("message %d came back as %d (%d bytes)", i, got, len(d.Body))
		}
	}
	if hot := s.hotBytes.Load(); hot != 0 {
		t.Fatalf("%d hot bytes left after draining", hot)
	}
}

// A persistent message routed to a durable and a transient queue is held
// in the store for the durable one only: the transient queue keeps its
// body in memory whatever the ring size, so it still has every message
// after the durable queue has acked them all, and neither leaves hot bytes.
func TestPersistentFanoutToTransientQueue(t *testing.T) {
	s, conn := startDurable(t, Config{RingBufferSize: 16})
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("fan", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name    string
		durable bool
	}{{"durable", true}, {"transient", false}} {
		if _, err := ch.QueueDeclare(q.name, q.durable, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q.name, "", "fan", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 40
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := 0; i < n; i++ {
		if err := ch.Publish("fan", "", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatal("nack")
		}
	}
	for _, q := range []string{"durable", "transient"} {
		for i := 0; i < n; i++ {
			d, ok, err := ch.Get(q, true)
			if err != nil || !ok {
				t.Fatalf("%s: get %d: %v %v", q, i, ok, err)
			}
			if d.Body[0] != byte(i) {
				t.Fatalf("%s: message %d came back as %d", q, i, d.Body[0])
			}
		}
	}
	if hot := s.hotBytes.Load(); hot != 0 {
		t.Fatalf("%d hot bytes left after draining both queues", hot)
	}
}
