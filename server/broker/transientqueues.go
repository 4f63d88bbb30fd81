package broker

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// A cluster's transient and exclusive classic queues, as RabbitMQ has
// them: like a durable classic queue (classiccluster.go), each has a
// home node, the one it was declared on, and every member lists it and
// routes to it, so that an RPC client's exclusive reply queue on one
// node gets the replies of a server on another. An exclusive queue's
// owner is the connection that declared it, on its home node; every
// other connection, on any member, gets RabbitMQ's 405 RESOURCE_LOCKED.
//
// Such a queue does not outlive its home node's start, nor its owner:
//   - the owner's connection closing deletes it through the cluster;
//   - a home node that restarts finds its former queues in the log it
//     applies again (stale: another incarnation) and deletes them;
//   - the metadata group's leader deletes the queues of a member it has
//     not reached for transientGoneAfter, as RabbitMQ's nodes delete a
//     down node's transient queues.
//
// Each deletion names the declaration it deletes (quorumChange.Of), so
// that, proposed late, it never takes a queue declared again meanwhile.
// watchMembers proposes them, once a second until they are applied.

// transientGoneAfter is how long the metadata group's leader waits for
// a member it has no connection to before it deletes the transient and
// exclusive queues homed there.
const transientGoneAfter = 5 * time.Second

// transientQueues is the server's side of them. mu guards its maps; it
// is a leaf lock.
type transientQueues struct {
	mu sync.Mutex
	// pending are the connections whose exclusive declarations this node
	// is proposing, by token: the entry's apply here makes the queue
	// theirs (owner).
	pending map[string]*conn
	// dropping are the queues whose deletion is being proposed.
	dropping map[*Queue]bool
}

// newToken names a declaration.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// propose registers c (nil: none) as the owner of the declaration token
// names until done.
func (t *transientQueues) propose(token string, c *conn) {
	if c == nil {
		return
	}
	t.mu.Lock()
	if t.pending == nil {
		t.pending = map[string]*conn{}
	}
	t.pending[token] = c
	t.mu.Unlock()
}

// done ends propose.
func (t *transientQueues) done(token string) {
	t.mu.Lock()
	delete(t.pending, token)
	t.mu.Unlock()
}

// owner is the connection that proposed c here, an exclusive queue's
// declaration (nil: another node's, another start's, or none).
func (t *transientQueues) owner(c quorumChange) *conn {
	if !c.Exclusive || c.Token == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending[c.Token]
}

// transientInCluster reports whether q, a replicated classic queue, is
// one that does not outlive its home node's start or its owner.
func (q *Queue) transientInCluster() bool { return !q.Durable || q.Exclusive }

// dropTransient deletes q, a transient or exclusive queue of the
// cluster's, through the cluster, on a goroutine (the caller may be a
// connection's reader, or the watch); at most one proposal a queue is in
// flight. why is logged.
func (s *Server) dropTransient(q *Queue, why string) {
	r, h := s.replicating(), q.homeOf()
	if r == nil || h == nil {
		return
	}
	t := &s.transients
	t.mu.Lock()
	if t.dropping[q] {
		t.mu.Unlock()
		return
	}
	if t.dropping == nil {
		t.dropping = map[*Queue]bool{}
	}
	t.dropping[q] = true
	t.mu.Unlock()
	go func() {
		defer func() {
			t.mu.Lock()
			delete(t.dropping, q)
			t.mu.Unlock()
		}()
		if q.vhost.queue(q.Name) != q {
			return // deleted (and maybe declared again) meanwhile
		}
		c := quorumChange{VHost: q.vhost.name, Queue: q.Name, Delete: true, Of: h.token}
		if err := replicateChange(r, ReplicaQuorumQueues, &amqp.QueueDelete{Queue: q.Name}, c); err != nil {
			s.logger.Warn("cluster: the cluster did not take a transient queue's deletion; retrying", "vhost", q.vhost.name, "queue", q.Name, "why", why, "err", err)
			return
		}
		s.logger.Info("cluster: a transient queue is deleted", "vhost", q.vhost.name, "queue", q.Name, "home", h.name, "why", why)
	}()
}

// watchTransients is watchMembers' round for the cluster's transient and
// exclusive queues: those homed here that belong to a former start, or
// whose owner has gone, and, on the metadata group's leader, those homed
// on a member unreached for transientGoneAfter (unreached says since
// when, recording it) are deleted.
func (s *Server) watchTransients(g QuorumGroups, incarnation uint64, unreached func(id uint64) time.Duration) {
	self := g.Self()
	var leads, asked bool
	s.eachQueue(nil, func(q *Queue) {
		h := q.homeOf()
		if h == nil || q.quorum != nil || !q.transientInCluster() {
			return
		}
		switch {
		case h.id == self && h.incarnation != incarnation:
			s.dropTransient(q, "its home node restarted")
		case h.id == self && q.ownerGone.Load():
			s.dropTransient(q, "its owner's connection closed")
		case h.id != self && !g.Reachable(h.id):
			if !asked {
				leads, asked = g.MetadataLeader() == self, true
			}
			if leads && unreached(h.id) >= transientGoneAfter {
				s.dropTransient(q, "its home node is down")
			}
		}
	})
}
