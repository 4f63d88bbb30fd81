// Package storetest is the conformance suite every store.Store passes:
// the memory and the file store run the same tests, so the memory store
// stays a faithful model of the durable one.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/store"
)

// Run runs the suite; open returns a new, empty store for each test, which
// the test closes.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"RoundTrip", roundTrip},
		{"NotStored", notStored},
		{"RefsUnique", refsUnique},
		{"DoneOnce", doneOnce},
		{"ReleaseShared", releaseShared},
		{"DropQueue", dropQueue},
		{"Stats", stats},
		{"Concurrent", concurrent},
		{"Sync", syncStore},
		{"Recover", recoverEmpty},
		{"Close", closeStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// Msg returns a persistent test message whose content derives from key.
func Msg(key string) *store.Message {
	return &store.Message{Exchange: "amq.direct", RoutingKey: "rk." + key, Properties: []byte{0x10, 0x00, 0x02},
		Body: []byte("body of " + key), Persistent: true,
		Meta: store.Meta{Timestamp: 1_700_000_000_000_000_000 + int64(len(key)), Expires: 1_800_000_000_000_000_000, Priority: uint8(len(key) % 10)}}
}

// Same reports whether a loaded message has m's content.
func Same(a, b *store.Message) bool {
	return a.Exchange == b.Exchange && a.RoutingKey == b.RoutingKey && bytes.Equal(a.Properties, b.Properties) &&
		bytes.Equal(a.Body, b.Body) && a.Persistent == b.Persistent && a.Meta == b.Meta
}

// Put stores m for queues and waits for done, failing t on any error.
func Put(t testing.TB, s store.Store, m *store.Message, queues ...store.QueueID) store.Ref {
	t.Helper()
	ch := make(chan error, 2)
	ref, err := s.Put(m, queues, func(err error) { ch <- err })
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("Put done: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Put: done never called")
	}
	return ref
}

// MustLoad loads ref and checks it against want.
func MustLoad(t testing.TB, s store.Store, ref store.Ref, want *store.Message) {
	t.Helper()
	got, err := s.Load(ref)
	if err != nil {
		t.Fatalf("Load %+v: %v", ref, err)
	}
	if !Same(got, want) {
		t.Fatalf("Load %+v = %+v, want %+v", ref, got, want)
	}
}

// Gone checks that ref no longer loads, with ErrNotFound.
func Gone(t testing.TB, s store.Store, ref store.Ref) {
	t.Helper()
	if m, err := s.Load(ref); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load %+v = %+v, %v; want ErrNotFound", ref, m, err)
	}
}

func wantStats(t testing.TB, s store.Store, messages, holds int64) {
	t.Helper()
	st := s.Stats()
	if st.Messages != messages || st.Holds != holds {
		t.Fatalf("Stats messages=%d holds=%d, want %d %d", st.Messages, st.Holds, messages, holds)
	}
}

func roundTrip(t *testing.T, s store.Store) {
	m := Msg("round-trip")
	m.Due = 1_700_000_005_000_000_000
	ref := Put(t, s, m, 1)
	if ref.IsZero() {
		t.Fatal("a persistent message for a durable queue got the zero Ref")
	}
	MustLoad(t, s, ref, m)
	MustLoad(t, s, ref, m) // a load does not consume
	empty := &store.Message{Persistent: true}
	MustLoad(t, s, Put(t, s, empty, 1), empty)
}

// notStored: transient messages and messages for no durable queue get
// the zero Ref, done at once, and leave nothing behind.
func notStored(t *testing.T, s store.Store) {
	transient := Msg("transient")
	transient.Persistent = false
	for _, c := range []struct {
		m      *store.Message
		queues []store.QueueID
	}{{transient, []store.QueueID{1}}, {Msg("no-durable-queue"), []store.QueueID{0}}, {Msg("no-queue"), nil}} {
		if ref := Put(t, s, c.m, c.queues...); !ref.IsZero() {
			t.Fatalf("%q for %v got %+v, want the zero Ref", c.m.RoutingKey, c.queues, ref)
		}
	}
	Gone(t, s, store.Ref{})
	Gone(t, s, store.Ref{ID: 1 << 40, Segment: 1, Offset: 32})
	s.Release(1, []store.Ref{{}})
	wantStats(t, s, 0, 0)
}

func refsUnique(t *testing.T, s store.Store) {
	seen := map[store.Ref]bool{}
	ids := map[uint64]bool{}
	for i := range 200 {
		ref := Put(t, s, Msg(fmt.Sprint(i)), store.QueueID(1+i%3))
		if ref.IsZero() || seen[ref] || ids[ref.ID] {
			t.Fatalf("message %d got ref %+v again (or zero)", i, ref)
		}
		seen[ref], ids[ref.ID] = true, true
	}
}

// doneOnce: every done runs exactly once, and Close waits for them.
func doneOnce(t *testing.T, s store.Store) {
	const n = 300
	var calls [n]atomic.Int32
	var errs atomic.Int32
	for i := range n {
		m := Msg(fmt.Sprint(i))
		m.Persistent = i%4 != 0
		if _, err := s.Put(m, []store.QueueID{store.QueueID(i % 3)}, func(err error) {
			if err != nil {
				errs.Add(1)
			}
			calls[i].Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("done of message %d called %d times", i, c)
		}
	}
	if errs.Load() != 0 {
		t.Fatalf("%d dones failed", errs.Load())
	}
}

// releaseShared: a message held by two queues stays until both let go;
// releases of what a queue does not hold change nothing.
func releaseShared(t *testing.T, s store.Store) {
	m := Msg("shared")
	ref := Put(t, s, m, 1, 2, 2, 0)
	wantStats(t, s, 1, 2)
	s.Release(1, []store.Ref{ref})
	MustLoad(t, s, ref, m)
	s.Release(1, []store.Ref{ref}) // again: q1 holds it no more
	s.Release(3, []store.Ref{ref}) // never held
	s.Release(0, []store.Ref{ref})
	MustLoad(t, s, ref, m)
	wantStats(t, s, 1, 1)
	s.Release(2, []store.Ref{ref})
	Gone(t, s, ref)
	wantStats(t, s, 0, 0)
	s.Release(2, []store.Ref{ref})
	wantStats(t, s, 0, 0)
}

func dropQueue(t *testing.T, s store.Store) {
	a, b, c := Msg("a"), Msg("b"), Msg("c")
	ra := Put(t, s, a, 1)
	rb := Put(t, s, b, 1, 2)
	rc := Put(t, s, c, 2)
	s.DropQueue(1)
	Gone(t, s, ra)
	MustLoad(t, s, rb, b)
	MustLoad(t, s, rc, c)
	wantStats(t, s, 2, 2)
	s.Release(1, []store.Ref{rb}) // dropped: holds nothing
	MustLoad(t, s, rb, b)
	s.DropQueue(3) // unknown
	s.DropQueue(0)
	// A dropped queue id that comes back is a new holder.
	d := Msg("d")
	rd := Put(t, s, d, 1)
	s.DropQueue(2)
	Gone(t, s, rb)
	Gone(t, s, rc)
	MustLoad(t, s, rd, d)
	wantStats(t, s, 1, 1)
}

func stats(t *testing.T, s store.Store) {
	wantStats(t, s, 0, 0)
	var refs []store.Ref
	for i := range 10 {
		refs = append(refs, Put(t, s, Msg(fmt.Sprint("stats-", i)), 5, 6))
	}
	wantStats(t, s, 10, 20)
	s.Release(5, refs)
	wantStats(t, s, 10, 10)
	s.Release(6, refs[:4])
	wantStats(t, s, 6, 6)
}

// concurrent: puts, loads and releases from many goroutines (run it with
// -race) leave exactly nothing behind.
func concurrent(t *testing.T, s store.Store) {
	const workers, each = 4, 150
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			var held []store.Ref
			var msgs []*store.Message
			for i := range each {
				m := Msg(fmt.Sprintf("w%d-%d", w, i))
				ref, err := s.Put(m, []store.QueueID{1, store.QueueID(10 + w)}, nil)
				if err != nil {
					errc <- err
					return
				}
				held, msgs = append(held, ref), append(msgs, m)
				if i%3 == 2 {
					for j, r := range held {
						if got, err := s.Load(r); err != nil || !Same(got, msgs[j]) {
							errc <- fmt.Errorf("load %+v: %v", r, err)
							return
						}
					}
					s.Release(1, held)
					s.Release(store.QueueID(10+w), held)
					for _, r := range held {
						if _, err := s.Load(r); !errors.Is(err, store.ErrNotFound) {
							errc <- fmt.Errorf("load of released %+v: %v", r, err)
							return
						}
					}
					held, msgs = held[:0], msgs[:0]
				}
			}
		})
	}
	for range 50 {
		_ = s.Stats()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	wantStats(t, s, 0, 0)
}

// SyncWait calls s.Sync and returns what its done was called with,
// failing t if done is not called once within 10 s.
func SyncWait(t testing.TB, s store.Store) error {
	t.Helper()
	ch := make(chan error, 2)
	s.Sync(func(err error) { ch <- err })
	var err error
	select {
	case err = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Sync: done never called")
	}
	select {
	case <-ch:
		t.Fatal("Sync: done called twice")
	case <-time.After(10 * time.Millisecond):
	}
	return err
}

// syncStore: Sync answers once with nil whether or not anything is pending
// (after puts, releases and drops that did not wait), and with ErrClosed
// after Close. What it guarantees of the disk the file store's own tests
// check (a crash after it).
func syncStore(t *testing.T, s store.Store) {
	if err := SyncWait(t, s); err != nil {
		t.Fatalf("Sync of an idle store: %v", err)
	}
	var refs []store.Ref
	for i := range 20 {
		ref, err := s.Put(Msg(fmt.Sprint(i)), []store.QueueID{1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	s.Release(1, refs[:10])
	s.DropQueue(2)
	if err := SyncWait(t, s); err != nil {
		t.Fatalf("Sync after releases: %v", err)
	}
	wantStats(t, s, 10, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := SyncWait(t, s); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
}

func recoverEmpty(t *testing.T, s store.Store) {
	rec, err := s.Recover()
	if err != nil || len(rec.Queues) != 0 || len(rec.Corruptions) != 0 || rec.TornTail != nil {
		t.Fatalf("a new store recovered %+v, %v", rec, err)
	}
	if _, err := s.Recover(); err == nil {
		t.Fatal("a second Recover succeeded")
	}
}

func closeStore(t *testing.T, s store.Store) {
	m := Msg("before close")
	ref := Put(t, s, m, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var calls atomic.Int32
	var doneErr error
	if _, err := s.Put(Msg("after close"), []store.QueueID{1}, func(err error) { doneErr = err; calls.Add(1) }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if calls.Load() != 1 || !errors.Is(doneErr, store.ErrClosed) {
		t.Fatalf("Put after Close: done called %d times with %v", calls.Load(), doneErr)
	}
	if _, err := s.Load(ref); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Load after Close: %v", err)
	}
	s.Release(1, []store.Ref{ref})
	s.DropQueue(1)
	_ = s.Stats()
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
