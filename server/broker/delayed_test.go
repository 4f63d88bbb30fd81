package broker_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The built-in delayed-message exchange (x-delayed-message) against the
// behaviour rabbitmq-delayed-message-exchange documents. These tests run
// in-process only: the RabbitMQ used as the oracle here has no delayed
// plugin. Timing: nothing may arrive before its due time (checked
// strictly against the client's clock before the publish), and everything
// must arrive within a generous bound (a slow shared machine).

const delayedBound = 5 * time.Second

func delayedOnly(t *testing.T) {
	t.Helper()
	inProcessOnly(t, "the RabbitMQ oracle has no delayed-message plugin")
}

func declareDelayed(t *testing.T, ch *amqp.Channel, name, typ string, durable bool, extra amqp.Table) {
	t.Helper()
	args := amqp.Table{"x-delayed-type": typ}
	for k, v := range extra {
		args[k] = v
	}
	if err := ch.ExchangeDeclare(name, "x-delayed-message", durable, false, false, false, args); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
}

// delayedFixture declares a delayed exchange of type typ and a queue bound
// to it with the empty key, on a broker of its own.
func delayedFixture(t *testing.T, typ string) (ch *amqp.Channel, x, q string) {
	t.Helper()
	url := brokerURL(t)
	ch = openChan(t, openConn(t, url))
	x = uname(t, "x")
	declareDelayed(t, ch, x, typ, false, nil)
	cleanupExchanges(t, url, x)
	q = declareQueue(t, url, ch, uname(t, "q")).Name
	if err := ch.QueueBind(q, "", x, false, nil); err != nil {
		t.Fatal(err)
	}
	return ch, x, q
}

func delayedMsg(body string, delay any) amqp.Publishing {
	p := amqp.Publishing{Body: []byte(body)}
	if delay != nil {
		p.Headers = amqp.Table{"x-delay": delay}
	}
	return p
}

// arrival is a delivery and when it came.
type arrival struct {
	d  amqp.Delivery
	at time.Time
}

// receive consumes q (auto-ack) until n messages came or the bound passed.
func receive(t *testing.T, ch *amqp.Channel, q string, n int) []arrival {
	t.Helper()
	return take(t, consumeAuto(t, ch, q), n)
}

func consumeAuto(t *testing.T, ch *amqp.Channel, q string) <-chan amqp.Delivery {
	t.Helper()
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// take waits for n deliveries on ds, within the bound.
func take(t *testing.T, ds <-chan amqp.Delivery, n int) []arrival {
	t.Helper()
	var out []arrival
	deadline := time.After(delayedBound + 5*time.Second)
	for len(out) < n {
		select {
		case d := <-ds:
			out = append(out, arrival{d, time.Now()})
		case <-deadline:
			t.Fatalf("%d of %d messages arrived", len(out), n)
		}
	}
	return out
}

func TestDelayedDeclareValidation(t *testing.T) {
	delayedOnly(t)
	url := brokerURL(t)
	conn := openConn(t, url)
	for _, c := range []struct {
		name string
		args amqp.Table
		code int
		text string
	}{
		{"missing", nil, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"},
		{"integer", amqp.Table{"x-delayed-type": int32(1)}, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"},
		{"itself", amqp.Table{"x-delayed-type": "x-delayed-message"}, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"},
		{"unknown", amqp.Table{"x-delayed-type": "nope"}, 503, "COMMAND_INVALID - unknown exchange type 'nope'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := conn
			if c.code == 503 { // a connection error
				conn = openConn(t, url)
			}
			ch := openChan(t, conn)
			err := ch.ExchangeDeclare(uname(t, "x"), "x-delayed-message", false, false, false, false, c.args)
			wantErr(t, err, c.code, c.text)
		})
	}

	ch := openChan(t, conn)
	x := uname(t, "x")
	declareDelayed(t, ch, x, "topic", false, nil)
	// The same type as binary text is the same argument.
	if err := ch.ExchangeDeclare(x, "x-delayed-message", false, false, false, false,
		amqp.Table{"x-delayed-type": []byte("topic")}); err != nil {
		t.Fatalf("equivalent redeclare: %v", err)
	}
	err := ch.ExchangeDeclare(x, "x-delayed-message", false, false, false, false, amqp.Table{"x-delayed-type": "direct"})
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-delayed-type' for exchange '"+x+"' in vhost '/': received 'direct' but current is 'topic'")
	ch = openChan(t, conn)
	err = ch.ExchangeDeclare(x, "topic", false, false, false, false, nil)
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '"+x+"' in vhost '/': received 'topic' but current is 'x-delayed-message'")
}

// Each x-delayed-type routes as its exchange type once the message is due;
// nothing arrives before it, and the x-delay header comes negated.
func TestDelayedRouting(t *testing.T) {
	delayedOnly(t)
	url := brokerURL(t)
	conn := openConn(t, url)
	for _, c := range []struct {
		typ, bindKey string
		bindArgs     amqp.Table
		hit, miss    amqp.Publishing
		hitKey       string
		missKey      string
	}{
		{typ: "direct", bindKey: "k", hitKey: "k", missKey: "other"},
		{typ: "fanout", bindKey: "ignored", hitKey: "any", missKey: ""},
		{typ: "topic", bindKey: "a.*.c", hitKey: "a.b.c", missKey: "b.b.c"},
		{typ: "headers", bindArgs: amqp.Table{"x-match": "all", "kind": "hit"}},
	} {
		t.Run(c.typ, func(t *testing.T) {
			ch := openChan(t, conn)
			x := uname(t, "x")
			declareDelayed(t, ch, x, c.typ, false, nil)
			cleanupExchanges(t, url, x)
			q := declareQueue(t, url, ch, uname(t, "q")).Name
			if err := ch.QueueBind(q, c.bindKey, x, false, c.bindArgs); err != nil {
				t.Fatal(err)
			}
			hit, miss := delayedMsg("hit", int32(150)), delayedMsg("miss", int32(150))
			if c.typ == "headers" {
				hit.Headers["kind"], miss.Headers["kind"] = "hit", "miss"
			}
			start := time.Now()
			if c.typ != "fanout" {
				publish(t, ch, x, c.missKey, miss)
			}
			publish(t, ch, x, c.hitKey, hit)
			got := receive(t, ch, q, 1)[0]
			if string(got.d.Body) != "hit" {
				t.Fatalf("got %q", got.d.Body)
			}
			if el := got.at.Sub(start); el < 150*time.Millisecond || el > delayedBound {
				t.Fatalf("arrived after %v, want 150ms to %v", el, delayedBound)
			}
			// The miss, due at the same time, was published first: had
			// it been routed it would have come first.
			if v := got.d.Headers["x-delay"]; v != int32(-150) {
				t.Fatalf("x-delay on delivery %T %v, want int32 -150", v, v)
			}
		})
	}
}

// Messages come out in due order, equal delays in publish order, none
// before its due time.
func TestDelayedOrder(t *testing.T) {
	delayedOnly(t)
	ch, x, q := delayedFixture(t, "direct")
	delays := []int{250, 50, 150, 100, 50, 200, 100, 100}
	sent := make([]time.Time, len(delays))
	for i, d := range delays {
		sent[i] = time.Now()
		publish(t, ch, x, "", delayedMsg(strconv.Itoa(i), int32(d)))
	}
	got := receive(t, ch, q, len(delays))
	var order []string
	for _, a := range got {
		i, _ := strconv.Atoi(string(a.d.Body))
		order = append(order, string(a.d.Body))
		if early := sent[i].Add(time.Duration(delays[i]) * time.Millisecond); a.at.Before(early) {
			t.Errorf("message %d (x-delay %d) arrived %v early", i, delays[i], early.Sub(a.at))
		}
	}
	if want := []string{"1", "4", "3", "6", "7", "2", "5", "0"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// What the plugin routes at once: no x-delay, zero, negative, beyond 2^32-1
// ms, a type it does not read (here also a longstr that is no integer); and
// what it delays: integers of any width, integer strings, floats truncated.
func TestDelayedHeaderValues(t *testing.T) {
	delayedOnly(t)
	ch, x, q := delayedFixture(t, "fanout")
	now := []any{nil, int32(0), int32(-5), int64(1 << 32), "abc", true, float64(0.5)}
	for i, v := range now {
		publish(t, ch, x, "", delayedMsg(fmt.Sprint("now", i), v))
	}
	// All of them route at once, in publish order, header unchanged.
	ds := consumeAuto(t, ch, q)
	for i, a := range take(t, ds, len(now)) {
		if want := fmt.Sprint("now", i); string(a.d.Body) != want {
			t.Fatalf("got %q, want %q", a.d.Body, want)
		}
		if v, ok := a.d.Headers["x-delay"]; now[i] != nil && fmt.Sprint(v) != fmt.Sprint(now[i]) || now[i] == nil && ok {
			t.Fatalf("%s: x-delay %v, want %v", a.d.Body, v, now[i])
		}
	}
	later := []any{int8(100), int16(100), int64(100), "100", float64(100.9), float32(100.2)}
	start := time.Now()
	for i, v := range later {
		publish(t, ch, x, "", delayedMsg(fmt.Sprint("later", i), v))
	}
	for _, a := range take(t, ds, len(later)) {
		if el := a.at.Sub(start); el < 100*time.Millisecond {
			t.Fatalf("%s arrived after %v, before its 100 ms", a.d.Body, el)
		}
		if v := a.d.Headers["x-delay"]; v != int32(-100) {
			t.Fatalf("%s: x-delay %T %v, want int32 -100", a.d.Body, v, v)
		}
	}
}

// Confirms: a delayed message is confirmed once scheduled (a persistent one
// on a durable exchange once stored), long before it is due; mandatory is
// not answered, neither at publish nor when it comes due unroutable.
func TestDelayedConfirmsAndMandatory(t *testing.T) {
	delayedOnly(t)
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprint("durable=", durable), func(t *testing.T) {
			url := brokerURL(t)
			if durable {
				_, url = servertest.StartServer(t, broker.Config{DataDir: t.TempDir()})
			}
			conn := openConn(t, url)
			ch := openChan(t, conn)
			x := uname(t, "x")
			declareDelayed(t, ch, x, "direct", durable, nil)
			cleanupExchanges(t, url, x)
			q, err := ch.QueueDeclare(uname(t, "q"), durable, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			cleanupQueues(t, url, q.Name)
			if err := ch.QueueBind(q.Name, "k", x, false, nil); err != nil {
				t.Fatal(err)
			}
			if err := ch.Confirm(false); err != nil {
				t.Fatal(err)
			}
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4))
			returns := ch.NotifyReturn(make(chan amqp.Return, 4))
			start := time.Now()
			p := delayedMsg("m", int32(3000))
			p.DeliveryMode = amqp.Persistent
			if err := ch.Publish(x, "k", true, false, p); err != nil {
				t.Fatal(err)
			}
			if err := ch.Publish(x, "nowhere", true, false, delayedMsg("lost", int32(100))); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				select {
				case c := <-confirms:
					if !c.Ack {
						t.Fatalf("confirm %d nacked", c.DeliveryTag)
					}
				case <-time.After(delayedBound):
					t.Fatal("no confirm")
				}
			}
			if n, _ := queueCounts(t, conn, q.Name); n != 0 && time.Since(start) < 3*time.Second {
				t.Fatalf("%d messages in the queue before due", n)
			}
			got := receive(t, ch, q.Name, 1)[0]
			if el := got.at.Sub(start); el < 3*time.Second {
				t.Fatalf("arrived after %v, before its 3 s", el)
			}
			select {
			case r := <-returns:
				t.Fatalf("basic.return %q for a delayed message", r.Body)
			default:
			}
		})
	}
}

// Deleting the exchange drops its waiting messages: a new exchange of the
// same name, bound the same way, does not get them.
func TestDelayedExchangeDelete(t *testing.T) {
	delayedOnly(t)
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	x := uname(t, "x")
	q := declareQueue(t, url, ch, uname(t, "q")).Name
	declareDelayed(t, ch, x, "fanout", false, nil)
	if err := ch.QueueBind(q, "", x, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		publish(t, ch, x, "", delayedMsg("dropped", int32(200)))
	}
	if err := ch.ExchangeDelete(x, false, false); err != nil {
		t.Fatal(err)
	}
	declareDelayed(t, ch, x, "fanout", false, nil)
	if err := ch.QueueBind(q, "", x, false, nil); err != nil {
		t.Fatal(err)
	}
	// The dropped ones were due first: had one survived, it would come
	// before this one.
	publish(t, ch, x, "", delayedMsg("kept", int32(400)))
	got := receive(t, ch, q, 1)
	if string(got[0].d.Body) != "kept" {
		t.Fatalf("got %q: a deleted exchange's message", got[0].d.Body)
	}
}

// A message that is unroutable when it comes due goes to the exchange's
// alternate exchange then, not at publish; a dead-letter into a delayed
// exchange is delayed like a publish.
func TestDelayedAlternateAndDeadLetter(t *testing.T) {
	delayedOnly(t)
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	ae, x := uname(t, "ae"), uname(t, "x")
	if err := ch.ExchangeDeclare(ae, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, url, ae, x)
	declareDelayed(t, ch, x, "direct", false, amqp.Table{"alternate-exchange": ae})
	aq := declareQueue(t, url, ch, uname(t, "aq")).Name
	if err := ch.QueueBind(aq, "", ae, false, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	publish(t, ch, x, "unbound", delayedMsg("to-ae", int32(200)))
	if n, _ := queueCounts(t, conn, aq); n != 0 && time.Since(start) < 200*time.Millisecond {
		t.Fatal("the alternate exchange got the message before it was due")
	}
	got := receive(t, ch, aq, 1)[0]
	if el := got.at.Sub(start); string(got.d.Body) != "to-ae" || el < 200*time.Millisecond {
		t.Fatalf("got %q after %v", got.d.Body, el)
	}

	// Dead-lettering: a queue whose messages expire at once into x.
	dq := declareQueue(t, url, ch, uname(t, "dq")).Name
	if err := ch.QueueBind(dq, "dl", x, false, nil); err != nil {
		t.Fatal(err)
	}
	src, err := ch.QueueDeclare(uname(t, "src"), false, false, false, false,
		amqp.Table{"x-message-ttl": int32(0), "x-dead-letter-exchange": x, "x-dead-letter-routing-key": "dl"})
	if err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, url, src.Name)
	start = time.Now()
	publish(t, ch, "", src.Name, delayedMsg("dead", int32(200)))
	got = receive(t, ch, dq, 1)[0]
	if el := got.at.Sub(start); string(got.d.Body) != "dead" || el < 200*time.Millisecond {
		t.Fatalf("dead-letter %q after %v, want 200 ms or more", got.d.Body, el)
	}
}

// Persistent messages on a durable delayed exchange survive a restart and
// keep their due time: one due during the downtime comes at once, one
// still waiting comes when due, none early, none twice; a transient one
// is gone. After a further graceful restart nothing comes back.
func TestDelayedRestart(t *testing.T) {
	delayedOnly(t)
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	ch := openChan(t, openConn(t, url))
	declareDelayed(t, ch, "dx", "direct", true, nil)
	if _, err := ch.QueueDeclare("dq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("dq", "k", "dx", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 16))
	delays := map[string]int{"soon1": 100, "soon2": 100, "later1": 1500, "later2": 1200, "transient": 1000}
	due := map[string]time.Time{}
	for _, name := range []string{"soon1", "later1", "soon2", "later2", "transient"} {
		p := delayedMsg(name, int32(delays[name]))
		if name != "transient" {
			p.DeliveryMode = amqp.Persistent
		}
		due[name] = time.Now().Add(time.Duration(delays[name]) * time.Millisecond)
		publish(t, ch, "dx", "k", p)
	}
	for range delays {
		if c := <-confirms; !c.Ack {
			t.Fatalf("nack %d", c.DeliveryTag)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Stay down until the soon ones are due.
	for time.Now().Before(due["soon2"]) {
		time.Sleep(10 * time.Millisecond)
	}
	s, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	conn := openConn(t, url)
	ds := consumeAuto(t, openChan(t, conn), "dq")
	got := take(t, ds, 4)
	var names []string
	for _, a := range got {
		name := string(a.d.Body)
		names = append(names, name)
		if a.at.Before(due[name]) {
			t.Errorf("%s arrived %v before due", name, due[name].Sub(a.at))
		}
	}
	if want := []string{"soon1", "soon2", "later2", "later1"}; !slices.Equal(names, want) {
		t.Fatalf("got %v, want %v", names, want)
	}
	expectNoDelivery(t, ds, 300*time.Millisecond) // no duplicate, not the transient one
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	conn = openConn(t, url)
	ch = openChan(t, conn)
	publish(t, ch, "dx", "k", delayedMsg("marker", int32(50)))
	if got := receive(t, ch, "dq", 1); string(got[0].d.Body) != "marker" {
		t.Fatalf("%q came back after a graceful restart", got[0].d.Body)
	}
	// A durable delayed exchange is one again, with its type.
	err := ch.ExchangeDeclare("dx", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "topic"})
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-delayed-type' for exchange 'dx' in vhost '/': received 'topic' but current is 'direct'")
}

// Stored messages past the ring size wait as log references only and are
// read back when due, in due order.
func TestDelayedPagedOut(t *testing.T) {
	delayedOnly(t)
	_, url := servertest.StartServer(t, broker.Config{DataDir: t.TempDir(), RingBufferSize: 2})
	ch := openChan(t, openConn(t, url))
	declareDelayed(t, ch, "px", "fanout", true, nil)
	if _, err := ch.QueueDeclare("pq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("pq", "", "px", false, nil); err != nil {
		t.Fatal(err)
	}
	// Published latest-due first, 150 ms apart in delay: a publish (with
	// its fsync) stalling for longer on a loaded machine would reorder
	// the due times themselves.
	const step = 150
	start := time.Now()
	for i := 6; i >= 1; i-- {
		p := delayedMsg(strconv.Itoa(i), int32(i*step))
		p.DeliveryMode = amqp.Persistent
		publish(t, ch, "px", "", p)
	}
	for i, a := range receive(t, ch, "pq", 6) {
		if want := strconv.Itoa(i + 1); string(a.d.Body) != want {
			t.Fatalf("got %q, want %q", a.d.Body, want)
		}
		if el := a.at.Sub(start); el < time.Duration(i+1)*step*time.Millisecond {
			t.Fatalf("%s arrived after %v, before its %d ms", a.d.Body, el, (i+1)*step)
		}
	}
}

// Exchange bindings on either side: a delayed exchange bound to another
// exchange routes through it when due, and a message an exchange routes
// both to a queue and to a delayed exchange reaches the queue at once and
// the delayed exchange's queue when due, with one confirm once both have
// stored it.
func TestDelayedExchangeBindings(t *testing.T) {
	delayedOnly(t)
	_, url := servertest.StartServer(t, broker.Config{DataDir: t.TempDir()})
	ch := openChan(t, openConn(t, url))
	declareDelayed(t, ch, "dsrc", "direct", true, nil)
	for _, x := range []string{"mid", "fan"} {
		if err := ch.ExchangeDeclare(x, "fanout", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"viaMid", "now"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []struct{ dest, key, src string }{{"mid", "k", "dsrc"}, {"dsrc", "", "fan"}} {
		if err := ch.ExchangeBind(b.dest, b.key, b.src, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.QueueBind("viaMid", "", "mid", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("now", "", "fan", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	start := time.Now()
	p := delayedMsg("both", int32(300))
	p.DeliveryMode = amqp.Persistent
	publish(t, ch, "fan", "k", p) // key k: dsrc (direct) routes it to mid
	if c := <-confirms; !c.Ack {
		t.Fatal("nacked")
	}
	if got := receive(t, ch, "now", 1)[0]; string(got.d.Body) != "both" {
		t.Fatalf("now: got %q", got.d.Body)
	}
	got := receive(t, ch, "viaMid", 1)[0]
	if el := got.at.Sub(start); string(got.d.Body) != "both" || el < 300*time.Millisecond {
		t.Fatalf("viaMid: got %q after %v, want 300 ms or more", got.d.Body, el)
	}
	if v := got.d.Headers["x-delay"]; v != int32(-300) {
		t.Fatalf("x-delay %T %v", v, v)
	}
}
