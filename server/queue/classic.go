package queue

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Host is what a classic queue needs from the broker around it; the queue
// knows nothing else of channels, connections or the store. Calls come
// from the goroutine that ran the command (a publisher's or consumer's
// connection) or from the queue's driver, never under the queue's lock.
type Host[H any] interface {
	// Release tells the store the queue no longer holds these messages.
	Release(es []Entry[H])
	// DeadLetter republishes these messages to the queue's dead-letter
	// exchange with reason (x-death), then releases them.
	DeadLetter(es []Entry[H], reason Reason)
	// Prepare readies a batch for delivery: reads paged-out messages back
	// and records what the delivered position must cover. It returns the
	// prefix it could prepare; the rest go back to the queue.
	Prepare(es []Entry[H]) []Entry[H]
	// Expired is called once when the queue has been unused for
	// x-expires: the host deletes it.
	Expired()
}

// Consumer is a subscription's channel as the queue sees it: a window of
// credit and a way to hand over messages. The channel implements it.
type Consumer[H any] interface {
	// Acquire takes up to n delivery credits (prefetch, output room) and
	// returns how many it got.
	Acquire(n int64) int64
	// Unacquire gives back credits acquired and not used.
	Unacquire(n int64)
	// Deliver hands messages over, in order, with the delivery tag of
	// es[0], the others' following on (0 for a no-ack consumer): the
	// channel settles them by these tags. The queue's driver is the only
	// caller, so a consumer's deliveries never interleave.
	Deliver(es []Entry[H], tag uint64)
}

// maxBatch bounds the credit a consumer is asked for at a time, so one
// consumer cannot hold the lock for a whole backlog.
const maxBatch = 128

// Classic is a classic queue: a Core behind a mutex, with one driver
// goroutine that alone hands messages to consumers, so deliveries keep
// their order without a goroutine hand-off per published message.
//
// Order of effects, the same for every command: store releases first, then
// deliveries (driver only), then dead-letters, then the queue's own
// deletion. Locking: mu guards core and consumers and is never held while
// calling Host or Consumer.
type Classic[H any] struct {
	host  Host[H]
	clock func() int64

	// pool holds *detached buffers for effects carried out after the lock.
	pool sync.Pool

	mu        sync.Mutex
	core      *Core[H]
	meter     Meter // the core's rates, sampled by SampleRates
	consumers map[ConsumerID]Consumer[H]
	nextID    ConsumerID
	closed    bool
	// dead are the messages dead-lettered at least once
	// (Policy.AtLeastOnce: a single-node quorum queue) awaiting their
	// targets' confirm; the store keeps them until then, so a restart
	// finds them in the queue again.
	dead heldDeadLetters[H]

	// The driver's scratch for a dispatch round (dispatchOnce only).
	grants  []grant[H]
	effects []Effect[H]
	arena   []Entry[H]

	wake chan struct{} // capacity 1: "there may be work"
	// woken is set from a signal until the driver takes the wake-up, so
	// the publishers of a busy queue skip the channel (and its lock).
	woken atomic.Bool
	stop  chan struct{}
	done  chan struct{}
}

// NewClassic starts a classic queue with policy; clock gives the time in
// ns (nil: the wall clock).
func NewClassic[H any](policy Policy, host Host[H], clock func() int64) *Classic[H] {
	if clock == nil {
		clock = Now
	}
	q := &Classic[H]{host: host, clock: clock, core: New[H](policy, clock()),
		consumers: map[ConsumerID]Consumer[H]{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	q.meter.Start(clock())
	go q.drive()
	q.signal() // arms the x-expires clock
	return q
}

// Wake asks the driver to look for work: a consumer's window or output
// buffer has room again.
func (q *Classic[H]) Wake() { q.signal() }

// Backlog returns the ready messages, their body bytes and the
// consumers (see Core.Backlog).
func (q *Classic[H]) Backlog() (ready, readyBytes int64, consumers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Backlog()
}

// Admits reports whether a push of size body bytes would be taken now (see
// Core.Admits); a publish checks it before storing the message.
func (q *Classic[H]) Admits(size uint32) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Admits(size)
}

// GiveBack returns a message taken by Get, with its tag, that could not
// be handed over (the channel closed meanwhile): ready again, as if never
// taken.
func (q *Classic[H]) GiveBack(e Entry[H], tag uint64) {
	q.giveBack([]Entry[H]{e}, tag, true)
	q.signal()
}

// signal wakes the driver.
func (q *Classic[H]) signal() {
	if q.woken.Load() || q.woken.Swap(true) {
		return // the driver has yet to take a wake-up, and looks after it
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// runEffects carries out effects outside the lock, in the documented
// order. Deliver effects never reach it: only the driver grants credit.
// Host calls must not keep the entry slices they are given.
func (q *Classic[H]) runEffects(effects []Effect[H]) {
	expired := false
	for _, e := range effects {
		switch e.Kind {
		case Release:
			q.host.Release(e.Entries)
		case DeadLetter:
			if !q.holdDeadLetters(e.Entries, e.Reason) {
				q.host.DeadLetter(e.Entries, e.Reason)
			}
		case DeleteQueue:
			expired = true
		}
	}
	if expired {
		q.host.Expired()
	}
}

// detached is a command's effects copied out of the core's arena, which
// the next command reuses, so they can be carried out after the lock is
// released. Buffers are pooled: an ack costs no allocation.
type detached[H any] struct {
	effects []Effect[H]
	entries []Entry[H]
}

// detach copies effects out of the arena (nil if there are none) and ends
// the core's command. Caller holds q.mu; carryOut gives the buffer back.
func (q *Classic[H]) detach(effects []Effect[H]) *detached[H] {
	if len(effects) == 0 {
		q.core.end()
		return nil
	}
	d, _ := q.pool.Get().(*detached[H])
	if d == nil {
		d = &detached[H]{}
	}
	for _, e := range effects {
		start := len(d.entries)
		d.entries = append(d.entries, e.Entries...)
		e.Entries = d.entries[start:len(d.entries):len(d.entries)]
		d.effects = append(d.effects, e)
	}
	q.core.end()
	return d
}

// carryOut runs detached effects and returns their buffer to the pool.
func (q *Classic[H]) carryOut(d *detached[H]) {
	if d == nil {
		return
	}
	q.runEffects(d.effects)
	clear(d.effects)
	clear(d.entries)
	d.effects, d.entries = d.effects[:0], d.entries[:0]
	if cap(d.entries) <= 4*maxBatch { // a burst's buffer is not kept
		q.pool.Put(d)
	}
}

// Push enqueues m and returns the ready messages and consumers after it
// (for flow control). Its time is m.Timestamp when set (on the queue's
// clock), else a clock read. It returns ErrRejected from a full reject-publish
// queue. It does not deliver: it wakes the driver.
func (q *Classic[H]) Push(m Message[H]) (ready int64, consumers int, err error) {
	now := m.Timestamp // the caller's clock read, for all the queues of a fan-out
	if now == 0 {
		now = q.clock() // outside the lock: the core takes times out of order (see Core.enqueue)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.host.Release([]Entry[H]{m.entry(0)})
		return 0, 0, nil
	}
	effects, err := q.core.Push(m, now)
	todo := q.detach(effects)
	ready, _, consumers = q.core.Backlog()
	q.mu.Unlock()
	q.carryOut(todo)
	// The driver delivers, and runs the clock of a new expiry.
	if ready > 0 && consumers > 0 || m.Expires != 0 {
		q.signal()
	}
	return ready, consumers, err
}

// PushRecovered enqueues messages recovered at start, before any
// consumer: one lock and one clock read for the batch (a restart pushes
// millions). A reject-publish limit does not refuse them: they were
// accepted before the restart.
func (q *Classic[H]) PushRecovered(ms []Message[H]) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	expires := slices.ContainsFunc(ms, func(m Message[H]) bool { return m.Expires != 0 })
	effects := q.core.Recover(ms, q.clock())
	// Expired while the server was down, or over a drop-head limit: the
	// Host is called without the lock, as always.
	todo := q.detach(effects)
	q.mu.Unlock()
	q.carryOut(todo)
	if expires {
		q.signal() // the driver runs the clock of their expiries
	}
}

// Consume adds a consumer and returns its id.
func (q *Classic[H]) Consume(c Consumer[H], priority int64, noAck bool) ConsumerID {
	q.mu.Lock()
	q.nextID++
	id := q.nextID
	q.consumers[id] = c
	q.core.Consume(id, priority, noAck, q.clock())
	q.mu.Unlock()
	q.signal()
	return id
}

// Cancel removes a consumer; its unacked messages stay unacked. It reports
// whether consumers are left (auto-delete decides on it).
func (q *Classic[H]) Cancel(id ConsumerID) bool {
	q.mu.Lock()
	delete(q.consumers, id)
	effects, left := q.core.Cancel(id, q.clock())
	todo := q.detach(effects)
	q.mu.Unlock()
	q.carryOut(todo)
	q.signal() // a new active consumer, an x-expires clock
	return left
}

// Settle acks, rejects or requeues deliveries by tag.
func (q *Classic[H]) Settle(tags []uint64, outcome Outcome) {
	var now int64
	if outcome == Requeue {
		now = q.clock() // only a requeue dispatches
	}
	q.mu.Lock()
	todo := q.detach(q.core.Settle(tags, outcome, now))
	ready, _, consumers := q.core.Backlog()
	q.mu.Unlock()
	q.carryOut(todo)
	if ready > 0 && consumers > 0 {
		q.signal() // requeued messages, or credit the settle freed for ready ones
	}
}

// Get takes the head message (basic.get) and its tag (0 with noAck); ok
// is false if there is none.
func (q *Classic[H]) Get(noAck bool) (e Entry[H], tag uint64, ok bool) {
	q.mu.Lock()
	e, tag, ok, effects := q.core.Get(noAck, q.clock())
	todo := q.detach(effects)
	q.mu.Unlock()
	q.carryOut(todo)
	if ok {
		prepared := q.host.Prepare([]Entry[H]{e})
		if len(prepared) == 0 {
			q.giveBack([]Entry[H]{e}, tag, true) // not readable: as if never taken
			return Entry[H]{}, 0, false
		}
		e = prepared[0]
	}
	return e, tag, ok
}

// giveBack returns entries taken for delivery (got false) or by Get (got
// true) that could not be handed over; tag is es[0]'s (see Core.Return).
func (q *Classic[H]) giveBack(es []Entry[H], tag uint64, got bool) {
	q.mu.Lock()
	q.core.Return(es, tag, got)
	q.mu.Unlock()
}

// Purge drops every ready message and returns how many.
func (q *Classic[H]) Purge() int {
	q.mu.Lock()
	n, effects := q.core.Purge()
	todo := q.detach(effects)
	q.mu.Unlock()
	q.carryOut(todo)
	return n
}

// Delete stops the queue: ready and unacked messages are released, the
// driver ends. It returns the ready messages it held.
func (q *Classic[H]) Delete() int {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0
	}
	q.closed = true
	n, effects := q.core.Delete()
	todo := q.detach(effects)
	clear(q.consumers)
	q.dead.stop()
	dead := q.dead.drain() // never confirmed: they go with the queue
	q.mu.Unlock()
	close(q.stop)
	<-q.done
	q.carryOut(todo)
	if len(dead) > 0 {
		q.host.Release(dead)
	}
	return n
}

// Close ends the driver without releasing anything (the broker is
// shutting down; the store keeps what the queue held).
func (q *Classic[H]) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.dead.stop()
	q.mu.Unlock()
	close(q.stop)
	<-q.done
}

// Info reports the queue's counts, ages, counters and rates.
func (q *Classic[H]) Info() Info {
	q.mu.Lock()
	defer q.mu.Unlock()
	in := q.core.Info()
	in.Rates = q.meter.Rates()
	return in
}

// SampleRates samples the counters for Info's rates (see Meter), and
// lets go of the spare storage of an idle queue (Core.trim): the sampler
// already visits every queue, so trimming wakes nothing.
func (q *Classic[H]) SampleRates() {
	q.mu.Lock()
	q.meter.Sample(q.core.stats, q.clock())
	q.core.trim()
	q.mu.Unlock()
}

// Head returns the head message's entry, leaving it in place (ok false:
// none is ready). Its handle is only for reading what it points to.
func (q *Classic[H]) Head() (e Entry[H], ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Head()
}

// SetPolicy changes the policy (see Core.SetPolicy) as every command
// does: under mu, its drops carried out after; the driver is woken to
// re-arm its clock for a new x-expires.
func (q *Classic[H]) SetPolicy(p Policy) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	p.SingleActive = q.core.policy.SingleActive
	todo := q.detach(q.core.SetPolicy(p, q.clock()))
	q.mu.Unlock()
	q.carryOut(todo)
	q.signal()
}

// Touch records a declare for x-expires.
func (q *Classic[H]) Touch() {
	q.mu.Lock()
	q.core.Touch(q.clock())
	q.mu.Unlock()
	q.signal()
}

// drive is the queue's driver goroutine: it alone grants credit and so
// alone delivers, and it runs the clock (expiries, x-expires).
func (q *Classic[H]) drive() {
	defer close(q.done)
	// The timer is made for the first deadline: most queues never have
	// one (no TTL, no x-expires), and a nil channel never fires.
	var timer *time.Timer
	var fired <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-q.stop:
			return
		case <-q.wake:
			// Before the round: a signal from now on wakes it again, and
			// every earlier one's command is under the lock it takes.
			q.woken.Store(false)
		case <-fired:
		}
		for q.dispatchOnce() {
		}
		q.mu.Lock()
		todo := q.detach(q.core.Tick(q.clock()))
		next := q.core.NextDeadline()
		q.mu.Unlock()
		q.carryOut(todo)
		if next != 0 {
			d := time.Duration(max(next-q.clock(), 0))
			if timer == nil {
				timer = time.NewTimer(d)
				fired = timer.C
			} else {
				timer.Reset(d)
			}
		}
	}
}

// grant is a consumer given credit in one dispatch round.
type grant[H any] struct {
	id       ConsumerID
	c        Consumer[H]
	leftover int64
}

// dispatchOnce grants credit to every consumer, lets the core dispatch,
// takes unused credit back and delivers. It reports whether it delivered
// anything (and so should run again). Its scratch slices are the driver's
// own, so a round allocates nothing once they have grown.
func (q *Classic[H]) dispatchOnce() bool {
	q.mu.Lock()
	if q.closed || q.core.ready == 0 || len(q.consumers) == 0 {
		q.mu.Unlock()
		return false
	}
	now := q.clock()
	want := min(q.core.ready, maxBatch)
	grants, effects, arena := q.grants[:0], q.effects[:0], q.arena[:0]
	for _, cs := range q.core.consumers {
		if q.core.waiting(cs.id) {
			// Its credit would be given back unused, and on a channel-wide
			// prefetch it would take the active consumer's share.
			continue
		}
		c := q.consumers[cs.id]
		n := c.Acquire(want)
		if n == 0 {
			continue
		}
		grants = append(grants, grant[H]{id: cs.id, c: c})
		for _, e := range q.core.Credit(cs.id, n, now) {
			start := len(arena)
			arena = append(arena, e.Entries...)
			e.Entries = arena[start:len(arena):len(arena)]
			effects = append(effects, e)
		}
	}
	for i := range grants {
		grants[i].leftover = q.core.TakeCredit(grants[i].id)
	}
	q.core.end()
	q.mu.Unlock()
	for _, g := range grants {
		if g.leftover > 0 {
			g.c.Unacquire(g.leftover)
		}
	}
	delivered := false
	for _, e := range effects {
		if e.Kind != Deliver {
			q.runEffects([]Effect[H]{e})
			continue
		}
		ready := q.host.Prepare(e.Entries)
		if rest := e.Entries[len(ready):]; len(rest) > 0 {
			// The rest could not be read back: they return to the queue
			// as if never delivered, and their credit to the consumer.
			restTag := e.Tag
			if restTag != 0 {
				restTag += uint64(len(ready))
			}
			q.giveBack(rest, restTag, false)
			for _, g := range grants {
				if g.id == e.Consumer {
					g.c.Unacquire(int64(len(rest)))
				}
			}
		}
		if len(ready) > 0 {
			for _, g := range grants {
				if g.id == e.Consumer {
					g.c.Deliver(ready, e.Tag)
				}
			}
			delivered = true
		}
	}
	clear(grants)
	clear(effects)
	clear(arena)
	q.grants, q.effects, q.arena = grants, effects, arena
	if cap(q.arena) > 4*maxBatch {
		q.arena = nil // a burst's scratch is not kept
	}
	return delivered
}

// holdDeadLetters holds es, dead-lettered for reason, when the queue
// dead-letters at least once (and its host can), and republishes them
// with a confirm; false: the caller dead-letters them at most once. Caller
// holds no lock.
func (q *Classic[H]) holdDeadLetters(es []Entry[H], reason Reason) bool {
	if _, ok := q.host.(DeadLetterHost[H]); !ok {
		return false
	}
	q.mu.Lock()
	if !q.core.policy.AtLeastOnce || q.closed {
		q.mu.Unlock()
		return false
	}
	for _, e := range es {
		q.dead.add(e, reason) // a copy: es is the effects' buffer
		q.core.Hold(1, int64(e.Size))
	}
	hs := q.dead.due(q.clock(), false)
	q.dead.arm(q.retryDLX)
	q.mu.Unlock()
	sendDeadLetters(q.host, hs, q.confirmedDLX)
	return true
}

// confirmedDLX is a dead-letter's confirm: confirmed, it is released;
// refused, it waits for the retry.
func (q *Classic[H]) confirmedDLX(id uint64, ok bool) {
	if !ok {
		return
	}
	q.mu.Lock()
	e, held := q.dead.remove(id)
	if held {
		q.core.Hold(-1, -int64(e.Size))
	}
	closed := q.closed
	q.mu.Unlock()
	if held && !closed {
		q.host.Release([]Entry[H]{e})
		q.signal() // room again under a limit
	}
}

// retryDLX republishes the dead-letters that got no confirm in retry.
func (q *Classic[H]) retryDLX() {
	q.mu.Lock()
	if q.closed || len(q.dead.list) == 0 {
		q.mu.Unlock()
		return
	}
	again := q.dead.due(q.clock(), false)
	q.dead.arm(q.retryDLX)
	q.mu.Unlock()
	sendDeadLetters(q.host, again, q.confirmedDLX)
}
