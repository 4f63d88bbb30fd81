package broker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Queue is a classic queue as the protocol layer sees it: its definition,
// its consumers (for exclusivity and cancel notifications) and a
// queue.Classic, which holds the messages and alone delivers them (its
// driver goroutine). The broker plugs into it as its Host (store, dead
// letters, paging) and each consumer as a queue.Consumer.
type Queue struct {
	Name       string
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Args       amqp.Table

	vhost *VHost
	owner *conn // the declaring connection of an exclusive queue
	// ownerGone: owner has closed, and q, the cluster's, waits for its
	// deletion through the cluster (transientqueues.go).
	ownerGone atomic.Bool
	store     store.Store
	// id names a durable queue in the definitions and the log (0: not
	// persisted).
	id uint64
	// ringSize is how many ready messages stay in memory; beyond it,
	// messages already in the log are kept as references only.
	ringSize int
	// stripe is its part of the server's striped counters (freedBytes).
	stripe uint32
	// dropped is set once the queue's deletion reached the store.
	dropped atomic.Bool
	// gone mirrors deleted for lock-free checks by channel caches.
	gone atomic.Bool
	// lastReady is the ready count the last push left: the ring-buffer
	// check of the next durable push reads it instead of locking the queue
	// (at most one push stale, and the ring is a memory bound, not a
	// limit).
	lastReady atomic.Int64
	// flowWaiting mirrors flowClear != nil, so a delivery batch finds no
	// publisher waiting without taking mu.
	flowWaiting atomic.Bool
	// own is what the queue's arguments ask, fixed at declaration; eff
	// is that merged with the policies that apply (reapplyPolicies
	// swaps it), read through settings.
	own queuePolicy
	eff atomic.Pointer[appliedPolicy]

	// cq holds the messages and delivers them: a queue.Classic today,
	// behind the interface every queue kind implements.
	cq       queue.Queue[qhandle]
	stopOnce sync.Once
	// quorum is cq when the queue is a quorum queue of a cluster's,
	// replicated by its Raft group (group, with members as its voters);
	// nil otherwise.
	quorum  *queue.Quorum[qhandle]
	group   uint64
	members []uint64
	// learners are the group's members on their way in, not yet voters
	// (the cluster's AddMember), as last applied here.
	learners []uint64
	// home is a replicated classic queue's home node (nil: the queue does
	// not replicate); remote is cq when that is another node.
	home   atomic.Pointer[homeNode]
	remote *remoteQueue
	// front is cq for a replicated quorum queue (quorumfront.go): its
	// group's here while isVoter, forwarded to a member otherwise.
	front   *quorumFront
	isVoter atomic.Bool

	// mu guards every field below. It is never held while calling cq.
	mu                sync.Mutex
	consumers         []*consumer
	linkConsumers     int // other members' consumers (homeLink)
	deleted           bool
	hadConsumers      bool
	exclusiveConsumer bool
	// unavailable, if set, is why the queue is refused (a corrupt log).
	unavailable string
	// groupSize is a replicated quorum queue's group's target size (0:
	// every member of the cluster, as declared before sizes), and
	// target the members it was shaped to by hand (nil: none named;
	// quorummembers.go). Both are the metadata group's: set as it
	// applies a declaration or a shape change.
	groupSize int
	target    []uint64
	// flowClear, while non-nil, is closed once the ready backlog drops
	// below flowLow: publishers that found the queue congested wait on it.
	flowClear chan struct{}
}

// qhandle is what the queue core holds of a message: the message while it
// is in memory (nil once paged out) and where the log has it.
type qhandle struct {
	msg *Message
	ref store.Ref // zero in a transient queue, which the store holds nothing for
}

// A marked entry (queue.Message.Mark) is hot: its body counts against the
// server's ring-buffer budget until it is first delivered or leaves
// undelivered.

// qentry is one message's place in a queue, as channels and the store see
// it. msg is nil while the message is paged out; ref then says where the
// log has it.
type qentry struct {
	seq uint64 // its place in the queue
	// tag is the queue's delivery tag, which settles it (0: delivered
	// without acknowledgement, or not delivered).
	tag     uint64
	msg     *Message
	ref     store.Ref
	expires int64 // unix ns; 0: never
	prio    uint8 // message priority (priority queues)
	// deliveries counts the message's deliveries, this one included
	// (saturating; a message recovered after it may have been delivered
	// starts at 1): more than one is a redelivery, which carries
	// x-delivery-count deliveries-1.
	deliveries uint16
}

// redelivered reports whether the delivery is flagged redelivered.
func (e *qentry) redelivered() bool { return e.deliveries > 1 }

func fromEntry(e *queue.Entry[qhandle], tag uint64) qentry {
	return qentry{seq: e.Seq, tag: tag, msg: e.Handle.msg, ref: e.Handle.ref, expires: e.Expires, prio: e.Priority,
		deliveries: e.Deliveries}
}

func newQueue(v *VHost, name string, durable, exclusive, autoDelete bool, args amqp.Table, owner *conn, own queuePolicy, ap *appliedPolicy) *Queue {
	q := &Queue{own: own, Name: name, Durable: durable, Exclusive: exclusive, AutoDelete: autoDelete, Args: args,
		vhost: v, owner: owner, store: v.server.store, ringSize: v.server.cfg.RingBufferSize, stripe: nextStripe.Add(1)}
	v.server.queues.Add(1)
	q.eff.Store(ap)
	q.cq = queue.NewClassic[qhandle](ap.core(), (*queueHost)(q), nil)
	v.server.startSampler()
	return q
}

// core is the queue core's policy for these arguments.
func (p queuePolicy) core() queue.Policy {
	cp := queue.Policy{MaxPriority: uint8(p.maxPriority), MaxLength: int64(p.maxLen), MaxLengthBytes: p.maxLenBytes,
		DeadLetter: p.hasDLX, Expires: p.expires * int64(time.Millisecond)}
	switch {
	case p.rejectPublishDLX:
		cp.Overflow = queue.RejectPublishDLX
	case p.rejectPublish:
		cp.Overflow = queue.RejectPublish
	}
	cp.SingleActive = p.singleActive
	cp.LimitDeliveries, cp.DeliveryLimit = p.quorum && p.deliveryLimit >= 0, p.deliveryLimit
	// At least once only with reject-publish, as RabbitMQ: with drop-head
	// the queue dead-letters at most once (a message held for its
	// confirm must not be dropped to make room).
	cp.AtLeastOnce = p.quorum && p.atLeastOnce && p.hasDLX && p.rejectPublish && !p.rejectPublishDLX
	return cp
}

// signal asks the queue's driver to look for work.
func (q *Queue) signal() { q.cq.Wake() }

// Publisher flow control. While a queue with consumers has more than
// flowHigh ready messages, or ready bodies over flowHighBytes (large
// messages: 4,096 of 1 MB would be 4 GB; 32 MiB keeps a 1 MB 4P/4C
// run under 300 MB of RSS at full speed), the connections publishing into
// it pause reading until the backlog is under flowLow and flowLowBytes
// (or flowPause passes, so a connection
// that also consumes the queue still gets its acks read). Consumers then
// get the CPU that unthrottled publishers would take on a shared machine,
// and memory stays bounded by the backlog, not by the publish rate. Queues
// without consumers are not throttled: their backlog is what they are for.
const (
	flowHigh      = 4096
	flowLow       = flowHigh / 2
	flowHighBytes = 32 << 20
	flowLowBytes  = flowHighBytes / 2
	flowPause     = 50 * time.Millisecond
)

// push appends a routed message (already Put in the store). It returns a
// channel to wait on if the queue is congested, else nil, and whether the
// queue refused the message (a reject-publish queue that filled after the
// publisher's admission check). now is the publish's time (queue.Now's
// clock): the message's time in the queue, and its TTL's start.
func (q *Queue) push(m *Message, now int64, replicated func(error)) (wait <-chan struct{}, refused bool) {
	h := qhandle{msg: m}
	cm := queue.Message[qhandle]{Size: uint32(len(m.Body)), Priority: m.Priority, Timestamp: now}
	p := q.settings()
	if p.ttl >= 0 || m.hasTTL {
		cm.Expires = expiryFor(p.ttl, m, now)
	}
	if rq := q.remoteNow(); rq != nil {
		// Safe once the home node (the group) has it.
		return rq.pushAsync(m, replicated), false
	}
	if q.quorum != nil {
		// Safe once the group has it: replicated hears when (a
		// reject-publish refusal too, as ErrRejected).
		cm.Handle = h
		var done func(error)
		if replicated != nil {
			done = func(err error) { replicated(quorumOutcome(err)) }
		}
		// Its own flow control: pushes the group has not applied yet.
		return q.quorum.PushAsync(cm, done), false
	}
	// Stored, and this durable queue is one the store holds it for (a
	// transient queue the message also went to keeps its body), so it can
	// be read back.
	if !m.ref.IsZero() && q.storesMessage(m) {
		h.ref = m.ref
		srv := q.vhost.server
		if q.lastReady.Load() >= int64(q.ringSize) || srv.hotBytes.Load() >= srv.cfg.RingBufferBytes {
			h.msg = nil // the log has it; memory stays bounded by the rings
		} else {
			cm.Mark = true
			srv.hotBytes.Add(int64(len(m.Body)))
		}
	}
	cm.Handle = h
	ready, consumers, err := q.cq.Push(cm)
	q.lastReady.Store(ready)
	if err != nil {
		// Refused (a reject-publish queue filled since the publisher's
		// check): the queue never held it. With reject-publish-dlx and a
		// DLX the core dead-lettered it, which released it.
		if !p.rejectPublishDLX || !p.hasDLX {
			(*queueHost)(q).Release([]queue.Entry[qhandle]{{Queued: queue.Queued[qhandle]{Handle: h}}})
		}
		return nil, true
	}
	// The bytes are estimated from this message's size: exact for a
	// stream of one size, and cheap (the core's byte count is read only
	// by flowCheck, while publishers wait).
	if consumers == 0 || ready <= flowHigh && ready*int64(len(m.Body)) <= flowHighBytes {
		return nil, false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return nil, false
	}
	if q.flowClear == nil {
		q.flowClear = make(chan struct{})
		q.flowWaiting.Store(true)
	}
	return q.flowClear, false
}

// flowCheck releases waiting publishers once the backlog is low enough (or
// nobody consumes any more, or the queue is gone).
func (q *Queue) flowCheck() {
	if !q.flowWaiting.Load() {
		return
	}
	ready, readyBytes, consumers := q.cq.Backlog() // not Info: no head peek, no stats copy
	q.mu.Lock()
	if q.flowClear != nil && (ready < flowLow && readyBytes < flowLowBytes || consumers == 0 || q.deleted) {
		close(q.flowClear)
		q.flowClear = nil
		q.flowWaiting.Store(false)
	}
	q.mu.Unlock()
}

// limited reports whether the queue may refuse publishes: reject-publish
// with a length limit.
func (q *Queue) limited() bool {
	p := q.settings()
	return p.rejectPublish && (p.maxLen >= 0 || p.maxLenBytes >= 0)
}

// full reports whether a reject-publish queue refuses m: it would take the
// queue's ready messages or their bodies over a limit.
func (q *Queue) full(m *Message) bool {
	return q.limited() && !q.cq.Admits(uint32(len(m.Body)))
}

// tagsOf returns the delivery tags of entries.
func tagsOf(es []qentry) []uint64 {
	tags := make([]uint64, len(es))
	for i := range es {
		tags[i] = es[i].tag
	}
	return tags
}

// requeue returns unacked messages to their original places, flagged
// redelivered.
func (q *Queue) requeue(es []qentry) { q.cq.Settle(tagsOf(es), queue.Requeue) }

// release lets go of messages that were delivered without acknowledgement
// (no-ack), so never counted as unacked.
func (q *Queue) release(es []qentry) {
	q.releaseEntries(len(es), func(i int) store.Ref { return es[i].ref })
}

// releaseDelivered releases no-ack deliveries. Only a durable queue's
// messages are in the log to be acked there, so a transient queue skips the
// work (and the slice) per delivery batch.
func (q *Queue) releaseDelivered(ds []delivery) {
	q.releaseEntries(len(ds), func(i int) store.Ref { return ds[i].e.ref })
}

// get takes the head message for basic.get; ok is false if the queue is
// empty. remaining is the ready count after the take; err is set when the
// message could not be read back (the queue is then unavailable).
func (q *Queue) get(noAck bool) (ce queue.Entry[qhandle], tag uint64, remaining int, ok bool, err error) {
	if rq := q.remoteNow(); rq != nil {
		return rq.get(noAck)
	}
	ce, tag, ok = q.cq.Get(noAck) // a use, for x-expires
	if !ok {
		if q.isUnavailable() {
			return ce, 0, 0, false, errLoadFailed
		}
		return ce, 0, 0, false, nil
	}
	ready, _, _ := q.cq.Backlog()
	q.flowCheck()
	return ce, tag, int(ready), true, nil
}

// giveBack returns a message taken by get, with its tag, that could not be
// handed over: the core's own entry, so its size and time go back too.
func (q *Queue) giveBack(ce queue.Entry[qhandle], tag uint64) { q.cq.GiveBack(ce, tag) }

// loadFailed marks the queue unavailable when a paged-out message cannot be
// read back: the log is damaged, and carrying on would skip the message
// silently. recovery-tool repair says what was lost.
func (q *Queue) loadFailed(e *queue.Entry[qhandle], err error) {
	q.vhost.server.logger.Error("queue unavailable: cannot read a message back from the log",
		"queue", q.Name, "vhost", q.vhost.name, "message", e.Handle.ref.ID, "segment", e.Handle.ref.Segment,
		"offset", e.Handle.ref.Offset, "err", err)
	q.mu.Lock()
	q.unavailable = "a message could not be read back from the log"
	q.mu.Unlock()
}

// checkOwner refuses access to another connection's exclusive queue.
func (q *Queue) checkOwner(c *conn, m amqp.Method) error {
	if q.Exclusive && q.owner != c {
		return errLocked(m, q)
	}
	return nil
}

// errLocked is RabbitMQ's 405 for another connection's exclusive queue.
func errLocked(m amqp.Method, q *Queue) error {
	return protoErr(amqp.ResourceLocked, m,
		"cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
		q.Name, q.vhost.name)
}

// queueArgsChecked are the arguments whose values must match on redeclare.
var queueArgsChecked = []string{
	"x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
	"x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
	"x-queue-type", "x-single-active-consumer", "x-queue-master-locator", "x-queue-leader-locator",
	"x-delivery-limit", "x-dead-letter-strategy",
}

// equivalent checks a redeclare against the queue as RabbitMQ does:
// exclusivity, then durable and auto-delete, then queueArgsChecked.
func (q *Queue) equivalent(m *DefChange, vhost string) error {
	diff := func(arg string, got, cur any) error {
		return protoErr(amqp.PreconditionFailed, m.method(),
			"inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'",
			arg, q.Name, vhost, got, cur)
	}
	switch {
	case m.Exclusive != q.Exclusive:
		// RabbitMQ checks exclusivity first and strictly: a lock, not an
		// inequivalence.
		return errLocked(m.method(), q)
	case m.Durable != q.Durable:
		return diff("durable", m.Durable, q.Durable)
	case m.AutoDelete != q.AutoDelete:
		return diff("auto_delete", m.AutoDelete, q.AutoDelete)
	}
	for _, k := range queueArgsChecked {
		got, gok := m.Arguments[k]
		cur, cok := q.Args[k]
		if k == "x-queue-type" && sameQueueType(got, gok, cur, cok) {
			continue
		}
		if err := argEquivalent(m.method(), "queue", q.Name, vhost, k, got, gok, cur, cok); err != nil {
			return err
		}
	}
	return nil
}

// errUnavailable refuses a queue whose log is damaged. RabbitMQ answers
// 404 for a queue whose process is down; the text says why.
func errUnavailable(m amqp.Method, q *Queue) error {
	if q.remote != nil {
		return q.errHomeDown(m)
	}
	q.mu.Lock()
	why := q.unavailable
	q.mu.Unlock()
	return protoErr(amqp.NotFound, m, "queue '%s' in vhost '%s' is unavailable: %s; see the server log and recovery-tool",
		q.Name, q.vhost.name, why)
}

// isUnavailable reports whether the queue is refused (a damaged log).
func (q *Queue) isUnavailable() bool {
	if q.remote != nil {
		return !q.remote.current().reachable()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unavailable != ""
}

// purge drops every ready message and returns how many.
func (q *Queue) purge() int {
	n := q.cq.Purge()
	q.flowCheck()
	return n
}

// counts returns the ready messages and the consumers.
func (q *Queue) counts() (messages, consumers int) {
	if rq := q.remoteNow(); rq != nil {
		rq.fresh()
	}
	ready, _, consumers := q.cq.Backlog()
	return int(ready), consumers
}

// addConsumer attaches c; it fails with 403 if exclusivity forbids it.
// accepted, if set, runs once c is accepted and before any delivery to it.
func (q *Queue) addConsumer(c *consumer, m amqp.Method, accepted func()) error {
	rq := q.remoteNow()
	if rq != nil {
		// The home node judges exclusivity, and answers first.
		if err := rq.register(m, c, c.priority, c.noAck, c.exclusive); err != nil {
			return err
		}
	}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		if rq != nil {
			rq.unregister(c)
		}
		return errNoQueue(m, q.vhost.name, q.Name)
	}
	if err := q.refuseExclusiveLocked(m, c.exclusive); err != nil {
		q.mu.Unlock()
		if rq != nil {
			rq.unregister(c)
		}
		return err
	}
	if accepted != nil {
		accepted()
	}
	q.consumers = append(q.consumers, c)
	q.hadConsumers = true
	q.exclusiveConsumer = c.exclusive
	q.mu.Unlock()
	c.id = q.cq.Consume(c, c.priority, c.noAck)
	c.cid.Store(uint64(c.id))
	return nil
}

// refuseExclusiveLocked is RabbitMQ's 403 for a new consumer that
// exclusivity forbids (exclusive: it asks to be the only one), counting
// other members' consumers (linkConsumers) too; RabbitMQ refuses an
// exclusive consumer on a single-active-consumer queue even when it has
// no consumers, with the same text. Caller holds q.mu.
func (q *Queue) refuseExclusiveLocked(m amqp.Method, exclusive bool) error {
	if q.exclusiveConsumer || (exclusive && (len(q.consumers)+q.linkConsumers > 0 || q.own.singleActive)) {
		return protoErr(amqp.AccessRefused, m, "queue '%s' in vhost '%s' in exclusive use", q.Name, q.vhost.name)
	}
	return nil
}

// autoDeleteDueLocked reports whether an auto-delete queue has lost its
// last consumer, here or a member's. Caller holds q.mu.
func (q *Queue) autoDeleteDueLocked() bool {
	return q.AutoDelete && q.hadConsumers && len(q.consumers)+q.linkConsumers == 0 && !q.deleted
}

// removeConsumer detaches c and reports whether the queue should now be
// auto-deleted.
func (q *Queue) removeConsumer(c *consumer) (autoDelete bool) {
	q.mu.Lock()
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if c.exclusive {
				q.exclusiveConsumer = false
			}
			break
		}
	}
	// A remote queue's home node decides its auto-deletion.
	autoDelete = q.autoDeleteDueLocked() && q.remote == nil
	q.mu.Unlock()
	q.cq.Cancel(c.id)
	q.flowCheck()
	return autoDelete
}

// markDeleted stops the queue and returns its consumers (to be cancelled)
// and the number of ready messages it held.
func (q *Queue) markDeleted() ([]*consumer, int) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return nil, 0
	}
	q.deleted = true
	q.gone.Store(true)
	cs := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	q.dropFromStore()
	q.dropGroup()
	n := 0
	q.stopOnce.Do(func() {
		n = q.cq.Delete() // releases what it held (the store has dropped it all)
		q.vhost.server.queues.Done()
	})
	q.flowCheck()
	return cs, n
}

// stop ends the queue's driver at server shutdown, keeping its messages.
func (q *Queue) stop() {
	q.stopOnce.Do(func() {
		q.cq.Close()
		q.vhost.server.queues.Done()
	})
}

// touch records a use of the queue (declare, basic.get) for x-expires.
func (q *Queue) touch() {
	if q.settings().expires != 0 {
		q.cq.Touch()
	}
}

// queueHost is a Queue seen as its queue.Classic's Host.
type queueHost Queue

// Release tells the store the queue let go of these messages, and takes
// undelivered in-memory ones off the ring-buffer budget.
func (h *queueHost) Release(es []queue.Entry[qhandle]) {
	q := (*Queue)(h)
	var freed uint64
	for i := range es {
		freed += uint64(es[i].Size)
	}
	q.vhost.server.freedBytes.add(q.stripe, freed)
	if q.id == 0 {
		return // a transient queue's messages are on the heap alone, never counted hot
	}
	q.unheat(es, false)
	q.releaseEntries(len(es), func(i int) store.Ref { return es[i].Handle.ref })
}

// unheat takes messages off the ring-buffer budget: undelivered ones that
// leave, or (delivering) ones on their first delivery.
func (q *Queue) unheat(es []queue.Entry[qhandle], delivering bool) {
	var n int64
	for i := range es {
		e := &es[i]
		if e.Marked() && (delivering && e.Deliveries == 1 || !delivering && e.Deliveries == 0) {
			n += int64(len(e.Handle.msg.Body))
		}
		if delivering {
			e.Unmark() // this copy is off the budget, even if it comes back (GiveBack)
		}
	}
	if n != 0 {
		q.vhost.server.hotBytes.Add(-n)
	}
}

// DeadLetter republishes messages to the dead-letter exchange, then
// releases them.
func (h *queueHost) DeadLetter(es []queue.Entry[qhandle], reason queue.Reason) {
	q := (*Queue)(h)
	for i := range es {
		qe := fromEntry(&es[i], 0)
		q.deadLetter(&qe, reason.String(), nil)
	}
	h.Release(es)
}

// DeadLetterConfirmed republishes a message dead-lettered at least once,
// with a confirm (queue.DeadLetterHost); the queue releases it once
// confirmed.
func (h *queueHost) DeadLetterConfirmed(e queue.Entry[qhandle], reason queue.Reason, done func(ok bool)) {
	q := (*Queue)(h)
	qe := fromEntry(&e, 0)
	q.deadLetter(&qe, reason.String(), done)
}

// errLoadFailed reports a message the log could not give back.
var errLoadFailed = errors.New("a message could not be read back from the log")

// Prepare reads paged-out messages back from the log and makes sure the
// delivered bound covers the batch before it goes out, so that after a
// crash these messages come back flagged redelivered. If one cannot be
// read, it and everything after it stay in the queue, which becomes
// unavailable.
func (h *queueHost) Prepare(es []queue.Entry[qhandle]) []queue.Entry[qhandle] {
	q := (*Queue)(h)
	if q.isUnavailable() {
		return es[:0]
	}
	stats := &q.vhost.server.stats
	var top uint64
	for i := range es {
		e := &es[i]
		top = max(top, e.Handle.ref.ID)
		if e.Handle.msg != nil {
			if q.id != 0 {
				stats.ringHits.Add(1)
			}
			continue
		}
		stats.ringMisses.Add(1)
		m, err := q.loadMessage(e.Handle.ref)
		if err != nil {
			q.loadFailed(e, err)
			es = es[:i]
			break
		}
		e.Handle.msg = m
	}
	q.unheat(es, true)
	if d := q.vhost.server.delivered; d != nil && q.id != 0 && top != 0 {
		if err := d.covered(top); err != nil {
			q.vhost.server.deliveredNotStored(err)
		}
	}
	q.flowCheck()
	return es
}

// Expired deletes the queue once it has been unused for x-expires. The
// deletion waits for the queue's driver, which calls this, so it runs on
// a goroutine of its own.
//
// A replicated quorum queue's leader alone calls it, and the deletion
// goes through the cluster, as a client's would, to every member.
func (h *queueHost) Expired() {
	q := (*Queue)(h)
	go func() {
		if r := q.vhost.server.replicating(); r != nil && replicatedQueue(q) {
			if q.vhost.queue(q.Name) != q {
				return // deleted (and maybe declared again) meanwhile
			}
			if _, err := q.vhost.removeQuorumReplicated(r, &DefChange{Kind: QueueDelete, Queue: q.Name}, q); err != nil {
				q.vhost.server.logger.Warn("x-expires: the cluster did not take the queue's deletion", "vhost", q.vhost.name, "queue", q.Name, "err", err)
			}
			return
		}
		_, _ = q.vhost.deleteQueue(q, nil)
	}()
}

// delivery pairs a taken message with the consumer it goes to.
type delivery struct {
	c *consumer
	e qentry
}

// consumer is a basic.consume subscription. As a queue.Consumer it is
// called by its queue's driver only.
type consumer struct {
	tag       string
	ch        *channel
	q         *Queue
	id        queue.ConsumerID
	noAck     bool
	exclusive bool
	prefetch  int32 // per-consumer limit (basic.qos global=false); 0: none
	priority  int64 // x-priority; higher is served first
	unacked   atomic.Int32
	gone      atomic.Bool // cancelled by the server (queue deleted)
	// timeout is how long its deliveries may stay unacked (negative: no
	// limit); see ackTimeout.
	timeout time.Duration
	// ds is the driver's scratch for a delivered batch.
	ds []delivery
	// args are basic.consume's arguments (the management API's).
	args amqp.Table
	// listed: counted in its channel's view.consumers.
	listed atomic.Bool
	// cid is id once the queue has given it, for readers other than the
	// channel's reader (the management API); 0 before.
	cid atomic.Uint64
	// dests is its channel's counters for q (chandests.go).
	dests *chanQCounters
}

// Acquire takes up to n delivery credits from the consumer's and its
// channel's prefetch windows. Only the queue's driver calls it, so the
// consumer check-then-add cannot overshoot.
func (c *consumer) Acquire(n int64) int64 { return int64(c.acquire(int32(min(n, 1<<30)))) }

// Unacquire gives back credits acquired and not used.
func (c *consumer) Unacquire(n int64) {
	c.release(int32(n))
	if c.ch.globalLimit.Load() > 0 && !c.noAck {
		// Another queue of the channel may have found the shared window
		// full meanwhile.
		c.ch.conn.wakeConsumers()
	}
}

// Deliver hands a batch to the channel.
func (c *consumer) Deliver(es []queue.Entry[qhandle], tag uint64) {
	ds := c.ds[:0]
	for i := range es {
		t := tag
		if t != 0 {
			t += uint64(i)
		}
		ds = append(ds, delivery{c: c, e: fromEntry(&es[i], t)})
	}
	c.ch.deliver(c, c.q, ds)
	clear(ds)
	c.ds = ds[:0]
}

func (c *consumer) acquire(n int32) int32 {
	if !c.ch.canDeliver() {
		return 0
	}
	if c.noAck {
		return n
	}
	if c.prefetch > 0 {
		avail := c.prefetch - c.unacked.Load()
		if avail <= 0 {
			return 0
		}
		n = min(n, avail)
	}
	n = c.ch.acquireGlobal(n)
	c.unacked.Add(n)
	return n
}

// release gives back n credits acquired but not used.
func (c *consumer) release(n int32) {
	if c.noAck {
		return
	}
	c.unacked.Add(-n)
	c.ch.globalUnacked.Add(-n)
}

// Type is the queue's x-queue-type as RabbitMQ reports it: "classic" or
// "quorum" (a quorum queue's semantics on one node; not replicated yet).
func (q *Queue) Type() string {
	if q.own.quorum {
		return queueTypeQuorum
	}
	return queueTypeClassic
}

// storesMessage reports whether q keeps m in the store: a durable queue
// keeps a persistent message there, and a quorum queue every message, as
// RabbitMQ's quorum queues write every message to their log.
func (q *Queue) storesMessage(m *Message) bool {
	return q.id != 0 && (m.Persistent || q.own.quorum)
}
