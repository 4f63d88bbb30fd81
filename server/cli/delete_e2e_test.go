package cli_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// deleteQueues is how many queues each phase of TestDeleteManyQueues
// declares and deletes.
const deleteQueues = 10000

// declareQueues declares n queues named prefix-i, durable or not, and with
// bind each bound to amq.direct by its name and every 100th also to the
// topic exchange "del.topic"; the declares go over a few channels at once
// so the set-up does not wait on one fsync after another.
func declareQueues(t *testing.T, c *amqp.Connection, prefix string, n int, durable, bind bool) {
	t.Helper()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ch.Close()
			for i := w; i < n; i += workers {
				name := fmt.Sprintf("%s-%d", prefix, i)
				if _, err := ch.QueueDeclare(name, durable, false, false, false, nil); err != nil {
					errs <- err
					return
				}
				if !bind {
					continue
				}
				if err := ch.QueueBind(name, name, "amq.direct", false, nil); err != nil {
					errs <- err
					return
				}
				if i%100 == 0 {
					if err := ch.QueueBind(name, fmt.Sprintf("del.*.%d", i), "del.topic", false, nil); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// deleteAll deletes prefix-0 .. prefix-(n-1) one by one and returns how
// long that took.
func deleteAll(t *testing.T, ch *amqp.Channel, prefix string, n int) time.Duration {
	t.Helper()
	begin := time.Now()
	for i := 0; i < n; i++ {
		if _, err := ch.QueueDelete(fmt.Sprintf("%s-%d", prefix, i), false, false, false); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(begin)
}

// probeDeclares redeclares a queue on its own connection until stop closes,
// returning each declare's latency.
func probeDeclares(t *testing.T, url string, stop <-chan struct{}) <-chan []time.Duration {
	t.Helper()
	ch, err := dial(t, url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		defer func() { out <- lat }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			begin := time.Now()
			if _, err := ch.QueueDeclare("del-probe", false, false, false, false, nil); err != nil {
				t.Error(err)
				return
			}
			lat = append(lat, time.Since(begin))
			// A client that declares now and then, not flat out: the
			// probe measures waiting, it should not compete for the CPU.
			time.Sleep(time.Millisecond)
		}
	}()
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// Deleting many bound queues one by one costs each delete its own bindings,
// not a scan of every binding, and another client's queue.declare is not
// held up meanwhile. The bounds are ratios within one run, so a slow or busy
// machine moves both sides: deleting 10,000 bound durable queues (each of
// whose bindings is also in the definitions store) against deleting as many
// unbound durable ones, which pay the same fsync per delete but have no
// bindings to find. (Against transient queues the ratio would mostly
// measure the disk's fsync.)
func TestDeleteManyQueues(t *testing.T) {
	if testing.Short() {
		t.Skip("declares and deletes 30,000 queues")
	}
	p := start(t, []string{"run"})
	c := dial(t, p.url)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("del.topic", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	// The probe's latency with nothing else going on.
	stop := make(chan struct{})
	idleC := probeDeclares(t, p.url, stop)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	idle := <-idleC

	declareQueues(t, c, "tq", deleteQueues, false, true)
	transient := deleteAll(t, ch, "tq", deleteQueues)
	declareQueues(t, c, "uq", deleteQueues, true, false)
	unbound := deleteAll(t, ch, "uq", deleteQueues)

	declareQueues(t, c, "dq", deleteQueues, true, true)
	stop = make(chan struct{})
	busyC := probeDeclares(t, p.url, stop)
	durable := deleteAll(t, ch, "dq", deleteQueues)
	close(stop)
	busy := <-busyC

	ratio := durable.Seconds() / unbound.Seconds()
	t.Logf("%d queues deleted one by one: bound transient %v, unbound durable %v, bound durable %v (%.2fx unbound, %.2fx transient)",
		deleteQueues, transient, unbound, durable, ratio, durable.Seconds()/transient.Seconds())
	idle50, busy50, busy99 := percentile(idle, 0.5), percentile(busy, 0.5), percentile(busy, 0.99)
	t.Logf("probe queue.declare: idle p50 %v p99 %v (%d); during durable deletes p50 %v p99 %v max %v (%d)",
		idle50, percentile(idle, 0.99), len(idle), busy50, busy99, percentile(busy, 1), len(busy))
	if ratio > 3 {
		t.Errorf("deleting %d bound durable queues took %.1fx as long as unbound ones (%v vs %v), want under 3x",
			deleteQueues, ratio, durable, unbound)
	}
	// The probe waits at most for the one delete in progress, a fraction
	// of a millisecond; a scan of every binding under the vhost lock made
	// its median tens of times the idle one and its tail tens of ms.
	if busy50 > 10*idle50+500*time.Microsecond {
		t.Errorf("probe queue.declare median %v during deletes, idle %v", busy50, idle50)
	}
	if busy99 > 50*time.Millisecond {
		t.Errorf("probe queue.declare p99 %v during deletes", busy99)
	}

	// Nothing of any batch is left.
	for _, name := range []string{"tq-0", "uq-0", "dq-0", "dq-100"} {
		probe, _ := c.Channel()
		if _, err := probe.QueueDeclarePassive(name, false, false, false, false, nil); err == nil {
			t.Errorf("%s still exists", name)
		}
	}
}
