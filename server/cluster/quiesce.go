package cluster

import (
	"context"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Quiet groups. A node runs a group per quorum queue; ticking every one
// of them, and their leaders heartbeating every follower, would cost an
// idle cluster CPU in proportion to its queues. So a group with nothing
// to do goes quiet, as CockroachDB's ranges quiesce: its leader, once
// every voter has the whole log, committed and applied, for quiesceAfter
// ticks, sends each follower a heartbeat marked quiesceContext (which
// carries the commit index) every tick until each has answered it, and
// then stops ticking; a follower that gets it stops ticking too. (A
// marked heartbeat can be lost, dropped by a follower's full inbox: going
// quiet without its answer could leave that follower without the last
// commit index for good.) Any message
// of the group other than a heartbeat (a proposal forwarded, entries to
// append, a vote) and any local proposal, campaign or transfer wakes it.
// A follower whose quiet leader's node it no longer reaches (the
// transport's connection is gone: a crash, a cut link) ticks again, and
// elects another leader after an election timeout. The metadata group
// never goes quiet.

// quiesceContext marks the heartbeat that quiets a follower.
const quiesceContext = "amqp-go:quiesce"

// Removed members. A voter removed from a queue's group (shaped by hand,
// the node staying in the cluster) is often never told: the leader drops
// it from its progress as it applies the removal, before a heartbeat
// carries the commit, so it keeps its log without the commit, or without
// the removal at all, and stands for elections in vain (the members, in
// their leader's lease, ignore it), for good. As etcd's members answer a
// removed member, a voter that hears a vote or pre-vote from a node its
// applied configuration does not have answers with a heartbeat marked
// removedContext, which the removed node does not step: it goes quiet
// (no ticks, no campaigns) until a message of the group other than a
// heartbeat wakes it (its leader's, should it be added again). Applied
// means committed, so the removal is sure; a node being added whose
// addition this voter has not applied yet goes quiet as well, which is
// harmless: the leader's entries wake it. The metadata group's removed
// members are refused by the transport instead.
const removedContext = "amqp-go:removed"

// quiesceAfter is how many idle ticks a leader waits before it quiets
// its group.
const quiesceAfter = 3

// wake makes g tick again.
func (g *group) wake() {
	g.quiet, g.idle = false, 0
	clear(g.quietAcks)
}

// heard notes message m of g, before it is stepped, and reports whether
// to step it: the leader's marked heartbeat quiets a follower; the
// answer to it is dropped (raft would take its context for a read
// index's); anything but a heartbeat wakes the group.
func (n *Node) heard(g *group, m *pb.Message) bool {
	if g.id != MetadataGroup && n.removedPeer(g, m) {
		return false
	}
	marked := string(m.GetContext()) == quiesceContext
	switch m.GetType() {
	case pb.MessageType_MsgHeartbeat:
		if marked && g.id != MetadataGroup {
			g.quiet = true
		}
	case pb.MessageType_MsgHeartbeatResp:
		if marked && g.idle >= quiesceAfter {
			if g.quietAcks == nil {
				g.quietAcks = map[uint64]bool{}
			}
			g.quietAcks[m.GetFrom()] = true
		}
		return !marked
	default:
		g.wake()
	}
	return true
}

// removedPeer answers, and reports, a removed member's campaign for g
// (removedContext), and quiets g when it is this node's notice.
func (n *Node) removedPeer(g *group, m *pb.Message) bool {
	switch m.GetType() {
	case pb.MessageType_MsgHeartbeat:
		if string(m.GetContext()) != removedContext {
			return false
		}
		g.quiet, g.idle = true, 0
		return true
	case pb.MessageType_MsgPreVote, pb.MessageType_MsgVote:
		voters := g.conf.GetVoters()
		if !slices.Contains(voters, n.cfg.ID) || slices.Contains(voters, m.GetFrom()) {
			return false
		}
		hb := &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), To: proto.Uint64(m.GetFrom()), From: proto.Uint64(n.cfg.ID),
			Term: proto.Uint64(m.GetTerm()), Context: []byte(removedContext)}
		n.cfg.Transport.Send(m.GetFrom(), []GroupMessage{{Group: g.id, Message: hb}})
		return true
	}
	return false
}

// wakesQuiet reports whether quiet group g must tick again (its leader is
// unreachable), and wakes it then.
func (n *Node) wakesQuiet(g *group) bool {
	if n.cfg.Reachable == nil || g.lead == 0 || g.lead == n.cfg.ID || n.cfg.Reachable(g.lead) {
		return false
	}
	g.wake()
	return true
}

// maybeQuiesce quiets g, if this node leads it and it has been idle for
// quiesceAfter ticks, telling its followers.
func (n *Node) maybeQuiesce(g *group) {
	if n.cfg.Reachable == nil || g.id == MetadataGroup {
		return
	}
	bs := g.rn.BasicStatus()
	last, err := n.cfg.Log.Group(g.id).LastIndex()
	if err != nil || bs.RaftState != raft.StateLeader || bs.HardState.GetCommit() != last || bs.Applied != last {
		g.idle = 0
		return
	}
	caughtUp := true
	g.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
		if typ == raft.ProgressTypePeer && id != n.cfg.ID && (pr.Match != last || !pr.RecentActive || !n.cfg.Reachable(id)) {
			caughtUp = false
		}
	})
	if !caughtUp {
		g.idle = 0
		return
	}
	if g.idle++; g.idle < quiesceAfter {
		return
	}
	answered := true
	for _, to := range g.conf.GetVoters() {
		if to == n.cfg.ID || g.quietAcks[to] {
			continue
		}
		answered = false
		hb := &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), To: proto.Uint64(to), From: proto.Uint64(n.cfg.ID),
			Term: proto.Uint64(bs.HardState.GetTerm()), Commit: proto.Uint64(last), Context: []byte(quiesceContext)}
		n.cfg.Transport.Send(to, []GroupMessage{{Group: g.id, Message: hb}})
	}
	g.quiet = answered
}

// QuietGroups counts this node's quiet groups (tests).
func (n *Node) QuietGroups() (quiet, all int) {
	_ = n.do(context.Background(), func() {
		for _, g := range n.groups {
			all++
			if g.quiet {
				quiet++
			}
		}
	})
	return quiet, all
}

// QuietGroups counts this node's quiet groups and all its groups.
func (s *Service) QuietGroups() (quiet, all int) { return s.node.QuietGroups() }
