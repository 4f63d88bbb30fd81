package broker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Length limits as RabbitMQ 3.10's classic queues have them: x-max-length
// and x-max-length-bytes count ready messages and their bodies only (not
// properties, not unacked deliveries), the limit itself is within, and
// x-overflow says what goes at a limit: the head (drop-head), or the new
// message, nacked (reject-publish) and dead-lettered too
// (reject-publish-dlx).

// confirmChan opens a channel in confirm mode.
func confirmChan(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch := openChan(t, conn)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return ch
}

// confirmed publishes p on a confirming channel and reports whether the
// broker acked it (false: nacked).
func confirmed(t *testing.T, ch *amqp.Channel, exchange, key string, p amqp.Publishing) bool {
	t.Helper()
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, p)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := dc.WaitContext(ctx)
	if err != nil {
		t.Fatalf("confirm of %q: %v", p.Body, err)
	}
	return ack
}

// wantConfirms publishes bodies in turn and checks each one's ack (true) or
// nack (false).
func wantConfirms(t *testing.T, ch *amqp.Channel, exchange, key string, bodies []string, acks []bool) {
	t.Helper()
	for i, b := range bodies {
		if got := confirmed(t, ch, exchange, key, body(b)); got != acks[i] {
			t.Fatalf("publish %q: ack %v, want %v", b, got, acks[i])
		}
	}
}

// readyBodies takes every ready message and returns their bodies in order.
func readyBodies(t *testing.T, ch *amqp.Channel, q string) []string {
	t.Helper()
	out := []string{}
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("get %s: %v", q, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(d.Body))
	}
}

// wantBodies drains q and compares its bodies with want.
func wantBodies(t *testing.T, ch *amqp.Channel, q string, want ...string) {
	t.Helper()
	if got := readyBodies(t, ch, q); !slices.Equal(got, want) {
		t.Fatalf("queue %s holds %q, want %q", q, got, want)
	}
}

// deadLetterQueue declares a fanout exchange and a queue bound to it, and
// returns their names.
func deadLetterQueue(t *testing.T, u string, ch *amqp.Channel) (dlx, dlq string) {
	t.Helper()
	dlx, dlq = uname(t, "dlx"), uname(t, "dlq")
	declareX(t, u, ch, dlx, "fanout", nil)
	declareQueue(t, u, ch, dlq)
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	return dlx, dlq
}

// wantDeadLetters waits for want (in order) on dlq, each with the x-death
// reason maxlen from queue src.
func wantDeadLetters(t *testing.T, ch *amqp.Channel, dlq, src string, want ...string) {
	t.Helper()
	for _, w := range want {
		m, ok := getWithin(t, ch, dlq, 5*time.Second)
		if !ok {
			t.Fatalf("%q was not dead-lettered", w)
		}
		deaths, _ := m.Headers["x-death"].([]any)
		if string(m.Body) != w || len(deaths) != 1 {
			t.Fatalf("dead-letter %q with x-death %#v, want %q", m.Body, m.Headers["x-death"], w)
		}
		d := deaths[0].(amqp.Table)
		if d["reason"] != "maxlen" || d["queue"] != src || d["count"] != int64(1) {
			t.Fatalf("x-death of %q: %#v", w, d)
		}
	}
	wantBodies(t, ch, dlq)
}

// limitEnv is a connection with a confirming channel and a dead-letter
// exchange with its queue.
type limitEnv struct {
	u        string
	conn     *amqp.Connection
	ch       *amqp.Channel
	dlx, dlq string
}

func newLimitEnv(t *testing.T) limitEnv {
	t.Helper()
	e := limitEnv{u: brokerURL(t)}
	e.conn = openConn(t, e.u)
	e.ch = confirmChan(t, e.conn)
	e.dlx, e.dlq = deadLetterQueue(t, e.u, e.ch)
	return e
}

// getUnacked takes n messages from q with basic.get, leaving them unacked.
func getUnacked(t *testing.T, ch *amqp.Channel, q string, n int) []amqp.Delivery {
	t.Helper()
	var ds []amqp.Delivery
	for range n {
		d, ok, err := ch.Get(q, false)
		if !ok || err != nil {
			t.Fatalf("get %s: %v %v", q, ok, err)
		}
		ds = append(ds, d)
	}
	return ds
}

func declareArgs(t *testing.T, u string, ch *amqp.Channel, name string, args amqp.Table) {
	t.Helper()
	if _, err := ch.QueueDeclare(name, false, false, false, false, args); err != nil {
		t.Fatalf("queue.declare %s: %v", name, err)
	}
	cleanupQueues(t, u, name)
}

func TestMaxLengthBytesDropHead(t *testing.T) {
	e := newLimitEnv(t)
	conn, ch, dlq := e.conn, e.ch, e.dlq
	src := uname(t, "src")
	declareArgs(t, e.u, ch, src, amqp.Table{"x-max-length-bytes": int32(10), "x-dead-letter-exchange": e.dlx})
	// Exactly at the limit nothing goes; properties and empty bodies do
	// not count.
	wantConfirms(t, ch, "", src, []string{"aaaaa", "bbbbb"}, []bool{true, true})
	if !confirmed(t, ch, "", src, amqp.Publishing{Headers: amqp.Table{"h": strings.Repeat("h", 1000)}}) {
		t.Fatal("an empty body with large headers was nacked")
	}
	waitCount(t, conn, src, 3)
	// One byte over: the head goes. A message larger than the limit by
	// itself goes too, with all before it; the publisher is acked.
	wantConfirms(t, ch, "", src, []string{"c", strings.Repeat("x", 18)}, []bool{true, true})
	wantDeadLetters(t, ch, dlq, src, "aaaaa", "bbbbb", "", "c", strings.Repeat("x", 18))
	wantBodies(t, ch, src)
	// Unacked deliveries do not count.
	wantConfirms(t, ch, "", src, []string{"aaaaa", "bbbbb"}, []bool{true, true})
	getUnacked(t, ch, src, 2)
	wantConfirms(t, ch, "", src, []string{"ccccc", "ddddd"}, []bool{true, true})
	waitCount(t, conn, src, 2)
	wantDeadLetters(t, ch, dlq, src)
}

func TestMaxLengthAndMaxLengthBytes(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	ch := confirmChan(t, conn)
	src := uname(t, "src")
	declareArgs(t, u, ch, src, amqp.Table{"x-max-length": int32(3), "x-max-length-bytes": int32(10)})
	// The length limit first, then the bytes limit.
	wantConfirms(t, ch, "", src, []string{"a", "b", "c", "d", "eeeeeeee"}, []bool{true, true, true, true, true})
	waitCount(t, conn, src, 3)
	wantBodies(t, ch, src, "c", "d", "eeeeeeee")

	rp := uname(t, "rp")
	declareArgs(t, u, ch, rp, amqp.Table{"x-max-length": int32(2), "x-max-length-bytes": int32(5), "x-overflow": "reject-publish"})
	wantConfirms(t, ch, "", rp, []string{"aaa", "bbb", "cc", ""}, []bool{true, false, true, false})
	wantBodies(t, ch, rp, "aaa", "cc")
}

func TestMaxLengthBytesRejectPublish(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	ch := confirmChan(t, conn)
	src, other, x := uname(t, "src"), uname(t, "other"), uname(t, "x")
	declareArgs(t, u, ch, src, amqp.Table{"x-max-length-bytes": int32(10), "x-overflow": "reject-publish"})
	declareQueue(t, u, ch, other)
	declareX(t, u, ch, x, "fanout", nil)
	for _, q := range []string{src, other} {
		if err := ch.QueueBind(q, "", x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A message larger than the limit is refused by an empty queue; the
	// limit itself is admitted, an empty body even at the limit; a refused
	// message still reaches the other queue, and its publisher is nacked.
	wantConfirms(t, ch, x, "", []string{strings.Repeat("x", 11), "aaaaa", "bbbbb", "", "c"},
		[]bool{false, true, true, true, false})
	wantBodies(t, ch, src, "aaaaa", "bbbbb", "")
	wantBodies(t, ch, other, strings.Repeat("x", 11), "aaaaa", "bbbbb", "", "c")
	// Unacked deliveries do not count.
	wantConfirms(t, ch, "", src, []string{"aaaaa", "bbbbb"}, []bool{true, true})
	getUnacked(t, ch, src, 2)
	wantConfirms(t, ch, "", src, []string{"ccccc", "ddddd", "e"}, []bool{true, true, false})
}

func TestRejectPublishDLX(t *testing.T) {
	e := newLimitEnv(t)
	u, ch, dlx, dlq := e.u, e.ch, e.dlx, e.dlq
	src, other, x := uname(t, "src"), uname(t, "other"), uname(t, "x")
	declareArgs(t, u, ch, src, amqp.Table{"x-max-length-bytes": int32(10), "x-overflow": "reject-publish-dlx",
		"x-dead-letter-exchange": dlx})
	declareQueue(t, u, ch, other)
	declareX(t, u, ch, x, "direct", nil)
	for _, q := range []string{src, other} {
		if err := ch.QueueBind(q, "k", x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantConfirms(t, ch, x, "k", []string{"aaaaa", "bbbbb", "c"}, []bool{true, true, false})
	m, ok := getWithin(t, ch, dlq, 5*time.Second)
	if !ok || string(m.Body) != "c" {
		t.Fatalf("dead-lettered: %v %q", ok, m.Body)
	}
	d := m.Headers["x-death"].([]any)[0].(amqp.Table)
	if d["reason"] != "maxlen" || d["queue"] != src || d["count"] != int64(1) || d["exchange"] != x {
		t.Fatalf("x-death %#v", d)
	}
	if rk, _ := d["routing-keys"].([]any); len(rk) != 1 || rk[0] != "k" {
		t.Fatalf("routing-keys %#v", d["routing-keys"])
	}
	if m.Headers["x-first-death-reason"] != "maxlen" {
		t.Fatalf("headers %#v", m.Headers)
	}
	wantBodies(t, ch, src, "aaaaa", "bbbbb")
	wantBodies(t, ch, other, "aaaaa", "bbbbb", "c")
	wantBodies(t, ch, dlq)

	// Without a dead-letter exchange it only refuses.
	nodlx := uname(t, "nodlx")
	declareArgs(t, u, ch, nodlx, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx"})
	wantConfirms(t, ch, "", nodlx, []string{"1", "2"}, []bool{true, false})
	wantBodies(t, ch, nodlx, "1")

	// Two full queues dead-lettering into each other: the refused message
	// goes round once and is dropped where it would close the cycle.
	a, b := uname(t, "a"), uname(t, "b")
	declareArgs(t, u, ch, a, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx",
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": b})
	declareArgs(t, u, ch, b, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx",
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": a})
	wantConfirms(t, ch, "", a, []string{"a1"}, []bool{true})
	wantConfirms(t, ch, "", b, []string{"b1"}, []bool{true})
	wantConfirms(t, ch, "", a, []string{"a2"}, []bool{false})
	wantBodies(t, ch, a, "a1")
	wantBodies(t, ch, b, "b1")
	// With room in b, a's refusal lands there.
	wantConfirms(t, ch, "", a, []string{"a1", "a2"}, []bool{true, false})
	m, ok = getWithin(t, ch, b, 5*time.Second)
	if !ok || string(m.Body) != "a2" || m.Headers["x-death"].([]any)[0].(amqp.Table)["queue"] != a {
		t.Fatalf("b got %v %q %#v", ok, m.Body, m.Headers)
	}
}

func TestRequeueOverMaxLength(t *testing.T) {
	e := newLimitEnv(t)
	u, conn, ch, dlx, dlq := e.u, e.conn, e.ch, e.dlx, e.dlq
	// drop-head: the requeued messages go back to the head, so they are
	// the ones dropped (dead-lettered).
	dh := uname(t, "dh")
	declareArgs(t, u, ch, dh, amqp.Table{"x-max-length-bytes": int32(10), "x-dead-letter-exchange": dlx})
	wantConfirms(t, ch, "", dh, []string{"aaaaa", "bbbbb"}, []bool{true, true})
	tags := getUnacked(t, ch, dh, 2)
	wantConfirms(t, ch, "", dh, []string{"ccccc", "ddddd"}, []bool{true, true})
	if err := tags[1].Nack(true, true); err != nil {
		t.Fatal(err)
	}
	wantDeadLetters(t, ch, dlq, dh, "aaaaa", "bbbbb")
	wantBodies(t, ch, dh, "ccccc", "ddddd")

	// reject-publish(-dlx): the queue stays over its limit, nothing is
	// dropped, and publishes are refused until it is under again.
	rp := uname(t, "rp")
	declareArgs(t, u, ch, rp, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish-dlx",
		"x-dead-letter-exchange": dlx})
	wantConfirms(t, ch, "", rp, []string{"1", "2"}, []bool{true, true})
	d := getUnacked(t, ch, rp, 1)[0]
	wantConfirms(t, ch, "", rp, []string{"3", "4"}, []bool{true, false})
	wantDeadLetters(t, ch, dlq, rp, "4")
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, rp, 3)
	wantConfirms(t, ch, "", rp, []string{"5"}, []bool{false})
	wantDeadLetters(t, ch, dlq, rp, "5")
	for _, want := range []string{"1", "2"} {
		if m := getBody(t, ch, rp, true); string(m.Body) != want || m.Redelivered != (want == "1") {
			t.Fatalf("got %q redelivered=%v, want %q", m.Body, m.Redelivered, want)
		}
	}
	wantConfirms(t, ch, "", rp, []string{"6"}, []bool{true})
	wantBodies(t, ch, rp, "3", "6")
}

func TestMaxLengthBytesArguments(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	q := uname(t, "q")
	cleanupQueues(t, u, q)
	prefix := "PRECONDITION_FAILED - invalid arg 'x-max-length-bytes' for queue '" + q + "' in vhost '/': "
	for _, tc := range []struct {
		v    any
		text string
	}{
		{int32(-1), "{value_negative,-1}"},
		{int64(-5), "{value_negative,-5}"},
		{"x", `"expected integer, got longstr"`},
		{1.5, `"expected integer, got double"`},
	} {
		_, err := openChan(t, conn).QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-length-bytes": tc.v})
		wantErr(t, err, 406, prefix+tc.text)
	}
	ch := openChan(t, conn)
	if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-length-bytes": int32(0)}); err != nil {
		t.Fatal(err)
	}
	_, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-length-bytes": int64(10)})
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length-bytes' for queue '"+q+"' in vhost '/': received '10' but current is '0'")
	_, err = openChan(t, conn).QueueDeclare(q, false, false, false, false, nil)
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length-bytes' for queue '"+q+"' in vhost '/': received none but current is the value '0' of type 'signedint'")
	o := uname(t, "o")
	cleanupQueues(t, u, o)
	ch = openChan(t, conn)
	if _, err := ch.QueueDeclare(o, false, false, false, false, amqp.Table{"x-overflow": "reject-publish-dlx"}); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare(o, false, false, false, false, amqp.Table{"x-overflow": "reject-publish"})
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-overflow' for queue '"+o+"' in vhost '/': received 'reject-publish' but current is 'reject-publish-dlx'")
}

// Concurrent publishers racing for the last places of a reject-publish
// queue: every message the queue took was acked and every other one
// nacked, however the admission checks and pushes interleaved.
func TestRejectPublishConcurrentConfirms(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	src := uname(t, "src")
	const limit, publishers, each = 100, 8, 40
	declareArgs(t, u, openChan(t, conn), src, amqp.Table{"x-max-length": int32(limit), "x-overflow": "reject-publish"})
	acks := make(chan int, publishers)
	for range publishers {
		ch := confirmChan(t, openConn(t, u)) // a connection each: in parallel
		go func() {
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, each))
			n := 0
			for range each {
				if err := ch.Publish("", src, false, false, body("m")); err != nil {
					acks <- -1
					return
				}
			}
			for range each {
				select {
				case c := <-confirms:
					if c.Ack {
						n++
					}
				case <-time.After(5 * time.Second):
					acks <- -1
					return
				}
			}
			acks <- n
		}()
	}
	total := 0
	for range publishers {
		n := <-acks
		if n < 0 {
			t.Fatal("a publisher failed or timed out")
		}
		total += n
	}
	if n, _ := queueCounts(t, conn, src); total != limit || n != limit {
		t.Fatalf("%d acks, %d messages in the queue, want %d of each", total, n, limit)
	}
}

// A reject-publish queue that a requeue took over its limit keeps every
// message across a restart: they were all confirmed, and the limit refuses
// publishes, not what the log recovers.
func TestRejectPublishOverLimitRecovered(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	conn := openConn(t, url)
	ch := confirmChan(t, conn)
	if _, err := ch.QueueDeclare("capped", true, false, false, false,
		amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	persistent := func(b string) amqp.Publishing {
		return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b)}
	}
	if !confirmed(t, ch, "", "capped", persistent("first")) {
		t.Fatal("first publish nacked")
	}
	d, ok, err := ch.Get("capped", false)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if !confirmed(t, ch, "", "capped", persistent("second")) {
		t.Fatal("second publish nacked with the first unacked")
	}
	if err := d.Nack(false, true); err != nil { // over the limit now: 2 ready
		t.Fatal(err)
	}
	waitCount(t, conn, "capped", 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	ch = openChan(t, openConn(t, url))
	wantBodies(t, ch, "capped", "first", "second")
}
