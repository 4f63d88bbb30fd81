package broker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
	amqp "github.com/rabbitmq/amqp091-go"
)

// startCrashable runs a server on the file store in dir (startDurable),
// its log on fsys with each batch held open for delay, so that an ack
// record waits that long for its fsync unless something waits for it.
func startCrashable(t *testing.T, dir string, fsys wal.FS, delay time.Duration) (*Server, *amqp.Connection) {
	t.Helper()
	return startDurable(t, Config{DataDir: dir, logFS: fsys, WALBatchDelay: delay})
}

// publishConfirmed publishes n persistent messages "0".."n-1" to queue q
// on its own channel and waits for their confirms.
func publishConfirmed(t *testing.T, conn *amqp.Connection, q string, n int) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := range n {
		if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("publish %d nacked", c.DeliveryTag)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no confirm")
		}
	}
}

// TestAcksDurableBeforeReply: acks (rejects, nacks without requeue) on a
// durable queue, then a synchronous method on the same channel (or the
// connection's close); the moment its answer arrives the disk loses
// everything not fsynced. The settled messages must stay settled after a
// restart, the others come back. The log holds each batch open 100 ms,
// so an answer that did not wait for the acks' fsync would lose them.
func TestAcksDurableBeforeReply(t *testing.T) {
	const n, settled = 20, 10
	type settleFn func(t *testing.T, ds []amqp.Delivery)
	each := func(f func(d amqp.Delivery) error) settleFn {
		return func(t *testing.T, ds []amqp.Delivery) {
			for _, d := range ds[:settled] {
				if err := f(d); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ack := each(func(d amqp.Delivery) error { return d.Ack(false) })
	cases := []struct {
		name      string
		tx        bool
		settle    settleFn
		roundTrip func(conn *amqp.Connection, ch *amqp.Channel) error
	}{
		{"ack/basic.qos", false, ack, func(_ *amqp.Connection, ch *amqp.Channel) error { return ch.Qos(n, 0, false) }},
		{"ack multiple/basic.get", false, func(t *testing.T, ds []amqp.Delivery) {
			if err := ds[settled-1].Ack(true); err != nil {
				t.Fatal(err)
			}
		}, func(_ *amqp.Connection, ch *amqp.Channel) error { _, _, err := ch.Get("q", false); return err }},
		{"reject/queue.declare", false, each(func(d amqp.Delivery) error { return d.Reject(false) }),
			func(_ *amqp.Connection, ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive("q", true, false, false, false, nil)
				return err
			}},
		{"nack multiple/channel.close", false, func(t *testing.T, ds []amqp.Delivery) {
			if err := ds[settled-1].Nack(true, false); err != nil {
				t.Fatal(err)
			}
		}, func(_ *amqp.Connection, ch *amqp.Channel) error { return ch.Close() }},
		{"ack/connection.close", false, ack, func(conn *amqp.Connection, _ *amqp.Channel) error { return conn.Close() }},
		{"ack in tx/tx.commit", true, ack, func(_ *amqp.Connection, ch *amqp.Channel) error { return ch.TxCommit() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, fsys := t.TempDir(), wal.NewMemFS()
			s, conn := startCrashable(t, dir, fsys, 100*time.Millisecond)
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			publishConfirmed(t, conn, "q", n)
			if tc.tx {
				if err := ch.Tx(); err != nil {
					t.Fatal(err)
				}
			}
			msgs, err := ch.Consume("q", "", false, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ds []amqp.Delivery
			for len(ds) < n {
				select {
				case d := <-msgs:
					ds = append(ds, d)
				case <-time.After(10 * time.Second):
					t.Fatalf("%d of %d delivered", len(ds), n)
				}
			}
			tc.settle(t, ds)
			if err := tc.roundTrip(conn, ch); err != nil {
				t.Fatal(err)
			}
			fsys.Crash(nil) // what is not on disk by the answer is lost
			_ = s.Close()

			_, conn = startCrashable(t, dir, fsys, 0)
			ch, err = conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			var back []string
			for {
				d, ok, err := ch.Get("q", true)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				back = append(back, string(d.Body))
			}
			var want []string
			for i := settled; i < n; i++ {
				want = append(want, fmt.Sprint(i))
			}
			if !slices.Equal(back, want) {
				t.Fatalf("after the crash the queue holds %v, want the %d unsettled %v", back, n-settled, want)
			}
		})
	}
}

// TestNoBarrierWithoutSettling: a channel that settled nothing the store
// holds does not wait for the log, whatever is pending there. The log
// holds a publish's batch open for a second; basic.qos on another channel
// answers at once, before and after it acked a transient message of a
// durable queue.
func TestNoBarrierWithoutSettling(t *testing.T) {
	_, conn := startCrashable(t, t.TempDir(), wal.NewMemFS(), time.Second)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []amqp.Publishing{{Body: []byte("transient")}, {DeliveryMode: amqp.Persistent, Body: []byte("pending")}} {
		if err := ch.Publish("", "q", false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	consumer, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	quick := func(what string) {
		t.Helper()
		start := time.Now()
		if err := consumer.Qos(10, 0, false); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("basic.qos %s took %v: it waited for the log", what, d)
		}
	}
	quick("on a channel that settled nothing")
	d, ok, err := consumer.Get("q", false)
	if err != nil || !ok || string(d.Body) != "transient" {
		t.Fatalf("get: %q %v %v", d.Body, ok, err)
	}
	if err := d.Ack(false); err != nil {
		t.Fatal(err)
	}
	quick("after acking a transient message")
}

// TestAckSyncFailureClosesConnection: when the log fails under the acks a
// synchronous method waits for, the method is not answered: the
// connection closes with 541, and the client does not believe its acks.
func TestAckSyncFailureClosesConnection(t *testing.T) {
	fsys := wal.NewMemFS()
	s, pubConn := startCrashable(t, t.TempDir(), fsys, 0)
	ch, err := pubConn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, pubConn, "q", 1)
	// Another connection: the failure's alarm stops reading publishers.
	conn, err := amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err := cch.Get("q", false)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	fsys.FailSyncs(errors.New("disk on fire"))
	if err := d.Ack(false); err != nil {
		t.Fatal(err)
	}
	err = cch.Qos(1, 0, false)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.InternalError {
		t.Fatalf("basic.qos after acks the log could not sync: %v, want a 541 close", err)
	}
}
