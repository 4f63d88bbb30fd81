package bench

import (
	"math/bits"
	"sync"
)

// maxWindowWords bounds the memory of one SeqSet: at most this many 64-bit
// words (4M sequence numbers, 512 KiB) are kept beyond the contiguous prefix.
const maxWindowWords = 1 << 16

// SeqSet records which sequence numbers of one producer reached one queue.
// It keeps a contiguous prefix (every seq below base has been seen) and a
// bitmap of the window above it, so memory stays small while messages arrive
// mostly in order. It is not safe for concurrent use; QueueTracker adds
// locking.
type SeqSet struct {
	base     uint64   // every seq < base has been received
	bits     []uint64 // bit i set: seq base+i received
	distinct uint64   // number of distinct seqs received
	dups     uint64   // number of repeated seqs
	dropped  uint64   // seqs given up on when the window overflowed
}

// Add records seq and reports whether it had been seen before.
func (s *SeqSet) Add(seq uint64) (duplicate bool) {
	if seq < s.base {
		s.dups++
		return true
	}
	off := seq - s.base
	w := int(off >> 6)
	if w >= maxWindowWords {
		s.slide(w - maxWindowWords + 1)
		off = seq - s.base
		w = int(off >> 6)
	}
	for w >= len(s.bits) {
		s.bits = append(s.bits, 0)
	}
	mask := uint64(1) << (off & 63)
	if s.bits[w]&mask != 0 {
		s.dups++
		return true
	}
	s.bits[w] |= mask
	s.distinct++
	if w == 0 {
		for len(s.bits) > 0 && s.bits[0] == ^uint64(0) {
			s.bits = s.bits[1:]
			s.base += 64
		}
	}
	return false
}

// slide drops n words from the front of the window, counting their missing
// seqs as dropped.
func (s *SeqSet) slide(n int) {
	for i := 0; i < n; i++ {
		if i < len(s.bits) {
			s.dropped += uint64(64 - bits.OnesCount64(s.bits[i]))
		} else {
			s.dropped += 64
		}
	}
	if n >= len(s.bits) {
		s.bits = s.bits[:0]
	} else {
		s.bits = s.bits[n:]
	}
	s.base += uint64(n) * 64
}

// Distinct returns how many different seqs were received.
func (s *SeqSet) Distinct() uint64 { return s.distinct }

// Duplicates returns how many receptions repeated an already seen seq.
func (s *SeqSet) Duplicates() uint64 { return s.dups }

// Missing returns how many seqs in [0, n) have not been received.
func (s *SeqSet) Missing(n uint64) uint64 {
	prefix := min(s.base, n)
	// Every seq below base was received, except those dropped on overflow.
	got := prefix - min(s.dropped, prefix)
	for i, word := range s.bits {
		lo := s.base + uint64(i)*64
		if lo >= n {
			break
		}
		if n-lo < 64 {
			word &= uint64(1)<<(n-lo) - 1
		}
		got += uint64(bits.OnesCount64(word))
	}
	return n - got
}

// QueueTracker tracks the sequences of every producer of a run for one queue.
// Consumers sharing the queue share its tracker; each producer has its own
// lock, so consumers contend only while handling the same producer's
// messages.
type QueueTracker struct {
	Name  string
	procs []seqSlot
}

type seqSlot struct {
	mu  sync.Mutex
	set SeqSet
	_   [40]byte // keep neighbouring slots off one cache line
}

// NewQueueTracker returns a tracker for the given number of producers.
func NewQueueTracker(name string, producers int) *QueueTracker {
	return &QueueTracker{Name: name, procs: make([]seqSlot, producers)}
}

// Add records seq of producer p and reports whether it was a duplicate.
// Producers out of range are ignored.
func (q *QueueTracker) Add(p int, seq uint64) bool {
	if p < 0 || p >= len(q.procs) {
		return false
	}
	s := &q.procs[p]
	s.mu.Lock()
	dup := s.set.Add(seq)
	s.mu.Unlock()
	return dup
}

// Distinct returns the number of distinct messages of producer p seen.
func (q *QueueTracker) Distinct(p int) uint64 {
	s := &q.procs[p]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set.Distinct()
}

// TotalDistinct returns the number of distinct messages seen from all producers.
func (q *QueueTracker) TotalDistinct() uint64 {
	var n uint64
	for p := range q.procs {
		n += q.Distinct(p)
	}
	return n
}

// Duplicates returns the number of duplicate receptions over all producers.
func (q *QueueTracker) Duplicates() uint64 {
	var n uint64
	for p := range q.procs {
		s := &q.procs[p]
		s.mu.Lock()
		n += s.set.Duplicates()
		s.mu.Unlock()
	}
	return n
}

// Missing returns how many of producer p's first n messages were not seen.
func (q *QueueTracker) Missing(p int, n uint64) uint64 {
	s := &q.procs[p]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set.Missing(n)
}

// OrderTracker detects out-of-order deliveries seen by one consumer: a seq
// lower than the highest seq already received from the same producer. It is
// per consumer because competing consumers of one queue legitimately see
// interleaved subsequences. Not safe for concurrent use.
type OrderTracker struct {
	next       []uint64 // highest seq seen + 1, per producer; 0 = none yet
	outOfOrder uint64
}

// NewOrderTracker returns a tracker for the given number of producers.
func NewOrderTracker(producers int) *OrderTracker {
	return &OrderTracker{next: make([]uint64, producers)}
}

// Add records seq of producer p and reports whether it arrived out of order.
// Duplicates should not be passed in (they would count as out of order).
func (o *OrderTracker) Add(p int, seq uint64) bool {
	if p < 0 || p >= len(o.next) {
		return false
	}
	if seq+1 <= o.next[p] {
		o.outOfOrder++
		return true
	}
	o.next[p] = seq + 1
	return false
}

// OutOfOrder returns the number of out-of-order deliveries seen.
func (o *OrderTracker) OutOfOrder() uint64 { return o.outOfOrder }
