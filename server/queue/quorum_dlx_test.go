package queue

import (
	"errors"
	"testing"
	"time"
)

// At least once, a dead-lettered message stays with the queue on every
// member, counted in its limits, until the leader's republish is
// confirmed: one refused is republished after dlxRetry, a new leader
// republishes what is left, a snapshot carries them, and each confirmed
// one is released on every member, once.
func TestQuorumDeadLetterAtLeastOnce(t *testing.T) {
	p := Policy{MaxLength: 3, MaxLengthBytes: -1, Overflow: RejectPublish, DeadLetter: true, AtLeastOnce: true}
	g := newTestGroup(t, 3, p)
	for _, m := range g.members {
		m.mu.Lock()
		m.dead.retry = 50 * time.Millisecond
		m.mu.Unlock()
	}
	c := &testConsumer{prefetch: 10, got: make(chan delivered, 16)}
	cid := g.members[1].Consume(c, 0, false)
	for i := 1; i <= 2; i++ {
		if err := quorumPush(t, g.members[0], i); err != nil {
			t.Fatal(err)
		}
	}
	var tags []uint64
	for range 2 {
		tags = append(tags, receive(t, c).tag)
	}
	c.inFlight.Add(-2)
	g.members[1].Settle(tags, Reject)
	g.members[1].Cancel(cid) // what is pushed next stays ready
	held := func(want int64) func() bool {
		return func() bool {
			for _, m := range g.members {
				if n, b := heldOf(m); n != want || b != 10*want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "two held on every member", held(2))
	sends := func(h *testHost, handle int) (n int, last dlxSend) {
		for _, s := range h.dlxSends() {
			if s.handle == handle {
				n, last = n+1, s
			}
		}
		return n, last
	}
	waitFor(t, "the leader sent both", func() bool {
		n1, _ := sends(g.hosts[0], 1)
		n2, _ := sends(g.hosts[0], 2)
		return n1 >= 1 && n2 >= 1
	})
	for i, h := range g.hosts {
		if i > 0 && len(h.dlxSends()) > 0 {
			t.Fatalf("member %d, a follower, sent dead-letters: %v", i+1, h.dlxSends())
		}
		h.mu.Lock()
		dead := len(h.dead)
		h.mu.Unlock()
		if h.releasedOf(1) || h.releasedOf(2) || dead > 0 {
			t.Fatalf("member %d released them, or dead-lettered them at most once", i+1)
		}
	}
	if _, s := sends(g.hosts[0], 1); s.reason != ReasonRejected {
		t.Fatalf("reason %v, want rejected", s.reason)
	}
	// Held ones count in the limit: 2 held and 1 ready is full.
	if err := quorumPush(t, g.members[2], 3); err != nil {
		t.Fatal(err)
	}
	if err := quorumPush(t, g.members[2], 4); !errors.Is(err, ErrRejected) {
		t.Fatalf("a push over the limit with two held: %v, want ErrRejected", err)
	}

	// Refused: sent again after dlxRetry. Then confirmed: released
	// everywhere, and not sent again.
	_, s := sends(g.hosts[0], 1)
	s.done(false)
	waitFor(t, "1 sent again", func() bool { n, _ := sends(g.hosts[0], 1); return n >= 2 })
	_, s = sends(g.hosts[0], 1)
	s.done(true)
	waitFor(t, "one held", held(1))
	waitFor(t, "1 released everywhere", func() bool {
		return g.hosts[0].releasedOf(1) && g.hosts[1].releasedOf(1) && g.hosts[2].releasedOf(1)
	})
	n1, _ := sends(g.hosts[0], 1)
	time.Sleep(150 * time.Millisecond) // three retry periods: nothing more of 1
	if n, _ := sends(g.hosts[0], 1); n != n1 {
		t.Fatalf("1 was sent again after its confirm (%d sends, %d before)", n, n1)
	}

	// A snapshot carries what is held.
	fresh := g.restoreMember(t, 2, g.hosts[2])
	if n, b := heldOf(fresh); n != 1 || b != 10 {
		t.Fatalf("restored: %d held (%d bytes), want 1", n, b)
	}

	// The leader goes: the next one sends what is held, and the old
	// leader's late confirm of it changes nothing twice.
	_, old := sends(g.hosts[0], 2)
	g.members[0].LeaderChanged(2, false)
	g.members[2].LeaderChanged(2, false)
	g.members[1].LeaderChanged(2, true)
	waitFor(t, "the new leader sent 2", func() bool { n, _ := sends(g.hosts[1], 2); return n >= 1 })
	old.done(true) // not the leader any more: ignored
	_, s = sends(g.hosts[1], 2)
	s.done(true)
	waitFor(t, "none held", held(0))
	waitFor(t, "2 released everywhere", func() bool {
		return g.hosts[0].releasedOf(2) && g.hosts[1].releasedOf(2) && g.hosts[2].releasedOf(2)
	})
	if err := quorumPush(t, g.members[1], 5); err != nil {
		t.Fatalf("a push with room again: %v", err)
	}
}

// With drop-head (or without a dead-letter exchange) the queue
// dead-letters at most once, as RabbitMQ's: nothing is held.
func TestQuorumDeadLetterAtMostOnce(t *testing.T) {
	g := newTestGroup(t, 1, Policy{MaxLength: -1, MaxLengthBytes: -1, DeadLetter: true})
	c := &testConsumer{prefetch: 10, got: make(chan delivered, 16)}
	g.members[0].Consume(c, 0, false)
	if err := quorumPush(t, g.members[0], 1); err != nil {
		t.Fatal(err)
	}
	d := receive(t, c)
	g.members[0].Settle([]uint64{d.tag}, Reject)
	waitFor(t, "dead-lettered", func() bool {
		g.hosts[0].mu.Lock()
		defer g.hosts[0].mu.Unlock()
		return len(g.hosts[0].dead[ReasonRejected]) == 1
	})
	if n, _ := heldOf(g.members[0]); n != 0 || len(g.hosts[0].dlxSends()) != 0 {
		t.Fatalf("at most once held %d and sent %v", n, g.hosts[0].dlxSends())
	}
}

// The classic core, which single-node quorum queues run on, holds its
// dead-letters at least once the same way, in memory: held in the limit,
// a refusal republished after the retry, released once confirmed, and
// released with the queue when it is deleted unconfirmed.
func TestClassicDeadLetterAtLeastOnce(t *testing.T) {
	h := &testHost{}
	q := NewClassic[int](Policy{MaxLength: 2, MaxLengthBytes: -1, Overflow: RejectPublish, DeadLetter: true, AtLeastOnce: true}, h, nil)
	q.mu.Lock()
	q.dead.retry = 50 * time.Millisecond
	q.mu.Unlock()
	reject := func(handle int) {
		t.Helper()
		if _, _, err := q.Push(Message[int]{Handle: handle, Size: 10}); err != nil {
			t.Fatal(err)
		}
		e, tag, ok := q.Get(false)
		if !ok || e.Handle != handle {
			t.Fatalf("get: %v %v", e.Handle, ok)
		}
		q.Settle([]uint64{tag}, Reject)
	}
	reject(1)
	if n, b := heldOf(q); n != 1 || b != 10 {
		t.Fatalf("held %d (%d bytes), want 1", n, b)
	}
	sends := func(handle int) (n int, last dlxSend) {
		for _, s := range h.dlxSends() {
			if s.handle == handle {
				n, last = n+1, s
			}
		}
		return n, last
	}
	if n, s := sends(1); n != 1 || s.reason != ReasonRejected || h.releasedOf(1) {
		t.Fatalf("1: %d sends, reason %v, released %v", n, s.reason, h.releasedOf(1))
	}
	if _, _, err := q.Push(Message[int]{Handle: 2, Size: 10}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Push(Message[int]{Handle: 3, Size: 10}); !errors.Is(err, ErrRejected) {
		t.Fatalf("a push over the limit with one held: %v, want ErrRejected", err)
	}
	_, s := sends(1)
	s.done(false)
	waitFor(t, "1 sent again", func() bool { n, _ := sends(1); return n >= 2 })
	_, s = sends(1)
	s.done(true)
	if n, _ := heldOf(q); n != 0 || !h.releasedOf(1) {
		t.Fatalf("after the confirm: %d held, released %v", n, h.releasedOf(1))
	}
	if _, _, err := q.Push(Message[int]{Handle: 3, Size: 10}); err != nil {
		t.Fatalf("a push with room again: %v", err)
	}
	// Deleted with one held: released with the queue.
	e, tag, _ := q.Get(false)
	q.Settle([]uint64{tag}, Reject)
	q.Delete()
	if !h.releasedOf(e.Handle) {
		t.Fatalf("%d, held at the deletion, was not released", e.Handle)
	}
}

// heldOf is q's held dead-letters and their bytes, as Info reports them.
func heldOf(q interface{ Info() Info }) (n, bytes int64) {
	in := q.Info()
	return in.Held, in.HeldBytes
}
