package management_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// BenchmarkListQueues10k measures GET /api/queues, the whole list and
// one sorted page, with 10,000 idle queues (issue 11's budget: under
// 200 ms). Reported, not asserted: the machine is shared.
func BenchmarkListQueues10k(b *testing.B) {
	srv, u := servertest.StartServer(b, broker.Config{})
	v := srv.VHost("/")
	for i := range 10000 {
		if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: fmt.Sprintf("q%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	svc, err := management.Serve("127.0.0.1:0", management.New(management.Options{Server: srv}))
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close(5 * time.Second)
	for _, c := range []struct{ name, query string }{
		{"all", ""}, {"page", "?page=50&page_size=100&sort=messages&sort_reverse=true"},
		// With a minute of samples at 5 s (256 queues followed, the rest
		// their current values).
		{"all-samples", "?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int64
			for b.Loop() {
				req, _ := http.NewRequest("GET", "http://"+svc.Addr().String()+"/api/queues"+c.query, nil)
				req.SetBasicAuth("guest", "guest")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			b.ReportMetric(float64(n), "bytes/reply")
		})
	}
	// Whether a listing stalls publishing: the slowest confirm of a
	// publisher with one message in flight, without and during listings
	// of all 10,000 queues back to back.
	for _, listing := range []bool{false, true} {
		name := "confirms-alone"
		if listing {
			name = "confirms-while-listing"
		}
		b.Run(name, func(b *testing.B) {
			conn, err := amqp.Dial(u)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			if err := ch.Confirm(false); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for listing {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("GET", "http://"+svc.Addr().String()+"/api/queues", nil)
					req.SetBasicAuth("guest", "guest")
					if resp, err := http.DefaultClient.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
			var slowest time.Duration
			for b.Loop() {
				start := time.Now()
				dc, err := ch.PublishWithDeferredConfirm("", "q00000", false, false, amqp.Publishing{Body: []byte("x")})
				if err != nil {
					b.Fatal(err)
				}
				if !dc.Wait() {
					b.Fatal("nacked")
				}
				slowest = max(slowest, time.Since(start))
			}
			close(stop)
			<-done
			b.ReportMetric(float64(slowest.Microseconds())/1000, "max-confirm-ms")
		})
	}
}
