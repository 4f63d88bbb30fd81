package wal

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// Bodies of 64 KiB or more are written from the caller's buffer (not
// copied into the batch) between the batch's other bytes: a batch mixing
// small and large messages, acks and a segment roll reads back the same,
// record by record and after a reopen, with every record's CRC checked,
// and the record that is exactly inPlaceMin, one byte under and one over
// are all there. The log's byte counters count the bodies.
func TestLargeBodiesWrittenInPlace(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, func(o *Options) { o.SegmentSize = 1 << 20 })
	sizes := []int{0, 10, inPlaceMin - 1, inPlaceMin, inPlaceMin + 1, 300 << 10, 17, 1 << 20, 5, 2<<20 + 3}
	var msgs []*Message
	var poss []Position
	var wg sync.WaitGroup
	for i, n := range sizes {
		m := testMsg(fmt.Sprint(i), 1)
		m.Body = bytes.Repeat([]byte{byte('a' + i)}, n)
		wg.Add(1)
		pos, err := l.Append(m, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			l.Ack(1, []Ref{{ID: msgs[0].ID, Segment: poss[0].Segment}}, nil)
		}
		msgs, poss = append(msgs, m), append(poss, pos)
	}
	wg.Wait()
	var want int
	for i, p := range poss {
		got, err := l.ReadMessage(p)
		if err != nil || !sameMsg(got, msgs[i]) {
			t.Fatalf("message %d (%d bytes) at %v: %v", i, sizes[i], p, err)
		}
		want += len(msgs[i].Body)
	}
	if b := l.Stats().AppendedBytes; b < uint64(want) {
		t.Errorf("appended bytes %d, want at least the bodies' %d", b, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec := openMem(t, fsys, nil)
	defer l.Close()
	if got := len(rec.Queues[1].Entries); got != len(sizes)-1 {
		t.Fatalf("recovered %d entries, want %d (one acked)", got, len(sizes)-1)
	}
	for _, e := range rec.Queues[1].Entries {
		m, err := l.ReadMessage(e.Pos)
		if err != nil || !sameMsg(m, msgs[e.ID-1]) {
			t.Fatalf("entry %+v after reopen: %v", e, err)
		}
	}
}
