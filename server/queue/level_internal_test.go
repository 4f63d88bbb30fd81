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
			d.pushBack(Entry[int]{Handle: next, Seq: uint64(next)})
			model = append(model, next)
			next++
		} else {
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
			l.pushBack(Entry[int]{Handle: i, Seq: uint64(i)})
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
