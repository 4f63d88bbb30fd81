package broker

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// serveIn runs a server, with a data directory when dir is set (the Badger
// definitions store) or memory-only when not, and connects to it. stop
// closes both and is also run when the test ends.
func serveIn(t *testing.T, dir string) (s *Server, conn *amqp.Connection, stop func()) {
	t.Helper()
	return serveConfig(t, Config{DataDir: dir})
}

// serveConfig is serveIn with more of the configuration.
func serveConfig(t *testing.T, cfg Config) (s *Server, conn *amqp.Connection, stop func()) {
	t.Helper()
	cfg.Address, cfg.Logger = "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.OpenDefinitions = openBadger
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = s.Serve(); close(served) }()
	conn, err = amqp.Dial("amqp://guest:guest@" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			conn.Close()
			_ = s.Close()
			<-served
		}
	}
	t.Cleanup(stop)
	return s, conn, stop
}

// stores runs f once on the memory store and once on Badger.
func stores(t *testing.T, f func(t *testing.T, dir string)) {
	t.Run("memory", func(t *testing.T) { f(t, "") })
	t.Run("badger", func(t *testing.T) { f(t, t.TempDir()) })
}

// storedBindings lists the binding keys in a closed server's Badger store.
func storedBindings(t *testing.T, dir string) []string {
	t.Helper()
	d, err := openDefinitions(openBadger, dir+"/definitions")
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	var out []string
	err = d.kv.Each(key("b"), func(k, _ []byte) error {
		parts, err := splitKey(k)
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprint(parts[2:6]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Deleting a queue removes exactly its bindings, from every exchange's
// routing and from the store; deleting an exchange removes the bindings out
// of it and into it; an auto-delete exchange goes with its last binding.
// On Badger the same state comes back after a restart.
func TestDeleteRemovesOwnBindings(t *testing.T) {
	stores(t, func(t *testing.T, dir string) {
		s, conn, stop := serveIn(t, dir)
		ch, err := conn.Channel()
		must(t, err)
		must(t, ch.ExchangeDeclare("t", "topic", true, false, false, false, nil))
		must(t, ch.ExchangeDeclare("f", "fanout", true, false, false, false, nil))
		must(t, ch.ExchangeDeclare("ad", "fanout", true, true, false, false, nil))
		for _, q := range []string{"q1", "q2"} {
			_, err := ch.QueueDeclare(q, true, false, false, false, nil)
			must(t, err)
		}
		must(t, ch.QueueBind("q1", "k1", "amq.direct", false, nil))
		must(t, ch.QueueBind("q1", "a.*", "t", false, nil))
		must(t, ch.QueueBind("q1", "", "ad", false, nil))
		must(t, ch.QueueBind("q2", "k2", "amq.direct", false, nil))
		must(t, ch.QueueBind("q2", "a.#", "t", false, nil))
		must(t, ch.ExchangeBind("t", "x", "f", false, nil)) // f -> t
		must(t, ch.ExchangeBind("f", "y", "t", false, nil)) // t -> f

		v := s.vhost("/")
		q1, q2 := v.queue("q1"), v.queue("q2")
		if n := v.dests.count(destKey{q: q1}); n != 3 {
			t.Fatalf("q1 has %d indexed bindings, want 3", n)
		}
		if _, err := ch.QueueDelete("q1", false, false, false); err != nil {
			t.Fatal(err)
		}
		if n := v.dests.count(destKey{q: q1}); n != 0 {
			t.Errorf("q1 still has %d indexed bindings", n)
		}
		if n := v.exchange("amq.direct").bindingCount(); n != 1 {
			t.Errorf("amq.direct has %d bindings, want 1 (q2)", n)
		}
		if n := v.exchange("t").bindingCount(); n != 2 {
			t.Errorf("t has %d bindings, want 2 (q2, f)", n)
		}
		if v.exchange("ad") != nil {
			t.Error("auto-delete exchange ad outlived its last binding")
		}

		// t goes with the bindings out of it (to q2 and f) and into it
		// (from f).
		must(t, ch.ExchangeDelete("t", false, false))
		if n := v.dests.count(destKey{q: q2}); n != 1 {
			t.Errorf("q2 has %d indexed bindings, want 1 (amq.direct)", n)
		}
		if n := v.exchange("f").bindingCount(); n != 0 {
			t.Errorf("f has %d bindings, want 0", n)
		}
		if n := v.dests.count(destKey{x: v.exchange("f")}); n != 0 {
			t.Errorf("f has %d indexed bindings into it, want 0", n)
		}
		if len(v.dests.m) != 1 {
			t.Errorf("index holds %d destinations, want 1 (q2): %v", len(v.dests.m), v.dests.m)
		}

		// What is routed is what the index says.
		must(t, ch.Publish("amq.direct", "k2", false, false, amqp.Publishing{Body: []byte("m")}))
		if _, ok, err := ch.Get("q2", true); err != nil || !ok {
			t.Fatalf("q2 got nothing by k2: %v", err)
		}
		if dir == "" {
			return
		}
		stop()
		if got := storedBindings(t, dir); len(got) != 1 || got[0] != "[amq.direct q q2 k2]" {
			t.Errorf("stored bindings %v, want only amq.direct -> q2", got)
		}
		s, _, _ = serveIn(t, dir)
		v = s.vhost("/")
		if n := v.exchange("amq.direct").bindingCount(); n != 1 {
			t.Errorf("after restart amq.direct has %d bindings, want 1", n)
		}
		if n := v.dests.count(destKey{q: v.queue("q2")}); n != 1 {
			t.Errorf("after restart q2 has %d indexed bindings, want 1", n)
		}
		if v.exchange("t") != nil || v.exchange("ad") != nil || v.queue("q1") != nil {
			t.Error("a deleted definition came back")
		}
	})
}

// A stored binding whose exchange is gone (a crash between writes of an
// older version could leave one) is dropped at recovery, so it does not
// come back when an exchange of that name is declared again.
func TestRecoveryDropsOrphanBindings(t *testing.T) {
	dir := t.TempDir()
	_, conn, stop := serveIn(t, dir)
	ch, err := conn.Channel()
	must(t, err)
	must(t, ch.ExchangeDeclare("x", "direct", true, false, false, false, nil))
	_, err = ch.QueueDeclare("q", true, false, false, false, nil)
	must(t, err)
	must(t, ch.QueueBind("q", "k", "x", false, nil))
	stop()

	d, err := openDefinitions(openBadger, dir+"/definitions")
	must(t, err)
	must(t, d.deleteKeys(key("x", "/", "x")))
	must(t, d.close())

	s, conn, stop := serveIn(t, dir)
	if s.vhost("/").exchange("x") != nil {
		t.Fatal("x came back")
	}
	ch, err = conn.Channel()
	must(t, err)
	must(t, ch.ExchangeDeclare("x", "direct", true, false, false, false, nil))
	stop()
	if got := storedBindings(t, dir); len(got) != 0 {
		t.Errorf("orphan bindings still stored: %v", got)
	}
	s, _, _ = serveIn(t, dir)
	if n := s.vhost("/").exchange("x").bindingCount(); n != 0 {
		t.Errorf("redeclared x has %d bindings, want 0", n)
	}
}

// BenchmarkDeleteBoundQueue deletes a bound queue (declared and bound
// outside the timer) while n other bound queues exist: with the destination
// index its cost does not grow with n (before it, each delete scanned every
// binding).
func BenchmarkDeleteBoundQueue(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint("queues=", n), func(b *testing.B) {
			s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			v := s.vhost("/")
			x := v.exchange("amq.direct")
			bind := func(name string) *Queue {
				r, err := v.Apply(DefChange{Kind: QueueDeclare, Queue: name})
				if err != nil {
					b.Fatal(err)
				}
				x.bind(&binding{key: name, q: r.Queue})
				return r.Queue
			}
			for i := 0; i < n; i++ {
				bind(fmt.Sprint("q", i))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				q := bind("extra")
				b.StartTimer()
				if _, err := v.deleteQueue(q, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
