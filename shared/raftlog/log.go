// Package raftlog is the Raft log of a node that runs many Raft groups
// (go.etcd.io/raft/v3): every group's entries, hard state, snapshot and
// compaction marks go to one wal.RecordLog, so that one Ready round of all
// groups is one write and one fdatasync (Commit of a Batch). Each group's
// raft.Storage (Storage) is kept in memory and rebuilt from the log by
// Open. The record formats are in package wal's documentation.
//
// # Segments and checkpoints
//
// Every segment the Log starts (at Open, and when the active one passes
// SegmentSize) begins with a checkpoint: for every group its latest
// snapshot, its compaction mark and its hard state. So a hard state or
// snapshot record is always superseded by the next segment's checkpoint,
// and a segment other than the active one is no longer needed once every
// group's entries in it are compacted. Segments are removed oldest first,
// after the Compact or snapshot that freed them is durable. A checkpoint
// carries every group's snapshot data, so it suits snapshots of a few
// kilobytes; big state machines should store their data beside the log
// and snapshot a reference to it.
//
// Replay tolerates the one hole this leaves: a group whose entries resume
// after a removed segment's have a gap that a later compaction mark in the
// log always covers (the mark that freed the segment was written after the
// checkpoint). A gap still open at the end of replay fails Open.
package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/amqp-go/amqp-go/shared/wal"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Options configure Open.
type Options struct {
	Dir string
	// SegmentSize: a new segment, with a checkpoint, once the active one
	// passes it (default 64 MiB).
	SegmentSize int64
	// NoSync skips fdatasync (tests only).
	NoSync bool
	// FS is the file system; nil means the OS file system.
	FS wal.FS
}

// Log is one node's Raft log for all its groups.
//
// A Log has one owner goroutine (the node's driver loop), which alone
// calls its methods; the Storage values it hands out may be read from any
// goroutine.
type Log struct {
	w      *wal.RecordLog
	groups map[uint64]*Storage
	// segMax is, per segment, the highest entry index each group wrote to
	// it: what must be compacted before the segment can go.
	segMax map[uint64]map[uint64]uint64
	buf    []byte
}

// Open opens (creating if needed) the log in opts.Dir and rebuilds every
// group's Storage. A torn tail is cut and returned; corruption anywhere
// else fails Open (a *wal.CorruptionError), since a Raft log with a hole
// cannot be trusted. Open starts a fresh segment with a checkpoint and
// removes the segments that no longer hold anything needed.
func Open(opts Options) (*Log, *wal.TornTail, error) {
	l := &Log{groups: map[uint64]*Storage{}, segMax: map[uint64]map[uint64]uint64{}}
	w, torn, err := wal.OpenRecordLog(wal.RecordLogOptions{Dir: opts.Dir, SegmentSize: opts.SegmentSize, NoSync: opts.NoSync, FS: opts.FS}, l.replay)
	if err != nil {
		return nil, nil, err
	}
	l.w = w
	for id, s := range l.groups {
		if s.gap != 0 {
			w.Close()
			return nil, nil, fmt.Errorf("raftlog: group %d: entries after index %d are missing their predecessors", id, s.gap)
		}
	}
	if err := l.roll(); err != nil {
		w.Close()
		return nil, nil, err
	}
	return l, torn, nil
}

// Close closes the log. Everything committed is already durable.
func (l *Log) Close() error { return l.w.Close() }

// Group returns group id's Storage, creating an empty one if the log has
// none.
func (l *Log) Group(id uint64) *Storage {
	s := l.groups[id]
	if s == nil {
		s = newStorage(id)
		l.groups[id] = s
	}
	return s
}

// Groups returns the ids of the groups the log holds, ascending.
func (l *Log) Groups() []uint64 {
	ids := make([]uint64, 0, len(l.groups))
	for id := range l.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Segments returns the numbers of the log's segment files, ascending.
func (l *Log) Segments() []uint64 { return l.w.Segments() }

// Batch collects the changes of one Ready round of any number of groups
// for Commit. Add a group's snapshot before its entries, as Ready orders
// them. The zero Batch is empty; a Batch holds references to what it is
// given until Reset.
type Batch struct {
	ops []op
}

type opKind uint8

const (
	opEntries opKind = iota + 1
	opHardState
	opSnapshot
)

type op struct {
	kind  opKind
	group uint64
	ents  []*pb.Entry
	hs    *pb.HardState
	snap  *pb.Snapshot
}

// Append adds entries of group (consecutive indexes) to the batch.
func (b *Batch) Append(group uint64, ents []*pb.Entry) {
	if len(ents) > 0 {
		b.ops = append(b.ops, op{kind: opEntries, group: group, ents: ents})
	}
}

// SetHardState adds group's hard state to the batch.
func (b *Batch) SetHardState(group uint64, hs *pb.HardState) {
	b.ops = append(b.ops, op{kind: opHardState, group: group, hs: hs})
}

// ApplySnapshot adds a snapshot received from the leader: it replaces
// group's log.
func (b *Batch) ApplySnapshot(group uint64, snap *pb.Snapshot) {
	b.ops = append(b.ops, op{kind: opSnapshot, group: group, snap: snap})
}

// Empty reports whether the batch holds nothing.
func (b *Batch) Empty() bool { return len(b.ops) == 0 }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
}

// view is what Commit checks a batch against: a group's log bounds as the
// ops before have left them.
type view struct{ offset, last, snap uint64 }

// ErrNotContiguous: entries would leave a hole in a group's log, or are
// not consecutive.
var ErrNotContiguous = errors.New("raftlog: entries are not contiguous with the log")

// Commit makes the batch durable with one write and one fdatasync (none
// when it holds only commit index changes: see raft.MustSync), then
// applies it to the groups' Storage. It checks the whole batch first and
// writes nothing if any op is invalid: entries that would leave a hole
// (ErrNotContiguous) or a snapshot not newer than the group's
// (raft.ErrSnapOutOfDate). A failed write or sync fails the log for good.
func (l *Log) Commit(b *Batch) error {
	if b.Empty() {
		return nil
	}
	views := map[uint64]*view{}
	for i := range b.ops {
		o := &b.ops[i]
		v := views[o.group]
		if v == nil {
			s := l.Group(o.group)
			s.mu.Lock()
			v = &view{offset: s.ents[0].GetIndex(), last: s.lastIndex(), snap: s.snap.GetMetadata().GetIndex()}
			s.mu.Unlock()
			views[o.group] = v
		}
		switch o.kind {
		case opEntries:
			first := o.ents[0].GetIndex()
			for j, e := range o.ents {
				if e.GetIndex() != first+uint64(j) {
					return fmt.Errorf("%w: group %d: index %d after %d", ErrNotContiguous, o.group, e.GetIndex(), first+uint64(j)-1)
				}
				if len(e.GetData()) > maxEntryBytes {
					return fmt.Errorf("raftlog: group %d: entry %d of %d bytes: %w", o.group, e.GetIndex(), len(e.GetData()), wal.ErrTooLarge)
				}
			}
			if first > v.last+1 {
				return fmt.Errorf("%w: group %d: append at %d, last index %d", ErrNotContiguous, o.group, first, v.last)
			}
			if last := first + uint64(len(o.ents)) - 1; last > v.offset {
				v.last = last
			}
		case opSnapshot:
			idx := o.snap.GetMetadata().GetIndex()
			if (v.snap != 0 && idx <= v.snap) || idx < v.offset {
				return fmt.Errorf("group %d: snapshot at %d, have %d: %w", o.group, idx, max(v.snap, v.offset), raft.ErrSnapOutOfDate)
			}
			v.offset, v.last, v.snap = idx, idx, idx
		}
	}
	l.buf = l.buf[:0]
	sync := false
	for i := range b.ops {
		o := &b.ops[i]
		switch o.kind {
		case opEntries, opSnapshot:
			sync = true
		case opHardState:
			s := l.Group(o.group)
			s.mu.Lock()
			prev := s.hs
			s.mu.Unlock()
			sync = sync || prev == nil || raft.MustSync(o.hs, prev, 0)
		}
		switch o.kind {
		case opEntries:
			l.buf = appendEntries(l.buf, o.group, views[o.group].offset, o.ents)
		case opHardState:
			l.buf = appendHardState(l.buf, o.group, o.hs)
		case opSnapshot:
			l.buf = appendSnapshot(l.buf, o.group, o.snap, true)
		}
	}
	if l.w.ShouldRoll() {
		if err := l.roll(); err != nil {
			return err
		}
	}
	// A batch of commit indexes alone is not synced (raft.MustSync):
	// Raft needs entries, terms and votes durable before it sends, not
	// the commit index, which a restart learns again from the leader.
	write := l.w.WriteNoSync
	if sync {
		write = l.w.Write
	}
	seg, err := write(l.buf)
	l.trimBuf()
	if err != nil {
		return err
	}
	snapped := false
	for i := range b.ops {
		o := &b.ops[i]
		s := l.groups[o.group]
		s.mu.Lock()
		switch o.kind {
		case opEntries:
			s.applyEntries(o.ents)
			l.noteEntries(seg, o.group, o.ents[len(o.ents)-1].GetIndex())
		case opHardState:
			s.hs = proto.Clone(o.hs).(*pb.HardState)
		case opSnapshot:
			s.applySnapshot(pb.EnsureSnapshot(shareData(o.snap)), true)
			snapped = true
		}
		s.mu.Unlock()
	}
	if snapped {
		return l.reclaim()
	}
	return nil
}

func (l *Log) noteEntries(seg, group, last uint64) {
	m := l.segMax[seg]
	if m == nil {
		m = map[uint64]uint64{}
		l.segMax[seg] = m
	}
	m[group] = max(m[group], last)
}

// CreateSnapshot records a snapshot of group's state machine at index i
// (applied by the caller) with cs, the ConfState after i, and data, and
// makes it durable. The log keeps its entries; Compact drops them.
func (l *Log) CreateSnapshot(group, i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error) {
	s := l.Group(group)
	s.mu.Lock()
	snapIdx, offset, last := s.snap.GetMetadata().GetIndex(), s.ents[0].GetIndex(), s.lastIndex()
	var term uint64
	if i >= offset && i <= last {
		term = s.ents[i-offset].GetTerm()
	}
	s.mu.Unlock()
	switch {
	case i <= snapIdx:
		return nil, raft.ErrSnapOutOfDate
	case i < offset:
		return nil, raft.ErrCompacted
	case i > last:
		return nil, fmt.Errorf("raftlog: group %d: snapshot at %d past the last index %d: %w", group, i, last, raft.ErrUnavailable)
	}
	if cs == nil {
		cs = &pb.ConfState{}
	}
	snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(term), ConfState: proto.Clone(cs).(*pb.ConfState)}}
	if err := l.write(appendSnapshot(l.buf[:0], group, snap, false)); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.applySnapshot(snap, false)
	s.mu.Unlock()
	return shareData(snap), nil
}

// shareData copies snap but for its data, which it shares: a quorum
// queue's snapshot holds every body it keeps, and nothing writes to a
// snapshot's data once made, so a deep copy only cost its size again.
func shareData(snap *pb.Snapshot) *pb.Snapshot {
	if snap == nil {
		return nil
	}
	out := &pb.Snapshot{Data: snap.Data}
	if snap.Metadata != nil {
		out.Metadata = proto.Clone(snap.Metadata).(*pb.SnapshotMetadata)
	}
	return out
}

// keptBufMax bounds the record buffer kept between writes: one that a
// large snapshot grew is let go rather than held for ever.
const keptBufMax = 8 << 20

// trimBuf lets go of a record buffer grown past keptBufMax.
func (l *Log) trimBuf() {
	if cap(l.buf) > keptBufMax {
		l.buf = nil
	}
}

// Compact durably drops group's entries up to and including i (which the
// caller has applied and, normally, snapshotted), then removes the
// segments that no longer hold anything needed.
func (l *Log) Compact(group, i uint64) error {
	s := l.Group(group)
	s.mu.Lock()
	offset, last := s.ents[0].GetIndex(), s.lastIndex()
	var term uint64
	if i > offset && i <= last {
		term = s.ents[i-offset].GetTerm()
	}
	s.mu.Unlock()
	if i <= offset {
		return raft.ErrCompacted
	}
	if i > last {
		return fmt.Errorf("raftlog: group %d: compact at %d past the last index %d: %w", group, i, last, raft.ErrUnavailable)
	}
	if err := l.write(appendCompact(l.buf[:0], group, i, term)); err != nil {
		return err
	}
	s.mu.Lock()
	s.applyCompact(i, term)
	s.mu.Unlock()
	return l.reclaim()
}

// Drop forgets group id (its quorum queue was deleted) and makes that
// durable: its entries, hard state and snapshot are no longer kept in
// memory or written into checkpoints, and the segments that held only
// what it and compacted groups had are removed. The id must not be used
// again (the broker never reuses one), and the Storage the log gave for
// it must not be used after. Dropping a group the log does not hold
// does nothing.
func (l *Log) Drop(id uint64) error {
	if l.groups[id] == nil {
		return nil
	}
	if err := l.write(appendDrop(l.buf[:0], id)); err != nil {
		return err
	}
	l.forget(id)
	return l.reclaim()
}

// forget removes group id from the log's memory.
func (l *Log) forget(id uint64) {
	delete(l.groups, id)
	for _, m := range l.segMax {
		delete(m, id)
	}
}

// write writes records to the log, rolling first if it is time.
func (l *Log) write(records []byte) error {
	l.buf = records
	if l.w.ShouldRoll() {
		if err := l.roll(); err != nil {
			return err
		}
	}
	_, err := l.w.Write(records)
	l.trimBuf()
	return err
}

// roll starts a new segment with a checkpoint of every group, which
// supersedes the hard states and snapshots of the older segments, and
// removes those that held nothing else still needed.
func (l *Log) roll() error {
	var cp []byte
	for _, id := range l.Groups() {
		s := l.groups[id]
		s.mu.Lock()
		if md := s.snap.GetMetadata(); md.GetIndex() > 0 || len(s.snap.GetData()) > 0 || !isEmptyConfState(md.GetConfState()) {
			cp = appendSnapshot(cp, id, s.snap, false)
		}
		if off := s.ents[0]; off.GetIndex() > 0 {
			cp = appendCompact(cp, id, off.GetIndex(), off.GetTerm())
		}
		if s.hs != nil {
			cp = appendHardState(cp, id, s.hs)
		}
		s.mu.Unlock()
	}
	if err := l.w.Roll(cp); err != nil {
		return err
	}
	return l.reclaim()
}

func isEmptyConfState(cs *pb.ConfState) bool {
	return len(cs.GetVoters())+len(cs.GetLearners())+len(cs.GetVotersOutgoing())+len(cs.GetLearnersNext()) == 0 && !cs.GetAutoLeave()
}

// reclaim removes the oldest segments while every group's entries in them
// are compacted. The active segment stays.
func (l *Log) reclaim() error {
	var del []uint64
	active := l.w.Active()
	for _, seg := range l.w.Segments() {
		if seg == active || !l.freed(seg) {
			break
		}
		del = append(del, seg)
	}
	if err := l.w.Remove(del); err != nil {
		return err
	}
	for _, seg := range del {
		delete(l.segMax, seg)
	}
	return nil
}

func (l *Log) freed(seg uint64) bool {
	for g, maxIdx := range l.segMax[seg] {
		s := l.groups[g]
		if s == nil {
			continue // dropped
		}
		s.mu.Lock()
		offset := s.ents[0].GetIndex()
		s.mu.Unlock()
		if maxIdx > offset {
			return false
		}
	}
	return true
}

// replay applies one record found by Open.
func (l *Log) replay(r *wal.LogRecord) error {
	d := wal.NewPayloadReader(r.Payload)
	group := d.Uvarint()
	if d.Failed() {
		return l.malformed(r)
	}
	if r.Type == wal.RecordRaftDrop {
		if len(d.Rest()) != 0 {
			return l.malformed(r)
		}
		l.forget(group)
		return nil
	}
	s := l.Group(group)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Type {
	case wal.RecordRaftEntries:
		first, n := d.Uvarint(), d.Uvarint()
		if d.Failed() || first == 0 || n == 0 || n > uint64(len(d.Rest())) || first+n-1 < first {
			return l.malformed(r)
		}
		ents := make([]*pb.Entry, n)
		for i := range ents {
			term, typ, data := d.Uvarint(), d.Uvarint(), d.Bytes()
			e := &pb.Entry{Index: new(first + uint64(i)), Term: new(term)}
			if typ != 0 {
				e.Type = pb.EntryType(typ).Enum()
			}
			if len(data) > 0 {
				e.Data = slices.Clone(data)
			}
			ents[i] = e
		}
		if d.Failed() || len(d.Rest()) != 0 {
			return l.malformed(r)
		}
		s.applyEntries(ents)
		l.noteEntries(r.Segment, group, first+n-1)
	case wal.RecordRaftHardState:
		term, vote, commit := d.Uvarint(), d.Uvarint(), d.Uvarint()
		if d.Failed() || len(d.Rest()) != 0 {
			return l.malformed(r)
		}
		s.hs = &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
	case wal.RecordRaftSnapshot:
		flags := d.Uvarint()
		snap := &pb.Snapshot{}
		if d.Failed() || proto.Unmarshal(d.Rest(), snap) != nil {
			return l.malformed(r)
		}
		snap = pb.EnsureSnapshot(snap)
		replace := flags&snapshotReplaces != 0
		if replace || snap.GetMetadata().GetIndex() >= s.snap.GetMetadata().GetIndex() {
			s.applySnapshot(snap, replace)
		}
	case wal.RecordRaftCompact:
		index, term := d.Uvarint(), d.Uvarint()
		if d.Failed() || len(d.Rest()) != 0 {
			return l.malformed(r)
		}
		s.applyCompact(index, term)
	default:
		return l.malformed(r)
	}
	return nil
}

func (l *Log) malformed(r *wal.LogRecord) error {
	return &wal.CorruptionError{Segment: r.Segment, File: wal.SegmentFileName(r.Segment), Offset: r.Offset, Reason: fmt.Sprintf("malformed %v payload", r.Type)}
}

// snapshotReplaces is the raft-snapshot flag of a snapshot that replaced
// the group's log (one from the leader); without it the snapshot was
// taken locally and the log kept.
const snapshotReplaces = 1

func appendEntries(buf []byte, group, offset uint64, ents []*pb.Entry) []byte {
	if first := ents[0].GetIndex(); first <= offset {
		// Compacted already: never written, never replayed.
		ents = ents[min(offset-first+1, uint64(len(ents))):]
	}
	for len(ents) > 0 {
		// Records of at most entriesRecordBytes (or one entry), so that
		// none exceeds wal.MaxRecordSize.
		n, size := 1, len(ents[0].GetData())
		for n < len(ents) && size+len(ents[n].GetData()) <= entriesRecordBytes {
			size += len(ents[n].GetData())
			n++
		}
		buf = appendEntriesRecord(buf, group, ents[:n])
		ents = ents[n:]
	}
	return buf
}

// entriesRecordBytes is the most entry data one raft-entries record
// carries, unless a single entry is bigger.
const entriesRecordBytes = 16 << 20

// maxEntryBytes is the biggest entry data Commit takes: its record must
// stay within wal.MaxRecordSize.
const maxEntryBytes = wal.MaxRecordSize - 1<<10

func appendEntriesRecord(buf []byte, group uint64, ents []*pb.Entry) []byte {
	buf, start := wal.StartRecord(buf, wal.RecordRaftEntries)
	buf = binary.AppendUvarint(buf, group)
	buf = binary.AppendUvarint(buf, ents[0].GetIndex())
	buf = binary.AppendUvarint(buf, uint64(len(ents)))
	for _, e := range ents {
		buf = binary.AppendUvarint(buf, e.GetTerm())
		buf = binary.AppendUvarint(buf, uint64(e.GetType()))
		buf = binary.AppendUvarint(buf, uint64(len(e.GetData())))
		buf = append(buf, e.GetData()...)
	}
	return wal.EndRecord(buf, start)
}

func appendHardState(buf []byte, group uint64, hs *pb.HardState) []byte {
	buf, start := wal.StartRecord(buf, wal.RecordRaftHardState)
	buf = binary.AppendUvarint(buf, group)
	buf = binary.AppendUvarint(buf, hs.GetTerm())
	buf = binary.AppendUvarint(buf, hs.GetVote())
	buf = binary.AppendUvarint(buf, hs.GetCommit())
	return wal.EndRecord(buf, start)
}

func appendSnapshot(buf []byte, group uint64, snap *pb.Snapshot, replaces bool) []byte {
	buf, start := wal.StartRecord(buf, wal.RecordRaftSnapshot)
	buf = binary.AppendUvarint(buf, group)
	var flags uint64
	if replaces {
		flags |= snapshotReplaces
	}
	buf = binary.AppendUvarint(buf, flags)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, snap)
	if err != nil {
		// Snapshot has no required fields: marshalling cannot fail.
		panic(err)
	}
	return wal.EndRecord(buf, start)
}

func appendDrop(buf []byte, group uint64) []byte {
	buf, start := wal.StartRecord(buf, wal.RecordRaftDrop)
	buf = binary.AppendUvarint(buf, group)
	return wal.EndRecord(buf, start)
}

func appendCompact(buf []byte, group, index, term uint64) []byte {
	buf, start := wal.StartRecord(buf, wal.RecordRaftCompact)
	buf = binary.AppendUvarint(buf, group)
	buf = binary.AppendUvarint(buf, index)
	buf = binary.AppendUvarint(buf, term)
	return wal.EndRecord(buf, start)
}
