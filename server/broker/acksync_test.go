package broker_test

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestSyncMethodsAfterAcks: every synchronous method that follows acks on
// a durable queue waits for them to be durable (on the file store, one
// barrier of the log; on the memory store nothing) and is answered, in
// order; the acked messages are gone, the others still there. Run on both
// stores (BROKER_TEST_STORE) and against RabbitMQ (BROKER_TEST_URL).
func TestSyncMethodsAfterAcks(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q, x := uname(t, "q"), uname(t, "x")
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, url, q)
	cleanupExchanges(t, url, x)
	// A small window, so that basic.get finds messages the consumer has
	// not taken.
	const n, prefetch = 40, 5
	for i := range n {
		publish(t, ch, "", q, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i))})
	}
	waitCount(t, conn, q, n)

	methods := []struct {
		name string
		call func() error
	}{
		{"basic.qos", func() error { return ch.Qos(prefetch, 0, false) }},
		{"basic.get", func() error { _, _, err := ch.Get(q, false); return err }},
		{"exchange.declare", func() error { return ch.ExchangeDeclare(x, "direct", false, true, false, false, nil) }},
		{"queue.bind", func() error { return ch.QueueBind(q, "k", x, false, nil) }},
		{"queue.unbind", func() error { return ch.QueueUnbind(q, "k", x, nil) }},
		{"exchange.delete", func() error { return ch.ExchangeDelete(x, false, false) }},
		{"queue.declare", func() error { _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); return err }},
		{"basic.consume", func() error { _, err := ch.Consume(q, "second", false, false, false, false, nil); return err }},
		{"basic.cancel", func() error { return ch.Cancel("second", false) }},
		{"channel.flow", func() error { return ch.Flow(true) }},
		{"confirm.select", func() error { return ch.Confirm(false) }},
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q, "first", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	next := func() amqp.Delivery {
		t.Helper()
		select {
		case d := <-ds:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
			return amqp.Delivery{}
		}
	}
	for _, m := range methods {
		if err := next().Ack(false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := m.call(); err != nil {
			t.Fatalf("%s after an ack: %v", m.name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s after an ack took %v", m.name, d)
		}
	}
	// A transaction's acks, then channel.close and connection.close.
	tx := openChan(t, conn)
	if err := tx.Tx(); err != nil {
		t.Fatal(err)
	}
	d := getBody(t, tx, q, false)
	if err := d.Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := tx.TxCommit(); err != nil {
		t.Fatalf("tx.commit after an ack: %v", err)
	}
	if err := next().Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Close(); err != nil {
		t.Fatalf("channel.close after an ack: %v", err)
	}
	second := openConn(t, url)
	sch := openChan(t, second)
	if err := getBody(t, sch, q, false).Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatalf("connection.close after an ack: %v", err)
	}
	// Acked: one per method, the transaction's, before channel.close and
	// connection.close. The channels' unacked deliveries came back.
	waitCount(t, conn, q, n-len(methods)-3)
}
