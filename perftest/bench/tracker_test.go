package bench

import (
	"sync"
	"testing"
)

func TestSeqSetInOrder(t *testing.T) {
	var s SeqSet
	for i := uint64(0); i < 1000; i++ {
		if s.Add(i) {
			t.Fatalf("seq %d reported as duplicate", i)
		}
	}
	if s.Distinct() != 1000 || s.Duplicates() != 0 || s.Missing(1000) != 0 {
		t.Fatalf("distinct=%d dups=%d missing=%d", s.Distinct(), s.Duplicates(), s.Missing(1000))
	}
	if len(s.bits) > 1 {
		t.Fatalf("window not compacted: %d words", len(s.bits))
	}
	if got := s.Missing(1010); got != 10 {
		t.Fatalf("Missing(1010) = %d, want 10", got)
	}
}

func TestSeqSetDuplicatesAndGaps(t *testing.T) {
	var s SeqSet
	for _, seq := range []uint64{0, 1, 2, 5, 6, 2, 0, 100, 5, 64, 63} {
		s.Add(seq)
	}
	// distinct: 0 1 2 5 6 100 64 63 = 8; dups: 2 0 5 = 3
	if s.Distinct() != 8 || s.Duplicates() != 3 {
		t.Fatalf("distinct=%d dups=%d", s.Distinct(), s.Duplicates())
	}
	if got := s.Missing(101); got != 101-8 {
		t.Fatalf("Missing(101) = %d, want %d", got, 101-8)
	}
	if got := s.Missing(3); got != 0 {
		t.Fatalf("Missing(3) = %d, want 0", got)
	}
	if got := s.Missing(7); got != 2 { // 3 and 4
		t.Fatalf("Missing(7) = %d, want 2", got)
	}
	// Fill the gaps; the window must collapse into the prefix.
	for i := uint64(0); i <= 100; i++ {
		s.Add(i)
	}
	if s.Missing(101) != 0 || s.base < 64 {
		t.Fatalf("missing=%d base=%d", s.Missing(101), s.base)
	}
}

func TestSeqSetWindowOverflow(t *testing.T) {
	var s SeqSet
	s.Add(1) // seq 0 never arrives
	far := uint64(maxWindowWords)*64 + 10
	s.Add(far)
	if s.dropped == 0 {
		t.Fatal("expected the window to slide")
	}
	if len(s.bits) > maxWindowWords {
		t.Fatalf("window grew to %d words", len(s.bits))
	}
	// Everything below far except seq 1 is missing (seq 1 was dropped with
	// its word, so it is counted missing as well: the check is conservative
	// only for pathological gaps of millions of messages).
	if got := s.Missing(far + 1); got < far-1 {
		t.Fatalf("Missing = %d, want >= %d", got, far-1)
	}
}

func TestQueueTrackerConcurrent(t *testing.T) {
	const producers, perProducer, consumers = 3, 10000, 4
	q := NewQueueTracker("q", producers)
	var wg sync.WaitGroup
	// Competing consumers: consumer c gets seqs with seq%consumers == c.
	for c := 0; c < consumers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := 0; p < producers; p++ {
				for s := uint64(c); s < perProducer; s += consumers {
					q.Add(p, s)
				}
			}
		}()
	}
	wg.Wait()
	if q.TotalDistinct() != producers*perProducer || q.Duplicates() != 0 {
		t.Fatalf("distinct=%d dups=%d", q.TotalDistinct(), q.Duplicates())
	}
	for p := 0; p < producers; p++ {
		if m := q.Missing(p, perProducer); m != 0 {
			t.Fatalf("producer %d: %d missing", p, m)
		}
	}
	q.Add(1, 5)
	q.Add(7, 5) // unknown producer: ignored
	if q.Duplicates() != 1 {
		t.Fatalf("dups=%d, want 1", q.Duplicates())
	}
	if m := q.Missing(2, perProducer+5); m != 5 {
		t.Fatalf("missing=%d, want 5", m)
	}
}

func TestOrderTracker(t *testing.T) {
	o := NewOrderTracker(2)
	for _, seq := range []uint64{0, 1, 3, 2, 4, 5} {
		o.Add(0, seq)
	}
	o.Add(1, 10) // producers are independent
	o.Add(1, 11)
	o.Add(5, 0) // out of range: ignored
	if o.OutOfOrder() != 1 {
		t.Fatalf("out of order = %d, want 1", o.OutOfOrder())
	}
	// Gaps alone are not out of order (competing consumers see subsequences).
	o2 := NewOrderTracker(1)
	for _, seq := range []uint64{0, 4, 8, 12} {
		o2.Add(0, seq)
	}
	if o2.OutOfOrder() != 0 {
		t.Fatalf("gaps counted as out of order")
	}
}

func BenchmarkQueueTrackerAdd(b *testing.B) {
	q := NewQueueTracker("q", 1)
	for i := 0; b.Loop(); i++ {
		q.Add(0, uint64(i))
	}
}
