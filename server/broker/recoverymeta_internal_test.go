package broker

import (
	"io"
	"log/slog"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// openAt runs a durable server on dir until the returned stop is called.
func openAt(t *testing.T, dir string) (*amqp.Connection, func()) {
	t.Helper()
	s, err := Open(Config{Address: "127.0.0.1:0", DataDir: dir, OpenDefinitions: openBadger, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	conn, err := amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		<-served
	}
}

// After a restart, recovered messages keep their priority and their TTL
// clock, which started at publish: they neither lose their order nor live
// longer than they would have.
func TestRestartKeepsPriorityAndTTL(t *testing.T) {
	dir := t.TempDir()
	conn, stop := openAt(t, dir)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	declare := func(name string, args amqp.Table) {
		t.Helper()
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			t.Fatal(err)
		}
	}
	declare("prio", amqp.Table{"x-max-priority": int32(5)})
	declare("queue-ttl", amqp.Table{"x-message-ttl": int32(1500)})
	declare("own-ttl", nil)
	publish := func(queue string, p amqp.Publishing) {
		t.Helper()
		p.DeliveryMode = amqp.Persistent
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, p)
		if err != nil {
			t.Fatal(err)
		}
		if !dc.Wait() {
			t.Fatal("nacked")
		}
	}
	for _, p := range []uint8{1, 5, 3} {
		publish("prio", amqp.Publishing{Priority: p, Body: []byte{p}})
	}
	published := time.Now()
	publish("queue-ttl", amqp.Publishing{Body: []byte("q")})
	publish("own-ttl", amqp.Publishing{Expiration: "1500", Body: []byte("o")})
	stop()

	conn, stop = openAt(t, dir)
	defer stop()
	ch, err = conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []byte{5, 3, 1} {
		m, ok, err := ch.Get("prio", true)
		if err != nil || !ok || m.Body[0] != want {
			t.Fatalf("after the restart: got %v %v %v, want priority %d next", m.Body, ok, err, want)
		}
	}
	for _, q := range []string{"queue-ttl", "own-ttl"} {
		for {
			st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Messages == 0 {
				break
			}
			if time.Since(published) > 5*time.Second {
				t.Fatalf("%s: the recovered message outlived its 1.5 s TTL", q)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
