package cluster

import (
	"context"
	"errors"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// LeaderObserver is a StateMachine that wants to know its group's leader:
// LeaderChanged is called on the loop, between rounds' applies, whenever
// the leader this node knows of changes (0: none known).
type LeaderObserver interface {
	LeaderChanged(lead uint64, self bool)
}

// SnapshotPacer is a StateMachine that says how many entries may pass
// between two snapshots, at least Config.SnapshotEvery: a state that
// grows with its log (a quorum queue's backlog) is snapshotted in
// proportion to its size, so snapshots cost a bounded amount per entry.
type SnapshotPacer interface {
	SnapshotAfter() uint64
}

// VotersObserver is a StateMachine that follows its group's voters and
// learners (members on their way in, see AddMember): it is told them, on
// the loop, when the group starts here, after every conf change and
// after a snapshot is restored.
type VotersObserver interface {
	VotersChanged(voters, learners []uint64)
}

// noteVoters tells g's state machine its voters, if it asks.
func noteVoters(g *group) {
	if o, ok := g.sm.(VotersObserver); ok {
		o.VotersChanged(slices.Clone(g.conf.GetVoters()), slices.Clone(g.conf.GetLearners()))
	}
}

// SnapshotLater is a StateMachine whose snapshot is encoded off the loop,
// which a large state (a quorum queue's backlog: copying and encoding
// every message takes seconds) would otherwise hold up, every group of
// the node with it. SnapshotLater runs on the loop and captures the state
// without encoding it; the function it returns encodes it, on another
// goroutine.
type SnapshotLater interface {
	SnapshotLater() func() ([]byte, error)
}

// snapshotLater starts g's snapshot at its applied index: captured now,
// encoded elsewhere, stored and the log compacted by the loop once done.
func (n *Node) snapshotLater(g *group, sm SnapshotLater) {
	index, conf := g.applied, proto.Clone(g.conf).(*pb.ConfState)
	encode := sm.SnapshotLater()
	g.snapping = true
	go func() { // owned by the loop: it ends with the encoding, or the loop
		data, err := encode()
		select {
		case n.requests <- func() { n.snapshotDone(g, index, conf, data, err) }:
		case <-n.done:
		}
	}()
}

// snapshotDone stores a snapshot encoded off the loop and compacts the
// log up to the previous one. A snapshot received meanwhile supersedes
// it; a failed encoding is logged, and tried again after more entries.
func (n *Node) snapshotDone(g *group, index uint64, conf *pb.ConfState, data []byte, err error) {
	g.snapping = false
	if n.groups[g.id] != g {
		return // removed meanwhile
	}
	if err != nil {
		n.cfg.Logger.Errorf("cluster: group %d: snapshot at %d: %v", g.id, index, err)
		return
	}
	if err := n.storeSnapshot(g, index, conf, data); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		n.failed = err // the log failed: the loop ends (run checks)
	}
}

// proposal is a ProposeAsync waiting for the loop.
type proposal struct {
	group uint64
	data  []byte
	// dropped, if set, is called on the loop when raft refused the
	// proposal (no leader known, the group is gone).
	dropped func()
}

// ProposeAsync hands data to group id's next round without waiting, so
// it may be called from anywhere, the loop and state machines included,
// and under the caller's locks. Raft may still lose a proposal it took
// (forwarded to a leader that then died): a caller that needs to know
// waits for its entry to be applied, with a deadline. dropped, if set, is
// called on the loop when raft refused it outright.
func (n *Node) ProposeAsync(id uint64, data []byte, dropped func()) {
	n.reportMu.Lock()
	n.proposals = append(n.proposals, proposal{group: id, data: data, dropped: dropped})
	n.reportMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// takeProposals proposes what ProposeAsync queued, in order.
func (n *Node) takeProposals() {
	n.reportMu.Lock()
	ps := n.proposals
	n.proposals = n.spare[:0]
	n.reportMu.Unlock()
	// A group's proposals of this round go to raft as one MsgProp, in
	// their order: one append and one MsgApp per follower for all of
	// them, where a Propose each made raft send a MsgApp (and get a
	// MsgAppResp) per proposal.
	byGroup, order := n.propGroups, n.propOrder[:0]
	if byGroup == nil || len(byGroup) > 4*len(n.groups)+64 {
		byGroup = map[uint64][]int{} // (again: deleted groups' scratch)
		n.propGroups = byGroup
	}
	for i := range ps {
		id := ps[i].group
		if len(byGroup[id]) == 0 {
			order = append(order, id)
		}
		byGroup[id] = append(byGroup[id], i)
	}
	for _, id := range order {
		idx := byGroup[id]
		for len(idx) > 0 {
			batch := idx[:min(len(idx), maxProposalBatch)]
			idx = idx[len(batch):]
			n.proposeBatch(ps, batch)
		}
		byGroup[id] = byGroup[id][:0]
	}
	for i := range ps {
		ps[i] = proposal{}
	}
	n.propOrder = order[:0]
	// The drained slice becomes the next spare (n.proposals is the old
	// spare now, so the two never share an array); a burst's is let go.
	n.spare = nil
	if cap(ps) <= 4096 {
		n.spare = ps[:0]
	}
}

// proposeBatch proposes ps[i] for each i of batch, all of one group, as
// one MsgProp; if raft refuses it, each one's dropped is called.
func (n *Node) proposeBatch(ps []proposal, batch []int) {
	g := n.groups[ps[batch[0]].group]
	var err error
	if g == nil {
		err = ErrNoGroup
	} else {
		g.stepped = true
		g.wake()
		ents := make([]pb.Entry, len(batch))
		m := &pb.Message{Type: pb.MsgProp.Enum(), From: new(n.cfg.ID), Entries: make([]*pb.Entry, len(batch))}
		for k, i := range batch {
			ents[k].Data = ps[i].data
			m.Entries[k] = &ents[k]
		}
		err = g.rn.Step(m)
	}
	if err != nil {
		for _, i := range batch {
			if ps[i].dropped != nil {
				ps[i].dropped()
			}
		}
	}
}

// maxProposalBatch bounds the proposals of one group that go to raft as
// one message (raft drops a whole message it cannot take).
const maxProposalBatch = 1024

// AddGroupOnLoop is AddGroup for a state machine's Apply, which runs on
// the loop and so cannot wait for it (a metadata entry that declares a
// quorum queue starts the queue's group). Called anywhere else, it races
// with the loop.
func (n *Node) AddGroupOnLoop(id uint64, peers []uint64, sm StateMachine) error {
	ps := make([]raft.Peer, len(peers))
	for i, p := range peers {
		ps[i] = raft.Peer{ID: p}
	}
	return n.addGroup(id, ps, sm)
}

// RemoveGroupOnLoop stops running group id here (its queue was deleted),
// from a state machine's Apply, and drops it from the log (raftlog's
// Drop): before, a deleted queue's entries and snapshot stayed in memory
// for good, every segment roll wrote its snapshot into a checkpoint
// again, and its segments were never reclaimed. A group id is never
// reused (see the broker's quorum group ids).
func (n *Node) RemoveGroupOnLoop(id uint64) {
	delete(n.groups, id)
	if err := n.cfg.Log.Drop(id); err != nil {
		n.failed = err // the log failed: the loop ends (run checks)
	}
}

// noteLeader tells g's state machine of a leader change.
func (n *Node) noteLeader(g *group, ss *raft.SoftState) {
	if ss == nil || ss.Lead == g.lead {
		return
	}
	g.lead = ss.Lead
	if o, ok := g.sm.(LeaderObserver); ok {
		o.LeaderChanged(ss.Lead, ss.Lead == n.cfg.ID)
	}
}

// The Service's part in quorum queues' groups: the broker starts one
// group per queue on every member (see docs/clustering.md).

// AddGroup starts group id (a quorum queue's) on this node, from outside
// the loop (see Node.AddGroup).
func (s *Service) AddGroup(ctx context.Context, id uint64, peers []uint64, sm StateMachine) error {
	return s.node.AddGroup(ctx, id, peers, sm)
}

// AddGroupOnLoop starts group id from a replicated part's Apply (see
// Node.AddGroupOnLoop).
func (s *Service) AddGroupOnLoop(id uint64, peers []uint64, sm StateMachine) error {
	return s.node.AddGroupOnLoop(id, peers, sm)
}

// RemoveGroupOnLoop stops group id here, from a replicated part's Apply.
func (s *Service) RemoveGroupOnLoop(id uint64) { s.node.RemoveGroupOnLoop(id) }

// ProposeAsync proposes data to group id without waiting (see
// Node.ProposeAsync).
func (s *Service) ProposeAsync(id uint64, data []byte, dropped func()) {
	s.node.ProposeAsync(id, data, dropped)
}

// Self is this node's id.
func (s *Service) Self() uint64 { return s.cfg.Self.ID }

// Voters are the members' ids as this node last applied them, sorted.
func (s *Service) Voters() []uint64 {
	var ids []uint64
	for _, p := range s.meta.members() {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// Reachable reports whether node id is this one or one it has a
// connection to.
func (s *Service) Reachable(id uint64) bool { return id == s.cfg.Self.ID || s.tr.Connected(id) }

// GroupStatus returns group id's Raft status on this node.
func (s *Service) GroupStatus(ctx context.Context, id uint64) (raft.Status, error) {
	return s.node.Status(ctx, id)
}

// Campaign makes this node stand for group id's leadership now (a new
// quorum queue's leader is the node its client declared it on, as
// RabbitMQ's client-local locator).
func (n *Node) Campaign(ctx context.Context, id uint64) error {
	return n.withGroup(ctx, id, func(g *group) error {
		g.stepped = true
		g.wake()
		g.askCampaign()
		return nil
	})
}

// askCampaign campaigns for g now, or as soon as raft allows. Loop
// goroutine.
func (g *group) askCampaign() {
	g.campaign = true
	g.campaignAgain()
}

// campaignAgain campaigns for g if it still wants to: while no leader
// is known and raft has refused the campaign (it says nothing, but for a
// log line, when configuration changes are still to be applied). Loop
// goroutine.
func (g *group) campaignAgain() {
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateFollower || st.Lead != 0 {
		g.campaign = false
		return
	}
	if st.Applied < st.GetCommit() {
		return // raft would refuse: after the next apply
	}
	_ = g.rn.Campaign()
	g.campaign = g.rn.BasicStatus().RaftState == raft.StateFollower
}

// TransferTo asks group id's leadership to move to node to. Any member
// may ask: a follower forwards it to the leader (raft does).
func (n *Node) TransferTo(ctx context.Context, id, to uint64) error {
	return n.withGroup(ctx, id, func(g *group) error {
		g.stepped = true
		g.wake()
		g.rn.TransferLeader(to)
		return nil
	})
}

// Groups returns the ids of the groups this node runs.
func (n *Node) Groups(ctx context.Context) ([]uint64, error) {
	var ids []uint64
	err := n.do(ctx, func() {
		for id := range n.groups {
			ids = append(ids, id)
		}
	})
	slices.Sort(ids)
	return ids, err
}

// Campaign makes this node stand for group id's leadership.
func (s *Service) Campaign(ctx context.Context, id uint64) error { return s.node.Campaign(ctx, id) }

// TransferTo asks group id's leadership to move to node to.
func (s *Service) TransferTo(ctx context.Context, id, to uint64) error {
	return s.node.TransferTo(ctx, id, to)
}

// ErrCatchingUp is returned by AddMember for a learner whose log has not
// yet caught up with the group's: nothing is proposed, and a later call
// promotes it.
var ErrCatchingUp = errors.New("cluster: the member is still catching up")

// ErrNotLeader is returned by AddMember for a learner on a node that
// does not lead its group, which alone knows its progress.
var ErrNotLeader = errors.New("cluster: not the group's leader")

// SetVoter proposes adding node as a voter of group (add), or removing it
// (a voter or a learner): a quorum queue's group follows the cluster's
// membership. It returns once proposed (ErrChangePending while an earlier
// change of the group is not applied here, ErrLastMember for the last
// voter). An add is AddMember's steps.
func (s *Service) SetVoter(ctx context.Context, group, node uint64, add bool) error {
	if add {
		return s.node.AddMember(ctx, group, node)
	}
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(node)}}}
	return s.node.ProposeConfChange(ctx, group, cc)
}

// AddMember takes node one step into group, as RabbitMQ 4.x adds a
// quorum queue's member (promotable, then voter): a node outside the
// group joins it as a learner, which the leader brings up to date
// (entries, or a snapshot) without counting it in any majority; a later
// call, once the learner's log has reached the group's commit index of
// the time it joined, promotes it to voter, and before that returns
// ErrCatchingUp. So a member that must catch up on a long log never
// makes the group wait for it. Only the leader knows the learners'
// progress: elsewhere a learner is not promoted (ErrNotLeader). A voter
// is left as it is.
func (n *Node) AddMember(ctx context.Context, id, node uint64) error {
	return n.withGroup(ctx, id, func(g *group) error {
		if slices.Contains(g.conf.GetVoters(), node) {
			return nil
		}
		t := pb.ConfChangeType_ConfChangeAddLearnerNode
		if slices.Contains(g.conf.GetLearners(), node) {
			st := g.rn.Status()
			if st.RaftState != raft.StateLeader {
				return ErrNotLeader
			}
			want, ok := g.caughtUpAt[node]
			if !ok {
				// It joined under another leader: this one's commit
				// index will do.
				want = st.GetCommit()
				g.setCaughtUpAt(node, want)
			}
			if st.Progress[node].Match < want {
				return ErrCatchingUp
			}
			t = pb.ConfChangeType_ConfChangeAddNode
		}
		cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: t.Enum(), NodeId: proto.Uint64(node)}}}
		if err := n.proposeConfChange(g, cc); err != nil {
			return err
		}
		if t == pb.ConfChangeType_ConfChangeAddNode {
			delete(g.caughtUpAt, node)
		} else {
			g.setCaughtUpAt(node, g.rn.Status().GetCommit())
		}
		return nil
	})
}

// setCaughtUpAt records the index learner's log must reach (AddMember).
func (g *group) setCaughtUpAt(learner, index uint64) {
	if g.caughtUpAt == nil {
		g.caughtUpAt = map[uint64]uint64{}
	}
	g.caughtUpAt[learner] = index
}
