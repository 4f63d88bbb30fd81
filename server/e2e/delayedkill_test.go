package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/e2e/history"
	amqp "github.com/rabbitmq/amqp091-go"
)

// timedLedger records, for the delayed and TTL crash test, when each
// confirmed message may be delivered and when each delivery came.
type timedLedger struct {
	mu sync.Mutex
	// due: a delayed message's earliest delivery (the publisher's clock
	// before the publish, plus x-delay).
	due map[string]time.Time
	// expires: a short-TTL message's latest possible expiry (the
	// confirm's arrival plus its expiration); long: a TTL message that
	// must survive.
	expires map[string]time.Time
	long    map[string]bool
	// arrived: the first delivery of each delayed message; count: all.
	arrived map[string]time.Time
	count   map[string]int
}

// produceTimed publishes, across restarts, windows of delayed persistent
// messages (x-delay 200 ms to 3 s) to the durable delayed exchange "dly"
// and persistent messages with a per-message TTL to the queue "ttlq" (half
// of them 300 ms to 1 s, half 10 min), counting each once confirmed.
func produceTimed(url string, l *timedLedger, rng *rand.Rand, stop <-chan struct{}) {
	seq := 0
	confirmedWindows(url, stop, func(ch *amqp.Channel) ([]func(history.Outcome), error) {
		var outcomes []func(history.Outcome)
		for i := 0; i < 20; i++ {
			seq++
			var p amqp.Publishing
			var ack func()
			x, key := "dly", "k"
			if i%2 == 0 {
				delay := 200 + rng.Intn(2800)
				body, due := fmt.Sprintf("d%d", seq), time.Now().Add(time.Duration(delay)*time.Millisecond)
				p = amqp.Publishing{Headers: amqp.Table{"x-delay": int32(delay)}, Body: []byte(body)}
				ack = func() { l.mu.Lock(); l.due[body] = due; l.mu.Unlock() }
			} else {
				body, ttl := fmt.Sprintf("t%d", seq), 10*time.Minute
				if i%4 == 1 {
					ttl = time.Duration(300+rng.Intn(700)) * time.Millisecond
				}
				p = amqp.Publishing{Expiration: strconv.FormatInt(ttl.Milliseconds(), 10), Body: []byte(body)}
				x, key = "", "ttlq"
				ack = func() {
					l.mu.Lock()
					if ttl < time.Minute {
						l.expires[body] = time.Now().Add(ttl) // at the latest
					} else {
						l.long[body] = true
					}
					l.mu.Unlock()
				}
			}
			p.DeliveryMode = amqp.Persistent
			if err := ch.Publish(x, key, false, false, p); err != nil {
				return outcomes, err
			}
			outcomes = append(outcomes, func(o history.Outcome) {
				if o == history.Confirmed {
					ack()
				}
			})
		}
		return outcomes, nil
	})
}

// consumeTimed records when delayed messages arrive on "dlyq", acking
// them, across restarts.
func consumeTimed(url string, l *timedLedger, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	deliveries(url, "dlyq", stop, func(_ *amqp.Channel, _ int, d amqp.Delivery) {
		now, body := time.Now(), string(d.Body)
		l.mu.Lock()
		if _, seen := l.arrived[body]; !seen {
			l.arrived[body] = now
		}
		l.count[body]++
		l.mu.Unlock()
		_ = d.Ack(false)
	}, nil)
}

// TestKill9DelayedAndTTL kills the broker at random moments while delayed
// persistent messages wait in a durable delayed exchange and persistent
// messages with a per-message TTL wait in a queue. No confirmed delayed
// message may be lost or delivered before its due time; no short-TTL
// message may be delivered after it expired; no long-TTL one may be lost.
// scripts/crashtest runs it (CRASHTEST_DELAYED_KILLS, default 3).
func TestKill9DelayedAndTTL(t *testing.T) {
	kills := envInt("CRASHTEST_DELAYED_KILLS", 3)
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("CRASHTEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (CRASHTEST_SEED to replay), %d kills", seed, kills)
	rng := rand.New(rand.NewSource(seed))

	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if err := ch.ExchangeDeclare("dly", "x-delayed-message", true, false, false, false,
		amqp.Table{"x-delayed-type": "direct"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"dlyq", "ttlq"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.QueueBind("dlyq", "k", "dly", false, nil); err != nil {
		t.Fatal(err)
	}
	l := &timedLedger{due: map[string]time.Time{}, expires: map[string]time.Time{}, long: map[string]bool{},
		arrived: map[string]time.Time{}, count: map[string]int{}}
	stopProducer, stopConsumer := make(chan struct{}), make(chan struct{})
	produced, consumed := make(chan struct{}), make(chan struct{})
	// The producer's generator is seeded here: rng belongs to this goroutine.
	producerRng := rand.New(rand.NewSource(rng.Int63()))
	go func() {
		defer close(produced)
		produceTimed(b.url, l, producerRng, stopProducer)
	}()
	go consumeTimed(b.url, l, stopConsumer, consumed)

	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(300+rng.Intn(900)) * time.Millisecond)
		b.kill9(t)
		b = startBroker(t, dataDir, port)
	}
	time.Sleep(300 * time.Millisecond)
	close(stopProducer)
	<-produced

	// Every confirmed delayed message arrives, none before its due time.
	waitNoneMissing(t, b, "delayed messages", func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		missing := 0
		for body := range l.due {
			if _, ok := l.arrived[body]; !ok {
				missing++
			}
		}
		return missing
	})
	close(stopConsumer)
	<-consumed
	l.mu.Lock()
	defer l.mu.Unlock()
	early, dups, late := 0, 0, time.Duration(0)
	for body, due := range l.due {
		at := l.arrived[body]
		if at.Before(due) {
			early++
			t.Errorf("%s delivered %v before its due time", body, due.Sub(at))
		}
		late = max(late, at.Sub(due))
	}
	for _, n := range l.count {
		dups += max(n-1, 0)
	}
	if len(l.due) == 0 || len(l.long) == 0 || len(l.expires) == 0 {
		t.Fatalf("confirmed %d delayed, %d long-TTL, %d short-TTL: the test measured too little",
			len(l.due), len(l.long), len(l.expires))
	}

	// Once every short TTL is surely over, the queue holds every long one
	// and no short one.
	var last time.Time
	for _, e := range l.expires {
		if e.After(last) {
			last = e
		}
	}
	for time.Now().Before(last.Add(500 * time.Millisecond)) {
		time.Sleep(20 * time.Millisecond)
	}
	_, ch = dial(t, b.url)
	got := map[string]bool{}
	expired := 0
	for _, d := range drain(t, ch, "ttlq") {
		body := string(d.Body)
		got[body] = true
		if _, short := l.expires[body]; short {
			expired++
		}
	}
	lost := 0
	for body := range l.long {
		if !got[body] {
			lost++
		}
	}
	if expired > 0 || lost > 0 {
		t.Errorf("TTL: %d short-TTL messages delivered after they expired, %d long-TTL ones lost", expired, lost)
	}
	t.Logf("delayed: confirmed %d, early %d, lost 0, duplicates %d, latest %v after due (kills in between); "+
		"TTL: %d long kept, %d short expired", len(l.due), early, dups, late.Round(time.Millisecond), len(l.long), len(l.expires))
}
