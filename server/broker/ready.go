package broker

import "sync/atomic"

// readyQueue is a queue's ready messages: one deque, or one per priority
// level for a priority queue (x-max-priority), served highest level first
// and in order within a level, as RabbitMQ's priority queues are.
type readyQueue struct {
	levels []entryDeque // index = priority
	n      int
}

func newReadyQueue(maxPriority int) readyQueue {
	return readyQueue{levels: make([]entryDeque, maxPriority+1)}
}

func (r *readyQueue) len() int { return r.n }

func (r *readyQueue) level(e *qentry) *entryDeque {
	return &r.levels[min(int(e.prio), len(r.levels)-1)]
}

// head is the deque the next message comes from (nil if empty).
func (r *readyQueue) head() *entryDeque {
	for i := len(r.levels) - 1; i >= 0; i-- {
		if r.levels[i].n > 0 {
			return &r.levels[i]
		}
	}
	return nil
}

// first is the next message to deliver; the queue must not be empty.
func (r *readyQueue) first() *qentry { return r.head().at(0) }

func (r *readyQueue) popFront() qentry {
	r.n--
	return r.head().popFront()
}

func (r *readyQueue) pushBack(e qentry) {
	r.n++
	r.level(&e).pushBack(e)
}

func (r *readyQueue) pushFront(e qentry) {
	r.n++
	r.level(&e).pushFront(e)
}

func (r *readyQueue) insertOrdered(e qentry) {
	r.n++
	r.level(&e).insertOrdered(e)
}

// drain removes and returns every entry, in delivery order.
func (r *readyQueue) drain() []qentry {
	out := make([]qentry, 0, r.n)
	for i := len(r.levels) - 1; i >= 0; i-- {
		out = append(out, r.levels[i].drain()...)
	}
	r.n = 0
	return out
}

// countHot makes the levels count their in-memory bytes against h.
func (r *readyQueue) countHot(h *atomic.Int64) {
	for i := range r.levels {
		r.levels[i].hot = h
	}
}

func (r *readyQueue) countingHot() bool { return r.levels[0].hot != nil }
