package monitor

import (
	"runtime"
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
	deadline := time.Now().Add(releaseQuiet + 5*time.Second)
	for InUse() > before-size/2 {
		if time.Now().After(deadline) {
			t.Fatalf("in use %d MiB %v after dropping %d MiB (before %d MiB): not collected",
				InUse()>>20, releaseQuiet+5*time.Second, size>>20, before>>20)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
