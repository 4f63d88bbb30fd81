package broker

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// BenchmarkDelayedHeap reports the heap bytes per message of 1M messages
// (DELAYED_HEAP_N to change it) waiting in a delayed exchange against the
// same messages queued in a transient queue, both published through
// VHost.Publish (memory store, 100-byte bodies, each message its own
// properties and body as a client's publish has). It runs once whatever
// b.N is:
//
//	go test -run '^$' -bench DelayedHeap -benchtime 1x ./server/broker
func BenchmarkDelayedHeap(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("DELAYED_HEAP_N")); err == nil && v > 0 {
		n = v
	}
	s := New(Config{})
	defer s.Close()
	v := s.vhosts["/"]
	if _, err := v.Apply(DefChange{Kind: ExchangeDeclare, Exchange: "dx", Type: kindDelayed,
		Arguments: amqp.Table{argDelayedType: "direct"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := v.Apply(DefChange{Kind: QueueDeclare, Queue: "q"}); err != nil {
		b.Fatal(err)
	}
	props := (&amqp.Properties{Flags: amqp.FlagHeaders, Headers: amqp.Table{headerDelay: int32(3_600_000)}}).Append(nil)
	msgs := func(key string) []*Message {
		ms := make([]*Message, n)
		for i := range ms {
			ms[i] = &Message{Message: store.Message{RoutingKey: key, Properties: append([]byte(nil), props...),
				Body: make([]byte, 100)}}
		}
		return ms
	}
	heap := func() uint64 {
		runtime.GC()
		var st runtime.MemStats
		runtime.ReadMemStats(&st)
		return st.HeapAlloc
	}
	publishAll := func(x *Exchange, key string) {
		p := &publisher{}
		for _, m := range msgs(key) {
			v.Publish(p, x, m, nil, nil)
		}
	}
	// What a message costs held: itself, its properties and body, and its
	// entry in the scheduler or the queue.
	measure := func(x *Exchange, key string) float64 {
		before := heap()
		publishAll(x, key)
		return float64(heap()-before) / float64(n)
	}
	b.ResetTimer()
	dx := v.exchange("dx")
	scheduled := measure(dx, "k")
	if l := dx.delayed.sched.Len(); l != n {
		b.Fatalf("%d scheduled, want %d", l, n)
	}
	dx.delayed.drop()
	queued := measure(v.exchange(""), "q")
	if r, _, _ := v.queue("q").cq.Backlog(); r != int64(n) {
		b.Fatalf("%d queued, want %d", r, n)
	}
	b.ReportMetric(scheduled, "heapB/scheduled-msg")
	b.ReportMetric(queued, "heapB/queued-msg")
}

// messageDelay reads x-delay as the plugin does; the wire test covers the
// types amqp091-go can send, this the rest.
func TestMessageDelay(t *testing.T) {
	for _, c := range []struct {
		v       any
		want    int64
		delayed bool
	}{
		{nil, 0, false}, {int8(5), 5, true}, {uint8(5), 5, true}, {int16(-5), -5, false}, {uint16(7), 7, true},
		{int32(0), 0, false}, {uint32(maxDelay), maxDelay, true}, {int64(maxDelay + 1), maxDelay + 1, false},
		{"42", 42, true}, {"+42", 42, true}, {"-42", -42, false}, {" 42", 0, false}, {"4.2", 0, false},
		{[]byte("42"), 0, false}, {float32(1.9), 1, true}, {float64(0.9), 0, false}, {float64(1e300), 0, false},
		{amqp.Decimal{Scale: 2, Value: 12345}, 123, true}, {amqp.Decimal{Scale: 0, Value: -1}, 0, false},
		{true, 0, false}, {amqp.Table{}, 0, false},
	} {
		h := amqp.Table{}
		if c.v != nil {
			h[headerDelay] = c.v
		}
		got, delayed := messageDelay(h)
		if delayed != c.delayed || delayed && got != c.want {
			t.Errorf("x-delay %T %v: got %d %v, want %d %v", c.v, c.v, got, delayed, c.want, c.delayed)
		}
	}
}

// undelayed negates x-delay (a signedint, a long past its range) and reads
// priority and expiration back from the properties, leaving the rest.
func TestUndelayed(t *testing.T) {
	for _, c := range []struct {
		delay any
		want  any
	}{{int32(250), int32(-250)}, {"250", int32(-250)}, {int64(maxDelay), int64(-maxDelay)}} {
		props := amqp.Properties{Flags: amqp.FlagHeaders | amqp.FlagPriority | amqp.FlagExpiration | amqp.FlagMessageID,
			Headers: amqp.Table{headerDelay: c.delay, "other": "kept"}, Priority: 3, Expiration: "1000", MessageID: "m1"}
		m := &Message{Message: store.Message{Exchange: "x", RoutingKey: "k", Properties: props.Append(nil),
			Body: []byte("b"), Persistent: true}}
		out := undelayed(m)
		p, err := out.decodeProperties()
		if err != nil {
			t.Fatal(err)
		}
		if p.Headers[headerDelay] != c.want || p.Headers["other"] != "kept" || p.MessageID != "m1" {
			t.Errorf("x-delay %T %v: headers %v, message id %q", c.delay, c.delay, p.Headers, p.MessageID)
		}
		if out.Priority != 3 || !out.hasTTL || out.ttl != 1000 || !out.Persistent || out.Exchange != "x" ||
			out.RoutingKey != "k" || string(out.Body) != "b" {
			t.Errorf("x-delay %v: got %+v", c.delay, out)
		}
		if _, delayed := messageDelay(p.Headers); delayed {
			t.Errorf("x-delay %v: still delayed after", c.delay)
		}
	}
}
