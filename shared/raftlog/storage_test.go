package raftlog

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/amqp-go/amqp-go/shared/wal"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The tables of etcd's MemoryStorage tests (storage_test.go of
// go.etcd.io/raft/v3), run against a group of a Log: ents index(3).terms(3,
// 4, 5) there is a snapshot at 3 (term 3) and entries 4 and 5 here.

type index uint64

func (i index) terms(terms ...uint64) []*pb.Entry {
	ents := make([]*pb.Entry, len(terms))
	for j, t := range terms {
		ents[j] = &pb.Entry{Index: new(uint64(i) + uint64(j)), Term: new(t)}
	}
	return ents
}

func openMem(t *testing.T, fsys wal.FS, segSize int64) *Log {
	t.Helper()
	l, _, err := Open(Options{Dir: "raft", FS: fsys, SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// withEnts returns a Log whose group 1 holds ents (ents[0] the compaction
// point, as in MemoryStorage).
func withEnts(t *testing.T, ents []*pb.Entry) (*Log, *Storage) {
	t.Helper()
	l := openMem(t, wal.NewMemFS(), 0)
	t.Cleanup(func() { l.Close() })
	var b Batch
	b.ApplySnapshot(1, &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(ents[0].GetIndex()), Term: new(ents[0].GetTerm())}})
	b.Append(1, ents[1:])
	if err := l.Commit(&b); err != nil {
		t.Fatal(err)
	}
	return l, l.Group(1)
}

// sameEntries compares by field values: the log keeps values, not which
// optional fields were set.
func sameEntries(a, b []*pb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetIndex() != b[i].GetIndex() || a[i].GetTerm() != b[i].GetTerm() || a[i].GetType() != b[i].GetType() || string(a[i].GetData()) != string(b[i].GetData()) {
			return false
		}
	}
	return true
}

// all returns every entry of s and its compaction point (dummy) first.
func all(t *testing.T, s *Storage) []*pb.Entry {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	term, err := s.Term(first - 1)
	if err != nil {
		t.Fatal(err)
	}
	out := []*pb.Entry{{Index: new(first - 1), Term: new(term)}}
	if last >= first {
		ents, err := s.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ents...)
	}
	return out
}

func TestStorageTerm(t *testing.T) {
	for _, tt := range []struct {
		i     uint64
		werr  error
		wterm uint64
	}{
		{2, raft.ErrCompacted, 0},
		{3, nil, 3},
		{4, nil, 4},
		{5, nil, 5},
		{6, raft.ErrUnavailable, 0},
	} {
		_, s := withEnts(t, index(3).terms(3, 4, 5))
		term, err := s.Term(tt.i)
		if err != tt.werr || term != tt.wterm {
			t.Errorf("Term(%d) = %d, %v; want %d, %v", tt.i, term, err, tt.wterm, tt.werr)
		}
	}
}

func TestStorageEntries(t *testing.T) {
	ents := index(3).terms(3, 4, 5, 6)
	size := func(es ...*pb.Entry) uint64 {
		var n int
		for _, e := range es {
			n += proto.Size(e)
		}
		return uint64(n)
	}
	for _, tt := range []struct {
		lo, hi, maxsize uint64
		werr            error
		wentries        []*pb.Entry
	}{
		{2, 6, math.MaxUint64, raft.ErrCompacted, nil},
		{3, 4, math.MaxUint64, raft.ErrCompacted, nil},
		{4, 5, math.MaxUint64, nil, index(4).terms(4)},
		{4, 6, math.MaxUint64, nil, index(4).terms(4, 5)},
		{4, 7, math.MaxUint64, nil, index(4).terms(4, 5, 6)},
		// Even with maxsize 0 the first entry is returned.
		{4, 7, 0, nil, index(4).terms(4)},
		{4, 7, size(ents[1], ents[2]), nil, index(4).terms(4, 5)},
		{4, 7, size(ents[1], ents[2]) + size(ents[3])/2, nil, index(4).terms(4, 5)},
		{4, 7, size(ents[1], ents[2], ents[3]) - 1, nil, index(4).terms(4, 5)},
		{4, 7, size(ents[1], ents[2], ents[3]), nil, index(4).terms(4, 5, 6)},
		// MemoryStorage panics here.
		{4, 8, math.MaxUint64, raft.ErrUnavailable, nil},
	} {
		_, s := withEnts(t, ents)
		got, err := s.Entries(tt.lo, tt.hi, tt.maxsize)
		if err != tt.werr || !sameEntries(got, tt.wentries) {
			t.Errorf("Entries(%d, %d, %d) = %v, %v; want %v, %v", tt.lo, tt.hi, tt.maxsize, got, err, tt.wentries, tt.werr)
		}
	}
}

func TestStorageLastIndex(t *testing.T) {
	l, s := withEnts(t, index(3).terms(3, 4, 5))
	if last, _ := s.LastIndex(); last != 5 {
		t.Fatalf("LastIndex = %d, want 5", last)
	}
	var b Batch
	b.Append(1, index(6).terms(5))
	if err := l.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastIndex(); last != 6 {
		t.Fatalf("LastIndex = %d, want 6", last)
	}
}

func TestStorageFirstIndex(t *testing.T) {
	l, s := withEnts(t, index(3).terms(3, 4, 5))
	if first, _ := s.FirstIndex(); first != 4 {
		t.Fatalf("FirstIndex = %d, want 4", first)
	}
	if err := l.Compact(1, 4); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 5 {
		t.Fatalf("FirstIndex = %d, want 5", first)
	}
}

func TestStorageCompact(t *testing.T) {
	for _, tt := range []struct {
		i             uint64
		werr          error
		windex, wterm uint64
		wlen          int
	}{
		{2, raft.ErrCompacted, 3, 3, 3},
		{3, raft.ErrCompacted, 3, 3, 3},
		{4, nil, 4, 4, 2},
		{5, nil, 5, 5, 1},
	} {
		l, s := withEnts(t, index(3).terms(3, 4, 5))
		if err := l.Compact(1, tt.i); err != tt.werr {
			t.Errorf("Compact(%d) = %v, want %v", tt.i, err, tt.werr)
		}
		got := all(t, s)
		if got[0].GetIndex() != tt.windex || got[0].GetTerm() != tt.wterm || len(got) != tt.wlen {
			t.Errorf("Compact(%d): log %v, want offset %d term %d and %d entries", tt.i, got, tt.windex, tt.wterm, tt.wlen)
		}
	}
	// Past the last index is an error (MemoryStorage panics).
	l, _ := withEnts(t, index(3).terms(3, 4, 5))
	if err := l.Compact(1, 6); !errors.Is(err, raft.ErrUnavailable) {
		t.Errorf("Compact(6) = %v, want ErrUnavailable", err)
	}
}

func TestStorageCreateSnapshot(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	for _, tt := range []struct {
		i     uint64
		werr  error
		wsnap *pb.Snapshot
	}{
		{4, nil, &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(4)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		{5, nil, &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(5)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		{3, raft.ErrSnapOutOfDate, nil},
	} {
		l, s := withEnts(t, index(3).terms(3, 4, 5))
		snap, err := l.CreateSnapshot(1, tt.i, cs, data)
		if err != tt.werr || (tt.wsnap != nil && !proto.Equal(snap, tt.wsnap)) {
			t.Errorf("CreateSnapshot(%d) = %v, %v; want %v, %v", tt.i, snap, err, tt.wsnap, tt.werr)
		}
		if tt.wsnap != nil {
			if got, _ := s.Snapshot(); !proto.Equal(got, tt.wsnap) {
				t.Errorf("Snapshot() = %v, want %v", got, tt.wsnap)
			}
			// The log keeps its entries.
			if last, _ := s.LastIndex(); last != 5 {
				t.Errorf("LastIndex after CreateSnapshot = %d", last)
			}
		}
	}
}

func TestStorageAppend(t *testing.T) {
	for _, tt := range []struct {
		entries  []*pb.Entry
		werr     error
		wentries []*pb.Entry
	}{
		{index(1).terms(1, 2), nil, index(3).terms(3, 4, 5)},
		{index(3).terms(3, 4, 5), nil, index(3).terms(3, 4, 5)},
		{index(3).terms(3, 6, 6), nil, index(3).terms(3, 6, 6)},
		{index(3).terms(3, 4, 5, 5), nil, index(3).terms(3, 4, 5, 5)},
		// Truncate incoming entries, truncate the existing entries and append.
		{index(2).terms(3, 3, 5), nil, index(3).terms(3, 5)},
		// Truncate the existing entries and append.
		{index(4).terms(5), nil, index(3).terms(3, 5)},
		// Direct append.
		{index(6).terms(5), nil, index(3).terms(3, 4, 5, 5)},
		// A hole (MemoryStorage panics): nothing is written.
		{index(7).terms(5), ErrNotContiguous, index(3).terms(3, 4, 5)},
		{append(index(6).terms(5), index(8).terms(5)...), ErrNotContiguous, index(3).terms(3, 4, 5)},
	} {
		l, s := withEnts(t, index(3).terms(3, 4, 5))
		var b Batch
		b.Append(1, tt.entries)
		if err := l.Commit(&b); !errors.Is(err, tt.werr) {
			t.Errorf("Append(%v) = %v, want %v", tt.entries, err, tt.werr)
		}
		if got := all(t, s); !sameEntries(got, tt.wentries) {
			t.Errorf("Append(%v): log %v, want %v", tt.entries, got, tt.wentries)
		}
	}
}

func TestStorageApplySnapshot(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	snap := func(i uint64) *pb.Snapshot {
		return &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(i), ConfState: cs}}
	}
	for _, tt := range []struct {
		name  string
		snaps []*pb.Snapshot
		werr  error
	}{
		{"normal case", []*pb.Snapshot{snap(4)}, nil},
		{"snapshot out of date", []*pb.Snapshot{snap(4), snap(3)}, raft.ErrSnapOutOfDate},
		{"bootstrap with confState", []*pb.Snapshot{{Data: data, Metadata: &pb.SnapshotMetadata{ConfState: cs}}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := openMem(t, wal.NewMemFS(), 0)
			defer l.Close()
			var err error
			for _, sn := range tt.snaps {
				var b Batch
				b.ApplySnapshot(1, sn)
				err = l.Commit(&b)
			}
			if !errors.Is(err, tt.werr) {
				t.Fatalf("ApplySnapshot: %v, want %v", err, tt.werr)
			}
			_, gotCS, _ := l.Group(1).InitialState()
			if gotCS.Equivalent(cs) != nil {
				t.Fatalf("ConfState %v, want %v", gotCS, cs)
			}
		})
	}
}

// TestEntrySize: entrySize is proto.Size, for every field set or not,
// zero, large or negative.
func TestEntrySize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := []uint64{0, 1, 127, 128, 1 << 35, math.MaxUint64}
	for range 5000 {
		e := &pb.Entry{}
		if r.IntN(2) == 0 {
			e.Term = proto.Uint64(vals[r.IntN(len(vals))])
		}
		if r.IntN(2) == 0 {
			e.Index = proto.Uint64(vals[r.IntN(len(vals))])
		}
		if r.IntN(2) == 0 {
			e.Type = pb.EntryType([]int32{0, 1, 2, -1}[r.IntN(4)]).Enum()
		}
		if r.IntN(2) == 0 {
			e.Data = make([]byte, []int{0, 1, 127, 128, 20000}[r.IntN(5)])
		}
		if got, want := entrySize(e), uint64(proto.Size(e)); got != want {
			t.Fatalf("%v: entrySize %d, proto.Size %d", e, got, want)
		}
	}
}
