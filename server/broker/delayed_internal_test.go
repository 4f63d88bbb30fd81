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
	if r, _ := v.queue("q").cq.Counts(); r != int64(n) {
		b.Fatalf("%d queued, want %d", r, n)
	}
	b.ReportMetric(scheduled, "heapB/scheduled-msg")
	b.ReportMetric(queued, "heapB/queued-msg")
}
