// Package queue holds the queue core: the state machine of one queue, which
// does no I/O and reads no clock. Commands go in (push, consume, credit,
// settle, requeue, get, purge, tick); effects come out (deliveries, store
// releases, dead-letters, delete-me), and a driver carries them out in a
// documented order. The classic queue drives it from a goroutine; a quorum
// queue applies the same commands from a Raft log, so every node's core
// reaches the same state.
//
// The core is not safe for concurrent use: its driver owns it.
package queue

import (
	"errors"
	"slices"
)

// Overflow is what a queue at its length limit does with a new message.
type Overflow uint8

// The overflow behaviours of x-overflow.
const (
	// DropHead drops (or dead-letters) the oldest ready messages.
	DropHead Overflow = iota
	// RejectPublish refuses the new message (the publisher gets a nack).
	RejectPublish
	// RejectPublishDLX refuses it and dead-letters it.
	RejectPublishDLX
)

// Policy is what a queue's arguments (and policies) ask of the core. Zero
// values mean "no limit"; negative lengths too.
type Policy struct {
	// MaxPriority is x-max-priority: priorities above it count as it.
	MaxPriority uint8
	// MaxLength is x-max-length in messages (ready ones); < 0: none.
	MaxLength int64
	// MaxLengthBytes is x-max-length-bytes, the ready bodies' total; < 0:
	// none.
	MaxLengthBytes int64
	// Overflow applies at either limit.
	Overflow Overflow
	// DeadLetter is set when the queue has a dead-letter exchange: dropped
	// messages come out as DeadLetter effects rather than Release.
	DeadLetter bool
	// Expires is x-expires in ns: unused for that long, the queue asks to
	// be deleted. 0: never.
	Expires int64
	// SingleActive is x-single-active-consumer.
	SingleActive bool
	// LimitDeliveries and DeliveryLimit are a quorum queue's
	// x-delivery-limit: with LimitDeliveries, a message requeued after it
	// was delivered more often than DeliveryLimit (0: at all) is dropped
	// or dead-lettered instead (ReasonDeliveryLimit).
	LimitDeliveries bool
	DeliveryLimit   int64
	// AtLeastOnce is a quorum queue's x-dead-letter-strategy
	// at-least-once (with a dead-letter exchange and reject-publish): a
	// dead-lettered message stays with the queue, counted in its limits
	// (Core.Hold), until its targets have it (Quorum).
	AtLeastOnce bool
}

// ConsumerID names a consumer to the core; the driver chooses them.
type ConsumerID uint64

// Message is what the core knows of a message being pushed: a handle the
// store and the driver understand, its body size, priority and expiry. H
// is the handle type (a classic queue's message and log reference; a
// quorum queue's log index).
type Message[H any] struct {
	Handle H
	// Expires is when it expires (ns on the driver's clock); 0: never.
	Expires int64
	// Timestamp is when it entered the queue (ns), for ages in Info; 0:
	// the time of the push.
	Timestamp int64
	Size      uint32
	Priority  uint8
	// Redelivered marks a message that may have been delivered before it
	// entered this core (recovered after a restart): its first delivery
	// here is flagged redelivered.
	Redelivered bool
	// Mark is the host's own bit, kept with the entry (Entry.Marked) and
	// never read by the core: it costs no byte beside the handle.
	Mark bool
}

// Entry is a message in the queue: what the queue keeps of it (Queued)
// and its place in its priority level.
type Entry[H any] struct {
	Queued[H]
	// Seq is the message's place in its priority level, given by Push:
	// consecutive in push order, so a level's deque finds it from its
	// position and keeps none.
	Seq uint64
}

// Queued is what a level keeps of a ready message: the Message fields and
// its history, 24 bytes beside the handle (a backlog of millions costs
// that much each).
type Queued[H any] struct {
	Handle    H
	Expires   int64
	Timestamp int64
	Size      uint32
	// Deliveries counts how often it was delivered, saturating
	// (x-delivery-count is Deliveries-1 on a redelivery).
	Deliveries uint16
	Priority   uint8
	flags      entryFlags
}

// entryFlags are an entry's bits, in one byte.
type entryFlags uint8

const (
	flagDead entryFlags = 1 << iota // a tombstone in its level (expired from the middle)
	flagMark                        // Message.Mark
)

// dead reports whether e is a tombstone.
func (e *Queued[H]) dead() bool { return e.flags&flagDead != 0 }

// Marked reports the host's bit, Message.Mark at the push.
func (e *Queued[H]) Marked() bool { return e.flags&flagMark != 0 }

// Unmark clears the host's bit in this copy of the entry.
func (e *Queued[H]) Unmark() { e.flags &^= flagMark }

func (m Message[H]) entry(seq uint64) Entry[H] {
	e := Entry[H]{Queued: Queued[H]{Handle: m.Handle, Expires: m.Expires, Timestamp: m.Timestamp, Size: m.Size, Priority: m.Priority}, Seq: seq}
	if m.Redelivered {
		e.Deliveries = 1
	}
	if m.Mark {
		e.flags = flagMark
	}
	return e
}

// delivered counts a delivery of e.
func (e *Queued[H]) delivered() {
	if e.Deliveries < ^uint16(0) {
		e.Deliveries++
	}
}

// Redelivered reports whether an entry being delivered was delivered
// before.
func (e *Queued[H]) Redelivered() bool { return e.Deliveries > 1 }

// Reason says why a message left the queue other than by an ack.
type Reason uint8

// Reasons, named as x-death's reason field.
const (
	ReasonRejected Reason = iota + 1
	ReasonExpired
	ReasonMaxLen
	ReasonPurged
	ReasonDeleted
	ReasonDeliveryLimit
)

func (r Reason) String() string {
	return [...]string{"", "rejected", "expired", "maxlen", "purged", "deleted", "delivery_limit"}[r]
}

// EffectKind is what the driver must do.
type EffectKind uint8

// The effects, in the order the driver must carry out a batch of them:
// store first, then deliveries, then dead-letters, then delete.
const (
	// Release: the store may forget these entries (acked, or dropped
	// without dead-lettering).
	Release EffectKind = iota + 1
	// Deliver: send these entries to Consumer, in order.
	Deliver
	// DeadLetter: republish these entries to the dead-letter exchange with
	// Reason, then release them.
	DeadLetter
	// DeleteQueue: the queue expired (x-expires) and asks to be deleted.
	DeleteQueue
	// ActiveConsumer: with single active consumer, Consumer is now the
	// active one (RabbitMQ tells it through consumer-update; drivers may
	// just log it).
	ActiveConsumer
)

// Effect is one thing for the driver to do. Entries is only valid until the
// next command.
type Effect[H any] struct {
	Kind     EffectKind
	Consumer ConsumerID
	Reason   Reason
	Entries  []Entry[H]
	// Tag is a Deliver's delivery tag for Entries[0], the next entries'
	// following on (0: a no-ack delivery, which is settled by nobody).
	// Settle and Return take these tags.
	Tag uint64
}

// ErrRejected refuses a push to a full reject-publish queue.
var ErrRejected = errors.New("queue full")

// consumerState is the core's view of a consumer.
type consumerState struct {
	id       ConsumerID
	priority int64
	credit   int64 // deliveries it may take now
	noAck    bool
	order    uint64 // subscription order
}

// Core is one queue's state. Make it with New.
type Core[H any] struct {
	policy Policy
	levels []level[H] // by priority, index 0 lowest
	ready  int64
	bytes  int64 // ready bodies
	// held and heldBytes are messages the queue keeps outside the core
	// (dead-lettered at least once, not yet confirmed): they count in
	// the limits as ready ones do, as RabbitMQ's quorum queues count
	// theirs.
	held, heldBytes int64
	expiries        minHeap[expiryItem]
	unacked         unackedTable[H]
	consumers       []*consumerState // by priority, highest first, then order
	credit          int64            // the consumers' credit, summed
	rr              int
	order           uint64
	active          ConsumerID // single active consumer, 0: none
	lastUsed        int64
	hadUsers        bool
	deleteAsked     bool
	stats           Stats
	out             []Effect[H]
	arena           []Entry[H] // entries of out's effects (see mark)
}

// Stats are the queue's running counters, RabbitMQ's message_stats: they
// only grow (a delivery given back undoes itself), so rates are their
// differences over time (see Meter).
type Stats struct {
	// Published counts messages that entered the queue (publishes and
	// dead-letters; not those a full reject-publish queue refused).
	Published uint64
	// Delivered counts every delivery, to consumers and basic.get, in
	// either acknowledgement mode (RabbitMQ's deliver_get). Got is the
	// part that went to basic.get, GotNoAck the part of Got that needed no
	// ack, DeliveredNoAck the deliveries to no-ack consumers.
	Delivered, Got, GotNoAck, DeliveredNoAck uint64
	// Redelivered is the part of Delivered flagged redelivered.
	Redelivered uint64
	// GetEmpty counts basic.get on an empty queue.
	GetEmpty uint64

	// Acked counts basic.ack'd messages, Rejected those rejected or
	// nacked without requeue; the others count messages that left
	// otherwise (Dropped: released without dead-lettering, whatever the
	// reason).
	Acked, Rejected, Expired, DeadLettered, Dropped uint64
}

// New makes a core with policy, its clock starting at now.
func New[H any](policy Policy, now int64) *Core[H] {
	c := &Core[H]{policy: policy, unacked: unackedTable[H]{base: tableStart}, lastUsed: now,
		expiries: minHeap[expiryItem]{less: func(a, b expiryItem) bool { return a.at < b.at }}}
	c.levels = make([]level[H], int(policy.MaxPriority)+1)
	return c
}

// Policy returns the policy in force.
func (c *Core[H]) Policy() Policy { return c.policy }

// SetPolicy changes the policy (a policy was set or cleared): drop-head
// limits apply at once. Priorities are fixed at declaration and keep their
// old value.
func (c *Core[H]) SetPolicy(p Policy, now int64) []Effect[H] {
	c.begin()
	p.MaxPriority = c.policy.MaxPriority
	c.policy = p
	c.enforceLimits()
	c.expire(now)
	return c.out
}

// begin starts a command: the last one's effects are let go of, if end
// has not already.
func (c *Core[H]) begin() { c.end() }

// end lets go of the last command's effects once its caller has copied
// them out. Their entries hold the handles of the messages the command
// dropped: kept until the queue's next command, a purge of a million
// messages would keep every one of them reachable while the queue idles.
func (c *Core[H]) end() {
	clear(c.out)
	c.out = c.out[:0]
	clear(c.arena) // no handle outlives its command here
	if cap(c.arena) > 4096 {
		c.arena = nil // a burst's arena is not kept
	}
	c.arena = c.arena[:0]
}

// trim lets go of what an idle queue keeps from busier times: an empty
// level's deque block (a 1,024-entry one is 48 KiB), the effect arena (up
// to 4,096 entries), an empty unacked window's ring and expiry heap. It
// runs between commands (the arena is empty then) once per rate sample,
// so a queue that fills again regrows them at most once per sample.
func (c *Core[H]) trim() {
	for i := range c.levels {
		if l := &c.levels[i]; len(l.front) == 0 {
			l.back.trim()
		}
	}
	c.arena = nil
	if c.unacked.n == 0 {
		c.unacked.ring, c.unacked.head = nil, 0
	}
	if c.expiries.len() == 0 {
		c.expiries.items = nil
	}
}

// Effects' entries live in one arena per command, so a command allocates
// nothing once the arena has grown: a run is started with mark, filled with
// add (only the newest run may grow) and taken with run.
func (c *Core[H]) mark() int { return len(c.arena) }

func (c *Core[H]) add(e Entry[H]) { c.arena = append(c.arena, e) }

func (c *Core[H]) run(start int) []Entry[H] { return c.arena[start:len(c.arena):len(c.arena)] }

func (c *Core[H]) emit(kind EffectKind, consumer ConsumerID, reason Reason, es []Entry[H]) {
	c.out = append(c.out, Effect[H]{Kind: kind, Consumer: consumer, Reason: reason, Entries: es})
}

// drop sends entries out of the queue: dead-lettered where the policy
// says so (and reason allows), else released.
func (c *Core[H]) drop(es []Entry[H], reason Reason) {
	if len(es) == 0 {
		return
	}
	switch {
	case c.policy.DeadLetter && reason != ReasonPurged && reason != ReasonDeleted:
		c.stats.DeadLettered += uint64(len(es))
		c.emit(DeadLetter, 0, reason, es)
	default:
		c.stats.Dropped += uint64(len(es))
		c.emit(Release, 0, reason, es)
	}
}

func (c *Core[H]) level(p uint8) *level[H] {
	return &c.levels[min(p, c.policy.MaxPriority)]
}

// Push enqueues m. A reject-publish queue at its limit refuses it with
// ErrRejected (reject-publish-dlx also dead-letters it); a drop-head queue
// drops its oldest messages to make room. Then it dispatches to consumers
// with credit.
func (c *Core[H]) Push(m Message[H], now int64) ([]Effect[H], error) {
	c.begin()
	c.expire(now)
	if c.policy.Overflow != DropHead && c.full(int64(m.Size)) {
		if c.policy.Overflow == RejectPublishDLX && c.policy.DeadLetter {
			start := c.mark()
			c.add(m.entry(0))
			c.stats.DeadLettered++
			c.emit(DeadLetter, 0, ReasonMaxLen, c.run(start))
		}
		return c.out, ErrRejected
	}
	c.enqueue(m, now)
	c.stats.Published++
	c.enforceLimits()
	c.deliver(now) // expired above
	return c.out, nil
}

// Recover enqueues, in order, the messages a restart found, before any
// consumer. A reject-publish limit refuses none of them: they were accepted
// before the restart, and a requeue may have taken the queue over its
// limit. A drop-head limit and the expiries due by now apply once, after
// the batch. Recovered messages do not count as published.
func (c *Core[H]) Recover(ms []Message[H], now int64) []Effect[H] {
	c.begin()
	for i := range ms {
		c.enqueue(ms[i], now)
	}
	c.expire(now)
	c.enforceLimits()
	c.dispatch(now)
	return c.out
}

// enqueue adds m at the tail of its priority level.
func (c *Core[H]) enqueue(m Message[H], now int64) {
	if m.Timestamp == 0 {
		m.Timestamp = now // one clock read per push: the caller's
	}
	l := c.level(m.Priority)
	l.seq++
	e := m.entry(l.seq)
	if l.empty() {
		l.maxExpiry, l.unbounded = 0, false
	}
	switch {
	case m.Expires == 0:
		l.unbounded = true
	case m.Expires < l.maxExpiry || l.unbounded:
		// Out of order, or behind a message that never expires: the head
		// check would not find it in time.
		c.expiries.push(expiryItem{at: m.Expires, seq: e.Seq, prio: min(m.Priority, c.policy.MaxPriority)})
	}
	l.maxExpiry = max(l.maxExpiry, m.Expires)
	l.pushBack(e)
	c.ready++
	c.bytes += int64(m.Size)
}

// Admits reports whether Push would take a message of size body bytes (as
// Push decides it, before due expiries): a drop-head queue always does; a
// reject-publish one while the message keeps it within both limits. Limits
// count ready messages and their bodies only, and the limit itself is
// within, as in RabbitMQ.
func (c *Core[H]) Admits(size uint32) bool {
	return c.policy.Overflow == DropHead || !c.full(int64(size))
}

// full reports whether a message of size bytes would go over a limit.
func (c *Core[H]) full(size int64) bool {
	p := c.policy
	return (p.MaxLength >= 0 && c.ready+c.held+1 > p.MaxLength) ||
		(p.MaxLengthBytes >= 0 && c.bytes+c.heldBytes+size > p.MaxLengthBytes)
}

// Hold counts n messages of bytes body bytes (negative: let go) that the
// queue keeps outside the core in its limits.
func (c *Core[H]) Hold(n, bytes int64) {
	c.held += n
	c.heldBytes += bytes
}

// enforceLimits drops ready messages from the head (what a consumer would
// get next, as RabbitMQ's drop-head) until within both limits: a message
// larger than max-length-bytes by itself goes too. A reject-publish queue
// drops nothing: one that a requeue or a new policy took over its limits
// stays over them, refusing publishes until consumers bring it under, as
// RabbitMQ's.
func (c *Core[H]) enforceLimits() {
	p := c.policy
	if p.Overflow != DropHead {
		return
	}
	over := func() bool {
		return (p.MaxLength >= 0 && c.ready > p.MaxLength) || (p.MaxLengthBytes >= 0 && c.bytes > p.MaxLengthBytes)
	}
	if !over() {
		return
	}
	start := c.mark()
	for over() {
		e, ok := c.popHead()
		if !ok {
			break
		}
		c.add(e)
	}
	c.drop(c.run(start), ReasonMaxLen)
}

// popHead takes the next message a consumer would get: the highest
// priority level's oldest.
func (c *Core[H]) popHead() (Entry[H], bool) {
	for i := len(c.levels) - 1; i >= 0; i-- {
		if e, ok := c.levels[i].popFront(); ok {
			c.ready--
			c.bytes -= int64(e.Size)
			return e, true
		}
	}
	return Entry[H]{}, false
}

// peekHead is popHead without taking: the head's level, or nil.
func (c *Core[H]) peekHead() *level[H] {
	for i := len(c.levels) - 1; i >= 0; i-- {
		if c.levels[i].frontEntry() != nil {
			return &c.levels[i]
		}
	}
	return nil
}

// expire drops every ready message whose time has come: at the head of
// each level, and anywhere through the heap of out-of-order expiries, so a
// long TTL at the head never holds back a short one behind it.
func (c *Core[H]) expire(now int64) {
	start := c.mark()
	take := func(e Entry[H]) {
		c.ready--
		c.bytes -= int64(e.Size)
		c.add(e)
	}
	for c.expiries.len() > 0 && c.expiries.top().at <= now {
		it := c.expiries.pop()
		if e, ok := c.levels[it.prio].remove(it.seq); ok {
			take(e)
		}
	}
	for i := range c.levels {
		l := &c.levels[i]
		// maxExpiry 0: nothing pushed in order since the level was last
		// empty expires (requeued expiring entries are in the heap).
		for l.maxExpiry != 0 {
			f := l.frontEntry()
			if f == nil || f.Expires == 0 || f.Expires > now {
				break
			}
			e, _ := l.popFront()
			take(e)
		}
	}
	if es := c.run(start); len(es) > 0 {
		c.stats.Expired += uint64(len(es))
		c.drop(es, ReasonExpired)
	}
}

// NextDeadline is the next time Tick has work (a message expiring, the
// queue expiring); 0: none.
func (c *Core[H]) NextDeadline() int64 {
	next := int64(0)
	consider := func(t int64) {
		if t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	if c.expiries.len() > 0 {
		consider(c.expiries.top().at)
	}
	for i := range c.levels {
		if f := c.levels[i].frontEntry(); f != nil {
			consider(f.Expires)
		}
	}
	if c.policy.Expires > 0 && len(c.consumers) == 0 && !c.deleteAsked {
		consider(c.lastUsed + c.policy.Expires)
	}
	return next
}

// Tick runs what is due at now: expiries, and the queue's own expiry.
func (c *Core[H]) Tick(now int64) []Effect[H] {
	c.begin()
	c.expire(now)
	if c.policy.Expires > 0 && len(c.consumers) == 0 && !c.deleteAsked && c.lastUsed+c.policy.Expires <= now {
		c.deleteAsked = true
		c.emit(DeleteQueue, 0, 0, nil)
	}
	return c.out
}

// Touch records a use of the queue (a declare) for x-expires.
func (c *Core[H]) Touch(now int64) { c.lastUsed = now }

// Consume adds a consumer with no credit yet. It is placed after the
// others of its priority.
func (c *Core[H]) Consume(id ConsumerID, priority int64, noAck bool, now int64) []Effect[H] {
	c.begin()
	c.order++
	cs := &consumerState{id: id, priority: priority, noAck: noAck, order: c.order}
	i := len(c.consumers)
	for i > 0 && c.consumers[i-1].priority < priority {
		i--
	}
	c.consumers = slices.Insert(c.consumers, i, cs)
	c.lastUsed, c.hadUsers = now, true
	if c.policy.SingleActive {
		c.pickActive()
	}
	return c.out
}

// pickActive makes the first consumer in priority and subscription order
// the active one when none is, as RabbitMQ's single active consumer does;
// an active consumer keeps its place while it lives.
func (c *Core[H]) pickActive() {
	if c.active != 0 || len(c.consumers) == 0 {
		return
	}
	c.active = c.consumers[0].id
	c.emit(ActiveConsumer, c.active, 0, nil)
}

// Cancel removes a consumer. Its unacked messages stay unacked (AMQP's
// basic.cancel does not requeue them; closing the channel does, with
// Requeue). It reports whether the queue has consumers left.
func (c *Core[H]) Cancel(id ConsumerID, now int64) ([]Effect[H], bool) {
	c.begin()
	for i, cs := range c.consumers {
		if cs.id == id {
			c.credit -= cs.credit
			c.consumers = slices.Delete(c.consumers, i, i+1)
			break
		}
	}
	c.lastUsed = now
	if c.active == id {
		c.active = 0
		c.pickActive()
		c.dispatch(now)
	}
	return c.out, len(c.consumers) > 0
}

// Credit gives consumer id n more deliveries it may take, and dispatches.
func (c *Core[H]) Credit(id ConsumerID, n int64, now int64) []Effect[H] {
	c.begin()
	for _, cs := range c.consumers {
		if cs.id == id {
			cs.credit += n
			c.credit += n
			break
		}
	}
	c.dispatch(now)
	return c.out
}

// TakeCredit returns and clears consumer id's unused credit (the driver
// gives it back to the channel's prefetch window).
func (c *Core[H]) TakeCredit(id ConsumerID) int64 {
	for _, cs := range c.consumers {
		if cs.id == id {
			n := cs.credit
			cs.credit = 0
			c.credit -= n
			return n
		}
	}
	return 0
}

// eligible reports whether cs may be given messages now.
func (c *Core[H]) eligible(cs *consumerState) bool {
	return cs.credit > 0 && !c.waiting(cs.id)
}

// waiting reports whether consumer id is one that single active consumer
// holds back: it gets nothing, whatever its credit, until it is active.
func (c *Core[H]) waiting(id ConsumerID) bool {
	return c.policy.SingleActive && id != c.active
}

// pickConsumer takes a credit from the highest-priority consumer that has
// one, round-robin among equals. With no credit anywhere (a push between
// the driver's rounds, a round's last look) it looks at no consumer.
func (c *Core[H]) pickConsumer() *consumerState {
	if c.credit <= 0 {
		return nil
	}
	n := len(c.consumers)
	for start := 0; start < n; {
		end := start + 1
		for end < n && c.consumers[end].priority == c.consumers[start].priority {
			end++
		}
		size := end - start
		k := c.rr % size // one division a pick, not one a consumer looked at
		for i := range size {
			if cs := c.consumers[start+k]; c.eligible(cs) {
				c.rr += i + 1
				cs.credit--
				c.credit--
				return cs
			}
			if k++; k == size {
				k = 0
			}
		}
		start = end
	}
	return nil
}

// dispatch hands ready messages to consumers with credit, grouping
// consecutive messages for the same consumer into one Deliver effect.
func (c *Core[H]) dispatch(now int64) {
	c.expire(now)
	c.deliver(now)
}

// deliver is dispatch without expiring first.
func (c *Core[H]) deliver(now int64) {
	var cur *Effect[H]
	start := 0
	for c.ready > 0 {
		cs := c.pickConsumer()
		if cs == nil {
			break
		}
		e, _ := c.popHead()
		e.delivered()
		c.stats.Delivered++
		if e.Deliveries > 1 {
			c.stats.Redelivered++
		}
		tag := uint64(0)
		if !cs.noAck {
			tag = c.unacked.add(e, now)
		} else {
			c.stats.DeliveredNoAck++
		}
		if cur == nil || cur.Consumer != cs.id {
			start = c.mark()
			c.emit(Deliver, cs.id, 0, nil)
			cur = &c.out[len(c.out)-1]
			cur.Tag = tag // a consumer's run has consecutive tags
		}
		c.add(e) // the newest run: the current Deliver's
		cur.Entries = c.run(start)
	}
}

// Get takes the head message for basic.get (ok false: none). Unless noAck
// it stays unacked, to be settled by tag (0 with noAck).
func (c *Core[H]) Get(noAck bool, now int64) (e Entry[H], tag uint64, ok bool, effects []Effect[H]) {
	c.begin()
	c.expire(now)
	c.lastUsed = now
	e, ok = c.popHead()
	if !ok {
		c.stats.GetEmpty++
		return e, 0, false, c.out
	}
	e.delivered()
	c.stats.Delivered++
	c.stats.Got++
	if e.Deliveries > 1 {
		c.stats.Redelivered++
	}
	if !noAck {
		tag = c.unacked.add(e, now)
	} else {
		c.stats.GotNoAck++
	}
	return e, tag, true, c.out
}

// Outcome is how a delivery is settled.
type Outcome uint8

// The outcomes of basic.ack, basic.reject/nack without and with requeue.
const (
	Ack Outcome = iota + 1
	Reject
	Requeue
)

// Settle ends the deliveries with these tags (Effect.Tag, Get's): acked
// (released), rejected (dropped or dead-lettered) or requeued to their
// original places, flagged redelivered. Tags not unacked are ignored (the
// channel checks its own). now is used only by a requeue, which
// dispatches.
func (c *Core[H]) Settle(tags []uint64, outcome Outcome, now int64) []Effect[H] {
	c.begin()
	start := c.mark()
	for _, tag := range tags {
		if e, ok := c.unacked.take(tag); ok {
			c.add(e)
		}
	}
	es := c.run(start)
	c.unacked.compact()
	switch outcome {
	case Ack:
		c.stats.Acked += uint64(len(es))
		if len(es) > 0 {
			c.emit(Release, 0, 0, es)
		}
	case Reject:
		c.stats.Rejected += uint64(len(es))
		c.drop(es, ReasonRejected)
	case Requeue:
		var poison []Entry[H]
		for _, e := range es {
			if c.policy.LimitDeliveries && int64(e.Deliveries) > c.policy.DeliveryLimit {
				poison = append(poison, e)
				continue
			}
			c.requeueOne(e)
		}
		c.drop(poison, ReasonDeliveryLimit)
		c.enforceLimits()
		c.dispatch(now)
	}
	return c.out
}

// Return puts back entries taken by a delivery (got false) or a basic.get
// (got true) that could not be handed over (their message could not be
// read, the channel closed): they are ready again at their places, and the
// delivery does not count, in any counter. tag is es[0]'s delivery tag,
// the others' following on (0: they went out in no-ack mode).
func (c *Core[H]) Return(es []Entry[H], tag uint64, got bool) {
	for i, e := range es {
		acked := false
		if tag != 0 {
			_, acked = c.unacked.take(tag + uint64(i))
		}
		s := &c.stats
		s.Delivered--
		if e.Deliveries > 1 {
			s.Redelivered--
		}
		switch {
		case got && !acked:
			s.Got--
			s.GotNoAck--
		case got:
			s.Got--
		case !acked:
			s.DeliveredNoAck--
		}
		if e.Deliveries > 0 {
			e.Deliveries--
		}
		c.requeueOne(e)
	}
	c.unacked.compact()
}

// requeueOne puts e back at its original place in its level.
func (c *Core[H]) requeueOne(e Entry[H]) {
	l := c.level(e.Priority)
	l.insert(e)
	c.ready++
	c.bytes += int64(e.Size)
	if e.Expires != 0 {
		c.expiries.push(expiryItem{at: e.Expires, seq: e.Seq, prio: min(e.Priority, c.policy.MaxPriority)})
	}
}

// Purge drops every ready message and returns how many (they are
// released, never dead-lettered, as RabbitMQ's purge).
func (c *Core[H]) Purge() (int, []Effect[H]) {
	c.begin()
	start := c.mark()
	for {
		e, ok := c.popHead()
		if !ok {
			break
		}
		c.add(e)
	}
	es := c.run(start)
	c.expiries.reset()
	for i := range c.levels {
		c.levels[i].maxExpiry = 0
	}
	n := len(es)
	c.drop(es, ReasonPurged)
	return n, c.out
}

// Delete empties the queue for deletion: ready and unacked messages are
// released (unacked ones are settled by nobody after this).
func (c *Core[H]) Delete() (int, []Effect[H]) {
	n, _ := c.Purge()
	start := c.mark()
	c.arena = c.unacked.takeAll(c.arena)
	if es := c.run(start); len(es) > 0 {
		c.emit(Release, 0, ReasonDeleted, es)
	}
	c.consumers, c.credit = nil, 0
	return n, c.out
}

// Backlog returns the ready messages, their body bytes and the consumers,
// cheaply.
func (c *Core[H]) Backlog() (ready, readyBytes int64, consumers int) {
	return c.ready, c.bytes, len(c.consumers)
}

// Info is a queue's state for operators.
type Info struct {
	Ready, Unacked           int64
	ReadyBytes, UnackedBytes int64
	// Held and HeldBytes are the dead-letters held at least once, not
	// yet confirmed by their targets (Hold), and their bodies' bytes.
	Held, HeldBytes int64
	Consumers       int
	// HeadTimestamp is when the head message entered the queue (0: empty).
	HeadTimestamp int64
	// OldestUnacked is when the longest-unacked delivery went out (0: none).
	OldestUnacked int64
	// Active is the single active consumer (0: none or not SAC).
	Active ConsumerID
	Stats  Stats
	// Rates are the counters' rates over the last sampling interval (a
	// driver's Meter; zero from Core.Info).
	Rates Rates
}

// Info reports counts, ages and counters.
func (c *Core[H]) Info() Info {
	in := Info{Ready: c.ready, Unacked: int64(c.unacked.live), ReadyBytes: c.bytes, UnackedBytes: c.unacked.bytes,
		Held: c.held, HeldBytes: c.heldBytes, Consumers: len(c.consumers), Active: c.active, Stats: c.stats, OldestUnacked: c.unacked.oldest()}
	if l := c.peekHead(); l != nil {
		in.HeadTimestamp = l.frontEntry().Timestamp
	}
	return in
}

// Head returns the head message, the one a consumer would get next (ok
// false: no message is ready), leaving it in place.
func (c *Core[H]) Head() (e Entry[H], ok bool) {
	l := c.peekHead()
	if l == nil {
		return e, false
	}
	return l.head(), true
}

// expiryItem is a message whose expiry the head check cannot be trusted to
// find in time.
type expiryItem struct {
	at   int64
	seq  uint64
	prio uint8
}
