package broker

import (
	"testing"
	"time"
)

// One timer serves every connection's heartbeats: each writer is kicked
// with its heartbeat due about every half interval (1 s and 2 s
// heartbeats side by side), a removed connection is never kicked again,
// the list stays consistent through removals from the middle, and with no
// connection left the timer is disarmed.
func TestHeartbeatRounds(t *testing.T) {
	var h heartbeats
	mk := func(hb time.Duration) *conn { return &conn{heartbeat: hb, wake: make(chan struct{}, 1)} }
	fast, slow, gone := mk(time.Second), mk(2*time.Second), mk(time.Second)
	start := time.Now()
	for _, c := range []*conn{fast, gone, slow} {
		h.add(c)
	}
	h.remove(gone)
	h.mu.Lock()
	if len(h.conns) != 2 || h.conns[fast.hb.idx] != fast || h.conns[slow.hb.idx] != slow {
		t.Fatalf("after a removal: %d conns, indexes %d %d", len(h.conns), fast.hb.idx, slow.hb.idx)
	}
	h.mu.Unlock()
	// Wait for beats: fast's every ~500 ms, slow's every ~1 s.
	var fastAt, slowAt []time.Duration
	deadline := time.After(5 * time.Second)
	for len(fastAt) < 4 || len(slowAt) < 2 {
		select {
		case <-fast.wake:
			if fast.hb.due.Swap(false) {
				fastAt = append(fastAt, time.Since(start))
			}
		case <-slow.wake:
			if slow.hb.due.Swap(false) {
				slowAt = append(slowAt, time.Since(start))
			}
		case <-gone.wake:
			t.Fatal("a removed connection was kicked")
		case <-deadline:
			t.Fatalf("beats after 5 s: fast %v, slow %v", fastAt, slowAt)
		}
	}
	check := func(name string, at []time.Duration, every time.Duration) {
		t.Helper()
		prev := time.Duration(0)
		for _, a := range at {
			// Due every half interval, sent up to an eighth early, and
			// late by at most scheduling on a busy machine.
			if gap := a - prev; gap < every-every/4-10*time.Millisecond || gap > every+every/2 {
				t.Errorf("%s: beats at %v, a gap of %v for every %v", name, at, gap, every)
			}
			prev = a
		}
	}
	check("fast", fastAt, 500*time.Millisecond)
	check("slow", slowAt, time.Second)
	h.remove(fast)
	h.remove(slow)
	h.remove(slow) // twice: no effect
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) != 0 || !h.at.IsZero() {
		t.Fatalf("%d conns left, timer armed for %v", len(h.conns), h.at)
	}
}
