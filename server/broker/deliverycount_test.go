package broker_test

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// x-delivery-count is set on redeliveries as RabbitMQ's quorum queues set
// it; RabbitMQ 3.10's classic queues set none, so these tests run
// in-process only.
const noDeliveryCount = "RabbitMQ 3.10's classic queues set no x-delivery-count"

// deliveryCount returns a delivery's x-delivery-count (ok false: none).
func deliveryCount(t *testing.T, d amqp.Delivery) (int64, bool) {
	t.Helper()
	v, ok := d.Headers["x-delivery-count"]
	if !ok {
		return 0, false
	}
	n, isLong := v.(int64)
	if !isLong {
		t.Fatalf("x-delivery-count is %T %v, want a long (int64)", v, v)
	}
	return n, true
}

// wantDelivery checks a delivery's body, redelivered flag and count (-1:
// no header).
func wantDelivery(t *testing.T, d amqp.Delivery, body string, count int64) {
	t.Helper()
	n, ok := deliveryCount(t, d)
	if string(d.Body) != body || d.Redelivered != (count >= 0) || ok != (count >= 0) || (ok && n != count) {
		t.Fatalf("delivery %q redelivered=%v x-delivery-count=%v (set %v), want %q redelivered=%v count %d",
			d.Body, d.Redelivered, n, ok, body, count >= 0, count)
	}
}

// A message nacked with requeue twice comes back with x-delivery-count 1,
// then 2; its other headers and properties are unchanged, and a
// publisher's own x-delivery-count is kept on a first delivery and
// replaced on a redelivery.
func TestDeliveryCountNackRequeue(t *testing.T) {
	inProcessOnly(t, noDeliveryCount)
	url := brokerURL(t)
	ch := openChan(t, openConn(t, url))
	q := declareQueue(t, url, ch, uname(t, "q")).Name
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	pub := amqp.Publishing{Body: []byte("m"), ContentType: "text/plain", MessageId: "id-1",
		Timestamp: time.Unix(1700000000, 0), Headers: amqp.Table{"b": int32(1), "a": "x"}}
	publish(t, ch, "", q, pub)
	forged := amqp.Publishing{Body: []byte("forged"), Headers: amqp.Table{"x-delivery-count": "mine"}}
	publish(t, ch, "", q, forged)
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, count := range []int64{-1, 1, 2} {
		d := recv(t, ds)
		wantDelivery(t, d, "m", count)
		delete(d.Headers, "x-delivery-count")
		if !reflect.DeepEqual(d.Headers, pub.Headers) || d.ContentType != pub.ContentType ||
			d.MessageId != pub.MessageId || !d.Timestamp.Equal(pub.Timestamp) {
			t.Fatalf("properties changed: %+v", d)
		}
		if count < 2 {
			if err := d.Nack(false, true); err != nil {
				t.Fatal(err)
			}
		} else if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	d := recv(t, ds)
	if v := d.Headers["x-delivery-count"]; string(d.Body) != "forged" || d.Redelivered || v != "mine" {
		t.Fatalf("first delivery of a message with its own header: %q %v %v", d.Body, d.Redelivered, v)
	}
	if err := d.Reject(true); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, recv(t, ds), "forged", 1)
}

// basic.get: the first get carries no count (RabbitMQ 3.10's quorum queues
// add x-delivery-count 0 to it); a nack with requeue, a channel closed
// with the message unacked and basic.recover each count once more.
func TestDeliveryCountGet(t *testing.T) {
	inProcessOnly(t, noDeliveryCount)
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := declareQueue(t, url, ch, uname(t, "q")).Name
	publish(t, ch, "", q, body("g"))
	get := func(ch *amqp.Channel, count int64) amqp.Delivery {
		t.Helper()
		d, ok, err := ch.Get(q, false)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		wantDelivery(t, d, "g", count)
		return d
	}
	if err := get(ch, -1).Nack(false, true); err != nil {
		t.Fatal(err)
	}
	get(ch, 1)
	ch.Close() // requeues it
	ch = openChan(t, conn)
	get(ch, 2)
	//lint:ignore SA1019 basic.recover is part of the protocol under test
	if err := ch.Recover(true); err != nil {
		t.Fatal(err)
	}
	if err := get(ch, 3).Ack(false); err != nil {
		t.Fatal(err)
	}
}

// On the wire: a first delivery's properties are the published bytes; a
// redelivery's are the same with x-delivery-count added and the header
// table sorted, as RabbitMQ encodes it.
func TestDeliveryCountBytes(t *testing.T) {
	inProcessOnly(t, noDeliveryCount)
	url := brokerURL(t)
	r, _ := rawHandshake(t, url, rawOpts{})
	r.openChannel(1)
	q := uname(t, "q")
	r.send(1, &wire.QueueDeclare{Queue: q, AutoDelete: false})
	if _, m := r.readMethod(); m == nil {
		t.Fatal("no declare-ok")
	}
	cleanupQueues(t, url, q)
	// Headers in an order AppendTable would not write, to see them kept.
	raw := []byte{byte(wire.FlagHeaders>>8 | wire.FlagContentType>>8), 0, 4, 't', 'e', 'x', 't'}
	tbl := []byte{1, 'z', 't', 1, 1, 'a', 's', 0, 7}
	raw = append(raw, 0, 0, 0, byte(len(tbl)))
	raw = append(raw, tbl...)
	var out []byte
	out = wire.AppendMethodFrame(out, 1, &wire.BasicPublish{RoutingKey: q})
	out = wire.AppendHeaderFrame(out, 1, wire.ClassBasic, 1, raw)
	out = wire.AppendBodyFrames(out, 1, []byte("b"), 0)
	r.write(out)
	getProps := func() (uint64, []byte) {
		t.Helper()
		r.send(1, &wire.BasicGet{Queue: q})
		_, m := r.readMethod()
		ok, isOk := m.(*wire.BasicGetOk)
		if !isOk {
			t.Fatalf("want basic.get-ok, got %T", m)
		}
		f, err := r.readFrame(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h, err := wire.ParseContentHeader(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.readFrame(5 * time.Second); err != nil { // the body
			t.Fatal(err)
		}
		return ok.DeliveryTag, append([]byte(nil), h.RawProperties...)
	}
	tag, first := getProps()
	if !bytes.Equal(first, raw) {
		t.Fatalf("first delivery's properties\n%q, published\n%q", first, raw)
	}
	r.send(1, &wire.BasicNack{DeliveryTag: tag, Requeue: true})
	_, again := getProps()
	want, _ := wire.AppendWithLongHeader(nil, raw, "x-delivery-count", 1)
	a, x, z := bytes.Index(again, []byte("\x01as")), bytes.Index(again, []byte("x-delivery-countl")), bytes.Index(again, []byte("\x01zt"))
	if !bytes.Equal(again, want) || a < 0 || !(a < x && x < z) {
		t.Fatalf("redelivery's properties\n%q, want\n%q (table sorted by name)", again, want)
	}
}

// Messages recovered after a restart that may have been delivered before
// it (at or below the delivered bound, which runs at least 256 log ids
// ahead of the last delivery) come back redelivered with x-delivery-count
// 1, whatever their count was: the log keeps no count. Messages above the
// bound come back as first deliveries.
func TestDeliveryCountAfterRestart(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	conn := openConn(t, url)
	ch := openChan(t, conn)
	if _, err := ch.QueueDeclare("dq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("filler", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	persist := func(q, b string) {
		t.Helper()
		publish(t, ch, "", q, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b)})
		if c := <-acks; !c.Ack {
			t.Fatal("nack")
		}
	}
	persist("dq", "delivered")
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("dq", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, ds)
	wantDelivery(t, d, "delivered", -1)
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, recv(t, ds), "delivered", 1) // twice delivered, left unacked
	// Log ids past the delivered bound's headroom.
	for range 300 {
		persist("filler", "f")
	}
	persist("dq", "never")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	ch = openChan(t, openConn(t, url))
	for _, want := range []struct {
		body  string
		count int64
	}{{"delivered", 1}, {"never", -1}} {
		d, ok, err := ch.Get("dq", false)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		wantDelivery(t, d, want.body, want.count)
	}
}
