package management

import (
	"fmt"
	"testing"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// A followed queue's history is a fixed ring: its size is what a queue
// costs, whatever its traffic (README's management section quotes it).
func TestHistorySize(t *testing.T) {
	per := unsafe.Sizeof(followedHistory{})
	t.Logf("history per followed object: %d bytes; at most %d queues: %d KB", per, maxFollowed, per*maxFollowed/1024)
	if per > 14<<10 {
		t.Errorf("a queue's history is %d bytes", per)
	}
}

// BenchmarkHistoryRound10k is one sampling round over 10,000 idle queues
// (256 of them followed), what the history costs every StatsInterval.
func BenchmarkHistoryRound10k(b *testing.B) {
	srv, _ := servertest.StartServer(b, broker.Config{})
	v := srv.VHost("/")
	for i := range 10000 {
		if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: fmt.Sprintf("q%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	h := New(Options{Server: srv})
	defer h.Close()
	for b.Loop() {
		h.sampleHistory()
	}
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	b.ReportMetric(float64(len(h.hist.queues)), "followed")
}
