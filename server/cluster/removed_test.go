package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// setVoter proposes node added to (add) or removed from group g through
// via, retrying while a change is pending, and waits until via applied it.
func (c *testCluster) setVoter(via, g, node uint64, add bool) {
	c.t.Helper()
	t := pb.ConfChangeType_ConfChangeRemoveNode
	if add {
		t = pb.ConfChangeType_ConfChangeAddNode
	}
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: t.Enum(), NodeId: proto.Uint64(node)}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.nodes[via].n.ProposeConfChange(context.Background(), g, cc)
		if err != nil && !errors.Is(err, ErrChangePending) {
			c.t.Fatal(err)
		}
		cs, err := c.nodes[via].n.ConfState(context.Background(), g)
		if err != nil {
			c.t.Fatal(err)
		}
		if slices.Contains(cs.GetVoters(), node) == add {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("group %d: node %d never %v on node %d: %v", g, node, add, via, cs.GetVoters())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A voter removed while it was cut off (so it never has the removal)
// stands for election once back; the members answer that it was removed,
// and it goes quiet rather than campaign in vain for good. Added again,
// it wakes, catches up and takes part.
func TestRemovedVoterGoesQuiet(t *testing.T) {
	const g = 7
	c := newTestCluster(t, 3, g)
	lead := c.leader(g)
	gone := uint64(1)
	if gone == lead {
		gone = 2
	}
	c.propose(lead, g, "before")
	c.converge(g, []string{"before"})
	c.net.set(gone, nil) // cut off: nothing reaches it
	c.setVoter(lead, g, gone, false)
	c.propose(lead, g, "without")
	c.net.set(gone, c.nodes[gone].n)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if quiet, _ := c.nodes[gone].n.QuietGroups(); quiet == 1 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := c.nodes[gone].n.Status(context.Background(), g)
			t.Fatalf("the removed voter is not quiet: %v, term %d", st.RaftState, st.HardState.GetTerm())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, _ := c.nodes[gone].n.Status(context.Background(), g)
	time.Sleep(500 * time.Millisecond) // more than an election timeout (300 ms)
	if now, _ := c.nodes[gone].n.Status(context.Background(), g); now.HardState.GetTerm() != st.HardState.GetTerm() || now.RaftState != st.RaftState {
		t.Fatalf("quiet, the removed voter still campaigns: %v term %d, then %v term %d", st.RaftState, st.HardState.GetTerm(), now.RaftState, now.HardState.GetTerm())
	}
	for id, tn := range c.nodes {
		if id == gone {
			continue
		}
		if st, _ := tn.n.Status(context.Background(), g); st.Lead != lead {
			t.Fatalf("node %d: leader %d, was %d", id, st.Lead, lead)
		}
	}
	c.setVoter(lead, g, gone, true)
	c.propose(lead, g, "with")
	c.converge(g, []string{"before", "without", "with"})
}
