package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/raftlog"
)

// TestAddMemberAsLearner adds a fourth node to a group of three as
// AddMember does it: a learner first, which counts in no majority (the
// group commits with one of its three voters and the learner down), and
// which is promoted only once it has caught up, by a snapshot here, as
// the group's log was compacted meanwhile.
func TestAddMemberAsLearner(t *testing.T) {
	const g = 7
	c := newTestCluster(t, 3, g)
	lead := c.leader(g)
	var want []string
	for i := range 30 {
		want = append(want, fmt.Sprintf("a%d", i))
		c.propose(lead, g, want[i])
	}
	c.converge(g, want)
	ctx := context.Background()
	if err := c.nodes[lead].n.AddMember(ctx, g, 4); err != nil {
		t.Fatalf("add node 4: %v", err)
	}
	confIs := func(voters, learners []uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cs, err := c.nodes[lead].n.ConfState(ctx, g)
			if err != nil {
				t.Fatal(err)
			}
			v, l := slices.Sorted(slices.Values(cs.GetVoters())), slices.Sorted(slices.Values(cs.GetLearners()))
			if slices.Equal(v, voters) && slices.Equal(l, learners) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("group %d on node %d: voters %v, learners %v; want %v and %v", g, lead, v, l, voters, learners)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	confIs([]uint64{1, 2, 3}, []uint64{4})
	if err := c.nodes[lead].n.AddMember(ctx, g, 4); !errors.Is(err, ErrCatchingUp) {
		t.Fatalf("promote node 4, which is not running: %v, want ErrCatchingUp", err)
	}
	// A voter down too: the two voters left are a majority of three,
	// and would not be of four.
	down := uint64(1)
	if down == lead {
		down = 2
	}
	c.stop(down)
	for i := range 30 {
		v := fmt.Sprintf("b%d", i)
		want = append(want, v)
		c.propose(lead, g, v)
	}
	c.converge(g, want)
	c.start(down)

	tn := &testNode{id: 4, dir: t.TempDir()}
	l, _, err := raftlog.Open(raftlog.Options{Dir: tn.dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{ID: 4, Log: l, Transport: link{c.net, 4}, TickInterval: 10 * time.Millisecond, ElectionTicks: 30, SnapshotEvery: 20})
	if err != nil {
		t.Fatal(err)
	}
	tn.log, tn.n, tn.sms = l, n, map[uint64]*listSM{g: {}}
	if err := n.AddGroup(ctx, g, nil, tn.sms[g]); err != nil { // joining: no bootstrap
		t.Fatal(err)
	}
	c.nodes[4] = tn
	c.net.set(4, n)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.nodes[lead].n.AddMember(ctx, g, 4)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrCatchingUp) || time.Now().After(deadline) {
			t.Fatalf("promote node 4: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	confIs([]uint64{1, 2, 3, 4}, nil)
	c.converge(g, want)
	if _, restores := tn.sms[g].state(); restores == 0 {
		t.Error("node 4 caught up without the group's snapshot, though the log was compacted before it joined")
	}
	// A voter is left as it is.
	if err := c.nodes[lead].n.AddMember(ctx, g, 4); err != nil {
		t.Fatalf("add node 4 again: %v", err)
	}
}
