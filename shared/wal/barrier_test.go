package wal

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// barrierWait calls Barrier and waits for its done.
func barrierWait(t testing.TB, l *Log) error {
	t.Helper()
	ch := make(chan error, 1)
	l.Barrier(func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Barrier: done never called")
		return nil
	}
}

// TestBarrierMakesAcksDurable acks without a callback, as the store's
// Release does, and crashes as soon as a Barrier says the ack is durable:
// the acked messages must not come back. A batch delay keeps the ack's
// batch open, so a Barrier that answered before its fsync would lose it.
func TestBarrierMakesAcksDurable(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.BatchDelay = 30 * time.Millisecond })
	var refs []Ref
	for i := range 10 {
		p := appendWait(t, l, testMsg(fmt.Sprint(i), 1))
		if i%2 == 0 {
			refs = append(refs, Ref{ID: uint64(i + 1), Segment: p.Segment})
		}
	}
	before := l.Stats().Fsyncs
	l.Ack(1, refs, nil)
	if err := barrierWait(t, l); err != nil {
		t.Fatal(err)
	}
	// It rode on the ack's batch: one fsync for both.
	if got := l.Stats().Fsyncs - before; got != 1 {
		t.Fatalf("%d fsyncs for an ack and a barrier, want 1", got)
	}
	fsys.Crash(nil)
	l.Close()
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	es := rec.Queues[1].Entries
	if len(es) != 5 {
		t.Fatalf("%d messages recovered, want the 5 not acked", len(es))
	}
	for _, e := range es {
		if e.ID%2 == 1 {
			t.Fatalf("acked id %d came back", e.ID)
		}
	}
}

// TestBarrierIdleIsImmediate: with nothing pending a Barrier answers
// before it returns, and costs no fsync.
func TestBarrierIdleIsImmediate(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), nil)
	defer l.Close()
	appendWait(t, l, testMsg("a", 1))
	// appendWait returns from the Append callback, before the commit
	// goroutine marks the batch committed; Sync waits for that.
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	before := l.Stats().Fsyncs
	called := false
	l.Barrier(func(err error) {
		if err != nil {
			t.Error(err)
		}
		called = true
	})
	if !called {
		t.Fatal("Barrier on an idle log did not answer at once")
	}
	if got := l.Stats().Fsyncs - before; got != 0 {
		t.Fatalf("an idle Barrier cost %d fsyncs", got)
	}
}

// TestBarrierAfterCallbacks: done comes after the callbacks of every
// record appended before the Barrier (it may come after some appended
// later, in the same batch).
func TestBarrierAfterCallbacks(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), func(o *Options) { o.MaxBatchBytes = 1 << 10 })
	defer l.Close()
	var mu sync.Mutex
	var order []string
	note := func(s string) func(error) {
		return func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, s)
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	for i := range 20 { // several batches
		if _, err := l.Append(testMsg(fmt.Sprint("before", i), 1), note("before")); err != nil {
			t.Fatal(err)
		}
	}
	l.Barrier(func(err error) { note("barrier1")(err); wg.Done() })
	l.Ack(1, []Ref{{ID: 1, Segment: 1}}, func(err error) { note("ack")(err); wg.Done() })
	l.Barrier(func(err error) { note("barrier2")(err); wg.Done() })
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	first := slices.Index(order, "barrier1")
	befores := 0
	for _, s := range order[:max(first, 0)] {
		if s == "before" {
			befores++
		}
	}
	if befores != 20 || order[len(order)-1] != "barrier2" {
		t.Fatalf("callback order %v: want the 20 appends', then the first barrier's, with the ack's and last the second barrier's after the appends'", order)
	}
}

// TestBarrierFailure: a Barrier waiting on a batch whose fsync fails gets
// the log's error, as do later ones at once, and one after Close gets
// ErrClosed.
func TestBarrierFailure(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.BatchDelay = 20 * time.Millisecond })
	appendWait(t, l, testMsg("ok", 1))
	boom := errors.New("disk on fire")
	fsys.FailSyncs(boom)
	l.Ack(1, []Ref{{ID: 1, Segment: 1}}, nil)
	if err := barrierWait(t, l); !errors.Is(err, boom) || !errors.Is(err, ErrFailed) {
		t.Fatalf("Barrier over a failed fsync: %v", err)
	}
	fsys.FailSyncs(nil)
	if err := barrierWait(t, l); !errors.Is(err, ErrFailed) {
		t.Fatalf("Barrier on a failed log: %v", err)
	}
	l.Close()

	l, _ = openMem(t, fsys, nil)
	l.Close()
	if err := barrierWait(t, l); !errors.Is(err, ErrClosed) {
		t.Fatalf("Barrier on a closed log: %v", err)
	}
}

// TestBarrierCrashConcurrent: goroutines ack their own messages and put a
// Barrier after each ack while others append; the log crashes at a random
// moment. Every ack whose Barrier had answered must hold after recovery,
// whichever batch (pending, or being written) the Barrier waited on.
func TestBarrierCrashConcurrent(t *testing.T) {
	fsys := NewMemFS()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	l, _ := openMem(t, fsys, func(o *Options) { o.MaxBatchBytes = 4 << 10 })
	const workers, each = 4, 200
	refs := make([][]Ref, workers)
	for g := range workers {
		for i := range each {
			p := appendWait(t, l, testMsg(fmt.Sprintf("g%d-%d", g, i), uint64(g+1)))
			refs[g] = append(refs[g], Ref{ID: uint64(g*each + i + 1), Segment: p.Segment})
		}
	}
	var durable [workers]atomic.Int64 // acks of each worker a Barrier covered
	var total atomic.Int64
	target := int64(rng.Intn(workers*each/2) + 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, r := range refs[g] {
				select {
				case <-stop:
					return
				default:
				}
				// Noise: appends the Barrier must not need to wait for.
				if _, err := l.Append(testMsg(fmt.Sprintf("noise-%d-%d", g, i), 99), nil); err != nil {
					return
				}
				l.Ack(uint64(g+1), []Ref{r}, nil)
				done := make(chan error, 1)
				l.Barrier(func(err error) { done <- err })
				if err := <-done; err != nil {
					return
				}
				durable[g].Store(int64(i + 1))
				total.Add(1)
			}
		}()
	}
	waitFor(t, "barriers", func() bool { return total.Load() >= target })
	var covered [workers]int64
	for g := range workers {
		covered[g] = durable[g].Load()
	}
	fsys.Crash(rng)
	close(stop)
	wg.Wait()
	l.Close()
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	for g := range workers {
		live := map[uint64]bool{}
		if q := rec.Queues[uint64(g+1)]; q != nil {
			for _, e := range q.Entries {
				live[e.ID] = true
			}
		}
		for _, r := range refs[g][:covered[g]] {
			if live[r.ID] {
				t.Fatalf("worker %d: id %d acked and covered by a Barrier came back", g, r.ID)
			}
		}
	}
}
