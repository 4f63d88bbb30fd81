package broker_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestSlowConsumerIsolated: a consumer that never reads its socket (no-ack,
// unlimited prefetch) must not hold up other connections, including ones
// publishing to its queue.
func TestSlowConsumerIsolated(t *testing.T) {
	u := brokerURL(t)
	setup := openConn(t, u)
	sch := openChan(t, setup)
	slowQ := declareQueue(t, u, sch, uname(t, "slow")).Name

	// amqp091-go buffers deliveries without bound, so the stuck consumer is
	// a raw socket that stops reading.
	stuck, _ := rawHandshake(t, u, rawOpts{})
	stuck.openChannel(1)
	stuck.send(1, &wire.BasicConsume{Queue: slowQ, ConsumerTag: "stuck", NoAck: true})
	if _, m := stuck.readMethod(); m.MethodName() != "basic.consume-ok" {
		t.Fatalf("got %s", m.MethodName())
	}

	pub := openConn(t, u)
	pch := openChan(t, pub)
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n, size = 2000, 16 << 10 // 32 MiB, far beyond socket buffers
	confirms := pch.NotifyPublish(make(chan amqp.Confirmation, n))
	payload := bytes.Repeat([]byte("s"), size)
	start := time.Now()
	for i := 0; i < n; i++ {
		publish(t, pch, "", slowQ, amqp.Publishing{Body: payload})
	}
	for i := 0; i < n; i++ {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("nack %d", c.DeliveryTag)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("publisher to the slow consumer's queue stuck after %d confirms", i)
		}
	}
	t.Logf("published %d MiB to the stuck consumer's queue in %v", n*size>>20, time.Since(start))

	// Another connection publishes and consumes promptly.
	other := openConn(t, u)
	och := openChan(t, other)
	q := tempQueue(t, och)
	ds, err := och.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		publish(t, och, "", q, body(fmt.Sprint(i)))
		d := recv(t, ds)
		if string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("got %q", d.Body)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	// And management still works on the stuck consumer's queue.
	if _, err := openChan(t, other).QueueDeclarePassive(slowQ, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

// TestParallelPublishersConsumers: several publishing and consuming
// connections on one queue; every message is delivered exactly once.
func TestParallelPublishersConsumers(t *testing.T) {
	u := brokerURL(t)
	setup := openConn(t, u)
	qName := declareQueue(t, u, openChan(t, setup), uname(t, "shared")).Name
	const pubs, cons, perPub = 4, 4, 500
	total := pubs * perPub

	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, pubs+cons)

	for c := 0; c < cons; c++ {
		conn := openConn(t, u)
		ch := openChan(t, conn)
		if err := ch.Qos(50, 0, false); err != nil {
			t.Fatal(err)
		}
		ds, err := ch.Consume(qName, fmt.Sprintf("c%d", c), false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-ds:
					if !ok {
						errs <- fmt.Errorf("consumer closed")
						return
					}
					mu.Lock()
					seen[string(d.Body)]++
					if len(seen) == total {
						select {
						case <-done:
						default:
							close(done)
						}
					}
					mu.Unlock()
					if err := d.Ack(false); err != nil {
						errs <- err
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	var pwg sync.WaitGroup
	for p := 0; p < pubs; p++ {
		conn := openConn(t, u)
		ch := openChan(t, conn)
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, perPub))
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := 0; i < perPub; i++ {
				if err := ch.Publish("", qName, false, false, body(fmt.Sprintf("p%d-%d", p, i))); err != nil {
					errs <- err
					return
				}
			}
			for i := 0; i < perPub; i++ {
				select {
				case c := <-confirms:
					if !c.Ack {
						errs <- fmt.Errorf("nack %d", c.DeliveryTag)
						return
					}
				case <-time.After(10 * time.Second):
					errs <- fmt.Errorf("publisher %d: confirm %d timed out", p, i)
					return
				}
			}
		}()
	}
	pwg.Wait()
	select {
	case <-done:
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(15 * time.Second):
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		t.Fatalf("received %d distinct of %d", n, total)
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range seen {
		if v != 1 {
			t.Fatalf("%s delivered %d times", k, v)
		}
	}
	waitCount(t, setup, qName, 0)
}
