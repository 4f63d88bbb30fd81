package telemetry

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// countingWriter is an http.ResponseWriter that counts and drops the body.
type countingWriter struct {
	h http.Header
	n int64
}

func (w *countingWriter) Header() http.Header         { return w.h }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkPerObject100k measures, and does not assert, a scrape of
// /metrics/per-object with 100k idle queues: the whole handler (registry,
// walk, text), and the text alone from a walk already made.
//
//	go test -run '^$' -bench PerObject100k -benchtime 5x ./server/telemetry
func BenchmarkPerObject100k(b *testing.B) {
	const n = 100_000
	s, _ := servertest.StartServer(b, broker.Config{})
	v := s.VHost("/")
	for i := range n {
		if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: fmt.Sprintf("q%06d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	h := Handler(Options{Server: s})
	b.Run("scrape", func(b *testing.B) {
		var w *countingWriter
		for b.Loop() {
			w = &countingWriter{h: http.Header{}}
			h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics/per-object", nil))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/scrape")
		b.ReportMetric(float64(w.n)/1e6, "MB/scrape")
	})
	b.Run("text", func(b *testing.B) {
		qs := s.AppendQueueStats(nil)
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		for b.Loop() {
			writeQueueFamilies(bw, qs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/render")
	})
}
