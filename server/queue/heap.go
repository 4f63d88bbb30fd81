package queue

// minHeap is a binary min-heap by less, without container/heap's boxing
// of every item into an interface (an allocation per push and pop).
type minHeap[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *minHeap[T]) len() int { return len(h.items) }

// top is the least item; the heap must not be empty.
func (h *minHeap[T]) top() T { return h.items[0] }

func (h *minHeap[T]) push(x T) {
	h.items = append(h.items, x)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *minHeap[T]) pop() T {
	n := len(h.items) - 1
	x := h.items[0]
	h.items[0] = h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	h.shrink()
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(h.items[l], h.items[m]) {
			m = l
		}
		if r < n && h.less(h.items[r], h.items[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
	return x
}

// heapKeep is the capacity a heap keeps whatever its length: shrinking
// below it would save little and reallocate often.
const heapKeep = 1024

// shrink halves the backing array once the heap fills less than a quarter
// of it, so that a million expiries gone leave no million-item array
// behind. Amortized O(1): between two shrinks, or a shrink and a regrowth,
// at least a quarter of the capacity is popped or pushed.
func (h *minHeap[T]) shrink() {
	if c := cap(h.items); c > heapKeep && len(h.items) < c/4 {
		h.items = append(make([]T, 0, c/2), h.items...)
	}
}

func (h *minHeap[T]) reset() {
	if cap(h.items) > heapKeep {
		h.items = nil // a burst's array is not kept
		return
	}
	clear(h.items)
	h.items = h.items[:0]
}
