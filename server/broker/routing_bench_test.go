package broker

import (
	"fmt"
	"testing"

	"github.com/amqp-go/amqp-go/server/store"
)

// Routing benchmarks: one publish's trip through routeMessage (exchange read
// lock, router, queue de-duplication) against an exchange with 10,000
// bindings, each to its own queue. Run with
//
//	go test -run '^$' -bench Route -benchmem ./server/broker

const benchBindings = 10000

func benchExchange(b *testing.B, kind string, key func(i int) string) *Exchange {
	b.Helper()
	x := newExchange("bench", kind, false, false, false, nil)
	for i := range benchBindings {
		q := &Queue{Name: fmt.Sprintf("q%d", i)}
		if !x.bind(&binding{key: key(i), q: q}) {
			b.Fatalf("duplicate binding %q", key(i))
		}
	}
	return x
}

func benchRoute(b *testing.B, x *Exchange, keys []string, want int) {
	b.Helper()
	msgs := make([]*Message, len(keys))
	for i, k := range keys {
		msgs[i] = &Message{Message: store.Message{Exchange: x.Name, RoutingKey: k, Body: make([]byte, 1000)}}
	}
	var scratch routeScratch
	var out []*Queue
	// Check once, outside the timed loop, that the keys route as intended.
	for _, m := range msgs {
		if out = routeMessage(x, m, out[:0], &scratch); len(out) != want {
			b.Fatalf("key %q reached %d queues, want %d", m.RoutingKey, len(out), want)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		out = routeMessage(x, msgs[i%len(msgs)], out[:0], &scratch)
		i++
	}
}

// BenchmarkTopicRoute10k: 10k topic bindings; the routing key matches
// exactly one of them.
func BenchmarkTopicRoute10k(b *testing.B) {
	keys := []string{"stock.nyse.sym42.trade", "stock.nyse.sym4242.trade", "stock.nyse.sym9999.trade"}
	// Literal patterns only: one trie path per binding.
	b.Run("literal", func(b *testing.B) {
		x := benchExchange(b, kindTopic, func(i int) string { return fmt.Sprintf("stock.nyse.sym%d.trade", i) })
		benchRoute(b, x, keys, 1)
	})
	// A third literal, a third with '*' for the exchange word, a third with
	// a trailing '#': each key still reaches one queue, but routing walks
	// the literal, '*' and '#' branches.
	b.Run("wildcards", func(b *testing.B) {
		x := benchExchange(b, kindTopic, func(i int) string {
			switch i % 3 {
			case 0:
				return fmt.Sprintf("stock.nyse.sym%d.trade", i)
			case 1:
				return fmt.Sprintf("stock.*.sym%d.trade", i)
			default:
				return fmt.Sprintf("stock.nyse.sym%d.#", i)
			}
		})
		benchRoute(b, x, []string{"stock.nyse.sym42.trade", "stock.nyse.sym4243.trade", "stock.nyse.sym9998.trade.x.y"}, 1)
	})
	// Every binding starts with '#': the worst case for the trie, since '#'
	// may swallow any prefix of the key.
	b.Run("leading-hash", func(b *testing.B) {
		x := benchExchange(b, kindTopic, func(i int) string { return fmt.Sprintf("#.sym%d.trade", i) })
		benchRoute(b, x, keys, 1)
	})
	// Ten patterns "stock.nyse.symK.*", each bound to 1,000 queues: one
	// message reaches 1,000 queues (de-duplication cost included).
	b.Run("match-1000", func(b *testing.B) {
		x := benchExchange(b, kindTopic, func(i int) string { return fmt.Sprintf("stock.nyse.sym%d.*", i%10) })
		benchRoute(b, x, []string{"stock.nyse.sym3.trade"}, benchBindings/10)
	})
}

// BenchmarkDirectRoute10k: the same 10k bindings on a direct exchange, for
// comparison with the topic trie.
func BenchmarkDirectRoute10k(b *testing.B) {
	x := benchExchange(b, kindDirect, func(i int) string { return fmt.Sprintf("stock.nyse.sym%d.trade", i) })
	benchRoute(b, x, []string{"stock.nyse.sym42.trade", "stock.nyse.sym4242.trade"}, 1)
}

// BenchmarkFanoutRoute1000: a fanout exchange bound to 1,000 queues; one
// message reaches all of them.
func BenchmarkFanoutRoute1000(b *testing.B) {
	x := newExchange("bench", kindFanout, false, false, false, nil)
	for i := range 1000 {
		x.bind(&binding{key: "", q: &Queue{Name: fmt.Sprintf("q%d", i)}})
	}
	benchRoute(b, x, []string{"any"}, 1000)
}
