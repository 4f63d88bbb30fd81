package queue

import (
	"math/rand"
	"slices"
	"testing"
)

// TestMinHeapShrinks swings a heap between a hundred thousand items and a
// few: it pops in order throughout, and its backing array follows its
// length down, so a backlog of out-of-order expiries gone leaves no
// array of its size behind.
func TestMinHeapShrinks(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	h := minHeap[int]{less: func(a, b int) bool { return a < b }}
	var model []int
	for round := range 3 {
		for range 100_000 {
			x := rng.Intn(1 << 30)
			h.push(x)
			model = append(model, x)
		}
		slices.Sort(model)
		for len(model) > 10 {
			if got := h.pop(); got != model[0] {
				t.Fatalf("round %d: popped %d, want %d", round, got, model[0])
			}
			model = model[1:]
			if c := cap(h.items); c > heapKeep && h.len() < c/8 {
				t.Fatalf("round %d: %d items in a capacity of %d", round, h.len(), c)
			}
		}
		if c := cap(h.items); c > heapKeep {
			t.Fatalf("round %d: capacity %d with %d items, want at most %d", round, c, h.len(), heapKeep)
		}
	}
	h.push(-1)
	for range 100_000 {
		h.push(1)
	}
	h.reset()
	if h.len() != 0 || cap(h.items) > heapKeep {
		t.Fatalf("after reset: %d items, capacity %d", h.len(), cap(h.items))
	}
}
