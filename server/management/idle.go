package management

import (
	"sync"
	"time"
)

// idleAfter is how long an object's counters must stay still before it
// shows idle_since: RabbitMQ's channels and queues hibernate, and so
// report idle_since, after at least a second without work.
const idleAfter = time.Second

// idleFormat is idle_since as RabbitMQ 3.10 writes it (RFC 3339 in the
// node's local time, with milliseconds: "2026-12-01T17:05:00.123+00:00").
const idleFormat = "2006-01-02T15:04:05.000-07:00"

// idleTracker gives channels and queues their idle_since without a clock
// read on the message path: a read of an object records the sum of its
// activity counters and, when that changed, the time; an object whose sum
// has stayed the same for idleAfter since is idle since then. So
// idle_since is the time of the first read that saw the object's counters
// as they are now: within one read interval of RabbitMQ's (the UI reads
// every few seconds), and never before the last activity. An object read
// for the first time is taken as active then (nothing tells how long it
// has been still). mu is the handler's own lock, held only while marks
// are read and updated.
type idleTracker[K comparable] struct {
	mu sync.Mutex
	m  map[K]idleMark
	// pruned is len(m) after the last pruneGrown.
	pruned int
}

type idleMark struct {
	sum   uint64
	since time.Time
}

// observe records key's activity sum at now and returns when it became
// idle; ok is false while it is active.
func (t *idleTracker[K]) observe(now time.Time, key K, sum uint64) (since time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[K]idleMark{}
	}
	m, seen := t.m[key]
	if !seen || m.sum != sum {
		t.m[key] = idleMark{sum, now}
		return time.Time{}, false
	}
	return m.since, now.Sub(m.since) >= idleAfter
}

// prune drops the marks of the objects gone reports.
func (t *idleTracker[K]) prune(gone func(K) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.m {
		if gone(k) {
			delete(t.m, k)
		}
	}
	t.pruned = len(t.m)
}

// pruneGrown is prune once the marks have doubled since the last one, for
// objects no single read lists all of (queues are read per vhost or one
// at a time), so that a walk costs O(1) per mark added.
func (t *idleTracker[K]) pruneGrown(gone func(K) bool) {
	t.mu.Lock()
	grown := len(t.m) >= max(2*t.pruned, 64)
	t.mu.Unlock()
	if grown {
		t.prune(gone)
	}
}

// set observes key's activity sum now and adds idle_since to its item it
// when it is idle.
func (t *idleTracker[K]) set(it item, key K, sum uint64) {
	if since, idle := t.observe(time.Now(), key, sum); idle {
		it["idle_since"] = since.Local().Format(idleFormat)
	}
}

// gcStats is RabbitMQ's garbage_collection object of a queue, a
// connection or a channel: the settings and minor collections of the
// Erlang process behind it. Go has one heap for the whole process and no
// per-object collector, so every field is 0, there only for clients that
// require the object (see the README's Management API). A value with no
// fields: an item holds it without an allocation, and the encoder writes
// it as a constant (a listing of 10,000 queues has 10,000).
type gcStats struct{}

// gcJSON is every gcStats, as RabbitMQ orders the fields (sorted).
const gcJSON = `{"fullsweep_after":0,"max_heap_size":0,"min_bin_vheap_size":0,"min_heap_size":0,"minor_gcs":0}`

// MarshalJSON writes gcJSON, for encoding/json.
func (gcStats) MarshalJSON() ([]byte, error) { return []byte(gcJSON), nil }
