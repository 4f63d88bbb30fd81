package broker

import (
	"sync"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// A cluster's classic queues, as RabbitMQ has them: each classic queue
// declared in the cluster has a home node, the one it was declared on,
// which alone holds its messages. Its definition, and the bindings to
// it, replicate through the metadata group (as quorumChange, with Home
// set), so every member lists it and routes to it; on the other members
// it is a remoteQueue, which reaches the home node over a node link.
// While the home node is down, the queue is unavailable elsewhere:
// consumes and declares answer 404, publishes to it are nacked.
// Transient and exclusive ones go with their home node's start or their
// owner (transientqueues.go).

// homeNode is a replicated classic queue's home. index is the metadata
// log's index of the declaration the queue was made from (stored with
// the queue's definition on its home node, see putQueue, so that a
// snapshot taken after it that does not name the queue deletes it:
// quorumReplica.Restore).
type homeNode struct {
	id    uint64
	name  string
	index uint64
	// token and incarnation are the declaration's (quorumChange).
	token       string
	incarnation uint64
}

// homeOf reports q's home node, nil for a queue that does not replicate
// (a quorum queue, one declared outside a cluster).
func (q *Queue) homeOf() *homeNode { return q.home.Load() }

// HomeNode is the name of a replicated classic queue's home node, "" for
// a queue of this node only (or a quorum queue).
func (q *Queue) HomeNode() string {
	if h := q.homeOf(); h != nil {
		return h.name
	}
	return ""
}

// Remote reports whether q's messages are on another node (its home).
func (q *Queue) Remote() bool { return q.remote != nil }

// Down reports whether q is a remote classic queue whose home node cannot
// be reached now (the management API's state "down", as RabbitMQ's for a
// queue on a node that is down). It may dial the home node, at most once
// per linkRetry.
func (q *Queue) Down() bool { return q.remote != nil && !q.remote.current().reachable() }

// replicatedQueue reports whether q's definition replicates: a quorum
// queue of the cluster's, or a classic queue with a home node.
func replicatedQueue(q *Queue) bool { return q.quorum != nil || q.homeOf() != nil }

// declareClassicReplicated declares a new classic queue through the
// cluster, homed on this node: every member makes it as it applies the
// change (the queue itself here, a remoteQueue elsewhere); an exclusive
// one is o.conn's. A queue of the name that another declaration made
// first (on another member, meanwhile) is judged as a redeclare of it.
func (v *VHost) declareClassicReplicated(r Replicator, ch *DefChange, o *applyOpts, name string) (*Queue, error) {
	m := ch.method()
	g := v.server.quorumGroups()
	if g == nil {
		return nil, protoErr(amqp.InternalError, m, "queue '%s' in vhost '%s': the cluster is not ready", name, v.name)
	}
	c := quorumChange{VHost: v.name, Queue: name, Home: g.Self(), HomeName: g.NodeName(), AutoDelete: ch.AutoDelete,
		Transient: !ch.Durable, Exclusive: ch.Exclusive, Token: newToken()}
	if c.Transient || c.Exclusive {
		c.Incarnation = v.server.quorum.incarnation
	}
	if c.Exclusive {
		v.server.transients.propose(c.Token, o.conn)
		defer v.server.transients.done(c.Token)
	}
	q, err := v.declareReplicated(r, ch, c)
	if err != nil {
		return nil, err
	}
	if h := q.homeOf(); h == nil || h.token != c.Token {
		return q, q.redeclared(ch, o, v.name)
	}
	return q, nil
}

// newRemoteQueue makes a replicated classic queue whose home is another
// node, as ch declares it: in memory only (the cluster's log holds its
// definition).
func newRemoteQueue(v *VHost, name string, ch *DefChange, own queuePolicy, ap *appliedPolicy, home *homeNode) *Queue {
	q := &Queue{own: own, Name: name, Durable: ch.Durable, Exclusive: ch.Exclusive, AutoDelete: ch.AutoDelete, Args: ch.Arguments,
		vhost: v, store: v.server.store, ringSize: v.server.cfg.RingBufferSize, stripe: nextStripe.Add(1)}
	v.server.queues.Add(1)
	q.eff.Store(ap)
	q.home.Store(home)
	q.remote = newRemoteQueueCore(q, v.server.links.client(v.server, home.id))
	q.cq = q.remote
	return q
}

// autoDelete deletes an auto-delete queue its last consumer left: a
// replicated classic queue through the cluster (removeReplicatedLater).
func (v *VHost) autoDelete(q *Queue) {
	if r := v.server.replicating(); r != nil && q.homeOf() != nil {
		v.removeReplicatedLater(r, q)
		return
	}
	_, _ = v.deleteQueue(q, nil)
}

// removeReplicatedLater deletes q, a replicated classic queue this node is
// home to, through the cluster, for the broker's own reasons (auto-delete):
// on a goroutine, since the caller may be a connection's reader, and the
// cluster may take its time.
func (v *VHost) removeReplicatedLater(r Replicator, q *Queue) {
	go func() {
		if v.queue(q.Name) != q {
			return // deleted (and maybe declared again) meanwhile
		}
		if _, err := v.removeQuorumReplicated(r, &DefChange{Kind: QueueDelete, Queue: q.Name}, q); err != nil {
			v.server.logger.Warn("cluster: the cluster did not take a queue's deletion", "vhost", v.name, "queue", q.Name, "err", err)
		}
	}()
}

// MemberRemoved deletes every classic queue homed on member id, which
// the cluster has just removed (forget-node, or its own leave), with the
// bindings to it, and, on that node itself, its messages: as RabbitMQ's
// forget_all_durable, on forget_cluster_node or a node's reset, deletes
// the durable classic queues located on the node that goes. Every member
// does it as it applies the removal, at the same point of the log, so
// none of them lists the queues afterwards, and no snapshot names them.
// A member that is merely down keeps its queues.
func (r quorumReplica) MemberRemoved(index, id uint64) {
	r.s.appliedQueuesAt(index)
	for _, v := range r.s.VHosts() {
		for _, q := range v.Queues() {
			if h := q.homeOf(); h == nil || h.id != id || q.quorum != nil || keptAfter(q, index) {
				continue
			}
			if _, err := v.Apply(DefChange{Kind: QueueDelete, Queue: q.Name}, fromCluster()); err != nil {
				r.s.logger.Warn("cluster: a classic queue of a removed member was not deleted", "vhost", v.name, "queue", q.Name, "home", q.HomeNode(), "err", err)
				continue
			}
			r.s.logger.Info("cluster: a classic queue of a removed member is deleted", "vhost", v.name, "queue", q.Name, "home", q.HomeNode())
		}
	}
}

// appliedQueuesAt records index, the metadata log's entry of a
// replicated queue change this node applies: its snapshots' Index.
func (s *Server) appliedQueuesAt(index uint64) {
	if index != 0 {
		s.queuesIndex.Store(index)
	}
}

// keptAfter reports whether q, a replicated queue that a metadata
// snapshot of index does not name (or names otherwise), or that the
// entry at index deletes (by name, or as a removed member's), stays all
// the same: a classic queue declared after index. That is a queue homed
// here that its store has back at the node's start, before the metadata
// group restores the node's own snapshot and applies the log after it
// again (entries it had applied before its restart, a deletion of the
// queue's predecessor of the same name among them), up to the
// declaration. Otherwise the snapshot's or the entry's is the later
// state: the queue was deleted meanwhile (while its home node was down,
// for one homed here).
func keptAfter(q *Queue, index uint64) bool {
	h := q.homeOf()
	return h != nil && h.index > index
}

// keptAfter is keptAfter for v's queue name, if there is one: the
// changes of the log up to index about that name (a declaration, a
// deletion, a binding) are its predecessor's, and pass it by.
func (v *VHost) keptAfter(name string, index uint64) bool {
	q := v.queue(name)
	return q != nil && keptAfter(q, index)
}

// pushOne enqueues msg, routed here by another member, into q, as a
// client's publish routed to q alone is (enqueue); done hears once.
func (v *VHost) pushOne(p *publisher, q *Queue, msg *Message, done func(error)) {
	v.enqueue(p, append(p.queues[:0], q), msg, false, nil, done)
}

// addLinkConsumer attaches a member's consumer, with the checks a local
// one gets (addConsumer).
func (q *Queue) addLinkConsumer(lc *linkConsumer, priority int64) error {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return errNoQueue(nil, q.vhost.name, q.Name)
	}
	if err := q.refuseExclusiveLocked(nil, lc.exclusive); err != nil {
		q.mu.Unlock()
		return err
	}
	q.linkConsumers++
	q.hadConsumers = true
	q.exclusiveConsumer = lc.exclusive
	q.mu.Unlock()
	lc.id = q.cq.Consume(lc, priority, lc.noAck)
	return nil
}

// removeLinkConsumer detaches a member's consumer, auto-deleting the
// queue when it was the last (unless this node is shutting down).
func (q *Queue) removeLinkConsumer(lc *linkConsumer) {
	q.mu.Lock()
	q.linkConsumers--
	if lc.exclusive {
		q.exclusiveConsumer = false
	}
	autoDelete := q.autoDeleteDueLocked()
	q.mu.Unlock()
	q.cq.Cancel(lc.id)
	q.flowCheck()
	if autoDelete && !q.vhost.server.links.closing() {
		q.vhost.autoDelete(q)
	}
}

// nodeLinks are this node's links: to the home nodes of its remote
// queues (one linkClient per node, kept once made), and those other
// members opened to it (served while they last). mu is a leaf lock.
type nodeLinks struct {
	mu      sync.Mutex
	clients map[uint64]*linkClient
	served  map[*homeLink]struct{}
	closed  bool
	wg      sync.WaitGroup // served links' readers (ServeLink)
}

// client returns the link to home, made on first use.
func (n *nodeLinks) client(s *Server, home uint64) *linkClient {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.clients[home]
	if l == nil {
		l = &linkClient{s: s, home: home, calls: map[uint64]linkCall{}, consumers: map[uint64]*remoteConsumer{}, closed: n.closed}
		if n.clients == nil {
			n.clients = map[uint64]*linkClient{}
		}
		n.clients[home] = l
	}
	return l
}

// serving records a served link; false once the server is closing.
func (n *nodeLinks) serving(l *homeLink) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	if n.served == nil {
		n.served = map[*homeLink]struct{}{}
	}
	n.served[l] = struct{}{}
	n.wg.Add(1)
	return true
}

func (n *nodeLinks) ended(l *homeLink) {
	n.mu.Lock()
	delete(n.served, l)
	n.mu.Unlock()
	n.wg.Done()
}

// closing reports whether the server is shutting its links down.
func (n *nodeLinks) closing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// close ends every link (server shutdown).
func (n *nodeLinks) close() {
	n.mu.Lock()
	n.closed = true
	var cs []*linkClient
	for _, l := range n.clients {
		cs = append(cs, l)
	}
	var hs []*homeLink
	for l := range n.served {
		hs = append(hs, l)
	}
	n.mu.Unlock()
	for _, l := range cs {
		l.close()
	}
	for _, l := range hs {
		l.conn.close()
	}
	n.wg.Wait()
}
