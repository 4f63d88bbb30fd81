package store_test

import (
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/server/store/storetest"
	"github.com/amqp-go/amqp-go/shared/wal"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}

func TestFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openFile(t, wal.NewMemFS(), nil) })
}

func TestFileOnDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenFile(store.FileOptions{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func openFile(t testing.TB, fsys *wal.MemFS, mod func(*store.FileOptions)) store.Store {
	t.Helper()
	o := store.FileOptions{Dir: "/data", FS: fsys, SegmentSize: 8 << 10, BatchBytes: 4 << 10}
	if mod != nil {
		mod(&o)
	}
	s, err := store.OpenFile(o)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return s
}

func recoverAll(t testing.TB, s store.Store) *store.Recovered {
	t.Helper()
	rec, err := s.Recover()
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(rec.Corruptions) != 0 {
		t.Fatalf("corruptions: %+v", rec.Corruptions)
	}
	return rec
}

// TestFileReopen: after Close, a reopened store recovers exactly the
// unreleased messages of each queue, in order, with their metadata, and
// they load and release as before.
func TestFileReopen(t *testing.T) {
	fsys := wal.NewMemFS()
	s := openFile(t, fsys, nil)
	type stored struct {
		ref store.Ref
		m   *store.Message
	}
	want := map[store.QueueID][]stored{}
	for i := range 120 {
		m := storetest.Msg(fmt.Sprint("reopen-", i))
		m.Due = int64(i)
		qs := []store.QueueID{1}
		if i%2 == 0 {
			qs = append(qs, 2)
		}
		if i%5 == 0 {
			qs = append(qs, 3)
		}
		ref := storetest.Put(t, s, m, qs...)
		for _, q := range qs {
			want[q] = append(want[q], stored{ref, m})
		}
	}
	// Queue 1 acks every third message, queue 2 its first ten; queue 3 is
	// deleted.
	var acked []store.Ref
	kept := want[1][:0]
	for i, st := range want[1] {
		if i%3 == 0 {
			acked = append(acked, st.ref)
		} else {
			kept = append(kept, st)
		}
	}
	want[1] = kept
	s.Release(1, acked)
	for _, st := range want[2][:10] {
		s.Release(2, []store.Ref{st.ref})
	}
	want[2] = want[2][10:]
	s.DropQueue(3)
	delete(want, 3)
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openFile(t, fsys, nil)
	rec := recoverAll(t, s)
	if len(rec.Queues) != len(want) {
		t.Fatalf("recovered queues %v, want 1 and 2", slices.Collect(mapKeys(rec.Queues)))
	}
	for q, ws := range want {
		es := slices.Collect(rec.Queues[q].Entries())
		if len(es) != len(ws) {
			t.Fatalf("queue %d recovered %d messages, want %d", q, len(es), len(ws))
		}
		for i, e := range es {
			if e.Ref != ws[i].ref || e.Meta != ws[i].m.Meta || e.Size != uint32(len(ws[i].m.Body)) {
				t.Fatalf("queue %d entry %d = %+v, want ref %+v meta %+v size %d", q, i, e, ws[i].ref, ws[i].m.Meta, len(ws[i].m.Body))
			}
			storetest.MustLoad(t, s, e.Ref, ws[i].m)
		}
	}
	if st := s.Stats(); st.Messages != before.Messages || st.Holds != before.Holds {
		t.Fatalf("Stats after reopen %+v, before %+v", st, before)
	}
	// Drain queue 1 and half of queue 2, then reopen again.
	for _, st := range want[1] {
		s.Release(1, []store.Ref{st.ref})
	}
	var rest []store.Ref
	for i, st := range want[2] {
		if i%2 == 0 {
			s.Release(2, []store.Ref{st.ref})
		} else {
			rest = append(rest, st.ref)
		}
	}
	for _, st := range want[1] {
		if !slices.Contains(rest, st.ref) {
			storetest.Gone(t, s, st.ref)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFile(t, fsys, nil)
	defer s.Close()
	rec = recoverAll(t, s)
	var got []store.Ref
	for e := range rec.Queues[2].Entries() {
		got = append(got, e.Ref)
	}
	if len(rec.Queues) != 1 || !slices.Equal(got, rest) {
		t.Fatalf("second reopen recovered %d queues, queue 2 %v; want %v", len(rec.Queues), got, rest)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestFileCrash: a power loss at a random moment, with a torn write,
// loses no message whose done reported success and that no queue had
// released, and brings back nothing that was never put.
func TestFileCrash(t *testing.T) {
	fsys := wal.NewMemFS()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	type sent struct {
		m         *store.Message
		confirmed atomic.Bool
	}
	var mu sync.Mutex
	all := map[store.Ref]*sent{}      // what Put accepted and was not released
	released := map[store.Ref]*sent{} // released last round: may come back
	for round := range 6 {
		s := openFile(t, fsys, nil)
		rec := recoverAll(t, s)
		seen := map[store.Ref]bool{}
		var entries []store.Entry
		if q := rec.Queues[1]; q != nil {
			entries = slices.Collect(q.Entries())
			if len(entries) != q.Len() {
				t.Fatalf("round %d: Len %d, Entries yields %d", round, q.Len(), len(entries))
			}
		}
		for _, e := range entries {
			st := all[e.Ref]
			if st == nil && released[e.Ref] != nil {
				st = released[e.Ref] // its ack was not durable yet
				all[e.Ref] = st
			}
			if st == nil {
				t.Fatalf("round %d: recovered %+v, which was never put or was released", round, e.Ref)
			}
			storetest.MustLoad(t, s, e.Ref, st.m)
			seen[e.Ref] = true
		}
		for ref, st := range all {
			if st.confirmed.Load() && !seen[ref] {
				t.Fatalf("round %d: confirmed %+v lost", round, ref)
			}
			if !seen[ref] {
				delete(all, ref)
			} else {
				st.confirmed.Store(true) // it survived a crash: durable now
			}
		}
		// Release a third of the survivors (whether those releases
		// survive does not matter: both outcomes are allowed).
		clear(released)
		var rel []store.Ref
		for ref := range seen {
			if rng.Intn(3) == 0 {
				rel = append(rel, ref)
				released[ref] = all[ref]
				delete(all, ref)
			}
		}
		s.Release(1, rel)
		var confirmed atomic.Int64
		target := int64(rng.Intn(300))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					st := &sent{m: storetest.Msg(fmt.Sprintf("r%d-g%d-%d", round, g, i))}
					mu.Lock()
					ref, err := s.Put(st.m, []store.QueueID{1}, func(err error) {
						if err == nil {
							st.confirmed.Store(true)
							confirmed.Add(1)
						}
					})
					if err == nil {
						all[ref] = st
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
		deadline := time.Now().Add(10 * time.Second)
		for confirmed.Load() < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		fsys.Crash(rng)
		close(stop)
		wg.Wait()
		s.Close() // reports the crash or not
	}
}

// TestFileTornTail: a partial record at the end of the log is cut on
// open and reported; the messages before it are intact.
func TestFileTornTail(t *testing.T) {
	fsys := wal.NewMemFS()
	s := openFile(t, fsys, nil)
	var refs []store.Ref
	for i := range 5 {
		refs = append(refs, storetest.Put(t, s, storetest.Msg(fmt.Sprint("torn-", i)), 4))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fsys.ReadDir("/data")
	var last string
	for _, n := range names {
		if strings.HasSuffix(n, ".wal") {
			last = filepath.Join("/data", n)
		}
	}
	data, _ := fsys.ReadFile(last)
	partial := wal.AppendMessageRecord(nil, &wal.Message{ID: 99, Queues: []uint64{4}, Body: make([]byte, 100)})[:40]
	fsys.WriteFile(last, append(data, partial...))

	s = openFile(t, fsys, nil)
	defer s.Close()
	rec := recoverAll(t, s)
	if tt := rec.TornTail; tt == nil || tt.File != last || tt.Offset != int64(len(data)) || tt.Bytes != 40 {
		t.Fatalf("torn tail %+v, want %s@%d, 40 bytes", tt, last, len(data))
	}
	if after, _ := fsys.ReadFile(last); len(after) != len(data) {
		t.Fatalf("tail not cut: %d bytes, want %d", len(after), len(data))
	}
	var got []store.Ref
	for e := range rec.Queues[4].Entries() {
		got = append(got, e.Ref)
	}
	if !slices.Equal(got, refs) {
		t.Fatalf("recovered %v, want %v", got, refs)
	}
}

// TestFileFailure: a failed fsync fails the covered dones and later Puts,
// and OnFailure hears of it once.
func TestFileFailure(t *testing.T) {
	fsys := wal.NewMemFS()
	var failures atomic.Int32
	s := openFile(t, fsys, func(o *store.FileOptions) { o.OnFailure = func(error) { failures.Add(1) } })
	defer s.Close()
	storetest.Put(t, s, storetest.Msg("fine"), 1)
	boom := errors.New("disk on fire")
	fsys.FailSyncs(boom)
	ch := make(chan error, 1)
	if _, err := s.Put(storetest.Msg("doomed"), []store.QueueID{1}, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; !errors.Is(err, boom) || !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("done: %v", err)
	}
	var calls int
	if _, err := s.Put(storetest.Msg("later"), []store.QueueID{1}, func(error) { calls++ }); !errors.Is(err, wal.ErrFailed) || calls != 1 {
		t.Fatalf("Put after failure: %v, done called %d times", err, calls)
	}
	if failures.Load() != 1 || s.Stats().Log.Failed == nil {
		t.Fatalf("OnFailure called %d times; Stats.Log.Failed %v", failures.Load(), s.Stats().Log.Failed)
	}
	if err := storetest.SyncWait(t, s); !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("Sync after failure: %v", err)
	}
}

// TestFileSyncMakesReleasesDurable: a Release does not wait for its ack
// record's fsync, a Sync after it does: crash as soon as Sync answers and
// the released messages stay released. A batch delay holds the ack's batch
// open, so a Sync that answered before the fsync would lose it.
func TestFileSyncMakesReleasesDurable(t *testing.T) {
	fsys := wal.NewMemFS()
	s := openFile(t, fsys, func(o *store.FileOptions) { o.BatchDelay = 30 * time.Millisecond })
	var refs []store.Ref
	for i := range 10 {
		refs = append(refs, storetest.Put(t, s, storetest.Msg(fmt.Sprint(i)), 1))
	}
	s.Release(1, refs[:6])
	if err := storetest.SyncWait(t, s); err != nil {
		t.Fatal(err)
	}
	fsys.Crash(nil)
	s.Close()
	s = openFile(t, fsys, nil)
	defer s.Close()
	rec := recoverAll(t, s)
	var back []store.Ref
	for e := range rec.Queues[1].Entries() {
		back = append(back, e.Ref)
	}
	if !slices.Equal(back, refs[6:]) {
		t.Fatalf("recovered %v, want the 4 not released %v", back, refs[6:])
	}
}

// TestFileReclaims: once every message is released the log deletes its
// old segments (the releases reach it as acks).
func TestFileReclaims(t *testing.T) {
	s := openFile(t, wal.NewMemFS(), nil)
	defer s.Close()
	var refs []store.Ref
	for i := range 200 {
		refs = append(refs, storetest.Put(t, s, storetest.Msg(fmt.Sprint("reclaim-", i)), 1, 2))
	}
	if n := s.Stats().Log.Segments; n < 3 {
		t.Fatalf("only %d segments written", n)
	}
	s.Release(1, refs)
	s.Release(2, refs)
	storetest.Put(t, s, storetest.Msg("last"), 1) // a commit after the acks
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Log.Segments > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d segments left after a full drain", s.Stats().Log.Segments)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFileOptions(t *testing.T) {
	if _, err := store.OpenFile(store.FileOptions{Dir: "/data", FS: wal.NewMemFS(), SegmentSize: store.MaxSegmentSize + 1}); err == nil {
		t.Fatal("a segment size a Ref cannot address was accepted")
	}
	fsys := wal.NewMemFS()
	s := openFile(t, fsys, func(o *store.FileOptions) { o.DiscardPersistent = true })
	if ref := storetest.Put(t, s, storetest.Msg("discarded"), 1); !ref.IsZero() {
		t.Fatalf("DiscardPersistent stored %+v", ref)
	}
	s.Close()
	s = openFile(t, fsys, nil)
	defer s.Close()
	if rec := recoverAll(t, s); len(rec.Queues) != 0 {
		t.Fatalf("recovered %+v", rec.Queues)
	}
}
