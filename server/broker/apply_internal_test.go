package broker

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// definitionsOf lists v's exchanges, queues and bindings, sorted, after
// checking that they agree: every binding's ends are in the maps and the
// destination index holds exactly the exchanges' bindings.
func definitionsOf(t *testing.T, v *VHost) []string {
	t.Helper()
	v.defsMu.Lock() // no change in between
	defer v.defsMu.Unlock()
	var out []string
	indexed := 0
	v.dests.mu.Lock()
	for _, set := range v.dests.m {
		indexed += len(set)
	}
	v.dests.mu.Unlock()
	bound := 0
	for name, x := range v.exchanges {
		out = append(out, fmt.Sprintf("x %q %s durable=%v ad=%v internal=%v", name, x.Kind, x.Durable, x.AutoDelete, x.Internal))
		for _, b := range x.bindingList() {
			bound++
			var dest string
			if b.q != nil {
				dest = fmt.Sprintf("q %q", b.q.Name)
				if v.queues[b.q.Name] != b.q {
					t.Errorf("binding %q -> %s: the queue is not the vhost's", name, dest)
				}
			} else {
				dest = fmt.Sprintf("x %q", b.x.Name)
				if v.exchanges[b.x.Name] != b.x {
					t.Errorf("binding %q -> %s: the exchange is not the vhost's", name, dest)
				}
			}
			if b.src != x {
				t.Errorf("binding %q -> %s has source %q", name, dest, b.src.Name)
			}
			v.dests.mu.Lock()
			_, ok := v.dests.m[destKey{b.q, b.x}][b]
			v.dests.mu.Unlock()
			if !ok {
				t.Errorf("binding %q -> %s is not in the destination index", name, dest)
			}
			out = append(out, fmt.Sprintf("b %q -> %s key %q", name, dest, b.key))
		}
	}
	if bound != indexed {
		t.Errorf("exchanges hold %d bindings, the destination index %d", bound, indexed)
	}
	for name, q := range v.queues {
		out = append(out, fmt.Sprintf("q %q durable=%v ad=%v", name, q.Durable, q.AutoDelete))
	}
	slices.Sort(out)
	return out
}

// Durable declares, binds, unbinds and deletes from many connections at
// once (some racing on the same names) while another connection publishes
// with confirms leave consistent definitions, the ones the operations
// imply, and the same definitions come back after a restart.
func TestApplyConcurrentDurableChanges(t *testing.T) {
	dir := t.TempDir()
	s, conn, stop := serveIn(t, dir)
	url := "amqp://guest:guest@" + s.Addr().String() + "/"
	setup, err := conn.Channel()
	must(t, err)
	must(t, setup.ExchangeDeclare("hub", "fanout", true, false, false, false, nil))

	stopPub := make(chan struct{})
	published := make(chan int, 1)
	go func() {
		n := 0
		defer func() { published <- n }()
		pch, err := conn.Channel()
		if err != nil {
			t.Error(err)
			return
		}
		if err := pch.Confirm(false); err != nil {
			t.Error(err)
			return
		}
		for {
			select {
			case <-stopPub:
				return
			default:
			}
			for _, target := range [][2]string{{"hub", ""}, {"", "q0.0"}, {"amq.direct", "k"}} {
				dc, err := pch.PublishWithDeferredConfirm(target[0], target[1], false, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("m")})
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				if !dc.Wait() {
					t.Error("publish nacked")
					return
				}
				n++
			}
		}
	}()

	const workers, rounds = 6, 16
	var wg sync.WaitGroup
	// connected runs f on a connection of its own, in a goroutine of wg.
	connected := func(f func(c *amqp.Connection)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := amqp.Dial(url)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			f(c)
		}()
	}
	for w := range workers {
		connected(func(c *amqp.Connection) {
			ch, err := c.Channel()
			if err != nil {
				t.Error(err)
				return
			}
			do := func(what string, err error) {
				if err != nil {
					t.Errorf("worker %d: %s: %v", w, what, err)
				}
			}
			for j := range rounds {
				x, q := fmt.Sprintf("x%d.%d", w, j), fmt.Sprintf("q%d.%d", w, j)
				do("exchange.declare", ch.ExchangeDeclare(x, "direct", true, false, false, false, nil))
				_, err := ch.QueueDeclare(q, true, false, false, false, nil)
				do("queue.declare", err)
				do("queue.bind", ch.QueueBind(q, "k", x, false, nil))
				do("queue.bind hub", ch.QueueBind(q, "", "hub", false, nil))
				do("queue.bind amq.direct", ch.QueueBind(q, "k", "amq.direct", false, nil))
				do("exchange.bind", ch.ExchangeBind(x, "", "hub", false, nil))
				switch j % 4 {
				case 1:
					_, err := ch.QueueDelete(q, false, false, false)
					do("queue.delete", err)
				case 2:
					do("exchange.delete", ch.ExchangeDelete(x, false, false))
				case 3:
					do("queue.unbind", ch.QueueUnbind(q, "", "hub", nil))
					do("exchange.unbind", ch.ExchangeUnbind(x, "", "hub", false, nil))
				}
			}
		})
	}
	// Two more connections race on one name: declare, bind, delete. A
	// bind may find the queue just deleted by the other (404); each one's
	// last word is a delete, so the queue is gone at the end.
	for r := range 2 {
		connected(func(c *amqp.Connection) {
			for range rounds {
				ch, err := c.Channel()
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := ch.QueueDeclare("raced", true, false, false, false, nil); err != nil {
					t.Errorf("racer %d: declare: %v", r, err)
					return
				}
				var ae *amqp.Error
				if err := ch.QueueBind("raced", "", "hub", false, nil); errors.As(err, &ae) && ae.Code == amqp.NotFound {
					continue // the other deleted it: the channel is closed
				} else if err != nil {
					t.Errorf("racer %d: bind: %v", r, err)
					return
				}
				if _, err := ch.QueueDelete("raced", false, false, false); err != nil {
					t.Errorf("racer %d: delete: %v", r, err)
					return
				}
				ch.Close()
			}
			ch, err := c.Channel()
			if err == nil {
				_, err = ch.QueueDelete("raced", false, false, false)
			}
			if err != nil {
				t.Errorf("racer %d: last delete: %v", r, err)
			}
		})
	}
	wg.Wait()
	close(stopPub)
	if n := <-published; n == 0 {
		t.Error("nothing was published while the definitions changed")
	}

	var want []string
	for name, x := range map[string]struct{ kind, flags string }{"": {"direct", "true"}, "amq.direct": {"direct", "true"},
		"amq.fanout": {"fanout", "true"}, "amq.topic": {"topic", "true"}, "amq.headers": {"headers", "true"},
		"amq.match": {"headers", "true"}, "hub": {"fanout", "true"}} {
		want = append(want, fmt.Sprintf("x %q %s durable=%s ad=false internal=false", name, x.kind, x.flags))
	}
	for w := range workers {
		for j := range rounds {
			x, q := fmt.Sprintf("%q", fmt.Sprintf("x%d.%d", w, j)), fmt.Sprintf("%q", fmt.Sprintf("q%d.%d", w, j))
			xDef := "x " + x + " direct durable=true ad=false internal=false"
			qDef := "q " + q + " durable=true ad=false"
			toQ := `b "amq.direct" -> q ` + q + ` key "k"`
			hubQ := `b "hub" -> q ` + q + ` key ""`
			hubX := `b "hub" -> x ` + x + ` key ""`
			xQ := "b " + x + " -> q " + q + ` key "k"`
			switch j % 4 {
			case 0:
				want = append(want, xDef, qDef, toQ, hubQ, hubX, xQ)
			case 1:
				want = append(want, xDef, hubX)
			case 2:
				want = append(want, qDef, toQ, hubQ)
			case 3:
				want = append(want, xDef, qDef, toQ, xQ)
			}
		}
	}
	slices.Sort(want)
	got := definitionsOf(t, s.vhost("/"))
	if !slices.Equal(got, want) {
		t.Fatalf("definitions after the concurrent changes:\n%v\nwant\n%v", diffLines(got, want), diffLines(want, got))
	}
	stop()
	s, _, _ = serveIn(t, dir)
	if again := definitionsOf(t, s.vhost("/")); !slices.Equal(again, want) {
		t.Fatalf("definitions after a restart differ:\nextra %v\nmissing %v", diffLines(again, want), diffLines(want, again))
	}
}

// diffLines lists the lines of a not in b.
func diffLines(a, b []string) []string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, l)
		}
	}
	return out
}

// While a durable declare is held in its definitions write (the write
// hook), lookups do not wait for it: publishing to existing queues through
// new channels (no cached lookups) is confirmed and delivered, a passive
// declare and an equivalent redeclare answer, and another vhost's durable
// declare completes. The held queue appears only once its write is done.
func TestDefinitionWriteDoesNotBlockLookups(t *testing.T) {
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	hook := func() error {
		if hold.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
		return nil
	}
	s, conn, _ := serveConfig(t, Config{DataDir: t.TempDir(), VHosts: []string{"/", "other"}, defsWriteHook: hook})
	setup, err := conn.Channel()
	must(t, err)
	_, err = setup.QueueDeclare("kept", true, false, false, false, nil)
	must(t, err)
	must(t, setup.QueueBind("kept", "k", "amq.direct", false, nil))

	hold.Store(true)
	declared := make(chan error, 1)
	// Its own connection: a connection's methods are handled one at a time.
	slow, err := amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/")
	must(t, err)
	t.Cleanup(func() { slow.Close() })
	t.Cleanup(func() {
		if !isClosed(release) {
			close(release) // a failed test lets the held write go first
		}
	})
	go func() {
		ch, err := slow.Channel()
		if err == nil {
			_, err = ch.QueueDeclare("slow", true, false, false, false, nil)
		}
		declared <- err
	}()
	within(t, "the durable declare to reach its write", func() error { <-held; return nil })
	v := s.vhost("/")

	start := time.Now()
	within(t, "publishing", func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		for _, target := range [][2]string{{"amq.direct", "k"}, {"", "kept"}} {
			dc, err := ch.PublishWithDeferredConfirm(target[0], target[1], false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("m")})
			if err != nil {
				return err
			}
			if !dc.Wait() {
				return errors.New("nacked")
			}
		}
		for range 2 {
			if _, ok, err := ch.Get("kept", true); err != nil || !ok {
				return fmt.Errorf("get: %v %v", ok, err)
			}
		}
		return nil
	})
	within(t, "a passive declare and a redeclare", func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if _, err := ch.QueueDeclarePassive("kept", true, false, false, false, nil); err != nil {
			return err
		}
		_, err = ch.QueueDeclare("kept", true, false, false, false, nil)
		return err
	})
	within(t, "another vhost's durable declare", func() error {
		c, err := amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/other")
		if err != nil {
			return err
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return err
		}
		_, err = ch.QueueDeclare("elsewhere", true, false, false, false, nil)
		return err
	})
	t.Logf("lookups, publishes and another vhost's declare took %v with a definitions write held", time.Since(start))
	if v.queue("slow") != nil {
		t.Fatal("the held queue is visible before its write is done")
	}
	select {
	case err := <-declared:
		t.Fatalf("the held declare finished (%v) before its write was released", err)
	default:
	}
	close(release)
	within(t, "the held declare", func() error { return <-declared })
	if v.queue("slow") == nil {
		t.Fatal("the declared queue is missing")
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// within runs f and fails the test if it errs or takes more than 10s.
func within(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10s", what)
	}
}

// A definitions write that fails answers 541 and leaves memory as it was:
// no declared queue or exchange, no binding added or removed, nothing
// deleted; after a restart the store agrees.
func TestFailedDefinitionWriteLeavesMemory(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	hook := func() error {
		if fail.Load() {
			return errors.New("injected write failure")
		}
		return nil
	}
	s, conn, stop := serveConfig(t, Config{DataDir: dir, defsWriteHook: hook})
	ch, err := conn.Channel()
	must(t, err)
	must(t, ch.ExchangeDeclare("dx", "topic", true, false, false, false, nil))
	_, err = ch.QueueDeclare("dq", true, false, false, false, nil)
	must(t, err)
	must(t, ch.QueueBind("dq", "k", "dx", false, nil))
	v := s.vhost("/")
	before := definitionsOf(t, v)

	fail.Store(true)
	url := "amqp://guest:guest@" + s.Addr().String() + "/"
	for what, f := range map[string]func(ch *amqp.Channel) error{
		"queue.declare": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("nq", true, false, false, false, nil)
			return err
		},
		"exchange.declare": func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare("nx", "direct", true, false, false, false, nil)
		},
		"queue.bind":   func(ch *amqp.Channel) error { return ch.QueueBind("dq", "k2", "dx", false, nil) },
		"queue.unbind": func(ch *amqp.Channel) error { return ch.QueueUnbind("dq", "k", "dx", nil) },
		"queue.delete": func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete("dq", false, false, false)
			return err
		},
		"exchange.delete": func(ch *amqp.Channel) error { return ch.ExchangeDelete("dx", false, false) },
	} {
		c, err := amqp.Dial(url)
		must(t, err)
		ch, err := c.Channel()
		must(t, err)
		err = f(ch)
		c.Close()
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != amqp.InternalError ||
			ae.Reason != "INTERNAL_ERROR - could not store the definition: injected write failure" {
			t.Errorf("%s with a failing store: %v, want 541", what, err)
		}
		if got := definitionsOf(t, v); !slices.Equal(got, before) {
			t.Errorf("%s with a failing store changed memory:\nextra %v\nmissing %v", what, diffLines(got, before), diffLines(before, got))
		}
	}
	fail.Store(false)
	stop()
	s, _, _ = serveIn(t, dir)
	if got := definitionsOf(t, s.vhost("/")); !slices.Equal(got, before) {
		t.Errorf("after a restart:\nextra %v\nmissing %v", diffLines(got, before), diffLines(before, got))
	}
}
