package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/e2e/history"
	amqp "github.com/rabbitmq/amqp091-go"
)

// envInt reads a tuning knob for scripts/crashtest.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// dialRetry connects, retrying while the broker restarts.
func dialRetry(url string, stop <-chan struct{}) (*amqp.Connection, bool) {
	for {
		c, err := amqp.Dial(url)
		if err == nil {
			return c, true
		}
		select {
		case <-stop:
			return nil, false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sessions calls run with a fresh channel after each (re)connection to url,
// until stop: run returns when its channel fails (the broker went) or stop
// is closed, and the connection is closed after it (acks already sent are
// read before the close).
func sessions(url string, stop <-chan struct{}, run func(ch *amqp.Channel)) {
	for {
		c, ok := dialRetry(url, stop)
		if !ok {
			return
		}
		if ch, err := c.Channel(); err == nil {
			run(ch)
		}
		c.Close()
		select {
		case <-stop:
			return
		default:
		}
	}
}

// confirmedWindows publishes with confirms until stop, across broker
// restarts: window publishes one window on ch and returns, in publish
// order, what to do with each message's outcome (confirmed, nacked, or
// unknown when the channel died first).
func confirmedWindows(url string, stop <-chan struct{}, window func(ch *amqp.Channel) ([]func(history.Outcome), error)) {
	sessions(url, stop, func(ch *amqp.Channel) {
		if ch.Confirm(false) != nil {
			return
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 64))
		for {
			select {
			case <-stop:
				return
			default:
			}
			outcomes, err := window(ch)
			for i, outcome := range outcomes {
				cf, open := <-confirms
				if !open {
					for _, unknown := range outcomes[i:] {
						unknown(history.Unknown)
					}
					return
				}
				if cf.Ack {
					outcome(history.Confirmed)
				} else {
					outcome(history.Nacked)
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// deliveries consumes queue until stop, across restarts, handing each
// delivery to each (which acks it) with its channel and the channel's
// number (from 1).
// closed, unless nil, learns of each channel closed cleanly at stop, with
// when its close began: the broker took every ack sent on it before.
func deliveries(url, queue string, stop <-chan struct{}, each func(ch *amqp.Channel, channel int, d amqp.Delivery), closed func(channel int, start time.Time)) {
	channel := 0
	sessions(url, stop, func(ch *amqp.Channel) {
		channel++
		if ch.Qos(50, 0, false) != nil {
			return
		}
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return
		}
		for {
			select {
			case <-stop:
				start := time.Now()
				if ch.Close() == nil && closed != nil {
					closed(channel, start)
				}
				return
			case d, ok := <-ds:
				if !ok {
					return
				}
				each(ch, channel, d)
			}
		}
	})
}

// waitNoneMissing polls missing (which takes its own locks) until it
// reports no confirmed message undelivered, failing them as lost after a
// minute.
func waitNoneMissing(t *testing.T, b *broker, what string, missing func() int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := missing()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d confirmed %s never delivered (lost)\n%s", n, what, b.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produce publishes persistent messages with confirms until stop, across
// broker restarts, in windows of 20, recording each publish.
func produce(id int, url string, rec *history.Recorder, stop <-chan struct{}) {
	publisher, seq := fmt.Sprintf("p%d", id), int64(0)
	confirmedWindows(url, stop, func(ch *amqp.Channel) ([]func(history.Outcome), error) {
		var outcomes []func(history.Outcome)
		for i := 0; i < 20; i++ {
			seq++
			b := fmt.Sprintf("p%d-%d", id, seq)
			op := rec.Publish(publisher, "crash", b, seq)
			if err := ch.Publish("", "crash", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b)}); err != nil {
				op.End(history.Unknown)
				return outcomes, err
			}
			outcomes = append(outcomes, op.End)
		}
		return outcomes, nil
	})
}

// recordDelivery records d, received by consumer on its channel-th channel
// from queue.
func recordDelivery(rec *history.Recorder, consumer string, channel int, queue string, d amqp.Delivery) history.Delivery {
	hd := history.Delivery{Consumer: consumer, Session: fmt.Sprintf("%s/%d", consumer, channel), Queue: queue,
		ID: string(d.Body), Redelivered: d.Redelivered, Tag: d.DeliveryTag, DeliveryCount: -1}
	if n, ok := d.Headers["x-delivery-count"].(int64); ok {
		hd.DeliveryCount = n
	}
	rec.Deliver(hd)
	return hd
}

// syncEvery is how many deliveries a consumer acks between two basic.qos
// round trips, each of which makes the acks before it certain: the broker
// must have them on disk before it answers, so none may come back after a
// kill -9.
const syncEvery = 25

// consume records and acks deliveries until stop, across restarts, with a
// round trip every syncEvery acks.
func consume(id int, url string, rec *history.Recorder, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	consumer := fmt.Sprintf("c%d", id)
	session := func(channel int) string { return fmt.Sprintf("%s/%d", consumer, channel) }
	acked, on := 0, 0
	deliveries(url, "crash", stop, func(ch *amqp.Channel, channel int, d amqp.Delivery) {
		if channel != on {
			acked, on = 0, channel
		}
		hd := recordDelivery(rec, consumer, channel, "crash", d)
		rec.Ack(hd).End(d.Ack(false))
		if acked++; acked%syncEvery == 0 {
			// The client library buffers deliveries without bound, so
			// waiting for qos-ok here cannot stall its reader.
			start := time.Now()
			if ch.Qos(50, 0, false) == nil {
				rec.RoundTrip(session(channel), start)
			}
		}
	}, func(channel int, start time.Time) { rec.RoundTrip(session(channel), start) })
}

// TestKill9WhilePublishingAndConsuming kills the broker at random moments
// under load, several times, and checks that no confirmed message is lost;
// after a graceful stop no acked message comes back. scripts/crashtest runs
// it longer (CRASHTEST_KILLS, CRASHTEST_PRODUCERS, CRASHTEST_CONSUMERS).
func TestKill9WhilePublishingAndConsuming(t *testing.T) {
	kills := envInt("CRASHTEST_KILLS", 5)
	producers := envInt("CRASHTEST_PRODUCERS", 3)
	consumers := envInt("CRASHTEST_CONSUMERS", 2)
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("CRASHTEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (CRASHTEST_SEED to replay), %d kills, %d producers, %d consumers", seed, kills, producers, consumers)
	rng := rand.New(rand.NewSource(seed))

	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if _, err := ch.QueueDeclare("crash", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	rec := history.NewRecorder()
	stopProducers, stopConsumers := make(chan struct{}), make(chan struct{})
	var pwg sync.WaitGroup
	for i := 0; i < producers; i++ {
		pwg.Add(1)
		go func(i int) { defer pwg.Done(); produce(i, b.url, rec, stopProducers) }(i)
	}
	var consumed []chan struct{}
	for i := 0; i < consumers; i++ {
		done := make(chan struct{})
		consumed = append(consumed, done)
		go consume(i, b.url, rec, stopConsumers, done)
	}

	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(200+rng.Intn(800)) * time.Millisecond)
		b.kill9(t)
		b = startBroker(t, dataDir, port)
	}
	time.Sleep(500 * time.Millisecond)
	close(stopProducers)
	pwg.Wait()

	// Let the consumers drain everything, then stop them.
	waitNoneMissing(t, b, "messages", rec.Undelivered)
	close(stopConsumers)
	for _, done := range consumed {
		<-done
	}

	// Everything delivered was acked; the queue may still hold messages that
	// were published but never confirmed (they may or may not survive), so
	// drain those too (a no-ack get settles a message as it is sent, so it
	// is recorded as acked at once, made certain by the channel's clean
	// close), then stop gracefully and restart: no acked message may come
	// back.
	_, ch = dial(t, b.url)
	drainEach(t, ch, "crash", func(d amqp.Delivery) {
		rec.Ack(recordDelivery(rec, "drain", 1, "crash", d)).End(nil)
	})
	start := time.Now()
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	rec.RoundTrip("drain/1", start)
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = b.cmd.Wait()
	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	back := drain(t, ch, "crash")
	for _, d := range back {
		recordDelivery(rec, "restarted", 1, "crash", d)
	}

	report := rec.Check()
	t.Logf("confirmed %d, delivered %d distinct, duplicates %d (%d after an ack in flight at a kill), lost %d",
		report.Confirmed, report.Distinct, report.Duplicates, report.AfterInFlightAck, report.Lost.Count)
	t.Log(report)
	if report.Confirmed == 0 {
		t.Fatal("nothing was confirmed; the test measured nothing")
	}
	if !report.OK() {
		t.Error("the history breaks the broker's guarantees (see the report above)")
	}
	if len(back) != 0 {
		t.Fatalf("%d acked messages came back after a graceful restart (first %q)", len(back), back[0].Body)
	}
}
