package broker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// QuorumGroups is what quorum queues need of the cluster
// (cluster.Service, through a shim that passes a GroupMachine on as its
// StateMachine: the broker does not import the cluster, whose tests use
// the broker): a Raft group per queue on this node, proposals to it, and
// who the members are.
type QuorumGroups interface {
	AddGroupOnLoop(id uint64, peers []uint64, sm GroupMachine) error
	RemoveGroupOnLoop(id uint64)
	ProposeAsync(id uint64, data []byte, dropped func())
	Self() uint64
	Voters() []uint64
	Reachable(id uint64) bool
	// MetadataLeader is the metadata group's leader as this node knows
	// it (0: none).
	MetadataLeader() uint64
	Campaign(ctx context.Context, id uint64) error
	TransferTo(ctx context.Context, id, to uint64) error
	SetVoter(ctx context.Context, group, node uint64, add bool) error
	// NodeName is this node's name; DialLink opens a node link to
	// member id (classic queues homed there).
	NodeName() string
	DialLink(ctx context.Context, id uint64) (net.Conn, error)
	// Done is closed when this node's part of the cluster has stopped
	// (its Raft log failed, or it was closed).
	Done() <-chan struct{}
}

// GroupMachine is a quorum queue's group's state machine, as the
// cluster's loop drives it (cluster.StateMachine and LeaderObserver).
type GroupMachine interface {
	Apply(index uint64, data []byte)
	Snapshot() ([]byte, error)
	Restore(data []byte) error
	LeaderChanged(lead uint64, self bool)
}

// MetadataGroup is the cluster's metadata group's id
// (cluster.MetadataGroup), which no queue's group may take.
const MetadataGroup = 1

// ReplicaQuorumQueues are the quorum queues' definitions: each queue's
// messages, consumers and deliveries are in a Raft group of its own, on
// every member (queue.Quorum).
const ReplicaQuorumQueues byte = 3

// quorumState is the server's side of its quorum queues' groups.
type quorumState struct {
	mu          sync.Mutex
	groups      QuorumGroups // nil: not in a cluster
	incarnation uint64       // this start's, unique per start
	stop        chan struct{}
	// kick asks watchMembers for a round now (a group shaped by hand,
	// quorummembers.go): buffered, one pending at most.
	kick chan struct{}
}

// UseGroups makes s's quorum queues replicated through g, from the first
// entry its metadata group applies (cluster.ServiceConfig.OnOpen): a
// quorum queue declared in the cluster is then a Raft group on every
// member. It starts the watch on members that leave (see watchMembers),
// which ends with s, and the one on the members' resource alarms (see
// watchAlarms).
func (s *Server) UseGroups(g QuorumGroups) {
	s.quorum.mu.Lock()
	defer s.quorum.mu.Unlock()
	if s.quorum.groups != nil {
		return
	}
	s.quorum.groups = g
	s.quorum.incarnation = uint64(time.Now().UnixNano())
	s.quorum.stop = make(chan struct{})
	s.quorum.kick = make(chan struct{}, 1)
	go s.watchMembers(g, s.quorum.stop, s.quorum.kick)
	go s.watchAlarms(g, s.quorum.stop)
}

// selfID is this node's id in its cluster (0: none).
func (s *Server) selfID() uint64 {
	if g := s.quorumGroups(); g != nil {
		return g.Self()
	}
	return 0
}

func (s *Server) quorumGroups() QuorumGroups {
	s.quorum.mu.Lock()
	defer s.quorum.mu.Unlock()
	return s.quorum.groups
}

// stopQuorum ends the watch (Close).
func (s *Server) stopQuorum() {
	s.quorum.mu.Lock()
	defer s.quorum.mu.Unlock()
	if s.quorum.stop != nil {
		close(s.quorum.stop)
		s.quorum.stop = nil
	}
}

// memberGoneAfter is how long the leader of a quorum queue waits for a
// member it has no connection to before it proposes the member's
// consumers gone and their unacked deliveries requeued.
const memberGoneAfter = 3 * time.Second

// watchMembers runs once a second, and when kicked: for each quorum queue
// this node leads, its group follows the members (followMembers) and the
// members with consumers there that it has not reached for
// memberGoneAfter are proposed down; for each queue, this node's former
// incarnations (before a restart) are proposed down too. The cluster's
// transient and exclusive classic queues get their round too
// (watchTransients).
func (s *Server) watchMembers(g QuorumGroups, stop <-chan struct{}, kick <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	unreachedSince := map[uint64]time.Time{}
	self := queue.Owner{Node: g.Self(), Incarnation: s.quorum.incarnation}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-kick:
		}
		now := time.Now()
		for id := range unreachedSince {
			if g.Reachable(id) {
				delete(unreachedSince, id)
			}
		}
		members := g.Voters()
		s.watchTransients(g, self.Incarnation, func(id uint64) time.Duration {
			since, ok := unreachedSince[id]
			if !ok {
				unreachedSince[id] = now
				return 0
			}
			return now.Sub(since)
		})
		s.eachQueue(nil, func(q *Queue) {
			if q.quorum == nil {
				return
			}
			leads := q.quorum.Leader()
			if leads {
				s.followMembers(g, q, members)
			}
			for _, o := range q.quorum.Owners() {
				switch {
				case o.Node == self.Node:
					if o.Incarnation < self.Incarnation {
						q.quorum.Down(self.Node, self.Incarnation)
					}
				case leads && !g.Reachable(o.Node):
					since, ok := unreachedSince[o.Node]
					if !ok {
						unreachedSince[o.Node] = now
					} else if now.Sub(since) >= memberGoneAfter {
						q.quorum.Down(o.Node, ^uint64(0))
					}
				}
			}
		})
	}
}

// followMembers keeps q's group's voters among the cluster's members, up
// to the group's size, one change at a time (raft takes one at a time;
// the next waits for the next round): a member the group was shaped to
// by hand joins it (quorummembers.go); a group over its size loses a
// voter it was not shaped to (after its consumers there are proposed
// down, and, for this node, once another leads); while the group is
// short of its size, a member outside it joins it, and gets the queue
// from a snapshot (until then it forwards its clients' commands to the
// group); a node that left the cluster leaves the group. A member joins
// as a learner, which votes once it has caught up (the cluster's
// AddMember, a step a round); a learner no longer wanted goes. The
// leader, which calls it, never removes itself.
func (s *Server) followMembers(g QuorumGroups, q *Queue, members []uint64) {
	if len(members) == 0 {
		return
	}
	voters := q.voters()
	size, target := q.shape()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	learners := q.groupLearners()
	change := func(id uint64, add bool) {
		if err := g.SetVoter(ctx, q.group, id, add); err == nil {
			what := "cluster: a quorum queue's group loses a member"
			switch {
			case add && slices.Contains(learners, id):
				what = "cluster: a quorum queue's member has caught up and votes"
			case add:
				what = "cluster: a quorum queue's group gains a member, which catches up before it votes"
			}
			s.logger.Info(what, "vhost", q.vhost.name, "queue", q.Name, "member", id)
		}
	}
	for _, id := range learners {
		// A learner is a member on its way in; one no longer wanted
		// (shaped out, the group full, or gone from the cluster) goes.
		wanted := slices.Contains(members, id)
		if target != nil {
			wanted = wanted && slices.Contains(target, id)
		} else {
			wanted = wanted && (size == 0 || len(voters) < size)
		}
		if !wanted {
			change(id, false)
			return
		}
	}
	for _, id := range target {
		if !slices.Contains(voters, id) && slices.Contains(members, id) {
			change(id, true)
			return
		}
	}
	if target != nil && len(voters) > size {
		for _, id := range voters {
			if slices.Contains(target, id) {
				continue
			}
			switch {
			case id == g.Self():
				// Another leads, then removes this node.
				if to := s.fewestLeaders(slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool {
					return !slices.Contains(target, v) || !g.Reachable(v)
				}), nil); to != 0 {
					_ = g.TransferTo(ctx, q.group, to)
				}
			case slices.ContainsFunc(q.quorum.Owners(), func(o queue.Owner) bool { return o.Node == id }):
				// Its consumers go (their unacked deliveries requeued)
				// before it does, which would leave them in the state.
				q.quorum.Down(id, ^uint64(0))
			default:
				change(id, false)
			}
			return
		}
	}
	for _, id := range members {
		if size > 0 && len(voters) >= size {
			break // full: a member outside the group forwards to it
		}
		if !slices.Contains(voters, id) {
			change(id, true)
			return
		}
	}
	for _, id := range voters {
		if id != g.Self() && !slices.Contains(members, id) {
			change(id, false)
			return
		}
	}
}

// quorumChange is a replicated queue's declaration or deletion: a quorum
// queue's, or (Home set) a classic queue's.
type quorumChange struct {
	VHost  string `json:"vhost"`
	Delete bool   `json:"delete,omitempty"`
	Queue  string `json:"queue"`
	// Arguments are the declaration's, encoded as AMQP encodes a table.
	Arguments []byte `json:"arguments,omitempty"`
	// Group is the queue's Raft group: a new id for each declaration, so
	// a queue declared again after a deletion never meets its
	// predecessor's log. Members are its voters.
	Group   uint64   `json:"group,omitempty"`
	Members []uint64 `json:"members,omitempty"`
	// Size is the group's target size (x-quorum-initial-group-size, or
	// defaultGroupSize); 0, in a declaration from before sizes: every
	// member of the cluster.
	Size int `json:"size,omitempty"`
	// Shape marks a change of an existing queue's group (Group), made by
	// hand: Target are the members it is to have, and Size becomes their
	// number (quorummembers.go). In a snapshot, Target is the queue's
	// last shape (nil: never shaped).
	Shape  bool     `json:"shape,omitempty"`
	Target []uint64 `json:"target,omitempty"`
	// Node, on a shape change, is the member it adds (Add) or removes:
	// applied to the queue's shape as it is then, so that changes made
	// at once by different nodes all take effect; Target, what the
	// proposer computed, is the shape of a queue never shaped before
	// (and of a change from before Node was kept).
	Node uint64 `json:"node,omitempty"`
	Add  bool   `json:"add,omitempty"`
	// Home and HomeName are a classic queue's home node, which holds
	// its messages; AutoDelete, Transient (not durable) and Exclusive
	// are its declaration's. Token names the declaration (an exclusive
	// queue's owner, on the home node, is the connection that proposed
	// it); Incarnation is the home node's start it was declared in: a
	// transient or exclusive queue does not outlive it.
	Home        uint64 `json:"home,omitempty"`
	HomeName    string `json:"home_name,omitempty"`
	AutoDelete  bool   `json:"auto_delete,omitempty"`
	Transient   bool   `json:"transient,omitempty"`
	Exclusive   bool   `json:"exclusive,omitempty"`
	Token       string `json:"token,omitempty"`
	Incarnation uint64 `json:"incarnation,omitempty"`
	// Of, on a deletion, is the Token of the declaration it deletes
	// ("": whichever queue has the name), so that a deletion the broker
	// proposes for its own reasons (transientqueues.go) never takes a
	// queue declared again meanwhile.
	Of string `json:"of,omitempty"`
}

// quorumGroupID derives a group id from the queue and the node and time
// of its declaration; it is never the metadata group's.
func quorumGroupID(vhost, name string, self uint64, at int64) uint64 {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d", vhost, name, self, at)
	id := binary.BigEndian.Uint64(h.Sum(nil))
	if id <= MetadataGroup {
		id += MetadataGroup + 1
	}
	return id
}

// declareQuorumReplicated declares a new quorum queue through the
// cluster: every member makes it, with its group.
func (v *VHost) declareQuorumReplicated(r Replicator, ch *DefChange, name string) (*Queue, error) {
	m := ch.method()
	g := v.server.quorumGroups()
	if g == nil {
		return nil, protoErr(amqp.InternalError, m, "quorum queue '%s' in vhost '%s': the cluster is not ready", name, v.name)
	}
	size := defaultGroupSize
	if n, ok := asInt(ch.Arguments["x-quorum-initial-group-size"]); ok && n > 0 {
		size = int(min(n, 1<<10))
	}
	q, err := v.declareReplicated(r, ch, quorumChange{VHost: v.name, Queue: name,
		Group: quorumGroupID(v.name, name, g.Self(), time.Now().UnixNano()), Members: v.server.groupMembers(g, size), Size: size})
	if err == nil && q.quorum != nil {
		v.server.placeLeader(g, q)
	}
	return q, err
}

// defaultGroupSize is a quorum queue's group size without
// x-quorum-initial-group-size: RabbitMQ's default, 3 (or every member of a
// smaller cluster).
const defaultGroupSize = 3

// groupMembers picks a new quorum queue's group of size: this node (its
// leader, client-local) and the members in the fewest quorum queues'
// groups, so that groups spread; every member when the cluster has no
// more than size.
func (s *Server) groupMembers(g QuorumGroups, size int) []uint64 {
	voters := g.Voters()
	if len(voters) <= size {
		return voters
	}
	counts := map[uint64]int{}
	s.eachQueue(nil, func(q *Queue) {
		if q.quorum != nil {
			for _, id := range q.voters() {
				counts[id]++
			}
		}
	})
	others := slices.DeleteFunc(slices.Clone(voters), func(id uint64) bool { return id == g.Self() })
	slices.SortStableFunc(others, func(a, b uint64) int {
		return cmp.Or(cmp.Compare(counts[a], counts[b]), cmp.Compare(a, b))
	})
	return append([]uint64{g.Self()}, others[:size-1]...)
}

// declareReplicated hands c, a queue's declaration with ch's arguments,
// to the cluster and returns the queue once this node has applied it.
func (v *VHost) declareReplicated(r Replicator, ch *DefChange, c quorumChange) (*Queue, error) {
	m := ch.method()
	if len(ch.Arguments) > 0 {
		c.Arguments = amqp.AppendTable(nil, ch.Arguments)
	}
	if err := replicateChange(r, ReplicaQuorumQueues, m, c); err != nil {
		return nil, err
	}
	q := v.queue(c.Queue)
	if q == nil {
		return nil, errNoQueue(m, v.name, c.Queue) // deleted meanwhile
	}
	return q, nil
}

// removeQuorumReplicated deletes a replicated quorum queue through the
// cluster; if-unused and if-empty are judged here.
func (v *VHost) removeQuorumReplicated(r Replicator, ch *DefChange, q *Queue) (int, error) {
	m := ch.method()
	msgs, consumers := q.counts()
	if ch.IfUnused && consumers > 0 {
		return 0, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", q.Name, v.name)
	}
	if ch.IfEmpty && msgs > 0 {
		return 0, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' not empty", q.Name, v.name)
	}
	if err := replicateChange(r, ReplicaQuorumQueues, m, quorumChange{VHost: v.name, Queue: q.Name, Delete: true}); err != nil {
		return 0, err
	}
	return msgs, nil
}

// dropGroup stops a deleted quorum queue's group here; it runs on the
// cluster's loop, as every replicated deletion does.
func (q *Queue) dropGroup() {
	if g := q.vhost.server.quorumGroups(); g != nil && q.quorum != nil {
		g.RemoveGroupOnLoop(q.group)
	}
}

// newQuorumQueue makes a replicated quorum queue (in memory only: its
// group's log holds it) and starts its group on this node. It runs on
// the cluster's loop (an Apply or Restore of the metadata group).
func newQuorumQueue(v *VHost, name string, args amqp.Table, own queuePolicy, ap *appliedPolicy, group uint64, members []uint64, size int) (*Queue, error) {
	g := v.server.quorumGroups()
	if g == nil {
		return nil, errors.New("no cluster")
	}
	q := &Queue{own: own, Name: name, Durable: true, Args: args, vhost: v, store: v.server.store,
		ringSize: v.server.cfg.RingBufferSize, stripe: nextStripe.Add(1), group: group, members: members, groupSize: size}
	q.eff.Store(ap)
	self := queue.Owner{Node: g.Self(), Incarnation: v.server.quorum.incarnation}
	q.quorum = queue.NewQuorum[qhandle](ap.core(), quorumLog{g, group}, quorumCodec{}, (*queueHost)(q), self, nil)
	fwd := newRemoteQueueCore(q, nil)
	fwd.targets, fwd.isTarget, fwd.tagBit = q.knownMembers, q.isKnownMember, forwardBit
	q.front = &quorumFront{q: q, local: q.quorum, fwd: fwd}
	q.isVoter.Store(slices.Contains(members, g.Self()))
	q.cq = q.front
	// A member that joined the cluster after the declaration starts the
	// group empty and waits for its leader to add it (watchMembers).
	var peers []uint64
	if slices.Contains(members, g.Self()) {
		peers = members
	}
	if err := g.AddGroupOnLoop(group, peers, quorumMachine{q.quorum, q}); err != nil {
		return nil, err
	}
	v.server.queues.Add(1)
	v.server.startSampler()
	return q, nil
}

// quorumLog is a quorum queue's group as queue.Quorum proposes to it.
type quorumLog struct {
	g  QuorumGroups
	id uint64
}

func (l quorumLog) Propose(cmd []byte, dropped func()) { l.g.ProposeAsync(l.id, cmd, dropped) }

// quorumMachine is a quorum queue's group's state machine.
type quorumMachine struct {
	q  *queue.Quorum[qhandle]
	bq *Queue
}

// VotersChanged records the group's voters and learners
// (cluster.VotersObserver). This node serves the queue from its group
// while it is a voter, unless the group was shaped without it (it is
// then on its way out); a learner forwards, as a node outside the group
// does, until it is promoted.
func (m quorumMachine) VotersChanged(voters, learners []uint64) {
	g := m.bq.vhost.server.quorumGroups()
	m.bq.mu.Lock()
	m.bq.members, m.bq.learners = voters, learners
	voter := g != nil && slices.Contains(voters, g.Self()) && (m.bq.target == nil || slices.Contains(m.bq.target, g.Self()))
	m.bq.mu.Unlock()
	m.bq.isVoter.Store(voter)
}

// voters are a replicated quorum queue's group's voters, as last applied
// here.
func (q *Queue) voters() []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.members)
}

// groupLearners are a replicated quorum queue's group's learners, as
// last applied here.
func (q *Queue) groupLearners() []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.learners)
}

func (m quorumMachine) Apply(_ uint64, data []byte) { m.q.Apply(data) }
func (m quorumMachine) Snapshot() ([]byte, error)   { return m.q.Snapshot() }
func (m quorumMachine) SnapshotAfter() uint64       { return m.q.SnapshotAfter() }

// SnapshotLater encodes the queue's snapshot off the cluster's loop.
func (m quorumMachine) SnapshotLater() func() ([]byte, error) { return m.q.SnapshotLater() }
func (m quorumMachine) Restore(data []byte) error             { return m.q.Restore(data) }
func (m quorumMachine) LeaderChanged(lead uint64, self bool) {
	m.q.LeaderChanged(lead, self)
	if _, target := m.bq.shape(); self && target != nil {
		// A group shaped by hand may be short of its shape (the last
		// leader handed over to remove itself): now, not in a second.
		m.bq.vhost.server.kickMembers()
	}
}

// quorumCodec encodes a quorum queue's messages for its log: what the
// store keeps of a message, and its TTL.
type quorumCodec struct{}

// maxQuorumField bounds a decoded field, before allocating.
const maxQuorumField = 1 << 30

func (quorumCodec) AppendHandle(b []byte, h qhandle) []byte {
	m := h.msg
	b = slices.Grow(b, 2+len(m.Exchange)+len(m.RoutingKey)+8+len(m.Properties)+len(m.Body)+3+32)
	b = appendShort(b, m.Exchange)
	b = appendShort(b, m.RoutingKey)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Properties)))
	b = append(b, m.Properties...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Body)))
	b = append(b, m.Body...)
	b = append(b, boolByte(m.Persistent), boolByte(m.hasTTL), m.Priority)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ttl))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Timestamp))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Expires))
	return binary.BigEndian.AppendUint64(b, uint64(m.Due))
}

var errQuorumMessage = errors.New("quorum queue: malformed message in the log")

func (quorumCodec) DecodeHandle(b []byte) (qhandle, error) {
	m := &Message{}
	var ok bool
	if m.Exchange, b, ok = readShort(b); !ok {
		return qhandle{}, errQuorumMessage
	}
	if m.RoutingKey, b, ok = readShort(b); !ok {
		return qhandle{}, errQuorumMessage
	}
	if m.Properties, b, ok = readLong(b); !ok {
		return qhandle{}, errQuorumMessage
	}
	if m.Body, b, ok = readLong(b); !ok {
		return qhandle{}, errQuorumMessage
	}
	if len(b) != 3+32 {
		return qhandle{}, errQuorumMessage
	}
	m.Persistent, m.hasTTL, m.Priority = b[0] == 1, b[1] == 1, b[2]
	b = b[3:]
	m.ttl = int64(binary.BigEndian.Uint64(b))
	m.Timestamp = int64(binary.BigEndian.Uint64(b[8:]))
	m.Expires = int64(binary.BigEndian.Uint64(b[16:]))
	m.Due = int64(binary.BigEndian.Uint64(b[24:]))
	return qhandle{msg: m}, nil
}

func appendShort(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func readShort(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

func readLong(b []byte) ([]byte, []byte, bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxQuorumField || uint64(len(b)-4) < uint64(n) {
		return nil, nil, false
	}
	// The field aliases the log entry's data, which nothing writes to
	// (raft's, the log's and the transport's entries are each their own
	// copy); the capacity ends with the field, so an append copies.
	return b[4 : 4+n : 4+n], b[4+n:], true
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

type quorumReplica struct{ s *Server }

// Apply declares or deletes a quorum queue on this member.
func (r quorumReplica) Apply(index uint64, payload []byte) error {
	var c quorumChange
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("quorum queue change %d: undecodable: %v", index, err)
	}
	r.s.appliedQueuesAt(index)
	v := r.s.vhost(c.VHost)
	if v == nil {
		return fmt.Errorf("no vhost '%s'", c.VHost)
	}
	if v.keptAfter(c.Queue, index) {
		return nil // about its predecessor: see keptAfter
	}
	if c.Shape {
		return r.s.applyShape(v, c)
	}
	if c.Delete {
		if c.Of != "" {
			if q := v.queue(c.Queue); q == nil || q.homeOf() == nil || q.homeOf().token != c.Of {
				return nil // a later declaration's, or gone already
			}
		}
		_, err := v.Apply(DefChange{Kind: QueueDelete, Queue: c.Queue}, fromCluster())
		return err
	}
	ch, err := c.declaration()
	if err != nil {
		return fmt.Errorf("quorum queue change %d: %v", index, err)
	}
	if c.Home != 0 {
		opts := []ApplyOption{fromCluster(), homedOn(c, index)}
		if owner := r.s.transients.owner(c); owner != nil {
			opts = append(opts, ownedBy(owner))
		}
		_, err := v.Apply(ch, opts...)
		return err
	}
	res, err := v.Apply(ch, fromCluster(), inQuorumGroup(c.Group, c.Members, c.Size))
	if err == nil && c.Target != nil && res.Queue != nil && res.Queue.group == c.Group {
		// A snapshot's: the queue's last shape.
		r.s.setShape(res.Queue, c.Size, c.Target)
	}
	return err
}

// declaration is the queue declaration c makes (c declares a queue).
func (c *quorumChange) declaration() (DefChange, error) {
	ch := DefChange{Kind: QueueDeclare, Queue: c.Queue, Durable: !c.Transient, Exclusive: c.Exclusive, AutoDelete: c.AutoDelete}
	if len(c.Arguments) > 0 {
		t, _, err := amqp.ReadTable(c.Arguments)
		if err != nil {
			return ch, fmt.Errorf("arguments: %v", err)
		}
		ch.Arguments = t
	}
	return ch, nil
}

// quorumSnapshot is the quorum queues' part of a cluster snapshot: the
// queues, as declarations, and the bindings to them (restored after the
// queues, which the exchanges' part, restored before, does not have yet);
// Index is the log index of the last queue change it has (0: a snapshot
// from before it was kept).
type quorumSnapshot struct {
	Queues   []quorumChange   `json:"queues"`
	Bindings []exchangeChange `json:"bindings,omitempty"`
	Index    uint64           `json:"index,omitempty"`
}

// Snapshot is every replicated queue and the bindings to them.
func (r quorumReplica) Snapshot() ([]byte, error) {
	snap := quorumSnapshot{Index: r.s.queuesIndex.Load()}
	for _, v := range r.s.VHosts() {
		for _, q := range v.Queues() {
			if replicatedQueue(q) {
				size, target := q.shape()
				c := quorumChange{VHost: v.name, Queue: q.Name, Group: q.group, Members: q.voters(), Size: size, Target: target}
				if h := q.homeOf(); h != nil {
					c = quorumChange{VHost: v.name, Queue: q.Name, Home: h.id, HomeName: h.name, AutoDelete: q.AutoDelete,
						Transient: !q.Durable, Exclusive: q.Exclusive, Token: h.token, Incarnation: h.incarnation}
				}
				if len(q.Args) > 0 {
					c.Arguments = amqp.AppendTable(nil, q.Args)
				}
				snap.Queues = append(snap.Queues, c)
			}
		}
		snap.Bindings = append(snap.Bindings, replicatedQueueBindings(v)...)
	}
	return json.Marshal(snap)
}

// Restore makes the replicated quorum queues and the bindings to them
// those of the snapshot: other queues are deleted (but a classic queue
// homed here that was declared after the snapshot: keptAfter), and so is
// one that the snapshot declares otherwise (another group, home,
// arguments or flags: the cluster deleted it and declared it again
// meanwhile); missing ones are declared with their groups; then the
// bindings are made so.
func (r quorumReplica) Restore(data []byte) error {
	if data == nil {
		return nil
	}
	var snap quorumSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("quorum queue snapshot: undecodable: %v", err)
	}
	r.s.queuesIndex.Store(snap.Index)
	want := map[[2]string]quorumChange{}
	for _, c := range snap.Queues {
		want[[2]string{c.VHost, c.Queue}] = c
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, v := range r.s.VHosts() {
		for _, q := range v.Queues() {
			c, ok := want[[2]string{v.name, q.Name}]
			var home uint64
			if h := q.homeOf(); h != nil {
				home = h.id
			}
			if replicatedQueue(q) && (!ok || c.Group != q.group || c.Home != home || !declares(&c, q, v.name)) && !keptAfter(q, snap.Index) {
				_, err := v.Apply(DefChange{Kind: QueueDelete, Queue: q.Name}, fromCluster())
				keep(err)
			}
		}
	}
	for _, c := range snap.Queues {
		b, _ := json.Marshal(c)
		keep(r.Apply(snap.Index, b))
	}
	binds := map[string][]exchangeChange{}
	for _, b := range snap.Bindings {
		binds[b.VHost] = append(binds[b.VHost], b)
	}
	for _, v := range r.s.VHosts() {
		// A queue kept after the snapshot keeps its own bindings too.
		kept := func(c exchangeChange) bool { return v.keptAfter(c.Queue, snap.Index) }
		keep(restoreBindings(v, slices.DeleteFunc(binds[v.name], kept), func(v *VHost) []exchangeChange {
			return slices.DeleteFunc(replicatedQueueBindings(v), kept)
		}))
	}
	return first
}

// declares reports whether c declares q as it is.
func declares(c *quorumChange, q *Queue, vhost string) bool {
	ch, err := c.declaration()
	return err == nil && q.equivalent(&ch, vhost) == nil
}

// QuorumGroup reports a replicated quorum queue's group as this node
// knows it: the leader's node id (0: none known) and the voters (outside
// the group, its last shape: knownMembers); ok is false for any other
// queue.
func (q *Queue) QuorumGroup() (leader uint64, members []uint64, ok bool) {
	if q.quorum == nil {
		return 0, nil, false
	}
	return q.quorum.LeaderID(), q.knownMembers(), true
}

// placeLeader places a new quorum queue's leader, as RabbitMQ's queue
// leader locator: on this node, the client's (client-local, the default),
// or on the member that leads the fewest quorum queues (balanced). It
// returns once the group has a leader, so that declare-ok comes after
// the election, as RabbitMQ's once its Ra cluster has started, or after
// queue.QuorumTimeout.
func (s *Server) placeLeader(g QuorumGroups, q *Queue) {
	ctx, cancel := context.WithTimeout(context.Background(), queue.QuorumTimeout)
	defer cancel()
	target := g.Self()
	if q.own.balanced {
		target = s.fewestLeaders(q.voters(), nil)
	}
	// A campaign this early may meet members that have not started the
	// group yet, and then the election goes to whoever times out first:
	// the leadership is moved to the target once there is a leader.
	if target == g.Self() {
		_ = g.Campaign(ctx, q.group) // refused only if the group is gone
	}
	s.waitLeader(ctx, q, 0)
	if q.quorum.LeaderID() != target {
		_ = g.TransferTo(ctx, q.group, target)
		s.waitLeader(ctx, q, target)
	}
}

// waitLeader polls until q's group has a leader (want 0) or want leads,
// or ctx ends.
func (s *Server) waitLeader(ctx context.Context, q *Queue, want uint64) {
	for {
		lead := q.quorum.LeaderID()
		if lead != 0 && (want == 0 || lead == want) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// fewestLeaders is the member of members that leads the fewest quorum
// queues, as this node knows the leaders, with extra counted in (the
// leaderships a rebalance has already planned); ties go to the lowest id.
func (s *Server) fewestLeaders(members []uint64, extra map[uint64]int) uint64 {
	counts := map[uint64]int{}
	for id, n := range extra {
		counts[id] = n
	}
	if extra == nil {
		s.eachQueue(nil, func(q *Queue) {
			if q.quorum != nil {
				counts[q.quorum.LeaderID()]++
			}
		})
	}
	best := uint64(0)
	for _, id := range members {
		if best == 0 || counts[id] < counts[best] || counts[id] == counts[best] && id < best {
			best = id
		}
	}
	return best
}

// RebalanceQuorumQueues moves quorum queues' leaders so that each member
// leads as nearly the same number as it can (RabbitMQ's
// rabbitmq-queues rebalance quorum, POST /api/rebalance/queues): a leader
// stays where it is while its node is under its share; the others go to
// the members leading the fewest. Any member may ask (raft forwards a
// transfer to the leader). It returns how many leaderships it asked to
// move; they move within an election's time, or not at all when the
// target is behind or unreachable.
func (s *Server) RebalanceQuorumQueues(ctx context.Context) (int, error) {
	g := s.quorumGroups()
	if g == nil {
		return 0, nil
	}
	var qs []*Queue
	s.eachQueue(nil, func(q *Queue) {
		if q.quorum != nil {
			qs = append(qs, q)
		}
	})
	slices.SortFunc(qs, func(a, b *Queue) int {
		if c := strings.Compare(a.vhost.name, b.vhost.name); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	members := g.Voters()
	if len(members) == 0 || len(qs) == 0 {
		return 0, nil
	}
	share := (len(qs) + len(members) - 1) / len(members)
	planned := map[uint64]int{}
	var moves []*Queue
	var targets []uint64
	for _, q := range qs {
		lead := q.quorum.LeaderID()
		if lead != 0 && slices.Contains(members, lead) && planned[lead] < share {
			planned[lead]++
			continue
		}
		to := s.fewestLeaders(q.voters(), planned)
		planned[to]++
		if to != lead {
			moves = append(moves, q)
			targets = append(targets, to)
		}
	}
	for i, q := range moves {
		if err := g.TransferTo(ctx, q.group, targets[i]); err != nil {
			return i, err
		}
	}
	return len(moves), nil
}
