package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// A quorum queue's group is shaped by hand as RabbitMQ's rabbitmq-queues
// add_member, delete_member, grow and shrink shape it: the node asked
// proposes a shape change to the metadata group (quorumChange with Shape:
// the members the group is to have, its Target, whose number becomes its
// size), which every member applies in the log's order and keeps in its
// snapshots; the queue's leader then makes its group so, one conf change
// at a time (followMembers, kicked as it applies the change), and keeps it
// so: a group shaped to a size is filled to it, and never grown past it,
// as the cluster's members come and go. A member shaped out of a group
// stops serving the queue from it at once (it forwards, as a member
// outside the group does) and cancels its consumers there; the leader
// proposes what they still hold requeued before it removes the member.

// The refusals of the operations that shape a group (errors.Is).
var (
	// ErrQueueNotFound: no such queue (RabbitMQ: not_found).
	ErrQueueNotFound = errors.New("not_found")
	// ErrNotQuorumQueue: the queue is not a quorum queue of the cluster
	// (RabbitMQ: classic_queue_not_supported, not_quorum_queue).
	ErrNotQuorumQueue = errors.New("not_quorum_queue")
	// ErrNodeNotRunning: the node is not a member of the cluster, or
	// this node does not reach it (RabbitMQ: node_not_running).
	ErrNodeNotRunning = errors.New("node_not_running")
	// ErrLastNode: the node is the group's last member (RabbitMQ:
	// last_node).
	ErrLastNode = errors.New("last_node")
	// ErrNotInCluster: this node is in no cluster.
	ErrNotInCluster = errors.New("not in a cluster")
)

// shapeError is a refusal: one of the errors above, with its text.
type shapeError struct {
	kind error
	text string
}

func (e *shapeError) Error() string { return e.text }
func (e *shapeError) Unwrap() error { return e.kind }

func refuse(kind error, format string, a ...any) error {
	return &shapeError{kind: kind, text: fmt.Sprintf(format, a...)}
}

// shapeTimeout bounds how long a shape change waits to be seen made.
const shapeTimeout = 15 * time.Second

// shape is q's group's target size and the members it was shaped to
// (nil: never shaped by hand).
func (q *Queue) shape() (int, []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.groupSize, slices.Clone(q.target)
}

// setShape records q's group's shape, as the metadata group applies it
// (a shape change, or a snapshot's). A member shaped out of the group
// stops serving the queue from it, and cancels its consumers there; a
// member outside the group (raft does not tell it the group's voters)
// takes the target as the group's members, to forward to. It runs on
// the cluster's loop.
func (s *Server) setShape(q *Queue, size int, target []uint64) {
	g := s.quorumGroups()
	if g == nil || q.quorum == nil {
		return
	}
	self := g.Self()
	q.mu.Lock()
	q.groupSize, q.target = size, slices.Clone(target)
	out := !slices.Contains(target, self)
	wasVoter := q.isVoter.Load()
	if !wasVoter {
		// Raft does not tell this node the group's voters: the target
		// is its best knowledge. Never itself: a restart would take a
		// snapshot naming it for its own bootstrap. (A voter's are
		// raft's, shaped out of the group or not: its leader follows
		// them.)
		members := slices.DeleteFunc(slices.Clone(q.members), func(id uint64) bool { return id == self || !slices.Contains(target, id) })
		for _, id := range target {
			if id != self && !slices.Contains(members, id) {
				members = append(members, id)
			}
		}
		q.members = members
	}
	q.mu.Unlock()
	if out && wasVoter {
		q.isVoter.Store(false)
		go q.dropLocalConsumers() // off the loop: a cancel proposes to the group
	}
}

// dropLocalConsumers cancels the consumers this node has on q's group
// (not those it forwards), its clients' and the members' it served over
// links, as a classic queue's are when its home node goes: basic.cancel
// to clients that take it.
func (q *Queue) dropLocalConsumers() {
	q.vhost.server.endLinkConsumers(q)
	q.mu.Lock()
	var cs []*consumer
	for _, c := range q.consumers {
		if c.id&forwardBit == 0 {
			cs = append(cs, c)
		}
	}
	q.mu.Unlock()
	for _, c := range cs {
		q.removeConsumer(c)
		c.ch.queueDeleted(c)
	}
}

// applyShape applies a shape change of a queue of v: refused if the queue
// is gone or is another (declared again) since the change was proposed.
// The queue's leader makes its group so at once.
func (s *Server) applyShape(v *VHost, c quorumChange) error {
	q := v.queue(c.Queue)
	if q == nil || q.quorum == nil || q.group != c.Group {
		return refuse(ErrQueueNotFound, "queue '%s' in vhost '%s' not found", c.Queue, v.name)
	}
	target := c.Target
	if _, cur := q.shape(); cur != nil && c.Node != 0 {
		// Another change may have been applied since the proposer
		// computed Target: apply this one to the shape as it is now.
		target = slices.DeleteFunc(cur, func(id uint64) bool { return id == c.Node })
		if c.Add {
			target = append(target, c.Node)
		}
		slices.Sort(target)
		if len(target) == 0 {
			// Two removals at once, each of the other's last but one
			// member: the later one is not made (the group keeps a
			// member), and its caller times out waiting for it.
			s.logger.Warn("cluster: a quorum queue's member was not removed: it is the group's last one", "vhost", v.name, "queue", q.Name, "member", c.Node)
			return nil
		}
	}
	s.setShape(q, len(target), target)
	if q.quorum.Leader() {
		s.kickMembers()
	}
	return nil
}

// kickMembers asks watchMembers for a round now.
func (s *Server) kickMembers() {
	s.quorum.mu.Lock()
	kick := s.quorum.kick
	s.quorum.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// shapeQueue finds quorum queue name of vhost, and the cluster, for a
// shape change.
func (s *Server) shapeQueue(vhost, name string) (QuorumGroups, Replicator, *Queue, error) {
	g, r, err := s.shapeGroups()
	if err != nil {
		return nil, nil, nil, err
	}
	v := s.vhost(vhost)
	var q *Queue
	if v != nil {
		q = v.queue(name)
	}
	switch {
	case q == nil:
		return nil, nil, nil, refuse(ErrQueueNotFound, "queue '%s' in vhost '%s' not found", name, vhost)
	case q.quorum == nil:
		return nil, nil, nil, refuse(ErrNotQuorumQueue, "queue '%s' in vhost '%s' is not a quorum queue", name, vhost)
	}
	return g, r, q, nil
}

// running refuses node unless it is a member of the cluster that this
// node reaches.
func running(g QuorumGroups, node uint64) error {
	if !slices.Contains(g.Voters(), node) || !g.Reachable(node) {
		return refuse(ErrNodeNotRunning, "node '%x' is not a running member of the cluster", node)
	}
	return nil
}

// knownMembers are q's group's members as this node best knows them: a
// voter's raft voters; a node outside the group (raft tells it nothing,
// and one shaped out may have missed its own removal) has the last shape,
// if any, or the declaration's members.
func (q *Queue) knownMembers() []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.knownMembersLocked())
}

// isKnownMember reports whether id is among knownMembers, without a
// copy: a forwarded publish asks it of its link each time.
func (q *Queue) isKnownMember(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Contains(q.knownMembersLocked(), id)
}

// knownMembersLocked is knownMembers, not copied. Caller holds q.mu.
func (q *Queue) knownMembersLocked() []uint64 {
	if !q.isVoter.Load() && q.target != nil {
		return q.target
	}
	return q.members
}

// shapeGroups is the cluster, for a shape change.
func (s *Server) shapeGroups() (QuorumGroups, Replicator, error) {
	g, r := s.quorumGroups(), s.replicating()
	if g == nil || r == nil {
		return nil, nil, refuse(ErrNotInCluster, "this node is in no cluster")
	}
	return g, r, nil
}

// reshape proposes q's group with node added (add) or removed, and waits
// until this node sees it made: as the group's voters where this node is
// one of them (and stays so) or joins it, at once otherwise (a member
// outside the group does not see its conf changes). It returns the
// group's new size.
func (s *Server) reshape(ctx context.Context, g QuorumGroups, r Replicator, q *Queue, node uint64, add bool) (int, error) {
	voters := q.knownMembers()
	cluster := g.Voters()
	target := slices.DeleteFunc(slices.Clone(voters), func(id uint64) bool { return id == node || !slices.Contains(cluster, id) })
	if add {
		target = append(target, node)
	}
	slices.Sort(target)
	b, err := json.Marshal(quorumChange{VHost: q.vhost.name, Queue: q.Name, Group: q.group, Shape: true, Target: target, Size: len(target), Node: node, Add: add})
	if err != nil {
		return len(voters), err
	}
	if err := r.Replicate(ctx, ReplicaQuorumQueues, b); err != nil {
		return len(voters), noMajority(err)
	}
	self := g.Self()
	if !slices.Contains(target, self) || !q.isVoter.Load() && self != node {
		return len(target), nil
	}
	for {
		if vs := q.voters(); slices.Contains(vs, node) == add {
			return len(target), nil
		}
		select {
		case <-ctx.Done():
			return len(voters), fmt.Errorf("the group's change was not made in time (is a majority of its members up?): %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// AddQuorumMember adds node (a member of the cluster, by id) to the group
// of quorum queue name in vhost, as RabbitMQ's rabbitmq-queues add_member
// (POST /api/queues/quorum/{vhost}/{name}/replicas/add): the group is
// shaped to its members and node, which sticks (see above). A node
// already in the group is no change. It returns once this node sees the
// change made (at most 15 s, or ctx). Refusals: ErrQueueNotFound,
// ErrNotQuorumQueue, ErrNodeNotRunning (not a member, or not reached from
// here), ErrNotInCluster.
//
// Locking: it takes no broker lock while it waits; it must not be called
// holding one, nor on the cluster's loop (it waits for the loop to apply
// the change).
func (s *Server) AddQuorumMember(ctx context.Context, vhost, name string, node uint64) error {
	g, r, q, err := s.shapeQueue(vhost, name)
	if err != nil {
		return err
	}
	if slices.Contains(q.knownMembers(), node) {
		return nil // RabbitMQ's too: idempotent
	}
	if err := running(g, node); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, shapeTimeout)
	defer cancel()
	_, err = s.reshape(ctx, g, r, q, node, true)
	return err
}

// DeleteQuorumMember removes node from the group of quorum queue name in
// vhost, as RabbitMQ's rabbitmq-queues delete_member (DELETE
// /api/queues/quorum/{vhost}/{name}/replicas/delete): the group is
// shaped to its members without node, which sticks: it is not added back
// to fill the group. A node not in the group is no change (RabbitMQ's
// too); the group's last member is refused (ErrLastNode). Otherwise as
// AddQuorumMember, locking too.
func (s *Server) DeleteQuorumMember(ctx context.Context, vhost, name string, node uint64) error {
	g, r, q, err := s.shapeQueue(vhost, name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, shapeTimeout)
	defer cancel()
	_, err = s.deleteMember(ctx, g, r, q, node)
	return err
}

// deleteMember removes node from q's group; it returns the group's size.
func (s *Server) deleteMember(ctx context.Context, g QuorumGroups, r Replicator, q *Queue, node uint64) (int, error) {
	voters := q.knownMembers()
	if !slices.Contains(voters, node) {
		return len(voters), nil
	}
	if len(voters) == 1 {
		return 1, refuse(ErrLastNode, "the last member of queue '%s' in vhost '%s' cannot be removed", q.Name, q.vhost.name)
	}
	return s.reshape(ctx, g, r, q, node, false)
}

// MemberChange is what grow or shrink did to one queue, as
// rabbitmq-queues prints it: the group's size after it (before, on a
// failure) and the failure, if any.
type MemberChange struct {
	VHost string
	Queue string
	Size  int
	Err   error
}

// replicatedQuorumQueues are s's quorum queues of the cluster, by vhost
// and name.
func (s *Server) replicatedQuorumQueues() []*Queue {
	var qs []*Queue
	s.eachQueue(nil, func(q *Queue) {
		if q.quorum != nil {
			qs = append(qs, q)
		}
	})
	sort.Slice(qs, func(i, j int) bool {
		if c := strings.Compare(qs[i].vhost.name, qs[j].vhost.name); c != 0 {
			return c < 0
		}
		return qs[i].Name < qs[j].Name
	})
	return qs
}

// GrowQuorumQueues adds node to the group of every quorum queue whose
// vhost and name match vhostPattern and queuePattern (regular
// expressions, unanchored, as RabbitMQ's) and whose group does not have
// it, as RabbitMQ's rabbitmq-queues grow (POST
// /api/queues/quorum/replicas/on/{node}/grow): strategy "all" every such
// queue, "even" only those whose group has an even number of members.
// One queue after the other, each as AddQuorumMember; it returns what
// happened to each. Refused whole: a pattern that does not compile, an
// unknown strategy (errors wrapping neither sentinel), ErrNodeNotRunning,
// ErrNotInCluster. Locking as AddQuorumMember.
func (s *Server) GrowQuorumQueues(ctx context.Context, node uint64, vhostPattern, queuePattern, strategy string) ([]MemberChange, error) {
	if strategy != "all" && strategy != "even" {
		return nil, fmt.Errorf("strategy '%s' is not recognised (all or even)", strategy)
	}
	vre, err := regexp.Compile(vhostPattern)
	if err != nil {
		return nil, fmt.Errorf("vhost_pattern: %v", err)
	}
	qre, err := regexp.Compile(queuePattern)
	if err != nil {
		return nil, fmt.Errorf("queue_pattern: %v", err)
	}
	g, r, err := s.shapeGroups()
	if err != nil {
		return nil, err
	}
	if err := running(g, node); err != nil {
		return nil, err
	}
	var out []MemberChange
	for _, q := range s.replicatedQuorumQueues() {
		voters := q.knownMembers()
		if slices.Contains(voters, node) || strategy == "even" && len(voters)%2 != 0 ||
			!vre.MatchString(q.vhost.name) || !qre.MatchString(q.Name) {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, shapeTimeout)
		size, err := s.reshape(qctx, g, r, q, node, true)
		cancel()
		out = append(out, MemberChange{VHost: q.vhost.name, Queue: q.Name, Size: size, Err: err})
	}
	return out, nil
}

// ShrinkQuorumQueues removes node from the group of every quorum queue it
// is a member of, as RabbitMQ's rabbitmq-queues shrink (DELETE
// /api/queues/quorum/replicas/on/{node}/shrink), the node need not be
// running: one queue after the other, each as DeleteQuorumMember, so a
// group whose last member it is keeps it (ErrLastNode, in its
// MemberChange). Locking as AddQuorumMember.
func (s *Server) ShrinkQuorumQueues(ctx context.Context, node uint64) ([]MemberChange, error) {
	g, r, err := s.shapeGroups()
	if err != nil {
		return nil, err
	}
	var out []MemberChange
	for _, q := range s.replicatedQuorumQueues() {
		if !slices.Contains(q.knownMembers(), node) {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, shapeTimeout)
		size, err := s.deleteMember(qctx, g, r, q, node)
		cancel()
		out = append(out, MemberChange{VHost: q.vhost.name, Queue: q.Name, Size: size, Err: err})
	}
	return out, nil
}
