package raftlog

import (
	"math/bits"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Storage is one group's raft.Storage: its entries, hard state and latest
// snapshot, in memory, as its Log last made them durable. Its methods are
// safe for concurrent use (mu); only the Log changes it, after the fsync
// that covers the change.
type Storage struct {
	id uint64

	mu   sync.Mutex
	hs   *pb.HardState // (mu) nil until one is saved
	snap *pb.Snapshot  // (mu) never nil
	// ents[0] is a dummy at the compaction point (the snapshot's index and
	// term, or 0); ents[i] has index ents[0].Index+i. Entries are never
	// changed once stored: slices handed out stay valid.
	ents []*pb.Entry // (mu)
	// gap, during replay only, is the index of a dummy whose term is not
	// known because the segments before it were removed; a later compact
	// mark or snapshot at or past it fills it in.
	gap uint64 // (mu)
}

var _ raft.Storage = (*Storage)(nil)

func newStorage(id uint64) *Storage {
	return &Storage{id: id, snap: pb.EnsureSnapshot(nil), ents: []*pb.Entry{dummy(0, 0)}}
}

func dummy(index, term uint64) *pb.Entry { return &pb.Entry{Index: new(index), Term: new(term)} }

// ID returns the group's id.
func (s *Storage) ID() uint64 { return s.id }

// InitialState implements raft.Storage: the saved hard state (nil if
// none) and the latest snapshot's ConfState.
func (s *Storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hs *pb.HardState
	if s.hs != nil {
		hs = proto.Clone(s.hs).(*pb.HardState)
	}
	cs := &pb.ConfState{}
	if c := s.snap.GetMetadata().GetConfState(); c != nil {
		cs = proto.Clone(c).(*pb.ConfState)
	}
	return hs, pb.EnsureConfState(cs), nil
}

// Entries implements raft.Storage: entries [lo, hi), at most maxSize bytes
// (proto size) but at least one.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset := s.ents[0].GetIndex()
	if lo <= offset {
		return nil, raft.ErrCompacted
	}
	if hi > s.lastIndex()+1 || len(s.ents) == 1 || lo >= hi {
		return nil, raft.ErrUnavailable
	}
	ents := s.ents[lo-offset : hi-offset]
	size := entrySize(ents[0])
	for n := 1; n < len(ents); n++ {
		if size += entrySize(ents[n]); size > maxSize {
			ents = ents[:n]
			break
		}
	}
	// The full slice expression makes a caller's append copy.
	return ents[:len(ents):len(ents)], nil
}

// entrySize is e's size in protobuf, as proto.Size gives it, without
// its reflection walk (raft's entries have no unknown fields): the four
// fields' one-byte tags, their varints, and the data's length and bytes.
func entrySize(e *pb.Entry) uint64 {
	var n int
	if e.Type != nil {
		n += 1 + uvarintLen(uint64(int64(*e.Type)))
	}
	if e.Term != nil {
		n += 1 + uvarintLen(*e.Term)
	}
	if e.Index != nil {
		n += 1 + uvarintLen(*e.Index)
	}
	if e.Data != nil {
		n += 1 + uvarintLen(uint64(len(e.Data))) + len(e.Data)
	}
	return uint64(n)
}

// uvarintLen is the length of v as a varint.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// Term implements raft.Storage.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset := s.ents[0].GetIndex()
	if i < offset {
		return 0, raft.ErrCompacted
	}
	if i-offset >= uint64(len(s.ents)) {
		return 0, raft.ErrUnavailable
	}
	return s.ents[i-offset].GetTerm(), nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastIndex(), nil
}

func (s *Storage) lastIndex() uint64 { return s.ents[0].GetIndex() + uint64(len(s.ents)) - 1 }

// FirstIndex implements raft.Storage.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ents[0].GetIndex() + 1, nil
}

// Snapshot implements raft.Storage: the latest snapshot, a copy sharing
// its data (see shareData).
func (s *Storage) Snapshot() (*pb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return shareData(s.snap), nil
}

// applyEntries stores ents (consecutive), dropping what is compacted and
// truncating what they overwrite. Validated by the caller, except during
// replay, where an append past the end leaves a gap (see gap). Caller
// holds mu.
func (s *Storage) applyEntries(ents []*pb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := s.ents[0].GetIndex() + 1
	if ents[0].GetIndex()+uint64(len(ents))-1 < first {
		return
	}
	if first > ents[0].GetIndex() {
		ents = ents[first-ents[0].GetIndex():]
	}
	off := ents[0].GetIndex() - s.ents[0].GetIndex()
	switch {
	case uint64(len(s.ents)) > off:
		// The full slice expression keeps entries handed out intact.
		s.ents = append(s.ents[:off:off], ents...)
	case uint64(len(s.ents)) == off:
		s.ents = append(s.ents, ents...)
	default:
		s.gap = ents[0].GetIndex() - 1
		s.ents = append([]*pb.Entry{dummy(s.gap, 0)}, ents...)
	}
}

// applyCompact drops the entries up to index, whose term is term. Caller
// holds mu.
func (s *Storage) applyCompact(index, term uint64) {
	offset := s.ents[0].GetIndex()
	if s.gap != 0 && index >= s.gap {
		s.gap = 0
		if index == offset {
			s.ents[0] = dummy(index, term)
			return
		}
	}
	if index <= offset {
		return
	}
	if index > s.lastIndex() {
		s.ents = []*pb.Entry{dummy(index, term)}
		return
	}
	i := index - offset
	// A new slice: the old one may still be referenced from outside.
	ents := make([]*pb.Entry, 1, uint64(len(s.ents))-i)
	ents[0] = dummy(index, term)
	s.ents = append(ents, s.ents[i+1:]...)
}

// applySnapshot makes snap the latest snapshot; with replace (a snapshot
// from the leader) it also replaces the log. Caller holds mu.
func (s *Storage) applySnapshot(snap *pb.Snapshot, replace bool) {
	s.snap = snap
	if !replace {
		return
	}
	idx := snap.GetMetadata().GetIndex()
	s.ents = []*pb.Entry{dummy(idx, snap.GetMetadata().GetTerm())}
	if s.gap != 0 && idx >= s.gap {
		s.gap = 0
	}
}
