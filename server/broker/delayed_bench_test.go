package broker_test

import (
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// BenchmarkDelayedLateness reports how late delayed messages arrive at a
// consumer (receive time less the due time the publisher computed before
// publishing, so the figure includes both sockets and the client): b.N
// messages with delays spread over 1 s are published at a steady rate,
// with no other work (idle), while another connection publishes 1 kB
// persistent messages to a plain queue and consumes them at 10,000 a
// second (load-10k), or as fast as it can (saturated: every core busy, so
// this measures the Go scheduler's run queue as much as the exchange).
// Persistent messages on a durable delayed exchange and queue, file store
// with fsync. It reports p50, p99 and max lateness in ms:
//
//	go test -run '^$' -bench DelayedLateness -benchtime 20000x ./server/broker
func BenchmarkDelayedLateness(b *testing.B) {
	b.Run("idle", func(b *testing.B) { benchDelayedLateness(b, -1) })
	b.Run("load-10k", func(b *testing.B) { benchDelayedLateness(b, 10_000) })
	b.Run("saturated", func(b *testing.B) { benchDelayedLateness(b, 0) })
}

// benchDelayedLateness: rate is the load's messages a second (0: flat out,
// negative: no load).
func benchDelayedLateness(b *testing.B, rate int) {
	_, url := servertest.StartServer(b, broker.Config{DataDir: b.TempDir()})
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.ExchangeDeclare("dx", "x-delayed-message", true, false, false, false,
		amqp.Table{"x-delayed-type": "direct"}); err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{"due", "load"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := ch.QueueBind("due", "k", "dx", false, nil); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var load sync.WaitGroup
	if rate >= 0 {
		load.Add(1)
		go func() { defer load.Done(); delayedBenchLoad(b, url, rate, stop) }()
	}

	cc, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	ds, err := cc.Consume("due", "", true, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	late := make([]float64, 0, b.N)
	received := make(chan struct{})
	go func() {
		defer close(received)
		for d := range ds {
			due := int64(binary.BigEndian.Uint64(d.Body))
			late = append(late, float64(time.Now().UnixNano()-due)/1e6)
			if len(late) == b.N {
				return
			}
		}
	}()
	b.ResetTimer()
	// Publish over about a second; delays 100 ms to 1.1 s.
	gap := time.Second / time.Duration(b.N)
	start := time.Now()
	for i := range b.N {
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 {
			time.Sleep(wait)
		}
		delay := 100 + (i*7919)%1000
		body := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(time.Duration(delay)*time.Millisecond).UnixNano()))
		if err := ch.Publish("dx", "k", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{"x-delay": int32(delay)}, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-received:
	case <-time.After(60 * time.Second):
		b.Fatalf("%d of %d delayed messages arrived", len(late), b.N)
	}
	b.StopTimer()
	close(stop)
	load.Wait()
	slices.Sort(late)
	q := func(p float64) float64 { return late[int(p*float64(len(late)-1))] }
	b.ReportMetric(q(0.5), "p50-late-ms")
	b.ReportMetric(q(0.99), "p99-late-ms")
	b.ReportMetric(late[len(late)-1], "max-late-ms")
	b.ReportMetric(late[0], "min-late-ms")
}

// delayedBenchLoad publishes persistent messages to the queue "load", rate
// a second in bursts every 10 ms (0: flat out), and consumes them on
// another channel until stop.
func delayedBenchLoad(b *testing.B, url string, rate int, stop <-chan struct{}) {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	pub, err := conn.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	sub, err := conn.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	ds, err := sub.Consume("load", "", true, false, false, false, nil)
	if err != nil {
		b.Error(err)
		return
	}
	go func() {
		for range ds {
		}
	}()
	body := make([]byte, 1000)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		burst := rate / 100
		if rate == 0 {
			burst = 1
		} else {
			<-tick.C
		}
		for range burst {
			if err := pub.Publish("", "load", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
				return
			}
		}
	}
}
