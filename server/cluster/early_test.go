package cluster

import (
	"testing"

	"github.com/amqp-go/amqp-go/shared/raftlog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestAppliesEarly: which of a Ready's committed entries a round applies
// before its persist — only plain entries already in the stable log and
// below the Ready's own new entries, and none with a snapshot or a leader
// change in the Ready.
func TestAppliesEarly(t *testing.T) {
	l, _, err := raftlog.Open(raftlog.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const gid = 7
	var b raftlog.Batch
	b.Append(gid, testEntries(1, 5, pb.EntryNormal)) // 1..5 on disk
	if err := l.Commit(&b); err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: Config{Log: l}}
	g := &group{id: gid, lead: 1}
	conf := testEntries(4, 4, pb.EntryConfChangeV2)
	for _, tc := range []struct {
		name string
		rd   raft.Ready
		want int
	}{
		{"nothing committed", raft.Ready{Entries: testEntries(6, 8, pb.EntryNormal)}, 0},
		{"all on disk", raft.Ready{CommittedEntries: testEntries(2, 5, pb.EntryNormal)}, 4},
		{"on disk, new entries after", raft.Ready{CommittedEntries: testEntries(3, 5, pb.EntryNormal), Entries: testEntries(6, 9, pb.EntryNormal)}, 3},
		// A follower learns the commit index with the entries: those in
		// this Ready are not on disk yet.
		{"committed with its own entries", raft.Ready{CommittedEntries: testEntries(4, 7, pb.EntryNormal), Entries: testEntries(6, 7, pb.EntryNormal)}, 2},
		// The Ready's entries replace stored ones from 4 on: 4 and 5 on
		// disk are not these.
		{"replacing the stored tail", raft.Ready{CommittedEntries: testEntries(3, 5, pb.EntryNormal), Entries: testEntries(4, 6, pb.EntryNormal)}, 1},
		{"beyond the stable log", raft.Ready{CommittedEntries: testEntries(5, 6, pb.EntryNormal)}, 1},
		{"stops at a conf change", raft.Ready{CommittedEntries: append(testEntries(2, 3, pb.EntryNormal), append(conf, testEntries(5, 5, pb.EntryNormal)...)...)}, 2},
		{"snapshot", raft.Ready{CommittedEntries: testEntries(2, 3, pb.EntryNormal), Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1))}}}, 0},
		{"leader change", raft.Ready{CommittedEntries: testEntries(2, 3, pb.EntryNormal), SoftState: &raft.SoftState{Lead: 2}}, 0},
		{"same leader", raft.Ready{CommittedEntries: testEntries(2, 3, pb.EntryNormal), SoftState: &raft.SoftState{Lead: 1}}, 2},
	} {
		r := &ready{g: g, rd: tc.rd}
		if got := n.appliesEarly(r); got != tc.want {
			t.Errorf("%s: %d applied early, want %d", tc.name, got, tc.want)
		}
	}
}

// testEntries returns entries lo..hi of term 1 and type typ.
func testEntries(lo, hi uint64, typ pb.EntryType) []*pb.Entry {
	var out []*pb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, &pb.Entry{Index: new(i), Term: new(uint64(1)), Type: new(typ), Data: []byte("x")})
	}
	return out
}
