package broker_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// drain returns the bodies in q up to a marker published directly to it.
func drain(t *testing.T, ch *amqp.Channel, q string) []string {
	t.Helper()
	publish(t, ch, "", q, body("\x00end"))
	var got []string
	for {
		d := getBody(t, ch, q, true)
		if string(d.Body) == "\x00end" {
			return got
		}
		got = append(got, string(d.Body))
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExchangeDirectAndFanout(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	dx, fx := uname(t, "direct"), uname(t, "fanout")
	for _, x := range []struct{ name, kind string }{{dx, "direct"}, {fx, "fanout"}} {
		if err := ch.ExchangeDeclare(x.name, x.kind, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	cleanupExchanges(t, u, dx, fx)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	for _, b := range []struct{ q, key, x string }{{q1, "k1", dx}, {q2, "k2", dx}, {q2, "k1", dx}, {q1, "ignored", fx}, {q2, "", fx}} {
		if err := ch.QueueBind(b.q, b.key, b.x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Binding twice is idempotent: still one copy.
	if err := ch.QueueBind(q1, "k1", dx, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, dx, "k1", body("d-k1"))
	publish(t, ch, dx, "k2", body("d-k2"))
	publish(t, ch, dx, "k3", body("d-k3"))
	publish(t, ch, fx, "whatever", body("f"))
	if got := drain(t, ch, q1); !sameStrings(got, []string{"d-k1", "f"}) {
		t.Fatalf("q1 got %q", got)
	}
	if got := drain(t, ch, q2); !sameStrings(got, []string{"d-k1", "d-k2", "f"}) {
		t.Fatalf("q2 got %q", got)
	}
	// Unbind stops routing.
	if err := ch.QueueUnbind(q2, "k1", dx, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, dx, "k1", body("after-unbind"))
	if got := drain(t, ch, q2); len(got) != 0 {
		t.Fatalf("q2 got %q after unbind", got)
	}
	if got := drain(t, ch, q1); !sameStrings(got, []string{"after-unbind"}) {
		t.Fatalf("q1 got %q", got)
	}
}

func TestExchangeDefault(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	publish(t, ch, "", q, body("by name"))
	if d := getBody(t, ch, q, true); string(d.Body) != "by name" || d.Exchange != "" || d.RoutingKey != q {
		t.Fatalf("got %+v", d)
	}
	for name, do := range map[string]func(ch *amqp.Channel) error{
		"declare": func(ch *amqp.Channel) error { return ch.ExchangeDeclare("", "direct", true, false, false, false, nil) },
		"delete":  func(ch *amqp.Channel) error { return ch.ExchangeDelete("", false, false) },
		"bind":    func(ch *amqp.Channel) error { return ch.QueueBind(q, "x", "", false, nil) },
		"unbind":  func(ch *amqp.Channel) error { return ch.QueueUnbind(q, q, "", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			ch2 := openChan(t, conn)
			wantErr(t, do(ch2), 403, "ACCESS_REFUSED - operation not permitted on the default exchange")
		})
	}
}

func TestExchangePredeclared(t *testing.T) {
	u := brokerURL(t)
	for _, x := range []struct{ name, kind, wrong string }{
		{"amq.direct", "direct", "fanout"}, {"amq.fanout", "fanout", "direct"}, {"amq.topic", "topic", "direct"},
		{"amq.headers", "headers", "direct"}, {"amq.match", "headers", "direct"},
	} {
		t.Run(x.name, func(t *testing.T) {
			_, ch := dial(t, u)
			if err := ch.ExchangeDeclarePassive(x.name, x.kind, true, false, false, false, nil); err != nil {
				t.Fatalf("passive: %v", err)
			}
			// Redeclaring with the same properties is allowed despite amq.
			if err := ch.ExchangeDeclare(x.name, x.kind, true, false, false, false, nil); err != nil {
				t.Fatalf("redeclare: %v", err)
			}
			err := ch.ExchangeDeclare(x.name, x.wrong, true, false, false, false, nil)
			wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '"+x.name+
				"' in vhost '/': received '"+x.wrong+"' but current is '"+x.kind+"'")
		})
	}
	t.Run("routing", func(t *testing.T) {
		_, ch := dial(t, u)
		q := tempQueue(t, ch)
		for _, b := range []struct{ x, key string }{{"amq.direct", "d"}, {"amq.fanout", ""}, {"amq.topic", "t.*"}} {
			if err := ch.QueueBind(q, b.key, b.x, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		publish(t, ch, "amq.direct", "d", body("direct"))
		publish(t, ch, "amq.fanout", "", body("fanout"))
		publish(t, ch, "amq.topic", "t.x", body("topic"))
		if got := drain(t, ch, q); !sameStrings(got, []string{"direct", "fanout", "topic"}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("delete refused", func(t *testing.T) {
		_, ch := dial(t, u)
		wantErr(t, ch.ExchangeDelete("amq.direct", false, false), 403,
			"ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed")
	})
	t.Run("reserved prefix", func(t *testing.T) {
		_, ch := dial(t, u)
		wantErr(t, ch.ExchangeDeclare("amq.mine", "direct", false, false, false, false, nil), 403,
			"ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'")
	})
}

func TestExchangeDeclare(t *testing.T) {
	u := brokerURL(t)
	x := uname(t, "x")
	cleanupExchanges(t, u, x)
	t.Run("passive missing", func(t *testing.T) {
		_, ch := dial(t, u)
		err := ch.ExchangeDeclarePassive(x, "direct", false, false, false, false, nil)
		wantErr(t, err, 404, "NOT_FOUND - no exchange '"+x+"' in vhost '/'")
	})
	t.Run("durable", func(t *testing.T) {
		_, ch := dial(t, u)
		if err := ch.ExchangeDeclare(x, "direct", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.ExchangeDeclare(x, "direct", true, false, false, false, nil); err != nil {
			t.Fatalf("equivalent redeclare: %v", err)
		}
		// Passive ignores the other fields.
		if err := ch.ExchangeDeclarePassive(x, "fanout", false, true, false, false, nil); err != nil {
			t.Fatalf("passive: %v", err)
		}
	})
	for _, tc := range []struct {
		name string
		do   func(ch *amqp.Channel) error
		text string
	}{
		{"type", func(ch *amqp.Channel) error { return ch.ExchangeDeclare(x, "topic", true, false, false, false, nil) },
			"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '" + x + "' in vhost '/': received 'topic' but current is 'direct'"},
		{"durable", func(ch *amqp.Channel) error { return ch.ExchangeDeclare(x, "direct", false, false, false, false, nil) },
			"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '" + x + "' in vhost '/': received 'false' but current is 'true'"},
		{"auto_delete", func(ch *amqp.Channel) error { return ch.ExchangeDeclare(x, "direct", true, true, false, false, nil) },
			"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '" + x + "' in vhost '/': received 'true' but current is 'false'"},
		{"internal", func(ch *amqp.Channel) error { return ch.ExchangeDeclare(x, "direct", true, false, true, false, nil) },
			"PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '" + x + "' in vhost '/': received 'true' but current is 'false'"},
	} {
		t.Run("inequivalent "+tc.name, func(t *testing.T) {
			_, ch := dial(t, u)
			wantErr(t, tc.do(ch), 406, tc.text)
		})
	}
}

func TestExchangeDelete(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	x := uname(t, "x")
	if err := ch.ExchangeDeclare(x, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "", x, false, nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, ch.ExchangeDelete(x, true, false), 406, "PRECONDITION_FAILED - exchange '"+x+"' in vhost '/' in use")
	ch = openChan(t, conn)
	if err := ch.QueueUnbind(q, "", x, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDelete(x, true, false); err != nil {
		t.Fatalf("if-unused delete of an unused exchange: %v", err)
	}
	err := ch.ExchangeDeclarePassive(x, "fanout", false, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no exchange '"+x+"' in vhost '/'")
	// Deleting a missing exchange is not an error (RabbitMQ 3.x).
	ch = openChan(t, conn)
	if err := ch.ExchangeDelete(uname(t, "never"), false, false); err != nil {
		t.Fatalf("delete of a missing exchange: %v", err)
	}
}

func TestExchangeAutoDelete(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	x := uname(t, "ad")
	if err := ch.ExchangeDeclare(x, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "", x, false, nil); err != nil {
		t.Fatal(err)
	}
	// Unused, not yet deleted.
	if err := ch.ExchangeDeclarePassive(x, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueUnbind(q, "", x, nil); err != nil {
		t.Fatal(err)
	}
	err := ch.ExchangeDeclarePassive(x, "fanout", false, true, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no exchange '"+x+"' in vhost '/'")
}

func TestExchangeToExchange(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	src, mid, dst := uname(t, "src"), uname(t, "mid"), uname(t, "dst")
	for _, x := range []struct{ name, kind string }{{src, "topic"}, {mid, "fanout"}, {dst, "direct"}} {
		if err := ch.ExchangeDeclare(x.name, x.kind, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	cleanupExchanges(t, u, src, mid, dst)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	// src --a.*--> mid --(fanout)--> dst --a.b--> q1 ; src --#--> q2 ; mid -> src (a cycle)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.ExchangeBind(mid, "a.*", src, false, nil))
	must(ch.ExchangeBind(dst, "", mid, false, nil))
	must(ch.ExchangeBind(src, "", mid, false, nil))
	must(ch.QueueBind(q1, "a.b", dst, false, nil))
	must(ch.QueueBind(q2, "#", src, false, nil))
	publish(t, ch, src, "a.b", body("1"))
	publish(t, ch, src, "a.c", body("2"))
	publish(t, ch, src, "z", body("3"))
	if got := drain(t, ch, q1); !sameStrings(got, []string{"1"}) {
		t.Fatalf("q1 got %q", got)
	}
	// q2 is reached directly and through the cycle, but gets one copy.
	if got := drain(t, ch, q2); !sameStrings(got, []string{"1", "2", "3"}) {
		t.Fatalf("q2 got %q", got)
	}
	must(ch.ExchangeUnbind(mid, "a.*", src, false, nil))
	publish(t, ch, src, "a.b", body("4"))
	if got := drain(t, ch, q1); len(got) != 0 {
		t.Fatalf("q1 got %q after exchange.unbind", got)
	}
	// exchange.bind to a missing exchange is 404.
	err := ch.ExchangeBind(uname(t, "nope"), "", src, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no exchange '"+uname(t, "nope")+"' in vhost '/'")
}

func TestExchangePublishMissing(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	x := uname(t, "missing")
	if err := ch.Publish(x, "k", false, false, body("lost")); err != nil {
		t.Fatal(err)
	}
	wantClose(t, closed, 404, "NOT_FOUND - no exchange '"+x+"' in vhost '/'")
	// Only the channel closed.
	ch2 := openChan(t, conn)
	if _, err := ch2.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
}

func TestExchangeInternal(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	x := uname(t, "internal")
	if err := ch.ExchangeDeclare(x, "fanout", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Publish(x, "", false, false, body("x")); err != nil {
		t.Fatal(err)
	}
	wantClose(t, closed, 403, "ACCESS_REFUSED - cannot publish to internal exchange '"+x+"' in vhost '/'")
	_ = conn
}
