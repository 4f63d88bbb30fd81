// Package cluster runs a node's Raft groups (go.etcd.io/raft/v3): one
// group per quorum queue and one for metadata, all driven by one loop per
// node (multi-raft) over one shared log (package raftlog).
//
// # The driver loop
//
// Node.run is the only goroutine that touches the groups' RawNodes, their
// state machines and the Log. Everything else reaches it through
// channels: Step (the transport's goroutines), Propose, AddGroup, Status
// and the Report calls. One round of the loop:
//
//  1. waits for a tick, an inbound message, a proposal or a request, then
//     takes whatever else is already queued (up to a bound);
//  2. collects the Ready of every group that has one, and sends a
//     leader's appends and heartbeats at once when its Ready keeps the
//     term and vote on disk (see round), and applies the committed
//     entries already on disk (appliesEarly), so that a leader's confirms
//     do not wait for the fsync of the next batch;
//  3. persists: every group's snapshot, entries and hard state go into one
//     raftlog.Batch, written with one write and one fdatasync;
//  4. sends: all the rounds' other messages, grouped by destination node, one
//     Transport.Send per node;
//  5. applies: each group's received snapshot, then its committed entries
//     (conf changes to the RawNode, the rest to its StateMachine), then
//     Advance; a group that has applied SnapshotEvery entries since its
//     last snapshot is snapshotted and its log compacted.
//
// Persist before send is what Raft requires of a follower (its votes and
// acks must survive a crash); a leader may replicate what it has not yet
// synced, since raft counts its own copy only once persisted; applying
// only what is on disk keeps a state machine from running ahead of what
// survives a restart.
//
// # Around the loop
//
// TCPTransport (transport.go) carries the messages between nodes, one
// connection per pair. Service (service.go) is what amqp-server run
// starts when cluster.peers is set: the log, the transport, the Node and
// the metadata group (MetadataGroup), whose state machine holds the
// members (changed by conf changes: AddMember, RemoveMember) and only
// counts other entries so far. See docs/clustering.md.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/shared/raftlog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// GroupMessage is a Raft message of one group.
type GroupMessage struct {
	Group   uint64
	Message *pb.Message
}

// Transport carries messages between nodes. Send is called by the driver
// loop only, after the messages' state is durable (a leader's appends and
// heartbeats: while it is being persisted, see round); it must not block on
// the network (queue, or drop: Raft retransmits). It owns msgs.
type Transport interface {
	Send(to uint64, msgs []GroupMessage)
}

// StateMachine is a group's replicated state. The driver loop calls its
// methods, one at a time, in log order.
type StateMachine interface {
	// Apply applies the committed normal entry at index.
	Apply(index uint64, data []byte)
	// Snapshot returns the state as of the last applied entry.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's.
	Restore(data []byte) error
}

// ConfChangeApplier is a StateMachine that also sees its group's
// membership changes: ApplyConfChange is called, in log order with Apply,
// for every committed conf change (the bootstrap's among them), with the
// configuration after it.
type ConfChangeApplier interface {
	ApplyConfChange(index uint64, cc *pb.ConfChangeV2, conf *pb.ConfState)
}

// Config configures a Node.
type Config struct {
	// ID is the node's Raft id in every group; not 0.
	ID uint64
	// Log is the node's Raft log; the Node uses it alone until Stop
	// returns, and the caller closes it after.
	Log       *raftlog.Log
	Transport Transport
	// Reachable, if set, reports whether this node has a connection to
	// node id: a quiet group whose leader is unreachable ticks again, so
	// its followers elect another (quiesce.go). Without it groups never
	// go quiet.
	Reachable func(id uint64) bool
	// TickInterval is one Raft tick (default 100ms); an election takes
	// ElectionTicks (default 10) to HeartbeatTicks (default 1) ticks.
	TickInterval                  time.Duration
	ElectionTicks, HeartbeatTicks int
	// SnapshotEvery: snapshot a group and compact its log after this
	// many applied entries (default 10000).
	SnapshotEvery uint64
	// Logger is raft's logger (default: discard).
	Logger raft.Logger
}

// Node runs the Raft groups of one node. Its methods are safe for
// concurrent use; all of them but Step wait for the loop.
type Node struct {
	cfg      Config
	inbox    chan []GroupMessage
	requests chan func()
	stop     chan struct{}
	done     chan struct{}

	reportMu  sync.Mutex
	reports   []report   // (reportMu) transport feedback for the loop
	proposals []proposal // (reportMu) ProposeAsync's, for the loop
	spare     []proposal // (run) the last round's proposals, emptied
	// (run) takeProposals' scratch: each group's proposals, and the
	// groups in the order they first proposed.
	propGroups map[uint64][]int
	propOrder  []uint64
	wake       chan struct{} // capacity 1: reports are waiting

	groups map[uint64]*group // (run)
	batch  raftlog.Batch     // (run)
	failed error             // (run) written before done is closed
}

// report is transport feedback: node to was unreachable (in every
// group), or, with snapshot set, group's snapshot to it finished.
type report struct {
	group, to    uint64
	snapshot, ok bool
}

// group is one Raft group on this node. Owned by run.
type group struct {
	id       uint64
	rn       *raft.RawNode
	sm       StateMachine
	conf     *pb.ConfState
	applied  uint64
	snapshot uint64 // index of the last snapshot taken or restored
	stepped  bool   // has input since its last Ready check
	lead     uint64 // the leader last told to a LeaderObserver
	// quiet: an idle group that does not tick (quiesce.go); idle counts
	// the leader's ticks with nothing to replicate.
	quiet    bool
	idle     int
	snapping bool // a SnapshotLater's encoding runs
	// campaign: Campaign was asked for while raft refused it (a new
	// group's initial configuration not yet applied); it is asked again
	// once that is applied, rather than after an election timeout.
	campaign  bool
	quietAcks map[uint64]bool // followers that answered the marked heartbeat
	// term and vote are the HardState's last persisted here (hsKnown:
	// since this start): a leader's round that keeps them sends its
	// appends before it persists (see round).
	term, vote uint64
	hsKnown    bool
	// caughtUpAt, on a leader, is the index each learner's log must
	// reach before AddMember promotes it (see there).
	caughtUpAt map[uint64]uint64
}

// ErrStopped is returned by calls on a stopped Node.
var ErrStopped = errors.New("cluster: node stopped")

// ErrNoGroup is returned for a group the node does not run.
var ErrNoGroup = errors.New("cluster: no such group on this node")

// Start starts the node's loop.
func Start(cfg Config) (*Node, error) {
	if cfg.ID == 0 {
		return nil, errors.New("cluster: node id 0")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks <= 0 {
		cfg.HeartbeatTicks = 1
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	}
	n := &Node{cfg: cfg, inbox: make(chan []GroupMessage, 1024), requests: make(chan func()),
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1), groups: map[uint64]*group{}}
	go n.run()
	return n, nil
}

// Stop stops the loop and waits for it. What was persisted stays
// persisted; nothing else is flushed (a stop is as good as a crash
// between two rounds).
func (n *Node) Stop() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	<-n.done
}

// do runs f on the loop and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case n.requests <- func() { f(); close(ran) }:
	case <-n.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-n.done:
		return ErrStopped
	}
}

// AddGroup starts group id on this node with sm as its state machine. If
// the log holds nothing of the group it is bootstrapped with peers (node
// ids, this one among them); otherwise its state comes from the log (the
// latest snapshot restored into sm, the entries after it applied again).
func (n *Node) AddGroup(ctx context.Context, id uint64, peers []uint64, sm StateMachine) error {
	ps := make([]raft.Peer, len(peers))
	for i, p := range peers {
		ps[i] = raft.Peer{ID: p}
	}
	return n.AddGroupWithContexts(ctx, id, ps, sm)
}

// AddGroupWithContexts is AddGroup with a Context for each bootstrap peer,
// which a ConfChangeApplier gets with the bootstrap's conf changes. No
// peers and an empty log: the group waits for a leader to add this node.
func (n *Node) AddGroupWithContexts(ctx context.Context, id uint64, peers []raft.Peer, sm StateMachine) error {
	var err error
	if derr := n.do(ctx, func() { err = n.addGroup(id, peers, sm) }); derr != nil {
		return derr
	}
	return err
}

func (n *Node) addGroup(id uint64, peers []raft.Peer, sm StateMachine) error {
	if n.groups[id] != nil {
		return fmt.Errorf("cluster: group %d already runs", id)
	}
	st := n.cfg.Log.Group(id)
	snap, err := st.Snapshot()
	if err != nil {
		return err
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return err
	}
	last, _ := st.LastIndex()
	g := &group{id: id, sm: sm, conf: cs, applied: snap.GetMetadata().GetIndex(), snapshot: snap.GetMetadata().GetIndex()}
	if len(snap.GetData()) > 0 {
		if err := sm.Restore(snap.GetData()); err != nil {
			return fmt.Errorf("cluster: group %d: restoring snapshot %d: %w", id, g.applied, err)
		}
	}
	g.rn, err = raft.NewRawNode(&raft.Config{
		ID: n.cfg.ID, ElectionTick: n.cfg.ElectionTicks, HeartbeatTick: n.cfg.HeartbeatTicks,
		Storage: st, Applied: g.applied,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum: true, PreVote: true, StepDownOnRemoval: true, Logger: n.groupLogger(id),
	})
	if err != nil {
		return err
	}
	if last == 0 && raft.IsEmptyHardState(hs) && g.snapshot == 0 && len(peers) > 0 {
		if err := g.rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("cluster: group %d: %w", id, err)
		}
	}
	g.stepped = true
	n.groups[id] = g
	if len(g.conf.GetVoters()) > 0 {
		noteVoters(g) // from its log; a bootstrap's come as conf changes
	}
	return nil
}

// groupLogger is group id's raft logger: the node's, tagged with the
// group when it can be.
func (n *Node) groupLogger(id uint64) raft.Logger {
	if l, ok := n.cfg.Logger.(interface{ forGroup(uint64) raft.Logger }); ok {
		return l.forGroup(id)
	}
	return n.cfg.Logger
}

// Step hands messages received from another node to the loop. It does
// not wait: when the loop is far behind they are dropped, as a lossy
// network would.
func (n *Node) Step(msgs []GroupMessage) {
	select {
	case n.inbox <- msgs:
	default:
	}
}

// Propose proposes data to group id. It returns once the group's leader
// (this node, or the one it forwards to) has it, not once it commits;
// raft.ErrProposalDropped means there is no leader to take it now.
func (n *Node) Propose(ctx context.Context, id uint64, data []byte) error {
	return n.withGroup(ctx, id, func(g *group) error {
		g.stepped = true
		g.wake()
		return g.rn.Propose(data)
	})
}

// TransferLeadership asks group id, if this node leads it, to hand its
// leadership to the voter whose log is furthest along among those heard
// from recently (raft's leadership transfer: the transferee campaigns at
// once, without waiting for an election timeout). It reports the
// transferee, 0 when this node does not lead or has no such voter.
func (n *Node) TransferLeadership(ctx context.Context, id uint64) (uint64, error) {
	var to uint64
	err := n.withGroup(ctx, id, func(g *group) error {
		st := g.rn.Status()
		if st.RaftState != raft.StateLeader {
			return nil
		}
		var best uint64
		for pid, pr := range st.Progress {
			if pid != n.cfg.ID && !pr.IsLearner && pr.RecentActive && (to == 0 || pr.Match > best) {
				to, best = pid, pr.Match
			}
		}
		if to != 0 {
			g.stepped = true
			g.wake()
			g.rn.TransferLeader(to)
		}
		return nil
	})
	return to, err
}

// ErrChangePending is returned by ProposeConfChange while an earlier
// membership change of the group is not yet applied here: Raft takes one
// at a time.
var ErrChangePending = errors.New("cluster: another membership change is not yet applied")

// ErrLastMember is returned by ProposeConfChange for a change that
// removes a group's last voter.
var ErrLastMember = errors.New("cluster: cannot remove the last member")

// ProposeConfChange proposes a membership change to group id, like
// Propose. It returns ErrChangePending when this node's log holds a conf
// change it has not applied yet (on a leader, one raft would ignore).
func (n *Node) ProposeConfChange(ctx context.Context, id uint64, cc *pb.ConfChangeV2) error {
	return n.withGroup(ctx, id, func(g *group) error { return n.proposeConfChange(g, cc) })
}

// proposeConfChange is ProposeConfChange on the loop.
func (n *Node) proposeConfChange(g *group, cc *pb.ConfChangeV2) error {
	st := n.cfg.Log.Group(g.id)
	last, err := st.LastIndex()
	if err != nil {
		return err
	}
	if last > g.applied {
		ents, err := st.Entries(g.applied+1, last+1, math.MaxUint64)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.GetType() != pb.EntryNormal {
				return ErrChangePending
			}
		}
	}
	for _, c := range cc.GetChanges() {
		if c.GetType() == pb.ConfChangeType_ConfChangeRemoveNode && slices.Equal(g.conf.GetVoters(), []uint64{c.GetNodeId()}) {
			return ErrLastMember // raft would panic applying it
		}
	}
	g.stepped = true
	g.wake()
	return g.rn.ProposeConfChange(cc)
}

// ConfState returns group id's membership as last applied on this node.
func (n *Node) ConfState(ctx context.Context, id uint64) (cs *pb.ConfState, err error) {
	err = n.withGroup(ctx, id, func(g *group) error {
		cs = proto.Clone(g.conf).(*pb.ConfState)
		return nil
	})
	return cs, err
}

// Status returns group id's Raft status.
func (n *Node) Status(ctx context.Context, id uint64) (st raft.Status, err error) {
	err = n.withGroup(ctx, id, func(g *group) error {
		st = g.rn.Status()
		return nil
	})
	return st, err
}

// withGroup runs f with group id on the loop and returns its error.
func (n *Node) withGroup(ctx context.Context, id uint64, f func(*group) error) error {
	err := ErrNoGroup
	if derr := n.do(ctx, func() {
		if g := n.groups[id]; g != nil {
			err = f(g)
		}
	}); derr != nil {
		return derr
	}
	return err
}

// ReportUnreachable tells every group that node to could not be reached
// (the transport calls it when a send fails). It never blocks, so the
// transport may call it from Send.
func (n *Node) ReportUnreachable(to uint64) { n.report(report{to: to}) }

// ReportSnapshot tells group id whether its snapshot reached node to; the
// transport must call it for every snapshot message it was given, or the
// group never sends that node anything else. It never blocks.
func (n *Node) ReportSnapshot(id, to uint64, ok bool) {
	n.report(report{group: id, to: to, snapshot: true, ok: ok})
}

func (n *Node) report(r report) {
	n.reportMu.Lock()
	n.reports = append(n.reports, r)
	n.reportMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// takeReports hands the waiting transport feedback to the groups.
func (n *Node) takeReports() {
	n.reportMu.Lock()
	rs := n.reports
	n.reports = nil
	n.reportMu.Unlock()
	for _, r := range rs {
		switch {
		case r.snapshot:
			if g := n.groups[r.group]; g != nil {
				status := raft.SnapshotFinish
				if !r.ok {
					status = raft.SnapshotFailure
				}
				g.rn.ReportSnapshot(r.to, status)
				g.stepped = true
			}
		default:
			for _, g := range n.groups {
				g.rn.ReportUnreachable(r.to)
			}
		}
	}
}

// maxDrain bounds the inputs one round takes before it persists.
const maxDrain = 256

// Done is closed when the loop has ended: after Stop, or when the log
// failed (Err says why).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the loop ended on its own (a log failure); nil while
// it runs or after Stop. Call it after Done is closed.
func (n *Node) Err() error {
	select {
	case <-n.done:
		return n.failed
	default:
		return nil
	}
}

// run is the driver loop; see the package documentation. Every tick
// ticks every group (idle groups are not free yet: quiescing them is to
// come).
func (n *Node) run() {
	defer close(n.done)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	busy := false // a group had more to do after the last round
	for {
		if busy {
			// More to apply: no waiting, but time still passes.
			select {
			case <-n.stop:
				return
			case <-ticker.C:
				n.tick()
			default:
			}
		} else {
			select {
			case <-n.stop:
				return
			case <-ticker.C:
				n.tick()
			case msgs := <-n.inbox:
				n.step(msgs)
			case f := <-n.requests:
				f()
			case <-n.wake:
			}
		}
	drain:
		for range maxDrain {
			select {
			case msgs := <-n.inbox:
				n.step(msgs)
			case f := <-n.requests:
				f()
			default:
				break drain
			}
		}
		n.takeReports()
		n.takeProposals()
		err := n.failed // a snapshot stored off a request (snapshotDone)
		if err == nil {
			busy, err = n.round()
		}
		if err != nil {
			// The log failed: nothing more can be made durable, so the
			// node must not vote or ack again.
			n.cfg.Logger.Errorf("cluster: node %d stops: %v", n.cfg.ID, err)
			n.failed = err
			return
		}
	}
}

func (n *Node) tick() {
	for _, g := range n.groups {
		if g.quiet && !n.wakesQuiet(g) {
			continue
		}
		g.rn.Tick()
		g.stepped = true
		n.maybeQuiesce(g)
	}
}

func (n *Node) step(msgs []GroupMessage) {
	for _, m := range msgs {
		g := n.groups[m.Group]
		if g == nil {
			continue // not (yet) running here
		}
		if !n.heard(g, m.Message) {
			continue
		}
		_ = g.rn.Step(m.Message) // errors are for local messages and stale peers
		g.stepped = true
	}
}

type ready struct {
	g  *group
	rd raft.Ready
	// early: its appends and heartbeats went out before the persist.
	early bool
	// applied: how many of its CommittedEntries were applied before the
	// persist (appliesEarly).
	applied int
}

// round persists, sends and applies the Ready of every group that has
// one, and reports whether a group has more (committed entries beyond one
// Ready's size limit, say).
//
// A leader's appends and heartbeats go out before the round's fsync
// rather than after it (the Raft thesis, 10.2.1; etcd's server does the
// same), so that the leader's fsync and its followers' overlap: raft
// counts the leader's own copy of an entry only once Advance reports it
// persisted, so nothing commits on the leader's unsynced disk. This holds
// only while the round keeps the term and vote already on disk; any
// other message (a follower's acknowledgement, a vote) waits for the
// fsync.
func (n *Node) round() (more bool, err error) {
	var rds []ready
	for _, g := range n.groups {
		if !g.stepped {
			continue
		}
		g.stepped = false
		if g.rn.HasReady() {
			rds = append(rds, ready{g: g, rd: g.rn.Ready()})
		}
	}
	if len(rds) == 0 {
		return false, nil
	}
	// Send a leader's appends.
	out := map[uint64][]GroupMessage{}
	for i := range rds {
		r := &rds[i]
		if r.early = sendsEarly(r); !r.early {
			continue
		}
		for _, m := range r.rd.Messages {
			if t := m.GetType(); t == pb.MsgApp || t == pb.MsgHeartbeat {
				out[m.GetTo()] = append(out[m.GetTo()], GroupMessage{Group: r.g.id, Message: m})
			}
		}
	}
	n.send(out)
	// Apply what this node has already persisted.
	for i := range rds {
		r := &rds[i]
		r.applied = n.appliesEarly(r)
		if r.applied > 0 {
			if _, err := n.applyEntries(r.g, r.rd.CommittedEntries[:r.applied]); err != nil {
				return false, err
			}
		}
	}
	// Persist.
	n.batch.Reset()
	for _, r := range rds {
		if !raft.IsEmptySnap(r.rd.Snapshot) {
			n.batch.ApplySnapshot(r.g.id, r.rd.Snapshot)
		}
		n.batch.Append(r.g.id, r.rd.Entries)
		if r.rd.HardState != nil && !raft.IsEmptyHardState(r.rd.HardState) {
			n.batch.SetHardState(r.g.id, r.rd.HardState)
		}
	}
	if err := n.cfg.Log.Commit(&n.batch); err != nil {
		return false, err
	}
	n.batch.Reset()
	// Send the rest.
	for _, r := range rds {
		if hs := r.rd.HardState; hs != nil && !raft.IsEmptyHardState(hs) {
			r.g.term, r.g.vote, r.g.hsKnown = hs.GetTerm(), hs.GetVote(), true
		}
		for _, m := range r.rd.Messages {
			if t := m.GetType(); r.early && (t == pb.MsgApp || t == pb.MsgHeartbeat) {
				continue
			}
			out[m.GetTo()] = append(out[m.GetTo()], GroupMessage{Group: r.g.id, Message: m})
		}
	}
	n.send(out)
	// Apply.
	for _, r := range rds {
		n.noteLeader(r.g, r.rd.SoftState)
		if err := n.apply(r.g, &r.rd, r.applied); err != nil {
			return false, err
		}
		r.g.rn.Advance(r.rd)
		if r.g.campaign {
			r.g.campaignAgain()
		}
		if r.g.rn.HasReady() {
			r.g.stepped, more = true, true
		}
	}
	return more, nil
}

// sendsEarly reports whether r's appends and heartbeats may be sent
// before r is persisted: it has no snapshot, and its HardState, if any,
// keeps the term and vote this node persisted last. (Only a leader sends
// appends and heartbeats.)
func sendsEarly(r *ready) bool {
	if !raft.IsEmptySnap(r.rd.Snapshot) {
		return false
	}
	hs := r.rd.HardState
	if hs == nil || raft.IsEmptyHardState(hs) {
		return true
	}
	return r.g.hsKnown && hs.GetTerm() == r.g.term && hs.GetVote() == r.g.vote
}

// appliesEarly reports how many of r's committed entries may be applied
// before r is persisted: those, from the first, that are plain entries
// already in this node's stable log (below r's own new entries, which
// raft may hand over committed in the same Ready; a follower learns the
// commit index with the entries). A leader learns that an entry commits
// only once its own copy is persisted, so its confirms then go out without
// waiting for the round's fsync of the next batch. Nothing is applied
// early in a Ready with a snapshot or a leader change, whose order
// against the entries matters.
func (n *Node) appliesEarly(r *ready) int {
	ents := r.rd.CommittedEntries
	if len(ents) == 0 || !raft.IsEmptySnap(r.rd.Snapshot) ||
		r.rd.SoftState != nil && r.rd.SoftState.Lead != r.g.lead {
		return 0
	}
	stable, err := n.cfg.Log.Group(r.g.id).LastIndex()
	if err != nil {
		return 0
	}
	if len(r.rd.Entries) > 0 {
		stable = min(stable, r.rd.Entries[0].GetIndex()-1)
	}
	k := 0
	for k < len(ents) && ents[k].GetIndex() <= stable && ents[k].GetType() == pb.EntryNormal {
		k++
	}
	return k
}

// send hands out's messages to the transport, a node at a time in id
// order, and empties out.
func (n *Node) send(out map[uint64][]GroupMessage) {
	if len(out) == 0 {
		return
	}
	tos := make([]uint64, 0, len(out))
	for to := range out {
		tos = append(tos, to)
	}
	slices.Sort(tos)
	for _, to := range tos {
		n.cfg.Transport.Send(to, out[to])
	}
	clear(out)
}

// apply applies rd to g after it is persisted: its snapshot, then its
// committed entries from the skip'th (those before went early), then a
// snapshot of g if one is due.
func (n *Node) apply(g *group, rd *raft.Ready, skip int) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		md := rd.Snapshot.GetMetadata()
		if err := g.sm.Restore(rd.Snapshot.GetData()); err != nil {
			return fmt.Errorf("cluster: group %d: restoring snapshot %d: %w", g.id, md.GetIndex(), err)
		}
		g.conf = proto.Clone(md.GetConfState()).(*pb.ConfState)
		g.applied, g.snapshot = md.GetIndex(), md.GetIndex()
		noteVoters(g)
	}
	confChanged, err := n.applyEntries(g, rd.CommittedEntries[skip:])
	if err != nil {
		return err
	}
	// After a conf change, a group with a snapshot takes a new one: raft
	// sends a lagging follower the stored snapshot, and a node just added
	// ignores one whose configuration does not have it.
	if g.snapping {
		return nil
	}
	every := n.cfg.SnapshotEvery
	if p, ok := g.sm.(SnapshotPacer); ok {
		every = max(every, p.SnapshotAfter())
	}
	if g.applied-g.snapshot >= every || confChanged && g.snapshot > 0 && g.applied > g.snapshot {
		return n.snapshot(g)
	}
	return nil
}

// applyEntries applies committed entries to g in order: conf changes to
// its RawNode, the rest to its state machine. It reports whether one was
// a conf change.
func (n *Node) applyEntries(g *group, ents []*pb.Entry) (confChanged bool, err error) {
	for _, e := range ents {
		confChanged = confChanged || e.GetType() != pb.EntryNormal
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.GetData()) > 0 { // empty: a new leader's first entry
				g.sm.Apply(e.GetIndex(), e.GetData())
			}
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return confChanged, fmt.Errorf("cluster: group %d: conf change %d: %w", g.id, e.GetIndex(), err)
			}
			n.applyConfChange(g, e.GetIndex(), cc.AsV2())
		case pb.EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return confChanged, fmt.Errorf("cluster: group %d: conf change %d: %w", g.id, e.GetIndex(), err)
			}
			n.applyConfChange(g, e.GetIndex(), &cc)
		}
		g.applied = e.GetIndex()
	}
	return confChanged, nil
}

func (n *Node) applyConfChange(g *group, index uint64, cc *pb.ConfChangeV2) {
	g.conf = g.rn.ApplyConfChange(cc)
	if a, ok := g.sm.(ConfChangeApplier); ok {
		a.ApplyConfChange(index, cc, proto.Clone(g.conf).(*pb.ConfState))
	}
	noteVoters(g)
}

// snapshot snapshots g at its applied index and compacts its log up to
// the previous snapshot: the entries between stay for followers a little
// behind, who would otherwise need the whole snapshot.
func (n *Node) snapshot(g *group) error {
	if later, ok := g.sm.(SnapshotLater); ok {
		n.snapshotLater(g, later)
		return nil
	}
	data, err := g.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("cluster: group %d: snapshot: %w", g.id, err)
	}
	return n.storeSnapshot(g, g.applied, g.conf, data)
}

// storeSnapshot stores g's snapshot at index and compacts its log up to
// the previous snapshot.
func (n *Node) storeSnapshot(g *group, index uint64, conf *pb.ConfState, data []byte) error {
	if _, err := n.cfg.Log.CreateSnapshot(g.id, index, conf, data); err != nil {
		return err
	}
	prev := g.snapshot
	g.snapshot = index
	if first, _ := n.cfg.Log.Group(g.id).FirstIndex(); prev >= first {
		return n.cfg.Log.Compact(g.id, prev)
	}
	return nil
}
