package broker

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/queue"
)

// BenchmarkQueueStats100k measures, and does not assert, what queue
// statistics cost with 100k idle queues: the heap and stack of an idle
// queue (all of it, for scale), the bytes the statistics add to each
// (queue.Meter and the counters this work added to queue.Stats), a
// sampling round over all of them, and the stats walk a scrape makes.
//
//	go test -run '^$' -bench QueueStats100k -benchtime 20x ./server/broker
func BenchmarkQueueStats100k(b *testing.B) {
	const n = 100_000
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StatsInterval: time.Hour})
	defer s.Close()
	v := s.vhost("/")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if _, err := v.Apply(DefChange{Kind: QueueDeclare, Queue: fmt.Sprintf("q%06d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / n
	stack := float64(after.StackInuse-before.StackInuse) / n
	added := float64(unsafe.Sizeof(queue.Meter{}) + 4*unsafe.Sizeof(uint64(0))) // Got, GotNoAck, DeliveredNoAck, GetEmpty
	b.Run("sample", func(b *testing.B) {
		for b.Loop() {
			s.sampleRates()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/round")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/queue")
		// One round per default interval: the share of one core it takes.
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(defaultStatsInterval.Nanoseconds())*100, "%core@5s")
		b.ReportMetric(heap, "heap-B/idle-queue")
		b.ReportMetric(stack, "stack-B/idle-queue")
		b.ReportMetric(added, "stats-added-B/queue")
	})
	b.Run("walk", func(b *testing.B) {
		var buf []QueueStats
		for b.Loop() {
			buf = s.AppendQueueStats(buf[:0])
		}
		if len(buf) != n {
			b.Fatalf("%d queues", len(buf))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/walk")
	})
}
