package queue

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHost records what the queue asks of its host.
type testHost struct {
	mu       sync.Mutex
	released []int
	dead     map[Reason][]int
	expired  atomic.Bool
	// unreadable handles fail Prepare (a damaged log).
	unreadable map[int]bool
	dlx        []dlxSend
}

func (h *testHost) Release(es []Entry[int]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range es {
		h.released = append(h.released, e.Handle)
	}
}

func (h *testHost) DeadLetter(es []Entry[int], r Reason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead == nil {
		h.dead = map[Reason][]int{}
	}
	for _, e := range es {
		h.dead[r] = append(h.dead[r], e.Handle)
	}
}

func (h *testHost) Prepare(es []Entry[int]) []Entry[int] {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, e := range es {
		if h.unreadable[e.Handle] {
			return es[:i]
		}
	}
	return es
}

func (h *testHost) Expired() { h.expired.Store(true) }

// dlxSend is one DeadLetterConfirmed call, answered by the test.
type dlxSend struct {
	handle int
	reason Reason
	done   func(bool)
}

// DeadLetterConfirmed records the send; the test answers it.
func (h *testHost) DeadLetterConfirmed(e Entry[int], r Reason, done func(bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dlx = append(h.dlx, dlxSend{e.Handle, r, done})
}

// dlxSends returns the DeadLetterConfirmed calls so far.
func (h *testHost) dlxSends() []dlxSend {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.dlx)
}

// releasedOf reports whether handle was released.
func (h *testHost) releasedOf(handle int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.released, handle)
}

// testConsumer has a prefetch window and acks from its own goroutine.
type testConsumer struct {
	prefetch int64
	inFlight atomic.Int64
	got      chan delivered
}

func (c *testConsumer) Acquire(n int64) int64 {
	for {
		cur := c.inFlight.Load()
		take := min(n, c.prefetch-cur)
		if take <= 0 {
			return 0
		}
		if c.inFlight.CompareAndSwap(cur, cur+take) {
			return take
		}
	}
}

func (c *testConsumer) Unacquire(n int64) { c.inFlight.Add(-n) }

// delivered is an entry as a test consumer got it, with its tag.
type delivered struct {
	Entry[int]
	tag uint64
}

func (c *testConsumer) Deliver(es []Entry[int], tag uint64) {
	for i, e := range es {
		c.got <- delivered{e, tag + uint64(i)}
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Four publishers and two consumers with a prefetch of 10: every message
// is delivered exactly once, each publisher's messages reach each consumer
// in order, and acks free the window.
func TestClassicConcurrentPublishConsume(t *testing.T) {
	h := &testHost{}
	q := NewClassic[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, h, nil)
	const publishers, each = 4, 2000
	cs := []*testConsumer{{prefetch: 10, got: make(chan delivered, 16)}, {prefetch: 10, got: make(chan delivered, 16)}}
	var seen sync.Map
	var wg sync.WaitGroup
	total := atomic.Int64{}
	all := make(chan struct{})
	for _, c := range cs {
		q.Consume(c, 0, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[int]int{}
			for total.Load() < publishers*each {
				select {
				case e := <-c.got:
					if _, dup := seen.LoadOrStore(e.Handle, true); dup {
						t.Errorf("message %d delivered twice", e.Handle)
					}
					p, n := e.Handle/each, e.Handle%each
					if prev, ok := last[p]; ok && n <= prev {
						t.Errorf("publisher %d: %d after %d", p, n, prev)
					}
					last[p] = n
					c.inFlight.Add(-1)
					q.Settle([]uint64{e.tag}, Ack)
					if total.Add(1) == publishers*each {
						close(all)
					}
				case <-all:
				case <-time.After(5 * time.Second):
					t.Errorf("stalled at %d", total.Load())
					return
				}
			}
		}()
	}
	var pub sync.WaitGroup
	for p := range publishers {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for n := range each {
				if _, _, err := q.Push(Message[int]{Handle: p*each + n, Size: 1}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	pub.Wait()
	wg.Wait()
	if in := q.Info(); in.Ready != 0 || in.Unacked != 0 || in.Stats.Acked != publishers*each {
		t.Errorf("after draining: %+v", in)
	}
	q.Delete()
}

// A requeued delivery comes back redelivered; a message that cannot be
// read back is returned to the queue, not lost and not counted delivered.
func TestClassicRequeueAndUnreadable(t *testing.T) {
	h := &testHost{unreadable: map[int]bool{2: true}}
	q := NewClassic[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, h, nil)
	c := &testConsumer{prefetch: 1, got: make(chan delivered, 4)}
	q.Push(Message[int]{Handle: 1})
	q.Push(Message[int]{Handle: 2})
	q.Consume(c, 0, false)
	e := <-c.got
	if e.Handle != 1 || e.Redelivered() {
		t.Fatalf("first delivery %+v", e)
	}
	c.inFlight.Add(-1)
	q.Settle([]uint64{e.tag}, Requeue)
	e = <-c.got
	if e.Handle != 1 || !e.Redelivered() {
		t.Fatalf("after requeue %+v", e)
	}
	c.inFlight.Add(-1)
	q.Settle([]uint64{e.tag}, Ack)
	// 2 is unreadable: each attempt gives it back, with its credit.
	waitFor(t, "the unreadable message back in the queue", func() bool {
		in := q.Info()
		return in.Ready == 1 && in.Unacked == 0 && c.inFlight.Load() == 0
	})
	q.Delete()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.released) != 2 {
		t.Errorf("released %v, want both", h.released)
	}
}

// Expiry runs on the driver's clock with no consumer: a message with a
// short TTL behind one with a long TTL is dead-lettered on time; an unused
// queue with x-expires asks to be deleted.
func TestClassicExpiry(t *testing.T) {
	h := &testHost{}
	q := NewClassic[int](Policy{MaxLength: -1, MaxLengthBytes: -1, DeadLetter: true, Expires: int64(300 * time.Millisecond)}, h, nil)
	now := time.Now().UnixNano()
	q.Push(Message[int]{Handle: 1, Expires: now + int64(time.Hour)})
	q.Push(Message[int]{Handle: 2, Expires: now + int64(20*time.Millisecond)})
	waitFor(t, "the short TTL", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.dead[ReasonExpired]) == 1 && h.dead[ReasonExpired][0] == 2
	})
	waitFor(t, "x-expires", h.expired.Load)
	q.Delete()
}

// sharedWindow is a consumer that shares its prefetch window with others,
// as consumers of one channel with a channel-wide prefetch do.
type sharedWindow struct {
	window *testConsumer
	got    chan delivered
}

func (c *sharedWindow) Acquire(n int64) int64 { return c.window.Acquire(n) }
func (c *sharedWindow) Unacquire(n int64)     { c.window.Unacquire(n) }
func (c *sharedWindow) Deliver(es []Entry[int], tag uint64) {
	for i, e := range es {
		c.got <- delivered{e, tag + uint64(i)}
	}
}

// With single active consumer, a waiting consumer is granted no credit: on
// a window it shares with the active one, it would take the active one's
// share and leave the queue stalled.
func TestClassicSingleActiveSharedWindow(t *testing.T) {
	q := NewClassic[int](Policy{MaxLength: -1, MaxLengthBytes: -1, SingleActive: true}, &testHost{}, nil)
	defer q.Delete()
	window := &testConsumer{prefetch: 2}
	active := &sharedWindow{window: window, got: make(chan delivered, 4)}
	waiting := &sharedWindow{window: window, got: make(chan delivered, 4)}
	q.Consume(active, 0, false)
	q.Consume(waiting, 10, false) // first in the core's order, not active
	for i := range 3 {
		q.Push(Message[int]{Handle: i})
	}
	for want := range 2 {
		select {
		case e := <-active.got:
			if e.Handle != want {
				t.Fatalf("active got %d, want %d", e.Handle, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the active consumer got nothing: the waiting one holds the window")
		}
	}
	select {
	case e := <-waiting.got:
		t.Fatalf("the waiting consumer got %d", e.Handle)
	default:
	}
}
