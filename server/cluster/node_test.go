package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/raftlog"
	"github.com/amqp-go/amqp-go/shared/wal"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// memNet is an in-process network: messages are cloned (as a wire would)
// and handed to the destination's Step; a node not on it is down.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]*Node // (mu)
}

func (m *memNet) set(id uint64, n *Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n == nil {
		delete(m.nodes, id)
	} else {
		m.nodes[id] = n
	}
}

// link is one node's Transport on a memNet.
type link struct {
	net  *memNet
	from uint64
}

func (l link) Send(to uint64, msgs []GroupMessage) {
	l.net.mu.Lock()
	dst, src := l.net.nodes[to], l.net.nodes[l.from]
	l.net.mu.Unlock()
	out := make([]GroupMessage, len(msgs))
	for i, m := range msgs {
		out[i] = GroupMessage{Group: m.Group, Message: proto.Clone(m.Message).(*pb.Message)}
	}
	if dst != nil {
		dst.Step(out)
	}
	if src == nil {
		return
	}
	if dst == nil {
		src.ReportUnreachable(to)
	}
	for _, m := range msgs {
		if m.Message.GetType() == pb.MessageType_MsgSnap {
			src.ReportSnapshot(m.Group, to, dst != nil)
		}
	}
}

// listSM is a state machine that keeps every applied value.
type listSM struct {
	mu       sync.Mutex
	values   []string // (mu)
	restores int      // (mu)
}

func (s *listSM) Apply(_ uint64, data []byte) {
	s.mu.Lock()
	s.values = append(s.values, string(data))
	s.mu.Unlock()
}

func (s *listSM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Marshal(s.values)
}

func (s *listSM) Restore(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restores++
	s.values = nil
	return json.Unmarshal(data, &s.values)
}

func (s *listSM) state() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.values), s.restores
}

// testNode is one node of a test cluster and its groups' state machines.
type testNode struct {
	id  uint64
	dir string
	log *raftlog.Log
	n   *Node
	sms map[uint64]*listSM
}

type testCluster struct {
	t      *testing.T
	net    *memNet
	nodes  map[uint64]*testNode
	groups []uint64
}

func newTestCluster(t *testing.T, nodes int, groups ...uint64) *testCluster {
	c := &testCluster{t: t, net: &memNet{nodes: map[uint64]*Node{}}, nodes: map[uint64]*testNode{}, groups: groups}
	for id := uint64(1); id <= uint64(nodes); id++ {
		c.nodes[id] = &testNode{id: id, dir: t.TempDir()}
	}
	for id := range c.nodes {
		c.start(id)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

func (c *testCluster) peers() []uint64 {
	var ps []uint64
	for id := range c.nodes {
		ps = append(ps, id)
	}
	slices.Sort(ps)
	return ps
}

// start opens node id's log and runs its groups: bootstrapped the first
// time, recovered from the log after.
func (c *testCluster) start(id uint64) {
	c.t.Helper()
	tn := c.nodes[id]
	l, _, err := raftlog.Open(raftlog.Options{Dir: tn.dir, NoSync: true})
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := Start(Config{ID: id, Log: l, Transport: link{c.net, id}, TickInterval: 10 * time.Millisecond, ElectionTicks: 30, SnapshotEvery: 20})
	if err != nil {
		c.t.Fatal(err)
	}
	tn.log, tn.n, tn.sms = l, n, map[uint64]*listSM{}
	for _, g := range c.groups {
		tn.sms[g] = &listSM{}
		if err := n.AddGroup(context.Background(), g, c.peers(), tn.sms[g]); err != nil {
			c.t.Fatal(err)
		}
	}
	c.net.set(id, n)
}

// stop kills node id's loop and closes its log, as a crash between two
// rounds would leave it.
func (c *testCluster) stop(id uint64) {
	tn := c.nodes[id]
	if tn.n == nil {
		return
	}
	c.net.set(id, nil)
	tn.n.Stop()
	if err := tn.log.Close(); err != nil {
		c.t.Error(err)
	}
	tn.n, tn.log = nil, nil
}

// leader waits until the running nodes agree on a leader of group g.
func (c *testCluster) leader(g uint64) uint64 { return c.leaderBut(g, 0) }

// leaderBut waits until the running nodes agree on a leader of group g
// other than not.
func (c *testCluster) leaderBut(g, not uint64) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lead uint64
		agree := true
		for _, tn := range c.nodes {
			if tn.n == nil {
				continue
			}
			st, err := tn.n.Status(context.Background(), g)
			if err != nil {
				c.t.Fatal(err)
			}
			if lead == 0 {
				lead = st.Lead
			}
			agree = agree && st.Lead != 0 && st.Lead != not && st.Lead == lead
		}
		if agree {
			return lead
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("group %d: no leader all nodes agree on after 10s", g)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// propose proposes value to group g through node via, retrying while the
// group has no leader.
func (c *testCluster) propose(via, g uint64, value string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.nodes[via].n.Propose(context.Background(), g, []byte(value))
		if err == nil {
			return
		}
		if !errors.Is(err, raft.ErrProposalDropped) || time.Now().After(deadline) {
			c.t.Fatalf("propose %q to group %d via node %d: %v", value, g, via, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// converge waits until every running node applied exactly want (in any
// order, but the same order on all nodes) to group g.
func (c *testCluster) converge(g uint64, want []string) []string {
	c.t.Helper()
	sorted := slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var first []string
		ok := true
		for _, id := range c.peers() {
			tn := c.nodes[id]
			if tn.n == nil {
				continue
			}
			vals, _ := tn.sms[g].state()
			if first == nil {
				first = vals
			}
			ok = ok && slices.Equal(vals, first) && slices.Equal(slices.Sorted(slices.Values(vals)), sorted)
		}
		if ok {
			return first
		}
		if time.Now().After(deadline) {
			for id, tn := range c.nodes {
				if tn.n != nil {
					vals, _ := tn.sms[g].state()
					c.t.Logf("node %d group %d: %d values %v", id, g, len(vals), vals)
				}
			}
			c.t.Fatalf("group %d did not converge on %d values in 20s", g, len(want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestThreeNodesTwoGroups elects a leader in each of two groups on three
// nodes, replicates entries, kills one node's loop while the others go on
// (far enough that the leader compacts past it), restarts it from its log
// and checks that it catches up, by entries or by the leader's snapshot.
func TestThreeNodesTwoGroups(t *testing.T) {
	c := newTestCluster(t, 3, 1, 2)
	for _, g := range c.groups {
		t.Logf("group %d: leader %d", g, c.leader(g))
	}
	want := map[uint64][]string{}
	// Values from, to-1 to every group, each through node via(i, g),
	// then wait until every running node applied them all.
	write := func(from, to int, via func(i int, g uint64) uint64) {
		for i := from; i < to; i++ {
			for _, g := range c.groups {
				v := fmt.Sprintf("g%d-%d", g, i)
				c.propose(via(i, g), g, v)
				want[g] = append(want[g], v)
			}
		}
		for _, g := range c.groups {
			c.converge(g, want[g])
		}
	}
	// Through every node: followers forward to the leader.
	write(0, 30, func(i int, _ uint64) uint64 { return uint64(i%3) + 1 })

	had := map[uint64]uint64{} // node 3's last index of each group
	for _, g := range c.groups {
		had[g], _ = c.nodes[3].log.Group(g).LastIndex()
	}
	c.stop(3)
	// Through the leader: one forwarded to a stopped leader would be lost
	// (a client would retry, and this test would count a duplicate).
	lead := map[uint64]uint64{}
	for _, g := range c.groups {
		lead[g] = c.leaderBut(g, 3)
	}
	write(30, 100, func(_ int, g uint64) uint64 { return lead[g] })
	// The leaders snapshot off their loops: wait until they compacted
	// past what node 3 has, so that it needs a snapshot.
	deadline := time.Now().Add(10 * time.Second)
	for _, g := range c.groups {
		for {
			first, _ := c.nodes[lead[g]].log.Group(g).FirstIndex()
			if first > had[g]+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("group %d: the leader's log starts at %d after 10s, node 3 has up to %d", g, first, had[g])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	c.start(3)
	restored := map[uint64]int{}
	for _, g := range c.groups {
		vals, r := c.nodes[3].sms[g].state()
		t.Logf("group %d: node 3 restarted with %d values (%d from a snapshot)", g, len(vals), r)
		restored[g] = r
	}
	for _, g := range c.groups {
		c.converge(g, want[g])
		if _, r := c.nodes[3].sms[g].state(); r == restored[g] {
			t.Errorf("group %d: node 3 caught up without the leader's snapshot, though the leader compacted past it", g)
		}
	}
	// New leaders can be elected with node 3 back: stop the current
	// leader of group 1 and write on.
	old := c.leader(1)
	c.stop(old)
	start := time.Now()
	next := c.leaderBut(1, old)
	t.Logf("group 1: node %d took over from node %d in %v", next, old, time.Since(start))
	c.propose(next, 1, "after the leader's loss")
	want[1] = append(want[1], "after the leader's loss")
	c.converge(1, want[1])
}

// TestRestartReplaysFromLog stops every node and starts them again: each
// rebuilds its state machines from its own log (snapshot plus entries).
func TestRestartReplaysFromLog(t *testing.T) {
	c := newTestCluster(t, 3, 7)
	c.leader(7)
	var want []string
	for i := range 45 {
		v := fmt.Sprint(i)
		c.propose(1, 7, v)
		want = append(want, v)
	}
	order := c.converge(7, want)
	for id := range c.nodes {
		c.stop(id)
	}
	for id := range c.nodes {
		c.start(id)
	}
	for id, tn := range c.nodes {
		// Before any new election: what the log alone gives back.
		if vals, r := tn.sms[7].state(); r == 0 || !slices.Equal(vals, order[:len(vals)]) {
			t.Errorf("node %d restarted with %d values, %d restores: %v", id, len(vals), r, vals)
		}
	}
	c.leader(7)
	c.converge(7, want)
}

// TestGroupOfOneAndLogFailure runs a group of one (a quorum queue on a
// single node), then fails the log's fsync: the loop must stop rather
// than ack what is not durable.
func TestGroupOfOneAndLogFailure(t *testing.T) {
	fsys := wal.NewMemFS()
	l, _, err := raftlog.Open(raftlog.Options{Dir: "raft", FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := Start(Config{ID: 1, Log: l, Transport: link{&memNet{nodes: map[uint64]*Node{}}, 1}, TickInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	sm := &listSM{}
	if err := n.AddGroup(context.Background(), 1, []uint64{1}, sm); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, nodes: map[uint64]*testNode{1: {id: 1, n: n, sms: map[uint64]*listSM{1: sm}}}}
	c.leader(1)
	c.propose(1, 1, "one")
	c.converge(1, []string{"one"})

	fsys.FailSyncs(errors.New("disk gone"))
	_ = n.Propose(context.Background(), 1, []byte("two"))
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("node still runs 10s after its log failed")
	}
	if err := n.Err(); err == nil || !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("Err() = %v, want the log failure", err)
	}
	if vals, _ := sm.state(); !slices.Equal(vals, []string{"one"}) {
		t.Fatalf("applied %v after the failure", vals)
	}
}

// TestProposeAsyncBursts hands the loop's proposal queue bursts larger
// than the spare slice it keeps (4,096), from several goroutines, while
// the loop takes them: each proposal reaches the loop exactly once (here
// as a drop: the node runs no group). A burst's drained slice once stayed
// the spare while also being the queue, so proposals made during the next
// round were overwritten, and lost.
func TestProposeAsyncBursts(t *testing.T) {
	n := &Node{groups: map[uint64]*group{}, wake: make(chan struct{}, 1)}
	const writers, each, burst = 4, 5000, 5000
	seen := make([]atomic.Int32, writers*each+burst)
	for k := range burst { // one round drains more than the spare keeps
		n.ProposeAsync(1, nil, func() { seen[writers*each+k].Add(1) })
	}
	n.takeProposals()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k := w*each + i
				n.ProposeAsync(1, nil, func() { seen[k].Add(1) })
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		n.takeProposals() // the loop's part
	}
	n.takeProposals()
	for k := range seen {
		if got := seen[k].Load(); got != 1 {
			t.Fatalf("proposal %d reached the loop %d times", k, got)
		}
	}
}

// A campaign asked for as soon as a group is made (a new quorum queue's
// client-local leader) is not lost to raft's refusal while the group's
// initial configuration is unapplied: the node leads long before an
// election timeout (10 s here) would have made anyone leader.
func TestCampaignOnNewGroup(t *testing.T) {
	net := &memNet{nodes: map[uint64]*Node{}}
	var nodes []*Node
	for _, id := range []uint64{1, 2, 3} {
		l, _, err := raftlog.Open(raftlog.Options{Dir: t.TempDir(), NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		n, err := Start(Config{ID: id, Log: l, Transport: link{net, id}, TickInterval: 10 * time.Millisecond, ElectionTicks: 1000})
		if err != nil {
			t.Fatal(err)
		}
		net.set(id, n)
		nodes = append(nodes, n)
		t.Cleanup(func() {
			net.set(id, nil)
			n.Stop()
			_ = l.Close()
		})
	}
	ctx := context.Background()
	for i, n := range nodes {
		var err error
		// As the broker makes a quorum queue's group: on the loop,
		// and the campaign before the group's first Ready.
		if derr := n.do(ctx, func() {
			if err = n.addGroup(7, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, &listSM{}); err == nil && i == 1 {
				n.groups[7].askCampaign()
			}
		}); derr != nil {
			t.Fatal(derr)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := nodes[1].Status(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		if st.RaftState == raft.StateLeader {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2 is %v after 5 s: the campaign was dropped", st.RaftState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
