package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
)

// membershipNode is one Service of TestMembership with what it takes to
// restart it.
type membershipNode struct {
	self    Peer
	members []Peer
	join    bool
	dir     string
	parts   map[byte]Replicated
	svc     *Service
}

func (m *membershipNode) open(t *testing.T, ln net.Listener) {
	t.Helper()
	logs := &servertest.LogBuffer{}
	s, err := Open(ServiceConfig{Cluster: "c", Self: m.self, Members: m.members, Join: m.join, Listener: ln, Listen: m.self.Address,
		Dir: m.dir, NoSync: true, TickInterval: 10 * time.Millisecond, SnapshotEvery: 5, Replicated: m.parts, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m.svc = s
	t.Cleanup(func() { m.close(t) })
}

func (m *membershipNode) close(t *testing.T) {
	if m.svc != nil {
		if err := m.svc.Close(); err != nil {
			t.Error(err)
		}
		m.svc = nil
	}
}

// waitAgree waits until every node of nodes has the members named want,
// all reachable, and all see the same leader and term; it returns the
// leader's name.
func waitAgree(t *testing.T, nodes []*membershipNode, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var sts []Status
		agree := true
		for _, n := range nodes {
			st, err := n.svc.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sts = append(sts, st)
			var names []string
			for _, m := range st.Members {
				names = append(names, m.Name)
				agree = agree && m.Reachable
			}
			agree = agree && st.Member && slices.Equal(names, want) && st.Metadata.Leader != "" &&
				st.Metadata.Leader == sts[0].Metadata.Leader && st.Metadata.Term == sts[0].Metadata.Term
		}
		if agree {
			return sts[0].Metadata.Leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreement on members %v in 10s: %+v", want, sts)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEntries waits until n has applied count normal entries.
func waitEntries(t *testing.T, n *membershipNode, count uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.svc.meta.count() != count {
		if time.Now().After(deadline) {
			t.Fatalf("%s applied %d entries, want %d", n.self.Name, n.svc.meta.count(), count)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMembership: three Services on 127.0.0.1 form a cluster; a fourth,
// started to join, is added through a follower, catches up and takes part
// (with the old leader stopped, the three left elect one); the stopped
// node is forgotten by every transport; a member restarted with the
// original three as its config knows the fourth from its log and
// snapshots; the fourth leaves; and what Raft refuses is refused.
func TestMembership(t *testing.T) {
	var nodes []*membershipNode
	var lns []net.Listener
	for i := range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		// The joiner has the lowest id, so it dials every member.
		nodes = append(nodes, &membershipNode{self: Peer{ID: uint64(10 - 9*(i/3) + i), Name: fmt.Sprintf("n%d", i), Address: ln.Addr().String()}, dir: t.TempDir()})
	}
	original := []Peer{nodes[0].self, nodes[1].self, nodes[2].self}
	for i, n := range nodes[:3] {
		n.members = original
		n.open(t, lns[i])
	}
	leader := waitAgree(t, nodes[:3], "n0", "n1", "n2")
	for range 12 { // enough for snapshots and a compaction before the join
		if err := nodes[0].svc.Propose(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[:3] {
		waitEntries(t, n, 12)
	}

	joiner := nodes[3]
	joiner.members, joiner.join = original, true
	joiner.open(t, lns[3])
	if st, err := joiner.svc.Status(context.Background()); err != nil || st.Member {
		t.Fatalf("joiner before it is added: member %v, err %v", st.Member, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var via *membershipNode
	for _, n := range nodes[:3] {
		if n.self.Name != leader {
			via = n // a follower forwards the change to the leader
		}
	}
	start := time.Now()
	if err := via.svc.AddMember(ctx, joiner.self); err != nil {
		t.Fatal(err)
	}
	leader = waitAgree(t, nodes, "n0", "n1", "n2", "n3")
	waitEntries(t, joiner, 12)
	t.Logf("n3 added and caught up in %v; leader %s", time.Since(start), leader)
	if err := via.svc.AddMember(ctx, joiner.self); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("adding n3 again: %v, want ErrMemberExists", err)
	}

	// Stop the leader (never the joiner, which must take part): three of
	// four are a majority, and the joiner is one of them.
	var stopped *membershipNode
	var rest []*membershipNode
	for _, n := range nodes {
		if n.self.Name == leader && stopped == nil && n != joiner {
			stopped = n
		} else {
			rest = append(rest, n)
		}
	}
	if stopped == nil { // the joiner leads: stop n0
		stopped, rest = nodes[0], nodes[1:]
	}
	stopped.close(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := joiner.svc.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Metadata.Leader != "" && st.Metadata.Leader != stopped.self.Name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after %s stopped: %+v", stopped.self.Name, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := joiner.svc.Propose(context.Background(), []byte("y")); err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		waitEntries(t, n, 13)
	}

	// forget-node: the stopped one, from a remaining member.
	if err := rest[0].svc.RemoveMember(ctx, "nope"); !errors.Is(err, ErrNoMember) {
		t.Fatalf("removing an unknown member: %v, want ErrNoMember", err)
	}
	if err := rest[0].svc.RemoveMember(ctx, stopped.self.Name); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range rest {
		names = append(names, n.self.Name)
	}
	slices.Sort(names)
	waitAgree(t, rest, names...)
	for _, n := range rest {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := n.svc.tr.Peers()[stopped.self.ID]; !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's transport still has %s", n.self.Name, stopped.self.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Restart an original member whose config names the original three
	// only: the log (and its snapshots) know better.
	for range 10 {
		if err := rest[0].svc.Propose(context.Background(), []byte("z")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range rest {
		waitEntries(t, n, 23)
	}
	restarted := rest[0]
	if restarted == joiner {
		restarted = rest[1]
	}
	restarted.close(t)
	restarted.open(t, nil)
	deadline = time.Now().Add(10 * time.Second)
	for {
		peers := restarted.svc.tr.Peers()
		_, forgotten := peers[stopped.self.ID]
		if peers[joiner.self.ID] == joiner.self.Address && !forgotten {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted %s's transport peers %v: want n3 at %s and not %s", restarted.self.Name, peers, joiner.self.Address, stopped.self.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitAgree(t, rest, names...)
	first, _ := restarted.svc.log.Group(MetadataGroup).FirstIndex()
	t.Logf("restarted %s from a log whose first entry is %d", restarted.self.Name, first)

	// leave: the joiner removes itself; the other two go on.
	if err := joiner.svc.RemoveMember(ctx, joiner.self.Name); err != nil {
		t.Fatal(err)
	}
	var left []*membershipNode
	names = names[:0]
	for _, n := range rest {
		if n != joiner {
			left = append(left, n)
			names = append(names, n.self.Name)
		}
	}
	slices.Sort(names)
	waitAgree(t, left, names...)
	if st, err := joiner.svc.Status(context.Background()); err != nil || st.Member {
		t.Fatalf("n3 after leaving: member %v, err %v", st.Member, err)
	}
}

// TestRemoveLastMember: a single member cannot remove itself, as Raft
// would not have a configuration left.
func TestRemoveLastMember(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &membershipNode{self: Peer{ID: 1, Name: "solo", Address: ln.Addr().String()}, dir: t.TempDir()}
	n.members = []Peer{n.self}
	n.open(t, ln)
	waitAgree(t, []*membershipNode{n}, "solo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.svc.RemoveMember(ctx, "solo"); !errors.Is(err, ErrLastMember) {
		t.Fatalf("removing the last member: %v, want ErrLastMember", err)
	}
}
