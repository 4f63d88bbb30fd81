package broker_test

import (
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// The acks of one read batch settle together, after the batch; these
// check what a client sees of acks pipelined with what follows them.

// rawConsume declares nothing: it opens channel 1 on a raw connection,
// sets prefetch, consumes q and reads n deliveries, returning their tags.
func rawConsume(t *testing.T, url, q string, prefetch uint16, n int) (*rawConn, []uint64) {
	t.Helper()
	r, _ := rawHandshake(t, url, rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.BasicQos{PrefetchCount: prefetch})
	if _, m := r.readMethod(); m == nil {
		t.Fatal("no basic.qos-ok")
	}
	r.send(1, &wire.BasicConsume{Queue: q, ConsumerTag: "raw"})
	if _, m := r.readMethod(); m == nil {
		t.Fatal("no basic.consume-ok")
	}
	return r, readDeliveries(t, r, n)
}

// readDeliveries reads n deliveries (readDelivery) and returns their tags.
func readDeliveries(t *testing.T, r *rawConn, n int) []uint64 {
	t.Helper()
	tags := make([]uint64, n)
	for i := range tags {
		tags[i], _ = readDelivery(t, r.RawConn, 131072) // the frame_max both servers offer
	}
	return tags
}

// appendAcks appends one basic.ack frame a tag.
func appendAcks(b []byte, tags []uint64) []byte {
	for _, tag := range tags {
		b = wire.AppendMethodFrame(b, 1, &wire.BasicAck{DeliveryTag: tag})
	}
	return b
}

// waitNoConsumers polls until q has no consumer (a closed raw connection's
// channel is gone) and returns its ready messages then. With the server in
// process (v not nil) it also waits for q to have nothing unacked: an ack
// the broker read and lost would leave its message unacked for ever.
func waitNoConsumers(t *testing.T, conn *amqp.Connection, v *broker.VHost, q string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready, consumers := queueCounts(t, conn, q)
		unacked := 0
		if v != nil {
			st, _ := v.QueueStats(q)
			unacked = int(st.Unacked)
		}
		if consumers == 0 && unacked == 0 {
			return ready
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d consumers and %d unacked after 10 s", q, consumers, unacked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPipelinedAcks(t *testing.T) {
	url := os.Getenv("BROKER_TEST_URL")
	var v *broker.VHost
	if url == "" {
		var s *broker.Server
		s, url = servertest.StartServer(t, broker.Config{})
		v = s.VHost("/")
	}
	conn := openConn(t, url)
	ch := openChan(t, conn)
	const n = 200

	fill := func(t *testing.T) string {
		q := uname(t, "acks")
		declareQueue(t, url, ch, q)
		for i := range n {
			publish(t, ch, "", q, body(string(rune('a'+i%26))))
		}
		waitCount(t, conn, q, n)
		return q
	}

	t.Run("socket closed right after", func(t *testing.T) {
		// Acks in the same write as the socket's end still count:
		// nothing comes back.
		q := fill(t)
		r, tags := rawConsume(t, url, q, 0, n)
		r.write(appendAcks(nil, tags))
		_ = r.nc.Close()
		if ready := waitNoConsumers(t, conn, v, q); ready != 0 {
			t.Fatalf("%d of %d acked messages came back after the connection closed", ready, n)
		}
	})

	t.Run("frame error right after", func(t *testing.T) {
		// A frame error ends the connection in the middle of a read
		// batch: the acks before it still count.
		q := fill(t)
		r, tags := rawConsume(t, url, q, 0, n)
		bad := wire.AppendMethodFrame(nil, 1, &wire.BasicQos{})
		bad[len(bad)-1] = 0 // not frame-end
		r.write(append(appendAcks(nil, tags), bad...))
		r.expectConnClose(501, "")
		if ready := waitNoConsumers(t, conn, v, q); ready != 0 {
			t.Fatalf("%d of %d acked messages came back after the frame error", ready, n)
		}
	})

	t.Run("channel closed right after", func(t *testing.T) {
		q := fill(t)
		r, tags := rawConsume(t, url, q, 0, n)
		b := appendAcks(nil, tags[:n/2])
		b = wire.AppendMethodFrame(b, 1, &wire.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
		r.write(b)
		for {
			_, m := r.readMethod()
			if _, ok := m.(*wire.ChannelCloseOk); ok {
				break
			}
		}
		// The unacked half is back, marked redelivered; the acked half
		// never is.
		if ready := waitNoConsumers(t, conn, v, q); ready != n/2 {
			t.Fatalf("%d ready after acking %d of %d and closing the channel, want %d", ready, n/2, n, n/2)
		}
		for range n / 2 {
			if d := getBody(t, ch, q, true); !d.Redelivered {
				t.Fatal("an unacked message came back not marked redelivered")
			}
		}
		r.send(0, &wire.ConnectionClose{ReplyCode: 200})
		r.expectEOF(5 * time.Second)
	})

	t.Run("nack after acks in one write", func(t *testing.T) {
		q := fill(t)
		r, tags := rawConsume(t, url, q, 0, n)
		b := appendAcks(nil, tags[:n/2])
		b = wire.AppendMethodFrame(b, 1, &wire.BasicNack{DeliveryTag: tags[n-1], Multiple: true, Requeue: true})
		r.write(b)
		// The requeued half goes straight back to this consumer.
		again := readDeliveries(t, r, n/2)
		r.write(appendAcks(nil, again))
		r.send(0, &wire.ConnectionClose{ReplyCode: 200})
		r.expectEOF(5 * time.Second)
		if ready := waitNoConsumers(t, conn, v, q); ready != 0 {
			t.Fatalf("%d ready after every message was acked", ready)
		}
	})

	t.Run("prefetch 1, each acked on arrival", func(t *testing.T) {
		// The ack settles before the reader waits for more: the next
		// delivery needs no other frame to come.
		q := fill(t)
		r, tags := rawConsume(t, url, q, 1, 1)
		for i := 1; i < n; i++ {
			r.write(appendAcks(nil, tags))
			tags = readDeliveries(t, r, 1)
		}
		r.write(appendAcks(nil, tags))
		r.send(0, &wire.ConnectionClose{ReplyCode: 200})
		r.expectEOF(5 * time.Second)
		if ready := waitNoConsumers(t, conn, v, q); ready != 0 {
			t.Fatalf("%d ready after every message was acked", ready)
		}
	})
}
