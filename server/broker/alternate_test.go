package broker_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Alternate exchanges (RabbitMQ's alternate-exchange argument): what an
// exchange's own bindings do not match goes on to its alternate.

// declareX declares a non-durable exchange deleted at the end of the test.
func declareX(t *testing.T, u string, ch *amqp.Channel, name, kind string, args amqp.Table) {
	t.Helper()
	if err := ch.ExchangeDeclare(name, kind, false, false, false, false, args); err != nil {
		t.Fatalf("exchange.declare %s: %v", name, err)
	}
	cleanupExchanges(t, u, name)
}

func ae(name string) amqp.Table { return amqp.Table{"alternate-exchange": name} }

// directWithAE declares direct exchange x with a new fanout as its
// alternate, and returns a queue bound to that fanout.
func directWithAE(t *testing.T, u string, ch *amqp.Channel, x string) string {
	t.Helper()
	fan := x + "-ae"
	declareX(t, u, ch, fan, "fanout", nil)
	declareX(t, u, ch, x, "direct", ae(fan))
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "", fan, false, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

// returnedKeys publishes a mandatory marker that nothing routes and returns
// the routing keys of the basic.returns that came before it, in order: the
// publishes made before it on ch that came back.
func returnedKeys(t *testing.T, ch *amqp.Channel, returns <-chan amqp.Return) []string {
	t.Helper()
	marker := uname(t, "marker")
	if err := ch.Publish("amq.direct", marker, true, false, body("marker")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-returns:
			if r.RoutingKey == marker {
				return keys
			}
			if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" {
				t.Fatalf("return %d %q", r.ReplyCode, r.ReplyText)
			}
			keys = append(keys, r.Exchange+"/"+r.RoutingKey)
		case <-deadline:
			t.Fatalf("no return for the marker; returns so far %q", keys)
		}
	}
}

func TestAlternateExchangeRouting(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	n := func(s string) string { return uname(t, s) }
	q, qAE, qB, qC := tempQueue(t, ch), tempQueue(t, ch), tempQueue(t, ch), tempQueue(t, ch)
	bind := func(q, key, x string) {
		t.Helper()
		if err := ch.QueueBind(q, key, x, false, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Simple: an alternate that is a fanout takes what x does not route.
	fan, x := n("fan"), n("x")
	declareX(t, u, ch, fan, "fanout", nil)
	declareX(t, u, ch, x, "direct", ae(fan))
	bind(qAE, "", fan)
	bind(q, "bound", x)
	publish(t, ch, x, "bound", body("routed"))
	if err := ch.Publish(x, "unbound", true, false, body("to-ae")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, ch, q); !sameStrings(got, []string{"routed"}) {
		t.Fatalf("bound queue got %q", got)
	}
	if got := drain(t, ch, qAE); !sameStrings(got, []string{"to-ae"}) {
		t.Fatalf("alternate's queue got %q", got)
	}

	// A chain of two: a → b → c, each with a binding of its own.
	a, b, c := n("a"), n("b"), n("c")
	declareX(t, u, ch, c, "direct", nil)
	declareX(t, u, ch, b, "topic", ae(c))
	declareX(t, u, ch, a, "direct", ae(b))
	bind(qB, "kb.*", b)
	bind(qC, "kc", c)
	for _, k := range []string{"kb.1", "kc", "none"} {
		if err := ch.Publish(a, k, true, false, body(k)); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(t, ch, qB); !sameStrings(got, []string{"kb.1"}) {
		t.Fatalf("b's queue got %q", got)
	}
	if got := drain(t, ch, qC); !sameStrings(got, []string{"kc"}) {
		t.Fatalf("c's queue got %q", got)
	}

	// A loop (l1 → l2 → l1) ends: unroutable comes back once; what l2
	// routes is routed.
	l1, l2 := n("l1"), n("l2")
	declareX(t, u, ch, l1, "direct", ae(l2))
	declareX(t, u, ch, l2, "direct", ae(l1))
	bind(q, "in-l2", l2)
	if err := ch.Publish(l1, "loop", true, false, body("loop")); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish(l1, "in-l2", true, false, body("in-l2")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, ch, q); !sameStrings(got, []string{"in-l2"}) {
		t.Fatalf("l2's queue got %q", got)
	}

	// A missing alternate, or "" or "amq.default", routes nothing.
	missing, empty, dflt := n("missing"), n("empty"), n("dflt")
	declareX(t, u, ch, missing, "direct", ae(n("nonexistent")))
	declareX(t, u, ch, empty, "direct", ae(""))
	declareX(t, u, ch, dflt, "direct", ae("amq.default"))
	for _, x := range []string{missing, empty, dflt} {
		if err := ch.Publish(x, q, true, false, body("lost")); err != nil {
			t.Fatal(err)
		}
	}

	// An exchange whose bindings lead only to an exchange that routes
	// nothing does not use its alternate: its own bindings matched.
	e2e, sink := n("e2e"), n("sink")
	declareX(t, u, ch, sink, "direct", nil)
	declareX(t, u, ch, e2e, "direct", ae(fan))
	if err := ch.ExchangeBind(sink, "k", e2e, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish(e2e, "k", true, false, body("e2e")); err != nil {
		t.Fatal(err)
	}

	// An internal exchange can be an alternate.
	internal, viaInternal := n("internal"), n("via-internal")
	if err := ch.ExchangeDeclare(internal, "fanout", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, internal)
	declareX(t, u, ch, viaInternal, "direct", ae(internal))
	bind(qB, "", internal)
	if err := ch.Publish(viaInternal, "any", true, false, body("internal")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, ch, qB); !sameStrings(got, []string{"internal"}) {
		t.Fatalf("internal alternate's queue got %q", got)
	}

	want := []string{a + "/none", l1 + "/loop", missing + "/" + q, empty + "/" + q, dflt + "/" + q, e2e + "/k"}
	if got := returnedKeys(t, ch, returns); !sameStrings(got, want) {
		t.Fatalf("returned %q, want %q", got, want)
	}
	if got := drain(t, ch, qAE); len(got) != 0 {
		t.Fatalf("the fanout alternate got %q", got)
	}
	_ = conn
}

// TestAlternateExchangeConfirmsAndTx: a publish the alternate routes is
// confirmed like any other, and in a transaction it goes out at commit.
func TestAlternateExchangeConfirmsAndTx(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	x := uname(t, "x")
	q := directWithAE(t, u, ch, x)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	if err := ch.Publish(x, "k", true, false, amqp.Publishing{Body: []byte("c"), DeliveryMode: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-acks:
		if !c.Ack {
			t.Fatalf("nacked: %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no confirm")
	}
	waitCount(t, conn, q, 1)

	// In a transaction the publishes go out at commit: the alternate
	// routes one, the other (no alternate) comes back then.
	tch := openChan(t, conn)
	returns := tch.NotifyReturn(make(chan amqp.Return, 4))
	lone := uname(t, "lone")
	declareX(t, u, ch, lone, "direct", nil)
	if err := tch.Tx(); err != nil {
		t.Fatal(err)
	}
	if err := tch.Publish(x, "k", true, false, body("tx")); err != nil {
		t.Fatal(err)
	}
	if err := tch.Publish(lone, "k", true, false, body("back")); err != nil {
		t.Fatal(err)
	}
	if n, _ := queueCounts(t, conn, q); n != 1 {
		t.Fatalf("before commit the queue has %d, want 1", n)
	}
	if err := tch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, q, 2)
	select {
	case r := <-returns:
		if r.Exchange != lone || string(r.Body) != "back" {
			t.Fatalf("return %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return after commit")
	}
}

// TestAlternateExchangeDeclare: the argument must be a string, and a
// redeclare must name the same alternate (the one argument RabbitMQ
// compares on exchanges).
func TestAlternateExchangeDeclare(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	x := uname(t, "x")
	for _, c := range []struct {
		v    any
		kind string
	}{{int32(5), "signedint"}, {[]byte("b"), "binary"}, {true, "bool"}, {amqp.Table{"a": int32(1)}, "table"}} {
		ch := openChan(t, conn)
		err := ch.ExchangeDeclare(x, "direct", false, false, false, false, amqp.Table{"alternate-exchange": c.v})
		wantErr(t, err, 406, "PRECONDITION_FAILED - invalid type '"+c.kind+"' for arg 'alternate-exchange' in exchange '"+
			x+"' in vhost '/'")
	}
	declareX(t, u, ch, x, "direct", ae("a"))
	ok := []amqp.Table{ae("a"), {"alternate-exchange": []byte("a")}, {"alternate-exchange": "a", "x-other": int32(1)}}
	for _, args := range ok {
		if err := openChan(t, conn).ExchangeDeclare(x, "direct", false, false, false, false, args); err != nil {
			t.Fatalf("redeclare with %v: %v", args, err)
		}
	}
	prefix := "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '" + x + "' in vhost '/': "
	for _, c := range []struct {
		args amqp.Table
		text string
	}{
		{ae("b"), "received 'b' but current is 'a'"},
		{amqp.Table{"alternate-exchange": int32(3)}, "received '3' but current is 'a'"},
		{nil, "received none but current is the value 'a' of type 'longstr'"},
	} {
		err := openChan(t, conn).ExchangeDeclare(x, "direct", false, false, false, false, c.args)
		wantErr(t, err, 406, prefix+c.text)
	}
	// Type and flags are compared first.
	err := openChan(t, conn).ExchangeDeclare(x, "fanout", false, false, false, false, ae("b"))
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '"+x+
		"' in vhost '/': received 'fanout' but current is 'direct'")
	// An exchange without one, amq.direct among them, keeps none.
	plain := uname(t, "plain")
	declareX(t, u, ch, plain, "direct", nil)
	for _, name := range []string{plain, "amq.direct"} {
		err := openChan(t, conn).ExchangeDeclare(name, "direct", name == "amq.direct", false, false, false, ae("z"))
		wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '"+name+
			"' in vhost '/': received the value 'z' of type 'longstr' but current is none")
	}
	// Other exchange arguments are neither validated nor compared.
	other := uname(t, "other")
	declareX(t, u, ch, other, "direct", amqp.Table{"x-foo": "a"})
	if err := openChan(t, conn).ExchangeDeclare(other, "direct", false, false, false, false, amqp.Table{"x-foo": int32(2)}); err != nil {
		t.Fatalf("redeclare with another x-foo: %v", err)
	}
}

// TestDeadLetterAdmission: dead-letters take the publish path: they follow
// the dead-letter exchange's alternate, and one that a full reject-publish
// queue refuses is lost (at most once, as RabbitMQ's classic queues).
func TestDeadLetterAdmission(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	target, src := uname(t, "target"), uname(t, "src")
	if _, err := ch.QueueDeclare(target, false, false, false, false,
		amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, u, target)
	if _, err := ch.QueueDeclare(src, false, false, false, false,
		amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": target}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, u, src)
	publish(t, ch, "", target, body("first"))
	reject := func(text string) {
		t.Helper()
		publish(t, ch, "", src, body(text))
		if d := getBody(t, ch, src, false); string(d.Body) != text {
			t.Fatalf("src gave %q", d.Body)
		} else if err := d.Reject(false); err != nil {
			t.Fatal(err)
		}
	}
	reject("lost")
	waitCount(t, conn, src, 0)
	if n, _ := queueCounts(t, conn, target); n != 1 {
		t.Fatalf("full target has %d messages, want 1", n)
	}
	if d := getBody(t, ch, target, true); string(d.Body) != "first" {
		t.Fatalf("target gave %q", d.Body)
	}
	// With room again the next dead-letter arrives, and only it.
	reject("kept")
	if d := getBody(t, ch, target, true); string(d.Body) != "kept" {
		t.Fatalf("target gave %q, want %q", d.Body, "kept")
	}

	// Through a dead-letter exchange that routes nothing to its alternate.
	dlx := uname(t, "dlx")
	q := directWithAE(t, u, ch, dlx)
	src2 := uname(t, "src2")
	if _, err := ch.QueueDeclare(src2, false, false, false, false,
		amqp.Table{"x-dead-letter-exchange": dlx, "x-message-ttl": int32(0)}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, u, src2)
	publish(t, ch, "", src2, body("expired"))
	d := getBody(t, ch, q, true)
	if string(d.Body) != "expired" {
		t.Fatalf("alternate of the dead-letter exchange got %q", d.Body)
	}
	if deaths, _ := d.Headers["x-death"].([]any); len(deaths) != 1 {
		t.Fatalf("x-death %v", d.Headers["x-death"])
	}
}

// TestAlternateExchangeRecovered: a durable exchange keeps its alternate
// across a restart (in-process: the server restarts on its data directory).
func TestAlternateExchangeRecovered(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	start := func() (*broker.Server, string) {
		s, err := broker.Open(broker.Config{Address: "127.0.0.1:0", DataDir: dir, OpenDefinitions: servertest.OpenDefinitions,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve() }()
		return s, "amqp://guest:guest@" + s.Addr().String() + "/"
	}
	s, u := start()
	conn, ch := dial(t, u)
	if err := ch.ExchangeDeclare("fan", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("x", "direct", true, false, false, false, ae("fan")); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("q", "", "fan", false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, u = start()
	t.Cleanup(func() { _ = s.Close() })
	conn, ch = dial(t, u)
	if err := ch.ExchangeDeclare("x", "direct", true, false, false, false, ae("other")); err == nil {
		t.Fatal("redeclare with another alternate accepted after restart")
	}
	ch = openChan(t, conn)
	publish(t, ch, "x", "k", body("after"))
	if d := getBody(t, ch, "q", true); string(d.Body) != "after" {
		t.Fatalf("got %q", d.Body)
	}
}
