package wal

import (
	"bytes"
	"testing"
)

// TestSegments checks the per-segment view the management UI's storage
// page shows: sizes, live references by queue, the active segment, and the
// oldest segment's holders after acks free the rest.
func TestSegments(t *testing.T) {
	l, _, err := Open(Options{Dir: t.TempDir(), SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	body := bytes.Repeat([]byte("b"), 500)
	var refs = map[uint64][]Ref{}
	appendTo := func(qs ...uint64) {
		m := &Message{Queues: qs, Body: body}
		pos, err := l.Append(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			refs[q] = append(refs[q], Ref{ID: m.ID, Segment: pos.Segment})
		}
	}
	appendTo(1, 2) // both in the first segment
	appendTo(1)
	for range 20 {
		appendTo(3) // rolls on to later segments
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want 3 or more: %+v", len(segs), segs)
	}
	first := segs[0]
	if first.Queues[1] != 2 || first.Queues[2] != 1 || first.Active || first.Corrupt || first.Bytes <= 0 {
		t.Errorf("first segment %+v", first)
	}
	var live int64
	for i, s := range segs {
		live += s.Live
		if s.Active != (i == len(segs)-1) {
			t.Errorf("segment %d active %v", s.Number, s.Active)
		}
		if i > 0 && s.Number <= segs[i-1].Number {
			t.Errorf("segments out of order: %+v", segs)
		}
	}
	if live != 23 {
		t.Errorf("live references %d, want 23", live)
	}
	// Queue 3 acks everything: the first segment stays pinned by 1 and 2
	// alone, and the later ones hold nothing.
	l.Ack(3, refs[3], nil)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs = l.Segments()
	if segs[0].Live != 3 || len(segs[0].Queues) != 2 {
		t.Errorf("after the acks, first segment %+v", segs[0])
	}
	for _, s := range segs[1:] {
		if s.Live != 0 || len(s.Queues) != 0 {
			t.Errorf("after the acks, segment %+v", s)
		}
	}
}
