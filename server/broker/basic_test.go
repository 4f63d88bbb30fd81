package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// publishN publishes "0".."n-1" to q through the default exchange.
func publishN(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		publish(t, ch, "", q, body(fmt.Sprint(i)))
	}
}

// collect gathers deliveries from several consumers until none arrives for
// quiet.
func collect(t *testing.T, quiet time.Duration, dss ...<-chan amqp.Delivery) [][]amqp.Delivery {
	t.Helper()
	out := make([][]amqp.Delivery, len(dss))
	for {
		got := false
		deadline := time.After(quiet)
	wait:
		for {
			for i, ds := range dss {
				select {
				case d, ok := <-ds:
					if ok {
						out[i] = append(out[i], d)
						got = true
						break wait
					}
				default:
				}
			}
			select {
			case <-deadline:
				break wait
			case <-time.After(time.Millisecond):
			}
		}
		if !got {
			return out
		}
	}
}

func TestBasicQosPerConsumer(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	publishN(t, ch, q1, 5)
	publishN(t, ch, q2, 5)
	waitCount(t, conn, q1, 5)
	waitCount(t, conn, q2, 5)
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	ds1, err := ch.Consume(q1, "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds2, err := ch.Consume(q2, "c2", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, 200*time.Millisecond, ds1, ds2)
	if len(got[0]) != 2 || len(got[1]) != 2 {
		t.Fatalf("with prefetch 2 per consumer: %d and %d deliveries, want 2 and 2", len(got[0]), len(got[1]))
	}
	// One ack frees one slot for that consumer only.
	if err := got[0][0].Ack(false); err != nil {
		t.Fatal(err)
	}
	more := collect(t, 200*time.Millisecond, ds1, ds2)
	if len(more[0]) != 1 || len(more[1]) != 0 {
		t.Fatalf("after one ack: %d and %d more deliveries, want 1 and 0", len(more[0]), len(more[1]))
	}
	if string(more[0][0].Body) != "2" {
		t.Fatalf("got %q, want the next message 2", more[0][0].Body)
	}
}

func TestBasicQosGlobal(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	publishN(t, ch, q1, 5)
	publishN(t, ch, q2, 5)
	waitCount(t, conn, q1, 5)
	waitCount(t, conn, q2, 5)
	if err := ch.Qos(3, 0, true); err != nil {
		t.Fatal(err)
	}
	ds1, err := ch.Consume(q1, "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds2, err := ch.Consume(q2, "c2", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, 200*time.Millisecond, ds1, ds2)
	if n := len(got[0]) + len(got[1]); n != 3 {
		t.Fatalf("with a channel-wide prefetch of 3: %d deliveries (%d+%d), want 3", n, len(got[0]), len(got[1]))
	}
	// Multiple-ack everything: three more arrive.
	last := got[0]
	if len(got[1]) > 0 && (len(last) == 0 || got[1][len(got[1])-1].DeliveryTag > last[len(last)-1].DeliveryTag) {
		last = got[1]
	}
	if err := ch.Ack(last[len(last)-1].DeliveryTag, true); err != nil {
		t.Fatal(err)
	}
	more := collect(t, 200*time.Millisecond, ds1, ds2)
	if n := len(more[0]) + len(more[1]); n != 3 {
		t.Fatalf("after acking all: %d more deliveries, want 3", n)
	}
}

func TestBasicQosUnlimitedAndNoAck(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	publishN(t, ch, q, 20)
	waitCount(t, conn, q, 20)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	// Prefetch does not limit a no-ack consumer.
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if d := recv(t, ds); string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %q", i, d.Body)
		}
	}
	waitCount(t, conn, q, 0)
}

func TestBasicServerConsumerTag(t *testing.T) {
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.QueueDeclare{Exclusive: true})
	_, m := r.readMethod()
	q := m.(*wire.QueueDeclareOk).Queue
	tags := map[string]bool{}
	for i := 0; i < 3; i++ {
		r.send(1, &wire.BasicConsume{Queue: q})
		_, m = r.readMethod()
		ok, isOk := m.(*wire.BasicConsumeOk)
		if !isOk {
			t.Fatalf("want consume-ok, got %s", m.MethodName())
		}
		if !strings.HasPrefix(ok.ConsumerTag, "amq.ctag-") || tags[ok.ConsumerTag] {
			t.Fatalf("server tag %q", ok.ConsumerTag)
		}
		tags[ok.ConsumerTag] = true
	}
}

func TestBasicExclusiveConsumer(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	if _, err := ch.Consume(q, "only", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err := openChan(t, conn).Consume(q, "second", false, false, false, false, nil)
	wantErr(t, err, 403, "ACCESS_REFUSED - queue '"+q+"' in vhost '/' in exclusive use")
	// An exclusive consumer cannot join existing consumers either.
	q2 := tempQueue(t, ch)
	if _, err := ch.Consume(q2, "first", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err = openChan(t, conn).Consume(q2, "excl", false, true, false, false, nil)
	wantErr(t, err, 403, "ACCESS_REFUSED - queue '"+q2+"' in vhost '/' in exclusive use")
	// After the exclusive consumer cancels, others may consume.
	if err := ch.Cancel("only", false); err != nil {
		t.Fatal(err)
	}
	if _, err := openChan(t, conn).Consume(q, "later", false, false, false, false, nil); err != nil {
		t.Fatalf("consume after the exclusive consumer left: %v", err)
	}
}

func TestBasicCancel(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	ds, err := ch.Consume(q, "c", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", q, body("before"))
	if d := recv(t, ds); string(d.Body) != "before" || d.ConsumerTag != "c" {
		t.Fatalf("got %+v", d)
	}
	if err := ch.Cancel("c", false); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatal("delivery after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("delivery channel not closed by cancel")
	}
	publish(t, ch, "", q, body("after"))
	waitCount(t, conn, q, 1)
	// Cancelling an unknown tag is not an error.
	if err := ch.Cancel("never-existed", false); err != nil {
		t.Fatalf("cancel of an unknown tag: %v", err)
	}
}

func TestBasicMandatoryReturn(t *testing.T) {
	_, ch := dial(t, brokerURL(t))
	returns := ch.NotifyReturn(make(chan amqp.Return, 2))
	key := uname(t, "nobody")
	if err := ch.Publish("amq.direct", key, true, false, amqp.Publishing{Body: []byte("back"), MessageId: "m1"}); err != nil {
		t.Fatal(err)
	}
	// Not mandatory: dropped silently.
	if err := ch.Publish("amq.direct", key, false, false, body("dropped")); err != nil {
		t.Fatal(err)
	}
	// Mandatory but routed: no return.
	q := tempQueue(t, ch)
	if err := ch.Publish("", q, true, false, body("routed")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || r.Exchange != "amq.direct" || r.RoutingKey != key ||
			string(r.Body) != "back" || r.MessageId != "m1" {
			t.Fatalf("return %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return")
	}
	if d := getBody(t, ch, q, true); string(d.Body) != "routed" {
		t.Fatalf("got %q", d.Body)
	}
	select {
	case r := <-returns:
		t.Fatalf("unexpected return %q", r.Body)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestBasicImmediate(t *testing.T) {
	conn, ch := dial(t, brokerURL(t))
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Publish("", "x", false, true, body("now")); err != nil {
		t.Fatal(err)
	}
	wantClose(t, closed, 540, "NOT_IMPLEMENTED - immediate=true")
}

func TestBasicGet(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	if _, ok, err := ch.Get(q, false); err != nil || ok {
		t.Fatalf("get on an empty queue: ok=%v err=%v", ok, err)
	}
	publishN(t, ch, q, 3)
	waitCount(t, conn, q, 3)
	for i := 0; i < 3; i++ {
		d, ok, err := ch.Get(q, true)
		if err != nil || !ok {
			t.Fatalf("get %d: ok=%v err=%v", i, ok, err)
		}
		if string(d.Body) != fmt.Sprint(i) || d.MessageCount != uint32(2-i) || d.Redelivered || d.RoutingKey != q {
			t.Fatalf("get %d: body %q count %d redelivered %v", i, d.Body, d.MessageCount, d.Redelivered)
		}
	}
	if _, ok, _ := ch.Get(q, true); ok {
		t.Fatal("queue not empty")
	}
}

func TestBasicAckNackReject(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	publishN(t, ch, q, 8)
	waitCount(t, conn, q, 8)
	var ds []amqp.Delivery
	for i := 0; i < 8; i++ {
		ds = append(ds, getBody(t, ch, q, false))
	}
	// ack 0..2 with multiple; reject 3 without requeue (dropped); nack 4..5
	// multiple without requeue (dropped); reject 6 with requeue; nack 7
	// with requeue.
	if err := ds[2].Ack(true); err != nil {
		t.Fatal(err)
	}
	if err := ds[3].Reject(false); err != nil {
		t.Fatal(err)
	}
	if err := ds[5].Nack(true, false); err != nil {
		t.Fatal(err)
	}
	if err := ds[6].Reject(true); err != nil {
		t.Fatal(err)
	}
	if err := ds[7].Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, q, 2)
	for _, want := range []string{"6", "7"} {
		d := getBody(t, ch, q, true)
		if string(d.Body) != want || !d.Redelivered {
			t.Fatalf("got %q redelivered=%v, want %s redelivered", d.Body, d.Redelivered, want)
		}
	}
}

func TestBasicRequeueKeepsPlace(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	publishN(t, ch, q, 6) // 0..5
	waitCount(t, conn, q, 6)
	var ds []amqp.Delivery
	for i := 0; i < 4; i++ { // take 0..3
		ds = append(ds, getBody(t, ch, q, false))
	}
	// Requeue 3 then 1: they return to their original places, ahead of 4.
	if err := ds[3].Nack(false, true); err != nil {
		t.Fatal(err)
	}
	if err := ds[1].Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, q, 4)
	for _, want := range []struct {
		body        string
		redelivered bool
	}{{"1", true}, {"3", true}, {"4", false}, {"5", false}} {
		d := getBody(t, ch, q, true)
		if string(d.Body) != want.body || d.Redelivered != want.redelivered {
			t.Fatalf("got %q redelivered=%v, want %q redelivered=%v", d.Body, d.Redelivered, want.body, want.redelivered)
		}
	}
}

func TestBasicRecover(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	q := tempQueue(t, ch)
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, ch, q, 3)
	for i := 0; i < 3; i++ {
		if d := recv(t, ds); d.Redelivered {
			t.Fatalf("first delivery flagged redelivered")
		}
	}
	//lint:ignore SA1019 basic.recover is part of the protocol under test
	if err := ch.Recover(true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d := recv(t, ds)
		if string(d.Body) != fmt.Sprint(i) || !d.Redelivered {
			t.Fatalf("after recover: %q redelivered=%v", d.Body, d.Redelivered)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	expectNoDelivery(t, ds, 200*time.Millisecond)
}

func TestBasicUnknownDeliveryTag(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	cases := []struct {
		name string
		do   func(ch *amqp.Channel, q string)
		text string
	}{
		{"ack never delivered", func(ch *amqp.Channel, q string) { _ = ch.Ack(42, false) }, "PRECONDITION_FAILED - unknown delivery tag 42"},
		{"double ack", func(ch *amqp.Channel, q string) {
			d := getBody(t, ch, q, false)
			_ = d.Ack(false)
			_ = d.Ack(false)
		}, "PRECONDITION_FAILED - unknown delivery tag 1"},
		{"nack after ack multiple", func(ch *amqp.Channel, q string) {
			getBody(t, ch, q, false)
			d := getBody(t, ch, q, false)
			_ = d.Ack(true)
			_ = ch.Nack(1, false, true)
		}, "PRECONDITION_FAILED - unknown delivery tag 1"},
		{"reject a no-ack delivery", func(ch *amqp.Channel, q string) {
			d := getBody(t, ch, q, true)
			_ = d.Reject(false)
		}, "PRECONDITION_FAILED - unknown delivery tag 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := openChan(t, conn)
			q := tempQueue(t, ch)
			publishN(t, ch, q, 2)
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			tc.do(ch, q)
			wantClose(t, closed, 406, tc.text)
		})
	}
}

func TestBasicConsumerCancelNotify(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "doomed")
	declareQueue(t, u, ch, name)
	cancels := ch.NotifyCancel(make(chan string, 1))
	ds, err := ch.Consume(name, "watcher", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openChan(t, conn).QueueDelete(name, false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "watcher" {
			t.Fatalf("cancelled tag %q", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.cancel from the server")
	}
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatal("delivery after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("delivery channel not closed")
	}
	// The channel stays open.
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	// A raw client without consumer_cancel_notify gets no basic.cancel.
	r, _ := rawHandshake(t, u, rawOpts{})
	r.openChannel(1)
	qn := uname(t, "doomed2")
	cleanupQueues(t, u, qn)
	r.send(1, &wire.QueueDeclare{Queue: qn})
	r.readMethod()
	r.send(1, &wire.BasicConsume{Queue: qn, ConsumerTag: "raw"})
	r.readMethod()
	if _, err := openChan(t, conn).QueueDelete(qn, false, false, false); err != nil {
		t.Fatal(err)
	}
	if f, err := r.readFrame(200 * time.Millisecond); err == nil && f.Type != wire.FrameHeartbeat {
		m, _ := wire.DecodeMethod(f.Payload)
		t.Fatalf("client without consumer_cancel_notify got %v", m)
	}
}

func TestBasicRedeliveryOnChannelClose(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	publishN(t, ch, q, 3)
	cch := openChan(t, conn)
	ds, err := cch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		recv(t, ds)
	}
	if n, _ := queueCounts(t, conn, q); n != 0 {
		t.Fatalf("ready %d while delivered", n)
	}
	cch.Close()
	waitCount(t, conn, q, 3)
	for i := 0; i < 3; i++ {
		d := getBody(t, ch, q, true)
		if string(d.Body) != fmt.Sprint(i) || !d.Redelivered {
			t.Fatalf("got %q redelivered=%v", d.Body, d.Redelivered)
		}
	}
}

func TestBasicPublishUserID(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	publish(t, ch, "", q, amqp.Publishing{UserId: "guest", Body: []byte("me")})
	if d := getBody(t, ch, q, true); d.UserId != "guest" {
		t.Fatalf("user_id %q", d.UserId)
	}
	ch2 := openChan(t, conn)
	closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, ch2, "", q, amqp.Publishing{UserId: "mallory", Body: []byte("spoof")})
	wantClose(t, closed, 406, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'")
}
