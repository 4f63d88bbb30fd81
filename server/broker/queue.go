package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Queue holds messages in order and hands them to its consumers.
//
// Ownership: the queue's dispatch goroutine (run) is the only one that moves
// messages from ready to consumers. Publishers, acks and requeues touch the
// queue under mu only long enough to change the deque; no lock is shared
// between queues.
type Queue struct {
	Name       string
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Args       amqp.Table

	vhost *VHost
	owner *conn // the declaring connection of an exclusive queue
	store MessageStore
	// id names a durable queue in the definitions and the log (0: not
	// persisted).
	id uint64
	// ringSize is how many ready messages stay in memory; beyond it,
	// messages already in the log are kept as references only.
	ringSize int
	// dropped is set once the queue's deletion reached the store.
	dropped atomic.Bool
	// gone mirrors deleted for lock-free checks by channel caches.
	gone atomic.Bool

	// mu guards every field below.
	mu                sync.Mutex
	ready             readyQueue
	unacked           int
	consumers         []*consumer
	rr                int
	nextSeq           uint64
	deleted           bool
	hadConsumers      bool
	exclusiveConsumer bool
	// unavailable, if set, is why the queue is refused (a corrupt log).
	unavailable string
	// policy is fixed at declaration from the queue's arguments.
	policy queuePolicy
	// lastUsed is when the queue was last declared, read with basic.get
	// or had a consumer come or go (unix ns; for x-expires).
	lastUsed int64
	// flowClear, while non-nil, is closed once the ready backlog drops
	// below flowLow: publishers that found the queue congested wait on it.
	flowClear chan struct{}

	wake chan struct{} // capacity 1: "there may be work"
	done chan struct{} // closed when the queue is deleted
}

// qentry is one message's place in a queue. msg is nil while the message
// is paged out; ref then says where the log has it.
type qentry struct {
	seq         uint64
	msg         *Message
	ref         storeRef
	expires     int64 // unix ns; 0: never
	prio        uint8 // message priority (priority queues)
	redelivered bool
}

func newQueue(v *VHost, name string, durable, exclusive, autoDelete bool, args amqp.Table, owner *conn, policy queuePolicy) *Queue {
	q := &Queue{policy: policy, lastUsed: time.Now().UnixNano(), ready: newReadyQueue(policy.maxPriority),
		Name: name, Durable: durable, Exclusive: exclusive, AutoDelete: autoDelete, Args: args,
		vhost: v, owner: owner, store: v.server.store, ringSize: v.server.cfg.RingBufferSize,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	v.server.queues.Add(1)
	go q.run()
	if policy.expires > 0 {
		q.signal() // arm the expiry timer
	}
	return q
}

// signal asks the dispatch goroutine to look for work.
func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Publisher flow control. While a queue with consumers has more than
// flowHigh ready messages, the connections publishing into it pause reading
// until the backlog is under flowLow (or flowPause passes, so a connection
// that also consumes the queue still gets its acks read). Consumers then
// get the CPU that unthrottled publishers would take on a shared machine,
// and memory stays bounded by the backlog, not by the publish rate. Queues
// without consumers are not throttled: their backlog is what they are for.
const (
	flowHigh  = 4096
	flowLow   = flowHigh / 2
	flowPause = 50 * time.Millisecond
)

// push appends a routed message (already Put in the store). It returns a
// channel to wait on if the queue is congested, else nil.
func (q *Queue) push(m *Message) <-chan struct{} {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		q.store.Release(q, []qentry{{msg: m, ref: m.ref}})
		return nil
	}
	q.nextSeq++
	e := qentry{seq: q.nextSeq, msg: m, ref: m.ref, prio: m.priority}
	if q.policy.ttl >= 0 || m.hasTTL {
		e.expires = q.expiryFor(m, time.Now())
	}
	if q.id != 0 && m.ref.id != 0 && q.store.Pages() {
		srv := q.vhost.server
		if q.ready.len() >= q.ringSize || srv.hotBytes.Load() >= srv.cfg.RingBufferBytes {
			e.msg = nil // the log has it; memory stays bounded by the rings
		} else if !q.ready.countingHot() {
			q.ready.countHot(&srv.hotBytes)
		}
	}
	q.ready.pushBack(e)
	var over []qentry
	if q.policy.maxLen >= 0 {
		for q.ready.len() > q.policy.maxLen {
			over = append(over, q.ready.popFront())
		}
	}
	wake := len(q.consumers) > 0 || e.expires != 0
	var congested <-chan struct{}
	if len(q.consumers) > 0 && q.ready.len() > flowHigh {
		if q.flowClear == nil {
			q.flowClear = make(chan struct{})
		}
		congested = q.flowClear
	}
	q.mu.Unlock()
	q.discard(over, "maxlen")
	if wake {
		q.signal()
	}
	return congested
}

// flowCheckLocked releases waiting publishers once the backlog is low
// enough (or nobody consumes any more). Caller holds q.mu.
func (q *Queue) flowCheckLocked() {
	if q.flowClear != nil && (q.ready.len() < flowLow || len(q.consumers) == 0 || q.deleted) {
		close(q.flowClear)
		q.flowClear = nil
	}
}

// full reports whether a reject-publish queue is at its length limit.
func (q *Queue) full() bool {
	if !q.policy.rejectPublish || q.policy.maxLen < 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len() >= q.policy.maxLen
}

// requeue returns unacked messages to their original places, flagged
// redelivered.
func (q *Queue) requeue(es []qentry) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		q.store.Release(q, es)
		return
	}
	q.unacked -= len(es)
	for _, e := range es {
		e.redelivered = true
		q.ready.insertOrdered(e)
	}
	wake := len(q.consumers) > 0
	q.mu.Unlock()
	if wake {
		q.signal()
	}
}

// release lets go of messages that were delivered without acknowledgement
// (no-ack), so never counted as unacked.
func (q *Queue) release(es []qentry) { q.store.Release(q, es) }

// releaseDelivered releases no-ack deliveries. Only a durable queue's
// messages are in the log to be acked there, so a transient queue skips the
// work (and the slice) per delivery batch.
func (q *Queue) releaseDelivered(ds []delivery) {
	if q.id != 0 {
		q.release(entriesOf(ds))
	}
}

// settle forgets delivered messages that were acked; rejected ones are
// discarded (dead-lettered if the queue says so).
func (q *Queue) settle(es []qentry, rejected bool) {
	q.mu.Lock()
	if !q.deleted {
		q.unacked -= len(es)
	}
	q.mu.Unlock()
	if rejected {
		q.discard(es, "rejected")
		return
	}
	q.store.Release(q, es)
}

// get takes the head message for basic.get; ok is false if the queue is
// empty. remaining is the ready count after the take.
func (q *Queue) get(noAck bool) (e qentry, remaining int, ok bool, err error) {
	q.touch()
	q.mu.Lock()
	expired := q.takeExpiredLocked(time.Now().UnixNano(), nil)
	if q.deleted || q.ready.len() == 0 {
		q.mu.Unlock()
		q.discard(expired, "expired")
		return qentry{}, 0, false, nil
	}
	e = q.ready.popFront()
	if !noAck {
		q.unacked++
	}
	remaining = q.ready.len()
	q.flowCheckLocked()
	q.mu.Unlock()
	q.discard(expired, "expired")
	if e.msg == nil {
		if err := q.store.Load(&e); err != nil {
			if !noAck {
				q.mu.Lock()
				q.unacked--
				q.mu.Unlock()
			}
			q.loadFailed(e, err)
			return qentry{}, 0, false, err
		}
	}
	if d := q.vhost.server.delivered; d != nil && q.id != 0 && e.ref.id != 0 {
		if err := d.covered(e.ref.id); err != nil {
			q.vhost.server.deliveredNotStored(err)
		}
	}
	return e, remaining, true, nil
}

// loadFailed marks the queue unavailable when a paged-out message cannot be
// read back: the log is damaged, and carrying on would skip the message
// silently. recovery-tool repair says what was lost.
func (q *Queue) loadFailed(e qentry, err error) {
	q.vhost.server.logger.Error("queue unavailable: cannot read a message back from the log",
		"queue", q.Name, "vhost", q.vhost.name, "message", e.ref.id, "segment", e.ref.seg,
		"offset", e.ref.off, "err", err)
	q.mu.Lock()
	q.unavailable = "a message could not be read back from the log"
	q.ready.pushFront(e)
	q.mu.Unlock()
}

// purge drops every ready message and returns how many.
func (q *Queue) purge() int {
	q.mu.Lock()
	es := q.ready.drain()
	q.flowCheckLocked()
	q.mu.Unlock()
	q.store.Release(q, es)
	return len(es)
}

// counts returns the ready messages and the consumers.
func (q *Queue) counts() (messages, consumers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len(), len(q.consumers)
}

// addConsumer attaches c; it fails with 403 if exclusivity forbids it.
// accepted, if set, runs under the queue lock once c is accepted and before
// any delivery to it.
func (q *Queue) addConsumer(c *consumer, m amqp.Method, accepted func()) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return errNoQueue(m, q.vhost.name, q.Name)
	}
	if q.exclusiveConsumer || (c.exclusive && len(q.consumers) > 0) {
		return protoErr(amqp.AccessRefused, m, "queue '%s' in vhost '%s' in exclusive use", q.Name, q.vhost.name)
	}
	if accepted != nil {
		accepted()
	}
	// Keep consumers sorted by priority, highest first, newest last among
	// equals.
	i := len(q.consumers)
	for i > 0 && q.consumers[i-1].priority < c.priority {
		i--
	}
	q.consumers = append(q.consumers, nil)
	copy(q.consumers[i+1:], q.consumers[i:])
	q.consumers[i] = c
	q.hadConsumers = true
	q.lastUsed = time.Now().UnixNano()
	q.exclusiveConsumer = c.exclusive
	q.signal()
	return nil
}

// removeConsumer detaches c and reports whether the queue should now be
// auto-deleted.
func (q *Queue) removeConsumer(c *consumer) (autoDelete bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if c.exclusive {
				q.exclusiveConsumer = false
			}
			break
		}
	}
	q.flowCheckLocked()
	q.lastUsed = time.Now().UnixNano()
	if q.policy.expires > 0 {
		q.signal() // the expiry clock starts again with no consumers
	}
	return q.AutoDelete && q.hadConsumers && len(q.consumers) == 0 && !q.deleted
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
	es := q.ready.drain()
	q.flowCheckLocked()
	q.mu.Unlock()
	close(q.done)
	q.store.DropQueue(q)
	q.store.Release(q, es)
	return cs, len(es)
}

// run is the queue's dispatch goroutine. It ends when the queue is deleted
// or the server closes.
func (q *Queue) run() {
	defer q.vhost.server.queues.Done()
	var batch []delivery
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-q.vhost.server.closing:
			return
		case <-q.wake:
		case <-timer.C:
		}
		batch = q.dispatch(batch)
		// Expire at the head even with no consumer, as RabbitMQ does, so
		// counts and dead-letter queues reflect TTLs promptly.
		now := time.Now().UnixNano()
		q.mu.Lock()
		expired := q.takeExpiredLocked(now, nil)
		next := q.nextExpiryLocked()
		unusedUntil := int64(0)
		if q.policy.expires > 0 && len(q.consumers) == 0 && !q.deleted {
			unusedUntil = q.lastUsed + q.policy.expires*int64(time.Millisecond)
		}
		q.mu.Unlock()
		q.discard(expired, "expired")
		if unusedUntil != 0 && unusedUntil <= now {
			// x-expires: unused for the whole period, the queue goes.
			_, _ = q.vhost.deleteQueue(q, nil)
			return
		}
		if unusedUntil != 0 && (next == 0 || unusedUntil < next) {
			next = unusedUntil
		}
		if next != 0 {
			timer.Reset(time.Until(time.Unix(0, next)))
		}
	}
}

// touch records a use of the queue (declare, basic.get, consumers coming
// or going) for x-expires, and re-arms its timer.
func (q *Queue) touch() {
	if q.policy.expires == 0 {
		return
	}
	q.mu.Lock()
	q.lastUsed = time.Now().UnixNano()
	q.mu.Unlock()
	q.signal()
}

// pickConsumerLocked takes one delivery credit from a consumer: the
// highest priority (x-priority) first, round-robin among equals; a lower
// priority is served only while every higher one is out of credit.
// q.consumers is kept sorted by priority. Caller holds q.mu.
func (q *Queue) pickConsumerLocked() *consumer {
	n := len(q.consumers)
	for start := 0; start < n; {
		end := start + 1
		for end < n && q.consumers[end].priority == q.consumers[start].priority {
			end++
		}
		size := end - start
		for i := 0; i < size; i++ {
			if c := q.consumers[start+(q.rr+i)%size]; c.acquire(1) == 1 {
				q.rr += i + 1
				return c
			}
		}
		start = end
	}
	return nil
}

// delivery pairs a taken message with the consumer it goes to.
type delivery struct {
	c *consumer
	e qentry
}

// maxDispatchBatch bounds how many messages one lock hold hands out, so
// publishers are not starved of the queue lock.
const maxDispatchBatch = 128

// dispatch hands ready messages to consumers with credit, round-robin, until
// either runs out.
func (q *Queue) dispatch(batch []delivery) []delivery {
	for {
		batch = batch[:0]
		q.mu.Lock()
		var expired []qentry
		for len(batch) < maxDispatchBatch && q.ready.len() > 0 && !q.deleted && q.unavailable == "" {
			c := q.pickConsumerLocked()
			if c == nil {
				break
			}
			if e := q.ready.first(); e.expires != 0 && e.expires <= time.Now().UnixNano() {
				expired = append(expired, q.ready.popFront())
				c.release(1)
				continue
			}
			e := q.ready.popFront()
			if !c.noAck {
				q.unacked++
			}
			batch = append(batch, delivery{c, e})
		}
		q.flowCheckLocked()
		q.mu.Unlock()
		q.discard(expired, "expired")
		if len(batch) == 0 {
			if len(expired) > 0 {
				continue
			}
			return batch
		}
		batch = q.loadBatch(batch)
		q.markDelivering(batch)
		// Hand over grouped by consumer, preserving order within each.
		for i := 0; i < len(batch); {
			j := i + 1
			for j < len(batch) && batch[j].c == batch[i].c {
				j++
			}
			batch[i].c.ch.deliver(batch[i].c, q, batch[i:j])
			i = j
		}
		for i := range batch {
			batch[i] = delivery{}
		}
	}
}

// markDelivering makes sure the delivered bound covers a batch before it
// goes out, so that after a crash these messages come back flagged
// redelivered.
func (q *Queue) markDelivering(batch []delivery) {
	d := q.vhost.server.delivered
	if d == nil || q.id == 0 {
		return
	}
	var top uint64
	for i := range batch {
		top = max(top, batch[i].e.ref.id)
	}
	if top == 0 {
		return
	}
	if err := d.covered(top); err != nil {
		q.vhost.server.deliveredNotStored(err)
	}
}

// loadBatch reads paged-out messages of a dispatch batch back from the
// log. If one cannot be read, it and everything after it go back to the
// queue, their credit is returned, and the queue becomes unavailable.
func (q *Queue) loadBatch(batch []delivery) []delivery {
	stats := &q.vhost.server.stats
	for i := range batch {
		if batch[i].e.msg != nil {
			if q.id != 0 {
				stats.ringHits.Add(1)
			}
			continue
		}
		stats.ringMisses.Add(1)
		if err := q.store.Load(&batch[i].e); err != nil {
			for j := len(batch) - 1; j >= i; j-- {
				d := batch[j]
				if !d.c.noAck {
					d.c.unacked.Add(-1)
					d.c.ch.globalUnacked.Add(-1)
					q.mu.Lock()
					q.unacked--
					q.mu.Unlock()
				}
				if j == i {
					q.loadFailed(d.e, err)
				} else {
					q.mu.Lock()
					q.ready.pushFront(d.e)
					q.mu.Unlock()
				}
			}
			return batch[:i]
		}
	}
	return batch
}

// consumer is a basic.consume subscription.
type consumer struct {
	tag       string
	ch        *channel
	q         *Queue
	noAck     bool
	exclusive bool
	prefetch  int32 // per-consumer limit (basic.qos global=false); 0: none
	priority  int64 // x-priority; higher is served first
	unacked   atomic.Int32
	gone      atomic.Bool // cancelled by the server (queue deleted)
	// timeout is how long its deliveries may stay unacked (negative: no
	// limit); see ackTimeout.
	timeout time.Duration
}

// acquire takes up to n delivery credits from the consumer's and its
// channel's prefetch windows. Only the queue's dispatch goroutine calls it,
// so the consumer check-then-add cannot overshoot.
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
