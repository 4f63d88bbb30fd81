package raftlog

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/amqp-go/amqp-go/shared/wal"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// model drives a Log and, with the same operations, one raft.MemoryStorage
// per group: the Log must always look like the models, before and after a
// restart.
type model struct {
	t      *testing.T
	rnd    *rand.Rand
	fs     wal.FS
	seg    int64
	l      *Log
	groups map[uint64]*raft.MemoryStorage
	term   map[uint64]uint64
}

func newModel(t *testing.T, seed int64, segSize int64) *model {
	m := &model{t: t, rnd: rand.New(rand.NewSource(seed)), fs: wal.NewMemFS(), seg: segSize,
		groups: map[uint64]*raft.MemoryStorage{}, term: map[uint64]uint64{}}
	m.l = openMem(t, m.fs, segSize)
	t.Cleanup(func() { m.l.Close() })
	return m
}

func (m *model) ms(g uint64) *raft.MemoryStorage {
	if m.groups[g] == nil {
		m.groups[g] = raft.NewMemoryStorage()
	}
	return m.groups[g]
}

func bounds(ms *raft.MemoryStorage) (offset, last, snap uint64) {
	first, _ := ms.FirstIndex()
	last, _ = ms.LastIndex()
	s, _ := ms.Snapshot()
	return first - 1, last, s.GetMetadata().GetIndex()
}

// round commits one batch touching some of groups 1..ngroups, and now and
// then snapshots or compacts a group.
func (m *model) round(ngroups int) {
	m.t.Helper()
	var b Batch
	type change func()
	var apply []change
	for g := uint64(1); g <= uint64(ngroups); g++ {
		if m.rnd.Intn(3) == 0 {
			continue
		}
		ms := m.ms(g)
		offset, last, snapIdx := bounds(ms)
		if m.rnd.Intn(20) == 0 {
			// A snapshot from the leader, ahead of or inside the log.
			idx := max(offset, snapIdx) + 1 + uint64(m.rnd.Intn(int(last-offset)+3))
			m.term[g]++
			snap := &pb.Snapshot{Data: fmt.Appendf(nil, "state of %d at %d", g, idx),
				Metadata: &pb.SnapshotMetadata{Index: new(idx), Term: new(m.term[g]), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
			b.ApplySnapshot(g, snap)
			apply = append(apply, func() { mustOK(m.t, ms.ApplySnapshot(snap)) })
			offset, last = idx, idx
		}
		if m.rnd.Intn(4) != 0 {
			// Entries from somewhere in the log (overwriting a suffix)
			// or right after it.
			from := last + 1
			if last > offset && m.rnd.Intn(5) == 0 {
				from = offset + 1 + uint64(m.rnd.Intn(int(last-offset)))
				m.term[g]++
			}
			n := 1 + m.rnd.Intn(8)
			ents := make([]*pb.Entry, n)
			for i := range ents {
				ents[i] = &pb.Entry{Index: new(from + uint64(i)), Term: new(max(m.term[g], 1)), Data: make([]byte, m.rnd.Intn(200))}
				m.rnd.Read(ents[i].Data)
				if m.rnd.Intn(10) == 0 {
					ents[i].Type = pb.EntryConfChange.Enum()
				}
			}
			b.Append(g, ents)
			apply = append(apply, func() { mustOK(m.t, ms.Append(ents)) })
		}
		if m.rnd.Intn(2) == 0 {
			hs := &pb.HardState{Term: new(m.term[g]), Vote: new(uint64(m.rnd.Intn(4))), Commit: new(uint64(m.rnd.Intn(100)))}
			b.SetHardState(g, hs)
			apply = append(apply, func() { mustOK(m.t, ms.SetHardState(hs)) })
		}
	}
	if err := m.l.Commit(&b); err != nil {
		m.t.Fatal(err)
	}
	for _, f := range apply {
		f()
	}
	for g := uint64(1); g <= uint64(ngroups); g++ {
		ms := m.ms(g)
		offset, last, snapIdx := bounds(ms)
		switch r := m.rnd.Intn(12); {
		case r == 0 && last > max(offset, snapIdx):
			i := max(offset, snapIdx) + 1 + uint64(m.rnd.Intn(int(last-max(offset, snapIdx))))
			cs := &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{uint64(g)}}
			data := fmt.Appendf(nil, "snap %d", i)
			if _, err := m.l.CreateSnapshot(g, i, cs, data); err != nil {
				m.t.Fatal(err)
			}
			_, err := ms.CreateSnapshot(i, cs, data)
			mustOK(m.t, err)
		case r < 4 && last > offset:
			i := offset + 1 + uint64(m.rnd.Intn(int(last-offset)))
			mustOK(m.t, m.l.Compact(g, i))
			mustOK(m.t, ms.Compact(i))
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// check compares every group of the Log with its model.
func (m *model) check(when string) {
	m.t.Helper()
	for g, ms := range m.groups {
		s := m.l.Group(g)
		want, got := all(m.t, s), allMem(m.t, ms)
		if !sameEntries(want, got) {
			m.t.Fatalf("%s: group %d log\n%v\nwant\n%v", when, g, want, got)
		}
		hs, cs, _ := s.InitialState()
		whs, wcs, _ := ms.InitialState()
		if hs.GetTerm() != whs.GetTerm() || hs.GetVote() != whs.GetVote() || hs.GetCommit() != whs.GetCommit() {
			m.t.Fatalf("%s: group %d hard state %v, want %v", when, g, hs, whs)
		}
		if err := cs.Equivalent(wcs); err != nil {
			m.t.Fatalf("%s: group %d conf state: %v", when, g, err)
		}
		snap, _ := s.Snapshot()
		wsnap, _ := ms.Snapshot()
		if snap.GetMetadata().GetIndex() != wsnap.GetMetadata().GetIndex() || snap.GetMetadata().GetTerm() != wsnap.GetMetadata().GetTerm() || string(snap.GetData()) != string(wsnap.GetData()) {
			m.t.Fatalf("%s: group %d snapshot %v, want %v", when, g, snap, wsnap)
		}
	}
}

func allMem(t *testing.T, ms *raft.MemoryStorage) []*pb.Entry {
	t.Helper()
	first, _ := ms.FirstIndex()
	last, _ := ms.LastIndex()
	term, _ := ms.Term(first - 1)
	out := []*pb.Entry{{Index: new(first - 1), Term: new(term)}}
	if last >= first {
		ents, err := ms.Entries(first, last+1, math.MaxUint64)
		mustOK(t, err)
		out = append(out, ents...)
	}
	return out
}

func (m *model) reopen() *wal.TornTail {
	m.t.Helper()
	mustOK(m.t, m.l.Close())
	l, torn, err := Open(Options{Dir: "raft", FS: m.fs, SegmentSize: m.seg})
	if err != nil {
		m.t.Fatal(err)
	}
	m.l = l
	return torn
}

// TestRestartRecovers runs many groups interleaved in one log, with small
// segments (so checkpoints, rolls and removals happen), and compares with
// the models after every restart.
func TestRestartRecovers(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m := newModel(t, seed, 4<<10)
			for i := range 400 {
				m.round(6)
				if i%37 == 0 {
					m.check(fmt.Sprintf("round %d", i))
					if torn := m.reopen(); torn != nil {
						t.Fatalf("clean restart reported a torn tail: %+v", torn)
					}
					m.check(fmt.Sprintf("restart after round %d", i))
				}
			}
			m.reopen()
			m.check("final restart")
		})
	}
}

// TestCompactionRemovesSegments checks that segments go once every group
// is compacted past them, and not while one group still needs them.
func TestCompactionRemovesSegments(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 2<<10)
	next := map[uint64]uint64{1: 1, 2: 1}
	fill := func(groups ...uint64) { fillGroups(t, l, next, 200, groups...) }
	fill(1, 2)
	grown := len(l.Segments())
	if grown < 10 {
		t.Fatalf("only %d segments after 40 KB of entries in 2 KB segments", grown)
	}
	// Group 2 still needs every segment.
	mustOK(t, l.Compact(1, next[1]-1))
	if n := len(l.Segments()); n != grown {
		t.Fatalf("%d segments after compacting group 1 only, had %d", n, grown)
	}
	fill(1) // group 1 goes on alone; group 2 is idle
	mustOK(t, l.Compact(2, next[2]-1))
	// What is left is group 1's entries since its compaction.
	if n := len(l.Segments()); n >= grown {
		t.Fatalf("%d segments after compacting both groups, had %d", n, grown)
	}
	mustOK(t, l.Compact(1, next[1]-1))
	if n := len(l.Segments()); n > 2 {
		t.Fatalf("%d segments after compacting everything, want the active one (and at most one more)", n)
	}
	// The removed segments leave a log that replays to the same state.
	s1, s2 := all(t, l.Group(1)), all(t, l.Group(2))
	mustOK(t, l.Close())
	l = openMem(t, fsys, 2<<10)
	defer l.Close()
	if !sameEntries(all(t, l.Group(1)), s1) || !sameEntries(all(t, l.Group(2)), s2) {
		t.Fatalf("after restart: %v %v, want %v %v", all(t, l.Group(1)), all(t, l.Group(2)), s1, s2)
	}
	// And appends go on from there.
	var b Batch
	b.Append(2, []*pb.Entry{{Index: new(next[2]), Term: new(uint64(1))}})
	mustOK(t, l.Commit(&b))
}

// TestOneSyncPerCommit checks that a batch of many groups costs one
// fdatasync.
func TestOneSyncPerCommit(t *testing.T) {
	syncs := 0
	l := openMem(t, countingFS{wal.NewMemFS(), &syncs}, 0)
	defer l.Close()
	before := syncs
	for round := uint64(1); round <= 10; round++ {
		var b Batch
		for g := uint64(1); g <= 50; g++ {
			b.Append(g, []*pb.Entry{{Index: new(round), Term: new(uint64(1)), Data: []byte("x")}})
			b.SetHardState(g, &pb.HardState{Term: new(uint64(1)), Commit: new(round)})
		}
		mustOK(t, l.Commit(&b))
	}
	if n := syncs - before; n != 10 {
		t.Fatalf("%d fdatasyncs for 10 commits of 50 groups", n)
	}
}

// lastSegment returns the path and content of the log's newest segment.
func lastSegment(t *testing.T, fsys *wal.MemFS, l *Log) (string, []byte) {
	t.Helper()
	segs := l.Segments()
	p := filepath.Join("raft", wal.SegmentFileName(segs[len(segs)-1]))
	b, err := fsys.ReadFile(p)
	mustOK(t, err)
	return p, b
}

// TestTornTailTruncated cuts the last commit in half, as a crash during
// its write would: Open cuts it and the log holds everything before.
func TestTornTailTruncated(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 0)
	var b Batch
	b.Append(1, index(1).terms(1, 1, 1))
	b.SetHardState(1, &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(3))})
	mustOK(t, l.Commit(&b))
	p, good := lastSegment(t, fsys, l)
	b.Reset()
	b.Append(1, index(4).terms(2, 2))
	b.SetHardState(1, &pb.HardState{Term: new(uint64(2)), Commit: new(uint64(5))})
	mustOK(t, l.Commit(&b))
	_, full := lastSegment(t, fsys, l)
	mustOK(t, l.Close())
	fsys.WriteFile(p, full[:len(good)+(len(full)-len(good))/2])

	l, torn, err := Open(Options{Dir: "raft", FS: fsys})
	mustOK(t, err)
	defer l.Close()
	if torn == nil || torn.Offset != int64(len(good)) {
		t.Fatalf("torn tail %+v, want one at %d", torn, len(good))
	}
	s := l.Group(1)
	if got := all(t, s); !sameEntries(got, index(0).terms(0, 1, 1, 1)) {
		t.Fatalf("log %v after the torn tail", got)
	}
	if hs, _, _ := s.InitialState(); hs.GetCommit() != 3 {
		t.Fatalf("hard state %v after the torn tail", hs)
	}
}

// TestCorruptionInTheMiddleFails flips a byte of a record that has valid
// records after it: Open must refuse the log, not skip the damage.
func TestCorruptionInTheMiddleFails(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 0)
	var b Batch
	p, before := lastSegment(t, fsys, l)
	for i := uint64(1); i <= 3; i++ {
		b.Reset()
		b.Append(1, []*pb.Entry{{Index: new(i), Term: new(uint64(1)), Data: []byte("payload")}})
		mustOK(t, l.Commit(&b))
	}
	_, data := lastSegment(t, fsys, l)
	mustOK(t, l.Close())
	data[len(before)+12] ^= 0xff // inside the first commit's record
	fsys.WriteFile(p, data)
	_, _, err := Open(Options{Dir: "raft", FS: fsys})
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) || ce.Offset != int64(len(before)) {
		t.Fatalf("Open = %v, want a corruption at offset %d", err, len(before))
	}
}

// TestMessageLogIsNotARaftLog checks that neither log opens the other's
// directory.
func TestMessageLogIsNotARaftLog(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 0)
	mustOK(t, l.Close())
	if _, _, err := wal.Open(wal.Options{Dir: "raft", FS: fsys}); !errors.Is(err, wal.ErrVersion) {
		t.Fatalf("wal.Open of a raft log: %v, want ErrVersion", err)
	}
	ml, _, err := wal.Open(wal.Options{Dir: "messages", FS: fsys})
	mustOK(t, err)
	mustOK(t, ml.Close())
	if _, _, err := Open(Options{Dir: "messages", FS: fsys}); !errors.Is(err, wal.ErrVersion) {
		t.Fatalf("raftlog.Open of a message log: %v, want ErrVersion", err)
	}
}

// countingFS counts fdatasyncs of segment files.
type countingFS struct {
	wal.FS
	syncs *int
}

type countingFile struct {
	wal.File
	syncs *int
}

func (f countingFile) Sync() error { *f.syncs++; return f.File.Sync() }

func (c countingFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c.syncs}, nil
}

// TestLargeSnapshotNotCopied: a snapshot's data is shared by what the log
// keeps and hands out, not copied each time (a quorum queue's holds every
// body it keeps), and the record buffer that a large one grew is not
// kept after it is written.
func TestLargeSnapshotNotCopied(t *testing.T) {
	l := openMem(t, wal.NewMemFS(), 64<<20)
	var b Batch
	b.Append(1, []*pb.Entry{{Index: new(uint64(1)), Term: new(uint64(1)), Data: []byte("x")}})
	mustOK(t, l.Commit(&b))
	data := make([]byte, 16<<20)
	made, err := l.CreateSnapshot(1, 1, &pb.ConfState{Voters: []uint64{1}}, data)
	mustOK(t, err)
	got, err := l.Group(1).Snapshot()
	mustOK(t, err)
	if &made.Data[0] != &data[0] || &got.Data[0] != &data[0] {
		t.Error("the snapshot's data was copied")
	}
	if c := cap(l.buf); c > keptBufMax {
		t.Errorf("the log keeps a record buffer of %d bytes after a 16 MiB snapshot", c)
	}
	// A copy all the same: its metadata is the caller's to change.
	got.Metadata.Index = new(uint64(99))
	if again, _ := l.Group(1).Snapshot(); again.GetMetadata().GetIndex() != 1 {
		t.Errorf("changing a returned snapshot's metadata changed the stored one: %v", again.GetMetadata())
	}
}

// TestDropGroup: a dropped group (its quorum queue deleted) is gone from
// memory, from later checkpoints and, after a restart, from the log; the
// segments that only it still needed are removed; the other group is
// untouched, and dropping again or an unknown group does nothing.
func TestDropGroup(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 2<<10)
	next := map[uint64]uint64{1: 1, 2: 1}
	fill := func(groups ...uint64) { fillGroups(t, l, next, 100, groups...) }
	fill(1, 2)
	_, err := l.CreateSnapshot(1, next[1]-1, &pb.ConfState{Voters: []uint64{1}}, make([]byte, 1000))
	mustOK(t, err)
	mustOK(t, l.Compact(2, next[2]-1))
	grown := len(l.Segments())
	// Group 1 alone holds the old segments back.
	fill(2)
	mustOK(t, l.Compact(2, next[2]-1))
	if n := len(l.Segments()); n < grown {
		t.Fatalf("%d segments, had %d: group 1's were removed before its drop", n, grown)
	}
	mustOK(t, l.Drop(1))
	if slices.Contains(l.Groups(), 1) {
		t.Fatal("group 1 still in the log's groups")
	}
	if n := len(l.Segments()); n > 2 {
		t.Fatalf("%d segments after the drop, want the active one (and at most one more)", n)
	}
	mustOK(t, l.Drop(1))
	mustOK(t, l.Drop(99))
	fill(2) // rolls: the checkpoints have no group 1
	s2 := all(t, l.Group(2))
	mustOK(t, l.Close())
	l = openMem(t, fsys, 2<<10)
	defer l.Close()
	if slices.Contains(l.Groups(), 1) {
		t.Fatalf("group 1 back after a restart: groups %v", l.Groups())
	}
	if !sameEntries(all(t, l.Group(2)), s2) {
		t.Fatalf("group 2 after restart: %v, want %v", all(t, l.Group(2)), s2)
	}
}

// TestDropGroupReplayed: a drop written after the group's records, all in
// the segments that stay, is replayed: the group is not back.
func TestDropGroupReplayed(t *testing.T) {
	fsys := wal.NewMemFS()
	l := openMem(t, fsys, 64<<20)
	var b Batch
	b.Append(1, []*pb.Entry{{Index: new(uint64(1)), Term: new(uint64(1)), Data: []byte("x")}})
	b.Append(2, []*pb.Entry{{Index: new(uint64(1)), Term: new(uint64(1)), Data: []byte("y")}})
	mustOK(t, l.Commit(&b))
	mustOK(t, l.Drop(1))
	mustOK(t, l.Close())
	l = openMem(t, fsys, 64<<20)
	defer l.Close()
	if got := l.Groups(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("groups after replay %v, want [2]", got)
	}
}

// fillGroups commits rounds batches of one 100-byte entry for each of
// groups, at next's indexes (which it advances).
func fillGroups(t *testing.T, l *Log, next map[uint64]uint64, rounds int, groups ...uint64) {
	t.Helper()
	for range rounds {
		var b Batch
		for _, g := range groups {
			b.Append(g, []*pb.Entry{{Index: new(next[g]), Term: new(uint64(1)), Data: make([]byte, 100)}})
			next[g]++
		}
		mustOK(t, l.Commit(&b))
	}
}
