package monitor

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// garbage holds the test's messages until it lets go of them.
var garbage [][]byte

// A heap left holding garbage with nothing allocating is collected and
// given back once the broker reports it let go of that much: 256 MiB of
// "messages" dropped at once leave InUse within a deadline, where without
// the release they would stay until Go's two-minute forced collection.
func TestReleaseIdleMemory(t *testing.T) {
	const size = 256 << 20
	for range size >> 20 {
		garbage = append(garbage, make([]byte, 1<<20))
	}
	runtime.GC() // live now: the next collection is a heap's growth away
	before := InUse()
	var freed atomic.Int64
	m := Start(Options{Interval: 50 * time.Millisecond, Freed: freed.Load})
	defer m.Stop()
	garbage = nil // the queues let go of their messages...
	freed.Add(size)
	waitAtMost(t, "in use", InUse, before-size/2)
}

// A collection between the broker letting go and the monitor's next look
// (a busy moment, or one that began before the backlog went) leaves the
// freed pages with Go, which returns them at its scavenger's slow pace:
// they are still given back within the quiet time plus 5 s.
func TestReleaseAfterCollection(t *testing.T) {
	const size = 256 << 20
	for range size >> 20 {
		garbage = append(garbage, make([]byte, 1<<20))
	}
	runtime.GC()
	var freed atomic.Int64
	m := Start(Options{Interval: 50 * time.Millisecond, Freed: freed.Load})
	defer m.Stop()
	garbage = nil
	freed.Add(size)
	runtime.GC() // frees the pages, which Go keeps
	held := heldByGo()
	waitAtMost(t, "held by Go", heldByGo, held-size/2)
}

// waitAtMost polls until measure is at most limit bytes, for the quiet
// time plus 5 s.
func waitAtMost(t *testing.T, what string, measure func() int64, limit int64) {
	t.Helper()
	within := releaseQuiet + 5*time.Second
	deadline := time.Now().Add(within)
	for measure() > limit {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d MiB after %v, want at most %d MiB", what, measure()>>20, within, limit>>20)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heldByGo is the memory the Go runtime has mapped and not returned.
func heldByGo() int64 {
	s := make([]metrics.Sample, 2)
	copy(s, inUseSamples[:2])
	metrics.Read(s)
	return int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
}
