package queue

import (
	"math/rand"
	"runtime"
	"testing"
)

// TestDequeModel checks the block deque against a slice through pushes and
// pops that cross block boundaries, grow the first block, slide it and
// empty the deque.
func TestDequeModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var d deque[int]
	var model []int
	next := 0
	for step := range 200000 {
		// Phases of mostly pushes and mostly pops, so the length swings
		// between empty and several blocks.
		push := rng.Intn(100) < 60
		if (step/5000)%2 == 1 {
			push = rng.Intn(100) < 40
		}
		if push || len(model) == 0 {
			d.pushBack(Queued[int]{Handle: next}, uint64(next))
			model = append(model, next)
			next++
		} else {
			if d.first != uint64(model[0]) {
				t.Fatalf("step %d: first seq %d, want %d", step, d.first, model[0])
			}
			e := d.popFront()
			if e.Handle != model[0] {
				t.Fatalf("step %d: popped %d, want %d", step, e.Handle, model[0])
			}
			model = model[1:]
		}
		if d.n != len(model) {
			t.Fatalf("step %d: n %d, want %d", step, d.n, len(model))
		}
		if step%997 == 0 {
			for i, want := range model {
				if got := d.at(i).Handle; got != want {
					t.Fatalf("step %d: at(%d) = %d, want %d", step, i, got, want)
				}
			}
		}
		if len(d.blocks) > 1 {
			for i, b := range d.blocks {
				if len(b) != blockSize {
					t.Fatalf("step %d: block %d of %d is %d long", step, i, len(d.blocks), len(b))
				}
			}
		}
	}
}

// BenchmarkLevelHeap reports the heap bytes per ready entry of a level
// holding a million messages: blocks, no doubling slack.
func BenchmarkLevelHeap(b *testing.B) {
	for range b.N {
		var l level[int]
		const n = 1 << 20
		before := heapInUse()
		for i := range n {
			l.seq++
			l.pushBack(Entry[int]{Queued: Queued[int]{Handle: i}, Seq: l.seq})
		}
		b.ReportMetric(float64(heapInUse()-before)/n, "heapB/entry")
		runtime.KeepAlive(&l)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLevelModel checks a level against a sorted set of seqs through
// pushes, pops, removals from the middle (tombstones) and requeues of what
// was taken, in any order: the head is always the lowest seq held, and
// removal finds exactly what is held.
func TestLevelModel(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	var l level[int]
	held := map[uint64]bool{}
	var taken []Entry[int]
	lowest := func() (uint64, bool) {
		var low uint64
		ok := false
		for s := range held {
			if !ok || s < low {
				low, ok = s, true
			}
		}
		return low, ok
	}
	for step := range 20000 {
		switch op := rng.Intn(100); {
		case op < 45:
			l.seq++
			l.pushBack(Entry[int]{Queued: Queued[int]{Handle: int(l.seq)}, Seq: l.seq})
			held[l.seq] = true
		case op < 70:
			e, ok := l.popFront()
			low, want := lowest()
			if ok != want || ok && (e.Seq != low || e.Handle != int(low)) {
				t.Fatalf("step %d: popFront = seq %d handle %d %v, want %d %v", step, e.Seq, e.Handle, ok, low, want)
			}
			if ok {
				delete(held, e.Seq)
				taken = append(taken, e)
			}
		case op < 85:
			seq := uint64(rng.Int63n(int64(l.seq) + 2))
			e, ok := l.remove(seq)
			if ok != held[seq] || ok && (e.Seq != seq || e.Handle != int(seq)) {
				t.Fatalf("step %d: remove(%d) = seq %d handle %d %v, held %v", step, seq, e.Seq, e.Handle, ok, held[seq])
			}
			if ok {
				delete(held, seq)
				taken = append(taken, e)
			}
		default:
			if len(taken) == 0 {
				continue
			}
			i := rng.Intn(len(taken))
			e := taken[i]
			taken = append(taken[:i], taken[i+1:]...)
			l.insert(e)
			held[e.Seq] = true
		}
		low, ok := lowest()
		if f := l.frontEntry(); (f != nil) != ok || ok && f.Handle != int(low) {
			t.Fatalf("step %d: frontEntry %+v, want seq %d (%v)", step, f, low, ok)
		}
		if ok {
			if h := l.head(); h.Seq != low || h.Handle != int(low) {
				t.Fatalf("step %d: head %+v, want seq %d", step, h, low)
			}
		}
	}
}
