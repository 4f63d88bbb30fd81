package store

import (
	"fmt"
	"runtime"
	"testing"
)

func TestDurableQueues(t *testing.T) {
	wide := []QueueID{0}
	for i := range 40 {
		wide = append(wide, QueueID(40-i%20))
	}
	for _, c := range []struct {
		in   []QueueID
		want string
	}{
		{nil, "[]"},
		{[]QueueID{0, 0}, "[]"},
		{[]QueueID{3}, "[3]"},
		{[]QueueID{3, 0, 1, 3, 1, 2}, "[3 1 2]"},
		{wide, fmt.Sprint(seq(21, 40))},
	} {
		if got := fmt.Sprint(durableQueues(nil, c.in)); got != c.want {
			t.Errorf("durableQueues(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestIndexModel checks the chunked index against maps, with ids that
// cross chunks, fan-outs, double releases and drops.
func TestIndexModel(t *testing.T) {
	x := newIndex()
	held := map[QueueID]map[uint64]bool{}
	stored := map[uint64]bool{}
	holders := func(id uint64) (n int) {
		for _, set := range held {
			if set[id] {
				n++
			}
		}
		return n
	}
	check := func(step int) {
		t.Helper()
		var want Stats
		for id := range stored {
			if n := holders(id); n > 0 {
				want.Messages++
				want.Holds += int64(n)
			}
			if x.live(id) != (holders(id) > 0) {
				t.Fatalf("step %d: live(%d) = %v with %d holders", step, id, x.live(id), holders(id))
			}
		}
		if got := x.stats(); got != want {
			t.Fatalf("step %d: stats %+v, want %+v", step, got, want)
		}
	}
	rng := uint64(1)
	next := func(n uint64) uint64 { rng = rng*6364136223846793005 + 1442695040888963407; return (rng >> 33) % n }
	id := uint64(1)
	for step := range 20000 {
		switch op := next(10); {
		case op < 5: // put to 1..3 queues
			var qs []uint64
			for range next(3) + 1 {
				qs = append(qs, next(6)+1)
			}
			qs = durableQueues(nil, func() []QueueID {
				var v []QueueID
				for _, q := range qs {
					v = append(v, QueueID(q))
				}
				return v
			}())
			x.put(id, qs)
			stored[id] = true
			for _, q := range qs {
				if held[QueueID(q)] == nil {
					held[QueueID(q)] = map[uint64]bool{}
				}
				held[QueueID(q)][id] = true
			}
			id += next(3) + 1 // mostly dense, sometimes gaps
		case op < 9: // release an id (held or not, released or not)
			q, r := QueueID(next(6)+1), next(id)+1
			freedWant := held[q][r] && holders(r) == 1
			wasHeld := held[q][r]
			var got, freed bool
			x.release(q, []Ref{{ID: r}}, func(_ Ref, f bool) { got, freed = true, f })
			if got != wasHeld || freed != freedWant {
				t.Fatalf("step %d: release(%d, %d) = held %v freed %v, want %v %v", step, q, r, got, freed, wasHeld, freedWant)
			}
			delete(held[q], r)
		default:
			q := QueueID(next(6) + 1)
			freed := map[uint64]bool{}
			x.drop(q, func(id uint64) { freed[id] = true })
			for r := range held[q] {
				if (holders(r) == 1) != freed[r] {
					t.Fatalf("step %d: drop(%d) freed %d = %v", step, q, r, freed[r])
				}
			}
			delete(held, q)
		}
		if step%97 == 0 {
			check(step)
		}
	}
	check(-1)
}

// TestIndexWideFanout counts holders past a chunk's 16 bits.
func TestIndexWideFanout(t *testing.T) {
	x := newIndex()
	n := int(wideHolders) + 10
	qs := make([]uint64, n)
	for i := range qs {
		qs[i] = uint64(i + 1)
	}
	x.put(7, qs)
	if st := x.stats(); st.Holds != int64(n) || st.Messages != 1 {
		t.Fatalf("stats %+v", st)
	}
	for i := range n - 1 {
		x.release(QueueID(i+1), []Ref{{ID: 7}}, nil)
	}
	if !x.live(7) {
		t.Fatal("freed before its last holder let go")
	}
	x.drop(QueueID(n), nil)
	if x.live(7) || x.stats() != (Stats{}) || len(x.wide) != 0 {
		t.Fatalf("after the last holder: live %v stats %+v wide %d", x.live(7), x.stats(), len(x.wide))
	}
}

// BenchmarkIndexHeap reports the index's heap bytes per message held by
// one queue, and by 20 queues taking turns (sparse ids per queue).
func BenchmarkIndexHeap(b *testing.B) {
	for _, queues := range []uint64{1, 20} {
		b.Run(fmt.Sprintf("queues=%d", queues), func(b *testing.B) {
			const n = 1 << 20
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				x := newIndex()
				for id := uint64(1); id <= n; id++ {
					x.put(id, []uint64{id%queues + 1})
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/msg")
				runtime.KeepAlive(x)
			}
		})
	}
}
