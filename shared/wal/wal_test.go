package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func testMsg(key string, queues ...uint64) *Message {
	return &Message{
		Queues:     queues,
		Exchange:   "amq.direct",
		RoutingKey: "rk." + key,
		Properties: []byte{0x10, 0x00, 0x02}, // flags: delivery-mode; value 2
		Body:       []byte("body of " + key + " " + string(bytes.Repeat([]byte{'x'}, len(key)*7%300))),
	}
}

func sameMsg(a, b *Message) bool {
	return a.ID == b.ID && a.Exchange == b.Exchange && a.RoutingKey == b.RoutingKey &&
		bytes.Equal(a.Properties, b.Properties) && bytes.Equal(a.Body, b.Body) && fmt.Sprint(a.Queues) == fmt.Sprint(b.Queues)
}

func openMem(t testing.TB, fsys FS, mod func(*Options)) (*Log, *Recovered) {
	t.Helper()
	o := Options{Dir: "/data", FS: fsys}
	if mod != nil {
		mod(&o)
	}
	l, rec, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l, rec
}

// appendWait appends m and waits for its done callback.
func appendWait(t testing.TB, l *Log, m *Message) Position {
	t.Helper()
	ch := make(chan error, 1)
	pos, err := l.Append(m, func(err error) { ch <- err })
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("done: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("done never called")
	}
	return pos
}

func TestAppendReadReopen(t *testing.T) {
	fsys := NewMemFS()
	l, rec := openMem(t, fsys, nil)
	if len(rec.Queues) != 0 || rec.NextID != 1 {
		t.Fatalf("fresh log recovered %+v", rec)
	}
	var msgs []*Message
	var poss []Position
	for i := 0; i < 50; i++ {
		m := testMsg(fmt.Sprint(i), 1, uint64(2+i%3))
		poss = append(poss, appendWait(t, l, m))
		msgs = append(msgs, m)
		if m.ID != uint64(i+1) {
			t.Fatalf("id %d, want %d", m.ID, i+1)
		}
	}
	for i, p := range poss {
		got, err := l.ReadMessage(p)
		if err != nil || !sameMsg(got, msgs[i]) {
			t.Fatalf("ReadMessage(%v) = %+v, %v; want %+v", p, got, err, msgs[i])
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec = openMem(t, fsys, nil)
	defer l.Close()
	if rec.NextID != 51 || rec.Messages != 50 || len(rec.Queues[1].Entries) != 50 {
		t.Fatalf("recovered NextID=%d messages=%d q1=%d", rec.NextID, rec.Messages, len(rec.Queues[1].Entries))
	}
	for q := uint64(2); q <= 4; q++ {
		for _, e := range rec.Queues[q].Entries {
			m, err := l.ReadMessage(e.Pos)
			if err != nil || !sameMsg(m, msgs[e.ID-1]) || e.Pos != poss[e.ID-1] {
				t.Fatalf("queue %d entry %+v: %v %v", q, e, m, err)
			}
		}
	}
	m := testMsg("after", 9)
	appendWait(t, l, m)
	if m.ID != 51 {
		t.Fatalf("id after reopen %d", m.ID)
	}
}

func TestReadPendingRecord(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), nil)
	defer l.Close()
	for i := 0; i < 200; i++ {
		m := testMsg(fmt.Sprint(i), 1)
		pos, err := l.Append(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.ReadMessage(pos)
		if err != nil || !sameMsg(got, m) {
			t.Fatalf("read of pending record: %v %v", got, err)
		}
	}
}

// TestCrashConcurrent appends from several goroutines, crashes at random
// moments and checks that every confirmed message comes back exactly once
// with identical content and nothing else appears.
func TestCrashConcurrent(t *testing.T) {
	fsys := NewMemFS()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	type sent struct {
		m         *Message
		confirmed atomic.Bool
	}
	var mu sync.Mutex
	all := map[uint64]*sent{} // by id: everything Append accepted
	acked := map[uint64]bool{}
	for round := 0; round < 12; round++ {
		l, rec := openMem(t, fsys, func(o *Options) { o.SegmentSize = 16 << 10; o.MaxBatchBytes = 8 << 10 })
		// Verify the previous rounds.
		seen := map[uint64]bool{}
		for q, rq := range rec.Queues {
			for i, e := range rq.Entries {
				if i > 0 && rq.Entries[i-1].ID >= e.ID {
					t.Fatalf("round %d queue %d not in id order", round, q)
				}
				s := all[e.ID]
				if s == nil {
					t.Fatalf("round %d: recovered id %d that was never appended", round, e.ID)
				}
				m, err := l.ReadMessage(e.Pos)
				if err != nil || !sameMsg(m, s.m) {
					t.Fatalf("round %d: id %d content differs: %v", round, e.ID, err)
				}
				if acked[e.ID] {
					t.Fatalf("round %d: acked id %d came back", round, e.ID)
				}
				if seen[e.ID] && q == s.m.Queues[0] {
					t.Fatalf("duplicate id %d", e.ID)
				}
				seen[e.ID] = true
			}
		}
		for id, s := range all {
			if s.confirmed.Load() && !acked[id] && !seen[id] {
				t.Fatalf("round %d: confirmed id %d lost", round, id)
			}
			if !seen[id] {
				delete(all, id) // unconfirmed and gone: forget it
			}
		}
		if len(rec.Corruptions) != 0 {
			t.Fatalf("round %d: corruptions %v", round, rec.Corruptions)
		}
		// Ack a durable subset of what survived, waiting for the ack.
		var refs []Ref
		var q1 []Entry
		if rq := rec.Queues[1]; rq != nil {
			q1 = rq.Entries
		}
		for _, e := range q1 {
			if e.ID%3 == 0 {
				refs = append(refs, Ref{ID: e.ID, Segment: e.Pos.Segment})
			}
		}
		ackDone := make(chan error, 1)
		l.Ack(1, refs, func(err error) { ackDone <- err })
		if err := <-ackDone; err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			acked[r.ID] = true
		}
		// Load, then crash at a random moment.
		var confirmedN atomic.Int64
		target := int64(rng.Intn(400))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					m := testMsg(fmt.Sprintf("r%d-g%d-%d", round, g, i), 1)
					s := &sent{m: m}
					mu.Lock()
					_, err := l.Append(m, func(err error) {
						if err == nil {
							s.confirmed.Store(true)
							confirmedN.Add(1)
						}
					})
					if err == nil {
						all[m.ID] = s
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}(g)
		}
		waitFor(t, "confirmations", func() bool { return confirmedN.Load() >= target })
		fsys.Crash(rng)
		close(stop)
		wg.Wait()
		l.Close() // may or may not report the crash

	}
}

func TestAcksAndDropsAreDurable(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = 4 << 10 })
	var refs1 []Ref
	for i := 0; i < 100; i++ {
		p := appendWait(t, l, testMsg(fmt.Sprint(i), 1, 2))
		if i%2 == 0 {
			refs1 = append(refs1, Ref{ID: uint64(i + 1), Segment: p.Segment})
		}
	}
	l.Ack(1, refs1, nil)
	l.DropQueue(2, nil)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	p := appendWait(t, l, testMsg("new", 2)) // q2 recreated with the same id
	fsys.Crash(nil)
	l.Close()
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if got := len(rec.Queues[1].Entries); got != 50 {
		t.Fatalf("q1 has %d live, want 50", got)
	}
	for _, e := range rec.Queues[1].Entries {
		if e.ID%2 == 1 {
			t.Fatalf("acked id %d came back", e.ID)
		}
	}
	if q2 := rec.Queues[2]; q2 == nil || len(q2.Entries) != 1 || q2.Entries[0].Pos != p {
		t.Fatalf("q2 after drop = %+v", q2)
	}
}

func TestTornTailTruncated(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	for i := 0; i < 10; i++ {
		appendWait(t, l, testMsg(fmt.Sprint(i), 7))
	}
	l.Close()
	segs, _ := listSegments(fsys, "/data")
	last := segs[len(segs)-1]
	data, _ := fsys.ReadFile(last.Path)
	// A partial record: the first 30 bytes of a valid one.
	partial := AppendMessageRecord(nil, &Message{ID: 99, Queues: []uint64{7}, Body: make([]byte, 100)})[:30]
	fsys.WriteFile(last.Path, append(data, partial...))
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	tt := rec.TruncatedTail
	if tt == nil || tt.File != last.Path || tt.Offset != int64(len(data)) || tt.Bytes != 30 {
		t.Fatalf("torn tail = %+v, want %s@%d", tt, last.Path, len(data))
	}
	if len(rec.Corruptions) != 0 || len(rec.Queues[7].Entries) != 10 {
		t.Fatalf("corruptions %v, entries %d", rec.Corruptions, len(rec.Queues[7].Entries))
	}
	after, _ := fsys.ReadFile(last.Path)
	if !bytes.Equal(after, data) {
		t.Fatalf("tail not truncated: %d bytes, want %d", len(after), len(data))
	}
}

func TestMidLogCorruption(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = 1 << 10 })
	var poss []Position
	for i := 0; i < 60; i++ {
		poss = append(poss, appendWait(t, l, testMsg(fmt.Sprint(i), uint64(10+i%4))))
	}
	l.Close()
	segs, _ := listSegments(fsys, "/data")
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	// Flip a byte in the body of the second record of segment 1.
	var victim = -1
	for i, p := range poss {
		if p.Segment == segs[0].Number && p.Offset > SegmentHeaderSize {
			victim = i
			break
		}
	}
	data, _ := fsys.ReadFile(segs[0].Path)
	data[poss[victim].Offset+30] ^= 0xff
	fsys.WriteFile(segs[0].Path, data)

	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if rec.TruncatedTail != nil || len(rec.Corruptions) != 1 {
		t.Fatalf("tail %+v corruptions %v", rec.TruncatedTail, rec.Corruptions)
	}
	c := rec.Corruptions[0]
	wantQ := uint64(10 + victim%4)
	if c.File != segs[0].Path || c.Offset != poss[victim].Offset || len(c.Queues) != 1 || c.Queues[0] != wantQ {
		t.Fatalf("corruption %+v, want %s@%d queue %d", c, segs[0].Path, poss[victim].Offset, wantQ)
	}
	total := 0
	for q, rq := range rec.Queues {
		total += len(rq.Entries)
		if rq.Corrupt != (q == wantQ) {
			t.Fatalf("queue %d corrupt=%v", q, rq.Corrupt)
		}
	}
	if total != 59 {
		t.Fatalf("recovered %d messages, want 59", total)
	}
	if _, err := l.ReadMessage(poss[victim]); err == nil {
		t.Fatal("ReadMessage of corrupt record succeeded")
	}
	// The corrupt segment is kept even when every message is acked, and
	// so is everything after it (segments are reclaimed in order).
	for q, rq := range rec.Queues {
		var refs []Ref
		for _, e := range rq.Entries {
			refs = append(refs, Ref{ID: e.ID, Segment: e.Pos.Segment})
		}
		l.Ack(q, refs, nil)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.ReadFile(segs[0].Path); err != nil {
		t.Fatalf("corrupt segment was reclaimed: %v", err)
	}
}

func TestHostileLengthIsCorruption(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = 1 << 10 })
	var poss []Position
	for i := 0; i < 20; i++ {
		poss = append(poss, appendWait(t, l, testMsg(fmt.Sprint(i), 1)))
	}
	l.Close()
	p := poss[1]
	name := filepath.Join("/data", SegmentFileName(p.Segment))
	data, _ := fsys.ReadFile(name)
	copy(data[p.Offset:], []byte{0xf0, 0xff, 0xff, 0xff})
	fsys.WriteFile(name, data)
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if len(rec.Corruptions) != 1 || rec.Corruptions[0].Offset != p.Offset || len(rec.Corruptions[0].Queues) != 0 {
		t.Fatalf("corruptions %v", rec.Corruptions)
	}
	if n := len(rec.Queues[1].Entries); n != 19 {
		t.Fatalf("%d entries", n)
	}
}

func TestReclaimAfterDrain(t *testing.T) {
	fsys := NewMemFS()
	const segSize = 1 << 10
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = segSize })
	var refs1, refs2 []Ref
	for i := 0; i < 300; i++ {
		m := testMsg(fmt.Sprint(i), 1, 2)
		p, err := l.Append(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		refs1 = append(refs1, Ref{ID: m.ID, Segment: p.Segment})
		refs2 = append(refs2, Ref{ID: m.ID, Segment: p.Segment})
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Segments < 10 {
		t.Fatalf("only %d segments", s.Segments)
	}
	l.Ack(1, refs1, nil)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Segments < 10 {
		t.Fatalf("segments reclaimed while queue 2 still holds them: %d", s.Segments)
	}
	l.Ack(2, refs2[:150], nil)
	l.DropQueue(2, nil) // the rest via drop
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// The segment holding the final acks may be the active one; one more
	// record after a roll would let it go too, but within one segment of
	// empty is the promise.
	waitFor(t, "reclaim", func() bool {
		s := l.Stats()
		return s.DiskBytes <= 2*segSize
	})
	s := l.Stats()
	if s.Segments > 2 || s.ReclaimedSegments == 0 {
		t.Fatalf("after drain: %+v", s)
	}
	l.Close()
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if len(rec.Queues) != 0 {
		t.Fatalf("drained log recovered %d queues", len(rec.Queues))
	}
	if s := l.Stats(); s.Segments != 1 || s.DiskBytes != SegmentHeaderSize {
		t.Fatalf("after reopen: %+v", s)
	}
	m := testMsg("x", 1)
	appendWait(t, l, m)
	if m.ID != 301 {
		t.Fatalf("id after full reclaim %d, want 301", m.ID)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	appendWait(t, l, testMsg("a", 1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(rec.Queues[1].Entries) != 1 {
		t.Fatalf("recovered %+v", rec.Queues)
	}
}

func TestVersionMismatch(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	l.Close()
	fsys.WriteFile("/data/VERSION", []byte("amqp-go-wal 99\n"))
	if _, _, err := Open(Options{Dir: "/data", FS: fsys}); !errors.Is(err, ErrVersion) {
		t.Fatalf("Open: %v, want ErrVersion", err)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	l, _, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const workers, each = 32, 20
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				appendWait(t, l, testMsg(fmt.Sprintf("%d-%d", g, i), 1))
			}
		}(g)
	}
	wg.Wait()
	// Callbacks fire in append (= id) order.
	var mu sync.Mutex
	var order []uint64
	for i := 0; i < 200; i++ {
		m := testMsg(fmt.Sprint("o", i), 1)
		if _, err := l.Append(m, func(error) { mu.Lock(); order = append(order, m.ID); mu.Unlock() }); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for i := 1; i < len(order); i++ {
		if order[i] != order[i-1]+1 {
			t.Fatalf("callbacks out of order: %v", order)
		}
	}
	mu.Unlock()
	s := l.Stats()
	t.Logf("appends=%d batches=%d fsyncs=%d fsync total=%v", s.AppendedRecords, s.Batches, s.Fsyncs, s.FsyncTotal)
	if s.AppendedRecords != workers*each+200 || s.Fsyncs >= s.AppendedRecords {
		t.Fatalf("no batching: %+v", s)
	}
}

func TestSyncFailureFailsLog(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	appendWait(t, l, testMsg("ok", 1))
	boom := errors.New("disk on fire")
	fsys.FailSyncs(boom)
	ch := make(chan error, 1)
	if _, err := l.Append(testMsg("bad", 1), func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; !errors.Is(err, boom) || !errors.Is(err, ErrFailed) {
		t.Fatalf("done: %v", err)
	}
	fsys.FailSyncs(nil)
	if _, err := l.Append(testMsg("later", 1), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on failed log: %v", err)
	}
	ackErr := make(chan error, 1)
	l.Ack(1, []Ref{{ID: 1, Segment: 1}}, func(err error) { ackErr <- err })
	if err := <-ackErr; !errors.Is(err, ErrFailed) {
		t.Fatalf("Ack on failed log: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}

func TestReaderIsReadOnly(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	for i := 0; i < 5; i++ {
		appendWait(t, l, testMsg(fmt.Sprint(i), 3))
	}
	// While the log is open (and locked) the reader still works.
	r, err := OpenReaderFS(fsys, "/data")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Recover()
	if err != nil || len(rec.Queues[3].Entries) != 5 {
		t.Fatalf("reader recover: %v %+v", err, rec)
	}
	n := 0
	for _, s := range r.Segments() {
		if _, err := r.ScanSegment(s, func(ev *ScanEvent) error {
			if ev.Problem != nil {
				t.Fatalf("problem %v", ev.Problem)
			}
			m, err := ev.Message()
			if err != nil || m.Queues[0] != 3 {
				t.Fatalf("message %v %v", m, err)
			}
			if !bytes.Equal(ev.Raw(), AppendMessageRecord(nil, m)) {
				t.Fatal("Raw differs from re-encoding")
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 5 {
		t.Fatalf("scanned %d", n)
	}
	l.Close()
}

// TestCrashTornWrites crashes with unsynced data that is kept up to a
// random length: recovery must cut the torn record and keep a clean prefix.
func TestCrashTornWrites(t *testing.T) {
	torn := 0
	for seed := int64(0); seed < 10; seed++ {
		fsys := NewMemFS()
		l, _ := openMem(t, fsys, func(o *Options) { o.Sync = SyncNever; o.MaxBatchBytes = 1 << 10 })
		var msgs []*Message
		for i := 0; i < 200; i++ {
			m := testMsg(fmt.Sprint(i), 5)
			if _, err := l.Append(m, nil); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, m)
		}
		if err := l.Sync(); err != nil { // waits for the writes, no fsync
			t.Fatal(err)
		}
		fsys.Crash(rand.New(rand.NewSource(seed)))
		l.Close()
		l, rec := openMem(t, fsys, nil)
		if len(rec.Corruptions) != 0 {
			t.Fatalf("seed %d: corruptions %v", seed, rec.Corruptions)
		}
		if rec.TruncatedTail != nil {
			torn++
		}
		var entries []Entry
		if q := rec.Queues[5]; q != nil {
			entries = q.Entries
		}
		for i, e := range entries {
			m, err := l.ReadMessage(e.Pos)
			if e.ID != uint64(i+1) || err != nil || !sameMsg(m, msgs[i]) {
				t.Fatalf("seed %d: entry %d = %+v (%v): not a clean prefix", seed, i, e, err)
			}
		}
		l.Close()
	}
	if torn == 0 {
		t.Fatal("no crash produced a torn tail")
	}
}

func TestRestartsDoNotPileUpSegments(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	appendWait(t, l, testMsg("keep", 1)) // live: its segment stays
	l.Close()
	for i := 0; i < 5; i++ {
		l, rec := openMem(t, fsys, nil)
		if len(rec.Queues[1].Entries) != 1 {
			t.Fatalf("restart %d: %+v", i, rec.Queues)
		}
		if s := l.Stats(); s.Segments != 2 {
			t.Fatalf("restart %d: %d segments", i, s.Segments)
		}
		l.Close()
	}
	l, _ = openMem(t, fsys, nil)
	defer l.Close()
	m := testMsg("next", 1)
	appendWait(t, l, m)
	if m.ID != 2 {
		t.Fatalf("id %d after restarts", m.ID)
	}
}

func TestWriteFailureFailsPendingAndRecovers(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	good := testMsg("good", 1)
	appendWait(t, l, good)
	boom := errors.New("EIO")
	fsys.FailWrites(boom)
	var errs [20]chan error
	for i := range errs {
		errs[i] = make(chan error, 1)
		ch := errs[i]
		if _, err := l.Append(testMsg(fmt.Sprint(i), 1), func(err error) { ch <- err }); err != nil {
			// The log may already have failed from an earlier batch.
			if !errors.Is(err, ErrFailed) {
				t.Fatal(err)
			}
			ch <- err
		}
	}
	for i, ch := range errs {
		if err := <-ch; !errors.Is(err, boom) {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := l.Sync(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync: %v", err)
	}
	l.Close()
	fsys.FailWrites(nil)
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if e := rec.Queues[1].Entries; len(e) != 1 || e[0].ID != good.ID {
		t.Fatalf("recovered %+v", e)
	}
}

func TestReadMessageLargeBodyAndBadPosition(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), nil)
	defer l.Close()
	m := testMsg("big", 1)
	m.Body = bytes.Repeat([]byte{7}, 300<<10)
	p := appendWait(t, l, m)
	got, err := l.ReadMessage(p)
	if err != nil || !sameMsg(got, m) {
		t.Fatalf("large read: %v", err)
	}
	if _, err := l.ReadMessage(Position{Segment: p.Segment, Offset: p.Offset + 1}); err == nil {
		t.Fatal("read at a wrong offset succeeded")
	}
	if _, err := l.ReadMessage(Position{Segment: p.Segment + 5, Offset: 32}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read beyond the tail: %v", err)
	}
}

// appendAsync appends n messages without waiting and then waits for all of
// their callbacks.
func appendAsync(t *testing.T, l *Log, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		if _, err := l.Append(testMsg(fmt.Sprint("a", i), 1), func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestSyncAlwaysFsyncsEveryRecord(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), func(o *Options) { o.Sync = SyncAlways })
	before := l.Stats()
	appendAsync(t, l, 20)
	s := l.Stats()
	if got := s.Fsyncs - before.Fsyncs; got < 20 {
		t.Fatalf("%d fsyncs for 20 records under SyncAlways", got)
	}
}

func TestBatchDelayGathersAppends(t *testing.T) {
	l, _ := openMem(t, NewMemFS(), func(o *Options) { o.BatchDelay = 200 * time.Millisecond })
	before := l.Stats()
	appendAsync(t, l, 50)
	s := l.Stats()
	// The first append opens a batch that stays open 200 ms; the other 49
	// are queued well within that and join it.
	if got := s.Batches - before.Batches; got > 2 {
		t.Fatalf("%d batches for 50 quick appends with a 200 ms batch delay", got)
	}
}

// TestMappedRecoveryMatchesRead recovers the same damaged log twice: from
// the OS's files, which recovery maps, and from a MemFS, which it reads. A
// corrupt record mid-log, acks and a torn tail must come out the same, and
// Open must then cut the torn tail of the mapped files.
func TestMappedRecoveryMatchesRead(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = 1 << 10 })
	var poss []Position
	for i := range 60 {
		m := testMsg(fmt.Sprint(i), uint64(10+i%4))
		m.Meta = Meta{Timestamp: int64(i), Priority: uint8(i % 3)}
		poss = append(poss, appendWait(t, l, m))
	}
	l.Ack(11, []Ref{{ID: 2, Segment: poss[1].Segment}, {ID: 6, Segment: poss[5].Segment}}, nil)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	segs, _ := listSegments(fsys, "/data")
	first, _ := fsys.ReadFile(segs[0].Path)
	first[poss[1].Offset+30] ^= 0xff
	fsys.WriteFile(segs[0].Path, first)
	last := segs[len(segs)-1]
	data, _ := fsys.ReadFile(last.Path)
	fsys.WriteFile(last.Path, append(data, AppendMessageRecord(nil, testMsg("torn", 7))[:30]...))

	dir := t.TempDir()
	names, _ := fsys.ReadDir("/data")
	for _, name := range names {
		b, _ := fsys.ReadFile("/data/" + name)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recover := func(fs FS, d string) *Recovered {
		r, err := OpenReaderFS(fs, d)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Recover()
		if err != nil {
			t.Fatal(err)
		}
		// File names differ by directory only.
		for _, c := range rec.Corruptions {
			c.File = filepath.Base(c.File)
		}
		if rec.TruncatedTail != nil {
			rec.TruncatedTail.File = filepath.Base(rec.TruncatedTail.File)
		}
		rec.Duration = 0
		return rec
	}
	read, mapped := recover(fsys, "/data"), recover(OSFS{}, dir)
	if read.TruncatedTail == nil || len(read.Corruptions) != 1 {
		t.Fatalf("the read log has tail %+v and corruptions %v, want one of each", read.TruncatedTail, read.Corruptions)
	}
	if !reflect.DeepEqual(read, mapped) {
		t.Fatalf("mapped recovery differs from read:\nread   %+v\nmapped %+v", read, mapped)
	}
	l, rec, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rec.TruncatedTail == nil {
		t.Fatal("Open found no torn tail in the mapped files")
	}
	if st, _ := os.Stat(filepath.Join(dir, filepath.Base(last.Path))); st.Size() != int64(len(data)) {
		t.Fatalf("torn tail not cut: %d bytes, want %d", st.Size(), len(data))
	}
}
