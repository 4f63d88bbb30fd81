package broker_test

import (
	"fmt"
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Single active consumer (x-single-active-consumer), as RabbitMQ 3.10's
// classic queues have it: the first consumer gets everything; when it is
// cancelled or its channel closes, the consumer of the highest x-priority,
// the earliest subscribed among equals, takes over. A later consumer of a
// higher priority does not take over from a live one.

var sacArgs = amqp.Table{"x-single-active-consumer": true}

// sacQueue declares a single-active-consumer queue deleted at the end.
func sacQueue(t *testing.T, url string, conn *amqp.Connection, suffix string) string {
	t.Helper()
	q := uname(t, suffix)
	cleanupQueues(t, url, q)
	ch := openChan(t, conn)
	defer ch.Close()
	if _, err := ch.QueueDeclare(q, false, false, false, false, sacArgs); err != nil {
		t.Fatalf("declare %s: %v", q, err)
	}
	return q
}

// sacSetup connects to the broker under test and declares a
// single-active-consumer queue; pub is a channel to publish on.
func sacSetup(t *testing.T) (conn *amqp.Connection, q string, pub *amqp.Channel) {
	t.Helper()
	url := brokerURL(t)
	conn = openConn(t, url)
	q = sacQueue(t, url, conn, "q")
	return conn, q, openChan(t, conn)
}

// sacConsumer is a consumer on a channel of its own.
type sacConsumer struct {
	tag string
	ch  *amqp.Channel
	ds  <-chan amqp.Delivery
}

func sacConsume(t *testing.T, conn *amqp.Connection, q, tag string, prefetch int, args amqp.Table) *sacConsumer {
	t.Helper()
	ch := openChan(t, conn)
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q, tag, false, false, false, false, args)
	if err != nil {
		t.Fatalf("consume %s: %v", tag, err)
	}
	return &sacConsumer{tag: tag, ch: ch, ds: ds}
}

// take receives the given bodies in order; a trailing "*" means
// redelivered.
func (c *sacConsumer) take(t *testing.T, want ...string) []amqp.Delivery {
	t.Helper()
	var got []amqp.Delivery
	for _, w := range want {
		d := recv(t, c.ds)
		s := string(d.Body)
		if d.Redelivered {
			s += "*"
		}
		if s != w {
			t.Fatalf("%s got %q, want %q (of %q)", c.tag, s, w, want)
		}
		got = append(got, d)
	}
	return got
}

// close closes c's channel: its unacked messages are requeued.
func (c *sacConsumer) close(t *testing.T) {
	t.Helper()
	if err := c.ch.Close(); err != nil {
		t.Fatal(err)
	}
}

// cancel cancels c: its unacked messages stay with its channel.
func (c *sacConsumer) cancel(t *testing.T) {
	t.Helper()
	if err := c.ch.Cancel(c.tag, false); err != nil {
		t.Fatal(err)
	}
}

// idle fails if a delivery for c is waiting.
func (c *sacConsumer) idle(t *testing.T) {
	t.Helper()
	select {
	case d, ok := <-c.ds:
		if ok {
			t.Fatalf("%s, not the active consumer, got %q", c.tag, d.Body)
		}
	default:
	}
}

func publishAll(t *testing.T, ch *amqp.Channel, q string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		publish(t, ch, "", q, body(b))
	}
}

func TestSACArgumentValidation(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	q := uname(t, "q")
	cleanupQueues(t, url, q)
	for _, c := range []struct {
		v    any
		kind string
	}{
		{"true", "longstr"}, {[]byte("true"), "binary"}, {int32(1), "signedint"}, {int64(0), "long"},
		{int8(1), "byte"}, {uint8(1), "unsignedbyte"}, {float64(1), "double"}, {amqp.Table{}, "table"}, {nil, "void"},
	} {
		ch := openChan(t, conn)
		_, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-single-active-consumer": c.v})
		wantErr(t, err, 406, fmt.Sprintf("PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '%s' in vhost '/': {unacceptable_type,%s}", q, c.kind))
	}
	for _, v := range []bool{false, true} {
		ch := openChan(t, conn)
		if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-single-active-consumer": v}); err != nil {
			t.Fatalf("x-single-active-consumer %v: %v", v, err)
		}
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Fatal(err)
		}
		ch.Close()
	}
}

func TestSACRedeclareEquivalence(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	on, off, plain := uname(t, "on"), uname(t, "off"), uname(t, "plain")
	cleanupQueues(t, url, on, off, plain)
	ch := openChan(t, conn)
	for name, args := range map[string]amqp.Table{on: sacArgs, off: {"x-single-active-consumer": false}, plain: nil} {
		if _, err := ch.QueueDeclare(name, false, false, false, false, args); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ch.QueueDeclare(on, false, false, false, false, amqp.Table{"x-single-active-consumer": true}); err != nil {
		t.Fatalf("equivalent redeclare: %v", err)
	}
	prefix := "PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue '%s' in vhost '/': "
	for _, c := range []struct {
		queue string
		args  amqp.Table
		text  string
	}{
		{on, nil, "received none but current is the value 'true' of type 'bool'"},
		{on, amqp.Table{"x-single-active-consumer": false}, "received 'false' but current is 'true'"},
		{on, amqp.Table{"x-single-active-consumer": "true"}, "received 'true' but current is 'true'"},
		{on, amqp.Table{"x-single-active-consumer": int32(1)}, "received '1' but current is 'true'"},
		// A redeclare is compared, not validated.
		{on, amqp.Table{"x-single-active-consumer": "x"}, "received 'x' but current is 'true'"},
		{off, nil, "received none but current is the value 'false' of type 'bool'"},
		{off, amqp.Table{"x-single-active-consumer": "x"}, "received 'x' but current is 'false'"},
		{plain, amqp.Table{"x-single-active-consumer": true}, "received the value 'true' of type 'bool' but current is none"},
		{plain, amqp.Table{"x-single-active-consumer": false}, "received the value 'false' of type 'bool' but current is none"},
	} {
		ch := openChan(t, conn)
		_, err := ch.QueueDeclare(c.queue, false, false, false, false, c.args)
		wantErr(t, err, 406, fmt.Sprintf(prefix, c.queue)+c.text)
	}
}

// One consumer gets everything; on cancel the next in subscription order
// gets what comes after, and on the old one's channel close its requeued
// messages.
func TestSACTakeover(t *testing.T) {
	conn, q, pub := sacSetup(t)
	c1 := sacConsume(t, conn, q, "c1", 10, nil)
	c2 := sacConsume(t, conn, q, "c2", 10, nil)
	c3 := sacConsume(t, conn, q, "c3", 10, nil)
	if _, n := queueCounts(t, conn, q); n != 3 {
		t.Fatalf("%d consumers, want 3 (the waiting ones count)", n)
	}
	publishAll(t, pub, q, "1", "2", "3")
	got := c1.take(t, "1", "2", "3")
	c2.idle(t)
	c3.idle(t)
	if err := got[0].Ack(false); err != nil {
		t.Fatal(err)
	}
	// basic.cancel leaves 2 and 3 unacked with c1; c2 is now active.
	c1.cancel(t)
	publishAll(t, pub, q, "4", "5")
	c2.take(t, "4", "5")
	c3.idle(t)
	// Closing c1's channel requeues 2 and 3, to c2.
	c1.close(t)
	c2.take(t, "2*", "3*")
	// c2 goes with four unacked: c3 gets them all, in queue order.
	c2.close(t)
	c3.take(t, "2*", "3*", "4*", "5*")
}

// A later consumer of a higher priority does not take over from the
// active one; when the active one goes, the highest priority takes over,
// the earliest subscribed among equals.
func TestSACPriorities(t *testing.T) {
	conn, q, pub := sacSetup(t)
	prio := func(n int32) amqp.Table { return amqp.Table{"x-priority": n} }
	p1 := sacConsume(t, conn, q, "p1", 10, nil)
	p2 := sacConsume(t, conn, q, "p2", 10, prio(10))
	p3 := sacConsume(t, conn, q, "p3", 10, nil)
	p4 := sacConsume(t, conn, q, "p4", 10, prio(5))
	p5 := sacConsume(t, conn, q, "p5", 10, prio(5))
	p6 := sacConsume(t, conn, q, "p6", 10, prio(-1))
	publishAll(t, pub, q, "1", "2")
	p1.take(t, "1", "2")
	p1.close(t)
	p2.take(t, "1*", "2*")
	publishAll(t, pub, q, "3")
	p2.take(t, "3")
	p2.cancel(t)
	publishAll(t, pub, q, "4")
	p4.take(t, "4")
	p2.close(t)
	p4.take(t, "1*", "2*", "3*")
	p4.close(t)
	p5.take(t, "1*", "2*", "3*", "4*")
	p5.close(t)
	p3.take(t, "1*", "2*", "3*", "4*")
	p6.idle(t)
	p3.close(t)
	p6.take(t, "1*", "2*", "3*", "4*")
}

// The active consumer's prefetch holds back the rest: the others get
// nothing while it is full.
func TestSACPrefetch(t *testing.T) {
	conn, q, pub := sacSetup(t)
	f1 := sacConsume(t, conn, q, "f1", 2, nil)
	f2 := sacConsume(t, conn, q, "f2", 10, nil)
	publishAll(t, pub, q, "1", "2", "3", "4", "5")
	got := f1.take(t, "1", "2")
	f2.idle(t)
	if err := got[1].Ack(true); err != nil {
		t.Fatal(err)
	}
	f1.take(t, "3", "4")
	f2.idle(t)
	// 5 waited for f1, not for f2: it comes to f2 after the requeued ones
	// only when f1's channel closes.
	f1.close(t)
	f2.take(t, "3*", "4*", "5")
}

// With a channel-wide prefetch (global basic.qos) shared by two
// consumers of the queue, the waiting one takes none of the window.
func TestSACSharedChannelPrefetch(t *testing.T) {
	conn, q, pub := sacSetup(t)
	ch := openChan(t, conn)
	if err := ch.Qos(2, 0, true); err != nil {
		t.Fatal(err)
	}
	active, err := ch.Consume(q, "active", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Higher priority, so first in the queue's order, but not active.
	waiting, err := ch.Consume(q, "waiting", false, false, false, false, amqp.Table{"x-priority": int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	c := &sacConsumer{tag: "active", ch: ch, ds: active}
	w := &sacConsumer{tag: "waiting", ch: ch, ds: waiting}
	publishAll(t, pub, q, "1", "2", "3")
	got := c.take(t, "1", "2")
	w.idle(t)
	if err := got[1].Ack(true); err != nil {
		t.Fatal(err)
	}
	got = c.take(t, "3")
	if err := got[0].Ack(false); err != nil {
		t.Fatal(err)
	}
	// The waiting consumer takes over on cancel and gets what follows.
	c.cancel(t)
	publishAll(t, pub, q, "4")
	w.take(t, "4")
}

// An exclusive consumer is refused on a single-active-consumer queue, even
// one without consumers.
func TestSACExclusiveConsumer(t *testing.T) {
	conn, q, _ := sacSetup(t)
	text := fmt.Sprintf("ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use", q)
	ch := openChan(t, conn)
	_, err := ch.Consume(q, "x1", false, true, false, false, nil)
	wantErr(t, err, 403, text)
	sacConsume(t, conn, q, "c1", 10, nil)
	ch = openChan(t, conn)
	_, err = ch.Consume(q, "x2", false, true, false, false, nil)
	wantErr(t, err, 403, text)
	if _, n := queueCounts(t, conn, q); n != 1 {
		t.Fatalf("%d consumers, want 1", n)
	}
}

// basic.get takes from a single-active-consumer queue whatever its
// consumers.
func TestSACBasicGet(t *testing.T) {
	conn, q, pub := sacSetup(t)
	g1 := sacConsume(t, conn, q, "g1", 1, nil)
	sacConsume(t, conn, q, "g2", 10, nil)
	publishAll(t, pub, q, "1", "2", "3")
	g1.take(t, "1")
	if d := getBody(t, pub, q, true); string(d.Body) != "2" {
		t.Fatalf("basic.get got %q, want 2", d.Body)
	}
	waitCount(t, conn, q, 1)
}

// The queue need not wait for another event to serve the new active
// consumer when the old one is cancelled while full. RabbitMQ 3.10 leaves
// the ready messages until the next event and then crashes the queue
// (rabbitmq-server#5460).
func TestSACCancelFullActive(t *testing.T) {
	inProcessOnly(t, "RabbitMQ 3.10 stalls, then crashes the queue (rabbitmq-server#5460)")
	conn, q, pub := sacSetup(t)
	f1 := sacConsume(t, conn, q, "f1", 2, nil)
	f2 := sacConsume(t, conn, q, "f2", 10, nil)
	publishAll(t, pub, q, "1", "2", "3")
	f1.take(t, "1", "2")
	f1.cancel(t)
	f2.take(t, "3")
	publishAll(t, pub, q, "4")
	f2.take(t, "4")
	f1.close(t)
	f2.take(t, "1*", "2*")
}

// A durable single-active-consumer queue is one again after a restart.
func TestSACRecovered(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	ch := openChan(t, openConn(t, url))
	if _, err := ch.QueueDeclare("q", true, false, false, false, sacArgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	conn := openConn(t, url)
	ch = openChan(t, conn)
	_, err := ch.QueueDeclare("q", true, false, false, false, nil)
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue 'q' in vhost '/': received none but current is the value 'true' of type 'bool'")
	c1 := sacConsume(t, conn, "q", "c1", 10, nil)
	c2 := sacConsume(t, conn, "q", "c2", 10, nil)
	publishAll(t, openChan(t, conn), "q", "1", "2")
	c1.take(t, "1", "2")
	c2.idle(t)
	c1.close(t)
	c2.take(t, "1*", "2*")
}
